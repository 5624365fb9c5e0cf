//! Login throttling: failed logins are counted per account name and per
//! client address, and once either reaches its limit, logins for it are
//! refused (`rate_limited`) until its window, which starts at its first
//! failure, has passed. That bounds online password guessing against one
//! account, and from one address across many accounts.
//!
//! The counters live in this process's memory: each auth-service replica
//! counts on its own (so N replicas allow up to N times the limit), and a
//! restart forgets them. That is a documented trade-off (SECURITY.md): no
//! extra store on the login path, and a lockout never outlives a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const DEFAULT_MAX_FAILURES_PER_ACCOUNT: u32 = 5;
pub const DEFAULT_MAX_FAILURES_PER_ADDR: u32 = 20;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Above this many counters in one table, expired ones are swept before a
/// new one is added, so a flood of distinct names keeps memory bounded by
/// what one window can hold.
const SWEEP_ABOVE: usize = 10_000;
/// Account keys are the submitted name, cut to this many characters: a
/// longer one is no username anyway, and must not grow the table.
const MAX_KEY_CHARS: usize = 64;

/// Limits of [`LoginThrottle`]; a limit of 0 turns that counter off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures_per_account: u32,
    pub max_failures_per_addr: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            max_failures_per_account: DEFAULT_MAX_FAILURES_PER_ACCOUNT,
            max_failures_per_addr: DEFAULT_MAX_FAILURES_PER_ADDR,
            window: DEFAULT_WINDOW,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// One table of failure counters.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Failures>>);

impl Counters {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // A poisoned lock only means a panic mid-update of a plain map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reached(&self, key: &str, limit: u32, window: Duration, now: Instant) -> bool {
        limit > 0
            && self
                .table()
                .get(key)
                .is_some_and(|f| now.duration_since(f.since) < window && f.count >= limit)
    }

    fn count(&self, key: &str, limit: u32, window: Duration, now: Instant) {
        if limit == 0 {
            return;
        }
        let mut table = self.table();
        if table.len() >= SWEEP_ABOVE && !table.contains_key(key) {
            table.retain(|_, f| now.duration_since(f.since) < window);
        }
        let failures = table.entry(key.to_owned()).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(failures.since) >= window {
            *failures = Failures {
                since: now,
                count: 0,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }

    fn clear(&self, key: &str) {
        self.table().remove(key);
    }
}

pub struct LoginThrottle {
    config: ThrottleConfig,
    accounts: Counters,
    addrs: Counters,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            accounts: Counters::default(),
            addrs: Counters::default(),
        }
    }

    /// The counter key of a submitted username. Keyed by the name as
    /// submitted, not by user id, so that a name that does not exist is
    /// throttled exactly like one that does and the refusal tells nothing.
    pub fn account_key(username: &str) -> String {
        username
            .to_lowercase()
            .chars()
            .take(MAX_KEY_CHARS)
            .collect()
    }

    /// Whether a login for `account` from `addr` must be refused unchecked.
    pub fn is_throttled(&self, account: &str, addr: Option<&str>) -> bool {
        self.is_throttled_at(account, addr, Instant::now())
    }

    fn is_throttled_at(&self, account: &str, addr: Option<&str>, now: Instant) -> bool {
        let c = &self.config;
        self.accounts
            .reached(account, c.max_failures_per_account, c.window, now)
            || addr.is_some_and(|a| {
                self.addrs
                    .reached(a, c.max_failures_per_addr, c.window, now)
            })
    }

    pub fn record_failure(&self, account: &str, addr: Option<&str>) {
        self.record_failure_at(account, addr, Instant::now());
    }

    fn record_failure_at(&self, account: &str, addr: Option<&str>, now: Instant) {
        let c = &self.config;
        self.accounts
            .count(account, c.max_failures_per_account, c.window, now);
        if let Some(addr) = addr {
            self.addrs
                .count(addr, c.max_failures_per_addr, c.window, now);
        }
    }

    /// The right password ends the account's failure streak. The address
    /// keeps its count: one known password must not let an address go on
    /// guessing others.
    pub fn record_success(&self, account: &str) {
        self.accounts.clear(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            max_failures_per_account: 3,
            max_failures_per_addr: 5,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn an_account_is_throttled_at_its_limit_until_the_window_passes() {
        let t = throttle();
        let start = Instant::now();
        for _ in 0..2 {
            t.record_failure_at("alice", None, start);
        }
        assert!(!t.is_throttled_at("alice", None, start));
        t.record_failure_at("alice", None, start);
        assert!(t.is_throttled_at("alice", None, start));
        assert!(!t.is_throttled_at("bob", None, start));
        let later = start + Duration::from_secs(60);
        assert!(!t.is_throttled_at("alice", None, later));
        // A failure after the window starts a new count.
        t.record_failure_at("alice", None, later);
        assert!(!t.is_throttled_at("alice", None, later));
    }

    #[test]
    fn an_address_is_throttled_across_accounts() {
        let t = throttle();
        let now = Instant::now();
        for name in ["a1", "a2", "a3", "a4", "a5"] {
            t.record_failure_at(name, Some("192.0.2.7"), now);
        }
        assert!(t.is_throttled_at("someone", Some("192.0.2.7"), now));
        assert!(!t.is_throttled_at("someone", Some("192.0.2.8"), now));
        assert!(!t.is_throttled_at("someone", None, now));
    }

    #[test]
    fn success_resets_the_account_but_not_the_address() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure_at("alice", Some("192.0.2.7"), now);
        }
        t.record_success("alice");
        assert!(!t.is_throttled_at("alice", None, now));
        t.record_failure_at("alice", Some("192.0.2.7"), now);
        t.record_failure_at("alice", Some("192.0.2.7"), now);
        assert!(t.is_throttled_at("bob", Some("192.0.2.7"), now));
    }

    #[test]
    fn a_zero_limit_turns_the_counter_off() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_failures_per_account: 0,
            max_failures_per_addr: 0,
            window: Duration::from_secs(60),
        });
        let now = Instant::now();
        for _ in 0..100 {
            t.record_failure_at("alice", Some("192.0.2.7"), now);
        }
        assert!(!t.is_throttled_at("alice", Some("192.0.2.7"), now));
    }

    #[test]
    fn account_keys_are_case_folded_and_bounded() {
        assert_eq!(LoginThrottle::account_key("Alice"), "alice");
        assert_eq!(
            LoginThrottle::account_key(&"x".repeat(1000))
                .chars()
                .count(),
            MAX_KEY_CHARS
        );
    }
}
