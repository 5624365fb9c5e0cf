//! Notifications of mentions and direct messages, and who gets them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{RoomId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Mention,
    Dm,
}

impl NotificationKind {
    /// A message in a direct-message room notifies as `dm`; anywhere else a
    /// recipient can only have been @mentioned.
    pub fn for_room(is_dm: bool) -> NotificationKind {
        if is_dm {
            NotificationKind::Dm
        } else {
            NotificationKind::Mention
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: NotificationKind,
    pub room: RoomId,
    pub seq: i64,
    /// The sender's user id.
    pub from: String,
    /// The sender's display name.
    pub from_name: String,
    pub created_at: DateTime<Utc>,
}

/// The users to notify of a message: each listed recipient once, in the
/// order given, never the sender, and never an id that cannot be a user.
pub fn recipients<'a>(
    recipient_ids: impl IntoIterator<Item = &'a str>,
    sender_id: &str,
) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    for id in recipient_ids {
        if id == sender_id {
            continue;
        }
        if let Ok(user) = UserId::parse(id)
            && !out.contains(&user)
        {
            out.push(user);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_unique_and_exclude_the_sender() {
        let got = recipients(["b", "a", "", "b", "c"], "a");
        let ids: Vec<&str> = got.iter().map(UserId::as_str).collect();
        assert_eq!(ids, ["b", "c"]);
    }

    #[test]
    fn kind_follows_the_room() {
        assert_eq!(NotificationKind::for_room(true), NotificationKind::Dm);
        assert_eq!(NotificationKind::for_room(false), NotificationKind::Mention);
    }
}
