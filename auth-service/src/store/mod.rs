//! Storage of users and refresh tokens. [`UserStore`] is the port the API
//! talks to; [`SqlUserStore`] is its one implementation, over SQLite or
//! PostgreSQL through `sqlx::AnyPool`.

mod sql;

pub use sql::{SqlUserStore, migrations};

use async_trait::async_trait;

use crate::domain::{DisplayName, PasswordHash, RefreshTokenHash, Role, User, Username};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A stored row breaks a rule the service enforces on the way in.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: Username,
    pub display_name: DisplayName,
    pub password_hash: PasswordHash,
    pub role: Role,
    pub created_at_ms: i64,
}

/// A refresh token to store (only its hash is kept).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub hash: RefreshTokenHash,
    /// Every rotation of one sign-in shares a family, so that reuse of a
    /// spent token can revoke all of them.
    pub family_id: String,
    pub user_id: String,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
}

/// What spending a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is now spent and its successor stored.
    Rotated { user_id: String, family_id: String },
    /// The token had already been spent: its whole family is now revoked.
    Reused { family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// The sign-in session of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSession {
    pub user_id: String,
    /// The refresh-token family: the `sid` of the session's access tokens.
    pub family_id: String,
    /// Neither spent, revoked nor expired.
    pub live: bool,
}

/// A user and their revoked sign-in sessions, as a verifier of their
/// access tokens needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSessions {
    pub user: User,
    /// Refresh-token families, in no particular order, each once.
    pub revoked: Vec<String>,
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates a user; [`StoreError::UsernameTaken`] when the name exists.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;

    /// The users among `ids` that exist, in no particular order.
    async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<User>, StoreError>;

    /// A user and their password hash, by username.
    async fn credentials_by_username(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, StoreError>;

    /// A user and their password hash, by id.
    async fn credentials_by_id(&self, id: &str)
    -> Result<Option<(User, PasswordHash)>, StoreError>;

    /// Up to `limit` users whose username starts with `prefix`, by username
    /// in byte order.
    async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, StoreError>;

    /// Up to `limit` users whose username starts with `prefix` and sorts
    /// after `after` (byte order; `""` for the first page), by username.
    async fn list_users(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;

    /// The updated user, `None` when there is no such user.
    async fn update_display_name(
        &self,
        id: &str,
        display_name: &DisplayName,
    ) -> Result<Option<User>, StoreError>;

    /// Sets the password hash and revokes every refresh token of the user,
    /// in one transaction. `false` when there is no such user.
    async fn set_password(
        &self,
        id: &str,
        hash: &PasswordHash,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Disables or re-enables a user; disabling revokes their refresh
    /// tokens. `false` when there is no such user.
    async fn set_disabled(&self, id: &str, disabled: bool, now_ms: i64)
    -> Result<bool, StoreError>;

    /// `false` when there is no such user.
    async fn set_role(&self, id: &str, role: Role) -> Result<bool, StoreError>;

    async fn insert_refresh_token(&self, token: NewRefreshToken) -> Result<(), StoreError>;

    /// Spends the token hashed `presented` and stores `next` (valid until
    /// `next_expires_at_ms`) in its family, in one transaction; on reuse of
    /// a spent token revokes the family instead.
    async fn rotate_refresh_token(
        &self,
        presented: &RefreshTokenHash,
        next: &RefreshTokenHash,
        next_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Rotation, StoreError>;

    /// The sign-in session a refresh token belongs to, whatever the
    /// token's state; `None` for a token never issued.
    async fn refresh_token_session(
        &self,
        hash: &RefreshTokenHash,
        now_ms: i64,
    ) -> Result<Option<TokenSession>, StoreError>;

    /// Revokes every refresh token of the user: ends all their sessions.
    async fn revoke_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// The users among `user_ids` that exist, each once and in no
    /// particular order, with their revoked sessions that issued a token at
    /// or after `issued_since_ms`: the only revoked sessions whose access
    /// tokens may still be unexpired.
    async fn users_with_revoked_sessions(
        &self,
        user_ids: &[String],
        issued_since_ms: i64,
    ) -> Result<Vec<UserSessions>, StoreError>;

    /// Whether the session (refresh-token family) has been revoked.
    async fn is_session_revoked(&self, family_id: &str) -> Result<bool, StoreError>;

    /// The user a refresh token was issued to, whatever its state (live,
    /// spent, revoked or expired); `None` for a token never issued.
    async fn refresh_token_owner(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<String>, StoreError>;

    /// Revokes every token of a family.
    async fn revoke_family(&self, family_id: &str, now_ms: i64) -> Result<(), StoreError>;
}
