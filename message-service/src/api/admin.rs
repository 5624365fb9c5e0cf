//! The gRPC handlers of `chat.message.v1.AdminService`: rooms, members,
//! moderation and history across every room, and `Watch`, which follows a
//! room live. Every call is checked by the [`AdminGuard`] (an admin's access
//! token, verified by auth-service); the admin then acts with an owner's
//! power in every room ([`Authority::Admin`]).

use std::pin::Pin;
use std::sync::Arc;

use chat_common::Shutdown;
use chat_common::admin::AdminGuard;
use chat_common::identity::Identity;
use chat_common::pubsub::{SubscriberEvent, channels};
use chat_proto::ErrorCode;
use chat_proto::auth::v1::GetUserRequest;
use chat_proto::events::v1::{self as ev, room_event};
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::admin_service_server::AdminService;
use futures::Stream;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Authority, convert, load_room, messages, moderation, rooms};
use crate::domain::paging::Page;
use crate::error::Error;
use crate::state::State;

/// Rooms per `ListRooms` page when the request says 0.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Messages per history read while `Watch` replays or fills a gap.
const REPLAY_PAGE: u32 = 500;
/// Events a `Watch` may have queued for a slow client before it waits.
const WATCH_QUEUE: usize = 256;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<ev::RoomEvent, Status>> + Send + 'static>>;

pub struct AdminApi {
    state: Arc<State>,
    guard: AdminGuard,
    /// Ends every `Watch` when the server stops: graceful shutdown waits
    /// for open streams, and a watch never ends by itself.
    shutdown: Shutdown,
}

impl AdminApi {
    pub fn new(state: Arc<State>, guard: AdminGuard, shutdown: Shutdown) -> AdminApi {
        AdminApi {
            state,
            guard,
            shutdown,
        }
    }

    /// The admin making the call, recorded on the current span.
    async fn admin<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let admin = self.guard.authorize(request).await?;
        tracing::Span::current().record("admin_id", admin.user_id.as_str());
        Ok(admin)
    }

    /// A user's names from auth-service, for a membership record.
    async fn user(&self, user_id: &str) -> Result<Identity, Error> {
        let user = self
            .guard
            .auth()
            .get_user(GetUserRequest {
                user_id: user_id.to_owned(),
            })
            .await
            .map_err(|status| match ErrorCode::from_status(&status) {
                ErrorCode::NotFound => Error::not_found("user not found"),
                _ => {
                    tracing::warn!(error = %status, "cannot look up a user in auth-service");
                    Error::Unavailable(
                        "auth-service is unreachable; cannot look up the user".into(),
                    )
                }
            })?
            .into_inner();
        Ok(Identity {
            user_id: user.id,
            username: user.username,
            display_name: user.display_name,
        })
    }
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

async fn summary(state: &State, room_id: &str) -> Result<pb::RoomSummary, Error> {
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), room_id).await?;
    let members = tx.member_count(&room.id).await?;
    Ok(pb::RoomSummary {
        room: Some(convert::room(&room)),
        member_count: u32::try_from(members).unwrap_or(u32::MAX),
    })
}

