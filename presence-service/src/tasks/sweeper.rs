//! Expires connections whose gateway stopped sending heartbeats, so a dead
//! gateway's users go offline without anyone calling `RemoveConnection`.
//! Each tick also samples the connections gauge.

use std::sync::Arc;
use std::time::Duration;

use chat_common::Shutdown;
use tokio::time::MissedTickBehavior;

use crate::app::App;

pub(crate) async fn run(app: Arc<App>, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match app.sweep().await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired connections removed"),
            Err(error) => tracing::warn!(%error, "sweep failed, retrying at the next tick"),
        }
        match app.connection_count().await {
            Ok(count) => metrics::gauge!(crate::metrics::CONNECTIONS).set(count as f64),
            Err(error) => tracing::debug!(%error, "cannot count connections"),
        }
    }
}
