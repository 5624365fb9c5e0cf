//! The `UserStore` contract, run against every backend: SQLite always,
//! PostgreSQL when reachable (a uniquely named database per test).
//!
//! PostgreSQL is found at `TEST_POSTGRES_URL` (default
//! `postgres://root@127.0.0.1:5432/postgres`). When it is unreachable the
//! PostgreSQL tests print a SKIP line and pass, except under `CI`, where
//! they fail.

use std::sync::Arc;

use anyhow::Context;
use chat_auth_service::domain::{DisplayName, PasswordHash, RefreshToken, Role, Username};
use chat_auth_service::store::{
    NewRefreshToken, NewUser, Rotation, SqlUserStore, StoreError, TokenSession, UserStore,
    migrations,
};
use chat_common::db::now_ms;
use sqlx::{Connection, Executor};

const DEFAULT_POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

/// A store on a database of its own, dropped afterwards. Also used by API
/// tests that run on both backends (through `url`).
pub struct TestDb {
    store: Arc<dyn UserStore>,
    pub url: String,
    pool: sqlx::AnyPool,
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) of a PostgreSQL database to drop.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> anyhow::Result<TestDb> {
        let dir = tempfile::tempdir()?;
        let url = chat_common::db::sqlite_url(dir.path(), "auth.db");
        let (pool, _) = chat_common::db::connect(&url, &migrations()).await?;
        Ok(TestDb {
            store: Arc::new(SqlUserStore::new(pool.clone())),
            url,
            pool,
            _dir: Some(dir),
            postgres: None,
        })
    }

    /// `None` (after a SKIP line) when PostgreSQL is unreachable outside CI.
    pub async fn postgres(test: &str) -> anyhow::Result<Option<TestDb>> {
        sqlx::any::install_default_drivers();
        let admin_url =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let mut admin = match sqlx::AnyConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(error) => {
                let help = format!(
                    "PostgreSQL is not reachable at {admin_url} ({error}). Start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or point TEST_POSTGRES_URL at a server that accepts CREATE DATABASE"
                );
                if std::env::var_os("CI").is_some() {
                    anyhow::bail!(help);
                }
                eprintln!("SKIP {test} on PostgreSQL !!! {help}");
                return Ok(None);
            }
        };
        let name = format!("auth_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        admin.close().await?;
        let url = database_url(&admin_url, &name);
        let (pool, _) = chat_common::db::connect(&url, &migrations()).await?;
        Ok(Some(TestDb {
            store: Arc::new(SqlUserStore::new(pool.clone())),
            url,
            pool,
            _dir: None,
            postgres: Some((admin_url, name)),
        }))
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some((admin_url, name)) = &self.postgres {
            let mut admin = sqlx::AnyConnection::connect(admin_url).await?;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Runs each contract test on SQLite and on PostgreSQL.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() -> anyhow::Result<()> {
                    let db = super::TestDb::sqlite().await?;
                    super::$test(db.store.as_ref()).await?;
                    db.drop_database().await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() -> anyhow::Result<()> {
                    let Some(db) = super::TestDb::postgres(stringify!($test)).await? else {
                        return Ok(());
                    };
                    let result = super::$test(db.store.as_ref()).await;
                    db.drop_database().await?;
                    result
                }
            )*
        }
    };
}

contract!(
    users_are_created_once_per_name,
    users_are_found_by_id_and_name,
    search_is_by_prefix_in_byte_order,
    lists_are_paged_after_a_username,
    refresh_tokens_know_their_owner,
    refresh_tokens_know_their_session,
    revoked_sessions_are_listed_while_their_access_tokens_may_run,
    profile_password_role_and_disabled_updates,
    rotation_spends_once_and_reuse_revokes_the_family,
    expired_and_revoked_tokens_do_not_rotate,
    password_change_revokes_every_token_of_the_user,
);

fn new_user(name: &str) -> anyhow::Result<NewUser> {
    let username = Username::parse(name)?;
    Ok(NewUser {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: DisplayName::from_username(&username),
        username,
        password_hash: PasswordHash::from_stored(format!("hash-of-{name}")),
        role: Role::User,
        created_at_ms: 1_700_000_000_123,
    })
}

