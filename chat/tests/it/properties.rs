//! Property: whatever frames a client sends over its WebSocket (valid ones,
//! random JSON, known frames with random fields, oversized texts, unknown
//! ids, rooms it is not in), the gateway answers each with a well-formed
//! frame or an `error` with a protocol code, never lets the client see or
//! touch a room it is not a member of, stays healthy, and releases every
//! connection it served.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Deployment, TestSystem, User, WAIT, Ws};

/// Server frame types of PROTOCOL.md (`ready` is consumed on connect).
const SERVER_TYPES: &[&str] = &[
    "ack",
    "message",
    "message_edited",
    "message_deleted",
    "history",
    "resumed",
    "resume_truncated",
    "typing",
    "read",
    "presence",
    "pong",
    "member_joined",
    "member_left",
    "room_added",
    "room_removed",
    "muted",
    "unmuted",
    "notification",
    "resync",
    "error",
];

/// Error codes of PROTOCOL.md.
const ERROR_CODES: &[&str] = &[
    "unauthorized",
    "forbidden",
    "not_found",
    "invalid_argument",
    "conflict",
    "rate_limited",
    "muted",
    "too_large",
    "unavailable",
    "internal",
];

/// Events about a room, which only its members may receive.
const ROOM_EVENTS: &[&str] = &[
    "message",
    "message_edited",
    "message_deleted",
    "typing",
    "read",
    "member_joined",
    "member_left",
    "muted",
    "unmuted",
];

/// The gateway's frame limit (`Limits::default().max_frame_bytes`).
const FRAME_LIMIT: usize = 64 * 1024;

/// Which room a generated frame names.
#[derive(Debug, Clone)]
enum Room {
    /// A public room the random user owns.
    Own,
    /// The other user's private room: never the random user's.
    Private,
    /// The other user's public room, which the random user may join.
    Public,
    /// A well-formed id of no room.
    Unknown,
    /// Anything.
    Random(String),
}

#[derive(Debug, Clone)]
enum Action {
    /// Any text at all.
    Raw(String),
    /// Any JSON value.
    Json(Value),
    Send {
        room: Room,
        text: String,
        client_msg_id: String,
        reply_to: Option<i64>,
    },
    Edit {
        room: Room,
        seq: i64,
        text: String,
    },
    Delete {
        room: Room,
        seq: i64,
    },
    History {
        room: Room,
        before: Option<i64>,
        after: Option<i64>,
        limit: Option<u32>,
    },
    Resume {
        rooms: Vec<(Room, i64)>,
    },
    Typing {
        room: Room,
    },
    Read {
        room: Room,
        seq: i64,
    },
    Join {
        room: Room,
    },
    Leave {
        room: Room,
    },
    Presence {
        users: usize,
    },
    Ping,
    /// A known type with fields of the wrong shape.
    Mangled {
        kind: &'static str,
        fields: Value,
    },
    /// A text over the frame limit: the gateway closes with 1009.
    Oversized,
}

fn room() -> impl Strategy<Value = Room> {
    prop_oneof![
        3 => Just(Room::Own),
        3 => Just(Room::Private),
        2 => Just(Room::Public),
        1 => Just(Room::Unknown),
        1 => ".{0,40}".prop_map(Room::Random),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn seq() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..5, any::<i64>()]
}

/// Texts up to the message limit (4,000 characters) and beyond it, but
/// within the frame limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,30}",
        1 => (3990usize..4100).prop_map(|n| "x".repeat(n)),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let kinds = prop::sample::select(vec![
        "send", "edit", "delete", "history", "resume", "typing", "read", "join", "leave",
        "presence", "auth",
    ]);
    prop_oneof![
        1 => ".{0,60}".prop_map(Action::Raw),
        1 => json_value().prop_map(Action::Json),
        4 => (room(), text(), "[a-z0-9]{1,6}", prop::option::of(seq())).prop_map(
            |(room, text, client_msg_id, reply_to)| Action::Send { room, text, client_msg_id, reply_to }
        ),
        1 => (room(), seq(), text()).prop_map(|(room, seq, text)| Action::Edit { room, seq, text }),
        1 => (room(), seq()).prop_map(|(room, seq)| Action::Delete { room, seq }),
        2 => (room(), prop::option::of(seq()), prop::option::of(seq()), prop::option::of(0u32..120))
            .prop_map(|(room, before, after, limit)| Action::History { room, before, after, limit }),
        2 => prop::collection::vec((room(), seq()), 0..4).prop_map(|rooms| Action::Resume { rooms }),
        1 => room().prop_map(|room| Action::Typing { room }),
        1 => (room(), seq()).prop_map(|(room, seq)| Action::Read { room, seq }),
        2 => room().prop_map(|room| Action::Join { room }),
        1 => room().prop_map(|room| Action::Leave { room }),
        1 => prop_oneof![0usize..4, 499usize..502].prop_map(|users| Action::Presence { users }),
        1 => Just(Action::Ping),
        2 => (kinds, json_value()).prop_map(|(kind, fields)| Action::Mangled { kind, fields }),
    ]
}

