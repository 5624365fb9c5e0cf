//! Connecting to a service's SQL database. One code path serves SQLite (the
//! embedded mode) and PostgreSQL (the distributed mode): `sqlx::AnyPool`
//! with `$1` placeholders and types both understand (BIGINT, TEXT, BLOB /
//! BYTEA). Each service embeds one migration set per backend; the right one
//! runs at start-up (on PostgreSQL under sqlx's advisory lock, so replicas
//! may start together).

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use std::str::FromStr;

/// Which SQL engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres:, got {url:?}")
        }
    }
}

/// The migration sets of one service, one per backend.
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// Whether `error` means the database could not be reached or went away
/// (rather than rejecting the request): no connection within the pool's
/// acquire timeout, a broken connection, or the server shutting down or
/// starting up (SQLSTATE class 08, 57P01..57P03).
pub fn is_connection_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Connections of a PostgreSQL pool: a few per core of this process's
/// two, so that statements of one call overlap the round trips of others
/// without the server switching between many backends.
pub const POSTGRES_CONNECTIONS: usize = 8;

/// A migrated pool on `url`.
///
/// SQLite gets one connection: SQLite allows one writer at a time, and a
/// single connection keeps transactions from failing with SQLITE_BUSY when
/// two of them try to upgrade to writing. WAL journaling with
/// `synchronous=FULL` makes every acknowledged commit survive a power cut.
pub async fn connect(url: &str, migrations: &Migrations) -> anyhow::Result<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url)?;
    create_sqlite_dir(url)?;
    let options = AnyConnectOptions::from_str(url).context("invalid DATABASE_URL")?;
    let pool = match backend {
        Backend::Sqlite => {
            AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
        }
        Backend::Postgres => {
            AnyPoolOptions::new()
                .max_connections(POSTGRES_CONNECTIONS as u32)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_with(options)
                .await
        }
    }
    .with_context(|| format!("cannot connect to the {backend:?} database"))?;
    let migrator = match backend {
        Backend::Sqlite => migrations.sqlite,
        Backend::Postgres => migrations.postgres,
    };
    migrator
        .run(&pool)
        .await
        .context("database migration failed")?;
    Ok((pool, backend))
}

/// SQLite creates a missing database file but not its directory.
fn create_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(());
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(()); // in memory
    }
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the database directory {}", dir.display()))?;
    }
    Ok(())
}

/// A SQLite URL for a database file in `dir`, created when missing.
pub fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(name).display())
}

/// Milliseconds since the Unix epoch, the one time representation in every
/// table (BIGINT works the same on both backends).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn ms_to_datetime(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A health probe of `pool`'s database: a round trip on a pooled
/// connection, so a lost server or a dropped database shows up.
pub fn probe(pool: AnyPool) -> crate::grpc::Probe {
    crate::grpc::Probe::new("database", move || {
        let pool = pool.clone();
        async move {
            pool.execute("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
}
