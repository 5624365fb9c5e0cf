//! Access tokens: HS256 JWTs signed by auth-service and verified wherever a
//! request enters the system (the gateway), without a round trip. The
//! algorithm is pinned and `exp`, `nbf`, `iss` and `aud` are all checked.
//!
//! Every token names its signing key in the header's `kid` (RFC 7515
//! §4.1.4), and verification picks the key by that id from a key set: the
//! current signing key and any previous keys still accepted while their
//! tokens run out. That lets the key rotate without signing everyone out
//! (RFC 8725 §3.1: the key, not the token, decides the algorithm).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::identity::Identity;

pub const ISSUER: &str = "chat-auth";
pub const AUDIENCE: &str = "chat";

/// Longest key id accepted in settings: ids travel in every token header.
pub const MAX_KEY_ID_LEN: usize = 64;

/// What an access token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Username.
    pub name: String,
    /// Display name when the token was issued.
    pub dn: String,
    /// System-wide role: "user" or "admin".
    pub role: String,
    /// The sign-in session (refresh-token family) the token belongs to:
    /// revoking the session revokes its access tokens too.
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

impl Claims {
    pub fn identity(&self) -> Identity {
        Identity {
            user_id: self.sub.clone(),
            username: self.name.clone(),
            display_name: self.dn.clone(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// The default key id of a secret: derived from it, so that every process
/// given the same `JWT_SECRET` and no `JWT_KEY_ID` agrees on it. It is an
/// HMAC of a fixed label under the secret, which tells nothing about the
/// secret that a token's own signature does not already.
pub fn default_key_id(secret: &Secret) -> String {
    let key = EncodingKey::from_secret(secret.expose().as_bytes());
    match jsonwebtoken::crypto::sign(b"chat key id", &key, Algorithm::HS256) {
        // Base64url of the MAC: 12 characters are 72 bits, plenty to tell a
        // handful of keys apart.
        Ok(mac) => mac.chars().take(12).collect(),
        // HMAC takes keys of any length, so this cannot happen; an id
        // that matches no other key is still a correct answer.
        Err(_) => "default".to_owned(),
    }
}

/// A named HS256 key.
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub id: String,
    pub secret: Secret,
}

/// Which keys sign and verify access tokens: `JWT_SECRET` and
/// `JWT_KEY_ID` name the signing key, `JWT_PREVIOUS_KEYS` the keys only
/// verified with.
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub secret: Secret,
    /// `None`: [`default_key_id`] of the secret.
    pub key_id: Option<String>,
    pub previous: Vec<NamedKey>,
}

impl From<Secret> for KeySettings {
    fn from(secret: Secret) -> KeySettings {
        KeySettings {
            secret,
            key_id: None,
            previous: Vec::new(),
        }
    }
}

impl KeySettings {
    /// Parses `JWT_PREVIOUS_KEYS`: comma-separated `kid:secret` pairs; an
    /// empty value is none. Errors name the entry by position only, never
    /// by content, as the content is a secret.
    pub fn parse_previous(value: &Secret) -> anyhow::Result<Vec<NamedKey>> {
        value
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
            .map(|(n, entry)| {
                let (id, secret) = entry.split_once(':').ok_or_else(|| {
                    anyhow::anyhow!("JWT_PREVIOUS_KEYS: entry {} is not kid:secret", n + 1)
                })?;
                Ok(NamedKey {
                    id: id.trim().to_owned(),
                    secret: Secret::new(secret.trim()),
                })
            })
            .collect()
    }

    /// The signing key's id.
    pub fn signing_key_id(&self) -> String {
        match &self.key_id {
            Some(id) => id.clone(),
            None => default_key_id(&self.secret),
        }
    }

    /// Refuses an empty secret, a bad or repeated key id.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.secret.expose().is_empty(),
            "JWT_SECRET must not be empty"
        );
        let signing = NamedKey {
            id: self.signing_key_id(),
            secret: self.secret.clone(),
        };
        let mut seen = std::collections::HashSet::new();
        for key in std::iter::once(&signing).chain(&self.previous) {
            anyhow::ensure!(
                !key.id.is_empty()
                    && key.id.len() <= MAX_KEY_ID_LEN
                    && key
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "JWT key id {:?} must be 1 to {MAX_KEY_ID_LEN} characters of a-z, A-Z, 0-9, '-', '_', '.'",
                key.id
            );
            anyhow::ensure!(
                !key.secret.expose().is_empty(),
                "JWT_PREVIOUS_KEYS: the key {:?} has an empty secret",
                key.id
            );
            anyhow::ensure!(
                seen.insert(key.id.as_str()),
                "JWT key id {:?} is used twice (JWT_KEY_ID, JWT_PREVIOUS_KEYS)",
                key.id
            );
        }
        Ok(())
    }
}

