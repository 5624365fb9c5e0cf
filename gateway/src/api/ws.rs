//! `GET /ws`: the life of one WebSocket connection (PROTOCOL.md
//! "WebSocket"): origin check, authentication by header or first frame,
//! `ready`, then frames handled in order while a writer task drains the
//! connection's bounded queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_common::token::Claims;
use chat_proto::ErrorCode;
use chat_proto::message::v1::ListMyRoomsRequest;
use chat_proto::presence::v1::{AddConnectionRequest, RemoveConnectionRequest};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::frames;
use crate::conn::{Conn, close, close_reason};
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire;

/// How long a closing connection waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Frames the writer sends per flush at most, so one busy socket cannot
/// hog its task.
const WRITE_BATCH: usize = 64;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.is_draining() {
        return ApiError::new(ErrorCode::Unavailable, "the gateway is shutting down")
            .into_response();
    }
    if !origin_allowed(&headers, &state.config.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(ApiError::new(ErrorCode::Forbidden, "cross-site WebSocket refused").body()),
        )
            .into_response();
    }
    let header_token = super::bearer(&headers).map(str::to_owned);
    let limits = &state.config.limits;
    ws.max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| run(state, socket, header_token))
}

/// A browser's `Origin` must name the host it connects to (or be allowed
/// explicitly); clients that send no `Origin` are not browsers and pass.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == "*" || a == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

async fn run(state: AppState, socket: WebSocket, header_token: Option<String>) {
    let (sink, mut stream) = socket.split();
    let claims = match header_token {
        Some(token) => super::verify(&state, &token).ok(),
        None => first_frame_auth(&state, &mut stream).await,
    };
    let Some(claims) = claims else {
        close_now(sink, stream, close::UNAUTHORIZED).await;
        return;
    };
    let identity = claims.identity();

    let user = match super::http::get_user(&state, &claims.sub).await {
        Ok(user) if user.disabled => {
            close_now(sink, stream, close::FORBIDDEN).await;
            return;
        }
        Ok(user) => user,
        Err(e) => {
            close_now(sink, stream, setup_failure_code(&e)).await;
            return;
        }
    };
    let my_rooms = match state
        .services
        .messages
        .clone()
        .list_my_rooms(identity.request(ListMyRoomsRequest {}))
        .await
    {
        Ok(reply) => reply.into_inner().rooms,
        Err(status) => {
            close_now(sink, stream, setup_failure_code(&ApiError::from(status))).await;
            return;
        }
    };
    let room_ids: Vec<String> = my_rooms
        .iter()
        .filter_map(|r| r.room.as_ref().map(|room| room.id.clone()))
        .collect();

    let (tx, rx) = mpsc::channel(state.config.limits.send_queue_frames);
    let conn = Arc::new(Conn::new(
        state.next_conn_id(),
        uuid::Uuid::now_v7().to_string(),
        claims.sub.clone(),
        tx,
    ));
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        conn.clone(),
        state.config.limits.close_timeout,
    ));

    let notifications = match state
        .services
        .presence
        .clone()
        .add_connection(AddConnectionRequest {
            user_id: claims.sub.clone(),
            connection_id: conn.session_id.clone(),
            gateway_id: state.config.gateway_id.clone(),
            room_ids: room_ids.clone(),
        })
        .await
    {
        Ok(reply) => reply.into_inner().notifications,
        Err(status) => {
            // Presence is advisory: the chat works without it.
            tracing::warn!(%status, "presence unavailable at connect");
            Vec::new()
        }
    };
    let rooms: Vec<serde_json::Value> = my_rooms
        .iter()
        .filter_map(|r| {
            let room = r.room.as_ref()?;
            Some(json!({
                "id": room.id,
                "last_seq": room.last_seq,
                "last_read_seq": r.last_read_seq,
                "unread": r.unread,
            }))
        })
        .collect();
    let notifications: Vec<serde_json::Value> =
        notifications.iter().map(wire::notification).collect();
    conn.send_json(&json!({
        "type": "ready",
        "session_id": conn.session_id,
        "user": wire::user(&user),
        "rooms": rooms,
        "notifications": notifications,
    }));
    state.hub.register(conn.clone(), &room_ids).await;
    tracing::debug!(session = %conn.session_id, user = %claims.sub, "connection ready");

    read_loop(&state, &conn, &claims, &mut stream).await;

    state.hub.unregister(&conn).await;
    let request = RemoveConnectionRequest {
        user_id: claims.sub.clone(),
        connection_id: conn.session_id.clone(),
    };
    if let Err(status) = state
        .services
        .presence
        .clone()
        .remove_connection(request)
        .await
    {
        tracing::warn!(%status, "presence unavailable at disconnect");
    }
    // Make sure the writer finishes (sending a close frame if one is due).
    conn.close(close::NORMAL);
    drop(conn);
    let _ = writer.await;
}

