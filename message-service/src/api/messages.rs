//! Sending, editing, recalling, paging through history, read positions.

use chat_common::identity::Identity;
use chat_proto::events::v1::{self as ev, chat_event, room_event};
use chat_proto::message::v1 as pb;

use super::{Authority, convert, load_room, require_member};
use crate::domain::paging::Page;
use crate::domain::validate::{self, ClientMsgId};
use crate::domain::{MessageKind, RoomKind, mentions, next_read_position, roles};
use crate::error::Error;
use crate::events;
use crate::sends::Outcome;
use crate::state::State;
use crate::store::{MessageRecord, StoreTx};

/// What a send did inside its transaction.
pub(crate) enum Sent {
    Created(MessageRecord),
    Duplicate(MessageRecord),
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id))]
pub async fn send(
    state: &State,
    who: &Identity,
    req: pb::SendMessageRequest,
) -> Result<pb::SendMessageResponse, Error> {
    let client_msg_id = ClientMsgId::parse(&req.client_msg_id)?;
    validate::message_text(
        &req.text,
        state.limits.max_text_chars,
        req.attachment_id.is_some(),
    )?;
    // Committed with the other sends queued meanwhile (crate::sends).
    let (message, duplicate) = match state.sends.send(who.clone(), req, client_msg_id).await? {
        Outcome::Created(message) => (message, false),
        Outcome::Duplicate(message) => (message, true),
    };
    Ok(pb::SendMessageResponse {
        message: Some(message),
        duplicate,
    })
}

/// The whole send inside `tx`: checks, de-duplication, seq, insert, read
/// position, outbox row.
pub(crate) async fn send_in_tx(
    state: &State,
    tx: &mut dyn StoreTx,
    who: &Identity,
    req: &pb::SendMessageRequest,
    client_msg_id: &ClientMsgId,
) -> Result<Sent, Error> {
    let now = state.clock.now_ms();
    let room = load_room(tx, &req.room).await?;
    let member = require_member(tx, &room.id, &who.user_id).await?;
    // A retry of a send that went through gets the original, even if the
    // sender was muted since: the message exists either way.
    if let Some(existing) = tx
        .message_by_client_id(&room.id, &who.user_id, client_msg_id.as_str())
        .await?
    {
        return Ok(Sent::Duplicate(existing));
    }
    if member.mute.is_some_and(|m| m.active_at(now)) {
        return Err(Error::Muted);
    }
    if let Some(reply_to) = req.reply_to
        && tx.message(&room.id, reply_to).await?.is_none()
    {
        return Err(Error::invalid("reply_to is not a message of this room"));
    }
    let attachment = match &req.attachment_id {
        None => None,
        Some(id) => {
            let attachment = tx
                .attachment(id)
                .await?
                .filter(|a| a.room_id == room.id && a.uploader_id == who.user_id)
                .ok_or_else(|| {
                    Error::invalid("attachment_id is not an attachment you uploaded to this room")
                })?;
            Some(attachment)
        }
    };
    let seq = tx
        .next_seq(&room.id)
        .await?
        .ok_or_else(|| Error::not_found("room not found"))?;

    let members = if room.kind == RoomKind::Dm || req.text.contains('@') {
        tx.members(&room.id).await?
    } else {
        Vec::new()
    };
    let mentioned = mentions::resolve(
        &req.text,
        members
            .iter()
            .map(|m| (m.user_id.as_str(), m.username.as_str())),
    );
    let message = MessageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        room_id: room.id.clone(),
        seq,
        sender_id: who.user_id.clone(),
        sender_name: who.display_name.clone(),
        kind: if attachment.is_some() {
            MessageKind::File
        } else {
            MessageKind::Text
        },
        text: req.text.clone(),
        attachment,
        reply_to: req.reply_to,
        client_msg_id: client_msg_id.as_str().to_owned(),
        mentions: mentioned,
        created_at: now,
        edited_at: None,
        deleted: false,
    };
    tx.insert_message(&message).await?;
    // A user's own send moves their read position to it.
    tx.set_last_read(&room.id, &who.user_id, seq).await?;

    let mut recipients: Vec<String> = Vec::new();
    if room.kind == RoomKind::Dm {
        recipients.extend(members.iter().map(|m| m.user_id.clone()));
    }
    recipients.extend(message.mentions.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|id| *id != who.user_id && seen.insert(id.clone()));
    let event = chat_event::Event::MessageCreated(convert::message(&message));
    tx.insert_outbox(&events::outbox_row(&room, event, recipients, now))
        .await?;
    Ok(Sent::Created(message))
}

