//! [`UserStore`] over `sqlx::AnyPool`: one code path for SQLite and
//! PostgreSQL. Only TEXT and BIGINT columns, `$n` placeholders, and
//! statements both dialects accept (`ON CONFLICT ... DO NOTHING`,
//! `RETURNING`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use async_trait::async_trait;
use chat_common::db::Migrations;
use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use super::{
    NewRefreshToken, NewUser, Rotation, StoreError, TokenSession, UserSessions, UserStore,
};
use crate::domain::{DisplayName, PasswordHash, RefreshTokenHash, Role, User, Username};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// The migration sets of this service, for `chat_common::db::connect`.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: &SQLITE,
        postgres: &POSTGRES,
    }
}

const USER_COLUMNS: &str = "id, username, display_name, role, disabled, created_at";

/// At most this many ids go into one `IN (...)` list (PostgreSQL allows
/// 65535 bind parameters, SQLite 32766).
const IDS_PER_QUERY: usize = 500;

#[derive(Debug, Clone)]
pub struct SqlUserStore {
    pool: AnyPool,
}

impl SqlUserStore {
    /// A store on a pool already migrated with [`migrations`].
    pub fn new(pool: AnyPool) -> SqlUserStore {
        SqlUserStore { pool }
    }
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let id: String = row.try_get("id")?;
    let username: String = row.try_get("username")?;
    let display_name: String = row.try_get("display_name")?;
    let role: String = row.try_get("role")?;
    let disabled: i64 = row.try_get("disabled")?;
    let created_at_ms: i64 = row.try_get("created_at")?;
    Ok(User {
        username: Username::parse(&username)
            .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?,
        display_name: DisplayName::parse(&display_name)
            .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("user {id}: unknown role {role:?}")))?,
        disabled: disabled != 0,
        created_at_ms,
        id,
    })
}

fn credentials_from_row(row: &AnyRow) -> Result<(User, PasswordHash), StoreError> {
    let hash: String = row.try_get("password_hash")?;
    Ok((user_from_row(row)?, PasswordHash::from_stored(hash)))
}

