//! What every handler shares.

use std::collections::HashSet;
use std::sync::Arc;

use chat_common::pubsub::PubSub;
use chat_common::token::TokenKeys;
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::domain::{PasswordHash, Username};
use crate::store::UserStore;
use crate::throttle::LoginThrottle;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn UserStore>,
    pub keys: TokenKeys,
    pub access_token_ttl_s: i64,
    pub refresh_token_ttl_s: i64,
    /// A hash of a random password, verified against when a login names an
    /// unknown user so that it takes as long as a wrong password.
    pub dummy_hash: Arc<OnceCell<PasswordHash>>,
    /// `ADMIN_USERNAMES`: registering one of these names makes an admin.
    pub admin_usernames: Arc<HashSet<Username>>,
    pub login_throttle: Arc<LoginThrottle>,
    pub pubsub: Arc<dyn PubSub>,
}

impl AppState {
    /// Fails on an invalid `ADMIN_USERNAMES` entry.
    pub fn new(store: Arc<dyn UserStore>, config: &Config) -> anyhow::Result<AppState> {
        Ok(AppState {
            store,
            keys: TokenKeys::from_settings(&config.jwt_keys),
            access_token_ttl_s: config.access_token_ttl_s,
            refresh_token_ttl_s: config.refresh_token_ttl_s,
            dummy_hash: Arc::new(OnceCell::new()),
            admin_usernames: Arc::new(config.admin_usernames()?.into_iter().collect()),
            login_throttle: Arc::new(LoginThrottle::new(config.login_throttle)),
            pubsub: config.pubsub.clone(),
        })
    }
}
