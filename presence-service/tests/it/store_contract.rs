//! The contract every `PresenceStore` backend passes. Ids are unique per
//! run, so a shared backend (a Redis server) can run it too: a new backend
//! adds one `#[tokio::test]` calling [`contract`].

use std::sync::Arc;

use chat_presence_service::domain::{
    ConnectionId, GatewayId, Notification, NotificationKind, RoomId, Status, UserId,
};
use chat_presence_service::store::{
    Connection, MemoryStore, OnlineUser, PresenceStore, Recorded, StoreError,
};
use chrono::{TimeDelta, Utc};

#[tokio::test]
async fn the_memory_store_passes_the_contract() -> anyhow::Result<()> {
    contract(Arc::new(MemoryStore::new())).await
}

#[tokio::test]
async fn the_memory_store_forgets_old_event_ids() -> anyhow::Result<()> {
    let store = MemoryStore::with_event_capacity(2);
    for id in ["a", "b", "c"] {
        assert!(store.claim_event(id).await?);
    }
    assert!(!store.claim_event("c").await?);
    assert!(store.claim_event("a").await?, "the oldest id is forgotten");
    Ok(())
}

pub async fn contract(store: Arc<dyn PresenceStore>) -> anyhow::Result<()> {
    connections_pair_online_and_offline(store.as_ref()).await?;
    refresh_and_sweep(store.as_ref()).await?;
    notifications_are_taken_once(store.as_ref()).await?;
    events_are_claimed_once(store.as_ref()).await?;
    online_counts_connections_per_gateway(store.as_ref()).await?;
    Ok(())
}

/// Ids unique to one run of the suite.
struct Ids(String);

impl Ids {
    fn new() -> Ids {
        Ids(uuid::Uuid::now_v7().to_string())
    }
    fn user(&self, name: &str) -> anyhow::Result<UserId> {
        Ok(UserId::parse(format!("{name}-{}", self.0))?)
    }
    fn conn(&self, name: &str) -> anyhow::Result<ConnectionId> {
        Ok(ConnectionId::parse(format!("{name}-{}", self.0))?)
    }
    fn gateway(&self, name: &str) -> anyhow::Result<GatewayId> {
        Ok(GatewayId::parse(format!("{name}-{}", self.0))?)
    }
    fn room(&self, name: &str) -> anyhow::Result<RoomId> {
        Ok(RoomId::parse(format!("{name}-{}", self.0))?)
    }
}

fn later(seconds: i64) -> chrono::DateTime<Utc> {
    Utc::now() + TimeDelta::seconds(seconds)
}

async fn connections_pair_online_and_offline(store: &dyn PresenceStore) -> anyhow::Result<()> {
    let ids = Ids::new();
    let (alice, c1, c2, gw) = (
        ids.user("alice")?,
        ids.conn("c1")?,
        ids.conn("c2")?,
        ids.gateway("gw")?,
    );
    let connection = |id: &ConnectionId| Connection {
        id: id.clone(),
        user_id: alice.clone(),
        gateway_id: gw.clone(),
        expires_at: later(30),
    };
    let rooms = vec![ids.room("r1")?];

    assert!(
        store
            .add_connection(connection(&c1), rooms.clone())
            .await?
            .came_online
    );
    assert!(
        !store
            .add_connection(connection(&c2), rooms.clone())
            .await?
            .came_online
    );
    // Re-registering a known connection is not coming online.
    assert!(
        !store
            .add_connection(connection(&c1), rooms.clone())
            .await?
            .came_online
    );
    let taken = store
        .add_connection(
            Connection {
                user_id: ids.user("mallory")?,
                ..connection(&c1)
            },
            vec![],
        )
        .await;
    assert!(matches!(taken, Err(StoreError::ConnectionTaken(ref id)) if *id == c1));

    let online = store.online().await?;
    let mine: Vec<&OnlineUser> = online.iter().filter(|u| u.user_id == alice).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].connections, 2);
    assert_eq!(mine[0].gateways, [(gw.clone(), 2)]);
    assert_eq!(store.rooms(&alice).await?, rooms);

    // Only the owner removes a connection.
    assert_eq!(
        store
            .remove_connection(&ids.user("mallory")?, &c1, Utc::now())
            .await?,
        None
    );
    let first = store
        .remove_connection(&alice, &c1, Utc::now())
        .await?
        .ok_or_else(|| anyhow::anyhow!("c1 not removed"))?;
    assert!(!first.went_offline);
    assert_eq!(first.last_seen, None);
    assert_eq!(
        store.presence(std::slice::from_ref(&alice)).await?[0].status,
        Status::Online
    );

    let now = Utc::now();
    let last = store
        .remove_connection(&alice, &c2, now)
        .await?
        .ok_or_else(|| anyhow::anyhow!("c2 not removed"))?;
    assert!(last.went_offline);
    assert_eq!(last.last_seen, Some(now));
    assert_eq!(last.room_ids, rooms);
    assert_eq!(store.remove_connection(&alice, &c2, now).await?, None);

    let unknown = ids.user("never")?;
    let presence = store.presence(&[alice.clone(), unknown.clone()]).await?;
    assert_eq!(presence[0].status, Status::Offline);
    assert_eq!(presence[0].last_seen, Some(now));
    assert_eq!(presence[1].user_id, unknown);
    assert_eq!(presence[1].status, Status::Offline);
    assert_eq!(presence[1].last_seen, None);
    assert!(store.online().await?.iter().all(|u| u.user_id != alice));
    Ok(())
}

