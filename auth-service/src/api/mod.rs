//! The gRPC handlers of `chat.auth.v1.AuthService`. Each handler parses its
//! request into domain types, does its work through the store port, and
//! maps errors once through [`AuthError`].

mod admin;
mod convert;

use std::collections::HashMap;

use chat_common::db::now_ms;
use chat_common::identity::Identity;
use chat_common::pubsub::channels;
use chat_common::token::TokenError;
use chat_proto::auth::v1::auth_service_server::AuthService;
use chat_proto::auth::v1::{
    AuthResponse, ChangePasswordRequest, ChangePasswordResponse, GetRevokedSessionsRequest,
    GetRevokedSessionsResponse, GetUserRequest, GetUsersRequest, GetUsersResponse, LoginRequest,
    LogoutRequest, LogoutResponse, RefreshRequest, RegisterRequest, RevokedSessions,
    SearchUsersRequest, SearchUsersResponse, UpdateProfileRequest, User as PbUser,
    ValidateTokenRequest, ValidateTokenResponse,
};
use chat_proto::events::v1::{ForceDisconnect, UserEvent, user_event};
use prost::Message as _;
use tonic::{Request, Response, Status};
use tracing::Span;

use crate::domain::{
    DisplayName, MAX_USERNAME_LEN, Password, PasswordHash, RefreshToken, Role, User, Username,
};
use crate::error::AuthError;
use crate::state::AppState;
use crate::store::{NewRefreshToken, NewUser, Rotation, UserSessions};
use crate::throttle::LoginThrottle;

pub use admin::AdminApi;
pub use convert::user_to_proto;

/// WebSocket close codes (PROTOCOL.md) of the `disconnect` events: the
/// account is disabled; the user's sessions were signed out.
pub const CLOSE_DISABLED: u32 = 4003;
pub const CLOSE_SIGNED_OUT: u32 = 4001;

/// Search results per call when the request says 0.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// Ids per `GetUsers` and `GetRevokedSessions` call.
pub const MAX_GET_USERS: usize = 1000;

/// How much longer than its lifetime an access token may be accepted: the
/// verifiers' leeway (5 s) and clock skew between hosts, with room to spare.
const ACCESS_TOKEN_SLACK_MS: i64 = 60_000;

#[derive(Clone)]
pub struct AuthApi {
    state: AppState,
}

impl AuthApi {
    pub fn new(state: AppState) -> AuthApi {
        AuthApi { state }
    }

    /// A fresh access token and a refresh token of a new family.
    async fn sign_in(&self, user: User) -> Result<AuthResponse, AuthError> {
        let refresh = RefreshToken::generate();
        let now = now_ms();
        let family_id = uuid::Uuid::now_v7().to_string();
        self.state
            .store
            .insert_refresh_token(NewRefreshToken {
                hash: refresh.hash(),
                family_id: family_id.clone(),
                user_id: user.id.clone(),
                expires_at_ms: self.refresh_expiry(now),
                created_at_ms: now,
            })
            .await?;
        self.auth_response(user, refresh, &family_id)
    }

    /// The access token of sign-in session `family_id` and its refresh
    /// token.
    fn auth_response(
        &self,
        user: User,
        refresh: RefreshToken,
        family_id: &str,
    ) -> Result<AuthResponse, AuthError> {
        let identity = Identity {
            user_id: user.id.clone(),
            username: user.username.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
        };
        let access_token = self
            .state
            .keys
            .sign(
                &identity,
                user.role.as_str(),
                family_id,
                self.state.access_token_ttl_s,
            )
            .map_err(|e| AuthError::internal("signing an access token", e))?;
        Ok(AuthResponse {
            user: Some(user_to_proto(user)),
            access_token,
            refresh_token: refresh.into_string(),
            expires_in: self.state.access_token_ttl_s,
        })
    }

    fn refresh_expiry(&self, now_ms: i64) -> i64 {
        now_ms.saturating_add(self.state.refresh_token_ttl_s.saturating_mul(1000))
    }