/// The message at `seq`, or `not_found`.
async fn load_message(
    tx: &mut dyn StoreTx,
    room_id: &str,
    seq: i64,
) -> Result<MessageRecord, Error> {
    tx.message(room_id, seq)
        .await?
        .ok_or_else(|| Error::not_found("message not found"))
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, seq = req.seq))]
pub async fn edit(
    state: &State,
    who: &Identity,
    req: pb::EditMessageRequest,
) -> Result<pb::Message, Error> {
    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    require_member(tx.as_mut(), &room.id, &who.user_id).await?;
    let mut message = load_message(tx.as_mut(), &room.id, req.seq).await?;
    if message.sender_id != who.user_id {
        return Err(Error::forbidden("only the sender may edit a message"));
    }
    if message.deleted {
        return Err(Error::invalid("a deleted message cannot be edited"));
    }
    validate::message_text(
        &req.text,
        state.limits.max_text_chars,
        message.attachment.is_some(),
    )?;
    let members = if req.text.contains('@') {
        tx.members(&room.id).await?
    } else {
        Vec::new()
    };
    message.mentions = mentions::resolve(
        &req.text,
        members
            .iter()
            .map(|m| (m.user_id.as_str(), m.username.as_str())),
    );
    message.text = req.text;
    message.edited_at = Some(now);
    tx.update_message(&message).await?;
    let edited = convert::message(&message);
    let event = chat_event::Event::MessageEdited(edited.clone());
    tx.insert_outbox(&events::outbox_row(&room, event, Vec::new(), now))
        .await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    events::publish_room(
        &state.backends,
        &room.id,
        room_event::Event::MessageEdited(edited.clone()),
    )
    .await;
    Ok(edited)
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, seq = req.seq))]
pub async fn delete(
    state: &State,
    who: &Identity,
    req: pb::DeleteMessageRequest,
) -> Result<pb::Message, Error> {
    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    let actor = require_member(tx.as_mut(), &room.id, &who.user_id).await?;
    let mut message = load_message(tx.as_mut(), &room.id, req.seq).await?;
    if message.deleted {
        return Ok(convert::message(&message));
    }
    if !roles::may_delete(
        &who.user_id,
        actor.role,
        &message.sender_id,
        message.created_at,
        now,
        state.limits.recall_window_ms,
    ) {
        return Err(Error::forbidden(
            "only the sender within the recall window, or the owner or an admin, may delete a message",
        ));
    }
    // A tombstone: the seq stays, the content goes.
    message.text.clear();
    message.attachment = None;
    message.mentions.clear();
    message.deleted = true;
    tx.update_message(&message).await?;
    let deleted = ev::MessageDeleted {
        seq: message.seq,
        deleted_by: who.user_id.clone(),
    };
    let event = chat_event::Event::MessageDeleted(deleted.clone());
    tx.insert_outbox(&events::outbox_row(&room, event, Vec::new(), now))
        .await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    events::publish_room(
        &state.backends,
        &room.id,
        room_event::Event::MessageDeleted(deleted),
    )
    .await;
    Ok(convert::message(&message))
}

pub async fn history(
    state: &State,
    who: &Identity,
    req: pb::HistoryRequest,
) -> Result<pb::HistoryResponse, Error> {
    history_as(state, who, Authority::Member, req).await
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, ?authority))]
pub(crate) async fn history_as(
    state: &State,
    who: &Identity,
    authority: Authority,
    req: pb::HistoryRequest,
) -> Result<pb::HistoryResponse, Error> {
    let page = Page::parse(req.before, req.after, req.limit)?;
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    if authority == Authority::Member {
        require_member(tx.as_mut(), &room.id, &who.user_id).await?;
    }
    let rows = tx.history(&room.id, page.direction, page.fetch()).await?;
    let (messages, has_more) = page.finish(rows);
    Ok(pb::HistoryResponse {
        messages: messages.iter().map(convert::message).collect(),
        has_more,
    })
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, seq = req.seq))]
pub async fn mark_read(
    state: &State,
    who: &Identity,
    req: pb::MarkReadRequest,
) -> Result<pb::MarkReadResponse, Error> {
    if req.origin_connection_id.len() > 256 {
        return Err(Error::invalid("origin_connection_id is too long"));
    }
    let _order = state.room_locks.lock(&req.room).await;
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    let member = require_member(tx.as_mut(), &room.id, &who.user_id).await?;
    let Some(seq) = next_read_position(member.last_read_seq, req.seq, room.last_seq) else {
        return Ok(pb::MarkReadResponse {
            last_read_seq: member.last_read_seq,
            moved: false,
        });
    };
    tx.set_last_read(&room.id, &who.user_id, seq).await?;
    tx.commit().await?;
    let read = ev::ReadPosition {
        user_id: who.user_id.clone(),
        seq,
        origin_connection_id: req.origin_connection_id,
    };
    events::publish_room(&state.backends, &room.id, room_event::Event::Read(read)).await;
    Ok(pb::MarkReadResponse {
        last_read_seq: seq,
        moved: true,
    })
}
