//! Access tokens: HS256 JWTs signed by auth-service and verified wherever a
//! request enters the system (the gateway), without a round trip. The
//! algorithm is pinned and `exp`, `nbf`, `iss` and `aud` are all checked.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::identity::Identity;

pub const ISSUER: &str = "chat-auth";
pub const AUDIENCE: &str = "chat";

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

/// Signs and verifies access tokens with one shared key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &Secret) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Signs a token for `identity` valid for `ttl_s` seconds from now.
    pub fn sign(&self, identity: &Identity, role: &str, ttl_s: i64) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: identity.user_id.clone(),
            name: identity.username.clone(),
            dn: identity.display_name.clone(),
            role: role.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl_s,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user_id: "u1".into(),
            username: "alice".into(),
            display_name: "Alice".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() -> Result<(), TokenError> {
        let keys = TokenKeys::new(&Secret::new("k"));
        let claims = keys.verify(&keys.sign(&alice(), "user", 60)?)?;
        assert_eq!(claims.identity(), alice());
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, AUDIENCE)
        );
        assert_eq!(claims.exp - claims.iat, 60);
        Ok(())
    }

    #[test]
    fn expired_foreign_and_garbage_tokens_are_refused() -> Result<(), TokenError> {
        let keys = TokenKeys::new(&Secret::new("k"));
        let expired = keys.sign(&alice(), "user", -60)?;
        assert!(matches!(keys.verify(&expired), Err(TokenError::Expired)));
        let foreign = TokenKeys::new(&Secret::new("other")).sign(&alice(), "user", 60)?;
        assert!(matches!(keys.verify(&foreign), Err(TokenError::Invalid)));
        assert!(matches!(keys.verify("not.a.jwt"), Err(TokenError::Invalid)));
        Ok(())
    }

    #[test]
    fn the_none_algorithm_is_refused() {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let header = engine.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = engine.encode(format!(
            r#"{{"sub":"u1","name":"a","dn":"a","role":"admin","iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{now},"nbf":{now},"exp":{}}}"#,
            now + 60
        ));
        let keys = TokenKeys::new(&Secret::new("k"));
        assert!(keys.verify(&format!("{header}.{body}.")).is_err());
    }
}
