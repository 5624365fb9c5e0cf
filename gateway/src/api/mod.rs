//! HTTP routing and the extractors every handler shares.

pub mod frames;
mod http;
mod web;
pub mod ws;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chat_common::token::{Claims, TokenError};
use chat_proto::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument as _;

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
        .route_layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// Runs each HTTP request in a span of its own, so the gRPC calls it makes
/// join one trace; a client that sends `traceparent` gets the request in its
/// own trace. Probes and scrapes get none: they would bury the traces of
/// client actions.
async fn trace_request(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    // The route, not the path: ids in paths would make every name unique.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(path, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    chat_common::trace_context::set_parent(
        &span,
        chat_common::trace_context::from_headers(request.headers()),
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
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
        let claims = verify(state, token)?;
        crate::revocation::check(state, &claims).await?;
        Ok(AuthUser(claims))
    }
}

/// The end user's client address: the socket peer, or with
/// `trust_forwarded_for` the last `X-Forwarded-For` entry (the one the
/// trusted proxy appended; earlier ones are whatever the client sent).
/// `None` when neither is known (a router served without connect info).
pub struct ClientAddr(pub Option<String>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for {
            let forwarded = last_forwarded_for(&parts.headers);
            if let Some(ip) = forwarded {
                return Ok(ClientAddr(Some(ip.to_string())));
            }
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            // The IP alone: the port changes with every connection.
            .map(|info| info.0.ip().to_canonical().to_string());
        Ok(ClientAddr(peer))
    }
}

/// The last `X-Forwarded-For` entry, if it is an IP address. Only the very
/// last: an unparseable one must not let an earlier, client-written entry
/// take its place.
fn last_forwarded_for(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim()
        .parse()
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for value in values {
            if let Ok(value) = value.parse() {
                headers.append("x-forwarded-for", value);
            }
        }
        last_forwarded_for(&headers).map(|ip| ip.to_string())
    }

    #[test]
    fn the_client_address_is_the_entry_the_proxy_appended() {
        assert_eq!(forwarded(&[]), None);
        assert_eq!(forwarded(&["203.0.113.5"]), Some("203.0.113.5".into()));
        assert_eq!(
            forwarded(&["10.9.9.9, 203.0.113.5"]),
            Some("203.0.113.5".into())
        );
        assert_eq!(
            forwarded(&["10.9.9.9", "2001:db8::7"]),
            Some("2001:db8::7".into())
        );
        // A forged or broken last entry is no address, not the one before.
        assert_eq!(forwarded(&["203.0.113.5, garbage"]), None);
    }
}
