//! The Redis store: the contract suite, and what only a store shared by
//! replicas can show: replicas racing on the same users agree on every
//! transition.
//!
//! Each test keeps its keys under its own prefix and deletes them when it
//! passes. Redis is `REDIS_URL` or `redis://127.0.0.1:6379`; when it is not
//! reachable the tests are skipped, loudly, unless `CI` is set, where they
//! fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_common::Backends;
use chat_common::pubsub::channels;
use chat_presence_service::domain::{
    ConnectionId, GatewayId, Notification, NotificationKind, RoomId, Status, UserId,
};
use chat_presence_service::store::{Connection, PresenceStore, RedisStore};
use chat_proto::events::v1 as ev;
use chat_proto::presence::v1 as pb;
use chrono::{TimeDelta, Utc};

use crate::helpers::TestServer;
use crate::store_contract::contract;

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const START_REDIS: &str = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
    --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log";

/// One test's corner of the Redis server.
struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    /// `None` (after saying so on stderr) when Redis is not reachable and
    /// `CI` is unset; an error when it is set.
    async fn new(test: &str) -> anyhow::Result<Option<TestRedis>> {
        let url = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if let Err(error) = ping(&url).await {
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                bail!(
                    "Redis at {url} is not reachable ({error:#}) and CI is set, so the Redis \
                     store tests must run. Start it with:\n  {START_REDIS}\nor point REDIS_URL \
                     at a running one."
                );
            }
            eprintln!(
                "SKIP {test}: Redis not reachable at {url} ({error:#}) \
                 (set CI=1 to make this a failure)"
            );
            return Ok(None);
        }
        Ok(Some(TestRedis {
            url,
            prefix: format!("test:{}:", uuid::Uuid::now_v7()),
        }))
    }

    /// A store on this test's prefix: each call is another replica.
    async fn store(&self) -> anyhow::Result<RedisStore> {
        Ok(RedisStore::connect(&self.url, self.prefix.clone()).await?)
    }

    /// Deletes every key of this test.
    async fn clean_up(self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cursor = 0_u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).exec_async(&mut conn).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

async fn ping(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let pong: String = tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async(&mut conn).await
    })
    .await
    .context("timed out")??;
    anyhow::ensure!(pong == "PONG", "PING answered {pong:?}");
    Ok(())
}

fn user(name: &str) -> anyhow::Result<UserId> {
    Ok(UserId::parse(name)?)
}

fn conn(name: &str) -> anyhow::Result<ConnectionId> {
    Ok(ConnectionId::parse(name)?)
}

fn connection(id: &str, user_id: &str, expires_in_ms: i64) -> anyhow::Result<Connection> {
    Ok(Connection {
        id: conn(id)?,
        user_id: user(user_id)?,
        gateway_id: GatewayId::parse("gw-1")?,
        expires_at: Utc::now() + TimeDelta::milliseconds(expires_in_ms),
    })
}

