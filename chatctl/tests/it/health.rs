//! `chatctl health`, and what every command does when a service is down.

use crate::support::{TestSystem, closed_addr};

/// `chatctl ... | head` closes the pipe early: chatctl ends quietly, not
/// with a panic.
#[tokio::test]
async fn a_reader_that_goes_away_ends_chatctl_quietly() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let mut child = sys
        .chatctl(&["health"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Closed before chatctl has its answers to write.
    drop(child.stdout.take());
    let run = child.wait_with_output().await?;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert_eq!(String::from_utf8(run.stderr)?, "");
    Ok(())
}

#[tokio::test]
async fn health_lists_every_grpc_service_as_serving() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    // Health needs no admin credential.
    let run = sys
        .chatctl(&["health"])
        .env_remove("CHATCTL_TOKEN")
        .output()
        .await?;
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let (a, m, p) = (
        format!("http://{}", sys.system.auth_addr),
        format!("http://{}", sys.system.message_addr),
        format!("http://{}", sys.system.presence_addr),
    );
    let width = a.len().max(m.len()).max(p.len());
    let row = |service: &str, addr: &str, name: &str| {
        format!("{service:<16}  {addr:<width$}  {name:<32}  SERVING\n")
    };
    let expected = [
        format!(
            "{:<16}  {:<width$}  {:<32}  STATUS\n",
            "SERVICE", "ADDRESS", "GRPC_SERVICE"
        ),
        row("auth-service", &a, "(server)"),
        row("auth-service", &a, "chat.auth.v1.AuthService"),
        row("auth-service", &a, "chat.auth.v1.AdminService"),
        row("message-service", &m, "(server)"),
        row("message-service", &m, "chat.message.v1.MessageService"),
        row("message-service", &m, "chat.message.v1.AdminService"),
        row("presence-service", &p, "(server)"),
        row("presence-service", &p, "chat.presence.v1.PresenceService"),
        row("presence-service", &p, "chat.presence.v1.AdminService"),
    ]
    .concat();
    assert_eq!(String::from_utf8(run.stdout)?, expected);

    let json = sys.run(&["--json", "health"]).await?.json()?;
    assert_eq!(json["healthy"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(9));
    assert_eq!(
        json["checks"][5],
        serde_json::json!({
            "service": "message-service",
            "address": m,
            "grpc_service": "chat.message.v1.AdminService",
            "status": "SERVING",
        })
    );
    Ok(())
}

#[tokio::test]
async fn a_service_that_is_down_is_named_with_its_address() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let down = closed_addr().await?;

    let run = sys.run(&["--message-addr", &down, "rooms", "list"]).await?;
    assert_eq!((run.code, run.stdout.as_str()), (Some(3), ""));
    let prefix = format!("chatctl: message-service is unreachable at {down}: tcp connect error");
    assert!(run.stderr.starts_with(&prefix), "{}", run.stderr);
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);

    // Through an address without a scheme, and for presence too.
    let bare = down.trim_start_matches("http://");
    let run = sys
        .run(&["--presence-addr", bare, "presence", "who"])
        .await?;
    assert_eq!(run.code, Some(3));
    assert!(
        run.stderr.starts_with(&format!(
            "chatctl: presence-service is unreachable at {down}: "
        )),
        "{}",
        run.stderr
    );

    // Logging in needs auth-service.
    let run = sys
        .chatctl(&[
            "--auth-addr",
            &down,
            "users",
            "list",
            "--user",
            "root",
            "--password",
            "x",
        ])
        .env_remove("CHATCTL_TOKEN")
        .output()
        .await?;
    assert_eq!(run.status.code(), Some(3));
    assert!(
        String::from_utf8(run.stderr)?
            .starts_with(&format!("chatctl: auth-service is unreachable at {down}: ")),
    );

    // health shows the rest and fails.
    let run = sys
        .run(&["--json", "--message-addr", &down, "health"])
        .await?;
    assert_eq!(run.code, Some(3));
    let json: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(json["healthy"], false);
    let statuses: Vec<(String, String)> = json["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let status = c["status"].as_str().unwrap_or_default();
            // The OS's wording of the refusal is not ours to pin.
            let status = status.split(':').next().unwrap_or_default();
            (
                c["service"].as_str().unwrap_or_default().to_owned(),
                status.to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("auth-service", "SERVING"),
        ("auth-service", "SERVING"),
        ("auth-service", "SERVING"),
        ("message-service", "UNREACHABLE"),
        ("presence-service", "SERVING"),
        ("presence-service", "SERVING"),
        ("presence-service", "SERVING"),
    ]
    .iter()
    .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(statuses, expected);
    assert!(
        run.stderr
            .starts_with("chatctl: not healthy: message-service UNREACHABLE: tcp connect error"),
        "{}",
        run.stderr
    );
    Ok(())
}
