//! The Redis presence store: the state of every presence-service replica
//! sharing one Redis, so any replica can answer for any connection and a
//! gateway that died is noticed by whichever replica sweeps first.
//!
//! # Keys
//!
//! Every key starts with a configurable prefix (default `chat:`), so
//! deployments and tests sharing a server stay apart. A prefix holding a
//! hash tag (`{chat}:`) puts every key in one slot, which Lua scripts need
//! on a Redis Cluster.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `presence:conn:{conn}` | hash | `user`, `gateway` of a registered connection |
//! | `presence:expiry` | sorted set | every registered connection, scored by its expiry (µs since the epoch) |
//! | `presence:conns:{user}` | set | the user's connection ids; non-empty iff online |
//! | `presence:rooms:{user}` | list | the user's rooms, in the order given |
//! | `presence:last_seen` | hash | user → last seen (ns since the epoch) |
//! | `presence:notifications:{user}` | list | `p`/`d` (pending/delivered) + JSON, oldest first |
//! | `presence:event:{id}` | string | a claimed bus event, `SET NX` with a 24 h expiry |
//!
//! The id sits after a fixed `presence:{kind}:`, so no id can make one
//! key collide with another kind's.
//!
//! # Expiry
//!
//! A connection's expiry is its score in `presence:expiry`, set by
//! `add_connection` and moved by `refresh` (the heartbeat), rather than a
//! Redis `PX` on the connection key. This keeps the port's contract exactly:
//! the times come from the caller (one clock for setting and for
//! sweeping, as in the memory store), an expired connection still counts
//! until a sweep removes it, so "came online" and "went offline" stay
//! paired, and Redis never drops a key behind the sweeper's back (which
//! would leave a user in `conns` with nobody able to tell which user a
//! vanished connection belonged to). The sweeper of any replica turns
//! expired scores into removals, so a dead gateway's users go offline
//! within the TTL plus one sweep interval.
//!
//! # Atomicity
//!
//! Every change is one Lua script (a sweep: one per expired connection),
//! run by Redis as a single step, so replicas racing on the same user see
//! one order of events: exactly one `add_connection` finds the user's set
//! empty (came online), exactly one removal empties it (went offline), and
//! two sweepers of the same expired connection remove it once: the second
//! finds its key gone.
//! Scripts name their keys in `KEYS`, except `online`, which reads the
//! connection hashes listed in the expiry index.

use std::collections::BTreeMap;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::memory::MAX_NOTIFICATIONS_PER_USER;
use super::{Added, Connection, OnlineUser, PresenceStore, Recorded, Removal, StoreError};
use crate::domain::{
    ConnectionId, GatewayId, Notification, NotificationKind, Presence, RoomId, UserId,
};

/// How long a claimed event id is remembered. Redelivery happens within
/// moments of the first delivery, so a day is far more than needed, and
/// the expiry keeps the set bounded without any clean-up job.
pub const EVENT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Expired connections read per round trip of a sweep.
const SWEEP_BATCH: usize = 256;
/// Batches one sweep handles at most, so one tick stays bounded even after
/// a large gateway died; the rest is left to the next tick.
const MAX_SWEEP_BATCHES: usize = 40;
/// Connection ids refreshed per script call: a gateway heartbeats all its
/// connections at once, and one huge script would block Redis for others.
const REFRESH_CHUNK: usize = 512;

/// A command not answered within this fails as unavailable instead of
/// holding a gRPC call (or the sweeper) forever.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts (with exponential back-off from 100 ms) to connect at start-up
/// and after a lost connection, before a call fails as unavailable.
const CONNECT_RETRIES: usize = 4;

/// Replaces list `key` with `args[first..]`. Pushes in chunks because Lua's
/// `unpack` is limited to a few thousand values.
macro_rules! replace_list_lua {
    () => {
        r#"
local function replace_list(key, args, first)
  redis.call('DEL', key)
  local n = #args
  local i = first
  while i <= n do
    local j = math.min(i + 999, n)
    redis.call('RPUSH', key, unpack(args, i, j))
    i = j + 1
  end
end
"#
    };
}

