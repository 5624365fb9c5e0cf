//! Register, login, change password, update profile.

use chat_common::db::now_ms;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::{
    ChangePasswordRequest, LoginRequest, RefreshRequest, RegisterRequest, UpdateProfileRequest,
};
use tonic::Code;

use crate::helpers::{PASSWORD, TestServer, codes, identity_of};
use chat_auth_service::store::UserStore;

fn register_request(username: &str, password: &str) -> RegisterRequest {
    RegisterRequest {
        username: username.into(),
        password: password.into(),
        display_name: None,
    }
}

#[tokio::test]
async fn register_returns_the_user_and_a_working_token_pair() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let before = chrono_now_s();
    let auth = client
        .register(RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
            display_name: Some("  Alice Ünicode ".into()),
        })
        .await?
        .into_inner();
    let user = auth.user.clone().unwrap_or_default();
    assert_eq!(user.username, "alice");
    assert_eq!(user.display_name, "Alice Ünicode");
    assert_eq!(user.role, "user");
    assert!(!user.disabled);
    assert_eq!(uuid::Uuid::parse_str(&user.id)?.get_version_num(), 7);
    let created = user.created_at.map(|t| t.seconds).unwrap_or_default();
    assert!(
        (before..=before + 5).contains(&created),
        "created_at {created}"
    );
    assert_eq!(auth.expires_in, 900);
    assert_eq!(auth.refresh_token.len(), 43);

    let keys =
        chat_common::token::TokenKeys::new(&chat_common::Secret::new(crate::helpers::JWT_SECRET));
    let claims = keys.verify(&auth.access_token)?;
    assert_eq!(claims.identity(), identity_of(&auth)?);
    assert_eq!(claims.role, "user");
    assert_eq!(claims.exp - claims.iat, 900);

    // The display name defaults to the username, also when blank.
    let bob = server.register("bob").await?;
    assert_eq!(bob.user.map(|u| u.display_name).as_deref(), Some("bob"));
    let carol = client
        .register(RegisterRequest {
            display_name: Some("   ".into()),
            ..register_request("carol", PASSWORD)
        })
        .await?
        .into_inner();
    assert_eq!(carol.user.map(|u| u.display_name).as_deref(), Some("carol"));
    server.stop().await
}

fn chrono_now_s() -> i64 {
    now_ms() / 1000
}

#[tokio::test]
async fn a_taken_username_is_a_conflict() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.register("alice").await?;
    let again = server
        .client
        .clone()
        .register(register_request("alice", "another password"))
        .await;
    assert_eq!(codes(again)?, (Code::AlreadyExists, ErrorCode::Conflict));
    server.stop().await
}

#[tokio::test]
async fn invalid_registrations_name_the_field() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let long_name = "a".repeat(33);
    let long_password = "p".repeat(129);
    let cases: Vec<(RegisterRequest, &str)> = vec![
        (register_request("", PASSWORD), "username"),
        (register_request("ab", PASSWORD), "username"),
        (register_request(&long_name, PASSWORD), "username"),
        (register_request("Alice", PASSWORD), "username"),
        (register_request("al ice", PASSWORD), "username"),
        (register_request("al@ice", PASSWORD), "username"),
        (register_request("ålice", PASSWORD), "username"),
        (register_request("alice", ""), "password"),
        (register_request("alice", "1234567"), "password"),
        (register_request("alice", &long_password), "password"),
        (
            RegisterRequest {
                display_name: Some("x".repeat(65)),
                ..register_request("alice", PASSWORD)
            },
            "display_name",
        ),
        (
            RegisterRequest {
                display_name: Some("bell\u{7}".into()),
                ..register_request("alice", PASSWORD)
            },
            "display_name",
        ),
    ];
    for (request, field) in cases {
        let what = format!("{request:?}");
        let status = match client.register(request).await {
            Ok(_) => anyhow::bail!("accepted {what}"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::InvalidArgument);
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{what}: {}",
            status.message()
        );
    }
    // The boundaries are accepted.
    client.register(register_request("abc", "12345678")).await?;
    client
        .register(register_request(&"z".repeat(32), &"p".repeat(128)))
        .await?;
    client
        .register(register_request("a.b-c_9", PASSWORD))
        .await?;
    server.stop().await
}

