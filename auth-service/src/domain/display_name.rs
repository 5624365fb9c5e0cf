//! Display names: 1–64 characters after trimming, no control characters.

use std::fmt;

use super::{Username, ValidationError};

pub const MAX_CHARS: usize = 64;

/// A valid, trimmed display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(value: &str) -> Result<DisplayName, ValidationError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("display_name", "must not be empty"));
        }
        if trimmed.chars().count() > MAX_CHARS {
            return Err(ValidationError::new(
                "display_name",
                "must be at most 64 characters long",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(DisplayName(trimmed.to_owned()))
    }

    /// The default display name of a user who gave none.
    pub fn from_username(username: &Username) -> DisplayName {
        // A username (≤ 32 printable ASCII characters) is always a valid
        // display name.
        DisplayName(username.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_may_be_any_script() -> Result<(), ValidationError> {
        assert_eq!(
            DisplayName::parse("  Alice Ünicode ")?.as_str(),
            "Alice Ünicode"
        );
        assert_eq!(
            DisplayName::parse(&"é".repeat(64))?
                .as_str()
                .chars()
                .count(),
            64
        );
        assert_eq!(DisplayName::parse("李")?.as_str(), "李");
        Ok(())
    }

    #[test]
    fn empty_long_and_control_names_are_refused() {
        for name in ["", "   ", &"é".repeat(65), "a\u{7}b", "a\nb"] {
            assert_eq!(
                DisplayName::parse(name).err().map(|e| e.field),
                Some("display_name"),
                "{name:?}"
            );
        }
    }
}