    /// Verifies `password` against `hash` on a blocking thread.
    async fn verify(&self, password: Password, hash: PasswordHash) -> Result<bool, AuthError> {
        blocking("verifying a password", move || password.verify(&hash)).await
    }

    /// Spends the time of one verification without a user to verify, so
    /// that an unknown username answers as slowly as a wrong password.
    async fn verify_dummy(&self, password: Password) -> Result<(), AuthError> {
        let hash = self
            .state
            .dummy_hash
            .get_or_try_init(|| async {
                let random = Password::parse(&RefreshToken::generate().into_string(), "password")?;
                blocking("hashing the dummy password", move || random.hash()).await
            })
            .await?
            .clone();
        self.verify(password, hash).await.map(|_| ())
    }

    /// Tells every gateway to close the user's sockets with `close_code`:
    /// those of the sign-in sessions `session_ids`, or all when it is
    /// empty; gateways also forget what they cached of the user's revoked
    /// sessions. Best effort: pub/sub is at-most-once, and the gateways'
    /// periodic re-validation catches what this misses.
    async fn disconnect_sockets(
        &self,
        user_id: &str,
        close_code: u32,
        reason: &str,
        session_ids: Vec<String>,
    ) {
        let event = UserEvent {
            user_id: user_id.to_owned(),
            event: Some(user_event::Event::Disconnect(ForceDisconnect {
                close_code,
                reason: reason.to_owned(),
                session_ids,
            })),
        };
        let channel = channels::user(user_id);
        let payload = bytes::Bytes::from(event.encode_to_vec());
        if let Err(error) = self.state.pubsub.publish(&channel, payload).await {
            tracing::warn!(%error, "cannot publish a disconnect; gateways re-validate later");
        }
    }

    async fn acting_user(&self, identity: &Identity) -> Result<User, AuthError> {
        let user = self
            .state
            .store
            .user_by_id(&identity.user_id)
            .await?
            .ok_or(AuthError::UnknownActingUser)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok(user)
    }

    async fn register(&self, request: RegisterRequest) -> Result<AuthResponse, AuthError> {
        let username = Username::parse(&request.username)?;
        let password = Password::parse(&request.password, "password")?;
        // An absent or blank display name means "use my username".
        let display_name = match request.display_name.as_deref().map(str::trim) {
            None | Some("") => DisplayName::from_username(&username),
            Some(name) => DisplayName::parse(name)?,
        };
        // A bootstrap admin's account is an admin from the start.
        let role = if self.state.admin_usernames.contains(&username) {
            Role::Admin
        } else {
            Role::User
        };
        let password_hash = blocking("hashing a password", move || password.hash()).await?;
        let user = self
            .state
            .store
            .create_user(NewUser {
                id: uuid::Uuid::now_v7().to_string(),
                username,
                display_name,
                password_hash,
                role,
                created_at_ms: now_ms(),
            })
            .await?;
        Span::current().record("user_id", user.id.as_str());
        tracing::info!("user registered");
        self.sign_in(user).await
    }

    /// Signs a user in, unless the account name or the client address
    /// (`client_addr`, when the gateway passed one) has failed too often.
    async fn login(
        &self,
        request: LoginRequest,
        client_addr: Option<&str>,
    ) -> Result<AuthResponse, AuthError> {
        let throttle = &self.state.login_throttle;
        let account = LoginThrottle::account_key(&request.username);
        // Refused before the password is looked at, so a throttled guess
        // learns nothing, and whether or not the account exists.
        if throttle.is_throttled(&account, client_addr) {
            tracing::warn!(client_addr, "login refused: too many failures");
            return Err(AuthError::LoginThrottled);
        }
        let result = self.check_login(request).await;
        match &result {
            Err(AuthError::BadCredentials) => throttle.record_failure(&account, client_addr),
            // A disabled account's right password ends the streak too.
            Ok(_) | Err(AuthError::Disabled) => throttle.record_success(&account),
            Err(_) => {}
        }
        result
    }

