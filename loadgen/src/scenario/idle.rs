//! `idle`: N authenticated connections that only answer the server's
//! pings, and what they cost the gateway in resident memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::Env;
use crate::cli::IdleArgs;
use crate::protocol::read_ready;
use crate::report::Phase;
use crate::stats::{Counters, Failures, Sampler, bump, wait_until};
use crate::sys::rss_bytes;

pub async fn run(args: &IdleArgs) -> anyhow::Result<Vec<Phase>> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let hold = crate::seconds("--hold-s", args.hold_s)?;
    let env = Env::new(&args.common).await?;
    let users = env.users(args.users.clamp(1, args.connections)).await?;
    let pid = args.gateway_pid;
    let rss = move || pid.map(rss_bytes).transpose();
    // After the accounts exist, so that only the sockets are measured.
    let rss_before = rss()?;

    let counters = Counters::new();
    let connected = counters.counter("connected");
    let connect_failed = counters.counter("connect_failed");
    let dropped = counters.counter("dropped");
    let pings = counters.counter("pings_answered");
    let failures = Arc::new(Failures::default());
    let sampler = Sampler::start(
        counters.clone(),
        Some(Box::new(move || {
            let mut gauges = BTreeMap::new();
            if let Some(bytes) = pid.and_then(|pid| rss_bytes(pid).ok()) {
                gauges.insert("gateway_rss_bytes".to_owned(), bytes);
            }
            gauges
        })),
    );

    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for i in 0..args.connections {
        let token = users[i % users.len()].token.clone();
        let connector = env.connector.clone();
        let step = env.step;
        let mut stop = stop_rx.clone();
        let (connected, connect_failed, dropped, pings, failures) = (
            connected.clone(),
            connect_failed.clone(),
            dropped.clone(),
            pings.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let mut ws = match connector.connect(i, &token).await {
                Ok(ws) => ws,
                Err(e) => {
                    failures.note(e);
                    bump(&connect_failed);
                    return;
                }
            };
            if let Err(e) = read_ready(&mut ws, step).await {
                failures.note(e);
                bump(&connect_failed);
                return;
            }
            bump(&connected);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    frame = ws.next() => match frame {
                        // tungstenite queues the pong and sends it with the
                        // next read.
                        Some(Ok(Message::Ping(_))) => bump(&pings),
                        Some(Ok(Message::Close(frame))) => {
                            failures.note(format_args!("server closed an idle connection: {frame:?}"));
                            bump(&dropped);
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            failures.note(format_args!("idle connection failed: {e}"));
                            bump(&dropped);
                            break;
                        }
                        None => {
                            bump(&dropped);
                            break;
                        }
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        });
    }
    let total = args.connections as u64;
    let budget =
        env.step + Duration::from_secs_f64(total as f64 / env.common.connect_rate.max(1.0));
    wait_until(budget, || {
        connected.load(Ordering::Relaxed) + connect_failed.load(Ordering::Relaxed) >= total
    })
    .await;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let rss_after = rss()?;
    let open = connected.load(Ordering::Relaxed) - dropped.load(Ordering::Relaxed);

    let _ = stop_tx.send(true);
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(env.step, closing).await.is_err() {
        failures.note("some connections did not close in time");
    }
    let samples = sampler.finish().await;

    let mut phase = Phase::new("idle");
    phase.duration_s = started.elapsed().as_secs_f64();
    phase.counts = counters.snapshot();
    phase.counts.insert("connections".into(), total);
    phase.counts.insert("open_at_measurement".into(), open);
    phase.values.insert("connect_s".into(), connect_s);
    phase.values.insert(
        "connects_per_s".into(),
        connected.load(Ordering::Relaxed) as f64 / connect_s.max(1e-3),
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        phase
            .values
            .insert("gateway_rss_before_bytes".into(), before as f64);
        phase
            .values
            .insert("gateway_rss_after_bytes".into(), after as f64);
        if open > 0 {
            let per = (after as f64 - before as f64) / open as f64;
            phase
                .values
                .insert("gateway_rss_per_connection_bytes".into(), per);
        }
    }
    phase.samples = samples;
    phase.failures = failures.take();
    Ok(vec![phase])
}
