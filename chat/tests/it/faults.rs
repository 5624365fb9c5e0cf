//! Delivery guarantees under faults. A workload of many clients (several
//! users, two sockets each, on the cluster's gateway replicas) sends into
//! several rooms with unique `client_msg_id`s, retrying a send after an
//! error, a timeout or a lost socket with the same `client_msg_id`, and
//! repairing gaps with `resume`, while one fault is injected: a server
//! killed, stopped, paused or restarted, a gateway killed or drained, a
//! client that never reads. A history checker then verifies the
//! guarantees of DESIGN.md against the database, the history API and what
//! each client holds, and prints one `FAULT-SUMMARY` line per test
//! (`scripts/fault-matrix` collects them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{
    Cluster, OwnPostgres, OwnRabbit, OwnRedis, PRESENCE_TTL_S, Servers, free_port, signal,
    skip_without,
};
use crate::support::{Api, User, Ws, str_of};

/// Workload users, each with [`SOCKETS_PER_USER`] clients; the last one
/// disconnects at the end, for the presence check.
const USERS: usize = 8;
const SOCKETS_PER_USER: usize = 2;
const ROOMS: usize = 3;
/// Sends per client at most: every load loop is bounded in count as well as
/// in time.
const MAX_SENDS: usize = 400;
/// Live probes after the catch-up, at most; each waits [`PROBE_WAIT`] for
/// every client.
const PROBES: usize = 5;
const PROBE_WAIT: Duration = Duration::from_secs(15);
/// How long a client waits for the reply to a send, or for a socket,
/// before it gives up on that attempt (longer than message-service's
/// database acquire timeout, so a send during an outage gets its error).
const REPLY_WAIT: Duration = Duration::from_secs(8);
/// How long a client keeps retrying one message before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// Traffic before the fault and after it heals.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_millis(1500);

/// The shape of the traffic.
#[derive(Clone, Default)]
struct Traffic {
    /// Pause after each acknowledged send.
    pace: Duration,
    /// Four-byte characters appended to each text (large frames fill a
    /// slow reader's queue quickly).
    padding: usize,
    /// Every how many sends of a client the text mentions `@username`.
    mention: Option<(usize, String)>,
}

#[derive(Default, Clone, Debug)]
struct Stats {
    sends: usize,
    /// Send attempts after the first of a message.
    retried: usize,
    /// `resume` frames sent (after connecting, a `resync` or a gap).
    resumed: usize,
    /// Connections after the first.
    reconnects: usize,
    resyncs: usize,
    /// Live messages that arrived after a gap and were left to the replay.
    gaps: usize,
    /// Error codes of send replies.
    errors: BTreeMap<String, usize>,
    /// Close codes of the client's sockets.
    closes: BTreeMap<u16, usize>,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.sends += other.sends;
        self.retried += other.retried;
        self.resumed += other.resumed;
        self.reconnects += other.reconnects;
        self.resyncs += other.resyncs;
        self.gaps += other.gaps;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.closes {
            *self.closes.entry(*k).or_default() += v;
        }
    }
}

struct Acked {
    room: String,
    client_msg_id: String,
    seq: i64,
    mention: bool,
}

enum Event {
    Frame(Value),
    Closed,
    Timeout,
}