/// Signs with the current key and verifies with any key of the set.
#[derive(Clone)]
pub struct TokenKeys {
    signing_id: String,
    encoding: EncodingKey,
    /// By key id: the signing key and the previous keys.
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl TokenKeys {
    /// One key, with its default id, and no previous keys.
    pub fn new(secret: &Secret) -> TokenKeys {
        TokenKeys::from_settings(&KeySettings::from(secret.clone()))
    }

    /// The key set `settings` describe; call [`KeySettings::validate`]
    /// first to refuse bad settings with a clear message.
    pub fn from_settings(settings: &KeySettings) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let signing_id = settings.signing_key_id();
        let mut decoding: HashMap<String, DecodingKey> = settings
            .previous
            .iter()
            .map(|key| {
                (
                    key.id.clone(),
                    DecodingKey::from_secret(key.secret.expose().as_bytes()),
                )
            })
            .collect();
        // The signing key wins a clash of ids.
        decoding.insert(
            signing_id.clone(),
            DecodingKey::from_secret(settings.secret.expose().as_bytes()),
        );
        TokenKeys {
            signing_id,
            encoding: EncodingKey::from_secret(settings.secret.expose().as_bytes()),
            decoding,
            validation,
        }
    }

    /// The id tokens are signed under.
    pub fn signing_key_id(&self) -> &str {
        &self.signing_id
    }

