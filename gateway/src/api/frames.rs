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

/// A client frame that parsed and passed validation, ready to act on.
#[derive(Debug)]
pub enum ClientFrame {
    Send(SendFrame),
    Edit(EditFrame),
    Delete(SeqFrame),
    History(HistoryFrame),
    Resume(ResumeFrame),
    Typing(RoomFrame),
    Read(SeqFrame),
    Join(RoomFrame),
    Leave(RoomFrame),
    Presence(PresenceFrame),
    Ping,
}

/// One received text decoded: the frame, or the `error` frame's error.
#[derive(Debug)]
pub struct Decoded {
    /// The client's `ref`, echoed in the reply.
    pub reference: Option<Value>,
    /// The frame's `type`, when it has a string one (for the metrics).
    pub kind: Option<String>,
    pub frame: ApiResult<ClientFrame>,
}

/// Turns a received text into a client frame or the error to reply with.
/// Pure: everything the client sends is checked here before any service
/// is called (public for fuzzing).
pub fn decode(text: &str) -> Decoded {
    let invalid = |reference, error| Decoded {
        reference,
        kind: None,
        frame: Err(error),
    };
    let mut fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return invalid(None, ApiError::invalid("a frame must be a JSON object")),
        Err(e) => return invalid(None, ApiError::invalid(format!("malformed JSON: {e}"))),
    };
    let reference = fields.remove("ref");
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => {
            return invalid(
                reference,
                ApiError::invalid("a frame needs a string \"type\""),
            );
        }
    };
    let frame = client_frame(&kind, fields);
    Decoded {
        reference,
        kind: Some(kind),
        frame,
    }
}

fn client_frame(kind: &str, fields: Map<String, Value>) -> ApiResult<ClientFrame> {
    Ok(match kind {
        "send" => ClientFrame::Send(parse(kind, fields)?),
        "edit" => ClientFrame::Edit(parse(kind, fields)?),
        "delete" => ClientFrame::Delete(parse(kind, fields)?),
        "history" => ClientFrame::History(parse(kind, fields)?),
        "resume" => ClientFrame::Resume(parse(kind, fields)?),
        "typing" => ClientFrame::Typing(parse(kind, fields)?),
        "read" => ClientFrame::Read(parse(kind, fields)?),
        "join" => ClientFrame::Join(parse(kind, fields)?),
        "leave" => ClientFrame::Leave(parse(kind, fields)?),
        "presence" => {
            let frame: PresenceFrame = parse(kind, fields)?;
            if frame.user_ids.len() > MAX_PRESENCE_QUERY {
                return Err(ApiError::invalid(format!(
                    "at most {MAX_PRESENCE_QUERY} user_ids per query"
                )));
            }
            ClientFrame::Presence(frame)
        }
        "ping" => ClientFrame::Ping,
        "auth" => return Err(ApiError::invalid("already authenticated")),
        other => return Err(ApiError::invalid(format!("unknown frame type \"{other}\""))),
    })
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
    let Decoded {
        reference,
        kind,
        frame,
    } = decode(text);
    match &kind {
        Some(kind) => {
            crate::metrics::frame_in(kind);
            tracing::Span::current().record("frame", kind.as_str());
        }
        None => crate::metrics::frame_in_invalid(),
    }
    let result = match frame {
        Ok(frame) => dispatch(ctx, frame, reference.as_ref()).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        send_error(ctx.conn, reference.as_ref(), &error).await;
    }
}

fn parse<T: DeserializeOwned>(kind: &str, fields: Map<String, Value>) -> ApiResult<T> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::invalid(format!("bad \"{kind}\" frame: {e}")))
}

async fn dispatch(
    ctx: &Context<'_>,
    frame: ClientFrame,
    reference: Option<&Value>,
) -> ApiResult<()> {
    match frame {
        ClientFrame::Send(frame) => send(ctx, frame, reference).await,
        ClientFrame::Edit(frame) => edit(ctx, frame, reference).await,
        ClientFrame::Delete(frame) => delete(ctx, frame, reference).await,
        ClientFrame::History(frame) => history(ctx, frame, reference).await,
        ClientFrame::Resume(frame) => resume(ctx, frame, reference).await,
        ClientFrame::Typing(frame) => typing(ctx, frame, reference).await,
        ClientFrame::Read(frame) => read(ctx, frame, reference).await,
        ClientFrame::Join(RoomFrame { room }) => {
            let room = http::join(ctx.state, &ctx.identity, room).await?;
            reply(
                ctx.conn,
                reference,
                json!({"type": "ack", "room": wire::room(&room)}),
            )
            .await;
            Ok(())
        }
        ClientFrame::Leave(RoomFrame { room }) => {
            http::leave(ctx.state, &ctx.identity, room.clone()).await?;
            reply(ctx.conn, reference, json!({"type": "ack", "room": room})).await;
            Ok(())
        }
        ClientFrame::Presence(frame) => presence_query(ctx, frame, reference).await,
        ClientFrame::Ping => {
            reply(ctx.conn, reference, json!({"type": "pong"})).await;
            Ok(())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RoomFrame {
    room: String,
}

#[derive(Debug, Deserialize)]
pub struct SendFrame {
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

#[derive(Debug, Deserialize)]
pub struct EditFrame {
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

#[derive(Debug, Deserialize)]
pub struct SeqFrame {
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

#[derive(Debug, Deserialize)]
pub struct HistoryFrame {
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

#[derive(Debug, Deserialize)]
pub struct ResumeFrame {
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

#[derive(Debug, Deserialize)]
pub struct PresenceFrame {
    user_ids: Vec<String>,
}

/// Largest `presence` query.
const MAX_PRESENCE_QUERY: usize = 500;

async fn presence_query(
    ctx: &Context<'_>,
    frame: PresenceFrame,
    reference: Option<&Value>,
) -> ApiResult<()> {
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
