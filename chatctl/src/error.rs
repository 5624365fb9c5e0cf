//! Why a command failed, as a message naming the service involved and as
//! the exit code documented in `chatctl --help` (`crate::cli::EXIT_CODES`).

use std::fmt;

use chat_proto::ErrorCode;
use tonic::{Code, Status};

/// One of the services chatctl talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Auth,
    Message,
    Presence,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Auth, Service::Message, Service::Presence];

    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth-service",
            Service::Message => "message-service",
            Service::Presence => "presence-service",
        }
    }
}

#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or a missing credential.
    Usage(String),
    /// The service did not answer: refused connection, timeout, reset.
    Unreachable {
        service: Service,
        addr: String,
        detail: String,
    },
    /// The service answered with an error.
    Refused {
        service: Service,
        status: Status,
    },
    /// `health` found a service that is not serving.
    Unhealthy(String),
    Other(anyhow::Error),
}

impl Failure {
    /// The failure of a call to `service` at `addr`.
    pub fn from_status(service: Service, addr: &str, status: Status) -> Failure {
        // Our servers put `x-error-code` on every error they send; a status
        // without it and with one of these codes was made by the client's
        // transport, so the service was not reached.
        let from_server = status.metadata().get(chat_proto::ERROR_CODE_KEY).is_some();
        let transport = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        );
        if transport && !from_server {
            return Failure::Unreachable {
                service,
                addr: addr.to_owned(),
                detail: transport_detail(&status),
            };
        }
        Failure::Refused { service, status }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } | Failure::Unhealthy(_) => 3,
            Failure::Refused { status, .. } => match status.code() {
                Code::Unauthenticated => 4,
                Code::PermissionDenied => 5,
                Code::NotFound => 6,
                Code::Unavailable | Code::DeadlineExceeded => 3,
                _ => 7,
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Unhealthy(message) => f.write_str(message),
            Failure::Unreachable {
                service,
                addr,
                detail,
            } => write!(f, "{} is unreachable at {addr}: {detail}", service.name()),
            Failure::Refused { service, status } => write!(
                f,
                "{} refused the call: {} ({}): {}",
                service.name(),
                chat_proto::grpc_code_name(status.code()),
                ErrorCode::from_status(status),
                status.message()
            ),
            Failure::Other(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Other(error)
    }
}

/// The status message with the innermost cause, e.g. "tcp connect error:
/// Connection refused (os error 111)".
fn transport_detail(status: &Status) -> String {
    let mut root: Option<&(dyn std::error::Error + 'static)> = None;
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        root = Some(error);
        source = error.source();
    }
    match root {
        Some(root) if status.message() != root.to_string() => {
            format!("{}: {root}", status.message())
        }
        _ => status.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_print_both_codes_and_map_to_exit_codes() {
        let refused = Failure::from_status(
            Service::Message,
            "http://x:1",
            ErrorCode::Forbidden.status("the admin role is required"),
        );
        assert_eq!(
            refused.to_string(),
            "message-service refused the call: PERMISSION_DENIED (forbidden): the admin role is required"
        );
        assert_eq!(refused.exit_code(), 5);
        let codes: Vec<u8> = [
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Unavailable,
        ]
        .into_iter()
        .map(|c| Failure::from_status(Service::Auth, "a", c.status("m")).exit_code())
        .collect();
        assert_eq!(codes, [4, 6, 7, 3]);
    }

    #[test]
    fn a_transport_failure_is_unreachable() {
        let failure = Failure::from_status(
            Service::Presence,
            "http://127.0.0.1:9",
            Status::unavailable("tcp connect error"),
        );
        assert_eq!(
            failure.to_string(),
            "presence-service is unreachable at http://127.0.0.1:9: tcp connect error"
        );
        assert_eq!(failure.exit_code(), 3);
    }
}
