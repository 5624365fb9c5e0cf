//! Access-token keys through the real API: every token names its key
//! (`kid`); rotating `JWT_SECRET` with the old key listed in
//! `JWT_PREVIOUS_KEYS` keeps issued tokens working on HTTP and WebSocket
//! until the old key is removed; tokens naming an unknown key, or the wrong
//! one, are refused.

use chat_common::Secret;
use chat_common::identity::Identity;
use chat_common::token::{KeySettings, NamedKey, TokenKeys, default_key_id};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Api, Deployment, TestSystem, User, Ws, str_of};

/// A socket authenticated by header that the gateway is expected to
/// refuse; returns its close code.
async fn refused_ws_by_header(api: &Api, token: &str) -> anyhow::Result<u16> {
    let mut request = api.ws_url().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ws::from_stream(stream).closed().await
}

/// A socket authenticated by its first frame that the gateway is expected
/// to refuse; returns its close code.
async fn refused_ws_by_frame(api: &Api, token: &str) -> anyhow::Result<u16> {
    let mut ws = api.raw_ws().await?;
    ws.send(json!({"type": "auth", "token": token})).await?;
    ws.closed().await
}

/// Asserts that `token` works on every gateway, by HTTP and by socket.
async fn accepted_everywhere(api: &Api, gateways: usize, token: &str) -> anyhow::Result<()> {
    let user = User {
        id: String::new(),
        token: token.to_owned(),
        refresh: String::new(),
    };
    for _ in 0..gateways {
        let (status, body) = api.get("/me", Some(token)).await?;
        assert_eq!(status, 200, "{body}");
        let ws = api.ws(&user).await?;
        ws.close().await?;
    }
    Ok(())
}

/// Asserts that `token` is refused on every gateway: 401 by HTTP, 4001 at
/// the socket handshake by header and by first frame.
async fn refused_everywhere(api: &Api, gateways: usize, token: &str) -> anyhow::Result<()> {
    for _ in 0..gateways {
        let (status, body) = api.get("/me", Some(token)).await?;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        assert_eq!(refused_ws_by_header(api, token).await?, 4001);
        assert_eq!(refused_ws_by_frame(api, token).await?, 4001);
    }
    Ok(())
}

fn key_id_of(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value["kid"].as_str().map(str::to_owned)
}

pub async fn login(api: &Api, username: &str) -> anyhow::Result<User> {
    let (status, body) = api
        .post(
            "/auth/login",
            None,
            json!({"username": username, "password": "correct horse"}),
        )
        .await?;
    anyhow::ensure!(status == 200, "login {username}: {status} {body}");
    Ok(User {
        id: str_of(&body["user"]["id"])?,
        token: str_of(&body["access_token"])?,
        refresh: str_of(&body["refresh_token"])?,
    })
}

#[tokio::test]
async fn embedded_rotation_keeps_old_tokens_until_the_old_key_is_removed() -> anyhow::Result<()> {
    let t = TestSystem::start(Deployment::Embedded).await?;
    let alice = t.register("alice").await?;
    let key_a = chat_common::config::load_or_create_secret(&t.dir.path().join("jwt-secret"))?;
    let kid_a = default_key_id(&key_a);
    // Without JWT_KEY_ID, the key id is derived from the secret.
    assert_eq!(key_id_of(&alice.token), Some(kid_a.clone()));
    let dir = t.stop().await?;

    // Key B signs; key A is still accepted.
    let key_b = Secret::new("the second signing key");
    let rotated = KeySettings {
        secret: key_b.clone(),
        key_id: Some("b".into()),
        previous: vec![NamedKey {
            id: kid_a.clone(),
            secret: key_a,
        }],
    };
    let t = TestSystem::start_in(dir, |options| options.jwt_keys = Some(rotated)).await?;
    accepted_everywhere(&t, 1, &alice.token).await?;
    let relogged = login(&t, "alice").await?;
    assert_eq!(key_id_of(&relogged.token).as_deref(), Some("b"));
    let dir = t.stop().await?;

    // Key A removed: its tokens are refused, B's still work.
    let only_b = KeySettings {
        secret: key_b,
        key_id: Some("b".into()),
        previous: Vec::new(),
    };
    let t = TestSystem::start_in(dir, |options| options.jwt_keys = Some(only_b)).await?;
    refused_everywhere(&t, 1, &alice.token).await?;
    accepted_everywhere(&t, 1, &relogged.token).await?;
    t.stop().await?;
    Ok(())
}