async fn refresh_and_sweep(store: &dyn PresenceStore) -> anyhow::Result<()> {
    let ids = Ids::new();
    let (bob, gw, other_gw) = (ids.user("bob")?, ids.gateway("gw")?, ids.gateway("gw2")?);
    let (kept, expiring, ghost) = (ids.conn("kept")?, ids.conn("expiring")?, ids.conn("ghost")?);
    let room = ids.room("r")?;
    let soon = Utc::now() + TimeDelta::milliseconds(10);
    for id in [&kept, &expiring] {
        let connection = Connection {
            id: id.clone(),
            user_id: bob.clone(),
            gateway_id: gw.clone(),
            expires_at: soon,
        };
        store.add_connection(connection, vec![room.clone()]).await?;
    }
    let unknown = store
        .refresh(&gw, &[ghost.clone(), kept.clone()], later(30))
        .await?;
    assert_eq!(unknown, std::slice::from_ref(&ghost));
    assert_eq!(
        store
            .refresh(&other_gw, std::slice::from_ref(&kept), later(30))
            .await?,
        std::slice::from_ref(&kept)
    );

    let now = soon + TimeDelta::milliseconds(1);
    let swept = store.sweep(now).await?;
    let mine: Vec<_> = swept.iter().filter(|r| r.user_id == bob).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].connection_id, expiring);
    assert!(!mine[0].went_offline);

    // Expiring the last connection is going offline.
    store
        .refresh(&gw, std::slice::from_ref(&kept), soon)
        .await?;
    let swept = store.sweep(now).await?;
    let mine: Vec<_> = swept.iter().filter(|r| r.user_id == bob).collect();
    assert_eq!(mine.len(), 1);
    assert!(mine[0].went_offline);
    assert_eq!(mine[0].last_seen, Some(now));
    assert_eq!(mine[0].room_ids, [room]);
    assert_eq!(
        store
            .refresh(&gw, std::slice::from_ref(&kept), later(30))
            .await?,
        [kept]
    );
    assert_eq!(store.presence(&[bob]).await?[0].last_seen, Some(now));
    Ok(())
}

async fn notifications_are_taken_once(store: &dyn PresenceStore) -> anyhow::Result<()> {
    let ids = Ids::new();
    let carol = ids.user("carol")?;
    let notification = |seq: i64| -> anyhow::Result<Notification> {
        Ok(Notification {
            id: uuid::Uuid::now_v7(),
            user_id: carol.clone(),
            kind: NotificationKind::Mention,
            room: ids.room("r")?,
            seq,
            from: "dave".into(),
            from_name: "Dave".into(),
            created_at: Utc::now(),
        })
    };
    let (n1, n2, n3) = (notification(1)?, notification(2)?, notification(3)?);
    assert_eq!(
        store.record_notification(n1.clone()).await?,
        Recorded::Pending
    );
    assert_eq!(
        store.record_notification(n2.clone()).await?,
        Recorded::Pending
    );
    assert_eq!(
        store.notifications(&carol, false).await?,
        [n1.clone(), n2.clone()]
    );

    assert_eq!(store.take_pending(&carol).await?, [n1.clone(), n2.clone()]);
    assert!(store.take_pending(&carol).await?.is_empty());
    assert!(store.notifications(&carol, false).await?.is_empty());

    let connection = Connection {
        id: ids.conn("c")?,
        user_id: carol.clone(),
        gateway_id: ids.gateway("gw")?,
        expires_at: later(30),
    };
    store.add_connection(connection, vec![]).await?;
    assert_eq!(store.record_notification(n3.clone()).await?, Recorded::Live);
    assert!(store.take_pending(&carol).await?.is_empty());
    assert_eq!(store.notifications(&carol, true).await?, [n1, n2, n3]);
    Ok(())
}

async fn events_are_claimed_once(store: &dyn PresenceStore) -> anyhow::Result<()> {
    let id = uuid::Uuid::now_v7().to_string();
    assert!(store.claim_event(&id).await?);
    assert!(!store.claim_event(&id).await?);
    store.release_event(&id).await?;
    assert!(store.claim_event(&id).await?);
    assert!(!store.claim_event(&id).await?);
    Ok(())
}

async fn online_counts_connections_per_gateway(store: &dyn PresenceStore) -> anyhow::Result<()> {
    let ids = Ids::new();
    let bob = ids.user("bob")?;
    let (gw_a, gw_b) = (ids.gateway("a")?, ids.gateway("b")?);
    for (conn, gateway) in [("c1", &gw_b), ("c2", &gw_a), ("c3", &gw_b)] {
        let connection = Connection {
            id: ids.conn(conn)?,
            user_id: bob.clone(),
            gateway_id: gateway.clone(),
            expires_at: later(30),
        };
        store.add_connection(connection, vec![]).await?;
    }
    let online = store.online().await?;
    let bobs: Vec<&OnlineUser> = online.iter().filter(|u| u.user_id == bob).collect();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].gateways, [(gw_a, 1), (gw_b.clone(), 2)]);
    assert_eq!(bobs[0].connections, 3);
    for conn in ["c1", "c2", "c3"] {
        store
            .remove_connection(&bob, &ids.conn(conn)?, Utc::now())
            .await?;
    }
    assert!(!store.online().await?.iter().any(|u| u.user_id == bob));
    Ok(())
}
