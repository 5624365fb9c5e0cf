//! GetUser, GetUsers, SearchUsers.

use chat_proto::ErrorCode;
use chat_proto::auth::v1::{GetUserRequest, GetUsersRequest, SearchUsersRequest};
use tonic::Code;

use crate::helpers::{TestServer, codes};

#[tokio::test]
async fn get_user_and_get_users() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    let alice = server.register("alice").await?.user.unwrap_or_default();
    let bob = server.register("bob").await?.user.unwrap_or_default();

    let fetched = client
        .get_user(GetUserRequest {
            user_id: bob.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(fetched, bob);

    let missing = client
        .get_user(GetUserRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert_eq!(codes(missing)?, (Code::NotFound, ErrorCode::NotFound));

    // Request order, unknown ids skipped, duplicates once.
    let users = client
        .get_users(GetUsersRequest {
            user_ids: vec![
                bob.id.clone(),
                "unknown".into(),
                alice.id.clone(),
                bob.id.clone(),
            ],
        })
        .await?
        .into_inner()
        .users;
    assert_eq!(users, vec![bob, alice]);

    let none = client
        .get_users(GetUsersRequest { user_ids: vec![] })
        .await?;
    assert!(none.into_inner().users.is_empty());
    server.stop().await
}

#[tokio::test]
async fn search_users_by_prefix_in_username_order() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    for name in ["bob", "al_x", "alice", "al.ex", "alan", "alx", "zed"] {
        server.register(name).await?;
    }
    let mut search = async |prefix: &str, limit: u32| -> anyhow::Result<Vec<String>> {
        Ok(client
            .search_users(SearchUsersRequest {
                prefix: prefix.into(),
                limit,
            })
            .await?
            .into_inner()
            .users
            .into_iter()
            .map(|u| u.username)
            .collect())
    };
    assert_eq!(
        search("al", 0).await?,
        ["al.ex", "al_x", "alan", "alice", "alx"]
    );
    assert_eq!(search("AL", 2).await?, ["al.ex", "al_x"]);
    // LIKE wildcards are plain characters.
    assert_eq!(search("al_", 0).await?, ["al_x"]);
    assert_eq!(search("%", 0).await?, Vec::<String>::new());
    assert_eq!(search("ali", 0).await?, ["alice"]);
    assert_eq!(search("alice", 0).await?, ["alice"]);
    assert_eq!(search("alicex", 0).await?, Vec::<String>::new());
    assert_eq!(
        search("", 0).await?,
        ["al.ex", "al_x", "alan", "alice", "alx", "bob", "zed"]
    );
    assert_eq!(search("", 1000).await?.len(), 7);
    assert_eq!(search(&"a".repeat(40), 0).await?, Vec::<String>::new());
    server.stop().await
}

#[tokio::test]
async fn search_limits_default_to_20_and_cap_at_100() -> anyhow::Result<()> {
    use chat_auth_service::domain::{DisplayName, PasswordHash, Role, Username};
    use chat_auth_service::store::{NewUser, UserStore};
    let server = TestServer::start().await?;
    let mut client = server.client.clone();
    // Through the store: 120 password hashes over gRPC would be slow.
    let store = server.store().await?;
    for i in 0..120 {
        let username = Username::parse(&format!("user{i:03}"))?;
        store
            .create_user(NewUser {
                id: uuid::Uuid::now_v7().to_string(),
                display_name: DisplayName::from_username(&username),
                username,
                password_hash: PasswordHash::from_stored("x".into()),
                role: Role::User,
                created_at_ms: 0,
            })
            .await?;
    }
    let count = async |client: &mut crate::helpers::Client, limit| -> anyhow::Result<Vec<String>> {
        Ok(client
            .search_users(SearchUsersRequest {
                prefix: "user".into(),
                limit,
            })
            .await?
            .into_inner()
            .users
            .into_iter()
            .map(|u| u.username)
            .collect())
    };
    let default = count(&mut client, 0).await?;
    assert_eq!(default.len(), 20);
    assert_eq!(default.first().map(String::as_str), Some("user000"));
    assert_eq!(default.last().map(String::as_str), Some("user019"));
    assert_eq!(count(&mut client, 500).await?.len(), 100);
    assert_eq!(count(&mut client, 7).await?.len(), 7);
    server.stop().await
}
