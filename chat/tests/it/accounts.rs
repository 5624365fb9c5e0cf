//! Registration, login, token refresh with reuse detection, logout, `/me`,
//! password change.

use serde_json::json;

use crate::support::{Deployment, TestSystem, str_of};

async fn register_returns_the_user_and_a_token_pair(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let (status, body) = t
        .post(
            "/auth/register",
            None,
            json!({"username": "alice", "password": "correct horse", "display_name": "Alice A."}),
        )
        .await?;
    assert_eq!(status, 201);
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["display_name"], "Alice A.");
    assert!(body["user"]["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        body["user"]["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(body["expires_in"], 900);
    assert_eq!(str_of(&body["access_token"])?.split('.').count(), 3);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|s| s.len() >= 32)
    );
    Ok(())
}

async fn a_taken_username_is_a_conflict(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    t.register("alice").await?;
    let (status, body) = t
        .post(
            "/auth/register",
            None,
            json!({"username": "alice", "password": "another one"}),
        )
        .await?;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "conflict");
    Ok(())
}

async fn bad_usernames_and_passwords_are_invalid_arguments(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let cases = [
        json!({"username": "Alice", "password": "correct horse"}),
        json!({"username": "al", "password": "correct horse"}),
        json!({"username": "a".repeat(33), "password": "correct horse"}),
        json!({"username": "al ice", "password": "correct horse"}),
        json!({"username": "alice", "password": "short"}),
        json!({"username": "alice", "password": "p".repeat(129)}),
        json!({"username": "alice"}),
    ];
    for body in cases {
        let (status, reply) = t.post("/auth/register", None, body.clone()).await?;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{body}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    Ok(())
}

async fn malformed_json_bodies_are_invalid_arguments(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let response = t
        .http
        .post(t.url("/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"]["code"], "invalid_argument");
    Ok(())
}

async fn login_checks_the_password(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["id"], alice.id.as_str());

    let (status, body) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "wrong horse"}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, unknown) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "nobody", "password": "wrong horse"}),
        )
        .await?;
    assert_eq!(status, 401);
    assert_eq!(
        unknown["error"]["message"], body["error"]["message"],
        "no user enumeration"
    );
    Ok(())
}

async fn refresh_rotates_and_reuse_revokes_the_family(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, first) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(status, 200);
    let rotated = str_of(&first["refresh_token"])?;
    assert_ne!(rotated, alice.refresh);
    let (status, me) = t.get("/me", Some(&str_of(&first["access_token"])?)).await?;
    assert_eq!(
        (status, me["user"]["username"].as_str()),
        (200, Some("alice"))
    );

    // The spent token presented again: refused, and the rotated one dies too.
    let (status, body) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = t
        .post("/auth/refresh", None, json!({"refresh_token": rotated}))
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

async fn logout_spends_the_refresh_token(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t
        .post(
            "/auth/logout",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, _) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(status, 401);
    Ok(())
}

async fn me_needs_a_valid_token(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t.get("/me", Some(&alice.token)).await?;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["id"], alice.id.as_str());
    assert_eq!(body["user"]["display_name"], "alice");

    for token in [None, Some("garbage"), Some("a.b.c")] {
        let (status, body) = t.get("/me", token).await?;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
    }
    Ok(())
}

async fn display_name_changes(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t
        .call(
            reqwest::Method::PATCH,
            "/me",
            Some(&alice.token),
            Some(json!({"display_name": "Alice Ünicode"})),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["display_name"], "Alice Ünicode");
    let (_, me) = t.get("/me", Some(&alice.token)).await?;
    assert_eq!(me["user"]["display_name"], "Alice Ünicode");
    Ok(())
}

async fn password_change_checks_the_old_one_and_revokes_refresh_tokens(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    let (status, body) = t
        .post(
            "/auth/password",
            Some(&alice.token),
            json!({"old_password": "wrong horse", "new_password": "battery staple"}),
        )
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let (status, _) = t
        .post(
            "/auth/password",
            Some(&alice.token),
            json!({"old_password": "correct horse", "new_password": "battery staple"}),
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = t
        .post(
            "/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh}),
        )
        .await?;
    assert_eq!(status, 401);
    let (status, _) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await?;
    assert_eq!(status, 401);
    let (status, _) = t
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "battery staple"}),
        )
        .await?;
    assert_eq!(status, 200);
    Ok(())
}

async fn users_are_found_by_prefix_with_presence(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    let alice = t.register("alice").await?;
    t.register("albert").await?;
    t.register("bob").await?;
    let _online = t.ws(&alice).await?;
    let (status, body) = t.get("/users?q=al", Some(&alice.token)).await?;
    assert_eq!(status, 200);
    let users = body["users"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = users
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["albert", "alice"]);
    assert_eq!(users[0]["status"], "offline");
    assert_eq!(users[1]["status"], "online");
    Ok(())
}

async fn login_status(
    t: &TestSystem,
    username: &str,
    password: &str,
) -> anyhow::Result<(u16, serde_json::Value)> {
    t.post(
        "/auth/login",
        None,
        json!({"username": username, "password": password}),
    )
    .await
}

async fn failed_logins_lock_an_account_without_revealing_it(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    t.register("alice").await?;
    // The default limit: 5 failures per account.
    for _ in 0..5 {
        let (status, _) = login_status(&t, "alice", "wrong horse").await?;
        assert_eq!(status, 401);
    }
    let (status, locked) = login_status(&t, "alice", "correct horse").await?;
    assert_eq!(
        (status, locked["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    for _ in 0..5 {
        let (status, _) = login_status(&t, "nobody", "wrong horse").await?;
        assert_eq!(status, 401);
    }
    let (status, unknown) = login_status(&t, "nobody", "wrong horse").await?;
    assert_eq!(status, 429);
    assert_eq!(unknown, locked, "no user enumeration through the lockout");
    Ok(())
}

async fn a_successful_login_resets_the_failure_count(deployment: Deployment) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    t.register("alice").await?;
    for _ in 0..3 {
        for _ in 0..4 {
            let (status, _) = login_status(&t, "alice", "wrong horse").await?;
            assert_eq!(status, 401);
        }
        let (status, _) = login_status(&t, "alice", "correct horse").await?;
        assert_eq!(status, 200);
    }
    Ok(())
}

async fn failed_logins_from_one_address_are_throttled(
    deployment: Deployment,
) -> anyhow::Result<()> {
    let t = TestSystem::start(deployment).await?;
    t.register("alice").await?;
    // The default limit: 20 failures per address, here over 20 names.
    for i in 0..20 {
        let (status, _) = login_status(&t, &format!("guess{i}"), "wrong horse").await?;
        assert_eq!(status, 401);
    }
    let (status, body) = login_status(&t, "alice", "correct horse").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    Ok(())
}

crate::on_both_deployments!(
    failed_logins_lock_an_account_without_revealing_it,
    a_successful_login_resets_the_failure_count,
    failed_logins_from_one_address_are_throttled,
    register_returns_the_user_and_a_token_pair,
    a_taken_username_is_a_conflict,
    bad_usernames_and_passwords_are_invalid_arguments,
    malformed_json_bodies_are_invalid_arguments,
    login_checks_the_password,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_spends_the_refresh_token,
    me_needs_a_valid_token,
    display_name_changes,
    password_change_checks_the_old_one_and_revokes_refresh_tokens,
    users_are_found_by_prefix_with_presence,
);
