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
        everywhere: false,
    };
    client.logout(logout()).await?;
    client.logout(logout()).await?;
    client
        .logout(LogoutRequest {
            refresh_token: "never issued".into(),
            everywhere: false,
        })
        .await?;
    client
        .logout(LogoutRequest {
            refresh_token: String::new(),
            everywhere: false,
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
    let expired = keys.sign(&me, "user", "session", -60)?;
    let foreign = TokenKeys::new(&Secret::new("another key")).sign(&me, "user", "session", 60)?;
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
        "session",
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

/// The session ids `GetRevokedSessions` lists for `user_id`, sorted.
async fn revoked_sessions(
    client: &mut crate::helpers::Client,
    user_id: &str,
) -> anyhow::Result<Vec<String>> {
    let reply = client
        .get_revoked_sessions(chat_proto::auth::v1::GetRevokedSessionsRequest {
            user_ids: vec![user_id.to_owned(), "no-such-user".to_owned()],
        })
        .await?
        .into_inner();
    let mut sessions: Vec<String> = reply
        .users
        .into_iter()
        .inspect(|user| assert_eq!(user.user_id, user_id))
        .flat_map(|user| user.session_ids)
        .collect();
    sessions.sort();
    Ok(sessions)
}

fn validate(token: &str) -> ValidateTokenRequest {
    ValidateTokenRequest {
        access_token: token.to_owned(),
    }
}

#[tokio::test]
async fn logout_revokes_the_sessions_access_tokens_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let phone = server.register("alice").await?;
    let laptop = client
        .login(chat_proto::auth::v1::LoginRequest {
            username: "alice".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await?
        .into_inner();
    let keys = TokenKeys::new(&Secret::new(JWT_SECRET));
    let phone_sid = keys.verify(&phone.access_token)?.sid;
    let laptop_sid = keys.verify(&laptop.access_token)?.sid;
    assert_ne!(phone_sid, laptop_sid);
    let user_id = identity_of(&phone)?.user_id;
    assert_eq!(
        revoked_sessions(&mut client, &user_id).await?,
        Vec::<String>::new()
    );
    // A refresh keeps the session.
    let phone = client
        .refresh(refresh(&phone.refresh_token))
        .await?
        .into_inner();
    assert_eq!(keys.verify(&phone.access_token)?.sid, phone_sid);

    client
        .logout(LogoutRequest {
            refresh_token: phone.refresh_token.clone(),
            everywhere: false,
        })
        .await?;
    assert_eq!(revoked_sessions(&mut client, &user_id).await?, [phone_sid]);
    let refused = client.validate_token(validate(&phone.access_token)).await;
    assert_eq!(
        codes(refused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    client
        .validate_token(validate(&laptop.access_token))
        .await?;
    client
        .refresh(refresh(&laptop.refresh_token))
        .await?
        .into_inner();
    server.stop().await
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_its_sessions_access_tokens() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let first = server.register("alice").await?;
    let second = client
        .refresh(refresh(&first.refresh_token))
        .await?
        .into_inner();
    client
        .validate_token(validate(&second.access_token))
        .await?;
    let reused = client.refresh(refresh(&first.refresh_token)).await;
    assert_eq!(
        codes(reused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    let refused = client.validate_token(validate(&second.access_token)).await;
    assert_eq!(
        codes(refused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_and_needs_a_live_token() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let first = server.register("alice").await?;
    let other = client
        .login(chat_proto::auth::v1::LoginRequest {
            username: "alice".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await?
        .into_inner();
    let rotated = client
        .refresh(refresh(&first.refresh_token))
        .await?
        .into_inner();
    // A spent token (as a thief may replay) cannot sign the owner out
    // everywhere; neither can a made-up one.
    for token in [first.refresh_token.as_str(), "never issued", ""] {
        let refused = client
            .logout(LogoutRequest {
                refresh_token: token.to_owned(),
                everywhere: true,
            })
            .await;
        assert_eq!(
            codes(refused)?,
            (Code::Unauthenticated, ErrorCode::Unauthorized),
            "{token}"
        );
    }
    // Presenting the spent token above counted as no reuse: the family
    // still works.
    client
        .validate_token(validate(&rotated.access_token))
        .await?;

    client
        .logout(LogoutRequest {
            refresh_token: rotated.refresh_token.clone(),
            everywhere: true,
        })
        .await?;
    for token in [&rotated.access_token, &other.access_token] {
        let refused = client.validate_token(validate(token)).await;
        assert_eq!(
            codes(refused)?,
            (Code::Unauthenticated, ErrorCode::Unauthorized)
        );
    }
    let refused = client.refresh(refresh(&other.refresh_token)).await;
    assert_eq!(
        codes(refused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    let user_id = identity_of(&first)?.user_id;
    assert_eq!(revoked_sessions(&mut client, &user_id).await?.len(), 2);
    // Signing in again starts a session nothing revoked.
    let again = client
        .login(chat_proto::auth::v1::LoginRequest {
            username: "alice".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await?
        .into_inner();
    client.validate_token(validate(&again.access_token)).await?;
    server.stop().await
}

#[tokio::test]
async fn tokens_of_a_previous_key_validate_while_it_is_listed() -> anyhow::Result<()> {
    use chat_common::token::{KeySettings, NamedKey};
    let old_keys = TokenKeys::new(&Secret::new(JWT_SECRET));
    let next = |previous: Vec<NamedKey>| KeySettings {
        secret: Secret::new("the next key"),
        key_id: Some("next".into()),
        previous,
    };
    let with_previous = next(vec![NamedKey {
        id: old_keys.signing_key_id().to_owned(),
        secret: Secret::new(JWT_SECRET),
    }]);
    let server = TestServer::start_with(|config| config.jwt_keys = with_previous).await?;
    let alice = server.register("alice").await?;
    let me = identity_of(&alice)?;
    let mut client = server.client.clone();
    // Issued under the new key only...
    let new_only = TokenKeys::from_settings(&next(Vec::new()));
    assert_eq!(new_only.verify(&alice.access_token)?.sub, me.user_id);
    assert!(old_keys.verify(&alice.access_token).is_err());
    // ...while one under the previous key still validates.
    let old = old_keys.sign(&me, "user", "session", 60)?;
    client.validate_token(validate(&old)).await?;
    server.stop().await?;

    // The previous key removed.
    let server = TestServer::start_with(|config| config.jwt_keys = next(Vec::new())).await?;
    let bob = server.register("bob").await?;
    let bob_id = identity_of(&bob)?;
    let mut client = server.client.clone();
    // Control: the same claims under the current key pass.
    client
        .validate_token(validate(&new_only.sign(&bob_id, "user", "s", 60)?))
        .await?;
    let refused = client
        .validate_token(validate(&old_keys.sign(&bob_id, "user", "s", 60)?))
        .await;
    assert_eq!(
        codes(refused)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

/// One `GetRevokedSessions` answer, asserted whole: each asked id once, in
/// request order; existing users with their row (disabled or not) whether
/// or not a session of theirs is revoked; unknown ids apart.
async fn revoked_sessions_answer_every_asked_user(
    db: &crate::store_contract::TestDb,
) -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.database_url = db.url.clone();
        c.admin_usernames = vec!["root".into()];
    })
    .await?;
    let mut client = server.client.clone();
    let root = server.register("root").await?;
    let alice = server.register("alice").await?;
    let bob_phone = server.register("bob").await?;
    let bob_laptop = client
        .login(chat_proto::auth::v1::LoginRequest {
            username: "bob".into(),
            password: crate::helpers::PASSWORD.into(),
        })
        .await?
        .into_inner();
    let carol = server.register("carol").await?;
    let keys = TokenKeys::new(&Secret::new(JWT_SECRET));

    server
        .admin(&root.access_token)?
        .set_disabled(chat_proto::auth::v1::SetDisabledRequest {
            user: "alice".into(),
            disabled: true,
        })
        .await?;
    client
        .logout(LogoutRequest {
            refresh_token: bob_phone.refresh_token.clone(),
            everywhere: false,
        })
        .await?;

    let user = |auth: &chat_proto::auth::v1::AuthResponse| auth.user.clone().unwrap_or_default();
    let alice_user = chat_proto::auth::v1::User {
        disabled: true,
        ..user(&alice)
    };
    let (alice_id, bob_id, carol_id) =
        (alice_user.id.clone(), user(&bob_phone).id, user(&carol).id);
    // More ids than the store puts in one query, so that the unknown ones
    // span two.
    let unknown: Vec<String> = (0..600).map(|i| format!("no-such-user-{i:03}")).collect();
    let mut asked = vec![carol_id.clone(), unknown[0].clone(), alice_id.clone()];
    asked.extend(unknown.iter().skip(1).cloned());
    asked.extend([bob_id.clone(), carol_id.clone(), unknown[0].clone()]);
    let reply = client
        .get_revoked_sessions(chat_proto::auth::v1::GetRevokedSessionsRequest { user_ids: asked })
        .await?
        .into_inner();

    let entry =
        |user_id: &str, sessions: Vec<String>, user| chat_proto::auth::v1::RevokedSessions {
            user_id: user_id.to_owned(),
            session_ids: sessions,
            user: Some(user),
        };
    assert_eq!(
        reply,
        chat_proto::auth::v1::GetRevokedSessionsResponse {
            users: vec![
                // Enabled, nothing revoked.
                entry(&carol_id, Vec::new(), user(&carol)),
                // Disabled: every session revoked.
                entry(
                    &alice_id,
                    vec![keys.verify(&alice.access_token)?.sid],
                    alice_user
                ),
                // Enabled, one session of two revoked.
                entry(
                    &bob_id,
                    vec![keys.verify(&bob_phone.access_token)?.sid],
                    user(&bob_laptop)
                ),
            ],
            unknown_user_ids: unknown,
        }
    );
    server.stop().await
}

#[tokio::test]
async fn sqlite_revoked_sessions_answer_every_asked_user() -> anyhow::Result<()> {
    let db = crate::store_contract::TestDb::sqlite().await?;
    revoked_sessions_answer_every_asked_user(&db).await?;
    db.drop_database().await
}

#[tokio::test]
async fn postgres_revoked_sessions_answer_every_asked_user() -> anyhow::Result<()> {
    let test = "postgres_revoked_sessions_answer_every_asked_user";
    let Some(db) = crate::store_contract::TestDb::postgres(test).await? else {
        return Ok(());
    };
    let result = revoked_sessions_answer_every_asked_user(&db).await;
    db.drop_database().await?;
    result
}
