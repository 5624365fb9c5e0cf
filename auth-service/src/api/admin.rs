//! The gRPC handlers of `chat.auth.v1.AdminService`: listing, finding,
//! disabling and re-enabling users and setting their role.
//!
//! Every call must carry an admin's access token (`authorization: Bearer`).
//! auth-service verifies it itself, with the signing key and the user's
//! current row (the same checks as `ValidateToken`), so a disabled or
//! demoted admin is refused at once.

use chat_common::admin::bearer_token;
use chat_common::db::now_ms;
use chat_proto::auth::v1::admin_service_server::AdminService;
use chat_proto::auth::v1::{
    FindUserRequest, ListUsersRequest, ListUsersResponse, SetDisabledRequest, SetRoleRequest,
    User as PbUser,
};
use tonic::{Request, Response, Status};
use tracing::Span;

use super::{AuthApi, reply, user_to_proto};
use crate::domain::{MAX_USERNAME_LEN, Role, User, Username, ValidationError};
use crate::error::AuthError;

/// Users per `ListUsers` page when the request says 0.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;

#[derive(Clone)]
pub struct AdminApi {
    api: AuthApi,
}

impl AdminApi {
    pub fn new(api: AuthApi) -> AdminApi {
        AdminApi { api }
    }

    /// The admin making the call, or why the call is refused.
    async fn admin<T>(&self, request: &Request<T>) -> Result<User, AuthError> {
        let token = bearer_token(request.metadata()).ok_or(AuthError::NoBearer)?;
        let user = self.api.user_of_token(token).await?;
        Span::current().record("admin_id", user.id.as_str());
        if user.role != Role::Admin {
            tracing::warn!(user_id = %user.id, "admin call by a user who is not an admin");
            return Err(AuthError::NotAdmin);
        }
        Ok(user)
    }

    /// A user by id, else by username.
    async fn find(&self, key: &str) -> Result<User, AuthError> {
        let store = &self.api.state.store;
        if let Some(user) = store.user_by_id(key).await? {
            return Ok(user);
        }
        let Ok(username) = Username::parse(&key.to_lowercase()) else {
            return Err(AuthError::UserNotFound);
        };
        store
            .credentials_by_username(&username)
            .await?
            .map(|(user, _hash)| user)
            .ok_or(AuthError::UserNotFound)
    }

    /// The user's row after a change; gone meanwhile is `not_found`.
    async fn reload(&self, id: &str) -> Result<PbUser, AuthError> {
        self.api
            .state
            .store
            .user_by_id(id)
            .await?
            .map(user_to_proto)
            .ok_or(AuthError::UserNotFound)
    }

    async fn list_users(&self, request: ListUsersRequest) -> Result<ListUsersResponse, AuthError> {
        let limit = match request.limit {
            0 => DEFAULT_LIST_LIMIT,
            n if n > MAX_LIST_LIMIT => {
                return Err(ValidationError::new("limit", "must be 1 to 1000").into());
            }
            n => n,
        };
        let prefix = request.prefix.to_lowercase();
        if prefix.len() > MAX_USERNAME_LEN {
            return Ok(ListUsersResponse::default());
        }
        // One more than asked, to know whether another page follows.
        let mut users = self
            .api
            .state
            .store
            .list_users(&prefix, &request.after, limit + 1)
            .await?;
        let more = users.len() > limit as usize;
        users.truncate(limit as usize);
        let next_after = match users.last() {
            Some(last) if more => last.username.as_str().to_owned(),
            _ => String::new(),
        };
        Ok(ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
            next_after,
        })
    }

    async fn set_disabled(
        &self,
        admin: &User,
        request: SetDisabledRequest,
    ) -> Result<PbUser, AuthError> {
        let user = self.find(&request.user).await?;
        Span::current().record("target_id", user.id.as_str());
        if user.id == admin.id && request.disabled {
            return Err(AuthError::SelfLockout);
        }
        if !self
            .api
            .state
            .store
            .set_disabled(&user.id, request.disabled, now_ms())
            .await?
        {
            return Err(AuthError::UserNotFound);
        }
        tracing::info!(
            disabled = request.disabled,
            "user disabled state set by an admin"
        );
        if request.disabled {
            self.api
                .disconnect_sockets(
                    &user.id,
                    super::CLOSE_DISABLED,
                    "account disabled",
                    Vec::new(),
                )
                .await;
        }
        self.reload(&user.id).await
    }

    async fn set_role(&self, admin: &User, request: SetRoleRequest) -> Result<PbUser, AuthError> {
        let role = Role::parse(&request.role)
            .ok_or_else(|| ValidationError::new("role", "must be \"user\" or \"admin\""))?;
        let user = self.find(&request.user).await?;
        Span::current().record("target_id", user.id.as_str());
        if user.id == admin.id && role != Role::Admin {
            return Err(AuthError::SelfLockout);
        }
        if !self.api.state.store.set_role(&user.id, role).await? {
            return Err(AuthError::UserNotFound);
        }
        tracing::info!(role = role.as_str(), "user role set by an admin");
        self.reload(&user.id).await
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty))]
    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        self.admin(&request).await?;
        reply(AdminApi::list_users(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty))]
    async fn find_user(
        &self,
        request: Request<FindUserRequest>,
    ) -> Result<Response<PbUser>, Status> {
        self.admin(&request).await?;
        reply(
            self.find(&request.into_inner().user)
                .await
                .map(user_to_proto),
        )
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, target_id = tracing::field::Empty))]
    async fn set_disabled(
        &self,
        request: Request<SetDisabledRequest>,
    ) -> Result<Response<PbUser>, Status> {
        let admin = self.admin(&request).await?;
        reply(AdminApi::set_disabled(self, &admin, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(admin_id = tracing::field::Empty, target_id = tracing::field::Empty))]
    async fn set_role(&self, request: Request<SetRoleRequest>) -> Result<Response<PbUser>, Status> {
        let admin = self.admin(&request).await?;
        reply(AdminApi::set_role(self, &admin, request.into_inner()).await)
    }
}