#[async_trait]
impl UserStore for SqlUserStore {
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %user.id))]
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, username, display_name, password_hash, role, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(user.username.as_str())
        .bind(user.display_name.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.role.as_str())
        .bind(user.created_at_ms)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::UsernameTaken);
        }
        Ok(User {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            role: user.role,
            disabled: false,
            created_at_ms: user.created_at_ms,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id))]
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, role, disabled, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = ids.len()))]
    async fn users_by_ids(&self, ids: &[String]) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            // Only generated placeholders are spliced in; the ids are bound.
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                users.push(user_from_row(&row)?);
            }
        }
        Ok(users)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn credentials_by_username(
        &self,
        username: &Username,
    ) -> Result<Option<(User, PasswordHash)>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, role, disabled, created_at, password_hash \
             FROM users WHERE username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(credentials_from_row)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id))]
    async fn credentials_by_id(
        &self,
        id: &str,
    ) -> Result<Option<(User, PasswordHash)>, StoreError> {
        sqlx::query(
            "SELECT id, username, display_name, role, disabled, created_at, password_hash \
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(credentials_from_row)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit))]
    async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<User>, StoreError> {
        // A range instead of LIKE: no wildcards to escape, and an index
        // range scan. Both backends compare usernames byte-wise (SQLite's
        // BINARY collation, `COLLATE "C"` on PostgreSQL), and U+10FFFF sorts
        // after every character a username can hold.
        let upper = format!("{prefix}{}", char::MAX);
        let rows = sqlx::query(
            "SELECT id, username, display_name, role, disabled, created_at FROM users \
             WHERE username >= $1 AND username < $2 \
             ORDER BY username LIMIT $3",
        )
        .bind(prefix)
        .bind(upper)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit))]
    async fn list_users(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        // The same byte-wise range as `search_users`, cut below at `after`.
        let upper = format!("{prefix}{}", char::MAX);
        let rows = sqlx::query(
            "SELECT id, username, display_name, role, disabled, created_at FROM users \
             WHERE username >= $1 AND username < $2 AND username > $3 \
             ORDER BY username LIMIT $4",
        )
        .bind(prefix)
        .bind(upper)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id))]
    async fn update_display_name(
        &self,
        id: &str,
        display_name: &DisplayName,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "UPDATE users SET display_name = $2 WHERE id = $1 \
             RETURNING id, username, display_name, role, disabled, created_at",
        )
        .bind(id)
        .bind(display_name.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id))]
    async fn set_password(
        &self,
        id: &str,
        hash: &PasswordHash,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(hash.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        revoke_user_tokens(&mut tx, id, now_ms).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id, disabled))]
    async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(disabled))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        if disabled {
            revoke_user_tokens(&mut tx, id, now_ms).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %id, role = role.as_str()))]
    async fn set_role(&self, id: &str, role: Role) -> Result<bool, StoreError> {
        let updated = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(id)
            .bind(role.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated > 0)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %token.user_id, family_id = %token.family_id))]
    async fn insert_refresh_token(&self, token: NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.hash.as_str())
        .bind(token.family_id.as_str())
        .bind(token.user_id.as_str())
        .bind(token.expires_at_ms)
        .bind(token.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn rotate_refresh_token(
        &self,
        presented: &RefreshTokenHash,
        next: &RefreshTokenHash,
        next_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Spend the token only if it is live. The conditional UPDATE is the
        // compare-and-set: of two concurrent refreshes with one token, the
        // second sees it spent and is treated as reuse.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING user_id, family_id",
        )
        .bind(presented.as_str())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = spent {
            let user_id: String = row.try_get("user_id")?;
            let family_id: String = row.try_get("family_id")?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(next.as_str())
            .bind(family_id.as_str())
            .bind(user_id.as_str())
            .bind(next_expires_at_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id, family_id });
        }

        let known =
            sqlx::query("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(presented.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = known else {
            return Ok(Rotation::Invalid);
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        if used_at.is_none() {
            // Expired or revoked, never spent.
            return Ok(Rotation::Invalid);
        }
        let family_id: String = row.try_get("family_id")?;
        revoke_family(&mut tx, &family_id, now_ms).await?;
        tx.commit().await?;
        Ok(Rotation::Reused { family_id })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn refresh_token_session(
        &self,
        hash: &RefreshTokenHash,
        now_ms: i64,
    ) -> Result<Option<TokenSession>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, family_id, used_at, revoked_at, expires_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Ok(Some(TokenSession {
            user_id: row.try_get("user_id")?,
            family_id: row.try_get("family_id")?,
            live: used_at.is_none() && revoked_at.is_none() && expires_at > now_ms,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %user_id))]
    async fn revoke_user_sessions(&self, user_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        revoke_user_tokens(&mut conn, user_id, now_ms).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = user_ids.len()))]
    async fn users_with_revoked_sessions(
        &self,
        user_ids: &[String],
        issued_since_ms: i64,
    ) -> Result<Vec<UserSessions>, StoreError> {
        // Each id in one chunk only, so that DISTINCT lists each session once.
        let mut ids = user_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut found: HashMap<String, UserSessions> = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            // One query for the users and their sessions: a row per
            // (user, revoked session), or one with a NULL session for a
            // user with none. A session's access tokens are issued with its
            // refresh tokens, and revoking a session marks all of its
            // refresh tokens, so a revoked token created recently names a
            // session whose access tokens may still run. Only placeholders
            // are spliced in.
            let sql = format!(
                "SELECT DISTINCT u.id, u.username, u.display_name, u.role, u.disabled, \
                 u.created_at, t.family_id \
                 FROM users u LEFT JOIN refresh_tokens t \
                 ON t.user_id = u.id AND t.created_at >= $1 AND t.revoked_at IS NOT NULL \
                 WHERE u.id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(issued_since_ms);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let family_id: Option<String> = row.try_get("family_id")?;
                let user_id: String = row.try_get("id")?;
                let entry = match found.entry(user_id) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert(UserSessions {
                        user: user_from_row(&row)?,
                        revoked: Vec::new(),
                    }),
                };
                entry.revoked.extend(family_id);
            }
        }
        Ok(found.into_values().collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(family_id = %family_id))]
    async fn is_session_revoked(&self, family_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS revoked FROM refresh_tokens \
             WHERE family_id = $1 AND revoked_at IS NOT NULL LIMIT 1",
        )
        .bind(family_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn refresh_token_owner(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT user_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("user_id")).transpose()?)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(family_id = %family_id))]
    async fn revoke_family(&self, family_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        revoke_family(&mut conn, family_id, now_ms).await
    }
}

async fn revoke_family(
    conn: &mut sqlx::AnyConnection,
    family_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

async fn revoke_user_tokens(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
