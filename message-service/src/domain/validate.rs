//! Input that parses into values which can only be valid.

use crate::error::Error;

/// A room name: trimmed, 1–100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<RoomName, Error> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(Error::invalid("room name must be 1 to 100 characters"));
        }
        Ok(RoomName(name.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Checks a message text: at most `max_chars` characters (not bytes), else
/// `too_large`; not blank unless the message carries an attachment.
pub fn message_text(text: &str, max_chars: usize, has_attachment: bool) -> Result<(), Error> {
    // Count no further than the limit: a huge text costs no more than a legal one.
    if text.chars().nth(max_chars).is_some() {
        return Err(Error::TooLarge(format!(
            "text is longer than {max_chars} characters"
        )));
    }
    if text.trim().is_empty() && !has_attachment {
        return Err(Error::invalid("text must not be empty"));
    }
    Ok(())
}

/// A client's id for one send, the de-duplication key: 1–128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(raw: &str) -> Result<ClientMsgId, Error> {
        let chars = raw.chars().count();
        if chars == 0 || chars > 128 {
            return Err(Error::invalid("client_msg_id must be 1 to 128 characters"));
        }
        Ok(ClientMsgId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An attachment's file name: 1–255 characters, no `/` and no NUL.
pub fn filename(raw: &str) -> Result<String, Error> {
    let chars = raw.chars().count();
    if chars == 0 || chars > 255 || raw.contains(['/', '\0']) {
        return Err(Error::invalid(
            "filename must be 1 to 255 characters without '/' or NUL",
        ));
    }
    Ok(raw.to_owned())
}

/// An attachment's content type; empty means `application/octet-stream`.
pub fn content_type(raw: &str) -> Result<String, Error> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok("application/octet-stream".to_owned());
    }
    if raw.len() > 255 || raw.chars().any(char::is_control) {
        return Err(Error::invalid("content_type is malformed"));
    }
    Ok(raw.to_owned())
}

/// A user id given in a request body.
pub fn user_id(raw: &str) -> Result<&str, Error> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(Error::invalid("user_id must be 1 to 128 characters"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ErrorCode;

    #[test]
    fn room_names_are_trimmed_and_bounded() {
        assert_eq!(
            RoomName::parse("  general ").map(RoomName::into_inner).ok(),
            Some("general".into())
        );
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse(&"é".repeat(100)).is_ok());
        assert!(RoomName::parse(&"é".repeat(101)).is_err());
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        assert!(message_text(&"é".repeat(4000), 4000, false).is_ok());
        let err = message_text(&"a".repeat(4001), 4000, false).err();
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::TooLarge));
        let err = message_text("  ", 4000, false).err();
        assert_eq!(err.map(|e| e.code()), Some(ErrorCode::InvalidArgument));
        assert!(message_text("", 4000, true).is_ok());
    }

    #[test]
    fn client_msg_ids_and_filenames() {
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse(&"x".repeat(128)).is_ok());
        assert!(ClientMsgId::parse(&"x".repeat(129)).is_err());
        assert!(filename("a.txt").is_ok());
        assert!(filename("../a").is_err());
        assert!(filename("a\0b").is_err());
        assert!(filename(&"f".repeat(256)).is_err());
        assert_eq!(
            content_type("").ok().as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            content_type("text/plain").ok().as_deref(),
            Some("text/plain")
        );
    }
}
