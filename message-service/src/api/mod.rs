//! The gRPC handlers of `chat.message.v1.MessageService`. Each RPC family
//! lives in its own module as plain functions of (`State`, acting user,
//! request); this impl only takes the acting user from the metadata and
//! maps errors to `Status` once.

pub mod admin;
pub mod attachments;
pub mod convert;
pub mod direct;
pub mod messages;
pub mod moderation;
pub mod rooms;

use std::pin::Pin;
use std::sync::Arc;

use chat_common::identity::Identity;
use chat_proto::message::v1 as pb;
use chat_proto::message::v1::message_service_server::MessageService;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::state::State;
use crate::store::{MemberRecord, RoomRecord, StoreTx};

pub struct MessageApi {
    state: Arc<State>,
}

impl MessageApi {
    pub fn new(state: Arc<State>) -> MessageApi {
        MessageApi { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, Error>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

/// The acting user and the message of a unary request.
fn split<T>(request: Request<T>) -> Result<(Identity, T), Status> {
    let who = Identity::from_request(&request)?;
    Ok((who, request.into_inner()))
}

/// On whose authority a call acts on a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// The caller's membership and room role decide (`MessageService`).
    Member,
    /// A system admin (`AdminService`): an owner's power in every room,
    /// member or not.
    Admin,
}

/// The room, or `not_found`.
pub(crate) async fn load_room(tx: &mut dyn StoreTx, room_id: &str) -> Result<RoomRecord, Error> {
    tx.room(room_id)
        .await?
        .ok_or_else(|| Error::not_found("room not found"))
}

/// The caller's membership, or `forbidden`.
pub(crate) async fn require_member(
    tx: &mut dyn StoreTx,
    room_id: &str,
    user_id: &str,
) -> Result<MemberRecord, Error> {
    tx.member(room_id, user_id)
        .await?
        .ok_or_else(|| Error::forbidden("you are not a member of this room"))
}

pub type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadAttachmentResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MessageService for MessageApi {
    async fn create_room(&self, request: Request<pb::CreateRoomRequest>) -> Reply<pb::Room> {
        let (who, req) = split(request)?;
        reply(rooms::create_room(&self.state, &who, req).await)
    }

    async fn get_room(&self, request: Request<pb::GetRoomRequest>) -> Reply<pb::Room> {
        let (who, req) = split(request)?;
        reply(rooms::get_room(&self.state, &who, req).await)
    }

    async fn list_my_rooms(
        &self,
        request: Request<pb::ListMyRoomsRequest>,
    ) -> Reply<pb::ListMyRoomsResponse> {
        let (who, req) = split(request)?;
        reply(rooms::list_my_rooms(&self.state, &who, req).await)
    }

    async fn list_public_rooms(
        &self,
        request: Request<pb::ListPublicRoomsRequest>,
    ) -> Reply<pb::ListPublicRoomsResponse> {
        let (who, req) = split(request)?;
        reply(rooms::list_public_rooms(&self.state, &who, req).await)
    }

    async fn join_room(&self, request: Request<pb::JoinRoomRequest>) -> Reply<pb::Room> {
        let (who, req) = split(request)?;
        reply(rooms::join_room(&self.state, &who, req).await)
    }

    async fn leave_room(
        &self,
        request: Request<pb::LeaveRoomRequest>,
    ) -> Reply<pb::LeaveRoomResponse> {
        let (who, req) = split(request)?;
        reply(rooms::leave_room(&self.state, &who, req).await)
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Reply<pb::ListMembersResponse> {
        let (who, req) = split(request)?;
        reply(rooms::list_members(&self.state, &who, req).await)
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Reply<pb::AddMemberResponse> {
        let (who, req) = split(request)?;
        reply(rooms::add_member(&self.state, &who, req).await)
    }

    async fn moderate(&self, request: Request<pb::ModerateRequest>) -> Reply<pb::ModerateResponse> {
        let (who, req) = split(request)?;
        reply(moderation::moderate(&self.state, &who, req).await)
    }

    async fn open_direct(
        &self,
        request: Request<pb::OpenDirectRequest>,
    ) -> Reply<pb::OpenDirectResponse> {
        let (who, req) = split(request)?;
        reply(direct::open_direct(&self.state, &who, req).await)
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Reply<pb::SendMessageResponse> {
        let (who, req) = split(request)?;
        reply(messages::send(&self.state, &who, req).await)
    }

    async fn edit_message(&self, request: Request<pb::EditMessageRequest>) -> Reply<pb::Message> {
        let (who, req) = split(request)?;
        reply(messages::edit(&self.state, &who, req).await)
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Reply<pb::Message> {
        let (who, req) = split(request)?;
        reply(messages::delete(&self.state, &who, req).await)
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Reply<pb::HistoryResponse> {
        let (who, req) = split(request)?;
        reply(messages::history(&self.state, &who, req).await)
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Reply<pb::MarkReadResponse> {
        let (who, req) = split(request)?;
        reply(messages::mark_read(&self.state, &who, req).await)
    }

    async fn upload_attachment(
        &self,
        request: Request<Streaming<pb::UploadAttachmentRequest>>,
    ) -> Reply<pb::Attachment> {
        let (who, parts) = split(request)?;
        attachments::upload(&self.state, &who, parts)
            .await
            .map(Response::new)
    }

    type DownloadAttachmentStream = DownloadStream;

    async fn download_attachment(
        &self,
        request: Request<pb::DownloadAttachmentRequest>,
    ) -> Reply<Self::DownloadAttachmentStream> {
        let (who, req) = split(request)?;
        reply(attachments::download(&self.state, &who, req).await)
    }
}
