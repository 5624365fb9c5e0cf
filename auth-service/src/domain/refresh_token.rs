//! Refresh tokens: 32 random bytes, URL-safe base64 without padding. Only
//! their SHA-256 is stored, so a leaked table grants no sessions.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A refresh token as handed to a client. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    pub fn generate() -> RefreshToken {
        let bytes: [u8; 32] = rand::random();
        RefreshToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a token a client presented. Any string is accepted: an
    /// unknown token simply matches no stored hash.
    pub fn presented(value: &str) -> RefreshToken {
        RefreshToken(value.to_owned())
    }

    pub fn hash(&self) -> RefreshTokenHash {
        RefreshTokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The stored form of a refresh token: lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash(String);

impl RefreshTokenHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_random_bytes_in_url_safe_base64() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn the_hash_is_hex_sha256_of_the_token_text() {
        let hash = RefreshToken::presented("abc").hash();
        assert_eq!(
            hash.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
