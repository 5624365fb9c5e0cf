//! What every handler shares: the stores, the buses, the limits, the
//! per-room publish locks and the outbox relay's wake-up.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chat_common::Backends;
use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::sends::SendQueue;
use crate::store::{AttachmentStore, Store};

pub struct State {
    pub store: Arc<dyn Store>,
    pub attachments: Arc<dyn AttachmentStore>,
    pub backends: Backends,
    pub limits: Limits,
    pub room_locks: RoomLocks,
    /// Sends wait here to be committed in batches.
    pub sends: SendQueue,
    /// Woken after every commit that wrote an outbox row.
    pub outbox_wake: Arc<Notify>,
    pub clock: Clock,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub recall_window_ms: i64,
    pub max_text_chars: usize,
    pub max_attachment_bytes: u64,
}

/// Striped locks by room id. A call that commits a room change and then
/// publishes its event holds the room's stripe from before the transaction
/// until after the publish, so a room's events leave in commit (and so seq)
/// order even with concurrent senders. Never taken while holding a database
/// connection, and several only at once in stripe order
/// ([`RoomLocks::lock_all`]), so it cannot deadlock with the pool or
/// itself.
pub struct RoomLocks {
    stripes: Vec<Mutex<()>>,
}

impl RoomLocks {
    pub const STRIPES: usize = 256;

    pub fn new() -> RoomLocks {
        RoomLocks {
            stripes: (0..Self::STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub async fn lock(&self, room_id: &str) -> MutexGuard<'_, ()> {
        self.stripes[Self::stripe(room_id)].lock().await
    }

    /// The locks of all of `room_ids`, taken in stripe order.
    pub async fn lock_all<'a>(
        &self,
        room_ids: impl IntoIterator<Item = &'a str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = room_ids.into_iter().map(Self::stripe).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }

    /// The stripe of `room_id`, below [`RoomLocks::STRIPES`].
    pub fn stripe(room_id: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        room_id.hash(&mut hasher);
        // The modulo keeps the index below STRIPES, so it fits usize.
        (hasher.finish() % Self::STRIPES as u64) as usize
    }
}

impl Default for RoomLocks {
    fn default() -> Self {
        RoomLocks::new()
    }
}

/// Milliseconds since the epoch, strictly increasing within the process,
/// so rows created in a burst (members joining, rooms created) keep their
/// order when sorted by time.
#[derive(Default)]
pub struct Clock {
    last: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        let now = chat_common::db::now_ms();
        let previous = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(previous + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_repeats() {
        let clock = Clock::default();
        let mut last = 0;
        for _ in 0..1000 {
            let now = clock.now_ms();
            assert!(now > last);
            last = now;
        }
    }
}