/// KEYS: conn, conns, rooms, expiry. ARGV: conn id, user, gateway,
/// expiry (µs), rooms... Returns -1 if the id is another user's, 1 if the
/// user came online, else 0.
const ADD_LUA: &str = concat!(
    replace_list_lua!(),
    r#"
local owner = redis.call('HGET', KEYS[1], 'user')
if owner and owner ~= ARGV[2] then
  return -1
end
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'gateway', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
replace_list(KEYS[3], ARGV, 5)
local new = redis.call('SADD', KEYS[2], ARGV[1]) == 1
if new and redis.call('SCARD', KEYS[2]) == 1 then
  return 1
end
return 0
"#
);

/// KEYS: expiry, conn keys... ARGV: gateway, expiry (µs), conn ids...
/// Returns the 1-based positions of the ids not registered on the gateway.
const REFRESH_LUA: &str = r#"
local unknown = {}
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'gateway') == ARGV[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i + 1])
  else
    unknown[#unknown + 1] = i - 1
  end
end
return unknown
"#;

/// KEYS: conn, conns, rooms, expiry, last_seen. ARGV: conn id, user, now
/// (ns, recorded as last seen), and a deadline (µs) or '' for none.
///
/// Removes the connection if it is the user's and, with a deadline, still
/// expired by then (a heartbeat since the sweeper listed it wins). Returns
/// nil if nothing was removed, else `{went_offline, rooms}`. An expiry
/// entry whose connection key is gone is dropped: a live connection always
/// has both, written by one script.
const REMOVE_LUA: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'user')
if not owner then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return false
end
if owner ~= ARGV[2] then
  return false
end
if ARGV[4] ~= '' then
  local score = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if score and tonumber(score) > tonumber(ARGV[4]) then
    return false
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
local rooms = redis.call('LRANGE', KEYS[3], 0, -1)
if redis.call('SCARD', KEYS[2]) > 0 then
  return {0, rooms}
end
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3])
redis.call('DEL', KEYS[3])
return {1, rooms}
"#;

/// KEYS: conns of each user..., last_seen. ARGV: user ids. Returns per
/// user `+` (online), `` (never seen) or last seen (ns).
const PRESENCE_LUA: &str = r#"
local n = #ARGV
local out = {}
for i = 1, n do
  if redis.call('SCARD', KEYS[i]) > 0 then
    out[i] = '+'
  else
    out[i] = redis.call('HGET', KEYS[n + 1], ARGV[i]) or ''
  end
end
return out
"#;

/// KEYS: expiry. ARGV: the connection key prefix. Returns `user, gateway`
/// pairs, flat, of every registered connection: one consistent snapshot.
const ONLINE_LUA: &str = r#"
local out = {}
for _, c in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. c, 'user', 'gateway')
  if f[1] and f[2] then
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  end
end
return out
"#;

/// KEYS: conns, notifications. ARGV: JSON, capacity. Stores the
/// notification as delivered iff the user is online at this instant; past
/// capacity drops the oldest delivered entry, else the oldest pending one.
/// Returns `{delivered, pending dropped}`.
const RECORD_LUA: &str = r#"
local delivered = redis.call('SCARD', KEYS[1]) > 0
local dropped = 0
local cap = tonumber(ARGV[2])
while redis.call('LLEN', KEYS[2]) >= cap do
  local victim = nil
  for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if string.sub(v, 1, 1) == 'd' then
      victim = v
      break
    end
  end
  if victim then
    redis.call('LREM', KEYS[2], 1, victim)
  else
    redis.call('LPOP', KEYS[2])
    dropped = dropped + 1
  end
end
local mark = 'p'
if delivered then mark = 'd' end
redis.call('RPUSH', KEYS[2], mark .. ARGV[1])
if delivered then return {1, dropped} end
return {0, dropped}
"#;

