//! The SQL store over `sqlx::AnyPool`: one code path for SQLite and
//! PostgreSQL. Only types the Any driver maps on both (TEXT, BIGINT,
//! BLOB/BYTEA) cross the boundary; booleans are 0/1 BIGINTs.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};

use super::{
    AttachmentRecord, AttachmentStore, BanRecord, MemberRecord, MessageRecord, OutboxRow,
    RoomRecord, Store, StoreTx,
};
use crate::domain::paging::Direction;
use crate::domain::{MessageKind, Mute, Role, RoomKind, Visibility};
use crate::error::Error;

#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
}

impl SqlStore {
    pub fn new(pool: AnyPool) -> SqlStore {
        SqlStore { pool }
    }
}

pub struct SqlTx {
    tx: Transaction<'static, Any>,
}

/// A statement assembled from this module's constant column lists (never
/// from input), so it is safe to hand to sqlx as a string.
fn sql(statement: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(statement)
}

/// `($1, $2), ($3, $4)`: `rows` rows of `columns` numbered placeholders,
/// for one statement over many rows.
fn placeholder_rows(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", row * columns + column + 1));
        }
        out.push(')');
    }
    out
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("unexpected {what} {value:?} in the database"))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

const ROOM_COLUMNS: &str =
    "r.id, r.name, r.kind, r.visibility, r.owner_id, r.created_at, r.last_seq, r.dm_key";

fn room_from_row(row: &AnyRow) -> Result<RoomRecord, Error> {
    let kind: String = row.try_get("kind")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(RoomRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: RoomKind::parse(&kind).ok_or_else(|| corrupt("room kind", &kind))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt("visibility", &visibility))?,
        owner_id: row.try_get("owner_id")?,
        created_at: row.try_get("created_at")?,
        last_seq: row.try_get("last_seq")?,
        dm_key: row.try_get("dm_key")?,
    })
}

const MEMBER_COLUMNS: &str = "m.room_id, m.user_id, m.username, m.display_name, m.role, m.joined_at, \
     m.last_read_seq, m.muted_until, m.muted_forever";

fn member_from_row(row: &AnyRow) -> Result<MemberRecord, Error> {
    let role: String = row.try_get("role")?;
    let muted_until: Option<i64> = row.try_get("muted_until")?;
    let muted_forever: i64 = row.try_get("muted_forever")?;
    let mute = if muted_forever != 0 {
        Some(Mute::Forever)
    } else {
        muted_until.map(Mute::Until)
    };
    Ok(MemberRecord {
        room_id: row.try_get("room_id")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        joined_at: row.try_get("joined_at")?,
        last_read_seq: row.try_get("last_read_seq")?,
        mute,
    })
}

const MESSAGE_SELECT: &str = "SELECT m.id, m.room_id, m.seq, m.sender_id, m.sender_name, m.kind, m.text, \
     m.attachment_id, m.reply_to, m.client_msg_id, m.mentions, m.created_at, m.edited_at, m.deleted, \
     a.uploader_id AS a_uploader_id, a.filename AS a_filename, a.content_type AS a_content_type, \
     a.size AS a_size, a.sha256 AS a_sha256, a.created_at AS a_created_at \
     FROM messages m LEFT JOIN attachments a ON a.id = m.attachment_id";

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, Error> {
    let kind: String = row.try_get("kind")?;
    let mentions: String = row.try_get("mentions")?;
    let mentions: Vec<String> =
        serde_json::from_str(&mentions).map_err(|_| corrupt("mentions", &mentions))?;
    let room_id: String = row.try_get("room_id")?;
    let attachment_id: Option<String> = row.try_get("attachment_id")?;
    let attachment = match attachment_id {
        None => None,
        Some(id) => Some(AttachmentRecord {
            id,
            room_id: room_id.clone(),
            uploader_id: row.try_get("a_uploader_id")?,
            filename: row.try_get("a_filename")?,
            content_type: row.try_get("a_content_type")?,
            size: row.try_get("a_size")?,
            sha256: row.try_get("a_sha256")?,
            created_at: row.try_get("a_created_at")?,
        }),
    };
    let deleted: i64 = row.try_get("deleted")?;
    Ok(MessageRecord {
        id: row.try_get("id")?,
        room_id,
        seq: row.try_get("seq")?,
        sender_id: row.try_get("sender_id")?,
        sender_name: row.try_get("sender_name")?,
        kind: MessageKind::parse(&kind).ok_or_else(|| corrupt("message kind", &kind))?,
        text: row.try_get("text")?,
        attachment,
        reply_to: row.try_get("reply_to")?,
        client_msg_id: row.try_get("client_msg_id")?,
        mentions,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted: deleted != 0,
    })
}

