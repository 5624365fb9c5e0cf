//! Connections, presence, expiry, heartbeats, typing.

use std::time::Duration;

use chat_common::pubsub::channels;
use chat_proto::events::v1 as ev;
use chat_proto::presence::v1 as pb;
use chrono::Utc;

use crate::helpers::{TestServer, eventually, strings};

fn online(user_id: &str) -> pb::UserPresence {
    pb::UserPresence {
        user_id: user_id.into(),
        status: pb::Status::Online.into(),
        last_seen: None,
    }
}

fn offline(user_id: &str, last_seen: Option<prost_types::Timestamp>) -> pb::UserPresence {
    pb::UserPresence {
        user_id: user_id.into(),
        status: pb::Status::Offline.into(),
        last_seen,
    }
}

fn changed(presence: pb::UserPresence, room_ids: &[&str]) -> ev::PresenceChanged {
    ev::PresenceChanged {
        presence: Some(presence),
        room_ids: strings(room_ids),
    }
}

#[tokio::test]
async fn online_on_the_first_connection_offline_after_the_last() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut events = server.subscribe(&[channels::PRESENCE]).await?;

    let first = server.connect("alice", "c1", "gw-1", &["r1", "r2"]).await?;
    assert_eq!(
        first,
        pb::AddConnectionResponse {
            presence: Some(online("alice")),
            came_online: true,
            notifications: vec![],
        }
    );
    let (channel, event) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(channel, "presence");
    assert_eq!(event, changed(online("alice"), &["r1", "r2"]));

    let second = server.connect("alice", "c2", "gw-2", &["r1", "r2"]).await?;
    assert!(!second.came_online);
    assert_eq!(second.presence, Some(online("alice")));

    let removed = server.disconnect("alice", "c1").await?;
    assert_eq!(
        removed,
        pb::RemoveConnectionResponse {
            presence: Some(online("alice")),
            went_offline: false,
        }
    );
    assert_eq!(server.presence(&["alice"]).await?, [online("alice")]);

    let before = Utc::now();
    let last = server.disconnect("alice", "c2").await?;
    let after = Utc::now();
    assert!(last.went_offline);
    let last_seen = last
        .presence
        .as_ref()
        .and_then(|p| p.last_seen)
        .ok_or_else(|| anyhow::anyhow!("no last_seen"))?;
    let seen = chat_proto::from_timestamp(&last_seen).ok_or_else(|| anyhow::anyhow!("bad time"))?;
    assert!(
        before <= seen && seen <= after,
        "{before} <= {seen} <= {after}"
    );
    assert_eq!(last.presence, Some(offline("alice", Some(last_seen))));

    // The second connection and the first removal published nothing: the
    // next event is the offline one.
    let (_, event) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(
        event,
        changed(offline("alice", Some(last_seen)), &["r1", "r2"])
    );
    events.expect_silence(Duration::from_millis(100)).await?;

    assert_eq!(
        server.presence(&["alice"]).await?,
        [offline("alice", Some(last_seen))]
    );
    // Coming back is coming online again.
    assert!(
        server
            .connect("alice", "c3", "gw-1", &["r1"])
            .await?
            .came_online
    );
    let (_, event) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(event, changed(online("alice"), &["r1"]));
    Ok(())
}

#[tokio::test]
async fn set_rooms_changes_who_hears_of_presence() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut events = server.subscribe(&[channels::PRESENCE]).await?;
    server.connect("alice", "c1", "gw-1", &["r1"]).await?;
    server
        .client
        .clone()
        .set_rooms(pb::SetRoomsRequest {
            user_id: "alice".into(),
            room_ids: strings(&["r2", "r3"]),
        })
        .await?;
    server.disconnect("alice", "c1").await?;
    let (_, came) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(came.room_ids, ["r1"]);
    let (_, went) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(went.room_ids, ["r2", "r3"]);
    assert_eq!(
        went.presence.map(|p| p.status),
        Some(pb::Status::Offline.into())
    );
    Ok(())
}