/// KEYS: notifications. Marks every pending entry delivered and returns
/// them (JSON), oldest first: concurrent callers each get a disjoint part.
const TAKE_LUA: &str = r#"
local out = {}
for i, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.sub(v, 1, 1) == 'p' then
    local body = string.sub(v, 2)
    redis.call('LSET', KEYS[1], i - 1, 'd' .. body)
    out[#out + 1] = body
  end
end
return out
"#;

struct Scripts {
    add: Script,
    refresh: Script,
    remove: Script,
    presence: Script,
    online: Script,
    record: Script,
    take: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            add: Script::new(ADD_LUA),
            refresh: Script::new(REFRESH_LUA),
            remove: Script::new(REMOVE_LUA),
            presence: Script::new(PRESENCE_LUA),
            online: Script::new(ONLINE_LUA),
            record: Script::new(RECORD_LUA),
            take: Script::new(TAKE_LUA),
        }
    }
}

/// The key names, all under one prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn conn(&self, connection_id: &str) -> String {
        format!("{}{}", self.conn_prefix(), connection_id)
    }
    fn conn_prefix(&self) -> String {
        format!("{}presence:conn:", self.prefix)
    }
    fn expiry(&self) -> String {
        format!("{}presence:expiry", self.prefix)
    }
    fn conns(&self, user_id: &str) -> String {
        format!("{}presence:conns:{user_id}", self.prefix)
    }
    fn rooms(&self, user_id: &str) -> String {
        format!("{}presence:rooms:{user_id}", self.prefix)
    }
    fn last_seen(&self) -> String {
        format!("{}presence:last_seen", self.prefix)
    }
    fn notifications(&self, user_id: &str) -> String {
        format!("{}presence:notifications:{user_id}", self.prefix)
    }
    fn event(&self, event_id: &str) -> String {
        format!("{}presence:event:{event_id}", self.prefix)
    }
}

