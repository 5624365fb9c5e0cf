//! Refresh rotation and reuse, logout, access token validation.

use chat_common::Secret;
use chat_common::token::TokenKeys;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::{LogoutRequest, RefreshRequest, ValidateTokenRequest};
use tonic::Code;

use crate::helpers::{JWT_SECRET, TestServer, codes, identity_of};

fn refresh(token: &str) -> RefreshRequest {
    RefreshRequest {
        refresh_token: token.into(),
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let first = server.register("alice").await?;
    // A second sign-in is another family and must survive the reuse below.
    let other = client
        .login(chat_proto::auth::v1::LoginRequest {
            username: "alice".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await?
        .into_inner();

    let second = client
        .refresh(refresh(&first.refresh_token))
        .await?
        .into_inner();
    assert_eq!(second.user, first.user);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.expires_in, 900);
    let keys = TokenKeys::new(&Secret::new(JWT_SECRET));
    assert_eq!(
        keys.verify(&second.access_token)?.identity(),
        identity_of(&first)?
    );

    // The new pair works.
    let third = client
        .refresh(refresh(&second.refresh_token))
        .await?
        .into_inner();

    // Reusing a spent token is refused and revokes the whole family...
    let reused = client.refresh(refresh(&first.refresh_token)).await;
    assert_eq!(
        codes(reused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    // ...so the latest token of that family is dead too.
    let latest = client.refresh(refresh(&third.refresh_token)).await;
    assert_eq!(
        codes(latest)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    // Another family is untouched.
    client.refresh(refresh(&other.refresh_token)).await?;
    server.stop().await
}

#[tokio::test]
async fn unknown_and_empty_refresh_tokens_are_unauthorized() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    for token in ["", "garbage", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let result = client.refresh(refresh(token)).await;
        assert_eq!(
            codes(result)?,
            (Code::Unauthenticated, ErrorCode::Unauthorized)
        );
    }
    server.stop().await
}

#[tokio::test]
async fn an_expired_refresh_token_is_unauthorized() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.refresh_token_ttl_s = 1).await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let result = client.refresh(refresh(&alice.refresh_token)).await;
    assert_eq!(
        codes(result)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn logout_revokes_the_token_and_is_idempotent() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;
    let logout = || LogoutRequest {
        refresh_token: alice.refresh_token.clone(),
    };
    client.logout(logout()).await?;
    client.logout(logout()).await?;
    client
        .logout(LogoutRequest {
            refresh_token: "never issued".into(),
        })
        .await?;
    client
        .logout(LogoutRequest {
            refresh_token: String::new(),
        })
        .await?;
    let result = client.refresh(refresh(&alice.refresh_token)).await;
    assert_eq!(
        codes(result)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn validate_token_returns_the_user_of_a_good_token() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;

    let valid = client
        .validate_token(ValidateTokenRequest {
            access_token: alice.access_token.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(valid.user, alice.user);

    let keys = TokenKeys::new(&Secret::new(JWT_SECRET));
    let me = identity_of(&alice)?;
    let expired = keys.sign(&me, "user", -60)?;
    let foreign = TokenKeys::new(&Secret::new("another key")).sign(&me, "user", 60)?;
    for (token, message) in [
        ("garbage", "invalid access token"),
        ("", "invalid access token"),
        (foreign.as_str(), "invalid access token"),
        (expired.as_str(), "access token expired"),
    ] {
        let status = client
            .validate_token(ValidateTokenRequest {
                access_token: token.into(),
            })
            .await
            .err();
        assert_eq!(
            status.as_ref().map(|s| s.code()),
            Some(Code::Unauthenticated),
            "{token}"
        );
        assert_eq!(status.as_ref().map(|s| s.message()), Some(message));
    }

    // A well-signed token of a user that does not exist.
    let ghost = keys.sign(
        &chat_common::identity::Identity {
            user_id: "no-such-user".into(),
            ..me.clone()
        },
        "user",
        60,
    )?;
    let result = client
        .validate_token(ValidateTokenRequest {
            access_token: ghost,
        })
        .await;
    assert_eq!(
        codes(result)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );

    // A disabled user's token is refused as forbidden.
    let store = server.store().await?;
    use chat_auth_service::store::UserStore;
    store
        .set_disabled(&me.user_id, true, chat_common::db::now_ms())
        .await?;
    let result = client
        .validate_token(ValidateTokenRequest {
            access_token: alice.access_token.clone(),
        })
        .await;
    assert_eq!(
        codes(result)?,
        (Code::PermissionDenied, ErrorCode::Forbidden)
    );
    server.stop().await
}