const ATTACHMENT_COLUMNS: &str =
    "id, room_id, uploader_id, filename, content_type, size, sha256, created_at";

fn attachment_from_row(row: &AnyRow) -> Result<AttachmentRecord, Error> {
    Ok(AttachmentRecord {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        uploader_id: row.try_get("uploader_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
    })
}

fn mentions_json(mentions: &[String]) -> Result<String, Error> {
    serde_json::to_string(mentions)
        .map_err(|e| Error::Internal(format!("cannot encode mentions: {e}")))
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin(&self) -> Result<Box<dyn StoreTx>, Error> {
        Ok(Box::new(SqlTx {
            tx: self.pool.begin().await?,
        }))
    }

    async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxRow>, Error> {
        let rows = sqlx::query(
            "SELECT id, event_id, routing_key, payload, created_at, traceparent FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxRow {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    routing_key: row.try_get("routing_key")?,
                    payload: row.try_get("payload")?,
                    created_at: row.try_get("created_at")?,
                    traceparent: row.try_get("traceparent")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn outbox_delete(&self, id: i64) -> Result<(), Error> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<(i64, Option<i64>), Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }
}

#[async_trait]
impl StoreTx for SqlTx {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn commit(self: Box<Self>) -> Result<(), Error> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn insert_room(&mut self, room: &RoomRecord) -> Result<bool, Error> {
        // ON CONFLICT covers the dm_key race of two replicas opening the same dm.
        let done = sqlx::query(
            "INSERT INTO rooms (id, name, kind, visibility, owner_id, created_at, last_seq, dm_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&room.id)
        .bind(&room.name)
        .bind(room.kind.as_str())
        .bind(room.visibility.as_str())
        .bind(&room.owner_id)
        .bind(room.created_at)
        .bind(room.last_seq)
        .bind(&room.dm_key)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn room(&mut self, id: &str) -> Result<Option<RoomRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn rooms(&mut self, ids: &[&str]) -> Result<Vec<RoomRecord>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id IN {}",
            placeholder_rows(1, ids.len())
        )));
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter().map(room_from_row).collect()
    }

    async fn room_by_dm_key(&mut self, dm_key: &str) -> Result<Option<RoomRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.dm_key = $1"
        )))
        .bind(dm_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(room_from_row).transpose()
    }

    async fn public_rooms(&mut self, limit: i64) -> Result<Vec<RoomRecord>, Error> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.visibility = 'public' AND r.kind = 'group' \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    async fn rooms_of(&mut self, user_id: &str) -> Result<Vec<(RoomRecord, MemberRecord)>, Error> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS}, {MEMBER_COLUMNS} FROM members m JOIN rooms r ON r.id = m.room_id \
             WHERE m.user_id = $1 ORDER BY r.created_at, r.id"
        )))
        .bind(user_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| Ok((room_from_row(row)?, member_from_row(row)?)))
            .collect()
    }

    async fn all_rooms(
        &mut self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(RoomRecord, i64)>, Error> {
        let rows = sqlx::query(sql(format!(
            "SELECT {ROOM_COLUMNS}, \
             (SELECT COUNT(*) FROM members m WHERE m.room_id = r.id) AS member_count \
             FROM rooms r WHERE r.id > $1 ORDER BY r.id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| Ok((room_from_row(row)?, row.try_get("member_count")?)))
            .collect()
    }

    async fn set_owner(&mut self, room_id: &str, user_id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE rooms SET owner_id = $2 WHERE id = $1")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn reserve_seqs(&mut self, room_id: &str, count: i64) -> Result<Option<i64>, Error> {
        let row = sqlx::query(
            "UPDATE rooms SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq",
        )
        .bind(room_id)
        .bind(count)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(|row| row.try_get("last_seq")).transpose()?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn member(
        &mut self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.room_id = $1 AND m.user_id = $2"
        )))
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(member_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn memberships(&mut self, keys: &[(&str, &str)]) -> Result<Vec<MemberRecord>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query(sql(format!(
            "WITH k (room_id, user_id) AS (VALUES {}) SELECT {MEMBER_COLUMNS} FROM members m \
             JOIN k ON m.room_id = k.room_id AND m.user_id = k.user_id",
            placeholder_rows(keys.len(), 2)
        )));
        for (room_id, user_id) in keys {
            query = query.bind(*room_id).bind(*user_id);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter().map(member_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn members(&mut self, room_id: &str) -> Result<Vec<MemberRecord>, Error> {
        let rows = sqlx::query(sql(format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.room_id = $1 ORDER BY m.joined_at, m.user_id"
        )))
        .bind(room_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(member_from_row).collect()
    }

    async fn member_count(&mut self, room_id: &str) -> Result<i64, Error> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM members WHERE room_id = $1")
            .bind(room_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn insert_member(&mut self, member: &MemberRecord) -> Result<bool, Error> {
        let (muted_until, muted_forever) = mute_columns(member.mute);
        let done = sqlx::query(
            "INSERT INTO members (room_id, user_id, username, display_name, role, joined_at, last_read_seq, \
             muted_until, muted_forever) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&member.room_id)
        .bind(&member.user_id)
        .bind(&member.username)
        .bind(&member.display_name)
        .bind(member.role.as_str())
        .bind(member.joined_at)
        .bind(member.last_read_seq)
        .bind(muted_until)
        .bind(muted_forever)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_member(&mut self, room_id: &str, user_id: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM members WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_role(&mut self, room_id: &str, user_id: &str, role: Role) -> Result<(), Error> {
        sqlx::query("UPDATE members SET role = $3 WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn set_mute(
        &mut self,
        room_id: &str,
        user_id: &str,
        mute: Option<Mute>,
    ) -> Result<(), Error> {
        let (muted_until, muted_forever) = mute_columns(mute);
        sqlx::query(
            "UPDATE members SET muted_until = $3, muted_forever = $4 WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(muted_until)
        .bind(muted_forever)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_last_read(&mut self, room_id: &str, user_id: &str, seq: i64) -> Result<(), Error> {
        self.set_last_reads(&[(room_id, user_id, seq)]).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn set_last_reads(&mut self, positions: &[(&str, &str, i64)]) -> Result<(), Error> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut query = sqlx::query(sql(format!(
            "WITH v (room_id, user_id, seq) AS (VALUES {}) UPDATE members SET last_read_seq = v.seq \
             FROM v WHERE members.room_id = v.room_id AND members.user_id = v.user_id",
            placeholder_rows(positions.len(), 3)
        )));
        for (room_id, user_id, seq) in positions {
            query = query.bind(*room_id).bind(*user_id).bind(*seq);
        }
        query.execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn ban(&mut self, room_id: &str, user_id: &str) -> Result<Option<BanRecord>, Error> {
        let row = sqlx::query(
            "SELECT room_id, user_id, until, banned_by, created_at FROM bans WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| {
            Ok(BanRecord {
                room_id: row.try_get("room_id")?,
                user_id: row.try_get("user_id")?,
                until: row.try_get("until")?,
                banned_by: row.try_get("banned_by")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn put_ban(&mut self, ban: &BanRecord) -> Result<(), Error> {
        sqlx::query("DELETE FROM bans WHERE room_id = $1 AND user_id = $2")
            .bind(&ban.room_id)
            .bind(&ban.user_id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("INSERT INTO bans (room_id, user_id, until, banned_by, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&ban.room_id)
            .bind(&ban.user_id)
            .bind(ban.until)
            .bind(&ban.banned_by)
            .bind(ban.created_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn delete_ban(&mut self, room_id: &str, user_id: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM bans WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn message(&mut self, room_id: &str, seq: i64) -> Result<Option<MessageRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.seq = $2"
        )))
        .bind(room_id)
        .bind(seq)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn messages_by_client_ids(
        &mut self,
        keys: &[(&str, &str, &str)],
    ) -> Result<Vec<MessageRecord>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::query(sql(format!(
            "WITH k (room_id, sender_id, client_msg_id) AS (VALUES {}) {MESSAGE_SELECT} \
             JOIN k ON m.room_id = k.room_id AND m.sender_id = k.sender_id \
             AND m.client_msg_id = k.client_msg_id",
            placeholder_rows(keys.len(), 3)
        )));
        for (room_id, sender_id, client_msg_id) in keys {
            query = query.bind(*room_id).bind(*sender_id).bind(*client_msg_id);
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        rows.iter().map(message_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_messages(&mut self, messages: &[MessageRecord]) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut query = sqlx::query(sql(format!(
            "INSERT INTO messages (room_id, seq, id, sender_id, sender_name, kind, text, attachment_id, \
             reply_to, client_msg_id, mentions, created_at, edited_at, deleted) VALUES {}",
            placeholder_rows(messages.len(), 14)
        )));
        for message in messages {
            query = query
                .bind(&message.room_id)
                .bind(message.seq)
                .bind(&message.id)
                .bind(&message.sender_id)
                .bind(&message.sender_name)
                .bind(message.kind.as_str())
                .bind(&message.text)
                .bind(message.attachment.as_ref().map(|a| a.id.clone()))
                .bind(message.reply_to)
                .bind(&message.client_msg_id)
                .bind(mentions_json(&message.mentions)?)
                .bind(message.created_at)
                .bind(message.edited_at)
                .bind(i64::from(message.deleted));
        }
        let result = query.execute(&mut *self.tx).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict("duplicate client_msg_id".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn update_message(&mut self, message: &MessageRecord) -> Result<(), Error> {
        sqlx::query(
            "UPDATE messages SET text = $3, attachment_id = $4, mentions = $5, edited_at = $6, deleted = $7 \
             WHERE room_id = $1 AND seq = $2",
        )
        .bind(&message.room_id)
        .bind(message.seq)
        .bind(&message.text)
        .bind(message.attachment.as_ref().map(|a| a.id.clone()))
        .bind(mentions_json(&message.mentions)?)
        .bind(message.edited_at)
        .bind(i64::from(message.deleted))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn history(
        &mut self,
        room_id: &str,
        direction: Direction,
        fetch: i64,
    ) -> Result<Vec<MessageRecord>, Error> {
        let rows = match direction {
            Direction::Before(before) => sqlx::query(sql(format!(
                "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
            )))
            .bind(room_id)
            .bind(before)
            .bind(fetch)
            .fetch_all(&mut *self.tx)
            .await?,
            Direction::After(after) => sqlx::query(sql(format!(
                "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
            )))
            .bind(room_id)
            .bind(after)
            .bind(fetch)
            .fetch_all(&mut *self.tx)
            .await?,
            Direction::Latest => {
                sqlx::query(sql(format!(
                    "{MESSAGE_SELECT} WHERE m.room_id = $1 ORDER BY m.seq DESC LIMIT $2"
                )))
                .bind(room_id)
                .bind(fetch)
                .fetch_all(&mut *self.tx)
                .await?
            }
        };
        rows.iter().map(message_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn attachment(&mut self, id: &str) -> Result<Option<AttachmentRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(attachment_from_row).transpose()
    }

    async fn insert_outbox(&mut self, row: &OutboxRow) -> Result<(), Error> {
        self.insert_outbox_rows(std::slice::from_ref(row)).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_outbox_rows(&mut self, rows: &[OutboxRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut query = sqlx::query(sql(format!(
            "INSERT INTO outbox (event_id, routing_key, payload, created_at, traceparent) VALUES {}",
            placeholder_rows(rows.len(), 5)
        )));
        for row in rows {
            query = query
                .bind(&row.event_id)
                .bind(&row.routing_key)
                .bind(row.payload.clone())
                .bind(row.created_at)
                .bind(row.traceparent.clone());
        }
        query.execute(&mut *self.tx).await?;
        Ok(())
    }
}

fn mute_columns(mute: Option<Mute>) -> (Option<i64>, i64) {
    match mute {
        None => (None, 0),
        Some(Mute::Until(until)) => (Some(until), 0),
        Some(Mute::Forever) => (None, 1),
    }
}

/// Attachment bytes in the `attachments` table, next to their metadata.
#[derive(Clone)]
pub struct SqlAttachmentStore {
    pool: AnyPool,
}

impl SqlAttachmentStore {
    pub fn new(pool: AnyPool) -> SqlAttachmentStore {
        SqlAttachmentStore { pool }
    }
}

#[async_trait]
impl AttachmentStore for SqlAttachmentStore {
    async fn save(&self, meta: &AttachmentRecord, data: Bytes) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO attachments (id, room_id, uploader_id, filename, content_type, size, sha256, data, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&meta.id)
        .bind(&meta.room_id)
        .bind(&meta.uploader_id)
        .bind(&meta.filename)
        .bind(&meta.content_type)
        .bind(meta.size)
        .bind(&meta.sha256)
        .bind(data.to_vec())
        .bind(meta.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find(&self, id: &str) -> Result<Option<AttachmentRecord>, Error> {
        let row = sqlx::query(sql(format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(attachment_from_row).transpose()
    }

    async fn load(&self, id: &str) -> Result<Option<Bytes>, Error> {
        let row = sqlx::query("SELECT data FROM attachments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| row.try_get::<Vec<u8>, _>("data"))
            .transpose()?
            .map(Bytes::from))
    }
}
