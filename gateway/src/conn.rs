//! One live WebSocket connection as the rest of the gateway sees it: a
//! bounded outbound queue drained by the connection's writer task, the rooms
//! it receives, and per room the highest `seq` delivered, so that `message`
//! events reach the client in strictly increasing order, each once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub type ConnId = u64;

/// Close codes of the protocol.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const RESTART: u16 = 1012;
    pub const TRY_AGAIN: u16 = 1013;
    pub const UNAUTHORIZED: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
}

/// One encoded text frame, shared by every connection it goes to.
#[derive(Debug, Clone)]
pub struct Frame {
    pub text: Utf8Bytes,
    /// The frame's `type`, for the frames-out series.
    pub kind: &'static str,
    /// When the message a live `message` event carries was committed: the
    /// writer records the fan-out latency once the frame is written.
    pub committed_at: Option<SystemTime>,
}

impl Frame {
    pub fn new(value: &Value) -> Frame {
        Frame {
            text: Utf8Bytes::from(value.to_string()),
            kind: kind_of(value),
            committed_at: None,
        }
    }
}

/// The `type` of a frame the gateway sends, from the protocol's fixed
/// list, so the label set stays bounded.
fn kind_of(value: &Value) -> &'static str {
    const KNOWN: &[&str] = &[
        "ready",
        "ack",
        "error",
        "history",
        "resumed",
        "resume_truncated",
        "resync",
        "message",
        "message_edited",
        "message_deleted",
        "member_joined",
        "member_left",
        "typing",
        "read",
        "presence",
        "room_added",
        "room_removed",
        "muted",
        "unmuted",
        "notification",
        "pong",
    ];
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == kind)
        .unwrap_or("other")
}

/// What waits in a connection's queue for its writer.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    Ping,
}

pub struct Conn {
    /// Local key in the hub's tables.
    pub id: ConnId,
    /// Globally unique; the `session_id` of `ready` and the presence
    /// connection id.
    pub session_id: String,
    pub user_id: String,
    /// Frames waiting for the writer. A plain deque rather than a channel:
    /// it allocates nothing until the first frame is queued, and frees
    /// its memory when drained.
    queue: Mutex<VecDeque<Outbound>>,
    /// At most this many frames wait in `queue`.
    capacity: usize,
    /// Wakes the writer when the queue stops being empty.
    queued: Notify,
    /// Wakes `send_waiting` callers when the writer takes from a full
    /// queue.
    drained: Notify,
    rooms: Mutex<HashMap<String, RoomCursor>>,
    closing: CancellationToken,
    close_code: AtomicU16,
}

#[derive(Default)]
struct RoomCursor {
    /// Highest message seq sent to the client in this room.
    delivered: i64,
    /// While a `resume` of the room runs, live message events wait here.
    held: Option<Vec<(i64, Frame)>>,
}

impl Conn {
    /// A connection whose queue holds at most `capacity` frames (at least
    /// one).
    pub fn new(id: ConnId, session_id: String, user_id: String, capacity: usize) -> Conn {
        Conn {
            id,
            session_id,
            user_id,
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            queued: Notify::new(),
            drained: Notify::new(),
            rooms: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            close_code: AtomicU16::new(close::NORMAL),
        }
    }

    fn cursors(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomCursor>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Outbound>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends to a queue known to have room, waking the writer if it was
    /// empty.
    fn push(&self, queue: &mut VecDeque<Outbound>, item: Outbound) {
        queue.push_back(item);
        if queue.len() == 1 {
            self.queued.notify_one();
        }
    }

    /// Queues a frame. A full queue means the client does not keep up: the
    /// connection is closed with 1013 and the client will `resume`.
    pub fn send(&self, item: Outbound) {
        if self.closing.is_cancelled() {
            return;
        }
        let mut queue = self.queue();
        if queue.len() < self.capacity {
            self.push(&mut queue, item);
            return;
        }
        drop(queue);
        tracing::info!(session = %self.session_id, "send queue full, closing slow client");
        metrics::counter!(crate::metrics::QUEUE_OVERFLOWS).increment(1);
        self.close(close::TRY_AGAIN);
    }

    pub fn send_frame(&self, frame: Frame) {
        self.send(Outbound::Frame(frame));
    }

    pub fn send_json(&self, value: &Value) {
        self.send_frame(Frame::new(value));
    }

    /// Queues a frame, waiting for room in the queue: for large replies to
    /// the client's own request (resume), where waiting is the right
    /// back-pressure.
    pub async fn send_waiting(&self, frame: &Value) {
        let mut item = Some(Outbound::Frame(Frame::new(frame)));
        loop {
            // Registered before the queue is looked at, so that a drain
            // between the look and the wait still wakes this caller.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut queue = self.queue();
                if self.closing.is_cancelled() {
                    return;
                }
                if queue.len() < self.capacity {
                    if let Some(item) = item.take() {
                        self.push(&mut queue, item);
                    }
                    return;
                }
            }
            tokio::select! {
                () = drained => {}
                () = self.closing.cancelled() => return,
            }
        }
    }

