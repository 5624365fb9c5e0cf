//! The results of a run: written as JSON for plotting and comparison, and
//! printed as a short summary for the person at the terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::stats::{Latency, Sample};
use crate::sys::NofileLimit;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The scenario's flags as given (defaults filled in).
    pub parameters: serde_json::Value,
    pub started_at: String,
    pub finished_at: String,
    pub loadgen: LoadgenInfo,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadgenInfo {
    pub version: &'static str,
    pub pid: u32,
    pub nofile: NofileLimit,
    /// The load generator's own RSS at the end, to tell its footprint from
    /// the gateway's.
    pub rss_bytes: Option<u64>,
}

/// One measured stretch of a scenario (`sends` has two: many rooms and one
/// hot room; the others have one or two, set-up phases included).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    pub name: String,
    pub duration_s: f64,
    /// Exact event counts: what the CI smoke test asserts on.
    pub counts: BTreeMap<String, u64>,
    /// Measured values that are not counts: throughputs per second, bytes.
    pub values: BTreeMap<String, f64>,
    /// Latency distributions in microseconds, by what they time.
    pub latencies_us: BTreeMap<String, Latency>,
    /// Per-second counter growth over the phase.
    pub samples: Vec<Sample>,
    /// The first few distinct failures, to tell why counts fell short.
    pub failures: Vec<String>,
    /// Names a later run may need, such as the room `history` filled.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Phase {
    pub fn new(name: &str) -> Phase {
        Phase {
            name: name.to_owned(),
            ..Phase::default()
        }
    }

    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_vec_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
    }

    /// A few lines per phase: counts, values and latency percentiles.
    pub fn summary(&self) -> String {
        let mut out = format!("loadgen {}\n", self.scenario);
        if let Some(note) = &self.loadgen.nofile.note {
            let _ = writeln!(out, "  warning: {note}");
        }
        for phase in &self.phases {
            let _ = writeln!(out, "  [{}] {:.1} s", phase.name, phase.duration_s);
            let counts: Vec<String> = phase
                .counts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "    counts: {}", counts.join(" "));
            for (k, v) in &phase.labels {
                let _ = writeln!(out, "    {k}: {v}");
            }
            if !phase.values.is_empty() {
                let values: Vec<String> = phase
                    .values
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.1}"))
                    .collect();
                let _ = writeln!(out, "    values: {}", values.join(" "));
            }
            for (name, l) in &phase.latencies_us {
                let _ = writeln!(
                    out,
                    "    {name}: n={} p50={} p99={} p99.9={} max={}",
                    l.count,
                    micros(l.p50),
                    micros(l.p99),
                    micros(l.p999),
                    micros(l.max)
                );
            }
        }
        out
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}
