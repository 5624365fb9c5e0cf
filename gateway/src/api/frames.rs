//! Client frames (PROTOCOL.md "Client frames"): parsing, validation and the
//! reply to each. A bad frame gets an `error` frame echoing its `ref`; the
//! connection stays open.

use std::sync::Arc;

use chat_common::identity::Identity;
use chat_proto::ErrorCode;
use chat_proto::message::v1 as msg;
use chat_proto::presence::v1 as presence;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::http;
use crate::conn::Conn;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::wire;

/// Messages replayed per room by one `resume` before `resume_truncated`.
pub const RESUME_LIMIT: i64 = 1000;
/// Page size of the history reads behind a resume.
const RESUME_PAGE: u32 = 200;

pub struct Context<'a> {
    pub state: &'a AppState,
    pub conn: &'a Arc<Conn>,
    pub identity: Identity,
}

/// Replies to the client's own frames wait for room in its queue instead of
/// counting as overflow: the client's next frame is not read meanwhile,
/// which is the back-pressure a client that sends faster than it reads
/// deserves. (Events from others never wait; see [`Conn::send`].)
pub async fn send_error(conn: &Conn, reference: Option<&Value>, error: &ApiError) {
    let mut frame = json!({"type": "error", "code": error.code.as_str(), "message": error.message});
    with_ref(&mut frame, reference);
    conn.send_waiting(&frame).await;
}

fn with_ref(frame: &mut Value, reference: Option<&Value>) {
    if let (Value::Object(fields), Some(r)) = (frame, reference) {
        fields.insert("ref".into(), r.clone());
    }
}

async fn reply(conn: &Conn, reference: Option<&Value>, mut frame: Value) {
    with_ref(&mut frame, reference);
    conn.send_waiting(&frame).await;
}

/// Handles one text frame to completion (frames of a connection are
/// handled in the order sent). Each frame is a trace of its own (no parent:
/// a connection lasts hours), whose gRPC calls carry it to the services.
#[tracing::instrument(
    name = "ws.frame",
    parent = None,
    skip_all,
    fields(otel.kind = "server", user = %ctx.identity.user_id, frame = tracing::field::Empty),
)]
pub async fn handle(ctx: &Context<'_>, text: &str) {
    let mut fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => {
            crate::metrics::frame_in_invalid();
            return send_error(
                ctx.conn,
                None,
                &ApiError::invalid("a frame must be a JSON object"),
            )
            .await;
        }
        Err(e) => {
            crate::metrics::frame_in_invalid();
            return send_error(
                ctx.conn,
                None,
                &ApiError::invalid(format!("malformed JSON: {e}")),
            )
            .await;
        }
    };
    let reference = fields.remove("ref");
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            crate::metrics::frame_in_invalid();
            let error = ApiError::invalid("a frame needs a string \"type\"");
            return send_error(ctx.conn, reference.as_ref(), &error).await;
        }
    };
    crate::metrics::frame_in(&kind);
    tracing::Span::current().record("frame", kind.as_str());
    if let Err(error) = dispatch(ctx, &kind, fields, reference.as_ref()).await {
        send_error(ctx.conn, reference.as_ref(), &error).await;
    }
}

fn parse<T: DeserializeOwned>(kind: &str, fields: Map<String, Value>) -> ApiResult<T> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::invalid(format!("bad \"{kind}\" frame: {e}")))
}

async fn dispatch(
    ctx: &Context<'_>,
    kind: &str,
    fields: Map<String, Value>,
    reference: Option<&Value>,
) -> ApiResult<()> {
    match kind {
        "send" => send(ctx, parse(kind, fields)?, reference).await,
        "edit" => edit(ctx, parse(kind, fields)?, reference).await,
        "delete" => delete(ctx, parse(kind, fields)?, reference).await,
        "history" => history(ctx, parse(kind, fields)?, reference).await,
        "resume" => resume(ctx, parse(kind, fields)?, reference).await,
        "typing" => typing(ctx, parse(kind, fields)?, reference).await,
        "read" => read(ctx, parse(kind, fields)?, reference).await,
        "join" => {
            let RoomFrame { room } = parse(kind, fields)?;
            let room = http::join(ctx.state, &ctx.identity, room).await?;
            reply(
                ctx.conn,
                reference,
                json!({"type": "ack", "room": wire::room(&room)}),
            )
            .await;
            Ok(())
        }
        "leave" => {
            let RoomFrame { room } = parse(kind, fields)?;
            http::leave(ctx.state, &ctx.identity, room.clone()).await?;
            reply(ctx.conn, reference, json!({"type": "ack", "room": room})).await;
            Ok(())
        }
        "presence" => presence_query(ctx, parse(kind, fields)?, reference).await,
        "ping" => {
            reply(ctx.conn, reference, json!({"type": "pong"})).await;
            Ok(())
        }
        "auth" => Err(ApiError::invalid("already authenticated")),
        other => Err(ApiError::invalid(format!("unknown frame type \"{other}\""))),
    }
}