/// One client socket of the workload, with what a real client keeps: per
/// room the messages it holds, gap-free from seq 1.
struct Client {
    name: String,
    user: User,
    /// The gateways, the client's preferred one first; each connection
    /// attempt takes the next.
    api: Api,
    rooms: Vec<String>,
    ws: Option<Ws>,
    /// Per room, `(seq, client_msg_id)` of the messages held, in order.
    held: HashMap<String, Vec<(i64, String)>>,
    /// The `ref` of the `resume` in flight.
    resuming: Option<String>,
    /// A gap or a failed replay asks for another `resume`.
    need_resume: bool,
    next_ref: u64,
    connected_once: bool,
    acked: Vec<Acked>,
    stats: Stats,
    /// Milliseconds from a send to its `message` event here.
    latencies_ms: Vec<u64>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Client {
    fn new(
        name: String,
        user: &User,
        bases: Vec<String>,
        rooms: &[String],
    ) -> anyhow::Result<Client> {
        Ok(Client {
            name,
            user: User {
                id: user.id.clone(),
                token: user.token.clone(),
                refresh: String::new(),
            },
            api: Api::new(bases)?,
            rooms: rooms.to_vec(),
            ws: None,
            held: rooms.iter().map(|r| (r.clone(), Vec::new())).collect(),
            resuming: None,
            need_resume: false,
            next_ref: 0,
            connected_once: false,
            acked: Vec::new(),
            stats: Stats::default(),
            latencies_ms: Vec::new(),
        })
    }

    fn last(&self, room: &str) -> i64 {
        self.held
            .get(room)
            .and_then(|h| h.last())
            .map_or(0, |(seq, _)| *seq)
    }

    fn fresh_ref(&mut self, what: &str) -> String {
        self.next_ref += 1;
        format!("{what}-{}", self.next_ref)
    }

    /// Connects to the next gateway that takes the socket, then resumes
    /// every room from what the client holds.
    async fn connect(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            match tokio::time::timeout(REPLY_WAIT, self.api.ws(&self.user)).await {
                Ok(Ok(ws)) => {
                    self.ws = Some(ws);
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "{}: no gateway took a socket in time",
                        self.name
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if self.connected_once {
            self.stats.reconnects += 1;
        }
        self.connected_once = true;
        self.resuming = None;
        self.resume().await;
        Ok(())
    }

    /// Sends `resume` for every room from the last seq held.
    async fn resume(&mut self) {
        let reference = self.fresh_ref("resume");
        let rooms: serde_json::Map<String, Value> = self
            .rooms
            .iter()
            .map(|r| (r.clone(), json!(self.last(r))))
            .collect();
        let frame = json!({"type": "resume", "rooms": rooms, "ref": reference});
        self.need_resume = false;
        self.stats.resumed += 1;
        self.resuming = Some(reference);
        self.write(frame).await;
    }

    async fn write(&mut self, frame: Value) {
        if let Some(ws) = &mut self.ws
            && ws
                .stream
                .send(Message::text(frame.to_string()))
                .await
                .is_err()
        {
            self.ws = None;
        }
    }

    /// The next event of the socket before `deadline`.
    async fn read(&mut self, deadline: Instant) -> Event {
        let Some(ws) = &mut self.ws else {
            return Event::Closed;
        };
        let event = loop {
            match tokio::time::timeout_at(deadline, ws.stream.next()).await {
                Err(_) => return Event::Timeout,
                Ok(Some(Ok(Message::Text(text)))) => {
                    match serde_json::from_str::<Value>(text.as_str()) {
                        Ok(frame) => return Event::Frame(frame),
                        // Not JSON: the server broke the protocol; the
                        // checker fails on the missing messages.
                        Err(_) => continue,
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    break frame.map(|f| u16::from(f.code));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) => break None,
            }
        };
        // 1006: the connection ended without a close frame.
        *self.stats.closes.entry(event.unwrap_or(1006)).or_default() += 1;
        self.ws = None;
        Event::Closed
    }

    /// Takes in a frame that is not the reply being waited for.
    fn handle(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("message") => {
                let (Some(room), Some(seq)) =
                    (frame["room"].as_str(), frame["message"]["seq"].as_i64())
                else {
                    return;
                };
                let client_msg_id = frame["message"]["client_msg_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(sent) = frame["message"]["text"]
                    .as_str()
                    .and_then(|t| t.split(' ').nth(1))
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    self.latencies_ms.push(now_ms().saturating_sub(sent));
                }
                let last = self.last(room);
                if seq == last + 1 {
                    if let Some(held) = self.held.get_mut(room) {
                        held.push((seq, client_msg_id));
                    }
                } else if seq > last + 1 {
                    self.stats.gaps += 1;
                    if self.resuming.is_none() {
                        self.need_resume = true;
                    }
                }
            }
            Some("resync") => {
                self.stats.resyncs += 1;
                self.need_resume = true;
            }
            Some("resume_truncated") => self.need_resume = true,
            Some("resumed") if frame["ref"].as_str() == self.resuming.as_deref() => {
                self.resuming = None;
            }
            // A replay that failed (e.g. while the database is down):
            // resume again once this one has ended.
            Some("error") if frame["ref"].as_str() == self.resuming.as_deref() => {
                self.need_resume = true;
            }
            _ => {}
        }
    }

    /// Reads and takes in frames until `until` (or the socket closes).
    async fn pump(&mut self, until: Instant) {
        loop {
            if self.need_resume && self.resuming.is_none() && self.ws.is_some() {
                self.resume().await;
            }
            match self.read(until).await {
                Event::Frame(frame) => self.handle(&frame),
                Event::Closed | Event::Timeout => return,
            }
        }
    }

    /// Sends message `k` until it is acknowledged, retrying with the same
    /// `client_msg_id`.
    async fn send(&mut self, k: usize, traffic: &Traffic) -> anyhow::Result<()> {
        let room = self.rooms[k % self.rooms.len()].clone();
        let client_msg_id = format!("{}.{k}", self.name);
        let mention = traffic
            .mention
            .as_ref()
            .filter(|(every, _)| k.is_multiple_of(*every))
            .map(|(_, name)| name.clone());
        let text = format!(
            "{client_msg_id} {} {}{}",
            now_ms(),
            mention.as_ref().map_or(String::new(), |m| format!("@{m}")),
            "\u{1F600}".repeat(traffic.padding)
        );
        let deadline = Instant::now() + RETRY_FOR;
        self.stats.sends += 1;
        let mut attempt = 0;
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{client_msg_id} was not acknowledged within {RETRY_FOR:?}: {:?}",
                self.stats
            );
            attempt += 1;
            if attempt > 1 {
                self.stats.retried += 1;
            }
            if self.ws.is_none() {
                self.connect(deadline).await?;
            }
            let reference = self.fresh_ref("send");
            self.write(json!({"type": "send", "room": room, "text": text, "client_msg_id": client_msg_id, "ref": reference}))
                .await;
            let wait = Instant::now() + REPLY_WAIT;
            let reply = loop {
                match self.read(wait).await {
                    Event::Frame(frame) if frame["ref"] == reference.as_str() => break Some(frame),
                    Event::Frame(frame) => self.handle(&frame),
                    Event::Closed => break None,
                    Event::Timeout => {
                        // A client gives up on a socket that stays silent.
                        self.ws = None;
                        break None;
                    }
                }
            };
            let Some(reply) = reply else { continue };
            if reply["type"] == "ack" {
                let seq = reply["message"]["seq"]
                    .as_i64()
                    .with_context(|| format!("ack without seq: {reply}"))?;
                anyhow::ensure!(
                    reply["message"]["client_msg_id"] == client_msg_id.as_str(),
                    "ack of another message: {reply}"
                );
                self.acked.push(Acked {
                    room,
                    client_msg_id,
                    seq,
                    mention: mention.is_some(),
                });
                return Ok(());
            }
            let code = reply["code"].as_str().unwrap_or("?").to_owned();
            *self.stats.errors.entry(code.clone()).or_default() += 1;
            // Only transient failures may be retried: anything else is a
            // bug the test reports.
            anyhow::ensure!(
                matches!(
                    code.as_str(),
                    "unavailable" | "conflict" | "rate_limited" | "internal"
                ),
                "{client_msg_id}: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends until `stop`, pausing `traffic.pace` between sends.
    async fn run(mut self, stop: Arc<AtomicBool>, traffic: Arc<Traffic>) -> anyhow::Result<Client> {
        for k in 0..MAX_SENDS {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.send(k, &traffic).await?;
            self.pump(Instant::now() + traffic.pace).await;
        }
        Ok(self)
    }

    /// Resumes until the client holds every room up to `last`.
    async fn catch_up(mut self, last: Arc<HashMap<String, i64>>) -> anyhow::Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let complete = self
                .rooms
                .iter()
                .all(|r| self.last(r) >= last.get(r).copied().unwrap_or(0));
            if complete {
                return Ok(self);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not catch up: holds {:?}, rooms end at {last:?}",
                self.name,
                self.rooms.iter().map(|r| self.last(r)).collect::<Vec<_>>()
            );
            if self.ws.is_none() {
                self.connect(deadline).await?;
            } else if self.resuming.is_none() {
                self.resume().await;
            }
            // Until the resume ends (or a short while, to retry).
            let until = Instant::now() + Duration::from_secs(2);
            while self.resuming.is_some() && self.ws.is_some() && Instant::now() < until {
                match self.read(until).await {
                    Event::Frame(frame) => self.handle(&frame),
                    Event::Closed | Event::Timeout => break,
                }
            }
        }
    }

    async fn close(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.stream.close(None).await;
        }
    }
}

/// Users, rooms and clients of one workload on a cluster.
struct Workload {
    users: Vec<User>,
    /// A member outside the workload (not a `fu` user), for a fault's own
    /// probes.
    spare: User,
    /// A member who never connects: mentions of `@absent` become stored
    /// notifications.
    absent: User,
    rooms: Vec<String>,
    clients: Vec<Client>,
    /// A gateway that stays up, for the checker's API calls.
    api: Api,
}

impl Workload {
    /// Registers the users (`fu0`...), creates the rooms (every user a
    /// member) and places the clients on `bases` in turn.
    async fn set_up(bases: &[String], home: &str) -> anyhow::Result<Workload> {
        let api = Api::new(bases.to_vec())?;
        let mut users = Vec::new();
        for i in 0..USERS {
            users.push(api.register(&format!("fu{i}")).await?);
        }
        let spare = api.register("spare").await?;
        let absent = api.register("absent").await?;
        let mut rooms = Vec::new();
        for r in 0..ROOMS {
            let room = api.room(&users[0], &format!("room-{r}"), "public").await?;
            for user in users[1..].iter().chain([&spare, &absent]) {
                api.join(user, &room).await?;
            }
            rooms.push(room);
        }
        let mut clients = Vec::new();
        for (u, user) in users.iter().enumerate() {
            for s in 0..SOCKETS_PER_USER {
                let first = (u * SOCKETS_PER_USER + s) % bases.len();
                let mut rotated = bases[first..].to_vec();
                rotated.extend_from_slice(&bases[..first]);
                clients.push(Client::new(format!("fu{u}s{s}"), user, rotated, &rooms)?);
            }
        }
        Ok(Workload {
            users,
            spare,
            absent,
            rooms,
            clients,
            api: Api::new(vec![home.to_owned()])?,
        })
    }

