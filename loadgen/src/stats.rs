//! Measurements: named counters sampled once a second, and latency
//! histograms of constant size whatever the number of samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A set of named counters. Tasks take a handle to each counter once, at
/// set-up, so that counting costs one atomic add and no lookup.
#[derive(Default)]
pub struct Counters {
    entries: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Counters {
    pub fn new() -> Arc<Counters> {
        Arc::new(Counters::default())
    }

    /// The counter of that name, created at zero the first time.
    pub fn counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = entries.iter().find(|(n, _)| n == name) {
            return counter.clone();
        }
        let counter = Arc::new(AtomicU64::new(0));
        entries.push((name.to_owned(), counter.clone()));
        counter
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .map(|(name, counter)| (name.clone(), counter.load(Ordering::Relaxed)))
            .collect()
    }
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Largest latency a histogram holds (one hour, in microseconds); larger
/// values are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;
/// Several histograms behind their own locks, so that connection tasks on
/// different threads rarely wait for each other; merged when read.
const SHARDS: usize = 8;

/// Latencies in microseconds.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Arc<Recorder>> {
        let shards = (0..SHARDS)
            .map(|_| Ok(Mutex::new(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(Recorder { shards }))
    }

    /// Records one latency; `hint` (a connection's index) picks the shard.
    pub fn record(&self, hint: usize, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        let mut shard = self.shards[hint % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        shard.saturating_record(micros.max(1));
    }

    pub fn summary(&self) -> Latency {
        let mut shards = self
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(first) = shards.next() else {
            return Latency::of(None);
        };
        let mut merged = first.clone();
        drop(first);
        for shard in shards {
            // Same bounds on both sides, so adding cannot fail.
            let _ = merged.add(&*shard);
        }
        Latency::of(Some(&merged))
    }
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// `[quantile, value]` pairs from the median to 99.999 %, evenly spaced
    /// in log(1 / (1 - q)): the points of a classic HDR percentile plot.
    pub distribution: Vec<(f64, u64)>,
}

impl Latency {
    fn of(h: Option<&Histogram<u64>>) -> Latency {
        let Some(h) = h.filter(|h| !h.is_empty()) else {
            return Latency {
                count: 0,
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                distribution: Vec::new(),
            };
        };
        let distribution = (0..=50)
            .map(|k| {
                let quantile = 1.0 - 10f64.powf(-f64::from(k) / 10.0);
                (quantile, h.value_at_quantile(quantile))
            })
            .collect();
        Latency {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            distribution,
        }
    }
}

/// One second of a run: how much each counter grew in it, and gauges read
/// at its end.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the phase started, at the end of this sample.
    pub t: u64,
    #[serde(flatten)]
    pub deltas: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, u64>,
}

/// A gauge read at each sample, such as a process's RSS.
pub type Gauge = Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

/// Samples are kept for at most this many seconds of a phase.
const MAX_SAMPLES: usize = 24 * 3600;

/// Samples counters every second until stopped.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(counters: Arc<Counters>, gauge: Option<Gauge>) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut previous = counters.snapshot();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut t = 0;
            while samples.len() < MAX_SAMPLES {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                t += 1;
                let now = counters.snapshot();
                let deltas = now
                    .iter()
                    .map(|(name, value)| {
                        let before = previous.get(name).copied().unwrap_or(0);
                        (name.clone(), value.saturating_sub(before))
                    })
                    .collect();
                previous = now;
                let gauges = gauge.as_ref().map(|g| g()).unwrap_or_default();
                samples.push(Sample { t, deltas, gauges });
            }
            samples
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Distinct failure messages, at most this many kept.
const MAX_FAILURES: usize = 10;

/// The first few distinct failures of a phase.
#[derive(Default)]
pub struct Failures {
    list: Mutex<Vec<String>>,
}

impl Failures {
    pub fn note(&self, failure: impl std::fmt::Display) {
        let failure = format!("{failure:#}");
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < MAX_FAILURES && !list.contains(&failure) {
            list.push(failure);
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Waits until `done` holds, checking every 20 ms, for at most `budget`;
/// returns whether it held.
pub async fn wait_until(budget: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
