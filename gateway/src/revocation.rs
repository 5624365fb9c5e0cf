//! Refusing access tokens of revoked sign-in sessions. An access token
//! names its session (`sid`, the refresh-token family); auth-service knows
//! which sessions were ended (logout, log out everywhere, password change,
//! disable, refresh-token reuse) and answers `GetRevokedSessions`. The
//! gateway asks per user on demand and keeps the answer for
//! [`CACHE_TTL`]; auth-service's `disconnect` events make it forget a
//! user's answer at once, so after a revocation the next request asks
//! again. A restarted gateway starts with nothing cached and asks, so it
//! never accepts a token revoked while it was down.
//!
//! WebSocket frames are not checked: a socket is checked at its handshake,
//! then closed by the `disconnect` event or, should that be lost, by the
//! periodic re-validation.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_common::token::Claims;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::GetRevokedSessionsRequest;

use crate::conn::ConnId;
use crate::error::ApiError;
use crate::state::AppState;

/// How long an answer is used without asking again: the longest a
/// revocation whose event this gateway missed goes unnoticed by HTTP calls.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Cached users beyond which expired answers are dropped.
const CACHE_PRUNE_AT: usize = 10_000;

/// Revoked sessions by user id.
pub type RevokedSessions = HashMap<String, HashSet<String>>;

#[derive(Default)]
pub struct Revocations {
    users: Mutex<HashMap<String, Cached>>,
    /// Bumped whenever an answer is forgotten, so that a lookup that began
    /// before does not store what may predate the revocation.
    generation: AtomicU64,
    /// The session each open socket authenticated with.
    sockets: Mutex<HashMap<ConnId, String>>,
}

struct Cached {
    revoked: HashSet<String>,
    fetched: Instant,
}

impl Revocations {
    /// Whether `sid` of `user_id` is revoked, if an answer younger than
    /// `max_age` is cached.
    fn lookup(&self, user_id: &str, sid: &str, max_age: Duration) -> Option<bool> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let cached = users.get(user_id)?;
        (cached.fetched.elapsed() < max_age).then(|| cached.revoked.contains(sid))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches auth-service's answer for `asked`, unless something was
    /// forgotten since `generation` was read.
    fn store(&self, generation: u64, asked: &[String], answer: &RevokedSessions) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        if users.len() >= CACHE_PRUNE_AT {
            users.retain(|_, cached| cached.fetched.elapsed() < CACHE_TTL);
        }
        let fetched = Instant::now();
        for user_id in asked {
            let revoked = answer.get(user_id).cloned().unwrap_or_default();
            users.insert(user_id.clone(), Cached { revoked, fetched });
        }
    }

    /// Drops the cached answer for `user_id`: their sessions changed.
    pub fn forget(&self, user_id: &str) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        users.remove(user_id);
    }

    /// Records the session an open socket authenticated with.
    pub fn track(&self, conn: ConnId, sid: &str) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn, sid.to_owned());
    }

    pub fn untrack(&self, conn: ConnId) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn);
    }

    /// Whether the socket authenticated with one of `sessions`.
    pub fn authenticated_with<'a>(
        &self,
        conn: ConnId,
        mut sessions: impl Iterator<Item = &'a String>,
    ) -> bool {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets
            .get(&conn)
            .is_some_and(|sid| sessions.any(|s| s == sid))
    }
}

/// Asks auth-service for the revoked sessions of `user_ids` (at most
/// 1000) and caches the answer.
pub async fn fetch(state: &AppState, user_ids: &[String]) -> Result<RevokedSessions, ApiError> {
    let generation = state.revocations.generation();
    let request = GetRevokedSessionsRequest {
        user_ids: user_ids.to_vec(),
    };
    let reply = state
        .services
        .auth
        .clone()
        .get_revoked_sessions(request)
        .await?;
    let answer: RevokedSessions = reply
        .into_inner()
        .users
        .into_iter()
        .map(|user| (user.user_id, user.session_ids.into_iter().collect()))
        .collect();
    state.revocations.store(generation, user_ids, &answer);
    Ok(answer)
}

/// Refuses an access token whose session has been revoked. While
/// auth-service cannot answer, an answer older than [`CACHE_TTL`] is used
/// if there is one; without one the request fails as unavailable rather
/// than let a possibly revoked token through.
pub async fn check(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let revocations = &state.revocations;
    let revoked = match revocations.lookup(&claims.sub, &claims.sid, CACHE_TTL) {
        Some(revoked) => revoked,
        None => match fetch(state, std::slice::from_ref(&claims.sub)).await {
            Ok(answer) => answer
                .get(&claims.sub)
                .is_some_and(|sessions| sessions.contains(&claims.sid)),
            Err(error) => match revocations.lookup(&claims.sub, &claims.sid, Duration::MAX) {
                Some(revoked) => {
                    tracing::warn!(error = %error.message, "cannot refresh revoked sessions; using an older answer");
                    revoked
                }
                None => return Err(error),
            },
        },
    };
    if revoked {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the session of the access token has ended",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(user: &str, sessions: &[&str]) -> RevokedSessions {
        HashMap::from([(
            user.to_owned(),
            sessions.iter().map(|s| (*s).to_owned()).collect(),
        )])
    }

    #[test]
    fn answers_are_cached_per_user() {
        let revocations = Revocations::default();
        assert_eq!(revocations.lookup("u1", "s1", CACHE_TTL), None);
        let asked = ["u1".to_owned(), "u2".to_owned()];
        revocations.store(revocations.generation(), &asked, &answer("u1", &["s1"]));
        assert_eq!(revocations.lookup("u1", "s1", CACHE_TTL), Some(true));
        assert_eq!(revocations.lookup("u1", "s2", CACHE_TTL), Some(false));
        // Asked and not in the answer: nothing revoked.
        assert_eq!(revocations.lookup("u2", "s1", CACHE_TTL), Some(false));
        assert_eq!(revocations.lookup("u1", "s1", Duration::ZERO), None);
        revocations.forget("u1");
        assert_eq!(revocations.lookup("u1", "s1", CACHE_TTL), None);
        assert_eq!(revocations.lookup("u2", "s1", CACHE_TTL), Some(false));
    }

    #[test]
    fn an_answer_asked_before_a_forget_is_not_cached() {
        let revocations = Revocations::default();
        let asked = ["u1".to_owned()];
        let generation = revocations.generation();
        // The revocation's event arrives while the lookup is under way.
        revocations.forget("u1");
        revocations.store(generation, &asked, &answer("u1", &[]));
        assert_eq!(revocations.lookup("u1", "s1", CACHE_TTL), None);
    }

    #[test]
    fn sockets_are_matched_by_their_session() {
        let revocations = Revocations::default();
        let ended = ["s1".to_owned()];
        revocations.track(1, "s1");
        revocations.track(2, "s2");
        assert!(revocations.authenticated_with(1, ended.iter()));
        assert!(!revocations.authenticated_with(2, ended.iter()));
        revocations.untrack(1);
        assert!(!revocations.authenticated_with(1, ended.iter()));
    }
}
