//! Kick, ban, unban, mute, unmute, promote, demote.

use chat_common::identity::Identity;
use chat_proto::events::v1::{self as ev, user_event};
use chat_proto::message::v1 as pb;

use super::{Authority, convert, load_room};
use crate::api::rooms::remove_member;
use crate::domain::roles::{Action, authorize_moderation};
use crate::domain::{Mute, Role, validate};
use crate::error::Error;
use crate::events::{self, Live};
use crate::state::State;
use crate::store::BanRecord;

fn action(raw: i32) -> Result<Action, Error> {
    use pb::ModerationAction as A;
    Ok(match A::try_from(raw) {
        Ok(A::Kick) => Action::Kick,
        Ok(A::Ban) => Action::Ban,
        Ok(A::Unban) => Action::Unban,
        Ok(A::Mute) => Action::Mute,
        Ok(A::Unmute) => Action::Unmute,
        Ok(A::Promote) => Action::Promote,
        Ok(A::Demote) => Action::Demote,
        Ok(A::Unspecified) | Err(_) => return Err(Error::invalid("unknown moderation action")),
    })
}

pub async fn moderate(
    state: &State,
    who: &Identity,
    req: pb::ModerateRequest,
) -> Result<pb::ModerateResponse, Error> {
    moderate_as(state, who, Authority::Member, req).await
}

#[tracing::instrument(skip_all, fields(room = %req.room, user = %who.user_id, target = %req.user_id, action = req.action, ?authority))]
pub(crate) async fn moderate_as(
    state: &State,
    who: &Identity,
    authority: Authority,
    req: pb::ModerateRequest,
) -> Result<pb::ModerateResponse, Error> {
    let action = action(req.action)?;
    let target = validate::user_id(&req.user_id)?;
    // Only mute and ban take a duration; elsewhere it is ignored.
    let duration_s = match action {
        Action::Mute | Action::Ban => req.duration_s,
        _ => None,
    };
    if duration_s.is_some_and(|d| d <= 0) {
        return Err(Error::invalid("duration_s must be positive"));
    }

    let _order = state.room_locks.lock(&req.room).await;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let room = load_room(tx.as_mut(), &req.room).await?;
    let actor_role = match authority {
        Authority::Member => tx.member(&room.id, &who.user_id).await?.map(|m| m.role),
        Authority::Admin => Some(Role::Owner),
    };
    let subject = tx.member(&room.id, target).await?;
    authorize_moderation(
        &who.user_id,
        actor_role,
        target,
        subject.as_ref().map(|m| m.role),
        action,
    )?;

    let mut live = Vec::new();
    match action {
        Action::Kick => remove_member(tx.as_mut(), &room, target, "kicked", now, &mut live).await?,
        Action::Ban => {
            let until = duration_s.map(|d| now.saturating_add(d.saturating_mul(1000)));
            tx.put_ban(&BanRecord {
                room_id: room.id.clone(),
                user_id: target.to_owned(),
                until,
                banned_by: who.user_id.clone(),
                created_at: now,
            })
            .await?;
            if subject.is_some() {
                remove_member(tx.as_mut(), &room, target, "banned", now, &mut live).await?;
            }
        }
        Action::Unban => {
            tx.delete_ban(&room.id, target).await?;
        }
        Action::Mute => {
            let mute = Mute::starting(now, duration_s);
            tx.set_mute(&room.id, target, Some(mute)).await?;
            let until = match mute {
                Mute::Until(until) => Some(convert::timestamp(until)),
                Mute::Forever => None,
            };
            live.push(Live::User(
                target.to_owned(),
                user_event::Event::Muted(ev::Muted {
                    room: room.id.clone(),
                    until,
                }),
            ));
        }
        Action::Unmute => {
            tx.set_mute(&room.id, target, None).await?;
            live.push(Live::User(
                target.to_owned(),
                user_event::Event::Unmuted(ev::Unmuted {
                    room: room.id.clone(),
                }),
            ));
        }
        Action::Promote => tx.set_role(&room.id, target, Role::Admin).await?,
        Action::Demote => tx.set_role(&room.id, target, Role::Member).await?,
    }
    tx.commit().await?;
    tracing::info!(?action, "moderation applied");
    state.outbox_wake.notify_one();
    events::publish_all(&state.backends, &room.id, live).await;
    Ok(pb::ModerateResponse {})
}