    /// Takes the oldest queued item, if any (the writer's side).
    pub fn next_queued(&self) -> Option<Outbound> {
        let mut queue = self.queue();
        let was_full = queue.len() >= self.capacity;
        let item = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 0 {
            // Idle connections are the many: an emptied queue gives its
            // memory back, at the price of one allocation per burst.
            *queue = VecDeque::new();
        }
        drop(queue);
        if was_full {
            self.drained.notify_waiters();
        }
        item
    }

    /// Waits for the oldest queued item (the writer's side; one writer per
    /// connection).
    pub async fn queued(&self) -> Outbound {
        loop {
            if let Some(item) = self.next_queued() {
                return item;
            }
            // `notify_one` keeps a permit when the writer is not waiting
            // yet, so a frame queued since the look above is not missed.
            self.queued.notified().await;
        }
    }

    /// A live `message` event of `room`: delivered unless the connection is
    /// not in the room, already has it, or is resuming the room (then held).
    pub fn deliver_message(&self, room: &str, seq: i64, frame: &Frame) {
        let mut cursors = self.cursors();
        let Some(cursor) = cursors.get_mut(room) else {
            return;
        };
        if let Some(held) = &mut cursor.held {
            held.push((seq, frame.clone()));
            return;
        }
        if seq <= cursor.delivered {
            return;
        }
        cursor.delivered = seq;
        drop(cursors);
        self.send_frame(frame.clone());
    }

    pub fn in_room(&self, room: &str) -> bool {
        self.cursors().contains_key(room)
    }

    pub fn rooms(&self) -> Vec<String> {
        self.cursors().keys().cloned().collect()
    }

    /// True when the room was not there before.
    pub fn add_room(&self, room: &str) -> bool {
        let mut cursors = self.cursors();
        if cursors.contains_key(room) {
            return false;
        }
        cursors.insert(room.to_owned(), RoomCursor::default());
        true
    }

    /// True when the room was there.
    pub fn remove_room(&self, room: &str) -> bool {
        self.cursors().remove(room).is_some()
    }

    /// Starts holding live events of `room`; false when not in the room.
    pub fn begin_resume(&self, room: &str) -> bool {
        match self.cursors().get_mut(room) {
            Some(cursor) => {
                cursor.held.get_or_insert_with(Vec::new);
                true
            }
            None => false,
        }
    }

    /// Ends a resume that replayed up to `replayed`: live events held
    /// meanwhile that the replay did not cover are sent, in seq order.
    pub fn finish_resume(&self, room: &str, replayed: i64) {
        let mut cursors = self.cursors();
        let Some(cursor) = cursors.get_mut(room) else {
            return;
        };
        cursor.delivered = cursor.delivered.max(replayed);
        let mut held = cursor.held.take().unwrap_or_default();
        held.sort_by_key(|(seq, _)| *seq);
        let mut to_send = Vec::new();
        for (seq, frame) in held {
            if seq > cursor.delivered {
                cursor.delivered = seq;
                to_send.push(frame);
            }
        }
        drop(cursors);
        for frame in to_send {
            self.send_frame(frame);
        }
    }

    /// Asks the writer to close the socket with `code`. The first code wins.
    pub fn close(&self, code: u16) {
        if !self.closing.is_cancelled() {
            self.close_code.store(code, Ordering::Relaxed);
            self.closing.cancel();
        }
    }

    pub fn close_code(&self) -> u16 {
        self.close_code.load(Ordering::Relaxed)
    }

    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }
}

