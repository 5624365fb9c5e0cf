//! The protocol's error codes and their one mapping to and from gRPC status.
//!
//! Several protocol codes share a gRPC code (`muted` and `forbidden` are both
//! "permission denied" to a generic gRPC client), so the exact protocol code
//! also travels in the `x-error-code` metadata entry of the status.

use tonic::{Code, Status, metadata::MetadataValue};

/// The metadata entry of a status that carries the protocol's error code.
pub const ERROR_CODE_KEY: &str = "x-error-code";

/// The error codes of the public client protocol (HTTP and WebSocket alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    InvalidArgument,
    Conflict,
    RateLimited,
    Muted,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::InvalidArgument,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::Muted,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as written in the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Muted => "muted",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::Muted => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidArgument => 400,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorCode::Unauthorized => Code::Unauthenticated,
            ErrorCode::Forbidden | ErrorCode::Muted => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::Conflict => Code::AlreadyExists,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::TooLarge => Code::OutOfRange,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// A status carrying this code and a message safe to show a client.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::new(self.grpc_code(), message);
        status
            .metadata_mut()
            .insert(ERROR_CODE_KEY, MetadataValue::from_static(self.as_str()));
        status
    }

    /// The protocol code of a status from any gRPC server: the exact code
    /// when the status carries one, else the closest match of its gRPC code.
    pub fn from_status(status: &Status) -> ErrorCode {
        if let Some(code) = status
            .metadata()
            .get(ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::parse)
        {
            return code;
        }
        match status.code() {
            Code::Unauthenticated => ErrorCode::Unauthorized,
            Code::PermissionDenied => ErrorCode::Forbidden,
            Code::NotFound => ErrorCode::NotFound,
            Code::InvalidArgument | Code::FailedPrecondition => ErrorCode::InvalidArgument,
            Code::AlreadyExists | Code::Aborted => ErrorCode::Conflict,
            Code::ResourceExhausted => ErrorCode::RateLimited,
            Code::OutOfRange => ErrorCode::TooLarge,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
            // No answer from the service at all: tonic reports a connection
            // that broke under a call as `Unknown` with the transport error
            // as its source. The call may succeed when tried again.
            Code::Unknown if std::error::Error::source(status).is_some() => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The canonical name of a gRPC status code, as grpcurl, the gRPC docs and
/// gRPC's own metrics write it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_a_status() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_status(&code.status("x")), code);
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn a_plain_status_maps_by_grpc_code() {
        assert_eq!(
            ErrorCode::from_status(&Status::permission_denied("no")),
            ErrorCode::Forbidden
        );
        assert_eq!(
            ErrorCode::from_status(&Status::unavailable("down")),
            ErrorCode::Unavailable
        );
        assert_eq!(
            ErrorCode::from_status(&Status::data_loss("?")),
            ErrorCode::Internal
        );
        // A service's own `Unknown` is still internal.
        assert_eq!(
            ErrorCode::from_status(&Status::unknown("?")),
            ErrorCode::Internal
        );
    }

    #[test]
    fn a_connection_broken_under_a_call_is_unavailable() {
        let broken = std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stream closed because of a broken pipe",
        );
        let status = Status::from_error(Box::new(broken));
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::Unavailable);
    }
}
