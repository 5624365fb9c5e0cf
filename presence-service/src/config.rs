//! What `serve` needs: the service credential, the buses, the timings of
//! connection expiry, and where auth-service checks admin tokens.

use std::time::Duration;

use chat_common::grpc::{ClientTls, ServerTls};
use chat_common::{Backends, Secret};

/// How long a connection lives without a heartbeat.
pub const DEFAULT_CONNECTION_TTL: Duration = Duration::from_secs(30);
/// auth-service's default address, where it listens by default.
pub const DEFAULT_AUTH_ADDR: &str = "http://127.0.0.1:50051";
/// How often expired connections are swept.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    /// Callers must present it (`x-service-token`).
    pub service_token: Secret,
    pub backends: Backends,
    /// A connection not refreshed by a heartbeat within it expires as if
    /// removed. Gateways should heartbeat at a third of it or more often.
    pub connection_ttl: Duration,
    /// How late, at most, an expired connection is noticed.
    pub sweep_interval: Duration,
    /// auth-service (`http://host:port`), which checks the access token of
    /// admin calls.
    pub auth_addr: String,
    /// TLS of the gRPC server (`GRPC_TLS_CERT`...); `None`: plaintext.
    pub grpc_tls: Option<ServerTls>,
    /// TLS of the calls to auth-service (`GRPC_TLS_CA`...); `None`:
    /// plaintext.
    pub auth_tls: Option<ClientTls>,
}

impl Config {
    /// A configuration with the default timings.
    pub fn new(service_token: Secret, backends: Backends) -> Config {
        Config {
            service_token,
            backends,
            connection_ttl: DEFAULT_CONNECTION_TTL,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            auth_addr: DEFAULT_AUTH_ADDR.to_owned(),
            grpc_tls: None,
            auth_tls: None,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.connection_ttl.is_zero(),
            "connection_ttl must be more than zero"
        );
        anyhow::ensure!(
            !self.sweep_interval.is_zero(),
            "sweep_interval must be more than zero"
        );
        anyhow::ensure!(
            chrono::TimeDelta::from_std(self.connection_ttl).is_ok(),
            "connection_ttl is too large"
        );
        Ok(())
    }
}