/// The reason text sent with a close code.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "going away",
        close::POLICY => "policy violation",
        close::TOO_BIG => "frame too big",
        close::INTERNAL => "internal error",
        close::RESTART => "service restart, reconnect and resume",
        close::TRY_AGAIN => "too slow or overloaded, reconnect and resume",
        close::UNAUTHORIZED => "unauthorized",
        close::FORBIDDEN => "forbidden",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(capacity: usize) -> Conn {
        Conn::new(1, "s".into(), "u".into(), capacity)
    }

    fn texts(c: &Conn) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Outbound::Frame(f)) = c.next_queued() {
            out.push(f.text.as_str().to_owned());
        }
        out
    }

    fn frame(text: &str) -> Frame {
        Frame {
            text: Utf8Bytes::from(text),
            kind: "message",
            committed_at: None,
        }
    }

    #[test]
    fn messages_are_delivered_once_in_increasing_seq() {
        let c = conn(16);
        c.add_room("r");
        for seq in [1, 2, 2, 1, 3] {
            c.deliver_message("r", seq, &frame(&seq.to_string()));
        }
        c.deliver_message("other", 9, &frame("x"));
        assert_eq!(texts(&c), ["1", "2", "3"]);
    }

    #[test]
    fn live_events_during_resume_follow_the_replay() {
        let c = conn(16);
        c.add_room("r");
        assert!(c.begin_resume("r"));
        c.deliver_message("r", 6, &frame("6"));
        c.deliver_message("r", 5, &frame("5"));
        c.send_frame(frame("replayed 1..=5"));
        c.finish_resume("r", 5);
        assert_eq!(texts(&c), ["replayed 1..=5", "6"]);
        assert!(!c.begin_resume("not-a-member"));
    }

    #[test]
    fn frame_types_are_labelled_from_a_fixed_list() {
        assert_eq!(Frame::new(&serde_json::json!({"type": "ack"})).kind, "ack");
        assert_eq!(Frame::new(&serde_json::json!({"type": "x1"})).kind, "other");
        assert_eq!(Frame::new(&serde_json::json!([1])).kind, "other");
    }

    #[test]
    fn a_full_queue_closes_with_1013() {
        let c = conn(1);
        c.send_frame(frame("a"));
        assert!(!c.is_closing());
        c.send_frame(frame("b"));
        assert!(c.is_closing());
        assert_eq!(c.close_code(), close::TRY_AGAIN);
        assert_eq!(texts(&c), ["a"]);
    }

    #[tokio::test]
    async fn send_waiting_waits_for_the_writer_to_make_room() {
        let c = std::sync::Arc::new(conn(1));
        c.send_frame(frame("a"));
        let waiting = tokio::spawn({
            let c = c.clone();
            async move {
                c.send_waiting(&serde_json::json!({"type": "history"}))
                    .await
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(matches!(c.queued().await, Outbound::Frame(f) if f.text.as_str() == "a"));
        waiting
            .await
            .expect("send_waiting finishes once there is room");
        assert_eq!(texts(&c), [r#"{"type":"history"}"#]);
        assert!(!c.is_closing());
    }

    #[tokio::test]
    async fn send_waiting_gives_up_when_the_connection_closes() {
        let c = std::sync::Arc::new(conn(1));
        c.send_frame(frame("a"));
        let waiting = tokio::spawn({
            let c = c.clone();
            async move {
                c.send_waiting(&serde_json::json!({"type": "history"}))
                    .await
            }
        });
        tokio::task::yield_now().await;
        c.close(close::GOING_AWAY);
        waiting.await.expect("send_waiting returns on close");
        assert_eq!(texts(&c), ["a"]);
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_frame_queued_while_it_waits() {
        let c = std::sync::Arc::new(conn(4));
        let writer = tokio::spawn({
            let c = c.clone();
            async move { c.queued().await }
        });
        tokio::task::yield_now().await;
        c.send_frame(frame("late"));
        let item = writer.await.expect("the writer gets the frame");
        assert!(matches!(item, Outbound::Frame(f) if f.text.as_str() == "late"));
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let c = conn(1024);
        for i in 0..500 {
            c.send_frame(frame(&i.to_string()));
        }
        assert!(c.queue().capacity() >= 500);
        assert_eq!(texts(&c).len(), 500);
        assert_eq!(c.queue().capacity(), 0);
        assert!(!c.is_closing());
    }
}
