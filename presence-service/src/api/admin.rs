//! The `chat.presence.v1.AdminService` handlers: who is online and a
//! user's notifications, for admins only (see `chat_common::admin`).

use std::sync::Arc;

use chat_common::admin::AdminGuard;
use chat_proto::presence::v1 as pb;
use chat_proto::presence::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use super::convert;
use crate::app::App;
use crate::domain::UserId;

pub(crate) struct AdminApi {
    app: Arc<App>,
    guard: AdminGuard,
}

impl AdminApi {
    pub fn new(app: Arc<App>, guard: AdminGuard) -> AdminApi {
        AdminApi { app, guard }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty))]
    async fn list_online(
        &self,
        request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        let admin = self.guard.authorize(&request).await?;
        tracing::Span::current().record("admin_id", admin.user_id.as_str());
        let users = self.app.list_online().await?;
        Ok(Response::new(pb::ListOnlineResponse {
            users: users.into_iter().map(convert::online_user).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, user_id = %request.get_ref().user_id))]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let admin = self.guard.authorize(&request).await?;
        tracing::Span::current().record("admin_id", admin.user_id.as_str());
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
