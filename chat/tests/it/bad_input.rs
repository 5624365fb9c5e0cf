//! Bad input gets a clear error and the connection stays usable; only abuse
//! closes it.

use std::time::Duration;

use anyhow::Context;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Deployment, TestSystem};

async fn still_usable(ws: &mut crate::support::Ws) -> anyhow::Result<()> {
    let pong = ws.request(json!({"type": "ping"})).await?;
    assert_eq!(pong["type"], "pong");
    Ok(())
}

async fn malformed_frames_get_errors_and_the_connection_stays_open(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;

    ws.send_raw("{not json").await?;
    let error = ws.next_of("error").await?;
    assert_eq!(error["code"], "invalid_argument");
    still_usable(&mut ws).await?;

    ws.send_raw("[1,2,3]").await?;
    assert_eq!(ws.next_of("error").await?["code"], "invalid_argument");

    let error = ws.request(json!({"type": "shout"})).await?;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("invalid_argument"))
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("shout"))
    );

    let error = ws.request(json!({"type": "send", "room": "r"})).await?;
    assert_eq!(error["code"], "invalid_argument");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("client_msg_id"))
    );

    let error = ws.request(json!({"type": "history", "room": 42})).await?;
    assert_eq!(error["code"], "invalid_argument");
    let error = ws.request(json!({"no_type": true})).await?;
    assert_eq!(error["code"], "invalid_argument");
    still_usable(&mut ws).await?;
    Ok(())
}

async fn unknown_rooms_and_non_members_are_refused(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mallory = t.register("mallory").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let mut a = t.ws(&alice).await?;
    let mut m = t.ws(&mallory).await?;

    let unknown = "00000000-0000-0000-0000-000000000000";
    let error = m
        .request(json!({"type": "send", "room": unknown, "text": "x", "client_msg_id": "1"}))
        .await?;
    assert_eq!(error["code"], "not_found");
    let error = m
        .request(json!({"type": "send", "room": room, "text": "x", "client_msg_id": "1"}))
        .await?;
    assert_eq!(error["code"], "forbidden");
    let error = m.request(json!({"type": "history", "room": room})).await?;
    assert_eq!(error["code"], "forbidden");
    let (status, body) = t
        .get(&format!("/rooms/{room}/messages"), Some(&mallory.token))
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let error = m.request(json!({"type": "typing", "room": room})).await?;
    assert_eq!(error["code"], "forbidden");
    a.assert_no("typing").await?;
    still_usable(&mut m).await?;
    Ok(())
}

async fn text_over_the_limit_is_too_large(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    let mut ws = t.ws(&alice).await?;
    let error = ws
        .request(
            json!({"type": "send", "room": room, "text": "é".repeat(4001), "client_msg_id": "big"}),
        )
        .await?;
    assert_eq!(error["code"], "too_large");
    // 4,000 characters of two bytes each is within the limit.
    let ack = ws
        .request(
            json!({"type": "send", "room": room, "text": "é".repeat(4000), "client_msg_id": "ok"}),
        )
        .await?;
    assert_eq!(ack["message"]["seq"], 1);
    Ok(())
}

async fn a_frame_over_64_kib_closes_with_1009(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;
    let huge = format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(65 * 1024)
    );
    ws.send_raw(&huge).await?;
    assert_eq!(ws.closed().await?, 1009);
    Ok(())
}

async fn flooding_is_rate_limited_then_closed_with_1008(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.frames_per_second = 1;
        o.gateway_limits.frame_burst = 5;
        o.gateway_limits.abuse_rejections = 10;
    })
    .await?;
    let alice = t.register("alice").await?;
    let mut ws = t.ws(&alice).await?;
    for _ in 0..10 {
        ws.send(json!({"type": "ping"})).await?;
    }
    let mut kinds = Vec::new();
    for _ in 0..10 {
        kinds.push(ws.next().await?["type"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(kinds[..5], ["pong"; 5]);
    assert_eq!(kinds[5..], ["error"; 5]);
    for _ in 0..10 {
        ws.send(json!({"type": "ping"})).await?;
    }
    assert_eq!(ws.closed().await?, 1008);
    Ok(())
}

async fn a_cross_site_origin_is_refused_at_the_handshake(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(t.ws_url())?;
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse()?);
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", alice.token).parse()?);
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => anyhow::bail!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    // The same origin as the gateway's host is fine.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(t.ws_url())?;
    let host = t.base.trim_start_matches("http://").to_owned();
    request
        .headers_mut()
        .insert("origin", format!("http://{host}").parse()?);
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", alice.token).parse()?);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    let mut ws = crate::support::Ws::from_stream(stream);
    assert_eq!(ws.next_of("ready").await?["user"]["id"], alice.id.as_str());
    Ok(())
}

async fn a_silent_client_is_closed_after_the_idle_timeout(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.ping_interval = Duration::from_millis(100);
        o.gateway_limits.idle_timeout = Duration::from_millis(300);
    })
    .await?;
    let alice = t.register("alice").await?;
    // tungstenite answers pings only while the socket is read; this client
    // reads nothing, so it stays silent.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(t.ws_url())?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", alice.token).parse()?);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut ws = crate::support::Ws::from_stream(stream);
    assert_eq!(ws.closed().await?, 1001);
    Ok(())
}