fn new_token(
    user_id: &str,
    family_id: &str,
    expires_at_ms: i64,
) -> (RefreshToken, NewRefreshToken) {
    let token = RefreshToken::generate();
    let record = NewRefreshToken {
        hash: token.hash(),
        family_id: family_id.to_owned(),
        user_id: user_id.to_owned(),
        expires_at_ms,
        created_at_ms: now_ms(),
    };
    (token, record)
}

const HOUR_MS: i64 = 3_600_000;

async fn users_are_created_once_per_name(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    assert_eq!(alice.username.as_str(), "alice");
    assert_eq!(alice.display_name.as_str(), "alice");
    assert!(!alice.disabled);
    let again = store.create_user(new_user("alice")?).await;
    assert!(matches!(again, Err(StoreError::UsernameTaken)), "{again:?}");
    store.create_user(new_user("alice2")?).await?;
    Ok(())
}

async fn users_are_found_by_id_and_name(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let bob = store.create_user(new_user("bob")?).await?;
    assert_eq!(store.user_by_id(&alice.id).await?, Some(alice.clone()));
    assert_eq!(store.user_by_id("nope").await?, None);

    let (user, hash) = store
        .credentials_by_username(&Username::parse("bob")?)
        .await?
        .context("bob by name")?;
    assert_eq!(user, bob);
    assert_eq!(hash.as_str(), "hash-of-bob");
    assert!(
        store
            .credentials_by_username(&Username::parse("carol")?)
            .await?
            .is_none()
    );
    let (user, _) = store
        .credentials_by_id(&alice.id)
        .await?
        .context("alice by id")?;
    assert_eq!(user.created_at_ms, 1_700_000_000_123);

    let mut found = store
        .users_by_ids(&[bob.id.clone(), "nope".into(), alice.id.clone()])
        .await?;
    found.sort_by(|a, b| a.username.cmp(&b.username));
    assert_eq!(found, vec![alice, bob]);
    assert!(store.users_by_ids(&[]).await?.is_empty());
    // More ids than one IN list holds.
    let many: Vec<String> = (0..1200).map(|i| format!("id-{i}")).collect();
    assert!(store.users_by_ids(&many).await?.is_empty());
    Ok(())
}

async fn search_is_by_prefix_in_byte_order(store: &dyn UserStore) -> anyhow::Result<()> {
    for name in [
        "bob", "al_x", "alice", "al.ex", "alan", "al-y", "alx", "al9",
    ] {
        store.create_user(new_user(name)?).await?;
    }
    let names = async |prefix: &str, limit: u32| -> anyhow::Result<Vec<String>> {
        Ok(store
            .search_users(prefix, limit)
            .await?
            .into_iter()
            .map(|u| u.username.into_string())
            .collect())
    };
    // Byte order: '-' < '.' < digits < '_' < letters.
    assert_eq!(
        names("al", 20).await?,
        ["al-y", "al.ex", "al9", "al_x", "alan", "alice", "alx"]
    );
    assert_eq!(names("al", 3).await?, ["al-y", "al.ex", "al9"]);
    assert_eq!(names("al_", 20).await?, ["al_x"]);
    assert_eq!(names("%", 20).await?, Vec::<String>::new());
    assert_eq!(names("b", 20).await?, ["bob"]);
    assert_eq!(names("", 100).await?.len(), 8);
    Ok(())
}

async fn lists_are_paged_after_a_username(store: &dyn UserStore) -> anyhow::Result<()> {
    for name in ["bob", "al_x", "alice", "al-y", "zed"] {
        store.create_user(new_user(name)?).await?;
    }
    let names = async |prefix: &str, after: &str, limit: u32| -> anyhow::Result<Vec<String>> {
        Ok(store
            .list_users(prefix, after, limit)
            .await?
            .into_iter()
            .map(|u| u.username.into_string())
            .collect())
    };
    assert_eq!(names("", "", 3).await?, ["al-y", "al_x", "alice"]);
    assert_eq!(names("", "alice", 3).await?, ["bob", "zed"]);
    assert_eq!(names("al", "al-y", 10).await?, ["al_x", "alice"]);
    // A cursor before the prefix range starts at the range.
    assert_eq!(names("b", "a", 10).await?, ["bob"]);
    assert_eq!(names("", "zed", 10).await?, Vec::<String>::new());
    Ok(())
}

