//! `storm`: K clients on a gateway that restarts. Each client notices the
//! close (1012 from a draining gateway, 1006 from one that vanished),
//! reconnects with jittered exponential back-off, and sends `resume` with
//! the last `seq` it saw; measured: the time from each disconnect to
//! `resumed`, the time until every client resumed, and the failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::StormArgs;
use crate::net::{Connector, Ws};
use crate::protocol::{Frame, read_ready};
use crate::report::Phase;
use crate::stats::{Counters, Failures, Recorder, Sampler, bump, wait_until};
use crate::{Env, Trigger};

struct Ctx {
    args: StormArgs,
    connector: Arc<Connector>,
    step: Duration,
    room: String,
    counters: Arc<Counters>,
    connected: Arc<AtomicU64>,
    connect_failed: Arc<AtomicU64>,
    disconnected: Arc<AtomicU64>,
    resumed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    never_disconnected: Arc<AtomicU64>,
    reconnect_latency: Arc<Recorder>,
    first_disconnect: Mutex<Option<Instant>>,
    last_resumed: Mutex<Option<Instant>>,
    failures: Failures,
}

pub async fn run(args: &StormArgs, trigger: Option<Trigger>) -> anyhow::Result<Vec<Phase>> {
    if args.common.raw_ws {
        bail!("storm needs `resume`, which only the real server speaks");
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let signal_timeout = crate::seconds("--signal-timeout-s", args.signal_timeout_s)?;
    let reconnect_timeout = crate::seconds("--reconnect-timeout-s", args.reconnect_timeout_s)?;
    let env = Env::new(&args.common).await?;
    let users = env.users(args.users.clamp(1, args.clients)).await?;
    let room = env.room(&users, "storm").await?;
    let counters = Counters::new();
    for name in [
        "closed_1012",
        "closed_1006",
        "closed_other",
        "attempts",
        "attempt_failures",
        "replayed",
        "truncated",
    ] {
        counters.counter(name);
    }
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        connector: env.connector.clone(),
        step: env.step,
        room,
        connected: counters.counter("connected"),
        connect_failed: counters.counter("connect_failed"),
        disconnected: counters.counter("disconnected"),
        resumed: counters.counter("resumed"),
        failed: counters.counter("failed"),
        never_disconnected: counters.counter("never_disconnected"),
        reconnect_latency: Recorder::new()?,
        first_disconnect: Mutex::new(None),
        last_resumed: Mutex::new(None),
        failures: Failures::default(),
        counters,
    });

    let (give_up_tx, give_up_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for i in 0..args.clients {
        let ctx = ctx.clone();
        let token = users[i % users.len()].token.clone();
        let (give_up, stop) = (give_up_rx.clone(), stop_rx.clone());
        tasks.spawn(async move { client(&ctx, i, &token, give_up, stop).await });
    }
    let total = args.clients as u64;
    let budget =
        env.step + Duration::from_secs_f64(total as f64 / env.common.connect_rate.max(1.0));
    let all_ready = wait_until(budget, || {
        ctx.connected.load(Ordering::Relaxed) + ctx.connect_failed.load(Ordering::Relaxed) >= total
    })
    .await;
    if !all_ready {
        ctx.failures.note("not every client connected in time");
    }

    let sampler = Sampler::start(ctx.counters.clone(), None);
    let signalled = Instant::now();
    let trigger = trigger.or_else(|| {
        args.restart_cmd
            .clone()
            .map(|cmd| restart_command(cmd, signal_timeout + reconnect_timeout))
    });
    let trigger = match trigger {
        Some(trigger) => Some(tokio::spawn(trigger)),
        None => {
            eprintln!(
                "loadgen storm: {} clients ready; restart the gateway within {:.0} s",
                ctx.connected.load(Ordering::Relaxed),
                signal_timeout.as_secs_f64()
            );
            None
        }
    };
    let connected = ctx.connected.load(Ordering::Relaxed);
    wait_until(signal_timeout, || {
        ctx.disconnected.load(Ordering::Relaxed) >= connected
    })
    .await;
    let _ = give_up_tx.send(true);
    wait_until(reconnect_timeout + env.step, || {
        let d = &ctx;
        d.resumed.load(Ordering::Relaxed)
            + d.failed.load(Ordering::Relaxed)
            + d.never_disconnected.load(Ordering::Relaxed)
            >= connected
    })
    .await;
    let _ = stop_tx.send(true);
    let samples = sampler.finish().await;
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(env.step, closing).await.is_err() {
        ctx.failures.note("some clients did not finish in time");
    }
    if let Some(trigger) = trigger {
        match tokio::time::timeout(env.step, trigger).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => ctx.failures.note(format_args!("restart failed: {e:#}")),
            Ok(Err(e)) => ctx.failures.note(format_args!("restart panicked: {e}")),
            Err(_) => ctx.failures.note("restart did not finish in time"),
        }
    }

    let mut phase = Phase::new("storm");
    phase.duration_s = signalled.elapsed().as_secs_f64();
    phase.counts = ctx.counters.snapshot();
    phase.counts.insert("clients".into(), total);
    let first = *ctx
        .first_disconnect
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let last = *ctx.last_resumed.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(first), Some(last)) = (first, last) {
        phase.values.insert(
            "all_resumed_after_s".into(),
            last.saturating_duration_since(first).as_secs_f64(),
        );
    }
    if let Some(first) = first {
        phase.values.insert(
            "first_disconnect_after_signal_s".into(),
            first.saturating_duration_since(signalled).as_secs_f64(),
        );
    }
    phase.latencies_us.insert(
        "disconnect_to_resumed".into(),
        ctx.reconnect_latency.summary(),
    );
    phase.samples = samples;
    phase.failures = ctx.failures.take();
    Ok(vec![phase])
}