/// A sequence of frames, sometimes ended by an oversized one.
fn actions() -> impl Strategy<Value = Vec<Action>> {
    (
        prop::collection::vec(action(), 1..16),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(mut actions, oversized)| {
            if oversized {
                actions.push(Action::Oversized);
            }
            actions
        })
}

struct Rooms {
    own: String,
    private: String,
    public: String,
}

impl Rooms {
    fn id(&self, room: &Room) -> String {
        match room {
            Room::Own => self.own.clone(),
            Room::Private => self.private.clone(),
            Room::Public => self.public.clone(),
            Room::Unknown => "0190c0de-0000-7000-8000-000000000000".to_owned(),
            Room::Random(id) => id.clone(),
        }
    }
}

/// The text one action sends, with `reference` as its `ref` where it is an
/// object frame.
fn frame_text(action: &Action, rooms: &Rooms, reference: &str) -> String {
    let frame = match action {
        Action::Raw(text) => return text.clone(),
        Action::Json(value) => {
            // Without a `ref`: every reply with one must answer a frame of
            // the known kinds.
            let mut value = value.clone();
            if let Value::Object(fields) = &mut value {
                fields.remove("ref");
            }
            return value.to_string();
        }
        Action::Oversized => {
            return format!(
                "{{\"type\":\"send\",\"text\":\"{}\"}}",
                "y".repeat(FRAME_LIMIT)
            );
        }
        Action::Send {
            room,
            text,
            client_msg_id,
            reply_to,
        } => {
            json!({"type": "send", "room": rooms.id(room), "text": text, "client_msg_id": client_msg_id, "reply_to": reply_to})
        }
        Action::Edit { room, seq, text } => {
            json!({"type": "edit", "room": rooms.id(room), "seq": seq, "text": text})
        }
        Action::Delete { room, seq } => {
            json!({"type": "delete", "room": rooms.id(room), "seq": seq})
        }
        Action::History {
            room,
            before,
            after,
            limit,
        } => {
            json!({"type": "history", "room": rooms.id(room), "before": before, "after": after, "limit": limit})
        }
        Action::Resume { rooms: wanted } => {
            let wanted: serde_json::Map<String, Value> = wanted
                .iter()
                .map(|(room, seq)| (rooms.id(room), json!(seq)))
                .collect();
            json!({"type": "resume", "rooms": wanted})
        }
        Action::Typing { room } => json!({"type": "typing", "room": rooms.id(room)}),
        Action::Read { room, seq } => json!({"type": "read", "room": rooms.id(room), "seq": seq}),
        Action::Join { room } => json!({"type": "join", "room": rooms.id(room)}),
        Action::Leave { room } => json!({"type": "leave", "room": rooms.id(room)}),
        Action::Presence { users } => {
            let ids: Vec<String> = (0..*users).map(|i| format!("u{i}")).collect();
            json!({"type": "presence", "user_ids": ids})
        }
        Action::Ping => json!({"type": "ping"}),
        Action::Mangled { kind, fields } => {
            let mut frame = match fields {
                Value::Object(fields) => Value::Object(fields.clone()),
                other => json!({"room": other}),
            };
            frame["type"] = json!(kind);
            frame
        }
    };
    let mut frame = frame;
    frame["ref"] = json!(reference);
    frame.to_string()
}

struct World {
    t: TestSystem,
    rando: User,
    victim: User,
    victim_ws: Ws,
    rooms: Rooms,
    /// A message of the private room the random user must never see.
    secret: String,
    cases: usize,
}

