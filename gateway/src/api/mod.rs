//! HTTP routing and the extractors every handler shares.

mod frames;
mod http;
mod web;
mod ws;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chat_common::token::{Claims, TokenError};
use chat_proto::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", http::router(&state))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The whole process's registry: in the embedded `chat` process the
        // services' series too.
        .route("/metrics", get(chat_common::metrics::scrape))
        .merge(web::router())
        .with_state(state)
}

/// The caller of an authenticated call, from `Authorization: Bearer`.
pub struct AuthUser(pub Claims);

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn verify(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    state.keys.verify(token).map_err(|e| match e {
        TokenError::Expired => {
            ApiError::new(ErrorCode::Unauthorized, "the access token has expired")
        }
        TokenError::Invalid => ApiError::unauthorized(),
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        Ok(AuthUser(verify(state, token)?))
    }
}

/// A JSON body whose rejections are protocol errors (`invalid_argument`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::invalid(rejection.body_text())),
        }
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when not draining and every service answers its health check.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    let mut services = serde_json::Map::new();
    let mut ready = true;
    for (name, channel) in &state.services.channels {
        let mut client = HealthClient::new(channel.clone());
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        let serving = matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), check).await,
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32
        );
        ready &= serving;
        services.insert(
            (*name).to_owned(),
            json!(if serving { "serving" } else { "unavailable" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "unavailable" }, "services": services});
    (status, Json(body))
}
