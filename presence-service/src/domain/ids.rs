//! Identifiers received from callers. Each can only hold a non-empty value
//! of bounded length, so the store never sees an empty key.

use std::fmt;

/// Longest identifier accepted, in bytes. Ours are UUIDs; the bound only
/// keeps a buggy caller from filling memory with huge keys.
pub const MAX_ID_LEN: usize = 256;

/// An identifier that failed to parse; names the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1 to {MAX_ID_LEN} bytes long")]
pub struct InvalidId {
    pub field: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Name of the request field, for error messages.
            pub const FIELD: &'static str = $field;

            pub fn parse(value: impl Into<String>) -> Result<$name, InvalidId> {
                let value = value.into();
                if value.is_empty() || value.len() > MAX_ID_LEN {
                    return Err(InvalidId { field: $field });
                }
                Ok($name(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A user, as issued by auth-service.
    UserId,
    "user_id"
);
id_type!(
    /// One WebSocket connection, named by the gateway holding it.
    ConnectionId,
    "connection_id"
);
id_type!(
    /// A gateway replica.
    GatewayId,
    "gateway_id"
);
id_type!(
    /// A room, as issued by message-service.
    RoomId,
    "room"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_ids_are_refused() {
        assert_eq!(UserId::parse(""), Err(InvalidId { field: "user_id" }));
        assert!(RoomId::parse("r".repeat(MAX_ID_LEN)).is_ok());
        assert_eq!(
            RoomId::parse("r".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId { field: "room" })
        );
        assert_eq!(
            ConnectionId::parse("c1").map(|c| c.to_string()),
            Ok("c1".to_owned())
        );
    }
}
