//! Whether a user is online, and when they were last seen.

use chrono::{DateTime, Utc};

use super::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Online,
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub user_id: UserId,
    pub status: Status,
    /// When the user's last connection ended. `None` while online and for a
    /// user never seen.
    pub last_seen: Option<DateTime<Utc>>,
}

impl Presence {
    pub fn online(user_id: UserId) -> Presence {
        Presence {
            user_id,
            status: Status::Online,
            last_seen: None,
        }
    }

    pub fn offline(user_id: UserId, last_seen: Option<DateTime<Utc>>) -> Presence {
        Presence {
            user_id,
            status: Status::Offline,
            last_seen,
        }
    }
}
