//! The gateway's one error type: a protocol error code and a message safe to
//! show a client, rendered as `{"error":{"code","message"}}` over HTTP and as
//! an `error` frame over WebSocket.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_proto::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, "missing or invalid access token")
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }
}

impl From<tonic::Status> for ApiError {
    /// Services already send client-safe messages for every code but
    /// `internal` and transport failures, which are logged here and replaced.
    fn from(status: tonic::Status) -> ApiError {
        let code = ErrorCode::from_status(&status);
        let message = match code {
            ErrorCode::Internal => {
                tracing::error!(status = ?status, "internal error from a service");
                "internal error".to_owned()
            }
            ErrorCode::Unavailable => {
                tracing::warn!(status = ?status, "a service is unavailable");
                "a service is unavailable, try again".to_owned()
            }
            _ => status.message().to_owned(),
        };
        ApiError { code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