#[tokio::test]
async fn get_presence_answers_in_request_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.connect("bob", "c1", "gw-1", &[]).await?;
    server.connect("carol", "c2", "gw-1", &[]).await?;
    let gone = server.disconnect("carol", "c2").await?;
    let carol_seen = gone.presence.and_then(|p| p.last_seen);
    assert!(carol_seen.is_some());

    let users = server.presence(&["zed", "bob", "carol", "bob"]).await?;
    assert_eq!(
        users,
        [
            offline("zed", None),
            online("bob"),
            offline("carol", carol_seen),
            online("bob"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn removing_an_unknown_or_foreign_connection_changes_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut events = server.subscribe(&[channels::PRESENCE]).await?;
    let unknown = server.disconnect("nobody", "c-none").await?;
    assert_eq!(
        unknown,
        pb::RemoveConnectionResponse {
            presence: Some(offline("nobody", None)),
            went_offline: false,
        }
    );

    server.connect("alice", "c1", "gw-1", &[]).await?;
    let _ = events.next::<ev::PresenceChanged>().await?;
    let foreign = server.disconnect("mallory", "c1").await?;
    assert!(!foreign.went_offline);
    assert_eq!(server.presence(&["alice"]).await?, [online("alice")]);
    events.expect_silence(Duration::from_millis(100)).await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_connection_goes_offline_as_if_removed() -> anyhow::Result<()> {
    let ttl = Duration::from_millis(300);
    let server = TestServer::start_with(ttl, Duration::from_millis(50)).await?;
    let mut events = server.subscribe(&[channels::PRESENCE]).await?;
    let started = tokio::time::Instant::now();
    let before = Utc::now();
    assert!(
        server
            .connect("alice", "c1", "gw-1", &["r1"])
            .await?
            .came_online
    );
    let (_, came) = events.next::<ev::PresenceChanged>().await?;
    assert_eq!(came, changed(online("alice"), &["r1"]));

    // Nobody calls RemoveConnection: the sweeper does it.
    let (_, went) = events.next::<ev::PresenceChanged>().await?;
    assert!(
        started.elapsed() >= ttl,
        "expired after {:?}",
        started.elapsed()
    );
    let last_seen = went
        .presence
        .as_ref()
        .and_then(|p| p.last_seen)
        .ok_or_else(|| anyhow::anyhow!("no last_seen"))?;
    let seen = chat_proto::from_timestamp(&last_seen).ok_or_else(|| anyhow::anyhow!("bad time"))?;
    assert!(seen >= before + chrono::TimeDelta::milliseconds(300));
    assert_eq!(went, changed(offline("alice", Some(last_seen)), &["r1"]));

    assert_eq!(
        server.presence(&["alice"]).await?,
        [offline("alice", Some(last_seen))]
    );
    assert_eq!(server.heartbeat("gw-1", &["c1"]).await?, ["c1"]);
    let online_users = server
        .client
        .clone()
        .list_online(pb::ListOnlineRequest {})
        .await?
        .into_inner();
    assert!(online_users.users.is_empty());
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_connections_alive_and_report_unknown_ones() -> anyhow::Result<()> {
    // A TTL well above the heartbeat period, so a loaded machine does not
    // make the test flaky.
    let ttl = Duration::from_millis(1000);
    let server = TestServer::start_with(ttl, Duration::from_millis(50)).await?;
    server.connect("alice", "kept", "gw-1", &[]).await?;
    server.connect("bob", "dropped", "gw-1", &[]).await?;

    assert_eq!(
        server.heartbeat("gw-1", &["kept", "ghost", ""]).await?,
        ["ghost", ""]
    );
    // Another gateway cannot keep this gateway's connection alive.
    assert_eq!(server.heartbeat("gw-2", &["kept"]).await?, ["kept"]);

    // Heartbeat `kept` only, until `dropped` has expired.
    let bob_offline = eventually(|| async {
        assert_eq!(
            server.heartbeat("gw-1", &["kept"]).await?,
            Vec::<String>::new()
        );
        let bob = server.presence(&["bob"]).await?;
        Ok((bob.first().map(|p| p.status) == Some(pb::Status::Offline.into())).then_some(()))
    })
    .await;
    bob_offline?;
    // And for longer than a TTL beyond that.
    let until = tokio::time::Instant::now() + ttl + Duration::from_millis(300);
    while tokio::time::Instant::now() < until {
        assert!(server.heartbeat("gw-1", &["kept"]).await?.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.presence(&["alice"]).await?, [online("alice")]);
    assert_eq!(
        server.heartbeat("gw-1", &["kept", "dropped"]).await?,
        ["dropped"]
    );
    Ok(())
}

fn on(gateway_id: &str, connections: u32) -> pb::GatewayConnections {
    pb::GatewayConnections {
        gateway_id: gateway_id.into(),
        connections,
    }
}

#[tokio::test]
async fn list_online_sorts_users_and_their_gateways() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.connect("bob", "c1", "gw-b", &[]).await?;
    server.connect("alice", "c2", "gw-b", &[]).await?;
    server.connect("alice", "c3", "gw-a", &[]).await?;
    server.connect("alice", "c4", "gw-b", &[]).await?;
    let list = || async {
        let response = server
            .client
            .clone()
            .list_online(pb::ListOnlineRequest {})
            .await?;
        anyhow::Ok(response.into_inner().users)
    };
    assert_eq!(
        list().await?,
        [
            pb::OnlineUser {
                user_id: "alice".into(),
                gateway_ids: strings(&["gw-a", "gw-b"]),
                connections: 3,
                gateways: vec![on("gw-a", 1), on("gw-b", 2)],
            },
            pb::OnlineUser {
                user_id: "bob".into(),
                gateway_ids: strings(&["gw-b"]),
                connections: 1,
                gateways: vec![on("gw-b", 1)],
            },
        ]
    );
    server.disconnect("bob", "c1").await?;
    server.disconnect("alice", "c3").await?;
    assert_eq!(
        list().await?,
        [pb::OnlineUser {
            user_id: "alice".into(),
            gateway_ids: strings(&["gw-b"]),
            connections: 2,
            gateways: vec![on("gw-b", 2)],
        }]
    );
    Ok(())
}

#[tokio::test]
async fn typing_is_published_to_the_room() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut room = server.subscribe(&[&channels::room("r1")]).await?;
    server
        .client
        .clone()
        .typing(pb::TypingRequest {
            room: "r1".into(),
            user_id: "alice".into(),
            username: "alice".into(),
        })
        .await?;
    let (channel, event) = room.next::<ev::RoomEvent>().await?;
    assert_eq!(channel, "room:r1");
    assert_eq!(
        event,
        ev::RoomEvent {
            room: "r1".into(),
            event: Some(ev::room_event::Event::Typing(ev::Typing {
                user_id: "alice".into(),
                username: "alice".into(),
            })),
        }
    );
    Ok(())
}

#[tokio::test]
async fn malformed_requests_are_refused_with_exact_codes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let code = |r: Result<_, tonic::Status>| r.err().map(|s: tonic::Status| s.code());

    let no_user = server
        .client
        .clone()
        .add_connection(pb::AddConnectionRequest {
            connection_id: "c1".into(),
            gateway_id: "gw-1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(no_user.map(|_| ())),
        Some(tonic::Code::InvalidArgument)
    );

    let no_room = server
        .client
        .clone()
        .typing(pb::TypingRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(no_room.map(|_| ())),
        Some(tonic::Code::InvalidArgument)
    );

    server.connect("alice", "c1", "gw-1", &[]).await?;
    let taken = server
        .client
        .clone()
        .add_connection(pb::AddConnectionRequest {
            user_id: "bob".into(),
            connection_id: "c1".into(),
            gateway_id: "gw-1".into(),
            room_ids: vec![],
        })
        .await;
    let status = taken.err().ok_or_else(|| anyhow::anyhow!("accepted"))?;
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(
        chat_proto::ErrorCode::from_status(&status),
        chat_proto::ErrorCode::Conflict
    );
    Ok(())
}
