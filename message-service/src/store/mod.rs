//! Storage ports. [`Store`] hands out transactions ([`StoreTx`]) made of
//! small primitives, so the rules of every call live once in `api/` and a
//! whole call (e.g. a send: checks, seq, insert, outbox row) commits or
//! fails as one. [`AttachmentStore`] keeps attachment bytes: in the
//! database by default; object storage would be another implementation.
//!
//! One SQL implementation ([`sql`]) serves SQLite and PostgreSQL.

pub mod sql;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::paging::Direction;
use crate::domain::{MessageKind, Mute, Role, RoomKind, Visibility};
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub id: String,
    pub name: String,
    pub kind: RoomKind,
    pub visibility: Visibility,
    pub owner_id: String,
    pub created_at: i64,
    pub last_seq: i64,
    /// The sorted user-id pair of a dm room.
    pub dm_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub room_id: String,
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: i64,
    pub last_read_seq: i64,
    pub mute: Option<Mute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    pub room_id: String,
    pub user_id: String,
    /// `None`: until unbanned.
    pub until: Option<i64>,
    pub banned_by: String,
    pub created_at: i64,
}

/// An attachment's metadata (its bytes are in the [`AttachmentStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub id: String,
    pub room_id: String,
    pub uploader_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub room_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub sender_name: String,
    pub kind: MessageKind,
    pub text: String,
    /// Filled on reads for a message with an attachment; on writes only its
    /// id counts.
    pub attachment: Option<AttachmentRecord>,
    pub reply_to: Option<i64>,
    pub client_msg_id: String,
    pub mentions: Vec<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
}

/// A durable event waiting for the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Assigned by the store, increasing in commit order of one writer.
    pub id: i64,
    pub event_id: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub created_at: i64,
    /// The W3C trace context of the call that wrote the row; `None` when
    /// spans are not exported.
    pub traceparent: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn begin(&self) -> Result<Box<dyn StoreTx>, Error>;

    /// The oldest `limit` outbox rows, in id order.
    async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxRow>, Error>;

    async fn outbox_delete(&self, id: i64) -> Result<(), Error>;

    /// The outbox's backlog: how many rows wait, and the `created_at` of
    /// the oldest (`None` when empty).
    async fn outbox_stats(&self) -> Result<(i64, Option<i64>), Error>;
}

/// One transaction. Dropping it without [`StoreTx::commit`] rolls back.
#[async_trait]
pub trait StoreTx: Send {
    async fn commit(self: Box<Self>) -> Result<(), Error>;

    // Rooms.

    /// False when a dm room with the same `dm_key` already exists.
    async fn insert_room(&mut self, room: &RoomRecord) -> Result<bool, Error>;
    async fn room(&mut self, id: &str) -> Result<Option<RoomRecord>, Error>;
    /// Those of `ids` that exist, in no particular order: one query for
    /// many rooms.
    async fn rooms(&mut self, ids: &[&str]) -> Result<Vec<RoomRecord>, Error>;
    async fn room_by_dm_key(&mut self, dm_key: &str) -> Result<Option<RoomRecord>, Error>;
    /// Public group rooms, newest first.
    async fn public_rooms(&mut self, limit: i64) -> Result<Vec<RoomRecord>, Error>;
    /// The rooms of a user with their membership, by room creation time.
    async fn rooms_of(&mut self, user_id: &str) -> Result<Vec<(RoomRecord, MemberRecord)>, Error>;
    /// Every room (any kind and visibility) whose id sorts after `after`
    /// (`""` for the first page), by id, which is creation order since ids
    /// are UUID v7; each with its member count.
    async fn all_rooms(&mut self, after: &str, limit: i64)
    -> Result<Vec<(RoomRecord, i64)>, Error>;
    async fn set_owner(&mut self, room_id: &str, user_id: &str) -> Result<(), Error>;
    /// Takes the room's next `count` seqs and returns the last of them
    /// (locking the room row until commit where the backend has row
    /// locks). `None` when the room does not exist.
    async fn reserve_seqs(&mut self, room_id: &str, count: i64) -> Result<Option<i64>, Error>;