#[derive(Deserialize)]
struct RoomFrame {
    room: String,
}

#[derive(Deserialize)]
struct SendFrame {
    room: String,
    #[serde(default)]
    text: String,
    client_msg_id: String,
    reply_to: Option<i64>,
    attachment_id: Option<String>,
}

async fn send(ctx: &Context<'_>, frame: SendFrame, reference: Option<&Value>) -> ApiResult<()> {
    let request = ctx.identity.request(msg::SendMessageRequest {
        room: frame.room,
        text: frame.text,
        client_msg_id: frame.client_msg_id,
        reply_to: frame.reply_to,
        attachment_id: frame.attachment_id,
    });
    let reply_msg = ctx
        .state
        .services
        .messages
        .clone()
        .send_message(request)
        .await?
        .into_inner();
    metrics::counter!(crate::metrics::SENDS_ACKED).increment(1);
    let message = reply_msg.message.unwrap_or_default();
    reply(
        ctx.conn,
        reference,
        json!({"type": "ack", "message": wire::message(&message)}),
    )
    .await;
    Ok(())
}

#[derive(Deserialize)]
struct EditFrame {
    room: String,
    seq: i64,
    text: String,
}

async fn edit(ctx: &Context<'_>, frame: EditFrame, reference: Option<&Value>) -> ApiResult<()> {
    let request = ctx.identity.request(msg::EditMessageRequest {
        room: frame.room,
        seq: frame.seq,
        text: frame.text,
    });
    let message = ctx
        .state
        .services
        .messages
        .clone()
        .edit_message(request)
        .await?
        .into_inner();
    reply(
        ctx.conn,
        reference,
        json!({"type": "ack", "message": wire::message(&message)}),
    )
    .await;
    Ok(())
}

#[derive(Deserialize)]
struct SeqFrame {
    room: String,
    seq: i64,
}

async fn delete(ctx: &Context<'_>, frame: SeqFrame, reference: Option<&Value>) -> ApiResult<()> {
    let request = ctx.identity.request(msg::DeleteMessageRequest {
        room: frame.room,
        seq: frame.seq,
    });
    let message = ctx
        .state
        .services
        .messages
        .clone()
        .delete_message(request)
        .await?
        .into_inner();
    reply(
        ctx.conn,
        reference,
        json!({"type": "ack", "message": wire::message(&message)}),
    )
    .await;
    Ok(())
}

#[derive(Deserialize)]
struct HistoryFrame {
    room: String,
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
}

async fn history(
    ctx: &Context<'_>,
    frame: HistoryFrame,
    reference: Option<&Value>,
) -> ApiResult<()> {
    let room = frame.room.clone();
    let request = http::history_request(frame.room, frame.before, frame.after, frame.limit)?;
    let page = ctx
        .state
        .services
        .messages
        .clone()
        .history(ctx.identity.request(request))
        .await?
        .into_inner();
    reply(
        ctx.conn,
        reference,
        json!({"type": "history", "room": room, "messages": wire::messages(&page.messages), "has_more": page.has_more}),
    ).await;
    Ok(())
}

#[derive(Deserialize)]
struct ResumeFrame {
    rooms: std::collections::BTreeMap<String, i64>,
}