async fn refresh_tokens_know_their_owner(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let (token, record) = new_token(&alice.id, "family", now_ms() + HOUR_MS);
    store.insert_refresh_token(record).await?;
    assert_eq!(
        store.refresh_token_owner(&token.hash()).await?,
        Some(alice.id.clone())
    );
    // Revoked tokens still have an owner; unknown ones have none.
    assert!(store.set_disabled(&alice.id, true, now_ms()).await?);
    assert_eq!(
        store.refresh_token_owner(&token.hash()).await?,
        Some(alice.id)
    );
    assert_eq!(
        store
            .refresh_token_owner(&RefreshToken::generate().hash())
            .await?,
        None
    );
    Ok(())
}

async fn profile_password_role_and_disabled_updates(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let renamed = store
        .update_display_name(&alice.id, &DisplayName::parse("Alice Ünicode 李")?)
        .await?
        .context("renamed")?;
    assert_eq!(renamed.display_name.as_str(), "Alice Ünicode 李");
    assert_eq!(store.user_by_id(&alice.id).await?, Some(renamed));
    assert_eq!(
        store
            .update_display_name("nope", &DisplayName::parse("x")?)
            .await?,
        None
    );

    assert!(store.set_role(&alice.id, Role::Admin).await?);
    assert!(!store.set_role("nope", Role::Admin).await?);
    assert!(store.set_disabled(&alice.id, true, now_ms()).await?);
    let user = store.user_by_id(&alice.id).await?.context("alice")?;
    assert_eq!((user.role, user.disabled), (Role::Admin, true));
    assert!(store.set_disabled(&alice.id, false, now_ms()).await?);
    assert!(
        !store
            .user_by_id(&alice.id)
            .await?
            .context("alice")?
            .disabled
    );
    assert!(!store.set_disabled("nope", true, now_ms()).await?);

    let new_hash = PasswordHash::from_stored("new-hash".into());
    assert!(store.set_password(&alice.id, &new_hash, now_ms()).await?);
    let (_, hash) = store.credentials_by_id(&alice.id).await?.context("alice")?;
    assert_eq!(hash, new_hash);
    assert!(!store.set_password("nope", &new_hash, now_ms()).await?);
    Ok(())
}

async fn rotation_spends_once_and_reuse_revokes_the_family(
    store: &dyn UserStore,
) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let now = now_ms();
    let (first, record) = new_token(&alice.id, "family-1", now + HOUR_MS);
    store.insert_refresh_token(record).await?;
    let (other, record) = new_token(&alice.id, "family-2", now + HOUR_MS);
    store.insert_refresh_token(record).await?;

    let second = RefreshToken::generate();
    let rotation = store
        .rotate_refresh_token(&first.hash(), &second.hash(), now + HOUR_MS, now)
        .await?;
    assert_eq!(
        rotation,
        Rotation::Rotated {
            user_id: alice.id.clone(),
            family_id: "family-1".into()
        }
    );
    let third = RefreshToken::generate();
    assert!(matches!(
        store
            .rotate_refresh_token(&second.hash(), &third.hash(), now + HOUR_MS, now)
            .await?,
        Rotation::Rotated { .. }
    ));

    // Reuse of the first: the family goes, the token offered alongside is
    // not stored.
    let unused = RefreshToken::generate();
    assert_eq!(
        store
            .rotate_refresh_token(&first.hash(), &unused.hash(), now + HOUR_MS, now)
            .await?,
        Rotation::Reused {
            family_id: "family-1".into()
        }
    );
    for dead in [&third, &unused] {
        let next = RefreshToken::generate();
        assert_eq!(
            store
                .rotate_refresh_token(&dead.hash(), &next.hash(), now + HOUR_MS, now)
                .await?,
            Rotation::Invalid
        );
    }
    // Another family lives on.
    let next = RefreshToken::generate();
    assert!(matches!(
        store
            .rotate_refresh_token(&other.hash(), &next.hash(), now + HOUR_MS, now)
            .await?,
        Rotation::Rotated { .. }
    ));
    Ok(())
}

