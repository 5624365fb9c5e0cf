//! Who may do what to whom in a room.

use crate::domain::Role;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    Promote,
    Demote,
}

impl Action {
    /// Ban and unban also apply to users who are not members.
    pub fn needs_membership(self) -> bool {
        !matches!(self, Action::Ban | Action::Unban)
    }
}

/// Whether `actor` (with `actor_role`, `None` when not a member) may take
/// `action` on `target` (with `target_role`, `None` when not a member):
/// only owners and admins moderate; nobody acts on themselves; the owner is
/// never a target; only the owner acts on an admin or changes roles.
pub fn authorize_moderation(
    actor: &str,
    actor_role: Option<Role>,
    target: &str,
    target_role: Option<Role>,
    action: Action,
) -> Result<(), Error> {
    if !actor_role.is_some_and(Role::is_moderator) {
        return Err(Error::forbidden("only the owner or an admin may moderate"));
    }
    if actor == target {
        return Err(Error::invalid("you cannot moderate yourself"));
    }
    if target_role == Some(Role::Owner) {
        return Err(Error::forbidden("the owner cannot be moderated"));
    }
    let owner_only =
        target_role == Some(Role::Admin) || matches!(action, Action::Promote | Action::Demote);
    if owner_only && actor_role != Some(Role::Owner) {
        return Err(Error::forbidden(
            "only the owner may act on an admin or change roles",
        ));
    }
    if target_role.is_none() && action.needs_membership() {
        return Err(Error::not_found("the user is not a member of this room"));
    }
    Ok(())
}

/// Who becomes owner when the owner leaves: the oldest admin, else the
/// oldest member. `members` are ordered oldest first.
pub fn successor<'a>(
    members: impl IntoIterator<Item = (&'a str, Role)>,
    leaving: &str,
) -> Option<&'a str> {
    let others = members.into_iter().filter(|(id, _)| *id != leaving);
    let mut oldest = None;
    for (id, role) in others {
        if role == Role::Admin {
            return Some(id);
        }
        oldest = oldest.or(Some(id));
    }
    oldest
}

/// Whether `actor` may delete a message sent by `sender` at `sent_at`:
/// the sender within the recall window, owners and admins any time.
pub fn may_delete(
    actor: &str,
    actor_role: Role,
    sender: &str,
    sent_at_ms: i64,
    now_ms: i64,
    recall_window_ms: i64,
) -> bool {
    actor_role.is_moderator()
        || (actor == sender && now_ms <= sent_at_ms.saturating_add(recall_window_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ErrorCode;

    fn code(r: Result<(), Error>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn moderation_rules() {
        use Action::*;
        let (o, a, m) = (Some(Role::Owner), Some(Role::Admin), Some(Role::Member));
        assert_eq!(
            code(authorize_moderation("x", m, "y", m, Kick)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize_moderation("x", None, "y", m, Kick)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize_moderation("x", a, "x", a, Mute)),
            Some(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            code(authorize_moderation("x", a, "y", o, Kick)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize_moderation("x", a, "y", a, Kick)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(authorize_moderation("x", a, "y", m, Promote)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(authorize_moderation("x", a, "y", m, Kick)), None);
        assert_eq!(code(authorize_moderation("x", o, "y", a, Demote)), None);
        assert_eq!(
            code(authorize_moderation("x", a, "y", None, Mute)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(code(authorize_moderation("x", a, "y", None, Ban)), None);
    }

    #[test]
    fn successor_prefers_the_oldest_admin() {
        let members = [
            ("o", Role::Owner),
            ("m1", Role::Member),
            ("a1", Role::Admin),
            ("a2", Role::Admin),
        ];
        assert_eq!(successor(members, "o"), Some("a1"));
        let members = [
            ("o", Role::Owner),
            ("m1", Role::Member),
            ("m2", Role::Member),
        ];
        assert_eq!(successor(members, "o"), Some("m1"));
        assert_eq!(successor([("o", Role::Owner)], "o"), None);
    }

    #[test]
    fn recall_window() {
        assert!(may_delete("s", Role::Member, "s", 1_000, 2_000, 1_000));
        assert!(!may_delete("s", Role::Member, "s", 1_000, 2_001, 1_000));
        assert!(!may_delete("x", Role::Member, "s", 1_000, 1_000, 1_000));
        assert!(may_delete("x", Role::Admin, "s", 0, i64::MAX, 1_000));
    }
}
