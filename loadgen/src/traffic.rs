//! The engine behind fanout, e2e, sends and the history fill: member
//! connections of rooms, some of them sending at a fixed rate, every one
//! counting the deliveries of this run's messages and timing them from the
//! send time stamped into each text.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::Env;
use crate::cli::TrafficArgs;
use crate::net::Ws;
use crate::protocol::{Frame, SendFrames, read_ready, sent_at, since};
use crate::report::Phase;
use crate::stats::{Counters, Failures, Recorder, Sampler, bump, wait_until};

/// One client connection of a traffic phase.
pub struct Member {
    /// Index into the gateways (taken modulo their number).
    pub gateway: usize,
    pub token: String,
    /// Rooms whose messages this connection receives (its user's rooms
    /// taking part in the phase).
    pub rooms: Vec<String>,
    pub send: Option<SendPlan>,
}

pub struct SendPlan {
    pub room: String,
    pub messages: u64,
}

/// Shared by the connection tasks of a phase.
struct Ctx {
    tag: String,
    args: TrafficArgs,
    counters: Arc<Counters>,
    connected: Arc<AtomicU64>,
    connect_failed: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    rate_limited: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    out_of_order: Arc<AtomicU64>,
    senders_done: Arc<AtomicU64>,
    /// Per gateway: deliveries to connections on it.
    delivered_via: Vec<Arc<AtomicU64>>,
    /// Per room: acked sends, and connected receivers; their products
    /// summed are the deliveries to expect.
    room_acked: HashMap<String, Arc<AtomicU64>>,
    room_receivers: HashMap<String, Arc<AtomicU64>>,
    delivery_latency: Arc<Recorder>,
    ack_latency: Arc<Recorder>,
    failures: Failures,
}

