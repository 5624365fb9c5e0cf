//! What the load generator reads from and asks of the operating system:
//! its open-file limit and a process's resident memory.

use anyhow::Context;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::Serialize;

/// The open-file limit the run had, reported with the results because it
/// caps how many sockets one load generator process can hold.
#[derive(Debug, Clone, Serialize)]
pub struct NofileLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// Why the soft limit could not be raised, when it could not.
    pub note: Option<String>,
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit: every
/// connection is a file descriptor, and the soft limit is often far below
/// what the hard limit allows.
pub fn raise_nofile_limit() -> NofileLimit {
    let before = getrlimit(Resource::Nofile);
    if before.current == before.maximum {
        return NofileLimit {
            soft: before.current,
            hard: before.maximum,
            note: None,
        };
    }
    let wanted = Rlimit {
        current: before.maximum,
        maximum: before.maximum,
    };
    let note = setrlimit(Resource::Nofile, wanted)
        .err()
        .map(|e| format!("cannot raise RLIMIT_NOFILE to the hard limit: {e}"));
    let after = getrlimit(Resource::Nofile);
    NofileLimit {
        soft: after.current,
        hard: after.maximum,
        note,
    }
}

/// The resident set size of a process in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    // "VmRSS:     12345 kB"
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("malformed VmRSS line in {path}: {line}"))?
        .parse()
        .with_context(|| format!("malformed VmRSS line in {path}: {line}"))?;
    Ok(kib * 1024)
}
