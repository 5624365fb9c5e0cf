//! Login throttling per account name and per client address
//! (`x-client-addr`), over gRPC.

use std::time::Duration;

use chat_auth_service::throttle::ThrottleConfig;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::{AuthResponse, LoginRequest};
use tonic::{Code, Request, Status};

use crate::helpers::{PASSWORD, TestServer, codes};

async fn start() -> anyhow::Result<TestServer> {
    TestServer::start_with(|config| {
        config.login_throttle = ThrottleConfig {
            max_failures_per_account: 3,
            max_failures_per_addr: 6,
            window: Duration::from_secs(600),
        };
    })
    .await
}

async fn login(
    server: &TestServer,
    username: &str,
    password: &str,
    addr: Option<&str>,
) -> Result<AuthResponse, Status> {
    let mut request = Request::new(LoginRequest {
        username: username.into(),
        password: password.into(),
    });
    if let Some(addr) = addr {
        chat_common::identity::write_client_addr(request.metadata_mut(), addr);
    }
    server
        .client
        .clone()
        .login(request)
        .await
        .map(|r| r.into_inner())
}

const THROTTLED: (Code, ErrorCode) = (Code::ResourceExhausted, ErrorCode::RateLimited);
const BAD: (Code, ErrorCode) = (Code::Unauthenticated, ErrorCode::Unauthorized);

#[tokio::test]
async fn an_account_is_locked_after_its_failures_even_for_the_right_password() -> anyhow::Result<()>
{
    let server = start().await?;
    server.register("alice").await?;
    for _ in 0..3 {
        assert_eq!(
            codes(login(&server, "alice", "wrong horse", None).await)?,
            BAD
        );
    }
    let refused = login(&server, "Alice", PASSWORD, None).await;
    let message = refused.as_ref().err().map(|s| s.message().to_owned());
    assert_eq!(codes(refused)?, THROTTLED);

    // An unknown name is throttled the same way, with the same words.
    for _ in 0..3 {
        assert_eq!(
            codes(login(&server, "nobody", "wrong horse", None).await)?,
            BAD
        );
    }
    let unknown = login(&server, "nobody", "wrong horse", None).await;
    assert_eq!(
        unknown.as_ref().err().map(|s| s.message().to_owned()),
        message
    );
    assert_eq!(codes(unknown)?, THROTTLED);

    // Other accounts are not affected.
    server.register("bob").await?;
    assert!(login(&server, "bob", PASSWORD, None).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn a_successful_login_resets_the_account() -> anyhow::Result<()> {
    let server = start().await?;
    server.register("alice").await?;
    for _ in 0..2 {
        for _ in 0..2 {
            assert_eq!(
                codes(login(&server, "alice", "wrong horse", None).await)?,
                BAD
            );
        }
        assert!(login(&server, "alice", PASSWORD, None).await.is_ok());
    }
    Ok(())
}

#[tokio::test]
async fn an_address_is_locked_after_failures_across_accounts() -> anyhow::Result<()> {
    let server = start().await?;
    server.register("alice").await?;
    let attacker = Some("198.51.100.9");
    for i in 0..6 {
        let name = format!("guess{i}");
        assert_eq!(
            codes(login(&server, &name, "wrong horse", attacker).await)?,
            BAD
        );
    }
    assert_eq!(
        codes(login(&server, "alice", PASSWORD, attacker).await)?,
        THROTTLED
    );
    // The same account from elsewhere, and calls without an address, pass.
    assert!(
        login(&server, "alice", PASSWORD, Some("198.51.100.10"))
            .await
            .is_ok()
    );
    assert!(login(&server, "alice", PASSWORD, None).await.is_ok());
    Ok(())
}