    // Members.

    async fn member(&mut self, room_id: &str, user_id: &str)
    -> Result<Option<MemberRecord>, Error>;
    /// The memberships among `(room_id, user_id)` pairs that exist, in no
    /// particular order: one query for many.
    async fn memberships(&mut self, keys: &[(&str, &str)]) -> Result<Vec<MemberRecord>, Error>;
    /// Oldest first.
    async fn members(&mut self, room_id: &str) -> Result<Vec<MemberRecord>, Error>;
    async fn member_count(&mut self, room_id: &str) -> Result<i64, Error>;
    /// False when already a member.
    async fn insert_member(&mut self, member: &MemberRecord) -> Result<bool, Error>;
    /// False when not a member.
    async fn delete_member(&mut self, room_id: &str, user_id: &str) -> Result<bool, Error>;
    async fn set_role(&mut self, room_id: &str, user_id: &str, role: Role) -> Result<(), Error>;
    async fn set_mute(
        &mut self,
        room_id: &str,
        user_id: &str,
        mute: Option<Mute>,
    ) -> Result<(), Error>;
    async fn set_last_read(&mut self, room_id: &str, user_id: &str, seq: i64) -> Result<(), Error>;
    /// [`StoreTx::set_last_read`] for many `(room_id, user_id, seq)`, each
    /// pair at most once.
    async fn set_last_reads(&mut self, positions: &[(&str, &str, i64)]) -> Result<(), Error>;

    // Bans.

    async fn ban(&mut self, room_id: &str, user_id: &str) -> Result<Option<BanRecord>, Error>;
    /// Creates or replaces the ban.
    async fn put_ban(&mut self, ban: &BanRecord) -> Result<(), Error>;
    async fn delete_ban(&mut self, room_id: &str, user_id: &str) -> Result<bool, Error>;

    // Messages.

    async fn message(&mut self, room_id: &str, seq: i64) -> Result<Option<MessageRecord>, Error>;
    /// The messages among `(room_id, sender_id, client_msg_id)` keys that
    /// exist, in no particular order: one query for many.
    async fn messages_by_client_ids(
        &mut self,
        keys: &[(&str, &str, &str)],
    ) -> Result<Vec<MessageRecord>, Error>;
    /// One statement for all; [`Error::Conflict`] when any `(room, sender,
    /// client_msg_id)` exists (and then none is inserted).
    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), Error>;
    /// Writes text, attachment, mentions, edited_at and deleted.
    async fn update_message(&mut self, message: &MessageRecord) -> Result<(), Error>;
    /// Up to `fetch` messages in the direction's natural order (descending
    /// for `Before`/`Latest`, ascending for `After`).
    async fn history(
        &mut self,
        room_id: &str,
        direction: Direction,
        fetch: i64,
    ) -> Result<Vec<MessageRecord>, Error>;

    async fn attachment(&mut self, id: &str) -> Result<Option<AttachmentRecord>, Error>;

    // Outbox.

    async fn insert_outbox(&mut self, row: &OutboxRow) -> Result<(), Error>;
    /// Many rows in one statement; their ids increase in slice order.
    async fn insert_outbox_rows(&mut self, rows: &[OutboxRow]) -> Result<(), Error>;
}

/// Where attachment bytes are kept.
#[async_trait]
pub trait AttachmentStore: Send + Sync + 'static {
    /// Stores the bytes and makes the metadata visible to [`StoreTx::attachment`].
    async fn save(&self, meta: &AttachmentRecord, data: Bytes) -> Result<(), Error>;
    async fn find(&self, id: &str) -> Result<Option<AttachmentRecord>, Error>;
    async fn load(&self, id: &str) -> Result<Option<Bytes>, Error>;
}
