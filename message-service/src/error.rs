//! The one error type of the service and its single mapping to a gRPC
//! `Status` (through `chat_proto::ErrorCode`, so the exact protocol code
//! travels with it). Internal failures are logged with their cause chain and
//! reach the client as an opaque `internal`.

use chat_common::ErrorChain;
use chat_proto::ErrorCode;
use tonic::Status;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// A uniqueness rule was hit (an existing member, a concurrent duplicate).
    #[error("{0}")]
    Conflict(String),
    #[error("you are muted in this room")]
    Muted,
    #[error("{0}")]
    TooLarge(String),
    /// A backend is out of reach (pub/sub, auth-service, or the database
    /// while it is down or restarting): the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// The storage backend failed; never shown to clients.
    #[error("storage failure")]
    Storage(#[source] BoxError),
    /// A bug or corrupt data; never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::Forbidden(message.into())
    }

    /// This error once more, for each send of a batch that failed as a
    /// whole (crate::sends): the same code, so clients do the same.
    pub fn for_each_of_batch(&self) -> Error {
        match self {
            Error::Unavailable(message) => Error::Unavailable(message.clone()),
            Error::Conflict(message) => Error::Conflict(message.clone()),
            other => Error::Internal(other.to_string()),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Muted => ErrorCode::Muted,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Storage(_) | Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        if chat_common::db::is_connection_failure(&error) {
            // Logged here: the client only learns that it may retry.
            tracing::warn!(error = %ErrorChain(&error), "the database is unavailable");
            return Error::Unavailable("the database is unavailable, try again".into());
        }
        Error::Storage(Box::new(error))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = error.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %ErrorChain(&error), "request failed");
            return code.status("internal error");
        }
        code.status(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_opaque_to_clients() {
        let status = Status::from(Error::Internal("SELECT * FROM secrets".into()));
        assert_eq!(status.message(), "internal error");
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::Internal);
    }

    #[test]
    fn an_unreachable_database_is_unavailable_not_internal() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let status = Status::from(Error::from(error));
            assert_eq!(ErrorCode::from_status(&status), ErrorCode::Unavailable);
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), "the database is unavailable, try again");
        }
        let status = Status::from(Error::from(sqlx::Error::RowNotFound));
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::Internal);
    }

    #[test]
    fn client_errors_keep_their_code_and_message() {
        let status = Status::from(Error::Muted);
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::Muted);
        let status = Status::from(Error::TooLarge("too long".into()));
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::TooLarge);
        assert_eq!(status.message(), "too long");
    }
}
