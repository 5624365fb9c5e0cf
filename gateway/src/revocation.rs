//! Refusing access tokens of revoked sign-in sessions, and of users who
//! are disabled or no longer exist. An access token names its session
//! (`sid`, the refresh-token family); auth-service knows which sessions
//! were ended (logout, log out everywhere, password change, disable,
//! refresh-token reuse) and answers `GetRevokedSessions`, which also
//! carries each user's row (so whether they are disabled) and names the
//! ids of no user. The gateway asks per user on demand and keeps the
//! answer for [`CACHE_TTL`]; auth-service's `disconnect` events make it
//! forget a user's answer at once, so after a revocation or a disable the
//! next request asks again. A restarted gateway starts with nothing cached
//! and asks, so it never accepts a token revoked while it was down.
//!
//! A WebSocket handshake takes the user's row (for `ready`) and the
//! disabled flag from the same answer, so that a burst of handshakes asks
//! auth-service once per user per [`CACHE_TTL`], not once per socket.
//! WebSocket frames are not checked: a socket is checked at its handshake,
//! then closed by the `disconnect` event or, should that be lost, by the
//! periodic re-validation.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_common::token::Claims;
use chat_proto::ErrorCode;
use chat_proto::auth::v1::{GetRevokedSessionsRequest, User};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tracing::Instrument as _;

use crate::conn::ConnId;
use crate::error::ApiError;
use crate::state::AppState;

/// How long an answer is used without asking again: the longest a
/// revocation whose event this gateway missed goes unnoticed by HTTP calls
/// and handshakes.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Cached users beyond which expired answers are dropped.
const CACHE_PRUNE_AT: usize = 10_000;

/// What auth-service said of one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Account {
    /// No such user: their tokens are refused as `GetUser`'s NOT_FOUND
    /// used to make the handshake refuse them.
    Unknown,
    Known {
        user: User,
        /// Revoked sessions whose access tokens may still be unexpired.
        revoked: HashSet<String>,
    },
}

impl Account {
    /// Whether a token of session `sid` is refused by HTTP calls: only for
    /// a revoked session. A disabled user's sessions are all revoked, and
    /// the services refuse an unknown or disabled acting user themselves.
    fn is_revoked(&self, sid: &str) -> bool {
        match self {
            Account::Unknown => false,
            Account::Known { revoked, .. } => revoked.contains(sid),
        }
    }
}

/// Answers by user id.
pub type Answer = HashMap<String, Arc<Account>>;

type Lookup = Shared<BoxFuture<'static, Result<Arc<Account>, ApiError>>>;

#[derive(Default)]
pub struct Revocations {
    users: Mutex<HashMap<String, Cached>>,
    /// Bumped whenever an answer is forgotten, so that a lookup that began
    /// before does not store what may predate the revocation.
    generation: AtomicU64,
    /// Lookups of one user under way: callers that miss the cache meanwhile
    /// wait for it instead of asking auth-service again.
    pending: Mutex<HashMap<String, Pending>>,
    /// Numbers the pending lookups, so that one removes only itself.
    next_lookup: AtomicU64,
    /// The session each open socket authenticated with.
    sockets: Mutex<HashMap<ConnId, String>>,
}

struct Cached {
    account: Arc<Account>,
    fetched: Instant,
    /// Unix seconds when it was asked for: an answer asked for before a
    /// token was issued may predate the user's re-enabling (which
    /// publishes no event), so it does not decide that token's handshake.
    asked_at_s: i64,
}