/// Runs one phase: connects every member, starts the senders together,
/// waits for their acks and for every delivery (or the drain timeout), and
/// reports exact counts and latencies.
pub async fn run(
    env: &Env,
    name: &str,
    members: Vec<Member>,
    args: &TrafficArgs,
) -> anyhow::Result<Phase> {
    let interval = if args.rate > 0.0 && args.rate.is_finite() {
        Duration::from_secs_f64(1.0 / args.rate)
    } else {
        anyhow::bail!("--rate must be a positive number of messages per second");
    };
    let duration = crate::seconds("--duration-s", args.duration_s)?;
    let drain = crate::seconds("--drain-s", args.drain_s)?;
    let counters = Counters::new();
    let rooms: Vec<&String> = members.iter().flat_map(|m| &m.rooms).collect();
    let ctx = Arc::new(Ctx {
        tag: env.tag.clone(),
        args: args.clone(),
        connected: counters.counter("connected"),
        connect_failed: counters.counter("connect_failed"),
        sent: counters.counter("sent"),
        acked: counters.counter("acked"),
        delivered: counters.counter("delivered"),
        rate_limited: counters.counter("rate_limited"),
        errors: counters.counter("errors"),
        skipped: counters.counter("send_skipped_in_flight_cap"),
        dropped: counters.counter("dropped"),
        out_of_order: counters.counter("out_of_order"),
        senders_done: counters.counter("senders_done"),
        delivered_via: (0..env.bases.len())
            .map(|i| counters.counter(&format!("delivered_via_gateway_{i}")))
            .collect(),
        room_acked: rooms
            .iter()
            .map(|r| ((*r).clone(), Arc::new(AtomicU64::new(0))))
            .collect(),
        room_receivers: rooms
            .iter()
            .map(|r| ((*r).clone(), Arc::new(AtomicU64::new(0))))
            .collect(),
        delivery_latency: Recorder::new()?,
        ack_latency: Recorder::new()?,
        failures: Failures::default(),
        counters,
    });

    let total = members.len() as u64;
    let senders = members.iter().filter(|m| m.send.is_some()).count() as u64;
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (index, member) in members.into_iter().enumerate() {
        let ctx = ctx.clone();
        let connector = env.connector.clone();
        let step = env.step;
        let (start, stop) = (start_rx.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let ws = match connector.connect(member.gateway, &member.token).await {
                Ok(mut ws) => match read_ready(&mut ws, step).await {
                    Ok(_) => ws,
                    Err(e) => {
                        bump(&ctx.connect_failed);
                        ctx.failures.note(e);
                        return;
                    }
                },
                Err(e) => {
                    bump(&ctx.connect_failed);
                    ctx.failures.note(e);
                    return;
                }
            };
            member_loop(&ctx, index, member, ws, interval, duration, start, stop).await;
        });
    }

    // Everyone connects (at the connect rate) before anyone sends.
    let connect_budget =
        env.step + Duration::from_secs_f64(total as f64 / env.common.connect_rate.max(1.0));
    wait_until(connect_budget, || {
        ctx.connected.load(Ordering::Relaxed) + ctx.connect_failed.load(Ordering::Relaxed) >= total
    })
    .await;
    let sampler = Sampler::start(ctx.counters.clone(), None);
    let started = Instant::now();
    let _ = start_tx.send(Some(started));

    // Senders that connected finish when they have sent everything (or
    // their time is up) and every send has its reply.
    let connected_senders =
        || senders.saturating_sub(ctx.connect_failed.load(Ordering::Relaxed).min(senders));
    wait_until(duration + drain, || {
        ctx.senders_done.load(Ordering::Relaxed) >= connected_senders()
    })
    .await;
    let sending_s = started.elapsed().as_secs_f64();
    let expected = || -> u64 {
        ctx.room_acked
            .iter()
            .map(|(room, acked)| {
                let receivers = ctx
                    .room_receivers
                    .get(room)
                    .map_or(0, |r| r.load(Ordering::Relaxed));
                acked.load(Ordering::Relaxed) * receivers
            })
            .sum()
    };
    let complete = wait_until(drain, || {
        ctx.delivered.load(Ordering::Relaxed) >= expected()
    })
    .await;
    let delivering_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let samples = sampler.finish().await;
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(env.step, closing).await.is_err() {
        ctx.failures.note("some connections did not close in time");
    }

    let mut phase = Phase::new(name);
    phase.duration_s = delivering_s;
    phase.counts = ctx.counters.snapshot();
    phase.counts.insert("connections".into(), total);
    phase.counts.insert("senders".into(), senders);
    phase
        .counts
        .insert("expected_deliveries".into(), expected());
    phase.counts.insert("complete".into(), u64::from(complete));
    let acked = ctx.acked.load(Ordering::Relaxed) as f64;
    let delivered = ctx.delivered.load(Ordering::Relaxed) as f64;
    phase.values.insert("sending_s".into(), sending_s);
    phase
        .values
        .insert("acked_per_s".into(), acked / sending_s.max(1e-3));
    phase
        .values
        .insert("delivered_per_s".into(), delivered / delivering_s.max(1e-3));
    phase
        .latencies_us
        .insert("delivery".into(), ctx.delivery_latency.summary());
    phase
        .latencies_us
        .insert("ack".into(), ctx.ack_latency.summary());
    phase.samples = samples;
    phase.failures = ctx.failures.take();
    Ok(phase)
}

/// A sender's state: what it sent and what awaits its ack.
struct Sending {
    frames: SendFrames,
    plan: SendPlan,
    next: u64,
    /// Send instants by `ref`, bounded by --max-in-flight.
    in_flight: HashMap<u64, Instant>,
    room_acked: Option<Arc<AtomicU64>>,
    ticker: Option<Interval>,
    deadline: Option<Instant>,
    done: bool,
}