    /// Connects every client, then starts the traffic.
    async fn start(mut self, traffic: Traffic) -> anyhow::Result<Running> {
        for client in &mut self.clients {
            client.connect(Instant::now() + REPLY_WAIT).await?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = Arc::new(traffic);
        let tasks = std::mem::take(&mut self.clients)
            .into_iter()
            .map(|c| tokio::spawn(c.run(stop.clone(), traffic.clone())))
            .collect();
        Ok(Running {
            workload: self,
            stop,
            tasks,
            started: Instant::now(),
        })
    }
}

struct Running {
    workload: Workload,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Client>>>,
    started: Instant,
}

/// What the checker found.
struct Report {
    test: &'static str,
    stats: Stats,
    acked: usize,
    lost: usize,
    duplicated: usize,
    failures: Vec<String>,
    seconds: f64,
}

impl Report {
    fn print(&self) {
        let s = &self.stats;
        println!(
            "FAULT-SUMMARY test={} acked={} lost={} duplicated={} retried={} resumed={} reconnects={} resyncs={} gaps={} errors={:?} closes={:?} seconds={:.1}",
            self.test,
            self.acked,
            self.lost,
            self.duplicated,
            s.retried,
            s.resumed,
            s.reconnects,
            s.resyncs,
            s.gaps,
            s.errors,
            s.closes,
            self.seconds
        );
    }

