//! `/metrics` of the embedded system: traffic driven as clients do, then the
//! scrape checked series by series.
//!
//! The registry is per process, and the embedded process's is the sum of
//! its parts. nextest runs each test in its own process, so the counts
//! here are this test's own; under `cargo test`, with other tests of this
//! binary in the same process, the exact counts would not hold.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::support::{Deployment, TestSystem, WAIT};

/// The value of the series `name` whose labels include every pair of
/// `labels`, summed over the series that match (so a label left out
/// aggregates it away); `None` if none match.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, sample)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
            && let Ok(sample) = sample.parse::<f64>()
        {
            total = Some(total.unwrap_or(0.0) + sample);
        }
    }
    total
}

async fn scrape(t: &TestSystem) -> anyhow::Result<String> {
    let response = t.http.get(format!("{}/metrics", t.base)).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "/metrics answered {}",
        response.status()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        content_type.starts_with("text/plain"),
        "content type {content_type}"
    );
    Ok(response.text().await?)
}

/// Scrapes until the series has `expected` (gauges are sampled, and a
/// socket's end is counted after its close handshake).
async fn until(
    t: &TestSystem,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(t).await?;
        let found = value(&text, name, labels);
        if found == Some(expected) {
            return Ok(text);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{name}{labels:?} stayed at {found:?}, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn get(text: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    value(text, name, labels).with_context(|| format!("no series {name}{labels:?}"))
}

#[tokio::test]
async fn the_embedded_system_exports_every_part_at_the_gateway() -> anyhow::Result<()> {
    const SENDS: usize = 5;
    const ABUSE: u32 = 10;
    let t = TestSystem::start_with(Deployment::Embedded, |o| {
        // A slow refill and a small burst, so that a flood is refused
        // within a few frames; the sends stay inside the burst.
        o.gateway_limits.frames_per_second = 1;
        o.gateway_limits.frame_burst = 10;
        o.gateway_limits.abuse_rejections = ABUSE;
    })
    .await?;
    let alice = t.register("alice").await?;
    let bob = t.register("bob").await?;
    let carol = t.register("carol").await?;
    let room = t.room(&alice, "lobby", "public").await?;
    t.join(&bob, &room).await?;

    let mut alice_ws = t.ws(&alice).await?;
    let mut bob_ws = t.ws(&bob).await?;
    let mut carol_ws = t.ws(&carol).await?;
    until(&t, "chat_gateway_connections", &[], 3.0).await?;
    until(&t, "chat_presence_connections", &[], 3.0).await?;

    for i in 0..SENDS {
        let ack = alice_ws
            .request(json!({"type": "send", "room": room, "text": "hi", "client_msg_id": format!("c{i}")}))
            .await?;
        assert_eq!(ack["type"], "ack");
    }
    for ws in [&mut alice_ws, &mut bob_ws] {
        for _ in 0..SENDS {
            ws.next_of("message").await?;
        }
    }

    // A flood: refused past the burst, closed with 1008 once refused
    // `ABUSE` times.
    for _ in 0..40 {
        carol_ws.send(json!({"type": "ping"})).await?;
    }
    assert_eq!(carol_ws.closed().await?, 1008);
    alice_ws.close().await?;
    bob_ws.close().await?;

    let text = until(&t, "chat_gateway_connections", &[], 0.0).await?;
    // Exact where the traffic decides it.
    assert_eq!(get(&text, "chat_gateway_connects_total", &[])?, 3.0);
    assert_eq!(
        get(&text, "chat_gateway_disconnects_total", &[("code", "1000")])?,
        2.0
    );
    assert_eq!(
        get(&text, "chat_gateway_disconnects_total", &[("code", "1008")])?,
        1.0
    );
    assert_eq!(get(&text, "chat_gateway_disconnects_total", &[])?, 3.0);
    assert_eq!(
        get(&text, "chat_gateway_sends_acked_total", &[])?,
        SENDS as f64
    );
    assert_eq!(
        get(&text, "chat_gateway_frames_in_total", &[("type", "send")])?,
        SENDS as f64
    );
    assert_eq!(
        get(&text, "chat_gateway_frames_out_total", &[("type", "ack")])?,
        SENDS as f64
    );
    assert_eq!(
        get(&text, "chat_gateway_frames_out_total", &[("type", "ready")])?,
        3.0
    );
    // Each message to alice and to bob, live.
    let live = 2.0 * SENDS as f64;
    assert_eq!(
        get(
            &text,
            "chat_gateway_frames_out_total",
            &[("type", "message")]
        )?,
        live
    );
    assert_eq!(
        get(&text, "chat_gateway_fanout_latency_seconds_count", &[])?,
        live
    );
    assert!(get(&text, "chat_gateway_fanout_latency_seconds_sum", &[])? >= 0.0);
    assert!(
        text.contains("chat_gateway_fanout_latency_seconds_bucket{le=\"0.005\"}"),
        "fan-out latency has buckets"
    );
    // The flood: at least the refusals that closed it, and the burst's
    // pings before them (more if the bucket refilled meanwhile).
    let refused = get(&text, "chat_gateway_rate_limited_total", &[])?;
    assert!(refused >= f64::from(ABUSE), "{refused} refusals");
    let pings = get(&text, "chat_gateway_frames_in_total", &[("type", "ping")])?;
    assert!((10.0..40.0).contains(&pings), "{pings} pings handled");
    assert_eq!(
        get(&text, "chat_gateway_queue_overflows_total", &[]).unwrap_or(0.0),
        0.0
    );

    // gRPC, both ends of each send: the gateway's client and the server.
    let send = [
        ("service", "chat.message.v1.MessageService"),
        ("method", "SendMessage"),
        ("code", "OK"),
    ];
    assert_eq!(
        get(&text, "chat_grpc_client_duration_seconds_count", &send)?,
        SENDS as f64
    );
    assert_eq!(
        get(&text, "chat_grpc_server_duration_seconds_count", &send)?,
        SENDS as f64
    );
    let add = [
        ("service", "chat.presence.v1.PresenceService"),
        ("method", "AddConnection"),
    ];
    assert_eq!(
        get(&text, "chat_grpc_server_duration_seconds_count", &add)?,
        3.0
    );

    // The services' own series, sampled in the background.
    until(&t, "chat_presence_connections", &[], 0.0).await?;
    let text = until(&t, "chat_message_outbox_backlog", &[], 0.0).await?;
    assert_eq!(
        get(&text, "chat_message_outbox_oldest_age_seconds", &[])?,
        0.0
    );
    assert!(text.contains("# TYPE chat_gateway_connections gauge"));
    assert!(text.contains("# HELP chat_gateway_fanout_latency_seconds"));
    t.stop().await?;
    Ok(())
}

#[test]
fn series_are_matched_by_name_and_labels() {
    let text = "# TYPE a counter\na{x=\"1\",y=\"2\"} 3\na{x=\"2\"} 4\nab 9\n";
    assert_eq!(value(text, "a", &[("x", "1")]), Some(3.0));
    assert_eq!(value(text, "a", &[]), Some(7.0));
    assert_eq!(value(text, "ab", &[]), Some(9.0));
    assert_eq!(value(text, "a", &[("x", "3")]), None);
}
