//! `history`: fill a room (or take one filled otherwise, e.g. by SQL), then
//! time history pages at random depths over HTTP and over WebSocket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::Env;
use crate::api::User;
use crate::cli::{HistoryArgs, TrafficArgs};
use crate::net::{Pacer, Ws};
use crate::protocol::{Frame, read_ready};
use crate::report::Phase;
use crate::stats::{Counters, Failures, Recorder, Sampler, bump};
use crate::traffic::{self, Member, SendPlan};

pub async fn run(args: &HistoryArgs) -> anyhow::Result<Vec<Phase>> {
    if args.common.raw_ws {
        bail!("history needs the real server; --raw-ws serves fanout and idle");
    }
    if !(1..=100).contains(&args.limit) {
        bail!("--limit must be 1-100, as the protocol allows");
    }
    if args.fill > 0 && args.fill_senders == 0 {
        bail!("--fill-senders must be at least 1 to fill");
    }
    let duration = crate::seconds("--duration-s", args.duration_s)?;
    let env = Env::new(&args.common).await?;
    let users = env
        .users(args.fill_senders.max(args.concurrency).max(1))
        .await?;
    let room = env.room(&users, "history").await?;
    let mut phases = Vec::new();

    if args.fill > 0 {
        let senders = args.fill_senders as u64;
        let members = users
            .iter()
            .take(args.fill_senders)
            .enumerate()
            .map(|(i, user)| Member {
                gateway: i,
                token: user.token.clone(),
                rooms: vec![room.clone()],
                send: Some(SendPlan {
                    room: room.clone(),
                    // Spread the fill evenly; the first senders take the
                    // remainder.
                    messages: args.fill / senders + u64::from((i as u64) < args.fill % senders),
                }),
            })
            .collect();
        let per_sender = args.fill.div_ceil(senders) as f64;
        let fill = TrafficArgs {
            rate: args.fill_rate,
            messages: 0,
            // Twice the time the fill should take at the given rate.
            duration_s: 2.0 * per_sender / args.fill_rate.max(0.001) + 10.0,
            drain_s: 10.0,
            text_bytes: 64,
            max_in_flight: 64,
        };
        phases.push(traffic::run(&env, "fill", members, &fill).await?);
    }

    let base = &env.bases[0];
    let last_seq = env.api.last_seq(base, &users[0], &room).await?;
    let counters = Counters::new();
    for transport in ["http", "ws"] {
        for outcome in ["ok", "wrong_size", "failed", "not_run"] {
            counters.counter(&format!("{transport}_{outcome}"));
        }
    }
    let failures = Arc::new(Failures::default());
    let http_latency = Recorder::new()?;
    let ws_latency = Recorder::new()?;
    let sampler = Sampler::start(counters.clone(), None);
    let started = Instant::now();
    let deadline = started + duration;
    // When each transport's last worker finished, in ms since the start.
    let (http_busy, ws_busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = JoinSet::new();
    let workers = args.concurrency.max(1) as u64;
    for worker in 0..workers {
        // Each worker takes an equal share of the queries of each transport.
        let queries = args.queries / workers + u64::from(worker < args.queries % workers);
        let index = worker as usize;
        let ctx = Worker {
            room: room.clone(),
            last_seq,
            limit: args.limit,
            queries,
            deadline,
            counters: counters.clone(),
            failures: failures.clone(),
        };
        let user = users[index % users.len()].clone();
        let (api, base) = (env.api.clone(), env.bases[index % env.bases.len()].clone());
        let (http, latency, busy) = (ctx.clone(), http_latency.clone(), http_busy.clone());
        let http_user = user.clone();
        tasks.spawn(async move {
            http.run_http(&api, &base, &http_user, index, &latency)
                .await;
            busy.fetch_max(elapsed_ms(started), Ordering::Relaxed);
        });
        let (connector, step, rate) = (env.connector.clone(), env.step, args.ws_rate);
        let (latency, busy) = (ws_latency.clone(), ws_busy.clone());
        tasks.spawn(async move {
            let ws = match connector.connect(index, &user.token).await {
                Ok(mut ws) => read_ready(&mut ws, step).await.map(|_| ws),
                Err(e) => Err(e),
            };
            match ws {
                Ok(ws) => ctx.run_ws(ws, index, step, rate, &latency).await,
                Err(e) => {
                    ctx.failures.note(e);
                    ctx.counters
                        .counter("ws_failed")
                        .fetch_add(queries, Ordering::Relaxed);
                }
            }
            busy.fetch_max(elapsed_ms(started), Ordering::Relaxed);
        });
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    // Every request is bounded by the deadline and the step timeout.
    if tokio::time::timeout(duration + env.step * 2, all_done)
        .await
        .is_err()
    {
        failures.note("history workers did not finish in time");
    }
    let samples = sampler.finish().await;
    let mut phase = Phase::new("query");
    phase.duration_s = started.elapsed().as_secs_f64();
    phase.counts = counters.snapshot();
    phase.counts.insert("room_last_seq".into(), last_seq);
    phase.labels.insert("room".into(), room);
    // Each transport's throughput is over its own busy time: the paced
    // WebSocket workers may well outlast the HTTP ones.
    for (transport, busy) in [("http", &http_busy), ("ws", &ws_busy)] {
        let ok = phase.count(&format!("{transport}_ok")) as f64;
        let busy_s = busy.load(Ordering::Relaxed) as f64 / 1000.0;
        phase.values.insert(format!("{transport}_busy_s"), busy_s);
        phase
            .values
            .insert(format!("{transport}_pages_per_s"), ok / busy_s.max(1e-3));
    }
    phase
        .latencies_us
        .insert("http".into(), http_latency.summary());
    phase.latencies_us.insert("ws".into(), ws_latency.summary());
    phase.samples = samples;
    phase.failures = failures.take();
    phases.push(phase);
    Ok(phases)
}

#[derive(Clone)]
struct Worker {
    room: String,
    last_seq: u64,
    limit: u64,
    queries: u64,
    deadline: Instant,
    counters: Arc<Counters>,
    failures: Arc<Failures>,
}

impl Worker {
    /// A random page: `before` anywhere in the room, so that deep pages
    /// are as likely as recent ones; and how many messages it must hold.
    fn page(&self) -> (u64, u64) {
        let before = rand::rng().random_range(1..=self.last_seq + 1);
        (before, (before - 1).min(self.limit))
    }

    fn outcome(&self, transport: &str, got: anyhow::Result<usize>, expected: u64) {
        match got {
            Ok(n) if n as u64 == expected => {
                bump(&self.counters.counter(&format!("{transport}_ok")))
            }
            Ok(n) => {
                self.failures.note(format_args!(
                    "{transport} page of {n} messages, expected {expected}"
                ));
                bump(&self.counters.counter(&format!("{transport}_wrong_size")));
            }
            Err(e) => {
                self.failures.note(e);
                bump(&self.counters.counter(&format!("{transport}_failed")));
            }
        }
    }

    async fn run_http(
        &self,
        api: &crate::api::Api,
        base: &str,
        user: &User,
        hint: usize,
        latency: &Recorder,
    ) {
        for _ in 0..self.queries {
            if Instant::now() >= self.deadline {
                bump(&self.counters.counter("http_not_run"));
                continue;
            }
            let (before, expected) = self.page();
            let sent = Instant::now();
            let got = api
                .history(base, user, &self.room, before, self.limit)
                .await;
            if got.is_ok() {
                latency.record(hint, sent.elapsed());
            }
            self.outcome("http", got, expected);
        }
    }

    async fn run_ws(&self, mut ws: Ws, hint: usize, step: Duration, rate: f64, latency: &Recorder) {
        // The server allows 20 frames per second per connection.
        let pacer = Pacer::new(rate);
        for n in 0..self.queries {
            if Instant::now() >= self.deadline {
                bump(&self.counters.counter("ws_not_run"));
                continue;
            }
            pacer.wait().await;
            let (before, expected) = self.page();
            let reference = format!("h{n}");
            let frame = serde_json::json!({
                "type": "history", "room": self.room, "before": before,
                "limit": self.limit, "ref": reference,
            });
            let sent = Instant::now();
            let got = async {
                ws.send(Message::text(frame.to_string())).await?;
                tokio::time::timeout(step, reply(&mut ws, &reference))
                    .await
                    .context("no history reply in time")?
            }
            .await;
            if got.is_ok() {
                latency.record(hint, sent.elapsed());
            }
            let broken = got.is_err();
            self.outcome("ws", got, expected);
            if broken {
                // The connection's state is unknown after a failed request.
                let rest = self.queries - n - 1;
                self.counters
                    .counter("ws_not_run")
                    .fetch_add(rest, Ordering::Relaxed);
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
}

/// Reads until the reply to `reference`: a `history` page (its size) or an
/// `error`.
async fn reply(ws: &mut Ws, reference: &str) -> anyhow::Result<usize> {
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let Some(frame) = Frame::parse(text.as_str()) else {
            continue;
        };
        if frame.reference.as_deref() != Some(reference) {
            continue;
        }
        return match frame.kind.as_ref() {
            "history" => Ok(frame.messages.map_or(0, |m| m.len())),
            _ => bail!("history request answered: {}", text.as_str()),
        };
    }
    bail!("connection ended while waiting for a history reply")
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