    fn assert_ok(&self) -> anyhow::Result<()> {
        if !self.failures.is_empty() {
            bail!("{} failed:\n{}", self.test, self.failures.join("\n"));
        }
        anyhow::ensure!(self.acked > 0, "nothing was acknowledged");
        Ok(())
    }
}

/// Every stored message of the workload's rooms, `(seq, client_msg_id)` in
/// seq order per room, straight from message-service's database.
async fn stored(
    cluster: &Cluster,
    rooms: &[String],
) -> anyhow::Result<HashMap<String, Vec<(i64, String)>>> {
    let mut db = sqlx::PgConnection::connect(&cluster.message_database_url()).await?;
    let mut out: HashMap<String, Vec<(i64, String)>> =
        rooms.iter().map(|r| (r.clone(), Vec::new())).collect();
    for row in sqlx::query("SELECT room_id, seq, client_msg_id FROM messages ORDER BY room_id, seq")
        .fetch_all(&mut db)
        .await?
    {
        let room: String = row.try_get("room_id")?;
        if let Some(messages) = out.get_mut(&room) {
            messages.push((row.try_get("seq")?, row.try_get("client_msg_id")?));
        }
    }
    db.close().await?;
    Ok(out)
}

/// A room's messages through the history API, `(seq, client_msg_id)`.
async fn history(api: &Api, user: &User, room: &str) -> anyhow::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    // Bounded: at most this many pages of 100.
    for _ in 0..100 {
        let after = out.last().map_or(0, |(seq, _)| *seq);
        let (status, body) = api
            .get(
                &format!("/rooms/{room}/messages?after={after}&limit=100"),
                Some(&user.token),
            )
            .await?;
        anyhow::ensure!(status == 200, "history: {status} {body}");
        for m in body["messages"].as_array().cloned().unwrap_or_default() {
            out.push((
                m["seq"].as_i64().unwrap_or(-1),
                str_of(&m["client_msg_id"]).unwrap_or_default(),
            ));
        }
        if body["has_more"] != true {
            return Ok(out);
        }
    }
    bail!("history of {room} did not end")
}

impl Running {
    /// Stops the traffic; every client catches up with `resume`; one live
    /// message checks that fan-out works; then the checker runs and the
    /// last user disconnects for the presence check.
    async fn finish(
        self,
        test: &'static str,
        cluster: &Cluster,
    ) -> anyhow::Result<(Report, Workload, Vec<Client>)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut clients = Vec::new();
        for task in self.tasks {
            clients.push(task.await??);
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let workload = self.workload;
        let rooms = workload.rooms.clone();

        eprintln!("traffic stopped after {seconds:.1} s; catching up");
        let mut clients = catch_up_all(cluster, &rooms, clients).await?;
        eprintln!(
            "caught up after {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
        // Live fan-out: one more message reaches every client without a
        // resume. A gateway may still be reconnecting to a restarted
        // dependency when the first probe goes out: it then tells its
        // clients to `resync` and they repair the gap with `resume`, as
        // designed. So the clients catch up again and a probe is tried
        // again, a bounded number of times, until one reaches every client
        // live.
        let mut failures = Vec::new();
        for attempt in 0..PROBES {
            let resumes: Vec<usize> = clients.iter().map(|c| c.stats.resumed).collect();
            let probe = MAX_SENDS + attempt;
            clients[0].send(probe, &Traffic::default()).await?;
            let probe_room = rooms[probe % rooms.len()].clone();
            let probe_seq = clients[0].acked.last().map_or(0, |a| a.seq);
            failures.clear();
            // Every client reads at once, so that each keeps answering the
            // gateways' pings while others are waited for.
            let until = Instant::now() + PROBE_WAIT;
            let probe_room = &probe_room;
            futures::future::join_all(clients.iter_mut().map(|client| async move {
                while client.last(probe_room) < probe_seq {
                    match client.read(until).await {
                        Event::Frame(frame) => client.handle(&frame),
                        Event::Closed | Event::Timeout => break,
                    }
                }
            }))
            .await;
            for (client, resumes) in clients.iter().zip(resumes) {
                if client.last(probe_room) != probe_seq || client.stats.resumed != resumes {
                    failures.push(format!(
                        "{}: the live message {probe_seq} of room {probe_room} did not arrive live (holds {}, resumes {} -> {})",
                        client.name,
                        client.last(probe_room),
                        resumes,
                        client.stats.resumed
                    ));
                }
            }
            if failures.is_empty() {
                break;
            }
            eprintln!(
                "live probe {} missed {} clients, trying again; first: {}",
                attempt + 1,
                failures.len(),
                failures[0]
            );
            // Those clients repair the missed probe with `resume`.
            clients = catch_up_all(cluster, &rooms, clients).await?;
        }

        eprintln!(
            "live message checked after {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
        let report = check(test, cluster, &workload, &clients, failures, seconds).await?;
        Ok((report, workload, clients))
    }
}

/// Every client resumes until it holds each room's messages as stored now.
async fn catch_up_all(
    cluster: &Cluster,
    rooms: &[String],
    clients: Vec<Client>,
) -> anyhow::Result<Vec<Client>> {
    let before = stored(cluster, rooms).await?;
    let last: Arc<HashMap<String, i64>> = Arc::new(
        before
            .iter()
            .map(|(r, m)| (r.clone(), m.last().map_or(0, |(seq, _)| *seq)))
            .collect(),
    );
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(c.catch_up(last.clone())))
        .collect();
    let mut caught_up = Vec::new();
    for task in tasks {
        caught_up.push(task.await??);
    }
    Ok(caught_up)
}

/// The checker: the database, the history API and every client agree on
/// each room's messages, gap-free from seq 1; each acknowledged message is
/// there once, with the seq of its ack; nothing unacknowledged was stored;
/// presence settles.
async fn check(
    test: &'static str,
    cluster: &Cluster,
    workload: &Workload,
    clients: &[Client],
    mut failures: Vec<String>,
    seconds: f64,
) -> anyhow::Result<Report> {
    let mut stats = Stats::default();
    for client in clients {
        stats.add(&client.stats);
    }
    let db = stored(cluster, &workload.rooms).await?;
    let mut lost = 0;
    let mut duplicated = 0;

    // The database: seqs 1..=n per room, each client_msg_id once.
    let mut stored_at: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (room, messages) in &db {
        let seqs: Vec<i64> = messages.iter().map(|(seq, _)| *seq).collect();
        let expected: Vec<i64> = (1..=i64::try_from(seqs.len())?).collect();
        if seqs != expected {
            failures.push(format!(
                "room {room}: stored seqs are not 1..={}: {seqs:?}",
                seqs.len()
            ));
        }
        for (seq, id) in messages {
            stored_at
                .entry(id.as_str())
                .or_default()
                .push((room.as_str(), *seq));
        }
    }
    for (id, places) in &stored_at {
        if places.len() > 1 {
            duplicated += places.len() - 1;
            failures.push(format!("{id} stored {} times: {places:?}", places.len()));
        }
    }

    // Each acknowledged message is stored with the seq of its ack, and
    // nothing else of the workload is.
    let mut acked = HashSet::new();
    for a in clients.iter().flat_map(|c| &c.acked) {
        acked.insert(a.client_msg_id.as_str());
        match stored_at.get(a.client_msg_id.as_str()) {
            Some(places) if places.contains(&(a.room.as_str(), a.seq)) => {}
            other => {
                lost += 1;
                failures.push(format!(
                    "{} acked as seq {} of {} but stored at {other:?}",
                    a.client_msg_id, a.seq, a.room
                ));
            }
        }
    }
    for id in stored_at.keys() {
        if id.starts_with("fu") && !acked.contains(id) {
            failures.push(format!("{id} is stored but was never acknowledged"));
        }
    }

    // The history API shows the same.
    for room in &workload.rooms {
        let seen = history(&workload.api, &workload.users[0], room).await?;
        if Some(&seen) != db.get(room) {
            failures.push(format!(
                "room {room}: history over the API differs from the database"
            ));
        }
    }

    // Each client holds every message once, in seq order, with the seq its
    // sender's ack carried.
    for client in clients {
        for room in &workload.rooms {
            let held = client.held.get(room).cloned().unwrap_or_default();
            let stored = db.get(room).cloned().unwrap_or_default();
            if held != stored {
                let missing = stored.iter().filter(|m| !held.contains(m)).count();
                lost += missing;
                failures.push(format!(
                    "{} holds {} messages of room {room}, {} stored ({missing} missing); first difference at {:?}",
                    client.name,
                    held.len(),
                    stored.len(),
                    held.iter().zip(&stored).position(|(h, s)| h != s)
                ));
            }
        }
    }

    let report = Report {
        test,
        stats,
        acked: acked.len(),
        lost,
        duplicated,
        failures,
        seconds,
    };
    Ok(report)
}

/// The last user's sockets close: within the presence TTL that user is
/// reported offline and the others online.
async fn presence_settles(workload: &Workload, clients: &mut [Client]) -> anyhow::Result<()> {
    let leaver = &workload.users[USERS - 1];
    for client in clients.iter_mut().filter(|c| c.user.id == leaver.id) {
        client.close().await;
    }
    let deadline = Instant::now() + Duration::from_secs(PRESENCE_TTL_S * 4);
    loop {
        let (status, body) = workload
            .api
            .get("/users?q=fu", Some(&workload.users[0].token))
            .await?;
        anyhow::ensure!(status == 200, "users: {status} {body}");
        let statuses: BTreeMap<String, String> = body["users"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|u| {
                (
                    str_of(&u["id"]).unwrap_or_default(),
                    str_of(&u["status"]).unwrap_or_default(),
                )
            })
            .collect();
        let expected: BTreeMap<String, String> = workload
            .users
            .iter()
            .map(|u| {
                let status = if u.id == leaver.id {
                    "offline"
                } else {
                    "online"
                };
                (u.id.clone(), status.to_owned())
            })
            .collect();
        if statuses == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "presence did not settle: {statuses:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The gateways' base URLs.
fn bases(cluster: &Cluster) -> Vec<String> {
    cluster.gateways.iter().map(|g| g.base.clone()).collect()
}

/// Runs `scenario` on a fresh cluster on `servers`; prints the logs when it
/// fails; always takes the cluster down.
async fn on_cluster<F, Fut>(servers: Servers, scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let cluster = Arc::new(Cluster::up_with(servers).await?);
    eprintln!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
    let result = scenario(cluster.clone()).await;
    if result.is_err() {
        eprintln!("{}", cluster.logs());
        match cluster.keep_logs() {
            Ok(dir) => eprintln!("the processes' whole logs are kept in {}", dir.display()),
            Err(error) => eprintln!("the logs could not be kept: {error:#}"),
        }
    }
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.down().await?,
        Err(_) => bail!("the cluster is still in use"),
    }
    result
}

/// What a fault may use besides the cluster: the spare member and a room.
struct Spare {
    api: Api,
    user: User,
    room: String,
}

/// The workload on the gateways `bases` of `cluster` around `fault`, then
/// the checker; the report is printed before anything is asserted.
async fn with_fault<F, Fut>(
    test: &'static str,
    cluster: &Cluster,
    bases: Vec<String>,
    traffic: Traffic,
    fault: F,
) -> anyhow::Result<(Report, Workload, Vec<Client>)>
where
    F: FnOnce(Spare) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let workload = Workload::set_up(&bases, &cluster.gateways[0].base).await?;
    let spare = Spare {
        api: Api::new(bases)?,
        user: User {
            id: workload.spare.id.clone(),
            token: workload.spare.token.clone(),
            refresh: String::new(),
        },
        room: workload.rooms[0].clone(),
    };
    let running = workload.start(traffic).await?;
    tokio::time::sleep(BEFORE).await;
    fault(spare).await?;
    tokio::time::sleep(AFTER).await;
    let (report, workload, clients) = running.finish(test, cluster).await?;
    report.print();
    Ok((report, workload, clients))
}

/// The usual pace: about eight sends per second per client, within the
/// gateways' frame rate limit with room for resumes.
fn steady() -> Traffic {
    Traffic {
        pace: Duration::from_millis(100),
        ..Traffic::default()
    }
}

/// The checker passed and presence settled.
async fn passed(
    report: &Report,
    workload: &Workload,
    clients: &mut [Client],
) -> anyhow::Result<()> {
    report.assert_ok()?;
    presence_settles(workload, clients).await
}

#[tokio::test]
async fn redis_killed_and_restarted() -> anyhow::Result<()> {
    const TEST: &str = "redis_killed_and_restarted";
    if skip_without(TEST, &["redis-server"])? {
        return Ok(());
    }
    let port = free_port()?;
    let mut redis = OwnRedis::start(port)?;
    let servers = Servers {
        redis: redis.url(),
        ..Servers::default()
    };
    on_cluster(servers, |cluster| async move {
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), steady(), |_| async {
                redis.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                redis = OwnRedis::start(port)?;
                Ok(())
            })
            .await?;
        passed(&report, &workload, &mut clients).await?;
        // The gateways resubscribed and told their clients to resume.
        anyhow::ensure!(report.stats.resyncs > 0, "no client was told to resync");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn redis_paused_then_continued() -> anyhow::Result<()> {
    const TEST: &str = "redis_paused_then_continued";
    if skip_without(TEST, &["redis-server"])? {
        return Ok(());
    }
    let redis = OwnRedis::start(free_port()?)?;
    let servers = Servers {
        redis: redis.url(),
        ..Servers::default()
    };
    on_cluster(servers, |cluster| async move {
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), steady(), |_| async {
                // Cut off: connections stay open but nothing answers.
                signal(redis.pid(), "STOP")?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                signal(redis.pid(), "CONT")
            })
            .await?;
        passed(&report, &workload, &mut clients).await
    })
    .await
}

#[tokio::test]
async fn postgres_restarted() -> anyhow::Result<()> {
    const TEST: &str = "postgres_restarted";
    if skip_without(TEST, &["runuser", "/usr/lib/postgresql/15/bin/initdb"])? {
        return Ok(());
    }
    let postgres = OwnPostgres::init()?;
    let servers = Servers {
        postgres: postgres.url(),
        ..Servers::default()
    };
    on_cluster(servers, |cluster| async move {
        let postgres = &postgres;
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), steady(), |spare| async move {
                let mut ws = spare.api.ws(&spare.user).await?;
                postgres.stop()?;
                // A send while the database is down fails, and soon.
                let send = json!({"type": "send", "room": spare.room, "text": "spare", "client_msg_id": "spare-1"});
                let started = Instant::now();
                let reply = reply_within(&mut ws, send.clone(), Duration::from_secs(30))
                    .await
                    .context("a send hung while the database was down")?;
                println!("a send failed {:?} after the database went down", started.elapsed());
                assert_eq!(reply["code"], "unavailable", "{reply}");
                postgres.start()?;
                // The retry succeeds, and a second retry is the same message.
                let deadline = Instant::now() + RETRY_FOR;
                let first = loop {
                    let reply = reply_within(&mut ws, send.clone(), Duration::from_secs(30)).await?;
                    if reply["type"] == "ack" {
                        break reply;
                    }
                    assert_eq!(reply["code"], "unavailable", "{reply}");
                    anyhow::ensure!(Instant::now() < deadline, "sends kept failing after the restart");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                let again = reply_within(&mut ws, send, Duration::from_secs(30)).await?;
                assert_eq!(again["type"], "ack", "{again}");
                assert_eq!(again["message"]["seq"], first["message"]["seq"]);
                assert_eq!(again["message"]["id"], first["message"]["id"]);
                Ok(())
            })
            .await?;
        passed(&report, &workload, &mut clients).await?;
        anyhow::ensure!(
            report.stats.errors.get("unavailable").copied().unwrap_or(0) > 0,
            "no workload send met the outage: {:?}",
            report.stats
        );
        Ok(())
    })
    .await
}

