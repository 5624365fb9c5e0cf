//! Passwords (8–128 characters) and their argon2id hashes. Hashing and
//! verifying are deliberately slow CPU work: callers run them on a blocking
//! thread.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::ValidationError;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

/// A password that satisfies the length rule. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Parses a password sent in the request field `field`.
    pub fn parse(value: &str, field: &'static str) -> Result<Password, ValidationError> {
        let chars = value.chars().count();
        if chars < MIN_CHARS {
            return Err(ValidationError::new(
                field,
                "must be at least 8 characters long",
            ));
        }
        if chars > MAX_CHARS {
            return Err(ValidationError::new(
                field,
                "must be at most 128 characters long",
            ));
        }
        Ok(Password(value.to_owned()))
    }

    /// An argon2id hash with the default (OWASP minimum) parameters and a
    /// fresh random salt.
    pub fn hash(&self) -> Result<PasswordHash, argon2::password_hash::Error> {
        let hash = Argon2::default().hash_password(self.0.as_bytes())?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Whether this password matches `hash`. A malformed stored hash is an
    /// error, not a mismatch.
    pub fn verify(&self, hash: &PasswordHash) -> Result<bool, argon2::password_hash::Error> {
        match Argon2::default().verify_password(self.0.as_bytes(), hash.0.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A password hash in PHC string format, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a hash read back from storage.
    pub fn from_stored(value: String) -> PasswordHash {
        PasswordHash(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_characters() {
        assert!(Password::parse("12345678", "password").is_ok());
        assert!(Password::parse("ééééééé", "password").is_err());
        assert!(Password::parse(&"é".repeat(128), "password").is_ok());
        let err = Password::parse(&"x".repeat(129), "new_password").err();
        assert_eq!(err.map(|e| e.field), Some("new_password"));
    }

    #[test]
    fn a_hash_verifies_its_password_only() -> Result<(), Box<dyn std::error::Error>> {
        let password = Password::parse("correct horse", "password")?;
        let hash = password.hash()?;
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(password.verify(&hash)?);
        assert!(!Password::parse("wrong horse", "password")?.verify(&hash)?);
        assert!(
            password
                .verify(&PasswordHash::from_stored("garbage".into()))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn secrets_never_print() -> Result<(), ValidationError> {
        let password = Password::parse("hunter2hunter2", "password")?;
        assert_eq!(format!("{password:?}"), "[redacted]");
        Ok(())
    }
}
