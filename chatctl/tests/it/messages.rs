//! `chatctl messages history` and `chatctl messages tail`.

use std::process::Stdio;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout};

use crate::support::{TestSystem, WAIT, assert_like};

#[tokio::test]
async fn history_pages_any_room_as_a_table_or_json() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let room = sys.room(&alice, "private talk", "private").await?;
    for text in ["one", "two\nlines", "three"] {
        sys.send(&alice, &room, text).await?;
    }

    let table = sys.run(&["messages", "history", &room]).await?.ok()?;
    assert_like(
        &table,
        "SEQ  TIME                  SENDER  TEXT\n\
         1    *  alice   one\n\
         2    *  alice   two lines\n\
         3    *  alice   three\n",
    );

    let page = sys
        .run(&[
            "--json", "messages", "history", &room, "--before", "3", "--limit", "1",
        ])
        .await?
        .json()?;
    let message = &page["messages"][0];
    assert_eq!(
        json!({
            "seq": message["seq"],
            "text": message["text"],
            "sender_id": message["sender_id"],
            "sender_name": message["sender_name"],
            "kind": message["kind"],
            "deleted": message["deleted"],
            "edited_at": message["edited_at"],
            "room": message["room"],
            "has_more": page["has_more"],
        }),
        json!({
            "seq": 2,
            "text": "two\nlines",
            "sender_id": alice.id,
            "sender_name": "alice",
            "kind": "text",
            "deleted": false,
            "edited_at": null,
            "room": room,
            "has_more": true,
        })
    );

    let missing = sys.run(&["messages", "history", "no-such-room"]).await?;
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (
            Some(6),
            "chatctl: message-service refused the call: NOT_FOUND (not_found): room not found\n"
        )
    );
    Ok(())
}

/// A running `chatctl messages tail`, read line by line.
struct Tail {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Tail {
    async fn start(sys: &TestSystem, args: &[&str]) -> anyhow::Result<Tail> {
        let mut child = sys
            .chatctl(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let stderr = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut tail = Tail {
            child,
            stdout,
            stderr,
        };
        // Printed once the subscription is in place.
        let ready = tail.stderr_line().await?;
        anyhow::ensure!(ready.starts_with("following room "), "{ready}");
        Ok(tail)
    }

    async fn stderr_line(&mut self) -> anyhow::Result<String> {
        tokio::time::timeout(WAIT, self.stderr.next_line())
            .await
            .context("no stderr line in time")??
            .context("stderr closed")
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .context("no line in time")??
            .context("stdout closed")
    }

    /// Ctrl-C, then the exit code.
    async fn interrupt(mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().context("no pid")?;
        let kill = tokio::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(kill.success(), "kill -INT failed");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .context("chatctl did not stop on Ctrl-C")??;
        Ok(status.code())
    }
}

#[tokio::test]
async fn tail_prints_the_last_messages_then_follows_until_ctrl_c() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let bob = sys.register("bob").await?;
    let room = sys.room(&alice, "watched", "public").await?;
    for text in ["one", "two", "three"] {
        sys.send(&alice, &room, text).await?;
    }

    let mut tail = Tail::start(&sys, &["messages", "tail", &room, "--last", "2"]).await?;
    assert_like(&tail.line().await?, "#2 * alice: two");
    assert_like(&tail.line().await?, "#3 * alice: three");

    let (status, _) = sys
        .post(&format!("/rooms/{room}/join"), Some(&bob.token), json!({}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(tail.line().await?, format!("* bob ({}) joined", bob.id));
    sys.send(&bob, &room, "live!").await?;
    assert_like(&tail.line().await?, "#4 * bob: live!");

    assert_eq!(tail.interrupt().await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn tail_prints_one_json_object_per_event() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let room = sys.room(&alice, "watched", "private").await?;
    let first = sys.send(&alice, &room, "before").await?;

    let mut tail = Tail::start(&sys, &["--json", "messages", "tail", &room]).await?;
    let replayed: Value = serde_json::from_str(&tail.line().await?)?;
    assert_eq!(
        (
            &replayed["event"],
            &replayed["room"],
            &replayed["message"]["seq"],
            &replayed["message"]["id"]
        ),
        (&json!("message"), &json!(room), &json!(1), &json!(first.id))
    );
    sys.send(&alice, &room, "after").await?;
    let live: Value = serde_json::from_str(&tail.line().await?)?;
    assert_eq!(
        (
            &live["event"],
            &live["message"]["seq"],
            &live["message"]["text"]
        ),
        (&json!("message"), &json!(2), &json!("after"))
    );
    assert_eq!(tail.interrupt().await?, Some(0));

    // A user who is not an admin is refused before anything is followed.
    let bob = sys.register("bob").await?;
    let refused = sys
        .chatctl(&["messages", "tail", &room])
        .env("CHATCTL_TOKEN", &bob.token)
        .output()
        .await?;
    assert_eq!(refused.status.code(), Some(5));
    assert_eq!(
        String::from_utf8(refused.stderr)?,
        "chatctl: message-service refused the call: PERMISSION_DENIED (forbidden): \
         the admin role is required\n"
    );
    Ok(())
}