struct Pending {
    id: u64,
    asked_at_s: i64,
    lookup: Lookup,
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Revocations {
    /// The cached answer for `user_id`, if younger than `max_age` and asked
    /// for after `issued_at_s` (Unix seconds; `i64::MIN` for any).
    fn lookup(&self, user_id: &str, max_age: Duration, issued_at_s: i64) -> Option<Arc<Account>> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let cached = users.get(user_id)?;
        // Strictly after: `iat` is whole seconds, so a token of the same
        // second may have been issued after the answer was asked for.
        (cached.fetched.elapsed() < max_age && cached.asked_at_s > issued_at_s)
            .then(|| cached.account.clone())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches auth-service's answer, asked for at `asked_at_s`, unless
    /// something was forgotten since `generation` was read.
    fn store(&self, generation: u64, asked_at_s: i64, answer: &Answer) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        if users.len() >= CACHE_PRUNE_AT {
            users.retain(|_, cached| cached.fetched.elapsed() < CACHE_TTL);
        }
        let fetched = Instant::now();
        for (user_id, account) in answer {
            let cached = Cached {
                account: account.clone(),
                fetched,
                asked_at_s,
            };
            users.insert(user_id.clone(), cached);
        }
    }

    /// Drops the cached answer for `user_id`, and the lookup under way:
    /// their sessions or account changed.
    pub fn forget(&self, user_id: &str) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        users.remove(user_id);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user_id);
    }

    /// The lookup of `user_id` under way if it was asked for after
    /// `issued_at_s`, else a new one started with `start` (given its id).
    fn join_or_start(
        &self,
        user_id: &str,
        issued_at_s: i64,
        start: impl FnOnce(u64) -> Lookup,
    ) -> Lookup {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(under_way) = pending.get(user_id)
            && under_way.asked_at_s > issued_at_s
        {
            return under_way.lookup.clone();
        }
        let id = self.next_lookup.fetch_add(1, Ordering::Relaxed);
        let asked_at_s = now_s();
        let lookup = start(id);
        let entry = Pending {
            id,
            asked_at_s,
            lookup: lookup.clone(),
        };
        pending.insert(user_id.to_owned(), entry);
        lookup
    }

    /// Removes the pending lookup `id` of `user_id` once it has its answer
    /// (cached by then), unless a newer one replaced it.
    fn finish(&self, user_id: &str, id: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.get(user_id).is_some_and(|p| p.id == id) {
            pending.remove(user_id);
        }
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

/// Asks auth-service about `user_ids` (at most 1000) and caches the
/// answer, which holds every one of them.
pub async fn fetch(state: &AppState, user_ids: &[String]) -> Result<Answer, ApiError> {
    let generation = state.revocations.generation();
    let asked_at_s = now_s();
    let request = GetRevokedSessionsRequest {
        user_ids: user_ids.to_vec(),
    };
    let reply = state
        .services
        .auth
        .clone()
        .get_revoked_sessions(request)
        .await?
        .into_inner();
    let mut answer = Answer::with_capacity(user_ids.len());
    // An entry without its user comes from an auth-service older than
    // this gateway; it is left out, and so refused as incomplete below.
    for entry in reply.users {
        if let Some(user) = entry.user {
            let revoked = entry.session_ids.into_iter().collect();
            answer.insert(entry.user_id, Arc::new(Account::Known { user, revoked }));
        }
    }
    for user_id in reply.unknown_user_ids {
        answer.insert(user_id, Arc::new(Account::Unknown));
    }
    if let Some(missing) = user_ids.iter().find(|id| !answer.contains_key(*id)) {
        // Neither accepted nor refused on a guess: an older auth-service
        // says nothing of users without revoked sessions. Unavailable, so
        // that clients retry once auth-service is upgraded.
        tracing::warn!(user_id = %missing, "GetRevokedSessions left an asked user out; is auth-service older than this gateway?");
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "a service is unavailable, try again",
        ));
    }
    state.revocations.store(generation, asked_at_s, &answer);
    Ok(answer)
}

