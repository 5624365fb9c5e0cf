//! Sending, editing, recalling, paging through history, read positions.

use std::collections::{BTreeMap, HashMap};

use chat_common::identity::Identity;
use chat_proto::events::v1::{self as ev, chat_event, room_event};
use chat_proto::message::v1 as pb;
use tracing::Instrument as _;

use super::{Authority, convert, load_room, require_member};
use crate::domain::paging::Page;
use crate::domain::validate::{self, ClientMsgId};
use crate::domain::{MessageKind, RoomKind, mentions, next_read_position, roles};
use crate::error::Error;
use crate::events;
use crate::sends::Outcome;
use crate::state::State;
use crate::store::{MemberRecord, MessageRecord, RoomRecord, StoreTx};

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

/// A validated send waiting for its batch (crate::sends).
pub(crate) struct SendCall {
    pub who: Identity,
    pub req: pb::SendMessageRequest,
    pub client_msg_id: ClientMsgId,
    /// The caller's span: its statements are traced under it and its
    /// outbox row carries its trace context.
    pub span: tracing::Span,
}

/// What the checks decided for one send of a batch.
enum Plan {
    Refused(Error),
    Duplicate(Box<MessageRecord>),
    /// Repeats the `client_msg_id` of the send at this index of the batch.
    DuplicateOf(usize),
    /// To insert; its seq is taken once the batch's count per room is known.
    Create(Box<MessageRecord>),
}

/// Every send of a batch inside `tx`, set-based: one query each for the
/// rooms, memberships and earlier sends of the whole batch; the checks in
/// memory, in arrival order; one seq reservation per room; one statement
/// each for the messages, read positions and outbox rows. A refusal (not a
/// member, muted, a bad `reply_to`) is decided before anything is written,
/// so it undoes nothing. `calls` must be sorted by room: rooms are then
/// locked in the same order by every batch.
///
/// The outer `Err` fails the whole batch: the database failed, or
/// [`Error::Conflict`] when another replica committed one of the batch's
/// `client_msg_id`s since they were read (a retry of the batch finds it).
pub(crate) async fn send_batch_in_tx(
    state: &State,
    tx: &mut dyn StoreTx,
    calls: &[&SendCall],
) -> Result<Vec<Result<Sent, Error>>, Error> {
    let now = state.clock.now_ms();
    let rooms: HashMap<String, RoomRecord> = tx
        .rooms(&unique(calls.iter().map(|c| c.req.room.as_str())))
        .await?
        .into_iter()
        .map(|room| (room.id.clone(), room))
        .collect();
    let memberships: HashMap<(String, String), MemberRecord> = tx
        .memberships(&unique(
            calls
                .iter()
                .map(|c| (c.req.room.as_str(), c.who.user_id.as_str())),
        ))
        .await?
        .into_iter()
        .map(|m| ((m.room_id.clone(), m.user_id.clone()), m))
        .collect();
    let already_sent: HashMap<(String, String, String), MessageRecord> = tx
        .messages_by_client_ids(&unique(calls.iter().map(|c| {
            (
                c.req.room.as_str(),
                c.who.user_id.as_str(),
                c.client_msg_id.as_str(),
            )
        })))
        .await?
        .into_iter()
        .map(|m| {
            let key = (
                m.room_id.clone(),
                m.sender_id.clone(),
                m.client_msg_id.clone(),
            );
            (key, m)
        })
        .collect();

    // Members of rooms whose sends need them (dm recipients, mentions).
    let mut room_members: HashMap<&str, Vec<MemberRecord>> = HashMap::new();
    let mut created_at_index: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter().enumerate() {
        let (room_id, user_id, client_msg_id) = (
            call.req.room.as_str(),
            call.who.user_id.as_str(),
            call.client_msg_id.as_str(),
        );
        let plan = if let Some(&first) = created_at_index.get(&(room_id, user_id, client_msg_id)) {
            Plan::DuplicateOf(first)
        } else {
            let known = Known {
                room: rooms.get(room_id),
                member: memberships.get(&(room_id.to_owned(), user_id.to_owned())),
                sent: already_sent.get(&(
                    room_id.to_owned(),
                    user_id.to_owned(),
                    client_msg_id.to_owned(),
                )),
            };
            plan_send(tx, call, known, now, &mut room_members)
                .instrument(call.span.clone())
                .await?
        };
        if matches!(plan, Plan::Create(_)) {
            created_at_index.insert((room_id, user_id, client_msg_id), index);
        }
        plans.push(plan);
    }

    // Seqs: each room's creations take consecutive seqs in arrival order.
    let mut per_room: BTreeMap<&str, i64> = BTreeMap::new();
    for plan in &plans {
        if let Plan::Create(message) = plan {
            *per_room.entry(message.room_id.as_str()).or_default() += 1;
        }
    }
    let mut next_seq: HashMap<String, i64> = HashMap::new();
    for (room_id, count) in per_room {
        let last = tx
            .reserve_seqs(room_id, count)
            .await?
            .ok_or_else(|| Error::not_found("room not found"))?;
        next_seq.insert(room_id.to_owned(), last - count + 1);
    }
    let mut created = Vec::new();
    let mut read_positions: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut outbox = Vec::new();
    for (plan, call) in plans.iter_mut().zip(calls) {
        let Plan::Create(message) = plan else {
            continue;
        };
        let seq = next_seq.entry(message.room_id.clone()).or_default();
        message.seq = *seq;
        *seq += 1;
        // A user's own send moves their read position to it.
        read_positions.insert(
            (call.req.room.as_str(), call.who.user_id.as_str()),
            message.seq,
        );
        let room = rooms
            .get(&message.room_id)
            .ok_or_else(|| Error::Internal("a planned send lost its room".into()))?;
        let mut recipients: Vec<String> = Vec::new();
        if room.kind == RoomKind::Dm
            && let Some(members) = room_members.get(room.id.as_str())
        {
            recipients.extend(members.iter().map(|m| m.user_id.clone()));
        }
        recipients.extend(message.mentions.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|id| *id != call.who.user_id && seen.insert(id.clone()));
        let event = chat_event::Event::MessageCreated(convert::message(message));
        outbox.push(
            call.span
                .in_scope(|| events::outbox_row(room, event, recipients, now)),
        );
        created.push((**message).clone());
    }
    tx.insert_messages(&created).await?;
    let read_positions: Vec<(&str, &str, i64)> = read_positions
        .into_iter()
        .map(|((room_id, user_id), seq)| (room_id, user_id, seq))
        .collect();
    tx.set_last_reads(&read_positions).await?;
    tx.insert_outbox_rows(&outbox).await?;

    let mut results: Vec<Result<Sent, Error>> = Vec::with_capacity(plans.len());
    for plan in plans {
        results.push(match plan {
            Plan::Refused(error) => Err(error),
            Plan::Duplicate(message) => Ok(Sent::Duplicate(*message)),
            Plan::Create(message) => Ok(Sent::Created(*message)),
            Plan::DuplicateOf(first) => match results.get(first) {
                Some(Ok(Sent::Created(message))) => Ok(Sent::Duplicate(message.clone())),
                _ => Err(Error::Internal("a repeated send lost its original".into())),
            },
        });
    }
    Ok(results)
}