async fn refresh_tokens_know_their_session(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let now = now_ms();
    let (first, record) = new_token(&alice.id, "family", now + HOUR_MS);
    store.insert_refresh_token(record).await?;
    let session = |live| {
        Some(TokenSession {
            user_id: alice.id.clone(),
            family_id: "family".into(),
            live,
        })
    };
    assert_eq!(
        store.refresh_token_session(&first.hash(), now).await?,
        session(true)
    );
    // Past its expiry, spent, or revoked: the same session, not live.
    assert_eq!(
        store
            .refresh_token_session(&first.hash(), now + HOUR_MS)
            .await?,
        session(false)
    );
    let second = RefreshToken::generate();
    store
        .rotate_refresh_token(&first.hash(), &second.hash(), now + HOUR_MS, now)
        .await?;
    assert_eq!(
        store.refresh_token_session(&first.hash(), now).await?,
        session(false)
    );
    assert_eq!(
        store.refresh_token_session(&second.hash(), now).await?,
        session(true)
    );
    assert!(!store.is_session_revoked("family").await?);
    store.revoke_family("family", now).await?;
    assert_eq!(
        store.refresh_token_session(&second.hash(), now).await?,
        session(false)
    );
    assert!(store.is_session_revoked("family").await?);
    assert!(!store.is_session_revoked("no-such-family").await?);
    assert_eq!(
        store
            .refresh_token_session(&RefreshToken::generate().hash(), now)
            .await?,
        None
    );
    Ok(())
}

/// `users_with_revoked_sessions` as `(user id, disabled, sorted sessions)`,
/// sorted by user id.
async fn revoked(
    store: &dyn UserStore,
    ids: &[String],
    issued_since_ms: i64,
) -> anyhow::Result<Vec<(String, bool, Vec<String>)>> {
    let mut answer: Vec<_> = store
        .users_with_revoked_sessions(ids, issued_since_ms)
        .await?
        .into_iter()
        .map(|entry| {
            let mut sessions = entry.revoked;
            sessions.sort();
            (entry.user.id, entry.user.disabled, sessions)
        })
        .collect();
    answer.sort();
    Ok(answer)
}

async fn revoked_sessions_are_listed_while_their_access_tokens_may_run(
    store: &dyn UserStore,
) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let bob = store.create_user(new_user("bob")?).await?;
    let now = now_ms();
    // An old session, a recent one, a live one; and bob's.
    let (_, mut old) = new_token(&alice.id, "old", now + HOUR_MS);
    old.created_at_ms = now - HOUR_MS;
    store.insert_refresh_token(old).await?;
    for (user, family) in [(&alice, "recent"), (&alice, "live"), (&bob, "bobs")] {
        let (_, record) = new_token(&user.id, family, now + HOUR_MS);
        store.insert_refresh_token(record).await?;
    }
    // Unknown ids are left out; an id asked twice is answered once.
    let ids = vec![
        alice.id.clone(),
        "no-such-user".to_owned(),
        bob.id.clone(),
        alice.id.clone(),
    ];
    let (a, b) = (alice.id.clone(), bob.id.clone());
    let mut both = [
        (a.clone(), false, Vec::new()),
        (b.clone(), false, Vec::new()),
    ];
    both.sort();
    assert_eq!(revoked(store, &ids, now - 1000).await?, both);

    store.revoke_family("old", now).await?;
    store.revoke_family("recent", now).await?;
    // The old session issued nothing since the cut-off: its access tokens
    // have expired, so it is left out.
    let mut both = [
        (a.clone(), false, vec!["recent".to_owned()]),
        (b.clone(), false, Vec::new()),
    ];
    both.sort();
    assert_eq!(revoked(store, &ids, now - 1000).await?, both);
    assert_eq!(
        revoked(store, std::slice::from_ref(&bob.id), now - 1000).await?,
        [(b.clone(), false, Vec::new())]
    );
    // A whole user entry, not only its id.
    let [entry] = &store
        .users_with_revoked_sessions(std::slice::from_ref(&bob.id), now - 1000)
        .await?[..]
    else {
        anyhow::bail!("not one entry for bob");
    };
    assert_eq!(entry.user, bob);

    // Disabling revokes every session: all but the old one are listed.
    assert!(store.set_disabled(&alice.id, true, now).await?);
    let mut both = [
        (
            a.clone(),
            true,
            vec!["live".to_owned(), "recent".to_owned()],
        ),
        (b.clone(), false, Vec::new()),
    ];
    both.sort();
    assert_eq!(revoked(store, &ids, now - 1000).await?, both);
    // A disabled user is listed even with no revoked session left to show.
    assert_eq!(
        revoked(store, std::slice::from_ref(&alice.id), now + HOUR_MS).await?,
        [(a.clone(), true, Vec::new())]
    );
    assert_eq!(
        revoked(store, &["no-such-user".to_owned()], now - 1000).await?,
        []
    );
    assert!(store.is_session_revoked("old").await?);
    assert!(!store.is_session_revoked("bobs").await?);
    Ok(())
}