/// The answer for `user_id` younger than [`CACHE_TTL`] and asked for after
/// `issued_at_s`: cached, under way, or asked for now. Concurrent callers
/// share one call to auth-service.
async fn account(
    state: &AppState,
    user_id: &str,
    issued_at_s: i64,
) -> Result<Arc<Account>, ApiError> {
    let revocations = &state.revocations;
    if let Some(account) = revocations.lookup(user_id, CACHE_TTL, issued_at_s) {
        return Ok(account);
    }
    let lookup = revocations.join_or_start(user_id, issued_at_s, |id| {
        let state = state.clone();
        let user_id = user_id.to_owned();
        // A task of its own, so that the call completes (and is cached and
        // cleared) even if every caller waiting for it goes away.
        let task = tokio::spawn(
            async move {
                let result = fetch(&state, std::slice::from_ref(&user_id))
                    .await
                    .and_then(|mut answer| {
                        // `fetch` checked that every asked id is answered.
                        answer
                            .remove(&user_id)
                            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "internal error"))
                    });
                state.revocations.finish(&user_id, id);
                result
            }
            .instrument(tracing::Span::current()),
        );
        async move {
            task.await.unwrap_or_else(|error| {
                tracing::error!(%error, "the lookup of a user's sessions failed");
                Err(ApiError::new(ErrorCode::Internal, "internal error"))
            })
        }
        .boxed()
        .shared()
    });
    lookup.await
}

fn session_ended() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "the session of the access token has ended",
    )
}

/// Refuses an access token whose session has been revoked (HTTP calls).
/// While auth-service cannot answer, an answer older than [`CACHE_TTL`] is
/// used if there is one; without one the request fails as unavailable
/// rather than let a possibly revoked token through.
pub async fn check(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    // Any answer will do, however old the token: a session's tokens are
    // never issued after it was revoked.
    let account = match account(state, &claims.sub, i64::MIN).await {
        Ok(account) => account,
        Err(error) => match state
            .revocations
            .lookup(&claims.sub, Duration::MAX, i64::MIN)
        {
            Some(account) => {
                tracing::warn!(error = %error.message, "cannot refresh revoked sessions; using an older answer");
                account
            }
            None => return Err(error),
        },
    };
    if account.is_revoked(&claims.sid) {
        return Err(session_ended());
    }
    Ok(())
}

/// The user of a WebSocket handshake's token, or why the socket is refused:
/// forbidden for a disabled user (4003; before the session check, as a
/// disabled user's sessions are all revoked and 4003 tells them more than
/// 4001), unauthorized for a revoked session or an unknown user (4001).
/// Needs a current answer: unlike [`check`], no older one is used while
/// auth-service cannot answer, as `ready` shows the user's row.
pub async fn admit(state: &AppState, claims: &Claims) -> Result<User, ApiError> {
    let account = account(state, &claims.sub, claims.iat).await?;
    verdict(&account, &claims.sid)
}

