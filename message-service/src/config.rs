//! The service's configuration, built by `main.rs` from flags and the
//! environment, or directly by tests and the all-in-one binary.

use std::time::Duration;

use chat_common::grpc::{ClientTls, ServerTls};
use chat_common::{Backends, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite:...` or `postgres:...`.
    pub database_url: String,
    /// Credential every caller must present (`x-service-token`).
    pub service_token: Secret,
    pub backends: Backends,
    /// How long a sender may recall their own message.
    pub recall_window: Duration,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    pub max_attachment_bytes: u64,
    /// auth-service (`http://host:port`): checks the access token of admin
    /// calls and names the users an admin adds to rooms.
    pub auth_addr: String,
    /// TLS of the gRPC server (`GRPC_TLS_CERT`...); `None`: plaintext.
    pub grpc_tls: Option<ServerTls>,
    /// TLS of the calls to auth-service (`GRPC_TLS_CA`...); `None`:
    /// plaintext.
    pub auth_tls: Option<ClientTls>,
}

impl Config {
    pub const DEFAULT_RECALL_WINDOW: Duration = Duration::from_secs(120);
    pub const DEFAULT_MAX_TEXT_CHARS: usize = 4000;
    pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;
    /// Where auth-service listens by default.
    pub const DEFAULT_AUTH_ADDR: &str = "http://127.0.0.1:50051";

    /// A configuration with the default limits.
    pub fn new(
        database_url: impl Into<String>,
        service_token: Secret,
        backends: Backends,
    ) -> Config {
        Config {
            database_url: database_url.into(),
            service_token,
            backends,
            recall_window: Self::DEFAULT_RECALL_WINDOW,
            max_text_chars: Self::DEFAULT_MAX_TEXT_CHARS,
            max_attachment_bytes: Self::DEFAULT_MAX_ATTACHMENT_BYTES,
            auth_addr: Self::DEFAULT_AUTH_ADDR.to_owned(),
            grpc_tls: None,
            auth_tls: None,
        }
    }
}