/// With key B signing and key A listed as previous, every gateway accepts
/// tokens under either, and refuses a token naming a key it does not have,
/// naming key A but signed with B, or naming none.
async fn gateways_pick_the_key_by_its_id(deployment: Deployment) -> anyhow::Result<()> {
    let key_a = Secret::new("the first signing key");
    let keys = KeySettings {
        secret: Secret::new("the second signing key"),
        key_id: Some("b".into()),
        previous: vec![NamedKey {
            id: "a".into(),
            secret: key_a.clone(),
        }],
    };
    let t = TestSystem::start_with(deployment, |options| options.jwt_keys = Some(keys)).await?;
    let gateways = match deployment {
        Deployment::Embedded => 1,
        Deployment::Replicated => 2,
    };
    let alice = t.register("alice").await?;
    assert_eq!(key_id_of(&alice.token).as_deref(), Some("b"));
    accepted_everywhere(&t, gateways, &alice.token).await?;

    // The claims of alice's own token, signed again under other keys.
    let claims = TokenKeys::from_settings(&KeySettings {
        secret: Secret::new("the second signing key"),
        key_id: Some("b".into()),
        previous: Vec::new(),
    })
    .verify(&alice.token)?;
    let identity = Identity {
        user_id: claims.sub.clone(),
        username: claims.name.clone(),
        display_name: claims.dn.clone(),
    };
    let sign = |id: &str, secret: &Secret| {
        TokenKeys::from_settings(&KeySettings {
            secret: secret.clone(),
            key_id: Some(id.to_owned()),
            previous: Vec::new(),
        })
        .sign(&identity, "user", &claims.sid, 60)
    };
    accepted_everywhere(&t, gateways, &sign("a", &key_a)?).await?;
    refused_everywhere(&t, gateways, &sign("c", &Secret::new("a key nobody has"))?).await?;
    refused_everywhere(
        &t,
        gateways,
        &sign("a", &Secret::new("the second signing key"))?,
    )
    .await?;
    refused_everywhere(&t, gateways, &sign("c", &key_a)?).await?;

    // No kid at all, else well signed with key B.
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = alice.token.split('.').nth(1).unwrap_or_default();
    let input = format!(
        "{}.{payload}",
        engine.encode(r#"{"alg":"HS256","typ":"JWT"}"#)
    );
    let no_kid = mac_token(&input, "the second signing key")?;
    refused_everywhere(&t, gateways, &no_kid).await?;
    // Control for the construction above: the same with kid "b" passes.
    let input = format!(
        "{}.{payload}",
        engine.encode(r#"{"alg":"HS256","typ":"JWT","kid":"b"}"#)
    );
    accepted_everywhere(&t, gateways, &mac_token(&input, "the second signing key")?).await?;
    // `alg: none` naming a good key.
    let none = format!(
        "{}.{payload}.",
        engine.encode(r#"{"alg":"none","typ":"JWT","kid":"b"}"#)
    );
    refused_everywhere(&t, gateways, &none).await?;
    Ok(())
}

/// `input` (header.payload) with its HS256 MAC under `secret`.
fn mac_token(input: &str, secret: &str) -> anyhow::Result<String> {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)?;
    Ok(format!("{input}.{signature}"))
}

crate::on_both_deployments!(gateways_pick_the_key_by_its_id);
