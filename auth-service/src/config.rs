//! What `serve` needs. The binary fills it from flags and environment
//! variables; tests and the all-in-one binary build it directly.

use std::fmt;
use std::sync::Arc;

use chat_common::Secret;
use chat_common::grpc::ServerTls;
use chat_common::pubsub::{InProcessPubSub, PubSub};
use chat_common::token::KeySettings;

use crate::domain::Username;
use crate::throttle::ThrottleConfig;

pub const DEFAULT_ACCESS_TOKEN_TTL_S: i64 = 15 * 60;
pub const DEFAULT_REFRESH_TOKEN_TTL_S: i64 = 30 * 24 * 60 * 60;

#[derive(Clone)]
pub struct Config {
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// The HS256 key access tokens are signed with (`JWT_SECRET`,
    /// `JWT_KEY_ID`) and the previous keys still accepted
    /// (`JWT_PREVIOUS_KEYS`); the gateways verify with the same set.
    pub jwt_keys: KeySettings,
    /// The shared credential every internal caller presents.
    pub service_token: Secret,
    pub access_token_ttl_s: i64,
    pub refresh_token_ttl_s: i64,
    /// Accounts that get the admin role when registered and at start-up if
    /// they exist: how a deployment gets its first admin.
    pub admin_usernames: Vec<String>,
    /// Failed-login limits per account and per client address.
    pub login_throttle: ThrottleConfig,
    /// Where `disconnect` user events go when a user is disabled or changes
    /// their password, so every gateway closes the user's sockets at once.
    pub pubsub: Arc<dyn PubSub>,
    /// TLS of the gRPC server (`GRPC_TLS_*`); `None`: plaintext.
    pub grpc_tls: Option<ServerTls>,
}

impl Config {
    /// A configuration with the default token lifetimes.
    pub fn new(
        database_url: impl Into<String>,
        jwt_secret: Secret,
        service_token: Secret,
    ) -> Config {
        Config {
            database_url: database_url.into(),
            jwt_keys: KeySettings::from(jwt_secret),
            service_token,
            access_token_ttl_s: DEFAULT_ACCESS_TOKEN_TTL_S,
            refresh_token_ttl_s: DEFAULT_REFRESH_TOKEN_TTL_S,
            admin_usernames: Vec::new(),
            login_throttle: ThrottleConfig::default(),
            // Reaches no gateway: a deployment sets the one its gateways
            // subscribe to; without it only their re-validation applies.
            pubsub: Arc::new(InProcessPubSub::new()),
            grpc_tls: None,
        }
    }

    /// The bootstrap admins as usernames, or an error naming the bad one.
    pub fn admin_usernames(&self) -> anyhow::Result<Vec<Username>> {
        self.admin_usernames
            .iter()
            .map(|name| name.trim().to_lowercase())
            .filter(|name| !name.is_empty())
            .map(|name| {
                Username::parse(&name).map_err(|e| {
                    anyhow::anyhow!("ADMIN_USERNAMES: {name:?} is not a username ({e})")
                })
            })
            .collect()
    }

    /// Refuses values the service cannot run with, naming the bad key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.access_token_ttl_s > 0,
            "ACCESS_TOKEN_TTL_S must be positive, got {}",
            self.access_token_ttl_s
        );
        anyhow::ensure!(
            self.refresh_token_ttl_s > 0,
            "REFRESH_TOKEN_TTL_S must be positive, got {}",
            self.refresh_token_ttl_s
        );
        self.jwt_keys.validate()?;
        anyhow::ensure!(
            !self.service_token.expose().is_empty(),
            "SERVICE_TOKEN must not be empty"
        );
        anyhow::ensure!(
            !self.login_throttle.window.is_zero(),
            "LOGIN_THROTTLE_WINDOW_S must be positive"
        );
        self.admin_usernames()?;
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("jwt_keys", &self.jwt_keys)
            .field("service_token", &self.service_token)
            .field("access_token_ttl_s", &self.access_token_ttl_s)
            .field("refresh_token_ttl_s", &self.refresh_token_ttl_s)
            .field("admin_usernames", &self.admin_usernames)
            .field("login_throttle", &self.login_throttle)
            .finish_non_exhaustive()
    }
}

/// The URL with any `user:password@` part replaced, so it can be logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://[redacted]{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets_and_url_credentials() -> anyhow::Result<()> {
        let mut config = Config::new(
            "postgres://chat:hunter2@db:5432/auth",
            Secret::new("jwt"),
            Secret::new("svc"),
        );
        config.jwt_keys.previous = KeySettings::parse_previous(&Secret::new("old:oldsecret"))?;
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("jwt\"") && !shown.contains("svc\""));
        assert!(!shown.contains("oldsecret") && shown.contains("\"old\""));
        assert!(shown.contains("postgres://[redacted]@db:5432/auth"));
        assert_eq!(
            redact_url("sqlite://data/auth.db?mode=rwc"),
            "sqlite://data/auth.db?mode=rwc"
        );
        Ok(())
    }

    #[test]
    fn non_positive_lifetimes_are_refused() {
        let mut config = Config::new("sqlite::memory:", Secret::new("a"), Secret::new("b"));
        assert!(config.validate().is_ok());
        config.access_token_ttl_s = 0;
        let err = config.validate().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("ACCESS_TOKEN_TTL_S")));
    }

    #[test]
    fn admin_usernames_are_normalised_and_checked() -> anyhow::Result<()> {
        let mut config = Config::new("sqlite::memory:", Secret::new("a"), Secret::new("b"));
        config.admin_usernames = vec![" Root ".into(), String::new(), "ops.team".into()];
        let names: Vec<String> = config
            .admin_usernames()?
            .into_iter()
            .map(Username::into_string)
            .collect();
        assert_eq!(names, ["root", "ops.team"]);
        config.admin_usernames = vec!["no spaces".into()];
        let err = config.validate().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "ADMIN_USERNAMES: \"no spaces\" is not a username (username: may only contain \
                 lowercase letters a-z, digits 0-9, '_', '.' and '-')"
            )
        );
        Ok(())
    }
}
