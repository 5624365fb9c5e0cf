//! The one error type of the service and its one mapping to a gRPC status
//! (through the protocol's [`ErrorCode`]). Internal errors are logged here
//! with their cause chain and leave as an opaque `internal`.

use chat_common::ErrorChain;
use chat_proto::ErrorCode;
use tonic::Status;

use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("username is already taken")]
    UsernameTaken,
    /// Unknown user or wrong password: deliberately indistinguishable.
    #[error("invalid username or password")]
    BadCredentials,
    /// Unknown, expired, revoked or reused refresh token.
    #[error("invalid refresh token")]
    BadRefreshToken,
    #[error("invalid access token")]
    BadAccessToken,
    #[error("access token expired")]
    AccessTokenExpired,
    /// The acting user of a call no longer exists.
    #[error("unknown acting user")]
    UnknownActingUser,
    #[error("account disabled")]
    Disabled,
    /// Too many failed logins for the account or from the address; says
    /// nothing about whether the account exists.
    #[error("too many failed logins, try again later")]
    LoginThrottled,
    /// An admin call without `authorization: Bearer <token>`.
    #[error("{}", chat_common::admin::NO_BEARER)]
    NoBearer,
    /// An admin call by a user whose role is not admin.
    #[error("{}", chat_common::admin::NOT_ADMIN)]
    NotAdmin,
    /// An admin disabling or demoting themselves, which could leave the
    /// deployment without an admin.
    #[error("an admin cannot disable or demote themselves")]
    SelfLockout,
    #[error("wrong old password")]
    WrongOldPassword,
    #[error("user not found")]
    UserNotFound,
    #[error("too many user ids (at most {0})")]
    TooManyIds(usize),
    #[error(transparent)]
    Store(StoreError),
    /// Anything else that is our fault; `context` says what we were doing.
    #[error("{context}")]
    Internal {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AuthError {
    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> AuthError {
        AuthError::Internal {
            context,
            source: source.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Invalid(_) | AuthError::TooManyIds(_) | AuthError::SelfLockout => {
                ErrorCode::InvalidArgument
            }
            AuthError::UsernameTaken => ErrorCode::Conflict,
            AuthError::BadCredentials
            | AuthError::BadRefreshToken
            | AuthError::BadAccessToken
            | AuthError::AccessTokenExpired
            | AuthError::UnknownActingUser
            | AuthError::NoBearer => ErrorCode::Unauthorized,
            AuthError::Disabled | AuthError::WrongOldPassword | AuthError::NotAdmin => {
                ErrorCode::Forbidden
            }
            AuthError::UserNotFound => ErrorCode::NotFound,
            AuthError::LoginThrottled => ErrorCode::RateLimited,
            AuthError::Store(StoreError::Database(e))
                if chat_common::db::is_connection_failure(e) =>
            {
                ErrorCode::Unavailable
            }
            AuthError::Store(_) | AuthError::Internal { .. } => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> AuthError {
        match e {
            StoreError::UsernameTaken => AuthError::UsernameTaken,
            other => AuthError::Store(other),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        let code = e.code();
        match code {
            ErrorCode::Internal => {
                tracing::error!(error = %ErrorChain(&e), "internal error");
                code.status("internal error")
            }
            // Logged here: the caller only learns that it may retry.
            ErrorCode::Unavailable => {
                tracing::warn!(error = %ErrorChain(&e), "the database is unavailable");
                code.status("the database is unavailable, try again")
            }
            _ => code.status(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_not_internal() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let status = Status::from(AuthError::from(StoreError::Database(error)));
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(ErrorCode::from_status(&status), ErrorCode::Unavailable);
            assert_eq!(status.message(), "the database is unavailable, try again");
        }
        let status = Status::from(AuthError::from(StoreError::Database(
            sqlx::Error::RowNotFound,
        )));
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::Internal);
    }

    #[test]
    fn internal_errors_are_opaque() {
        let status = Status::from(AuthError::internal("hashing", "secret detail"));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let status = Status::from(AuthError::from(ValidationError::new(
            "username",
            "too short",
        )));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "username: too short");
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::InvalidArgument);
    }
}
