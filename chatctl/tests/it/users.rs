//! `chatctl users ...`, and the credentials every admin command needs.

use serde_json::json;

use crate::support::{PASSWORD, TestSystem, assert_like};

#[tokio::test]
async fn users_are_listed_and_shown_as_tables_and_json() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let root = &sys.root;

    let listed = sys.run(&["users", "list"]).await?.ok()?;
    assert_like(
        &listed,
        &format!(
            "ID                                    USERNAME  DISPLAY_NAME  ROLE   STATUS  CREATED\n\
             {}  alice     alice         user   active  *\n\
             {}  root      root          admin  active  *\n",
            alice.id, root.id
        ),
    );

    let json = sys.run(&["--json", "users", "list"]).await?.json()?;
    let created = json["users"][0]["created_at"].clone();
    assert_eq!(
        json["users"][0],
        json!({
            "id": alice.id,
            "username": "alice",
            "display_name": "alice",
            "role": "user",
            "disabled": false,
            "created_at": created,
        })
    );
    assert_eq!(json["users"][1]["username"], "root");
    assert_eq!(json["next_after"], serde_json::Value::Null);
    let created = created.as_str().unwrap_or_default().to_owned();
    assert_eq!(created.len(), "2025-01-01T00:00:00Z".len(), "{created}");

    // By username or by id, the same user.
    let shown = sys.run(&["users", "show", "alice"]).await?.ok()?;
    assert_eq!(
        shown,
        format!(
            "FIELD         VALUE\n\
             id            {}\n\
             username      alice\n\
             display_name  alice\n\
             role          user\n\
             status        active\n\
             created_at    {created}\n",
            alice.id
        )
    );
    assert_eq!(sys.run(&["users", "show", &alice.id]).await?.ok()?, shown);

    // Paging: one per page, the next page named on stderr.
    let first = sys.run(&["users", "list", "--limit", "1"]).await?;
    assert_eq!(first.stderr, "more users follow: --after alice\n");
    let second = sys
        .run(&[
            "--json", "users", "list", "--limit", "1", "--after", "alice",
        ])
        .await?
        .json()?;
    assert_eq!(second["users"][0]["username"], "root");
    assert_eq!(second["next_after"], serde_json::Value::Null);
    let prefixed = sys
        .run(&["--json", "users", "list", "--prefix", "ro"])
        .await?
        .json()?;
    assert_eq!(prefixed["users"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn disabling_stops_logins_until_enabled_and_roles_can_change() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let alice = sys.register("alice").await?;
    let login = serde_json::json!({"username": "alice", "password": PASSWORD});

    let disabled = sys
        .run(&["--json", "users", "disable", "alice"])
        .await?
        .json()?;
    assert_eq!(
        (&disabled["id"], &disabled["disabled"]),
        (&json!(alice.id), &json!(true))
    );
    let (status, body) = sys.post("/auth/login", None, login.clone()).await?;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["message"]),
        (403, &json!("forbidden"), &json!("account disabled"))
    );

    let enabled = sys.run(&["users", "enable", &alice.id]).await?.ok()?;
    assert!(enabled.contains("\nstatus        active\n"), "{enabled}");
    let (status, _) = sys.post("/auth/login", None, login).await?;
    assert_eq!(status, 200);

    let promoted = sys
        .run(&["users", "set-role", "alice", "admin"])
        .await?
        .ok()?;
    assert!(promoted.contains("\nrole          admin\n"), "{promoted}");
    // Alice logs in with chatctl and is an admin now.
    let as_alice = sys
        .chatctl(&["--json", "users", "show", "root"])
        .env_remove("CHATCTL_TOKEN")
        .env("CHATCTL_USER", "alice")
        .env("CHATCTL_PASSWORD", PASSWORD)
        .output()
        .await?;
    assert_eq!(as_alice.status.code(), Some(0), "{as_alice:?}");

    let myself = sys.run(&["users", "disable", "root"]).await?;
    assert_eq!(
        (myself.code, myself.stdout.as_str(), myself.stderr.as_str()),
        (
            Some(7),
            "",
            "chatctl: auth-service refused the call: INVALID_ARGUMENT (invalid_argument): \
             an admin cannot disable or demote themselves\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn refusals_print_the_service_code_and_message_and_exit_non_zero() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let bob = sys.register("bob").await?;

    // A normal user is refused by each service.
    let as_bob = |args: &[&str]| {
        let mut command = sys.chatctl(args);
        command.env("CHATCTL_TOKEN", &bob.token);
        crate::support::run(command)
    };
    for (args, service) in [
        (&["users", "list"][..], "auth-service"),
        (&["rooms", "list"][..], "message-service"),
        (&["presence", "who"][..], "presence-service"),
    ] {
        let run = as_bob(args).await?;
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (
                Some(5),
                "",
                format!(
                    "chatctl: {service} refused the call: PERMISSION_DENIED (forbidden): \
                     the admin role is required\n"
                )
                .as_str()
            ),
            "{args:?}"
        );
    }

    // Logging in with a wrong password.
    let wrong = sys
        .chatctl(&[
            "users",
            "list",
            "--user",
            "root",
            "--password",
            "wrong password",
        ])
        .env_remove("CHATCTL_TOKEN")
        .output()
        .await?;
    assert_eq!(wrong.status.code(), Some(4));
    assert_eq!(
        String::from_utf8(wrong.stderr)?,
        "chatctl: auth-service refused the call: UNAUTHENTICATED (unauthorized): \
         invalid username or password\n"
    );

    // The right password works.
    let right = sys
        .chatctl(&[
            "--json",
            "users",
            "show",
            "bob",
            "--user",
            "root",
            "--password",
            PASSWORD,
        ])
        .env_remove("CHATCTL_TOKEN")
        .output()
        .await?;
    assert_eq!(right.status.code(), Some(0), "{right:?}");

    // A wrong service token.
    let run = sys
        .run(&["users", "list", "--service-token", "not-the-token"])
        .await?;
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            Some(4),
            "chatctl: auth-service refused the call: UNAUTHENTICATED (unauthorized): \
             missing or invalid service credential\n"
        )
    );

    // No admin credential at all.
    let none = sys
        .chatctl(&["users", "list"])
        .env_remove("CHATCTL_TOKEN")
        .output()
        .await?;
    assert_eq!(none.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(none.stderr)?,
        "chatctl: this command needs an admin: pass --token (CHATCTL_TOKEN), or --user and \
         --password (CHATCTL_USER, CHATCTL_PASSWORD)\n"
    );

    // An unknown user.
    let run = sys.run(&["users", "show", "nobody"]).await?;
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            Some(6),
            "chatctl: auth-service refused the call: NOT_FOUND (not_found): user not found\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn the_help_documents_the_exit_codes() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let help = sys.run(&["--help"]).await?.ok()?;
    for line in [
        "Exit codes:",
        "  0  success",
        "  3  a service is unreachable or UNAVAILABLE, or `health` found one not serving",
        "  5  PERMISSION_DENIED: the user is not an admin, or is disabled",
        "  6  NOT_FOUND: no such user, room or message",
        "  --auth-addr <AUTH_ADDR>",
        "[env: AUTH_ADDR=",
        "[env: CHATCTL_TOKEN]",
    ] {
        assert!(help.contains(line), "{line:?} missing from\n{help}");
    }
    let usage = sys.run(&["users", "frobnicate"]).await?;
    assert_eq!(usage.code, Some(2));
    Ok(())
}