#[tokio::test]
async fn login_accepts_the_right_password_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let registered = server.register("alice").await?;

    let auth = client
        .login(LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await?
        .into_inner();
    assert_eq!(auth.user, registered.user);
    assert_ne!(auth.refresh_token, registered.refresh_token);
    assert_eq!(auth.expires_in, 900);

    // Any case of the name finds the (lowercase) user.
    client
        .login(LoginRequest {
            username: "Alice".into(),
            password: PASSWORD.into(),
        })
        .await?;

    let wrong = client
        .login(LoginRequest {
            username: "alice".into(),
            password: "wrong password".into(),
        })
        .await;
    let unknown = client
        .login(LoginRequest {
            username: "nobody".into(),
            password: PASSWORD.into(),
        })
        .await;
    let (wrong, unknown) = (wrong.err(), unknown.err());
    assert_eq!(
        wrong.as_ref().map(|s| s.code()),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        unknown.as_ref().map(|s| s.code()),
        Some(Code::Unauthenticated)
    );
    // Indistinguishable.
    assert_eq!(
        wrong.as_ref().map(|s| s.message()),
        unknown.as_ref().map(|s| s.message())
    );
    let garbage = client
        .login(LoginRequest {
            username: "".into(),
            password: "".into(),
        })
        .await;
    assert_eq!(
        codes(garbage)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in_or_refresh() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;
    let store = server.store().await?;
    assert!(
        store
            .set_disabled(&identity_of(&alice)?.user_id, true, now_ms())
            .await?
    );

    let login = client
        .login(LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;
    let status = login.err();
    assert_eq!(
        status.as_ref().map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        status.as_ref().map(|s| s.message()),
        Some("account disabled")
    );
    // A wrong password still says only "unauthorized".
    let wrong = client
        .login(LoginRequest {
            username: "alice".into(),
            password: "wrong password".into(),
        })
        .await;
    assert_eq!(
        codes(wrong)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    // Disabling revoked the refresh tokens; refreshing says why.
    let refresh = client
        .refresh(RefreshRequest {
            refresh_token: alice.refresh_token.clone(),
        })
        .await;
    let status = refresh.err();
    assert_eq!(
        status
            .as_ref()
            .map(|s| (s.code(), ErrorCode::from_status(s), s.message())),
        Some((
            Code::PermissionDenied,
            ErrorCode::Forbidden,
            "account disabled"
        ))
    );
    // Enabled again, the revoked token stays spent: a new login is needed.
    assert!(
        store
            .set_disabled(&identity_of(&alice)?.user_id, false, now_ms())
            .await?
    );
    let refresh = client
        .refresh(RefreshRequest {
            refresh_token: alice.refresh_token.clone(),
        })
        .await;
    assert_eq!(
        codes(refresh)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}

#[tokio::test]
async fn change_password_checks_the_old_one_and_ends_refresh_sessions() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;
    let me = identity_of(&alice)?;
    let new_password = "new password 123";

    let wrong_old = client
        .change_password(me.request(ChangePasswordRequest {
            old_password: "not my password".into(),
            new_password: new_password.into(),
        }))
        .await;
    assert_eq!(
        codes(wrong_old)?,
        (Code::PermissionDenied, ErrorCode::Forbidden)
    );

    let bad_new = client
        .change_password(me.request(ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: "short".into(),
        }))
        .await
        .err();
    assert_eq!(
        bad_new.as_ref().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    assert!(bad_new.is_some_and(|s| s.message().starts_with("new_password:")));

    // Without an acting user.
    let anonymous = client
        .change_password(ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: new_password.into(),
        })
        .await;
    assert_eq!(
        codes(anonymous)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );

    client
        .change_password(me.request(ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: new_password.into(),
        }))
        .await?;

    let old = client
        .login(LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;
    assert_eq!(
        codes(old)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    let fresh = client
        .login(LoginRequest {
            username: "alice".into(),
            password: new_password.into(),
        })
        .await?
        .into_inner();
    let revoked = client
        .refresh(RefreshRequest {
            refresh_token: alice.refresh_token.clone(),
        })
        .await;
    assert_eq!(
        codes(revoked)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    // The session opened after the change lives on.
    client
        .refresh(RefreshRequest {
            refresh_token: fresh.refresh_token,
        })
        .await?;
    server.stop().await
}

#[tokio::test]
async fn update_profile_changes_the_display_name_of_the_acting_user() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?;
    let me = identity_of(&alice)?;

    let user = client
        .update_profile(me.request(UpdateProfileRequest {
            display_name: "  Alice Liddell ".into(),
        }))
        .await?
        .into_inner();
    assert_eq!(user.display_name, "Alice Liddell");
    assert_eq!(user.username, "alice");
    assert_eq!(Some(&user.id), alice.user.as_ref().map(|u| &u.id));
    let fetched = client
        .get_user(chat_proto::auth::v1::GetUserRequest {
            user_id: me.user_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(fetched, user);

    for bad in ["", "   ", &"x".repeat(65)] {
        let result = client
            .update_profile(me.request(UpdateProfileRequest {
                display_name: bad.into(),
            }))
            .await;
        assert_eq!(
            codes(result)?,
            (Code::InvalidArgument, ErrorCode::InvalidArgument)
        );
    }
    let anonymous = client
        .update_profile(UpdateProfileRequest {
            display_name: "x".into(),
        })
        .await;
    assert_eq!(
        codes(anonymous)?,
        (Code::Unauthenticated, ErrorCode::Unauthorized)
    );
    server.stop().await
}