/// Sends `frame` with a fresh `ref` and returns the reply echoing it,
/// waiting at most `wait` (the database outage takes the services' pool
/// acquire timeouts, one after another, to answer).
async fn reply_within(ws: &mut Ws, mut frame: Value, wait: Duration) -> anyhow::Result<Value> {
    let reference = uuid::Uuid::new_v4().simple().to_string();
    frame["ref"] = json!(reference);
    ws.send(frame).await?;
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.stream.next()).await {
            Err(_) => bail!("no reply within {wait:?}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                let reply: Value = serde_json::from_str(text.as_str())?;
                if reply["ref"] == reference.as_str() {
                    return Ok(reply);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => bail!("the socket ended: {other:?}"),
        }
    }
}

/// The pending notifications of `user`, `(room, seq)` sorted.
async fn notifications(cluster: &Cluster, user: &User) -> anyhow::Result<Vec<(String, i64)>> {
    use chat_common::identity::ServiceAuth;
    use chat_proto::presence::v1::ListNotificationsRequest;
    use chat_proto::presence::v1::presence_service_client::PresenceServiceClient;
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        cluster.setting("PRESENCE_PORT")?
    ))?
    .connect()
    .await?;
    let mut client = PresenceServiceClient::with_interceptor(
        channel,
        ServiceAuth::new(chat_common::Secret::new(cluster.service_token()?))?,
    );
    let request = ListNotificationsRequest {
        user_id: user.id.clone(),
        include_delivered: false,
    };
    let mut out: Vec<(String, i64)> = client
        .list_notifications(request)
        .await?
        .into_inner()
        .notifications
        .into_iter()
        .map(|n| (n.room, n.seq))
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn rabbitmq_stopped_for_a_while() -> anyhow::Result<()> {
    const TEST: &str = "rabbitmq_stopped_for_a_while";
    if skip_without(TEST, &["rabbitmq-server", "rabbitmqctl"])? {
        return Ok(());
    }
    let mut rabbit = OwnRabbit::start()?;
    let servers = Servers {
        amqp: rabbit.url(),
        ..Servers::default()
    };
    on_cluster(servers, |cluster| async move {
        let traffic = Traffic {
            mention: Some((4, "absent".to_owned())),
            ..steady()
        };
        let database = cluster.message_database_url();
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), traffic, |_| async {
                rabbit.stop()?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                // Events of the messages acknowledged meanwhile wait in the
                // outbox.
                let mut db = sqlx::PgConnection::connect(&database).await?;
                let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                    .fetch_one(&mut db)
                    .await?;
                db.close().await?;
                println!("{pending} events in the outbox while RabbitMQ is down");
                anyhow::ensure!(pending > 0, "the outbox is empty while RabbitMQ is down");
                rabbit.restart()
            })
            .await?;
        passed(&report, &workload, &mut clients).await?;

        // Every mention of the absent user became exactly one notification.
        let mut expected: Vec<(String, i64)> = clients
            .iter()
            .flat_map(|c| &c.acked)
            .filter(|a| a.mention)
            .map(|a| (a.room.clone(), a.seq))
            .collect();
        expected.sort();
        anyhow::ensure!(!expected.is_empty(), "no mentions were sent");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = notifications(&cluster, &workload.absent).await?;
        while got.len() < expected.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            got = notifications(&cluster, &workload.absent).await?;
        }
        // Redeliveries would come in after the last expected one.
        tokio::time::sleep(crate::support::QUIET).await;
        let got = notifications(&cluster, &workload.absent).await?;
        println!(
            "{} mention notifications for {} mentions",
            got.len(),
            expected.len()
        );
        assert_eq!(got, expected, "one notification per mention");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn gateway_killed_mid_traffic() -> anyhow::Result<()> {
    const TEST: &str = "gateway_killed_mid_traffic";
    if skip_without(TEST, &[])? {
        return Ok(());
    }
    on_cluster(Servers::default(), |cluster| async move {
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), steady(), |_| async {
                cluster.kill_gateway(2)
            })
            .await?;
        passed(&report, &workload, &mut clients).await?;
        // Half the clients were on gateway 2: their sockets broke without
        // a close frame, and they moved to gateway 1.
        let moved = USERS * SOCKETS_PER_USER / 2;
        assert_eq!(
            report.stats.closes.get(&1006),
            Some(&moved),
            "{:?}",
            report.stats
        );
        anyhow::ensure!(report.stats.reconnects >= moved, "{:?}", report.stats);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn gateway_terminated_mid_traffic_drains_with_1012() -> anyhow::Result<()> {
    const TEST: &str = "gateway_terminated_mid_traffic_drains_with_1012";
    if skip_without(TEST, &[])? {
        return Ok(());
    }
    on_cluster(Servers::default(), |cluster| async move {
        let g3 = cluster.start_gateway(3, "2").await?;
        // Gateway 3 first: clients 0, 3, 6... start on it.
        let mut gateways = vec![g3.base.clone()];
        gateways.extend(bases(&cluster));
        let on_g3 = (0..USERS * SOCKETS_PER_USER).filter(|i| i % 3 == 0).count();
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, gateways, steady(), |_| async {
                let mut gateway = cluster.terminate_gateway(3)?;
                // While it drains, it is not ready and takes no sockets.
                let deadline = Instant::now() + Duration::from_secs(5);
                let readyz = loop {
                    let response = g3.http.get(format!("{}/readyz", g3.base)).send().await?;
                    if response.status() != 200 || Instant::now() > deadline {
                        break response;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                assert_eq!(readyz.status(), 503, "readyz while draining");
                match tokio_tungstenite::connect_async(g3.ws_url()).await {
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status(), 503, "upgrade while draining");
                    }
                    other => bail!("upgrade while draining: {other:?}"),
                }
                let status = tokio::time::timeout(Duration::from_secs(30), gateway.wait())
                    .await
                    .context("the gateway did not exit within 30 s of SIGTERM")??;
                anyhow::ensure!(status.success(), "gateway exit status {status}");
                Ok(())
            })
            .await?;
        passed(&report, &workload, &mut clients).await?;
        // Every socket on gateway 3 got 1012, written before it exited.
        let closes: Vec<(u16, usize)> = report.stats.closes.clone().into_iter().collect();
        assert_eq!(closes, vec![(1012, on_g3)]);
        Ok(())
    })
    .await
}