    /// Signs a token for `identity` in sign-in session `session_id`, valid
    /// for `ttl_s` seconds from now.
    pub fn sign(
        &self,
        identity: &Identity,
        role: &str,
        session_id: &str,
        ttl_s: i64,
    ) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: identity.user_id.clone(),
            name: identity.username.clone(),
            dn: identity.display_name.clone(),
            role: role.to_owned(),
            sid: session_id.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl_s,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|_| TokenError::Invalid)
    }

    /// The claims of a token signed under a key of the set. The header's
    /// `kid` only selects the key; the algorithm stays HS256 whatever the
    /// header's `alg` says, and a missing or unknown `kid` is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn alice() -> Identity {
        Identity {
            user_id: "u1".into(),
            username: "alice".into(),
            display_name: "Alice".into(),
        }
    }

    fn keys(id: &str, secret: &str, previous: &[(&str, &str)]) -> TokenKeys {
        TokenKeys::from_settings(&KeySettings {
            secret: Secret::new(secret),
            key_id: Some(id.to_owned()),
            previous: previous
                .iter()
                .map(|(id, secret)| NamedKey {
                    id: (*id).to_owned(),
                    secret: Secret::new(*secret),
                })
                .collect(),
        })
    }

    /// A token with the given header, valid claims, signed HS256 with
    /// `secret` whatever the header claims.
    fn forged(header: &str, secret: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let body = format!(
            r#"{{"sub":"u1","name":"a","dn":"a","role":"admin","sid":"s1","iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{now},"nbf":{now},"exp":{}}}"#,
            now + 60
        );
        let signing_input = format!("{}.{}", engine.encode(header), engine.encode(body));
        let key = EncodingKey::from_secret(secret.as_bytes());
        match jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256) {
            Ok(signature) => format!("{signing_input}.{signature}"),
            Err(e) => panic!("cannot sign a test token: {e}"),
        }
    }

    fn header_of(token: &str) -> Result<Header, TokenError> {
        jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() -> Result<(), TokenError> {
        let keys = TokenKeys::new(&Secret::new("k"));
        let token = keys.sign(&alice(), "user", "family-1", 60)?;
        let claims = keys.verify(&token)?;
        assert_eq!(claims.identity(), alice());
        assert_eq!(claims.sid, "family-1");
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, AUDIENCE)
        );
        assert_eq!(claims.exp - claims.iat, 60);
        let header = header_of(&token)?;
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some(keys.signing_key_id()));
        Ok(())
    }

    #[test]
    fn the_default_key_id_is_derived_from_the_secret_alone() {
        let a = default_key_id(&Secret::new("secret a"));
        assert_eq!(a, default_key_id(&Secret::new("secret a")));
        assert_ne!(a, default_key_id(&Secret::new("secret b")));
        assert_eq!(a.len(), 12);
        assert!(!a.contains("secret"));
        assert_eq!(TokenKeys::new(&Secret::new("secret a")).signing_key_id(), a);
    }

    #[test]
    fn expired_foreign_and_garbage_tokens_are_refused() -> Result<(), TokenError> {
        let keys = TokenKeys::new(&Secret::new("k"));
        let expired = keys.sign(&alice(), "user", "s", -60)?;
        assert!(matches!(keys.verify(&expired), Err(TokenError::Expired)));
        let foreign = TokenKeys::new(&Secret::new("other")).sign(&alice(), "user", "s", 60)?;
        assert!(matches!(keys.verify(&foreign), Err(TokenError::Invalid)));
        assert!(matches!(keys.verify("not.a.jwt"), Err(TokenError::Invalid)));
        Ok(())
    }

    #[test]
    fn a_previous_key_verifies_while_listed_and_never_signs() -> Result<(), TokenError> {
        let old = keys("a", "secret a", &[]);
        let token = old.sign(&alice(), "user", "s", 60)?;
        let rotated = keys("b", "secret b", &[("a", "secret a")]);
        assert_eq!(rotated.verify(&token)?.sub, "u1");
        let new_token = rotated.sign(&alice(), "user", "s", 60)?;
        assert_eq!(header_of(&new_token)?.kid.as_deref(), Some("b"));
        // The old key alone does not know the new one.
        assert!(matches!(old.verify(&new_token), Err(TokenError::Invalid)));
        let retired = keys("b", "secret b", &[]);
        assert!(matches!(retired.verify(&token), Err(TokenError::Invalid)));
        Ok(())
    }

    #[test]
    fn missing_unknown_and_mismatched_key_ids_are_refused() {
        let set = keys("b", "secret b", &[("a", "secret a")]);
        // Control: the forging helper makes tokens the set accepts.
        let good = forged(r#"{"alg":"HS256","typ":"JWT","kid":"a"}"#, "secret a");
        assert!(set.verify(&good).is_ok());
        let no_kid = forged(r#"{"alg":"HS256","typ":"JWT"}"#, "secret b");
        assert!(matches!(set.verify(&no_kid), Err(TokenError::Invalid)));
        let unknown = forged(r#"{"alg":"HS256","typ":"JWT","kid":"c"}"#, "secret b");
        assert!(matches!(set.verify(&unknown), Err(TokenError::Invalid)));
        // Names key a, signed with key b: the named key decides.
        let mismatched = forged(r#"{"alg":"HS256","typ":"JWT","kid":"a"}"#, "secret b");
        assert!(matches!(set.verify(&mismatched), Err(TokenError::Invalid)));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let set = keys("a", "secret a", &[]);
        let now = chrono::Utc::now().timestamp();
        let body = engine.encode(format!(
            r#"{{"sub":"u1","name":"a","dn":"a","role":"admin","sid":"s","iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{now},"nbf":{now},"exp":{}}}"#,
            now + 60
        ));
        let none = engine.encode(r#"{"alg":"none","typ":"JWT","kid":"a"}"#);
        assert!(set.verify(&format!("{none}.{body}.")).is_err());
        // An HS512 MAC under the right key: still not HS256.
        let header = engine.encode(r#"{"alg":"HS512","typ":"JWT","kid":"a"}"#);
        let input = format!("{header}.{body}");
        let key = EncodingKey::from_secret(b"secret a");
        let hs512 = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS512)
            .map(|signature| format!("{input}.{signature}"));
        assert!(hs512.is_ok_and(|token| set.verify(&token).is_err()));
        // RS256 naming the HMAC key (the classic confusion): the header
        // is signed with the secret as if it were a MAC key.
        let rs256 = forged(r#"{"alg":"RS256","typ":"JWT","kid":"a"}"#, "secret a");
        assert!(matches!(set.verify(&rs256), Err(TokenError::Invalid)));
    }

    #[test]
    fn previous_keys_are_parsed_and_bad_settings_refused() -> anyhow::Result<()> {
        let previous = KeySettings::parse_previous(&Secret::new(" a:one , b:two:with:colons,"))?;
        let parsed: Vec<(&str, &str)> = previous
            .iter()
            .map(|k| (k.id.as_str(), k.secret.expose()))
            .collect();
        assert_eq!(parsed, [("a", "one"), ("b", "two:with:colons")]);
        assert!(KeySettings::parse_previous(&Secret::new(""))?.is_empty());
        let err = KeySettings::parse_previous(&Secret::new("a:one,hunter2"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("JWT_PREVIOUS_KEYS: entry 2 is not kid:secret")
        );

        let settings = |key_id: &str, previous: Vec<NamedKey>| KeySettings {
            secret: Secret::new("s"),
            key_id: Some(key_id.to_owned()),
            previous,
        };
        assert!(
            settings("b", KeySettings::parse_previous(&Secret::new("a:x"))?)
                .validate()
                .is_ok()
        );
        let twice = settings("a", KeySettings::parse_previous(&Secret::new("a:x"))?);
        assert_eq!(
            twice.validate().err().map(|e| e.to_string()).as_deref(),
            Some("JWT key id \"a\" is used twice (JWT_KEY_ID, JWT_PREVIOUS_KEYS)")
        );
        assert!(settings("has space", Vec::new()).validate().is_err());
        assert!(settings("", Vec::new()).validate().is_err());
        let empty = settings("b", KeySettings::parse_previous(&Secret::new("a:"))?);
        assert!(empty.validate().is_err());
        Ok(())
    }
}
