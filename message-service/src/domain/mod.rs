//! Types and rules of rooms and messages, without I/O: what a valid room
//! name or message text is, who may moderate whom, how history pages and
//! read positions move, which users a text mentions.

pub mod mentions;
pub mod paging;
pub mod roles;
pub mod validate;

/// Kind of a room, as stored (`group`, `dm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Group,
    Dm,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Group => "group",
            RoomKind::Dm => "dm",
        }
    }

    pub fn parse(s: &str) -> Option<RoomKind> {
        match s {
            "group" => Some(RoomKind::Group),
            "dm" => Some(RoomKind::Dm),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// A member's role in a room. Ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    /// Owners and admins manage members and moderate.
    pub fn is_moderator(self) -> bool {
        matches!(self, Role::Admin | Role::Owner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    File,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::File => "file",
            MessageKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        match s {
            "text" => Some(MessageKind::Text),
            "file" => Some(MessageKind::File),
            "system" => Some(MessageKind::System),
            _ => None,
        }
    }
}

/// A member's mute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    /// Until this time (ms since the epoch).
    Until(i64),
    /// Until unmuted.
    Forever,
}

impl Mute {
    /// A mute lasting `duration_s` from `now`, or until undone.
    pub fn starting(now_ms: i64, duration_s: Option<i64>) -> Mute {
        match duration_s {
            Some(s) => Mute::Until(now_ms.saturating_add(s.saturating_mul(1000))),
            None => Mute::Forever,
        }
    }

    pub fn active_at(self, now_ms: i64) -> bool {
        match self {
            Mute::Until(until) => until > now_ms,
            Mute::Forever => true,
        }
    }
}

/// A ban's end: `None` lasts until unbanned.
pub fn ban_active(until: Option<i64>, now_ms: i64) -> bool {
    until.is_none_or(|until| until > now_ms)
}

/// Where a read position moves when a member marks `requested` read in a
/// room whose latest seq is `last_seq`: clamped to `[0, last_seq]` and never
/// backwards. `None` when it does not move.
pub fn next_read_position(current: i64, requested: i64, last_seq: i64) -> Option<i64> {
    let target = requested.clamp(0, last_seq.max(0));
    (target > current).then_some(target)
}

/// The key of the one dm room of two users: their ids, sorted. Ids never
/// contain a newline (they travel as ASCII metadata).
pub fn dm_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}\n{b}")
    } else {
        format!("{b}\n{a}")
    }
}

/// The name of a dm room: both usernames, sorted.
pub fn dm_name(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a} & {b}")
    } else {
        format!("{b} & {a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_positions_clamp_and_never_go_back() {
        assert_eq!(next_read_position(0, 5, 10), Some(5));
        assert_eq!(next_read_position(5, 3, 10), None);
        assert_eq!(next_read_position(5, 5, 10), None);
        assert_eq!(next_read_position(5, 99, 10), Some(10));
        assert_eq!(next_read_position(10, 99, 10), None);
        assert_eq!(next_read_position(0, -4, 10), None);
    }

    #[test]
    fn mutes_and_bans_expire() {
        assert!(Mute::Forever.active_at(i64::MAX));
        assert!(Mute::starting(1_000, Some(2)).active_at(2_999));
        assert!(!Mute::starting(1_000, Some(2)).active_at(3_000));
        assert!(ban_active(None, 5));
        assert!(ban_active(Some(6), 5));
        assert!(!ban_active(Some(5), 5));
    }

    #[test]
    fn dm_keys_and_names_do_not_depend_on_order() {
        assert_eq!(dm_key("b", "a"), dm_key("a", "b"));
        assert_eq!(dm_name("zoe", "adam"), "adam & zoe");
        assert_eq!(dm_name("adam", "zoe"), "adam & zoe");
    }

    #[test]
    fn stored_names_round_trip() {
        for role in [Role::Member, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for kind in [MessageKind::Text, MessageKind::File, MessageKind::System] {
            assert_eq!(MessageKind::parse(kind.as_str()), Some(kind));
        }
        for kind in [RoomKind::Group, RoomKind::Dm] {
            assert_eq!(RoomKind::parse(kind.as_str()), Some(kind));
        }
        for v in [Visibility::Public, Visibility::Private] {
            assert_eq!(Visibility::parse(v.as_str()), Some(v));
        }
    }
}