/// What the batch's reads found for one send.
struct Known<'a> {
    room: Option<&'a RoomRecord>,
    member: Option<&'a MemberRecord>,
    /// The message this sender already sent with this `client_msg_id`.
    sent: Option<&'a MessageRecord>,
}

/// One send's checks, in the order a single send makes them. `Err` only
/// when the database fails; a refusal is [`Plan::Refused`].
async fn plan_send<'a>(
    tx: &mut dyn StoreTx,
    call: &'a SendCall,
    known: Known<'_>,
    now: i64,
    room_members: &mut HashMap<&'a str, Vec<MemberRecord>>,
) -> Result<Plan, Error> {
    let Some(room) = known.room else {
        return Ok(Plan::Refused(Error::not_found("room not found")));
    };
    let Some(member) = known.member else {
        return Ok(Plan::Refused(Error::forbidden(
            "you are not a member of this room",
        )));
    };
    // A retry of a send that went through gets the original, even if the
    // sender was muted since: the message exists either way.
    if let Some(sent) = known.sent {
        return Ok(Plan::Duplicate(Box::new(sent.clone())));
    }
    if member.mute.is_some_and(|m| m.active_at(now)) {
        return Ok(Plan::Refused(Error::Muted));
    }
    let req = &call.req;
    if let Some(reply_to) = req.reply_to
        && tx.message(&room.id, reply_to).await?.is_none()
    {
        return Ok(Plan::Refused(Error::invalid(
            "reply_to is not a message of this room",
        )));
    }
    let attachment = match &req.attachment_id {
        None => None,
        Some(id) => {
            let attachment = tx
                .attachment(id)
                .await?
                .filter(|a| a.room_id == room.id && a.uploader_id == call.who.user_id);
            let Some(attachment) = attachment else {
                return Ok(Plan::Refused(Error::invalid(
                    "attachment_id is not an attachment you uploaded to this room",
                )));
            };
            Some(attachment)
        }
    };
    let needs_members = room.kind == RoomKind::Dm || req.text.contains('@');
    if needs_members && !room_members.contains_key(req.room.as_str()) {
        room_members.insert(req.room.as_str(), tx.members(&room.id).await?);
    }
    let members = match room_members.get(req.room.as_str()) {
        Some(members) if needs_members => members.as_slice(),
        _ => &[],
    };
    let mentioned = mentions::resolve(
        &req.text,
        members
            .iter()
            .map(|m| (m.user_id.as_str(), m.username.as_str())),
    );
    Ok(Plan::Create(Box::new(MessageRecord {
        id: uuid::Uuid::now_v7().to_string(),
        room_id: room.id.clone(),
        seq: 0,
        sender_id: call.who.user_id.clone(),
        sender_name: call.who.display_name.clone(),
        kind: if attachment.is_some() {
            MessageKind::File
        } else {
            MessageKind::Text
        },
        text: req.text.clone(),
        attachment,
        reply_to: req.reply_to,
        client_msg_id: call.client_msg_id.as_str().to_owned(),
        mentions: mentioned,
        created_at: now,
        edited_at: None,
        deleted: false,
    })))
}

/// The distinct items, in first-seen order.
fn unique<T: Eq + std::hash::Hash + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|item| seen.insert(*item)).collect()
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