/// The value of counter `name` in a gateway's `/metrics`.
async fn counter(api: &Api, name: &str) -> anyhow::Result<f64> {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_the_others_keep_up() -> anyhow::Result<()> {
    const TEST: &str = "a_client_that_never_reads_is_closed_and_the_others_keep_up";
    if skip_without(TEST, &[])? {
        return Ok(());
    }
    on_cluster(Servers::default(), |cluster| async move {
        // Large frames (about 16 KB) fill the slow socket's buffers and its
        // bounded queue within seconds.
        let traffic = Traffic {
            padding: 3900,
            ..steady()
        };
        let gateways = &cluster.gateways;
        let (report, workload, mut clients) =
            with_fault(TEST, &cluster, bases(&cluster), traffic, |spare| async move {
                let mut slow = spare.api.ws_with_small_receive_buffer(&spare.user).await?;
                let overflows = "chat_gateway_queue_overflows_total";
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let mut total = 0.0;
                    for gateway in gateways {
                        total += counter(gateway, overflows).await?;
                    }
                    if total >= 1.0 {
                        break;
                    }
                    anyhow::ensure!(Instant::now() < deadline, "the slow client's queue never overflowed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let mut read = 0;
                let code = loop {
                    match slow.next_raw().await? {
                        Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
                        _ => read += 1,
                    }
                };
                println!("the slow client read {read} frames, then the close");
                assert_eq!(code, Some(1013));
                Ok(())
            })
            .await?;
        let mut latencies: Vec<u64> = clients.iter().flat_map(|c| c.latencies_ms.iter().copied()).collect();
        latencies.sort_unstable();
        let at = |p: usize| latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1))).copied().unwrap_or(0);
        println!(
            "delivery latency of the other clients over {} messages: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
            latencies.len(),
            at(50),
            at(95),
            at(99),
            latencies.last().copied().unwrap_or(0)
        );
        passed(&report, &workload, &mut clients).await
    })
    .await
}