#[tokio::test]
async fn the_redis_store_passes_the_contract() -> anyhow::Result<()> {
    let Some(redis) = TestRedis::new("the_redis_store_passes_the_contract").await? else {
        return Ok(());
    };
    contract(Arc::new(redis.store().await?)).await?;
    redis.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_together_remove_each_connection_once() -> anyhow::Result<()> {
    let Some(redis) =
        TestRedis::new("two_replicas_sweeping_together_remove_each_connection_once").await?
    else {
        return Ok(());
    };
    let (a, b) = (redis.store().await?, redis.store().await?);
    const USERS: usize = 40;
    const CONNECTIONS: usize = 3;
    for round in 0..5 {
        // Already expired, spread over both replicas.
        for u in 0..USERS {
            for c in 0..CONNECTIONS {
                let store = if c % 2 == 0 { &a } else { &b };
                let id = format!("c{round}-{u}-{c}");
                let room = RoomId::parse(format!("room-{u}"))?;
                store
                    .add_connection(connection(&id, &format!("u{round}-{u}"), -1)?, vec![room])
                    .await?;
            }
        }
        let now = Utc::now();
        let (swept_a, swept_b) = tokio::join!(a.sweep(now), b.sweep(now));
        let removals: Vec<_> = swept_a?.into_iter().chain(swept_b?).collect();

        let removed: HashSet<&ConnectionId> = removals.iter().map(|r| &r.connection_id).collect();
        assert_eq!(
            removals.len(),
            USERS * CONNECTIONS,
            "round {round}: each removed once"
        );
        assert_eq!(removed.len(), USERS * CONNECTIONS);
        let mut offline: HashMap<&UserId, usize> = HashMap::new();
        for removal in removals.iter().filter(|r| r.went_offline) {
            *offline.entry(&removal.user_id).or_default() += 1;
            assert_eq!(removal.last_seen, Some(now));
            let u = removal
                .user_id
                .as_str()
                .rsplit('-')
                .next()
                .context("user id")?;
            assert_eq!(removal.room_ids, [RoomId::parse(format!("room-{u}"))?]);
        }
        assert_eq!(
            offline.len(),
            USERS,
            "round {round}: every user went offline"
        );
        assert!(
            offline.values().all(|&n| n == 1),
            "round {round}: an offline transition reported twice: {offline:?}"
        );
        assert!(
            removals
                .iter()
                .filter(|r| !r.went_offline)
                .all(|r| r.last_seen.is_none())
        );

        let users: Vec<UserId> = (0..USERS)
            .map(|u| user(&format!("u{round}-{u}")))
            .collect::<anyhow::Result<_>>()?;
        for presence in b.presence(&users).await? {
            assert_eq!(presence.status, Status::Offline);
            assert_eq!(presence.last_seen, Some(now));
        }
        assert!(a.sweep(now).await?.is_empty() && b.sweep(now).await?.is_empty());
    }
    assert!(a.online().await?.is_empty());
    redis.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_on_a_user_agree_on_every_transition() -> anyhow::Result<()> {
    let Some(redis) = TestRedis::new("replicas_racing_on_a_user_agree_on_every_transition").await?
    else {
        return Ok(());
    };
    let (a, b) = (redis.store().await?, redis.store().await?);
    for i in 0..30 {
        let name = format!("u{i}");
        let (first, second) = tokio::join!(
            a.add_connection(connection(&format!("a{i}"), &name, 30_000)?, vec![]),
            b.add_connection(connection(&format!("b{i}"), &name, 30_000)?, vec![]),
        );
        let came = [first?.came_online, second?.came_online];
        assert_eq!(
            came.iter().filter(|c| **c).count(),
            1,
            "{name} came online {came:?}"
        );

        let uid = user(&name)?;
        let now = Utc::now();
        let (ca, cb) = (conn(&format!("a{i}"))?, conn(&format!("b{i}"))?);
        let (first, second) = tokio::join!(
            a.remove_connection(&uid, &ca, now),
            b.remove_connection(&uid, &cb, now),
        );
        let went: Vec<bool> = [first?, second?]
            .into_iter()
            .map(|r| r.map(|r| r.went_offline))
            .collect::<Option<_>>()
            .context("a connection was not removed")?;
        assert_eq!(
            went.iter().filter(|w| **w).count(),
            1,
            "{name} went offline {went:?}"
        );
    }

    // Pending notifications taken by two replicas at once: each by one.
    let carol = user("carol")?;
    let mut recorded = Vec::new();
    for seq in 0..50 {
        let notification = Notification {
            id: uuid::Uuid::now_v7(),
            user_id: carol.clone(),
            kind: NotificationKind::Mention,
            room: RoomId::parse("r")?,
            seq,
            from: "dave".into(),
            from_name: "Dave".into(),
            created_at: Utc::now(),
        };
        a.record_notification(notification.clone()).await?;
        recorded.push(notification);
    }
    let (taken_a, taken_b) = tokio::join!(a.take_pending(&carol), b.take_pending(&carol));
    let mut taken: Vec<Notification> = taken_a?.into_iter().chain(taken_b?).collect();
    taken.sort_by_key(|n| n.seq);
    assert_eq!(taken, recorded);

    // An event claimed by two replicas at once is processed by one.
    for i in 0..30 {
        let id = format!("event-{i}-{}", uuid::Uuid::now_v7());
        let (first, second) = tokio::join!(a.claim_event(&id), b.claim_event(&id));
        assert!(first? ^ second?, "event {id} claimed by both or neither");
    }
    redis.clean_up().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrefreshed_connection_goes_offline_once_across_replicas() -> anyhow::Result<()> {
    let Some(redis) =
        TestRedis::new("an_unrefreshed_connection_goes_offline_once_across_replicas").await?
    else {
        return Ok(());
    };
    let ttl = Duration::from_millis(300);
    // Both replicas sweep often, so they race for the same expiry.
    let sweep = Duration::from_millis(10);
    // Replicas share pub/sub (as they would share Redis pub/sub), each with
    // its own bus consumer.
    let shared = Backends::in_process();
    let replica_backends = || Backends {
        pubsub: shared.pubsub.clone(),
        bus: Backends::in_process().bus,
        description: shared.description.clone(),
    };
    let a = TestServer::start_with_store(
        ttl,
        sweep,
        Arc::new(redis.store().await?),
        replica_backends(),
    )
    .await?;
    let b = TestServer::start_with_store(
        ttl,
        sweep,
        Arc::new(redis.store().await?),
        replica_backends(),
    )
    .await?;
    let mut events = a.subscribe(&[channels::PRESENCE]).await?;

    let before = Utc::now();
    assert!(a.connect("alice", "c1", "gw-1", &["r1"]).await?.came_online);
    let online = pb::UserPresence {
        user_id: "alice".into(),
        status: pb::Status::Online.into(),
        last_seen: None,
    };
    let (_, came) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(came.presence.as_ref(), Some(&online));
    assert_eq!(b.presence(&["alice"]).await?, [online]);

    // No heartbeat, no RemoveConnection: a sweeper notices.
    let (_, went) = events.next::<ev::PresenceChanged>().await?;
    let last_seen = went
        .presence
        .as_ref()
        .and_then(|p| p.last_seen)
        .context("offline without last_seen")?;
    let seen = chat_proto::from_timestamp(&last_seen).context("bad last_seen")?;
    assert!(
        seen >= before + TimeDelta::milliseconds(300),
        "expired early: {seen}"
    );
    let offline = pb::UserPresence {
        user_id: "alice".into(),
        status: pb::Status::Offline.into(),
        last_seen: Some(last_seen),
    };
    assert_eq!(
        went,
        ev::PresenceChanged {
            presence: Some(offline.clone()),
            room_ids: vec!["r1".into()],
        }
    );
    // Published once: neither replica's later sweeps repeat it.
    events.expect_silence(Duration::from_millis(500)).await?;

    for replica in [&a, &b] {
        assert_eq!(
            replica.presence(&["alice"]).await?,
            std::slice::from_ref(&offline)
        );
    }
    assert_eq!(b.heartbeat("gw-1", &["c1"]).await?, ["c1"]);
    a.stop().await?;
    b.stop().await?;
    redis.clean_up().await
}