async fn list_rooms(
    state: &State,
    req: pb::ListRoomsRequest,
) -> Result<pb::ListRoomsResponse, Error> {
    let limit = match req.limit {
        0 => DEFAULT_LIST_LIMIT,
        l if l > MAX_LIST_LIMIT => return Err(Error::invalid("limit must be 1 to 1000")),
        l => l,
    };
    let mut tx = state.store.begin().await?;
    // One more than asked, to know whether another page follows.
    let mut rows = tx.all_rooms(&req.after, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = match rows.last() {
        Some((room, _)) if more => room.id.clone(),
        _ => String::new(),
    };
    Ok(pb::ListRoomsResponse {
        rooms: rows
            .iter()
            .map(|(room, members)| pb::RoomSummary {
                room: Some(convert::room(room)),
                member_count: u32::try_from(*members).unwrap_or(u32::MAX),
            })
            .collect(),
        next_after,
    })
}

async fn list_members(
    state: &State,
    req: pb::ListMembersRequest,
) -> Result<pb::ListMembersResponse, Error> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    let members = tx.members(&room.id).await?;
    Ok(pb::ListMembersResponse {
        members: members.iter().map(|m| convert::member(m, now)).collect(),
    })
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty))]
    async fn list_rooms(
        &self,
        request: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        self.admin(&request).await?;
        reply(list_rooms(&self.state, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn get_room(
        &self,
        request: Request<pb::GetRoomRequest>,
    ) -> Result<Response<pb::RoomSummary>, Status> {
        self.admin(&request).await?;
        reply(summary(&self.state, &request.into_inner().room).await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty))]
    async fn create_room(
        &self,
        request: Request<pb::AdminCreateRoomRequest>,
    ) -> Result<Response<pb::RoomSummary>, Status> {
        let admin = self.admin(&request).await?;
        let req = request.into_inner();
        let result = async {
            let owner = match &req.owner_id {
                Some(owner_id) => self.user(owner_id).await?,
                None => admin,
            };
            let create = pb::CreateRoomRequest {
                name: req.name,
                visibility: req.visibility,
            };
            let room = rooms::create_room(&self.state, &owner, create).await?;
            Ok(pb::RoomSummary {
                room: Some(room),
                member_count: 1,
            })
        };
        reply(result.await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.admin(&request).await?;
        reply(list_members(&self.state, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn add_member(
        &self,
        request: Request<pb::AdminAddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let admin = self.admin(&request).await?;
        let req = request.into_inner();
        let result = async {
            let user = self.user(&req.user_id).await?;
            let add = pb::AddMemberRequest {
                room: req.room,
                user_id: user.user_id,
                username: user.username,
                display_name: user.display_name,
            };
            rooms::add_member_as(&self.state, &admin, Authority::Admin, add).await
        };
        reply(result.await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn moderate(
        &self,
        request: Request<pb::ModerateRequest>,
    ) -> Result<Response<pb::ModerateResponse>, Status> {
        let admin = self.admin(&request).await?;
        reply(
            moderation::moderate_as(&self.state, &admin, Authority::Admin, request.into_inner())
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let admin = self.admin(&request).await?;
        reply(
            messages::history_as(&self.state, &admin, Authority::Admin, request.into_inner()).await,
        )
    }

    type WatchStream = WatchStream;

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, room = %request.get_ref().room))]
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        let stream = watch(self.state.clone(), req, self.shutdown.clone()).await?;
        Ok(Response::new(stream))
    }
}

/// Subscribes to the room's channel before answering, so that every event
/// published after the client has the response reaches it; then replays and
/// streams from a task that ends when the client goes away or the server
/// stops.
async fn watch(
    state: Arc<State>,
    req: pb::WatchRequest,
    shutdown: Shutdown,
) -> Result<WatchStream, Error> {
    {
        let mut tx = state.store.begin().await?;
        load_room(tx.as_mut(), &req.room).await?;
    }
    let unavailable = |error: chat_common::pubsub::PubSubError| {
        tracing::warn!(%error, "cannot subscribe to a room for Watch");
        Error::Unavailable("live events are unavailable".into())
    };
    let (subscriber, mut events) = state
        .backends
        .pubsub
        .subscriber()
        .await
        .map_err(unavailable)?;
    subscriber
        .subscribe(&channels::room(&req.room))
        .await
        .map_err(unavailable)?;
    let (out, stream) = mpsc::channel(WATCH_QUEUE);
    tokio::spawn(async move {
        // Dropping the subscriber unsubscribes: keep it for the whole watch.
        let _subscriber = subscriber;
        let mut watcher = Watcher {
            state,
            room: req.room,
            out,
            last: None,
        };
        let ended = async {
            if let Some(after) = req.after {
                watcher.replay(after).await?;
            }
            loop {
                tokio::select! {
                    () = watcher.out.closed() => return Ok(()),
                    () = shutdown.cancelled() => {
                        return Err(Error::Unavailable("message-service is shutting down".into()));
                    }
                    event = events.recv() => match event {
                        Some(SubscriberEvent::Message { payload, .. }) => {
                            match ev::RoomEvent::decode(payload) {
                                Ok(event) => watcher.live(event).await?,
                                Err(error) => tracing::warn!(%error, "undecodable room event skipped"),
                            }
                        }
                        // Events published meanwhile were lost: history has
                        // the messages among them.
                        Some(SubscriberEvent::Resubscribed) => {
                            if let Some(last) = watcher.last {
                                watcher.replay(last).await?;
                            }
                        }
                        None => return Err(Error::Unavailable("live events ended".into())),
                    },
                }
            }
        };
        if let Err(error) = ended.await {
            // The client may be gone already; nothing more to do then.
            let _ = watcher.out.send(Err(Status::from(error))).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(stream)))
}

/// The state of one `Watch`.
struct Watcher {
    state: Arc<State>,
    room: String,
    out: mpsc::Sender<Result<ev::RoomEvent, Status>>,
    /// The seq of the last message sent; `None` before the first.
    last: Option<i64>,
}

impl Watcher {
    async fn send(&self, event: ev::RoomEvent) {
        // A closed stream is noticed by the loop through `closed()`.
        let _ = self.out.send(Ok(event)).await;
    }

    /// Sends the stored messages with seq > `after`, in order.
    async fn replay(&mut self, after: i64) -> Result<(), Error> {
        let mut from = after;
        loop {
            let page = Page::parse(None, Some(from), REPLAY_PAGE)?;
            let rows = {
                let mut tx = self.state.store.begin().await?;
                tx.history(&self.room, page.direction, page.fetch()).await?
            };
            let (messages, has_more) = page.finish(rows);
            for message in &messages {
                from = message.seq;
                self.last = Some(message.seq);
                self.send(ev::RoomEvent {
                    room: self.room.clone(),
                    event: Some(room_event::Event::MessageCreated(convert::message(message))),
                })
                .await;
            }
            if !has_more || self.out.is_closed() {
                return Ok(());
            }
        }
    }

    /// Passes a live event on; a message already replayed is dropped, one
    /// after a gap is sent with the missed ones from history.
    async fn live(&mut self, event: ev::RoomEvent) -> Result<(), Error> {
        if let Some(room_event::Event::MessageCreated(message)) = &event.event {
            match self.last {
                Some(last) if message.seq <= last => return Ok(()),
                // Published after commit, so history holds this one too.
                Some(last) if message.seq > last + 1 => return self.replay(last).await,
                _ => self.last = Some(message.seq),
            }
        }
        self.send(event).await;
        Ok(())
    }
}