    async fn check_login(&self, request: LoginRequest) -> Result<AuthResponse, AuthError> {
        // Names are stored lowercase; accept any case at the door.
        let username = Username::parse(&request.username.to_lowercase()).ok();
        // A password breaking the length rule cannot match any stored one.
        let Ok(password) = Password::parse(&request.password, "password") else {
            return Err(AuthError::BadCredentials);
        };
        let credentials = match &username {
            Some(username) => self.state.store.credentials_by_username(username).await?,
            None => None,
        };
        let Some((user, hash)) = credentials else {
            self.verify_dummy(password).await?;
            return Err(AuthError::BadCredentials);
        };
        if !self.verify(password, hash).await? {
            return Err(AuthError::BadCredentials);
        }
        Span::current().record("user_id", user.id.as_str());
        // Only after the password: the disabled state is nobody else's business.
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        self.sign_in(user).await
    }

    async fn refresh(&self, request: RefreshRequest) -> Result<AuthResponse, AuthError> {
        if request.refresh_token.is_empty() {
            return Err(AuthError::BadRefreshToken);
        }
        let presented = RefreshToken::presented(&request.refresh_token).hash();
        let next = RefreshToken::generate();
        let now = now_ms();
        let rotation = self
            .state
            .store
            .rotate_refresh_token(&presented, &next.hash(), self.refresh_expiry(now), now)
            .await?;
        let (user_id, family_id) = match rotation {
            Rotation::Rotated { user_id, family_id } => (user_id, family_id),
            Rotation::Reused { family_id } => {
                tracing::warn!(%family_id, "spent refresh token presented again; family revoked");
                if let Some(owner) = self.state.store.refresh_token_owner(&presented).await? {
                    self.disconnect_sockets(
                        &owner,
                        CLOSE_SIGNED_OUT,
                        "session revoked",
                        vec![family_id],
                    )
                    .await;
                }
                return Err(AuthError::BadRefreshToken);
            }
            Rotation::Invalid => {
                // Disabling revoked the user's tokens; say why instead of a
                // bare "invalid", so a client stops retrying and can tell
                // the person.
                if let Some(owner) = self.state.store.refresh_token_owner(&presented).await?
                    && let Some(user) = self.state.store.user_by_id(&owner).await?
                    && user.disabled
                {
                    return Err(AuthError::Disabled);
                }
                return Err(AuthError::BadRefreshToken);
            }
        };
        Span::current().record("user_id", user_id.as_str());
        let Some(user) = self.state.store.user_by_id(&user_id).await? else {
            return Err(AuthError::BadRefreshToken);
        };
        if user.disabled {
            self.state.store.revoke_family(&family_id, now).await?;
            return Err(AuthError::Disabled);
        }
        self.auth_response(user, next, &family_id)
    }

    /// Ends the refresh token's session, or with `everywhere` every session
    /// of its owner, which then needs the token to be live: a spent or
    /// revoked one, as a thief may hold, cannot sign its owner out.
    async fn logout(&self, request: LogoutRequest) -> Result<LogoutResponse, AuthError> {
        let session = if request.refresh_token.is_empty() {
            None
        } else {
            let hash = RefreshToken::presented(&request.refresh_token).hash();
            self.state
                .store
                .refresh_token_session(&hash, now_ms())
                .await?
        };
        if request.everywhere {
            let Some(session) = session.filter(|s| s.live) else {
                return Err(AuthError::BadRefreshToken);
            };
            Span::current().record("user_id", session.user_id.as_str());
            self.state
                .store
                .revoke_user_sessions(&session.user_id, now_ms())
                .await?;
            tracing::info!("signed out everywhere");
            self.disconnect_sockets(
                &session.user_id,
                CLOSE_SIGNED_OUT,
                "signed out everywhere",
                Vec::new(),
            )
            .await;
        } else if let Some(session) = session {
            Span::current().record("user_id", session.user_id.as_str());
            self.state
                .store
                .revoke_family(&session.family_id, now_ms())
                .await?;
            self.disconnect_sockets(
                &session.user_id,
                CLOSE_SIGNED_OUT,
                "signed out",
                vec![session.family_id],
            )
            .await;
        }
        Ok(LogoutResponse {})
    }

