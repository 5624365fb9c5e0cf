//! A deployment's namespace on shared servers: several chat deployments
//! (staging beside production, or concurrent test runs) may share one Redis
//! and one RabbitMQ when each has its own namespace. It prefixes every name
//! the system creates there: pub/sub channels, Redis keys, the RabbitMQ
//! exchange and queues. The empty namespace, the default, leaves the names
//! as documented (`room:{id}`, `chat:…` keys, exchange `chat.events`).
//!
//! Configured by `CHAT_NAMESPACE`; every process of one deployment must use
//! the same value.

use std::fmt;

/// The longest namespace: it is repeated in every channel and key.
const MAX_LEN: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid namespace {0:?}: use at most {MAX_LEN} of a-z, 0-9, '_' and '-' (it becomes part of Redis keys and RabbitMQ names)"
)]
pub struct InvalidNamespace(String);

impl Namespace {
    /// No namespace: the documented names, unprefixed.
    pub fn none() -> Namespace {
        Namespace::default()
    }

    pub fn new(name: &str) -> Result<Namespace, InvalidNamespace> {
        let valid = name.len() <= MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Namespace(name.to_owned()))
        } else {
            Err(InvalidNamespace(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What precedes a pub/sub channel's name on Redis: `{ns}:` or nothing.
    pub fn channel_prefix(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("{}:", self.0)
        }
    }

    /// What precedes every Redis key of the system: `chat:` or
    /// `{ns}:chat:`.
    pub fn key_prefix(&self) -> String {
        format!("{}chat:", self.channel_prefix())
    }

    /// An AMQP exchange or queue name in this namespace: `{ns}.{name}` or
    /// `name`.
    pub fn amqp(&self, name: &str) -> String {
        if self.0.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.0)
        }
    }
}

impl std::str::FromStr for Namespace {
    type Err = InvalidNamespace;
    fn from_str(s: &str) -> Result<Namespace, InvalidNamespace> {
        Namespace::new(s)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_namespace_keeps_the_documented_names() {
        let ns = Namespace::none();
        assert_eq!(ns.channel_prefix(), "");
        assert_eq!(ns.key_prefix(), "chat:");
        assert_eq!(ns.amqp("chat.events"), "chat.events");
    }

    #[test]
    fn a_namespace_prefixes_every_name() {
        let ns = Namespace::new("staging-2").expect("valid");
        assert_eq!(ns.channel_prefix(), "staging-2:");
        assert_eq!(ns.key_prefix(), "staging-2:chat:");
        assert_eq!(
            ns.amqp("presence.notifications"),
            "staging-2.presence.notifications"
        );
    }

    #[test]
    fn names_that_would_break_keys_or_routing_are_refused() {
        for bad in ["a.b", "a:b", "A", "with space", "é", &"x".repeat(33)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Namespace::new(&"x".repeat(32)).is_ok());
    }
}
