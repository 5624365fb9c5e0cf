//! What `serve` needs: the service credential, the buses, and the timings of
//! connection expiry.

use std::time::Duration;

use chat_common::{Backends, Secret};

/// How long a connection lives without a heartbeat.
pub const DEFAULT_CONNECTION_TTL: Duration = Duration::from_secs(30);
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
}

impl Config {
    /// A configuration with the default timings.
    pub fn new(service_token: Secret, backends: Backends) -> Config {
        Config {
            service_token,
            backends,
            connection_ttl: DEFAULT_CONNECTION_TTL,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
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