/// `--restart-cmd` as a trigger: `sh -c CMD`, bounded in time.
fn restart_command(cmd: String, limit: Duration) -> Trigger {
    Box::pin(async move {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .with_context(|| format!("{cmd:?} still running after {limit:?}"))??;
        if !status.success() {
            bail!("{cmd:?} exited with {status}");
        }
        Ok(())
    })
}

/// How a connection ended, as a counter name.
fn close_kind(
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> &'static str {
    match message {
        Some(Ok(Message::Close(Some(frame)))) if u16::from(frame.code) == 1012 => "closed_1012",
        Some(Ok(Message::Close(Some(_)))) => "closed_other",
        // No close frame: the abnormal closure a client sees as 1006.
        _ => "closed_1006",
    }
}

async fn client(
    ctx: &Ctx,
    index: usize,
    token: &str,
    mut give_up: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ws = match ctx.connector.connect(index, token).await {
        Ok(ws) => ws,
        Err(e) => {
            ctx.failures.note(e);
            bump(&ctx.connect_failed);
            return;
        }
    };
    let mut seqs: HashMap<String, u64> = match read_ready(&mut ws, ctx.step).await {
        Ok(rooms) => rooms
            .into_iter()
            .filter(|(room, _)| *room == ctx.room)
            .collect(),
        Err(e) => {
            ctx.failures.note(e);
            bump(&ctx.connect_failed);
            return;
        }
    };
    bump(&ctx.connected);

    // Until the gateway closes the connection.
    let ending = loop {
        tokio::select! {
            _ = give_up.changed() => {
                bump(&ctx.never_disconnected);
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => note_seq(&mut seqs, text.as_str()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break message,
                Some(Ok(_)) => {}
            }
        }
    };
    drop(ws);
    let disconnected_at = Instant::now();
    bump(&ctx.counters.counter(close_kind(ending)));
    bump(&ctx.disconnected);
    {
        let mut first = ctx
            .first_disconnect
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(disconnected_at);
        }
    }

    // Reconnect with full-jitter exponential back-off, then resume.
    let deadline = disconnected_at + Duration::from_secs_f64(ctx.args.reconnect_timeout_s);
    let mut attempt = 0u32;
    let ws = loop {
        if attempt >= ctx.args.max_attempts || Instant::now() >= deadline {
            bump(&ctx.failed);
            return;
        }
        let ceiling = ctx
            .args
            .backoff_base_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(ctx.args.backoff_max_ms);
        let pause = Duration::from_millis(rand::rng().random_range(0..=ceiling));
        tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
        attempt += 1;
        bump(&ctx.counters.counter("attempts"));
        match reconnect(ctx, index, token, &mut seqs, deadline).await {
            Ok(ws) => break ws,
            Err(e) => {
                ctx.failures.note(e);
                bump(&ctx.counters.counter("attempt_failures"));
            }
        }
    };
    let resumed_at = Instant::now();
    ctx.reconnect_latency
        .record(index, resumed_at - disconnected_at);
    bump(&ctx.resumed);
    {
        let mut last = ctx.last_resumed.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(last.map_or(resumed_at, |l| l.max(resumed_at)));
    }
    // Stay connected, as a real client would, until the run ends.
    let mut ws = ws;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            message = ws.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// One attempt: connect, wait for `ready`, `resume` from the last seen
/// seqs, and read the replayed messages until `resumed`.
async fn reconnect(
    ctx: &Ctx,
    index: usize,
    token: &str,
    seqs: &mut HashMap<String, u64>,
    deadline: Instant,
) -> anyhow::Result<Ws> {
    let attempt = async {
        let mut ws = ctx.connector.connect_now(index, token).await?;
        read_ready(&mut ws, ctx.step).await?;
        let resume = serde_json::json!({"type": "resume", "rooms": &*seqs, "ref": "resume"});
        ws.send(Message::text(resume.to_string())).await?;
        while let Some(message) = ws.next().await {
            let Message::Text(text) = message? else {
                continue;
            };
            let Some(frame) = Frame::parse(text.as_str()) else {
                continue;
            };
            match frame.kind.as_ref() {
                "resumed" => return Ok(ws),
                "message" => bump(&ctx.counters.counter("replayed")),
                "resume_truncated" => bump(&ctx.counters.counter("truncated")),
                "error" => bail!("resume answered: {}", text.as_str()),
                _ => {}
            }
            note_seq(seqs, text.as_str());
        }
        bail!("connection ended before resumed")
    };
    tokio::time::timeout_at(deadline, attempt)
        .await
        .context("reconnect timed out")?
}

/// Keeps the last seq seen of the storm room, to resume from.
fn note_seq(seqs: &mut HashMap<String, u64>, text: &str) {
    let Some(frame) = Frame::parse(text) else {
        return;
    };
    if frame.kind != "message" {
        return;
    }
    let (Some(room), Some(message)) = (frame.message_room(), &frame.message) else {
        return;
    };
    if let Some(last) = seqs.get_mut(room) {
        *last = (*last).max(message.seq);
    }
}