    async fn change_password(
        &self,
        identity: Identity,
        request: ChangePasswordRequest,
    ) -> Result<ChangePasswordResponse, AuthError> {
        let new_password = Password::parse(&request.new_password, "new_password")?;
        let (user, hash) = self
            .state
            .store
            .credentials_by_id(&identity.user_id)
            .await?
            .ok_or(AuthError::UnknownActingUser)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        let old_matches = match Password::parse(&request.old_password, "old_password") {
            Ok(old) => self.verify(old, hash).await?,
            Err(_) => false,
        };
        if !old_matches {
            return Err(AuthError::WrongOldPassword);
        }
        let new_hash = blocking("hashing a password", move || new_password.hash()).await?;
        if !self
            .state
            .store
            .set_password(&user.id, &new_hash, now_ms())
            .await?
        {
            return Err(AuthError::UnknownActingUser);
        }
        tracing::info!("password changed; sessions revoked");
        self.disconnect_sockets(&user.id, CLOSE_SIGNED_OUT, "password changed", Vec::new())
            .await;
        Ok(ChangePasswordResponse {})
    }

    async fn get_user(&self, request: GetUserRequest) -> Result<PbUser, AuthError> {
        self.state
            .store
            .user_by_id(&request.user_id)
            .await?
            .map(user_to_proto)
            .ok_or(AuthError::UserNotFound)
    }

    async fn get_users(&self, request: GetUsersRequest) -> Result<GetUsersResponse, AuthError> {
        if request.user_ids.len() > MAX_GET_USERS {
            return Err(AuthError::TooManyIds(MAX_GET_USERS));
        }
        // Answer in request order, each user once.
        let mut ids = request.user_ids;
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let mut found: HashMap<String, User> = self
            .state
            .store
            .users_by_ids(&ids)
            .await?
            .into_iter()
            .map(|user| (user.id.clone(), user))
            .collect();
        let users = ids
            .iter()
            .filter_map(|id| found.remove(id))
            .map(user_to_proto)
            .collect();
        Ok(GetUsersResponse { users })
    }

    async fn get_revoked_sessions(
        &self,
        request: GetRevokedSessionsRequest,
    ) -> Result<GetRevokedSessionsResponse, AuthError> {
        if request.user_ids.len() > MAX_GET_USERS {
            return Err(AuthError::TooManyIds(MAX_GET_USERS));
        }
        let issued_since = now_ms()
            .saturating_sub(self.state.access_token_ttl_s.saturating_mul(1000))
            .saturating_sub(ACCESS_TOKEN_SLACK_MS);
        let mut found: HashMap<String, UserSessions> = self
            .state
            .store
            .users_with_revoked_sessions(&request.user_ids, issued_since)
            .await?
            .into_iter()
            .map(|entry| (entry.user.id.clone(), entry))
            .collect();
        // Answer in request order, each id once: in `users` when it exists
        // (whatever its sessions), else in `unknown_user_ids`.
        let mut response = GetRevokedSessionsResponse::default();
        let mut seen = std::collections::HashSet::new();
        for id in request.user_ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match found.remove(&id) {
                Some(UserSessions { user, revoked }) => response.users.push(RevokedSessions {
                    user_id: id,
                    session_ids: revoked,
                    user: Some(user_to_proto(user)),
                }),
                None => response.unknown_user_ids.push(id),
            }
        }
        Ok(response)
    }

    async fn update_profile(
        &self,
        identity: Identity,
        request: UpdateProfileRequest,
    ) -> Result<PbUser, AuthError> {
        let display_name = DisplayName::parse(&request.display_name)?;
        let user = self.acting_user(&identity).await?;
        self.state
            .store
            .update_display_name(&user.id, &display_name)
            .await?
            .map(user_to_proto)
            .ok_or(AuthError::UnknownActingUser)
    }

    async fn search_users(
        &self,
        request: SearchUsersRequest,
    ) -> Result<SearchUsersResponse, AuthError> {
        let prefix = request.prefix.to_lowercase();
        let limit = match request.limit {
            0 => DEFAULT_SEARCH_LIMIT,
            n => n.min(MAX_SEARCH_LIMIT),
        };
        // No username is longer than the longest allowed name.
        if prefix.len() > MAX_USERNAME_LEN {
            return Ok(SearchUsersResponse { users: Vec::new() });
        }
        let users = self.state.store.search_users(&prefix, limit).await?;
        Ok(SearchUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
        })
    }

    async fn validate_token(
        &self,
        request: ValidateTokenRequest,
    ) -> Result<ValidateTokenResponse, AuthError> {
        let user = self.user_of_token(&request.access_token).await?;
        Ok(ValidateTokenResponse {
            user: Some(user_to_proto(user)),
        })
    }

    /// The current database row of an access token's user: refuses a bad,
    /// expired or revoked token, a deleted user and a disabled one.
    async fn user_of_token(&self, access_token: &str) -> Result<User, AuthError> {
        let claims = self.state.keys.verify(access_token).map_err(|e| match e {
            TokenError::Expired => AuthError::AccessTokenExpired,
            TokenError::Invalid => AuthError::BadAccessToken,
        })?;
        Span::current().record("user_id", claims.sub.as_str());
        let user = self
            .state
            .store
            .user_by_id(&claims.sub)
            .await?
            .ok_or(AuthError::BadAccessToken)?;
        // Disabling revokes every session too; say the more useful thing.
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        if self.state.store.is_session_revoked(&claims.sid).await? {
            return Err(AuthError::BadAccessToken);
        }
        Ok(user)
    }
}

