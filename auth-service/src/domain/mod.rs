//! The types and rules of users and credentials. No I/O: values here are
//! parsed once at the edge and are valid from then on.

mod display_name;
mod password;
mod refresh_token;
mod user;
mod username;

pub use display_name::DisplayName;
pub use password::{Password, PasswordHash};
pub use refresh_token::{RefreshToken, RefreshTokenHash};
pub use user::{Role, User};
pub use username::{MAX_LEN as MAX_USERNAME_LEN, Username};

/// A value a client sent that breaks a rule; `field` names the request
/// field so the client can tell which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: &'static str) -> ValidationError {
        ValidationError { field, reason }
    }
}