async fn unknown_api_paths_are_not_found_in_the_protocol_format(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let (status, body) = t.get("/nope", None).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    Ok(())
}

/// A member whose client stops reading is closed with 1013 once its bounded
/// queue fills; the others receive every message, and the slow one repairs
/// the gap with `resume` after reconnecting.
async fn a_client_that_stops_reading_is_closed_with_1013(
    deployment: Deployment,
) -> anyhow::Result<()> {
    // Enough 16 KB messages (4,000 four-byte characters) to overflow the
    // socket buffers (at most 4 MiB here) and the 16-frame queue behind.
    const MESSAGES: i64 = 500;
    let t = TestSystem::start_with(deployment, |o| {
        o.gateway_limits.send_queue_frames = 16;
        o.gateway_limits.frames_per_second = 1_000_000;
        o.gateway_limits.frame_burst = 1_000_000;
        // Time for the test to start reading before the close frame is
        // given up on.
        o.gateway_limits.close_timeout = Duration::from_secs(60);
    })
    .await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;
    t.join(&carol, &room).await?;
    let mut a = t.ws(&alice).await?;
    let mut b = t.ws(&bob).await?;
    let mut slow = t.ws_with_small_receive_buffer(&carol).await?;

    let text = "\u{1F600}".repeat(4000);
    for i in 1..=MESSAGES {
        let ack = a
            .request(json!({"type": "send", "room": room, "text": text, "client_msg_id": format!("m{i}")}))
            .await
            .with_context(|| format!("alice sending {i}"))?;
        assert_eq!(ack["message"]["seq"], i, "{ack}");
        let message = b
            .next_of("message")
            .await
            .with_context(|| format!("bob receiving {i}"))?;
        assert_eq!(message["message"]["seq"], i);
    }

    let mut last_seen = 0;
    let code = loop {
        match slow.next_raw().await? {
            Message::Text(frame) => {
                let frame: Value = serde_json::from_str(frame.as_str())?;
                if frame["type"] == "message" {
                    let seq = frame["message"]["seq"].as_i64().unwrap_or(-1);
                    assert_eq!(seq, last_seen + 1, "in order, none skipped");
                    last_seen = seq;
                }
            }
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    eprintln!("the slow client read {last_seen} messages before the close");
    assert_eq!(code, Some(1013));
    assert!(
        (1..MESSAGES).contains(&last_seen),
        "the slow client got {last_seen} of {MESSAGES} before the close"
    );

    let mut again = t.ws(&carol).await?;
    again
        .send(json!({"type": "resume", "rooms": {room.clone(): last_seen}, "ref": "res"}))
        .await?;
    for seq in last_seen + 1..=MESSAGES {
        assert_eq!(again.next_of("message").await?["message"]["seq"], seq);
    }
    assert_eq!(again.next_of("resumed").await?["ref"], "res");
    Ok(())
}

crate::on_both_deployments!(
    a_client_that_stops_reading_is_closed_with_1013,
    malformed_frames_get_errors_and_the_connection_stays_open,
    unknown_rooms_and_non_members_are_refused,
    text_over_the_limit_is_too_large,
    a_frame_over_64_kib_closes_with_1009,
    flooding_is_rate_limited_then_closed_with_1008,
    a_cross_site_origin_is_refused_at_the_handshake,
    a_silent_client_is_closed_after_the_idle_timeout,
    unknown_api_paths_are_not_found_in_the_protocol_format,
);