/// The presence store of replicas sharing one Redis server.
pub struct RedisStore {
    /// Reconnects by itself after a lost connection; cloned per call (a
    /// handle onto one multiplexed connection).
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    server: String,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`)
    /// and keeps every key under `prefix`. Fails as unavailable if it cannot
    /// connect after a few attempts, so a misconfigured URL shows at start-up.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<RedisStore, StoreError> {
        let info = ::redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(unavailable)?
            .set_tcp_settings(chat_common::pubsub_redis::tcp_settings());
        let client = ::redis::Client::open(info).map_err(unavailable)?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(CONNECT_RETRIES);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            keys: Keys {
                prefix: prefix.into(),
            },
            scripts: Scripts::new(),
            server,
        })
    }

    /// The server's address (`host:port`), without credentials, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs the removal script; `deadline` makes it a sweep that spares a
    /// connection refreshed meanwhile.
    async fn remove(
        &self,
        user_id: &str,
        connection_id: &str,
        now: DateTime<Utc>,
        deadline: Option<i64>,
    ) -> Result<Option<(bool, Vec<String>)>, StoreError> {
        let removed: Option<(i64, Vec<String>)> = self
            .scripts
            .remove
            .key(self.keys.conn(connection_id))
            .key(self.keys.conns(user_id))
            .key(self.keys.rooms(user_id))
            .key(self.keys.expiry())
            .key(self.keys.last_seen())
            .arg(connection_id)
            .arg(user_id)
            .arg(nanos(now)?)
            .arg(deadline.map(|d| d.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(removed.map(|(offline, rooms)| (offline == 1, rooms)))
    }

    /// One batch of a sweep: the expired connections listed, then each
    /// removed by the removal script (which re-checks, atomically, that it is
    /// still registered and still expired).
    async fn sweep_batch(
        &self,
        now: DateTime<Utc>,
        deadline: i64,
        removals: &mut Vec<Removal>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let due: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.expiry())
            .arg("-inf")
            .arg(deadline)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut owners = ::redis::pipe();
        for id in &due {
            owners.hget(self.keys.conn(id), "user");
        }
        let owners: Vec<Option<String>> =
            owners.query_async(&mut conn).await.map_err(unavailable)?;
        for (id, owner) in due.iter().zip(owners) {
            // An unknown owner still runs the script: it drops the stale
            // expiry entry.
            let owner = owner.unwrap_or_default();
            let Some((went_offline, rooms)) = self.remove(&owner, id, now, Some(deadline)).await?
            else {
                continue;
            };
            let (Ok(connection_id), Ok(user_id)) = (
                ConnectionId::parse(id.as_str()),
                UserId::parse(owner.as_str()),
            ) else {
                tracing::warn!(connection_id = %id, "expired connection with a malformed id");
                continue;
            };
            removals.push(Removal {
                connection_id,
                user_id,
                went_offline,
                last_seen: went_offline.then_some(now),
                room_ids: parse_rooms(rooms),
            });
        }
        Ok(due.len())
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        ::redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn connection_count(&self) -> Result<u64, StoreError> {
        // One expiry entry per connection: O(1), unlike counting the keys.
        ::redis::cmd("ZCARD")
            .arg(self.keys.expiry())
            .query_async::<u64>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn add_connection(
        &self,
        connection: Connection,
        room_ids: Vec<RoomId>,
    ) -> Result<Added, StoreError> {
        let (id, user) = (connection.id.as_str(), connection.user_id.as_str());
        let mut call = self.scripts.add.prepare_invoke();
        call.key(self.keys.conn(id))
            .key(self.keys.conns(user))
            .key(self.keys.rooms(user))
            .key(self.keys.expiry())
            .arg(id)
            .arg(user)
            .arg(connection.gateway_id.as_str())
            .arg(connection.expires_at.timestamp_micros());
        for room in &room_ids {
            call.arg(room.as_str());
        }
        let outcome: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match outcome {
            -1 => Err(StoreError::ConnectionTaken(connection.id)),
            outcome => Ok(Added {
                came_online: outcome == 1,
            }),
        }
    }

    async fn refresh(
        &self,
        gateway_id: &GatewayId,
        connection_ids: &[ConnectionId],
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let mut unknown = Vec::new();
        let mut conn = self.conn();
        for chunk in connection_ids.chunks(REFRESH_CHUNK) {
            let mut call = self.scripts.refresh.prepare_invoke();
            call.key(self.keys.expiry())
                .arg(gateway_id.as_str())
                .arg(expires_at.timestamp_micros());
            for id in chunk {
                call.key(self.keys.conn(id.as_str())).arg(id.as_str());
            }
            let positions: Vec<usize> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            unknown.extend(
                positions
                    .into_iter()
                    .filter_map(|p| p.checked_sub(1).and_then(|i| chunk.get(i)))
                    .cloned(),
            );
        }
        Ok(unknown)
    }

    async fn remove_connection(
        &self,
        user_id: &UserId,
        connection_id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Removal>, StoreError> {
        let removed = self
            .remove(user_id.as_str(), connection_id.as_str(), now, None)
            .await?;
        Ok(removed.map(|(went_offline, rooms)| Removal {
            connection_id: connection_id.clone(),
            user_id: user_id.clone(),
            went_offline,
            last_seen: went_offline.then_some(now),
            room_ids: parse_rooms(rooms),
        }))
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<Removal>, StoreError> {
        let deadline = now.timestamp_micros();
        let mut removals = Vec::new();
        for _ in 0..MAX_SWEEP_BATCHES {
            match self.sweep_batch(now, deadline, &mut removals).await {
                Ok(listed) if listed < SWEEP_BATCH => break,
                Ok(_) => {}
                // What was removed must still be reported, or its offline
                // event would never be published; the rest waits for the
                // next sweep.
                Err(error) if !removals.is_empty() => {
                    tracing::warn!(%error, removed = removals.len(), "sweep interrupted");
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(removals)
    }

    async fn presence(&self, user_ids: &[UserId]) -> Result<Vec<Presence>, StoreError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.scripts.presence.prepare_invoke();
        for user in user_ids {
            call.key(self.keys.conns(user.as_str())).arg(user.as_str());
        }
        call.key(self.keys.last_seen());
        let states: Vec<String> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if states.len() != user_ids.len() {
            return Err(StoreError::Unavailable(format!(
                "presence script answered {} users of {}",
                states.len(),
                user_ids.len()
            )));
        }
        Ok(user_ids
            .iter()
            .zip(states)
            .map(|(user_id, state)| match state.as_str() {
                "+" => Presence::online(user_id.clone()),
                seen => Presence::offline(user_id.clone(), parse_nanos(seen)),
            })
            .collect())
    }

    async fn set_rooms(&self, user_id: &UserId, room_ids: Vec<RoomId>) -> Result<(), StoreError> {
        let key = self.keys.rooms(user_id.as_str());
        let mut pipe = ::redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !room_ids.is_empty() {
            let rooms: Vec<&str> = room_ids.iter().map(RoomId::as_str).collect();
            pipe.rpush(&key, rooms).ignore();
        }
        pipe.exec_async(&mut self.conn()).await.map_err(unavailable)
    }

    async fn rooms(&self, user_id: &UserId) -> Result<Vec<RoomId>, StoreError> {
        let rooms: Vec<String> = ::redis::cmd("LRANGE")
            .arg(self.keys.rooms(user_id.as_str()))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(parse_rooms(rooms))
    }

    async fn online(&self) -> Result<Vec<OnlineUser>, StoreError> {
        let pairs: Vec<String> = self
            .scripts
            .online
            .key(self.keys.expiry())
            .arg(self.keys.conn_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        // One (user, gateway) pair per connection.
        let mut users: BTreeMap<String, (u32, BTreeMap<String, u32>)> = BTreeMap::new();
        for pair in pairs.chunks_exact(2) {
            let (user, gateway) = (&pair[0], &pair[1]);
            let entry = users.entry(user.clone()).or_default();
            entry.0 = entry.0.saturating_add(1);
            let on_gateway = entry.1.entry(gateway.clone()).or_default();
            *on_gateway = on_gateway.saturating_add(1);
        }
        Ok(users
            .into_iter()
            .filter_map(|(user, (connections, gateways))| {
                Some(OnlineUser {
                    user_id: UserId::parse(user).ok()?,
                    gateways: gateways
                        .into_iter()
                        .filter_map(|(g, n)| Some((GatewayId::parse(g).ok()?, n)))
                        .collect(),
                    connections,
                })
            })
            .collect())
    }

    async fn record_notification(
        &self,
        notification: Notification,
    ) -> Result<Recorded, StoreError> {
        let user = notification.user_id.as_str();
        let json = serde_json::to_string(&StoredNotification::from(&notification))
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a notification: {e}")))?;
        let (delivered, dropped): (i64, i64) = self
            .scripts
            .record
            .key(self.keys.conns(user))
            .key(self.keys.notifications(user))
            .arg(json)
            .arg(MAX_NOTIFICATIONS_PER_USER)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if dropped > 0 {
            tracing::warn!(user_id = %user, dropped, "too many pending notifications, dropped the oldest");
        }
        Ok(if delivered == 1 {
            Recorded::Live
        } else {
            Recorded::Pending
        })
    }

    async fn take_pending(&self, user_id: &UserId) -> Result<Vec<Notification>, StoreError> {
        let taken: Vec<String> = self
            .scripts
            .take
            .key(self.keys.notifications(user_id.as_str()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(taken
            .iter()
            .filter_map(|json| decode_notification(json))
            .collect())
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        include_delivered: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let entries: Vec<String> = ::redis::cmd("LRANGE")
            .arg(self.keys.notifications(user_id.as_str()))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(entries
            .iter()
            .filter_map(|entry| match entry.split_at_checked(1) {
                Some(("p", json)) => decode_notification(json),
                Some(("d", json)) if include_delivered => decode_notification(json),
                _ => None,
            })
            .collect())
    }

    async fn claim_event(&self, event_id: &str) -> Result<bool, StoreError> {
        // `SET NX` answers OK to exactly one claimant across all replicas.
        let set: Option<String> = ::redis::cmd("SET")
            .arg(self.keys.event(event_id))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(EVENT_TTL.as_secs())
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn release_event(&self, event_id: &str) -> Result<(), StoreError> {
        ::redis::cmd("DEL")
            .arg(self.keys.event(event_id))
            .exec_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

/// Last seen is kept to the nanosecond, so it reads back exactly as the
/// removal reported it.
fn nanos(time: DateTime<Utc>) -> Result<i64, StoreError> {
    time.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Unavailable(format!("time out of range: {time}")))
}

fn parse_nanos(value: &str) -> Option<DateTime<Utc>> {
    value
        .parse::<i64>()
        .ok()
        .map(DateTime::from_timestamp_nanos)
}

fn parse_rooms(rooms: Vec<String>) -> Vec<RoomId> {
    rooms
        .into_iter()
        .filter_map(|r| RoomId::parse(r).ok())
        .collect()
}

/// A notification as stored: JSON, readable with `redis-cli`.
#[derive(Serialize, Deserialize)]
struct StoredNotification {
    id: Uuid,
    user_id: String,
    kind: StoredKind,
    room: String,
    seq: i64,
    from: String,
    from_name: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredKind {
    Mention,
    Dm,
}

impl From<&Notification> for StoredNotification {
    fn from(n: &Notification) -> StoredNotification {
        StoredNotification {
            id: n.id,
            user_id: n.user_id.to_string(),
            kind: match n.kind {
                NotificationKind::Mention => StoredKind::Mention,
                NotificationKind::Dm => StoredKind::Dm,
            },
            room: n.room.to_string(),
            seq: n.seq,
            from: n.from.clone(),
            from_name: n.from_name.clone(),
            created_at: n.created_at,
        }
    }
}

/// `None` (logged) for an entry this version cannot read, so one bad entry
/// does not hide a user's other notifications.
fn decode_notification(json: &str) -> Option<Notification> {
    let decoded = serde_json::from_str::<StoredNotification>(json)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            Ok(Notification {
                id: s.id,
                user_id: UserId::parse(s.user_id).map_err(|e| e.to_string())?,
                kind: match s.kind {
                    StoredKind::Mention => NotificationKind::Mention,
                    StoredKind::Dm => NotificationKind::Dm,
                },
                room: RoomId::parse(s.room).map_err(|e| e.to_string())?,
                seq: s.seq,
                from: s.from,
                from_name: s.from_name,
                created_at: s.created_at,
            })
        });
    match decoded {
        Ok(notification) => Some(notification),
        Err(error) => {
            tracing::warn!(%error, "unreadable stored notification skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_unavailable() {
        let connected = RedisStore::connect("not a url", "chat:").await;
        assert!(matches!(connected, Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn keys_of_different_kinds_never_collide() {
        let keys = Keys {
            prefix: "chat:".into(),
        };
        assert_eq!(keys.conn("c1"), "chat:presence:conn:c1");
        assert_eq!(keys.conns("u1"), "chat:presence:conns:u1");
        // An id cannot turn one kind's key into another's: the kind comes
        // before the id and ends with `:`.
        assert_ne!(keys.conn("s:u1"), keys.conns("u1"));
    }

    #[test]
    fn notifications_round_trip_exactly() {
        let n = Notification {
            id: Uuid::now_v7(),
            user_id: UserId::parse("u").expect("id"),
            kind: NotificationKind::Dm,
            room: RoomId::parse("r").expect("id"),
            seq: 7,
            from: "a".into(),
            from_name: "A".into(),
            created_at: Utc::now(),
        };
        let json = serde_json::to_string(&StoredNotification::from(&n)).expect("encode");
        assert_eq!(decode_notification(&json), Some(n));
        assert_eq!(decode_notification("{"), None);
    }
}