/// Services down at connect: tell the client to come back later.
fn setup_failure_code(e: &ApiError) -> u16 {
    match e.code {
        ErrorCode::Unauthorized | ErrorCode::NotFound => close::UNAUTHORIZED,
        ErrorCode::Forbidden => close::FORBIDDEN,
        ErrorCode::Unavailable => close::TRY_AGAIN,
        _ => close::INTERNAL,
    }
}

/// Waits for `{"type":"auth","token":"..."}`; `None` on anything else or
/// after the auth timeout.
async fn first_frame_auth(state: &AppState, stream: &mut Stream) -> Option<Claims> {
    let first = tokio::time::timeout(state.config.limits.auth_timeout, async {
        loop {
            match stream.next().await? {
                Ok(Message::Text(text)) => return Some(text),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .ok()??;
    #[derive(serde::Deserialize)]
    struct AuthFrame {
        #[serde(rename = "type")]
        kind: String,
        token: String,
    }
    let frame: AuthFrame = serde_json::from_str(first.as_str()).ok()?;
    if frame.kind != "auth" {
        return None;
    }
    super::verify(state, &frame.token).ok()
}

/// Closes a connection that never became ready.
async fn close_now(mut sink: Sink, mut stream: Stream, code: u16) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(close_reason(code)),
    };
    if sink.send(Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

/// Writes queued frames in batches until the connection closes, then the
/// close frame. A client that stops reading blocks the socket write, so the
/// close must not wait for it: the pending write is abandoned (a frame is
/// either wholly in the WebSocket buffer or not at all) and the close frame
/// gets `close_timeout` to go out before the socket is dropped.
async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Message>,
    conn: Arc<Conn>,
    close_timeout: Duration,
) {
    let writing = async {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            let mut batch = 1;
            while batch < WRITE_BATCH {
                let Ok(frame) = rx.try_recv() else { break };
                if sink.feed(frame).await.is_err() {
                    return;
                }
                batch += 1;
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        biased;
        () = conn.closed() => {}
        () = writing => {}
    }
    let code = conn.close_code();
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(close_reason(code)),
    };
    let _ = tokio::time::timeout(close_timeout, sink.send(Message::Close(Some(frame)))).await;
}

/// Token bucket for incoming frames, plus the count of rejections that
/// marks a client as abusive.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    window_start: Instant,
    rejections: u32,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> RateLimit {
        let now = Instant::now();
        RateLimit {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: now,
            window_start: now,
            rejections: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Counts a rejection; true when the abuse threshold is reached.
    fn reject(&mut self, window: Duration, threshold: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) > window {
            self.window_start = now;
            self.rejections = 0;
        }
        self.rejections += 1;
        self.rejections >= threshold
    }
}

async fn read_loop(state: &AppState, conn: &Arc<Conn>, claims: &Claims, stream: &mut Stream) {
    let limits = &state.config.limits;
    let mut limiter = RateLimit::new(limits.frames_per_second, limits.frame_burst);
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.reset();
    let mut last_heard = Instant::now();
    let ctx = frames::Context {
        state,
        conn,
        identity: claims.identity(),
    };
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    None => return,
                    Some(Ok(Message::Text(text))) => {
                        if limiter.allow() {
                            frames::handle(&ctx, text.as_str()).await;
                        } else if limiter.reject(limits.abuse_window, limits.abuse_rejections) {
                            conn.close(close::POLICY);
                        } else {
                            frames::send_error(conn, None, &ApiError::new(ErrorCode::RateLimited, "too many frames, slow down")).await;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        frames::send_error(conn, None, &ApiError::invalid("binary frames are not supported; send JSON text")).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // Keep reading: the close reply is flushed as the
                        // stream winds down.
                    }
                    Some(Err(error)) => {
                        if is_too_big(&error) {
                            conn.close(close::TOO_BIG);
                            drain(stream).await;
                        }
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    conn.close(close::GOING_AWAY);
                    drain(stream).await;
                    return;
                }
                conn.send(Message::Ping(bytes::Bytes::new()));
            }
            () = conn.closed() => {
                drain(stream).await;
                return;
            }
        }
    }
}

/// Reads until the client answers our close (or the grace time ends).
async fn drain(stream: &mut Stream) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}