/// Replays every `message` of each room after the client's last seq, in
/// order, at most [`RESUME_LIMIT`] per room; live events of a room wait
/// until its replay is done.
async fn resume(ctx: &Context<'_>, frame: ResumeFrame, reference: Option<&Value>) -> ApiResult<()> {
    for (room, last_seq) in frame.rooms {
        if !ctx.conn.begin_resume(&room) {
            let error = ApiError::new(ErrorCode::Forbidden, format!("not a member of room {room}"));
            send_error(ctx.conn, reference, &error).await;
            continue;
        }
        let replayed = replay(ctx, &room, last_seq.max(0)).await;
        match replayed {
            Ok(last) => ctx.conn.finish_resume(&room, last),
            Err(error) => {
                ctx.conn.finish_resume(&room, last_seq);
                send_error(ctx.conn, reference, &error).await;
            }
        }
    }
    reply(ctx.conn, reference, json!({"type": "resumed"})).await;
    Ok(())
}

/// Sends the room's messages after `after`; returns the last seq sent.
async fn replay(ctx: &Context<'_>, room: &str, after: i64) -> ApiResult<i64> {
    let mut cursor = after;
    let mut sent = 0;
    loop {
        let limit =
            u32::try_from((RESUME_LIMIT - sent).min(i64::from(RESUME_PAGE))).unwrap_or(RESUME_PAGE);
        let request = ctx.identity.request(msg::HistoryRequest {
            room: room.to_owned(),
            before: None,
            after: Some(cursor),
            limit,
        });
        let page = ctx
            .state
            .services
            .messages
            .clone()
            .history(request)
            .await?
            .into_inner();
        for message in &page.messages {
            let frame = json!({"type": "message", "room": room, "message": wire::message(message)});
            ctx.conn.send_waiting(&frame).await;
            cursor = message.seq;
            sent += 1;
        }
        if !page.has_more || page.messages.is_empty() {
            return Ok(cursor);
        }
        if sent >= RESUME_LIMIT {
            let frame = json!({"type": "resume_truncated", "room": room, "next_seq": cursor + 1});
            ctx.conn.send_waiting(&frame).await;
            return Ok(cursor);
        }
    }
}

fn member_of(ctx: &Context<'_>, room: &str) -> ApiResult<()> {
    if ctx.conn.in_room(room) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "not a member of this room",
        ))
    }
}

async fn ack_if_asked(conn: &Conn, reference: Option<&Value>, frame: Value) {
    if reference.is_some() {
        reply(conn, reference, frame).await;
    }
}

async fn typing(ctx: &Context<'_>, frame: RoomFrame, reference: Option<&Value>) -> ApiResult<()> {
    member_of(ctx, &frame.room)?;
    let request = presence::TypingRequest {
        room: frame.room,
        user_id: ctx.identity.user_id.clone(),
        username: ctx.identity.username.clone(),
    };
    ctx.state.services.presence.clone().typing(request).await?;
    ack_if_asked(ctx.conn, reference, json!({"type": "ack"})).await;
    Ok(())
}

async fn read(ctx: &Context<'_>, frame: SeqFrame, reference: Option<&Value>) -> ApiResult<()> {
    let request = ctx.identity.request(msg::MarkReadRequest {
        room: frame.room,
        seq: frame.seq,
        origin_connection_id: ctx.conn.session_id.clone(),
    });
    let position = ctx
        .state
        .services
        .messages
        .clone()
        .mark_read(request)
        .await?
        .into_inner();
    ack_if_asked(
        ctx.conn,
        reference,
        json!({"type": "ack", "last_read_seq": position.last_read_seq}),
    )
    .await;
    Ok(())
}

#[derive(Deserialize)]
struct PresenceFrame {
    user_ids: Vec<String>,
}

/// Largest `presence` query.
const MAX_PRESENCE_QUERY: usize = 500;

async fn presence_query(
    ctx: &Context<'_>,
    frame: PresenceFrame,
    reference: Option<&Value>,
) -> ApiResult<()> {
    if frame.user_ids.len() > MAX_PRESENCE_QUERY {
        return Err(ApiError::invalid(format!(
            "at most {MAX_PRESENCE_QUERY} user_ids per query"
        )));
    }
    let request = presence::GetPresenceRequest {
        user_ids: frame.user_ids,
    };
    let users = ctx
        .state
        .services
        .presence
        .clone()
        .get_presence(request)
        .await?
        .into_inner()
        .users;
    let users: Vec<Value> = users.iter().map(wire::user_presence).collect();
    reply(
        ctx.conn,
        reference,
        json!({"type": "presence", "users": users}),
    )
    .await;
    Ok(())
}
