//! A user as the service knows them.

use super::{DisplayName, Username};

/// System-wide role (not a room role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// UUID v7 in text form.
    pub id: String,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: Role,
    pub disabled: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}
