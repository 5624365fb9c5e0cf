//! `GET /ws`: the life of one WebSocket connection (PROTOCOL.md
//! "WebSocket"): origin check, authentication by header or first frame,
//! `ready`, then frames handled in order while a writer task drains the
//! connection's bounded queue.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
use tokio::task::JoinHandle;

use super::frames;
use crate::config::Limits;
use crate::conn::{Conn, Outbound, close, close_reason};
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;
use crate::wire;

/// How long a closing connection waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Frames the writer sends per flush at most, so one busy socket cannot
/// hog its task.
const WRITE_BATCH: usize = 64;
/// Bytes of frames gathered before they are written to the socket, within
/// one batch.
const WRITE_BUFFER: usize = 4 * 1024;

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
    let sockets = state.sockets.clone();
    configure(ws, &state.config.limits)
        .on_upgrade(move |socket| sockets.track_future(run(state, socket, header_token)))
}

/// The WebSocket settings of every client socket: frame and message size
/// limits, and buffers. Public so that the conformance harness runs the
/// Autobahn cases against exactly these settings.
pub fn configure(ws: WebSocketUpgrade, limits: &Limits) -> WebSocketUpgrade {
    ws.max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        // Client frames are small; a larger one grows the buffer to its
        // size. Every idle socket keeps this much, so it stays small.
        .read_buffer_size(512)
        // Frames fed in one write batch leave in one `write` call up to
        // this size: under fan-out load the writer finds several queued
        // frames, and a system call per frame would cost more than the
        // frames. Small, as a socket keeps the buffer once grown.
        .write_buffer_size(WRITE_BUFFER)
        // No cap of its own: a frame must fit whole (a history page of the
        // largest messages is over 1.5 MB), and the buffer holds at most
        // one frame beyond `WRITE_BUFFER`, as the writer flushes when it
        // is full. A slow client is bounded by its send queue instead.
        .max_write_buffer_size(usize::MAX)
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
pub type Stream = SplitStream<WebSocket>;

/// One socket in the metrics, from upgrade to the end of its close
/// handshake: the open-connections gauge while it lives, and a disconnect
/// with its close code when it ends (however it ends).
struct Tracked {
    code: u16,
}

impl Tracked {
    fn open() -> Tracked {
        ::metrics::gauge!(metrics::CONNECTIONS).increment(1);
        ::metrics::counter!(metrics::CONNECTS).increment(1);
        Tracked {
            code: close::NORMAL,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::CONNECTIONS).decrement(1);
        ::metrics::counter!(metrics::DISCONNECTS, "code" => self.code.to_string()).increment(1);
    }
}

fn run(
    state: AppState,
    socket: WebSocket,
    header_token: Option<String>,
) -> impl Future<Output = ()> {
    // Split before the future is made, so that it keeps no room for the
    // whole socket.
    let (sink, stream) = socket.split();
    async move {
        let mut tracked = Tracked::open();
        tracked.code = serve_socket(state, sink, stream, header_token).await;
    }
}

/// Serves one socket to its end; returns the code it was closed with.
///
/// This future lives as long as the connection, and an async function's
/// future is as large as the largest state it passes through: opening
/// and closing (calls to the services, the `ready` frame) are therefore
/// boxed, so that they take memory only while they run, not for the life
/// of every idle connection.
async fn serve_socket(
    state: AppState,
    sink: Sink,
    mut stream: Stream,
    header_token: Option<String>,
) -> u16 {
    let (conn, claims, writer) = match Box::pin(open(&state, sink, &mut stream, header_token)).await
    {
        Ok(opened) => opened,
        Err(code) => return code,
    };

    read_loop(&state, &conn, &claims, &mut stream).await;

    Box::pin(unregister(&state, &conn, &claims)).await;
    // Make sure the writer finishes (sending a close frame if one is due).
    conn.close(close::NORMAL);
    let code = conn.close_code();
    drop(conn);
    let _ = writer.await;
    code
}

/// Authenticates the socket, registers its connection and queues `ready`;
/// or closes the socket, and the error is the close code.
async fn open(
    state: &AppState,
    sink: Sink,
    stream: &mut Stream,
    header_token: Option<String>,
) -> Result<(Arc<Conn>, Claims, JoinHandle<()>), u16> {
    let claims = match header_token {
        Some(token) => super::verify(state, &token).ok(),
        None => first_frame_auth(state, stream).await,
    };
    let Some(claims) = claims else {
        return Err(close_now(sink, stream, close::UNAUTHORIZED).await);
    };
    let identity = claims.identity();

    // One cached answer per user says whether the user exists, is
    // disabled, or ended this session, and gives `ready` its user.
    let user = match crate::revocation::admit(state, &claims).await {
        Ok(user) => user,
        Err(e) => return Err(close_now(sink, stream, setup_failure_code(&e)).await),
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
            return Err(close_now(sink, stream, setup_failure_code(&ApiError::from(status))).await);
        }
    };
    let room_ids: Vec<String> = my_rooms
        .iter()
        .filter_map(|r| r.room.as_ref().map(|room| room.id.clone()))
        .collect();

    let conn = Arc::new(Conn::new(
        state.next_conn_id(),
        uuid::Uuid::now_v7().to_string(),
        claims.sub.clone(),
        state.config.limits.send_queue_frames,
    ));
    let writer = tokio::spawn(write_loop(
        sink,
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
    // Before the hub lists it, so that a `disconnect` of its session
    // finds which session it is.
    state.revocations.track(conn.id, &claims.sid);
    state.hub.register(conn.clone(), &room_ids).await;
    if state.is_draining() {
        // Upgraded before the drain began, registered after its sweep may
        // have passed: nothing else would close it.
        conn.close(close::RESTART);
    }
    tracing::debug!(session = %conn.session_id, user = %claims.sub, "connection ready");
    Ok((conn, claims, writer))
}

/// Takes a closed connection out of the hub and presence.
async fn unregister(state: &AppState, conn: &Conn, claims: &Claims) {
    state.hub.unregister(conn).await;
    state.revocations.untrack(conn.id);
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

/// Closes a connection that never became ready; returns `code`.
async fn close_now(mut sink: Sink, stream: &mut Stream, code: u16) -> u16 {
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
    code
}

/// Writes queued frames in batches until the connection closes, then the
/// close frame. A client that stops reading blocks the socket write, so the
/// close must not wait for it: the pending write is abandoned (a frame is
/// either wholly in the WebSocket buffer or not at all) and the close frame
/// gets `close_timeout` to go out before the socket is dropped.
async fn write_loop(mut sink: Sink, conn: Arc<Conn>, close_timeout: Duration) {
    let writing = async {
        loop {
            let first = conn.queued().await;
            let mut counted = Counted::default();
            if write(&mut sink, first, &mut counted).await.is_err() {
                return;
            }
            let mut batch = 1;
            while batch < WRITE_BATCH {
                let Some(frame) = conn.next_queued() else {
                    break;
                };
                if write(&mut sink, frame, &mut counted).await.is_err() {
                    return;
                }
                batch += 1;
            }
            drop(counted);
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

/// The frames of one write batch, counted in the metrics once per batch:
/// looking a labelled series up costs more than writing a small frame.
#[derive(Default)]
struct Counted {
    /// Frames of one `type` written in a row: (type, count).
    run: Option<(&'static str, u64)>,
    latency: Option<::metrics::Histogram>,
}

impl Counted {
    fn frame(&mut self, kind: &'static str) {
        match &mut self.run {
            Some((current, count)) if *current == kind => *count += 1,
            _ => {
                self.record();
                self.run = Some((kind, 1));
            }
        }
    }

    fn latency(&mut self, latency: Duration) {
        self.latency
            .get_or_insert_with(|| ::metrics::histogram!(metrics::FANOUT_LATENCY))
            .record(latency);
    }

    /// Adds the frames counted so far to the frames-out series.
    fn record(&mut self) {
        if let Some((kind, count)) = self.run.take() {
            ::metrics::counter!(metrics::FRAMES_OUT, "type" => kind).increment(count);
        }
    }
}

/// However the batch ends (a failed write too), what was written is
/// counted.
impl Drop for Counted {
    fn drop(&mut self) {
        self.record();
    }
}

/// Feeds one queued item to the socket and counts it. A fed frame is
/// written to the connection by the flush that ends its batch, at the
/// latest, microseconds later: the fan-out latency ends here.
async fn write(sink: &mut Sink, item: Outbound, counted: &mut Counted) -> Result<(), axum::Error> {
    let (message, kind, committed_at) = match item {
        Outbound::Frame(frame) => (Message::Text(frame.text), frame.kind, frame.committed_at),
        Outbound::Ping => (Message::Ping(bytes::Bytes::new()), "ping", None),
    };
    sink.feed(message).await?;
    counted.frame(kind);
    // A clock behind the committing service's gives no latency, not a
    // negative one.
    if let Some(latency) = committed_at.and_then(|t| SystemTime::now().duration_since(t).ok()) {
        counted.latency(latency);
    }
    Ok(())
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
                            // Boxed: see `serve_socket`.
                            Box::pin(frames::handle(&ctx, text.as_str())).await;
                        } else {
                            ::metrics::counter!(metrics::RATE_LIMITED).increment(1);
                            if limiter.reject(limits.abuse_window, limits.abuse_rejections) {
                                conn.close(close::POLICY);
                            } else {
                                // Boxed, as rare: see `serve_socket`.
                                Box::pin(frames::send_error(conn, None, &ApiError::new(ErrorCode::RateLimited, "too many frames, slow down"))).await;
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        metrics::frame_in_invalid();
                        Box::pin(frames::send_error(conn, None, &ApiError::invalid("binary frames are not supported; send JSON text"))).await;
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
                conn.send(Outbound::Ping);
            }
            () = conn.closed() => {
                drain(stream).await;
                return;
            }
        }
    }
}

/// Reads until the client answers our close (or the grace time ends).
/// Public for the conformance harness, which closes the same way.
pub async fn drain(stream: &mut Stream) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

/// Whether a read failed on the size limits (closed with 1009). Public for
/// the conformance harness, which closes the same way.
pub fn is_too_big(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}