async fn expired_and_revoked_tokens_do_not_rotate(store: &dyn UserStore) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let now = now_ms();
    let (expired, record) = new_token(&alice.id, "f1", now - 1);
    store.insert_refresh_token(record).await?;
    let (revoked, record) = new_token(&alice.id, "f2", now + HOUR_MS);
    store.insert_refresh_token(record).await?;
    store.revoke_family("f2", now).await?;
    store.revoke_family("f2", now).await?;
    store.revoke_family("unknown", now).await?;

    for token in [&expired, &revoked, &RefreshToken::presented("unknown")] {
        let next = RefreshToken::generate();
        assert_eq!(
            store
                .rotate_refresh_token(&token.hash(), &next.hash(), now + HOUR_MS, now)
                .await?,
            Rotation::Invalid
        );
    }

    let (live, record) = new_token(&alice.id, "f3", now + HOUR_MS);
    store.insert_refresh_token(record).await?;
    store.revoke_family("f3", now).await?;
    let next = RefreshToken::generate();
    assert_eq!(
        store
            .rotate_refresh_token(&live.hash(), &next.hash(), now + HOUR_MS, now)
            .await?,
        Rotation::Invalid
    );
    Ok(())
}

async fn password_change_revokes_every_token_of_the_user(
    store: &dyn UserStore,
) -> anyhow::Result<()> {
    let alice = store.create_user(new_user("alice")?).await?;
    let bob = store.create_user(new_user("bob")?).await?;
    let now = now_ms();
    let mut alice_tokens = Vec::new();
    for family in ["a1", "a2"] {
        let (token, record) = new_token(&alice.id, family, now + HOUR_MS);
        store.insert_refresh_token(record).await?;
        alice_tokens.push(token);
    }
    let (bob_token, record) = new_token(&bob.id, "b1", now + HOUR_MS);
    store.insert_refresh_token(record).await?;

    store
        .set_password(&alice.id, &PasswordHash::from_stored("h".into()), now)
        .await?;
    for token in &alice_tokens {
        let next = RefreshToken::generate();
        assert_eq!(
            store
                .rotate_refresh_token(&token.hash(), &next.hash(), now + HOUR_MS, now)
                .await?,
            Rotation::Invalid
        );
    }
    let next = RefreshToken::generate();
    assert!(matches!(
        store
            .rotate_refresh_token(&bob_token.hash(), &next.hash(), now + HOUR_MS, now)
            .await?,
        Rotation::Rotated { .. }
    ));
    Ok(())
}

#[test]
fn the_test_database_url_keeps_credentials_and_options() {
    assert_eq!(
        database_url("postgres://root@127.0.0.1:5432/postgres", "x"),
        "postgres://root@127.0.0.1:5432/x"
    );
    assert_eq!(
        database_url("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        database_url("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
