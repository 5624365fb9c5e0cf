use std::sync::Arc;

use anyhow::Context;
use chat_common::Shutdown;
use loadgen::{Phase, Report};
use tokio::sync::Mutex;

use crate::support::{command, options, start, wait_ready};

fn phase<'a>(report: &'a Report, name: &str) -> anyhow::Result<&'a Phase> {
    report
        .phase(name)
        .with_context(|| format!("no phase {name} in {}", report.summary()))
}

/// Fails with the report's summary, failures included, when a count is
/// not what was expected.
fn assert_counts(
    report: &Report,
    phase_name: &str,
    expected: &[(&str, u64)],
) -> anyhow::Result<()> {
    let phase = phase(report, phase_name)?;
    for (name, value) in expected {
        assert_eq!(
            phase.count(name),
            *value,
            "{phase_name}.{name}\n{}\nfailures: {:?}",
            report.summary(),
            phase.failures
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_member() -> anyhow::Result<()> {
    let chat = start().await?;
    let report = loadgen::run(command(&[
        "fanout",
        "--gateway",
        &chat.url,
        "--members",
        "5",
        "--senders",
        "2",
        "--messages",
        "10",
        "--rate",
        "50",
        "--source-ips",
        "127.0.0.1-127.0.0.3",
    ])?)
    .await?;
    // senders × messages × members, each in seq order.
    assert_counts(
        &report,
        "fanout",
        &[
            ("connected", 5),
            ("sent", 20),
            ("acked", 20),
            ("delivered", 100),
            ("expected_deliveries", 100),
            ("complete", 1),
            ("out_of_order", 0),
            ("dropped", 0),
            ("errors", 0),
            ("rate_limited", 0),
        ],
    )?;
    let fanout = phase(&report, "fanout")?;
    assert_eq!(fanout.latencies_us["delivery"].count, 100);
    assert_eq!(fanout.latencies_us["ack"].count, 20);
    chat.system.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_spreads_members_over_the_gateways() -> anyhow::Result<()> {
    let chat = start().await?;
    // The embedded system has one gateway, so it is named twice: the
    // members alternate between the two names as they would between two
    // gateways (scripts/cluster gives real ones).
    let report = loadgen::run(command(&[
        "e2e",
        "--gateway",
        &chat.url,
        "--gateway",
        &chat.url,
        "--members",
        "4",
        "--senders",
        "2",
        "--messages",
        "5",
        "--rate",
        "50",
    ])?)
    .await?;
    assert_counts(
        &report,
        "e2e",
        &[
            ("acked", 10),
            ("delivered", 40),
            ("delivered_via_gateway_0", 20),
            ("delivered_via_gateway_1", 20),
            ("complete", 1),
        ],
    )?;
    chat.system.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_into_many_rooms_and_one_hot_room() -> anyhow::Result<()> {
    let chat = start().await?;
    let report = loadgen::run(command(&[
        "sends",
        "--gateway",
        &chat.url,
        "--senders",
        "4",
        "--rooms",
        "2",
        "--messages",
        "5",
        "--rate",
        "50",
    ])?)
    .await?;
    // Two rooms of two members: each message reaches two connections.
    assert_counts(
        &report,
        "many_rooms",
        &[
            ("acked", 20),
            ("delivered", 40),
            ("complete", 1),
            ("out_of_order", 0),
        ],
    )?;
    assert_counts(
        &report,
        "hot_room",
        &[
            ("acked", 20),
            ("delivered", 80),
            ("complete", 1),
            ("out_of_order", 0),
        ],
    )?;
    chat.system.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_over_http_and_websocket() -> anyhow::Result<()> {
    let chat = start().await?;
    let report = loadgen::run(command(&[
        "history",
        "--gateway",
        &chat.url,
        "--fill",
        "30",
        "--fill-senders",
        "3",
        "--fill-rate",
        "50",
        "--queries",
        "10",
        "--concurrency",
        "2",
        "--limit",
        "10",
        "--ws-rate",
        "50",
    ])?)
    .await?;
    assert_counts(
        &report,
        "fill",
        &[("acked", 30), ("delivered", 90), ("complete", 1)],
    )?;
    assert_counts(
        &report,
        "query",
        &[
            ("room_last_seq", 30),
            ("http_ok", 10),
            ("ws_ok", 10),
            ("http_wrong_size", 0),
            ("ws_wrong_size", 0),
            ("http_failed", 0),
            ("ws_failed", 0),
        ],
    )?;
    chat.system.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_their_memory() -> anyhow::Result<()> {
    let chat = start().await?;
    // The gateway runs in this process, so its RSS is this process's.
    let pid = std::process::id().to_string();
    let report = loadgen::run(command(&[
        "idle",
        "--gateway",
        &chat.url,
        "--connections",
        "20",
        "--users",
        "3",
        "--hold-s",
        "0.2",
        "--gateway-pid",
        &pid,
    ])?)
    .await?;
    assert_counts(
        &report,
        "idle",
        &[
            ("connected", 20),
            ("open_at_measurement", 20),
            ("connect_failed", 0),
            ("dropped", 0),
        ],
    )?;
    assert!(
        phase(&report, "idle")?
            .values
            .contains_key("gateway_rss_per_connection_bytes")
    );
    chat.system.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_reconnects_and_resumes_after_a_restart() -> anyhow::Result<()> {
    let chat = start().await?;
    let addr = chat.system.addr;
    let dir = chat.dir.path().to_owned();
    // The restarted system, kept alive until the end of the test.
    let restarted = Arc::new(Mutex::new(None));
    let keep = restarted.clone();
    let system = chat.system;
    let trigger: loadgen::Trigger = Box::pin(async move {
        // Stopping closes every socket with 1012; the same data directory
        // keeps the signing key, so the clients' tokens stay valid.
        system.stop().await?;
        let again = chat::start(options(&addr.to_string(), &dir), Shutdown::new()).await?;
        wait_ready(addr).await?;
        *keep.lock().await = Some(again);
        Ok(())
    });
    let report = loadgen::run_with_trigger(
        command(&[
            "storm",
            "--gateway",
            &format!("http://{addr}"),
            "--clients",
            "10",
            "--users",
            "3",
            "--signal-timeout-s",
            "30",
            "--reconnect-timeout-s",
            "30",
        ])?,
        Some(trigger),
    )
    .await?;
    assert_counts(
        &report,
        "storm",
        &[
            ("connected", 10),
            ("disconnected", 10),
            ("closed_1012", 10),
            ("resumed", 10),
            ("failed", 0),
            ("never_disconnected", 0),
        ],
    )?;
    assert_eq!(
        phase(&report, "storm")?.latencies_us["disconnect_to_resumed"].count,
        10
    );
    if let Some(system) = restarted.lock().await.take() {
        system.stop().await?;
    }
    drop(chat.dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_its_results_as_json() -> anyhow::Result<()> {
    let chat = start().await?;
    let out = chat.dir.path().join("results.json");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "fanout",
            "--gateway",
            &chat.url,
            "--members",
            "3",
            "--senders",
            "1",
        ])
        .args(["--messages", "4", "--rate", "50", "--out"])
        .arg(&out)
        .status()
        .await?;
    assert!(status.success());
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    assert_eq!(results["scenario"], "fanout");
    assert_eq!(results["parameters"]["members"], 3);
    let fanout = &results["phases"][0];
    assert_eq!(fanout["counts"]["delivered"], 12);
    assert_eq!(fanout["latencies_us"]["delivery"]["count"], 12);
    assert!(fanout["samples"].is_array());
    chat.system.stop().await
}