/// Password hashes computed at once: one per core. Each Argon2 hash takes
/// about 19 MiB and a core for tens of milliseconds; without a bound, a
/// burst of logins would start a blocking thread per request, whose
/// allocator arenas keep that memory (hundreds of MiB were measured after
/// a burst) while the hashes compete for the same cores anyway.
static PASSWORD_WORK: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });

/// Runs CPU-heavy password work off the async threads, [`PASSWORD_WORK`]
/// at a time.
async fn blocking<T, E>(
    context: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, AuthError>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let _slot = PASSWORD_WORK
        .acquire()
        .await
        .map_err(|e| AuthError::internal(context, e))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuthError::internal(context, e))?
        .map_err(|e| AuthError::internal(context, e))
}

fn reply<T>(result: Result<T, AuthError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<AuthResponse>, Status> {
        reply(AuthApi::register(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<AuthResponse>, Status> {
        let client_addr = chat_common::identity::client_addr(request.metadata()).map(str::to_owned);
        reply(AuthApi::login(self, request.into_inner(), client_addr.as_deref()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<AuthResponse>, Status> {
        reply(AuthApi::refresh(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        reply(AuthApi::logout(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let identity = Identity::from_request(&request)?;
        Span::current().record("user_id", identity.user_id.as_str());
        reply(AuthApi::change_password(self, identity, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = %request.get_ref().user_id))]
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<PbUser>, Status> {
        reply(AuthApi::get_user(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().user_ids.len()))]
    async fn get_users(
        &self,
        request: Request<GetUsersRequest>,
    ) -> Result<Response<GetUsersResponse>, Status> {
        reply(AuthApi::get_users(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<PbUser>, Status> {
        let identity = Identity::from_request(&request)?;
        Span::current().record("user_id", identity.user_id.as_str());
        reply(AuthApi::update_profile(self, identity, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(limit = request.get_ref().limit))]
    async fn search_users(
        &self,
        request: Request<SearchUsersRequest>,
    ) -> Result<Response<SearchUsersResponse>, Status> {
        reply(AuthApi::search_users(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        reply(AuthApi::validate_token(self, request.into_inner()).await)
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().user_ids.len()))]
    async fn get_revoked_sessions(
        &self,
        request: Request<GetRevokedSessionsRequest>,
    ) -> Result<Response<GetRevokedSessionsResponse>, Status> {
        reply(AuthApi::get_revoked_sessions(self, request.into_inner()).await)
    }
}