impl World {
    async fn start() -> anyhow::Result<World> {
        let t = TestSystem::start_with(Deployment::Embedded, |options| {
            // The property is about content, not pacing: no frame may be
            // dropped by the rate limit.
            options.gateway_limits.frames_per_second = 100_000;
            options.gateway_limits.frame_burst = 100_000;
        })
        .await?;
        let rando = t.register("rando").await?;
        let victim = t.register("victim").await?;
        let rooms = Rooms {
            own: t.room(&rando, "own", "public").await?,
            private: t.room(&victim, "private", "private").await?,
            public: t.room(&victim, "public", "public").await?,
        };
        let mut victim_ws = t.ws(&victim).await?;
        let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let reply = victim_ws
            .request(json!({"type": "send", "room": rooms.private, "text": secret, "client_msg_id": "s1"}))
            .await?;
        ensure!(reply["type"] == "ack", "the secret was not sent: {reply}");
        Ok(World {
            t,
            rando,
            victim,
            victim_ws,
            rooms,
            secret,
            cases: 0,
        })
    }

    /// One case: a fresh socket of the random user sends `actions`, then a
    /// ping whose pong marks the end of the replies.
    async fn case(&mut self, actions: &[Action]) -> anyhow::Result<()> {
        self.cases += 1;
        let mut ws = self.t.ws(&self.rando).await?;
        // Rooms whose events the socket may receive: its rooms at connect
        // and those it asks to join (a join's `member_joined` may overtake
        // its ack; events already under way when it leaves one may still
        // arrive). The private room is checked apart: it never shows.
        let mut allowed: HashSet<String> = ws.ready["rooms"]
            .as_array()
            .context("ready without rooms")?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        ensure!(
            !allowed.contains(&self.rooms.private),
            "the private room is among the random user's rooms"
        );
        allowed.extend(actions.iter().filter_map(|action| match action {
            Action::Join { room } => Some(self.rooms.id(room)),
            _ => None,
        }));
        let mut refs = BTreeSet::new();
        let mut oversized = false;
        for (i, action) in actions.iter().enumerate() {
            let reference = format!("p{i}");
            ws.send_raw(&frame_text(action, &self.rooms, &reference))
                .await?;
            if !matches!(action, Action::Raw(_) | Action::Json(_) | Action::Oversized) {
                refs.insert(reference);
            }
            oversized |= matches!(action, Action::Oversized);
        }
        if !oversized {
            ws.send_raw(r#"{"type":"ping","ref":"end"}"#).await?;
        }
        let mut answered = BTreeSet::new();
        loop {
            let frame = match tokio::time::timeout(WAIT, ws.stream.next()).await {
                Err(_) => bail!("no end of the replies within {WAIT:?}"),
                Ok(None) => bail!("the socket ended without a close frame"),
                Ok(Some(Err(e))) => bail!("socket error: {e}"),
                Ok(Some(Ok(Message::Text(text)))) => {
                    serde_json::from_str::<Value>(text.as_str())
                        .with_context(|| format!("not JSON: {text}"))?
                }
                Ok(Some(Ok(Message::Close(close)))) => {
                    let code = close.map(|c| u16::from(c.code));
                    ensure!(
                        oversized && code == Some(1009),
                        "closed with {code:?} (oversized frame sent: {oversized})"
                    );
                    break;
                }
                Ok(Some(Ok(_))) => continue,
            };
            if frame["ref"] == "end" {
                ensure!(frame["type"] == "pong", "the end ping got {frame}");
                break;
            }
            self.check(&frame, &refs, &allowed)?;
            if let Some(reference) = frame["ref"].as_str() {
                answered.insert(reference.to_owned());
            }
        }
        if !oversized {
            // Every frame with a ref was handled before the end ping.
            ensure!(
                answered == refs,
                "unanswered refs: {:?}",
                refs.difference(&answered)
            );
            ws.close().await?;
        }
        self.drain_victim().await?;
        let healthz = self
            .t
            .http
            .get(format!("{}/healthz", self.t.base))
            .send()
            .await?;
        ensure!(
            healthz.status() == 200,
            "healthz answered {}",
            healthz.status()
        );
        Ok(())
    }

    /// One frame the random user received.
    fn check(
        &self,
        frame: &Value,
        refs: &BTreeSet<String>,
        allowed: &HashSet<String>,
    ) -> anyhow::Result<()> {
        let kind = frame["type"].as_str().context("a frame without a type")?;
        ensure!(SERVER_TYPES.contains(&kind), "unknown frame type: {frame}");
        let text = frame.to_string();
        ensure!(!text.contains(&self.secret), "the secret leaked: {frame}");
        if let Some(reference) = frame.get("ref") {
            ensure!(
                reference.as_str().is_some_and(|r| refs.contains(r)),
                "a ref that was not sent: {frame}"
            );
        }
        if kind == "error" {
            let code = frame["code"].as_str().unwrap_or_default();
            ensure!(ERROR_CODES.contains(&code), "unknown error code: {frame}");
            ensure!(
                frame["message"].is_string(),
                "an error without message: {frame}"
            );
            ensure!(code != "internal", "an internal error: {frame}");
            return Ok(());
        }
        // Apart from error messages (which may quote the id the client
        // sent), nothing names the private room.
        ensure!(
            !text.contains(&self.rooms.private),
            "the private room showed: {frame}"
        );
        if ROOM_EVENTS.contains(&kind) || kind == "history" {
            let room = frame["room"]
                .as_str()
                .context("a room event without room")?;
            ensure!(
                allowed.contains(room),
                "an event of a room it is not in: {frame}"
            );
        }
        Ok(())
    }

    /// Reads what the victim's socket received so far: nothing from the
    /// random user in the private room.
    async fn drain_victim(&mut self) -> anyhow::Result<()> {
        while let Ok(next) =
            tokio::time::timeout(Duration::from_millis(20), self.victim_ws.stream.next()).await
        {
            let Some(Ok(message)) = next else {
                bail!("the victim's socket ended: {next:?}");
            };
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(text.as_str())?;
            if frame["room"] == self.rooms.private.as_str() {
                let from = [&frame["user_id"], &frame["message"]["sender_id"]];
                ensure!(
                    !from.contains(&&json!(self.rando.id)),
                    "the random user acted in the private room: {frame}"
                );
            }
        }
        Ok(())
    }

    /// After all cases: the private room holds the victim's message only,
    /// and the gateway released every socket but the victim's.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let (status, history) = self
            .t
            .get(
                &format!("/rooms/{}/messages", self.rooms.private),
                Some(&self.victim.token),
            )
            .await?;
        ensure!(status == 200, "history: {status} {history}");
        let senders: Vec<&Value> = history["messages"]
            .as_array()
            .context("no messages")?
            .iter()
            .map(|m| &m["sender_id"])
            .collect();
        ensure!(
            senders == [&json!(self.victim.id)],
            "the private room's messages: {history}"
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let open = self.connections().await?;
            if open == 1.0 {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "{open} sockets open after {} cases, expected the victim's alone",
                self.cases
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gateway's open-sockets gauge.
    async fn connections(&self) -> anyhow::Result<f64> {
        let response = self
            .t
            .http
            .get(format!("{}/metrics", self.t.base))
            .send()
            .await?;
        let text = response.text().await?;
        text.lines()
            .find_map(|line| line.strip_prefix("chat_gateway_connections "))
            .context("no chat_gateway_connections in /metrics")?
            .trim()
            .parse()
            .context("a gauge that is not a number")
    }
}

/// Resident memory of this process (the whole embedded system runs in it).
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

#[test]
fn random_client_frames_get_well_formed_replies_and_never_cross_rooms() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let world = RefCell::new(runtime.block_on(World::start())?);
    // Memory once the system has served a few cases, against memory at
    // the end: a leak per frame or per connection grows with the cases.
    let warm = RefCell::new(None);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&actions(), |actions| {
        let mut world = world.borrow_mut();
        runtime
            .block_on(world.case(&actions))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        if world.cases == 8 {
            *warm.borrow_mut() = Some(rss_bytes().map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        Ok(())
    });
    if let Err(failure) = result {
        bail!("{failure}");
    }
    let mut world = world.into_inner();
    runtime.block_on(world.finish())?;
    let grown = rss_bytes()?.saturating_sub(warm.into_inner().context("fewer than 8 cases ran")?);
    // Generous: the allocator keeps freed memory, and a case sends at most
    // about 16 texts of 4 KiB and one of 64 KiB.
    ensure!(
        grown < 64 * 1024 * 1024,
        "resident memory grew by {} KiB over {} cases",
        grown / 1024,
        world.cases
    );
    runtime.block_on(world.t.stop())?;
    Ok(())
}