fn verdict(account: &Account, sid: &str) -> Result<User, ApiError> {
    match account {
        Account::Unknown => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the user no longer exists",
        )),
        Account::Known { user, .. } if user.disabled => Err(ApiError::new(
            ErrorCode::Forbidden,
            "the account is disabled",
        )),
        Account::Known { revoked, .. } if revoked.contains(sid) => Err(session_ended()),
        Account::Known { user, .. } => Ok(user.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(user_id: &str, disabled: bool, sessions: &[&str]) -> Arc<Account> {
        Arc::new(Account::Known {
            user: User {
                id: user_id.to_owned(),
                disabled,
                ..User::default()
            },
            revoked: sessions.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn revoked(
        revocations: &Revocations,
        user: &str,
        sid: &str,
        max_age: Duration,
    ) -> Option<bool> {
        revocations
            .lookup(user, max_age, i64::MIN)
            .map(|account| account.is_revoked(sid))
    }

    #[test]
    fn answers_are_cached_per_user() {
        let revocations = Revocations::default();
        assert_eq!(revoked(&revocations, "u1", "s1", CACHE_TTL), None);
        let answer = Answer::from([
            ("u1".to_owned(), known("u1", false, &["s1"])),
            ("u2".to_owned(), known("u2", false, &[])),
        ]);
        revocations.store(revocations.generation(), now_s(), &answer);
        assert_eq!(revoked(&revocations, "u1", "s1", CACHE_TTL), Some(true));
        assert_eq!(revoked(&revocations, "u1", "s2", CACHE_TTL), Some(false));
        assert_eq!(revoked(&revocations, "u2", "s1", CACHE_TTL), Some(false));
        assert_eq!(revoked(&revocations, "u1", "s1", Duration::ZERO), None);
        revocations.forget("u1");
        assert_eq!(revoked(&revocations, "u1", "s1", CACHE_TTL), None);
        assert_eq!(revoked(&revocations, "u2", "s1", CACHE_TTL), Some(false));
    }

    #[test]
    fn an_answer_asked_before_a_forget_is_not_cached() {
        let revocations = Revocations::default();
        let answer = Answer::from([("u1".to_owned(), known("u1", false, &[]))]);
        let generation = revocations.generation();
        // The revocation's event arrives while the lookup is under way.
        revocations.forget("u1");
        revocations.store(generation, now_s(), &answer);
        assert_eq!(revoked(&revocations, "u1", "s1", CACHE_TTL), None);
    }

    #[test]
    fn an_answer_asked_before_a_token_was_issued_does_not_decide_it() {
        let revocations = Revocations::default();
        let answer = Answer::from([("u1".to_owned(), known("u1", true, &[]))]);
        revocations.store(revocations.generation(), 100, &answer);
        assert!(revocations.lookup("u1", CACHE_TTL, 99).is_some());
        // Issued in the same second or later: the user may have been
        // re-enabled and signed in since.
        assert!(revocations.lookup("u1", CACHE_TTL, 100).is_none());
        assert!(revocations.lookup("u1", CACHE_TTL, 101).is_none());
    }

    fn ready(account: Arc<Account>) -> Lookup {
        futures::future::ready(Ok(account)).boxed().shared()
    }

    #[test]
    fn callers_share_a_lookup_under_way_until_it_is_forgotten() {
        let revocations = Revocations::default();
        let first = revocations.join_or_start("u1", i64::MIN, |_| ready(known("u1", false, &[])));
        let joined =
            revocations.join_or_start("u1", i64::MIN, |_| ready(Arc::new(Account::Unknown)));
        assert!(first.ptr_eq(&joined));
        // A token issued after the lookup was started does not join it.
        let later = revocations.join_or_start("u1", now_s(), |_| ready(known("u1", false, &[])));
        assert!(!later.ptr_eq(&first));
        // A revocation's event: later callers ask again.
        revocations.forget("u1");
        let after = revocations.join_or_start("u1", i64::MIN, |_| ready(known("u1", true, &[])));
        assert!(!after.ptr_eq(&later));
        // Only the lookup under way removes itself.
        let mut started = 0;
        let _lookup = revocations.join_or_start("u2", i64::MIN, |id| {
            started = id;
            ready(Arc::new(Account::Unknown))
        });
        revocations.finish("u2", started + 1);
        assert!(
            revocations
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key("u2")
        );
        revocations.finish("u2", started);
        assert!(
            !revocations
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key("u2")
        );
    }

    #[test]
    fn handshakes_refuse_disabled_then_revoked_then_unknown() {
        let code = |account: &Account, sid| verdict(account, sid).map(|u| u.id).map_err(|e| e.code);
        // Disabled wins over a revoked session: 4003, not 4001.
        assert_eq!(
            code(&known("u1", true, &["s1"]), "s1"),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(&known("u1", true, &[]), "s2"),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(&known("u1", false, &["s1"]), "s1"),
            Err(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(&known("u1", false, &["s1"]), "s2"),
            Ok("u1".to_owned())
        );
        assert_eq!(code(&Account::Unknown, "s1"), Err(ErrorCode::Unauthorized));
        // HTTP calls refuse only revoked sessions, as before.
        assert!(known("u1", true, &["s1"]).is_revoked("s1"));
        assert!(!known("u1", true, &[]).is_revoked("s1"));
        assert!(!Account::Unknown.is_revoked("s1"));
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