impl Sending {
    fn stopped_sending(&self) -> bool {
        self.next >= self.plan.messages || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Starts the send clock of a phase that started at `at`.
    fn arm(&mut self, at: Instant, interval: Duration, duration: Duration) {
        // A random phase per sender, so that senders do not all send in the
        // same instant of every period.
        let offset = interval.mul_f64(rand::random::<f64>());
        let mut ticker = tokio::time::interval_at(at + offset, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        self.ticker = Some(ticker);
        self.deadline = Some(at + duration);
    }
}

#[allow(clippy::too_many_arguments)] // One task's whole context; a struct would only rename it.
async fn member_loop(
    ctx: &Ctx,
    index: usize,
    member: Member,
    mut ws: Ws,
    interval: Duration,
    duration: Duration,
    mut start: watch::Receiver<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) {
    bump(&ctx.connected);
    for room in &member.rooms {
        if let Some(receivers) = ctx.room_receivers.get(room) {
            bump(receivers);
        }
    }
    let mut sending = member.send.map(|plan| Sending {
        frames: SendFrames::new(&plan.room, &ctx.tag, index, ctx.args.text_bytes),
        room_acked: ctx.room_acked.get(&plan.room).cloned(),
        plan,
        next: 0,
        in_flight: HashMap::new(),
        ticker: None,
        deadline: None,
        done: false,
    });
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    // A member whose task runs only after the start signal (a busy
    // machine) must still be armed: `start.changed()` will not fire again.
    let mut started = false;
    if let Some(at) = *start.borrow_and_update() {
        started = true;
        if let Some(s) = sending.as_mut() {
            s.arm(at, interval, duration);
        }
    }
    loop {
        // A sender is done once it stopped sending and has every reply.
        if let Some(s) = sending
            .as_mut()
            .filter(|s| !s.done && started && s.stopped_sending() && s.in_flight.is_empty())
        {
            s.done = true;
            bump(&ctx.senders_done);
        }
        let may_send = sending
            .as_ref()
            .is_some_and(|s| s.ticker.is_some() && !s.stopped_sending());
        tokio::select! {
            _ = stop.changed() => break,
            _ = start.changed(), if !started => {
                started = true;
                let at = (*start.borrow()).unwrap_or_else(Instant::now);
                if let Some(s) = sending.as_mut() {
                    s.arm(at, interval, duration);
                }
            }
            _ = tick(sending.as_mut().and_then(|s| s.ticker.as_mut())), if may_send => {
                let Some(s) = sending.as_mut() else { continue };
                if s.stopped_sending() {
                    continue;
                }
                if s.in_flight.len() >= ctx.args.max_in_flight {
                    bump(&ctx.skipped);
                    continue;
                }
                let n = s.next;
                s.next += 1;
                s.in_flight.insert(n, Instant::now());
                if let Err(e) = ws.send(Message::text(s.frames.frame(n))).await {
                    ctx.failures.note(format_args!("send failed: {e}"));
                    bump(&ctx.dropped);
                    break;
                }
                bump(&ctx.sent);
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    handle_frame(ctx, index, member.gateway, text.as_str(), sending.as_mut(), &mut last_seq);
                }
                Some(Ok(Message::Close(frame))) => {
                    ctx.failures.note(format_args!("server closed a connection: {frame:?}"));
                    bump(&ctx.dropped);
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    ctx.failures.note(format_args!("connection failed: {e}"));
                    bump(&ctx.dropped);
                    break;
                }
                None => {
                    ctx.failures.note("connection ended");
                    bump(&ctx.dropped);
                    break;
                }
            }
        }
    }
    // A sender cut off early still counts as done, so that the phase does
    // not wait for it.
    if sending.is_some_and(|s| !s.done) {
        bump(&ctx.senders_done);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

fn handle_frame(
    ctx: &Ctx,
    index: usize,
    gateway: usize,
    text: &str,
    sending: Option<&mut Sending>,
    last_seq: &mut HashMap<String, u64>,
) {
    let Some(frame) = Frame::parse(text) else {
        return;
    };
    match frame.kind.as_ref() {
        "message" => {
            let Some(message) = &frame.message else {
                return;
            };
            let Some(stamp) = sent_at(&message.text, &ctx.tag) else {
                return;
            };
            ctx.delivery_latency.record(index, since(stamp));
            bump(&ctx.delivered);
            if let Some(via) = ctx
                .delivered_via
                .get(gateway % ctx.delivered_via.len().max(1))
            {
                bump(via);
            }
            // The protocol promises strictly increasing seq per room.
            let room = frame.message_room().unwrap_or("");
            match last_seq.get_mut(room) {
                Some(last) => {
                    if message.seq <= *last {
                        bump(&ctx.out_of_order);
                    }
                    *last = message.seq;
                }
                None => {
                    last_seq.insert(room.to_owned(), message.seq);
                }
            }
        }
        "ack" | "error" => {
            let Some(s) = sending else { return };
            let Some(sent) = frame
                .reference
                .as_deref()
                .and_then(|r| r.parse::<u64>().ok())
                .and_then(|r| s.in_flight.remove(&r))
            else {
                return;
            };
            if frame.kind == "ack" {
                ctx.ack_latency.record(index, sent.elapsed());
                bump(&ctx.acked);
                if let Some(room_acked) = &s.room_acked {
                    bump(room_acked);
                }
            } else if frame.code.as_deref() == Some("rate_limited") {
                bump(&ctx.rate_limited);
            } else {
                ctx.failures.note(format_args!("error frame: {text}"));
                bump(&ctx.errors);
            }
        }
        _ => {}
    }
}

/// The next tick, or never without a ticker.
async fn tick(ticker: Option<&mut Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
