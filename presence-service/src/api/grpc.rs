//! The `chat.presence.v1.PresenceService` handlers: parse the request,
//! call the use case, convert the answer.

use std::collections::HashSet;
use std::sync::Arc;

use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::presence_service_server::PresenceService;
use tonic::{Request, Response, Status};

use super::convert;
use crate::app::App;
use crate::domain::{ConnectionId, GatewayId, RoomId, UserId};

pub(crate) struct PresenceApi {
    app: Arc<App>,
}

impl PresenceApi {
    pub fn new(app: Arc<App>) -> PresenceApi {
        PresenceApi { app }
    }
}

#[tonic::async_trait]
impl PresenceService for PresenceApi {
    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id, connection_id = %request.get_ref().connection_id, gateway_id = %request.get_ref().gateway_id))]
    async fn add_connection(
        &self,
        request: Request<pb::AddConnectionRequest>,
    ) -> Result<Response<pb::AddConnectionResponse>, Status> {
        let r = request.into_inner();
        let user_id = UserId::parse(r.user_id).map_err(crate::Error::from)?;
        let connection_id = ConnectionId::parse(r.connection_id).map_err(crate::Error::from)?;
        let gateway_id = GatewayId::parse(r.gateway_id).map_err(crate::Error::from)?;
        let room_ids = convert::room_ids(r.room_ids).map_err(crate::Error::from)?;
        let connected = self
            .app
            .add_connection(user_id, connection_id, gateway_id, room_ids)
            .await?;
        Ok(Response::new(pb::AddConnectionResponse {
            presence: Some(convert::presence(connected.presence)),
            came_online: connected.came_online,
            notifications: connected
                .notifications
                .into_iter()
                .map(convert::notification)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(gateway_id = %request.get_ref().gateway_id, connections = request.get_ref().connection_ids.len()))]
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let gateway_id = GatewayId::parse(r.gateway_id).map_err(crate::Error::from)?;
        let ids: Vec<ConnectionId> = r
            .connection_ids
            .iter()
            .filter_map(|id| ConnectionId::parse(id.as_str()).ok())
            .collect();
        let expired: HashSet<String> = self
            .app
            .heartbeat(gateway_id, ids)
            .await?
            .into_iter()
            .map(String::from)
            .collect();
        // In request order; an id that cannot be a connection is unknown by
        // definition.
        let unknown = r
            .connection_ids
            .into_iter()
            .filter(|id| ConnectionId::parse(id.as_str()).is_err() || expired.contains(id))
            .collect();
        Ok(Response::new(pb::HeartbeatResponse {
            unknown_connection_ids: unknown,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id, connection_id = %request.get_ref().connection_id))]
    async fn remove_connection(
        &self,
        request: Request<pb::RemoveConnectionRequest>,
    ) -> Result<Response<pb::RemoveConnectionResponse>, Status> {
        let r = request.into_inner();
        let user_id = UserId::parse(r.user_id).map_err(crate::Error::from)?;
        let connection_id = ConnectionId::parse(r.connection_id).map_err(crate::Error::from)?;
        let done = self.app.remove_connection(user_id, connection_id).await?;
        Ok(Response::new(pb::RemoveConnectionResponse {
            presence: Some(convert::presence(done.presence)),
            went_offline: done.went_offline,
        }))
    }

    #[tracing::instrument(skip_all, fields(users = request.get_ref().user_ids.len()))]
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        let user_ids =
            convert::user_ids(request.into_inner().user_ids).map_err(crate::Error::from)?;
        let users = self.app.presence(user_ids).await?;
        Ok(Response::new(pb::GetPresenceResponse {
            users: users.into_iter().map(convert::presence).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(room = %request.get_ref().room, user_id = %request.get_ref().user_id))]
    async fn typing(
        &self,
        request: Request<pb::TypingRequest>,
    ) -> Result<Response<pb::TypingResponse>, Status> {
        let r = request.into_inner();
        let room = RoomId::parse(r.room).map_err(crate::Error::from)?;
        let user_id = UserId::parse(r.user_id).map_err(crate::Error::from)?;
        self.app.typing(room, user_id, r.username).await?;
        Ok(Response::new(pb::TypingResponse {}))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id, rooms = request.get_ref().room_ids.len()))]
    async fn set_rooms(
        &self,
        request: Request<pb::SetRoomsRequest>,
    ) -> Result<Response<pb::SetRoomsResponse>, Status> {
        let r = request.into_inner();
        let user_id = UserId::parse(r.user_id).map_err(crate::Error::from)?;
        let room_ids = convert::room_ids(r.room_ids).map_err(crate::Error::from)?;
        self.app.set_rooms(user_id, room_ids).await?;
        Ok(Response::new(pb::SetRoomsResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_online(
        &self,
        _request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        let users = self.app.list_online().await?;
        Ok(Response::new(pb::ListOnlineResponse {
            users: users.into_iter().map(convert::online_user).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let r = request.into_inner();
        let user_id = UserId::parse(r.user_id).map_err(crate::Error::from)?;
        let notifications = self.app.notifications(user_id, r.include_delivered).await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: notifications
                .into_iter()
                .map(convert::notification)
                .collect(),
        }))
    }
}
