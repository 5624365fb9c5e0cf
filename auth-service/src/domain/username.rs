//! Usernames: 3–32 characters of lowercase `a-z`, `0-9`, `_`, `.`, `-`.

use std::fmt;

use super::ValidationError;

pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 32;

/// A valid username. The only way to get one is [`Username::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub fn parse(value: &str) -> Result<Username, ValidationError> {
        // Every allowed character is one byte, so the byte length is the
        // character count once the alphabet is checked.
        if !value.bytes().all(is_allowed) {
            return Err(ValidationError::new(
                "username",
                "may only contain lowercase letters a-z, digits 0-9, '_', '.' and '-'",
            ));
        }
        if !(MIN_LEN..=MAX_LEN).contains(&value.len()) {
            return Err(ValidationError::new(
                "username",
                "must be 3 to 32 characters long",
            ));
        }
        Ok(Username(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_allowed(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse() {
        for name in ["abc", "alice", "a.b-c_d", "user42", &"x".repeat(32), "---"] {
            assert_eq!(
                Username::parse(name).map(|u| u.into_string()).as_deref(),
                Ok(name)
            );
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in [
            "",
            "ab",
            &"x".repeat(33),
            "Alice",
            "al ice",
            "al@ice",
            "ålice",
            "alice\n",
            "\u{0}abc",
        ] {
            let err = Username::parse(name).err();
            assert_eq!(err.map(|e| e.field), Some("username"), "{name:?}");
        }
    }
}
