//! The service's one error type and its one mapping to a gRPC status.

use chat_common::pubsub::PubSubError;
use chat_proto::ErrorCode;

use crate::domain::InvalidId;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("connection {0} belongs to another user")]
    ConnectionTaken(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    PubSub(#[from] PubSubError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::ConnectionTaken(id) => Error::ConnectionTaken(id.into()),
            other => Error::Store(other),
        }
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidId(_) => ErrorCode::InvalidArgument,
            Error::ConnectionTaken(_) => ErrorCode::Conflict,
            Error::Store(_) | Error::PubSub(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let code = error.code();
        match &error {
            // The caller's own mistake: the message is safe and useful.
            Error::InvalidId(_) | Error::ConnectionTaken(_) => code.status(error.to_string()),
            // A backend failure: logged with its cause, opaque to the caller.
            Error::Store(_) | Error::PubSub(_) => {
                tracing::error!(error = %error, "backend failure");
                code.status("presence backend unavailable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    #[test]
    fn errors_map_to_protocol_codes() {
        let invalid = UserId::parse("").map_err(Error::from).err();
        let status = invalid.map(tonic::Status::from);
        assert_eq!(
            status.as_ref().map(tonic::Status::code),
            Some(tonic::Code::InvalidArgument)
        );
        let down = tonic::Status::from(Error::from(StoreError::Unavailable("redis".into())));
        assert_eq!(down.code(), tonic::Code::Unavailable);
        assert!(!down.message().contains("redis"));
    }
}
