//! Benchmarks measured from live traffic: bounded, mergeable summaries of
//! job latency and outcomes per (pipeline, model).
//!
//! - [`PerfRecorder`] is one node's recorder: jobs go in with the time
//!   passed by the caller; it keeps a ring of time slices (each slice a
//!   [`PerfTable`]) and answers [`PerfRecorder::window`], the merge of the
//!   slices inside the benchmark window.
//! - [`PerfWindow`] is what a node publishes to the mesh and what the
//!   offering merges per region: it is a plain sum, so merging is
//!   commutative and associative, and it encodes to a small record
//!   ([`PerfWindow::encode`], sparse buckets, bounded pairs).
//!
//! ## Latency buckets
//! Latencies are counted in [`LATENCY_BUCKETS`] fixed log-scale buckets with
//! [`BUCKETS_PER_DOUBLING`] buckets per doubling: bucket 0 holds `≤ 1 ms`,
//! bucket `i` holds `(2^((i-1)/4), 2^(i/4)]` ms, and the last bucket holds
//! everything above `2^18` ms (262 s). A percentile is reported as the upper
//! edge of the bucket that holds it, so the true value is at most that and at
//! least `edge / 2^(1/4)` (≈ 16 % below): percentiles are conservative with
//! a resolution of ≈ 19 %.
//!
//! Only successful jobs contribute latency; every counted job contributes to
//! the success or failure count.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::Pipeline;

/// Buckets per doubling of latency (resolution 2^(1/4) ≈ 1.19).
pub const BUCKETS_PER_DOUBLING: u32 = 4;
/// Doublings above 1 ms covered by finite buckets (up to 2^18 ms ≈ 262 s,
/// above any job deadline we configure).
const DOUBLINGS: u32 = 18;
/// Number of latency buckets: one for `≤ 1 ms`, four per doubling, one for
/// overflow.
pub const LATENCY_BUCKETS: usize = (DOUBLINGS * BUCKETS_PER_DOUBLING + 2) as usize;
/// Most (pipeline, model) pairs in one table. Model ids come from clients,
/// so the table is bounded; real traffic reclaims slots from pairs that only
/// ever failed (see [`PerfTable::record`]).
pub const MAX_PAIRS: usize = 32;
/// Longest model id counted (longer ids are not real models).
pub const MAX_MODEL_ID_LEN: usize = 128;
/// Slices per benchmark window: the window slides in steps of
/// `window / SLICES_PER_WINDOW`.
pub const SLICES_PER_WINDOW: u64 = 12;
/// Shortest slice, so a tiny configured window cannot make the ring churn.
pub const MIN_SLICE_MS: u64 = 1_000;
/// Encoding version of [`PerfWindow`] records.
const WIRE_VERSION: u8 = 1;

/// What happened to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    /// Served; the client got its answer (or first byte) after this long.
    Success {
        /// Milliseconds from the job entering the executor to the answer.
        latency_ms: u32,
    },
    /// Failed for a reason that is the gateway's or its orchestrators'.
    Failure,
}

/// A (pipeline, model) pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PerfKey {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model id.
    pub model_id: String,
}

/// Counts of one (pipeline, model) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairStats {
    /// Successful jobs.
    pub successes: u64,
    /// Failed jobs.
    pub failures: u64,
    /// Latency histogram of the successful jobs ([`LATENCY_BUCKETS`] long).
    latency: Vec<u64>,
}

impl Default for PairStats {
    fn default() -> Self {
        Self {
            successes: 0,
            failures: 0,
            latency: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl PairStats {
    /// Jobs counted.
    pub fn requests(&self) -> u64 {
        self.successes.saturating_add(self.failures)
    }

    /// Successes over requests in parts per million (`None` without requests).
    pub fn success_rate_ppm(&self) -> Option<u32> {
        let requests = self.requests();
        (requests > 0)
            .then(|| (u128::from(self.successes) * 1_000_000 / u128::from(requests)) as u32)
    }

    /// The latency at quantile `permille` (500 = p50, 950 = p95) as the upper
    /// edge of its bucket, in ms; `None` without successes.
    pub fn quantile_ms(&self, permille: u32) -> Option<u32> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based, rounded up: p95 of 20 samples is
        // the 19th.
        let rank = (u128::from(total) * u128::from(permille.min(1000)))
            .div_ceil(1000)
            .max(1);
        let mut seen = 0u128;
        for (index, count) in self.latency.iter().enumerate() {
            seen += u128::from(*count);
            if seen >= rank {
                return Some(bucket_upper_edge_ms(index));
            }
        }
        Some(bucket_upper_edge_ms(LATENCY_BUCKETS - 1))
    }

    /// The non-empty latency buckets as (index, count).
    pub fn latency_buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.latency
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
    }

    fn add(&mut self, result: JobResult) {
        match result {
            JobResult::Success { latency_ms } => {
                self.successes = self.successes.saturating_add(1);
                let bucket = &mut self.latency[bucket_of(latency_ms)];
                *bucket = bucket.saturating_add(1);
            }
            JobResult::Failure => self.failures = self.failures.saturating_add(1),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.successes = self.successes.saturating_add(other.successes);
        self.failures = self.failures.saturating_add(other.failures);
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// The bucket a latency falls in: the first whose upper edge is at least
/// `latency_ms` (edges are whole milliseconds, non-decreasing).
pub fn bucket_of(latency_ms: u32) -> usize {
    let (mut low, mut high) = (0, LATENCY_BUCKETS - 1);
    while low < high {
        let middle = (low + high) / 2;
        if bucket_upper_edge_ms(middle) >= latency_ms {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

/// The upper edge of bucket `index` in ms (the overflow bucket reports its
/// lower edge, 2^18 ms).
pub fn bucket_upper_edge_ms(index: usize) -> u32 {
    let index = index.min(LATENCY_BUCKETS - 2);
    2f64.powf(index as f64 / f64::from(BUCKETS_PER_DOUBLING))
        .ceil() as u32
}

/// Per-pair counts of one time slice or one window, bounded to [`MAX_PAIRS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfTable {
    pairs: BTreeMap<PerfKey, PairStats>,
    /// Jobs not counted because the table was full.
    pub overflow: u64,
}

impl PerfTable {
    /// Counts one job. When the table is full, a success of a new pair takes
    /// the slot of the pair with no successes and the fewest failures (junk
    /// model ids from clients only ever fail); anything else is counted in
    /// [`PerfTable::overflow`].
    pub fn record(&mut self, key: PerfKey, result: JobResult) {
        if key.model_id.len() > MAX_MODEL_ID_LEN {
            self.overflow = self.overflow.saturating_add(1);
            return;
        }
        if !self.pairs.contains_key(&key) && self.pairs.len() >= MAX_PAIRS {
            let victim = matches!(result, JobResult::Success { .. })
                .then(|| {
                    self.pairs
                        .iter()
                        .filter(|(_, s)| s.successes == 0)
                        .min_by_key(|(_, s)| s.failures)
                        .map(|(k, _)| k.clone())
                })
                .flatten();
            let Some(victim) = victim else {
                self.overflow = self.overflow.saturating_add(1);
                return;
            };
            self.pairs.remove(&victim);
        }
        self.pairs.entry(key).or_default().add(result);
    }

    /// Adds `other` into this table (pairs beyond [`MAX_PAIRS`] go to overflow).
    pub fn merge(&mut self, other: &Self) {
        self.overflow = self.overflow.saturating_add(other.overflow);
        for (key, stats) in &other.pairs {
            if let Some(mine) = self.pairs.get_mut(key) {
                mine.merge(stats);
            } else if self.pairs.len() < MAX_PAIRS {
                self.pairs.insert(key.clone(), stats.clone());
            } else {
                self.overflow = self.overflow.saturating_add(stats.requests());
            }
        }
    }

    /// The pairs, in key order.
    pub fn pairs(&self) -> impl Iterator<Item = (&PerfKey, &PairStats)> {
        self.pairs.iter()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.overflow == 0
    }
}

/// One node's (or a merged) summary over a benchmark window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfWindow {
    /// Start of the oldest slice counted (unix ms).
    pub start_ms: u64,
    /// When the summary was taken (unix ms).
    pub end_ms: u64,
    /// The counts.
    pub table: PerfTable,
}

impl PerfWindow {
    /// Adds `other`; the window widens to cover both.
    pub fn merge(&mut self, other: &Self) {
        if self.table.is_empty() && self.start_ms == 0 {
            self.start_ms = other.start_ms;
        } else if other.start_ms != 0 {
            self.start_ms = self.start_ms.min(other.start_ms);
        }
        self.end_ms = self.end_ms.max(other.end_ms);
        self.table.merge(&other.table);
    }

    /// The record bytes: postcard with sparse buckets, at most `max_bytes`.
    /// Pairs with the fewest requests are left out (and counted as overflow)
    /// until it fits.
    pub fn encode(&self, max_bytes: usize) -> Result<Vec<u8>, PerfError> {
        let mut wire = WireWindow::from(self);
        // Largest pairs first, so trimming drops the smallest.
        wire.pairs
            .sort_by_key(|p| std::cmp::Reverse(p.successes.saturating_add(p.failures)));
        loop {
            let bytes = postcard::to_stdvec(&wire).map_err(|e| PerfError::Encode(e.to_string()))?;
            if bytes.len() <= max_bytes {
                return Ok(bytes);
            }
            let Some(dropped) = wire.pairs.pop() else {
                return Err(PerfError::TooLarge { len: bytes.len() });
            };
            wire.overflow = wire
                .overflow
                .saturating_add(dropped.successes.saturating_add(dropped.failures));
        }
    }

    /// Decodes a record written by [`PerfWindow::encode`], checking bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, PerfError> {
        let wire: WireWindow =
            postcard::from_bytes(bytes).map_err(|e| PerfError::Decode(e.to_string()))?;
        if wire.version != WIRE_VERSION {
            return Err(PerfError::Version(wire.version));
        }
        if wire.pairs.len() > MAX_PAIRS {
            return Err(PerfError::Decode(format!("{} pairs", wire.pairs.len())));
        }
        let mut table = PerfTable {
            pairs: BTreeMap::new(),
            overflow: wire.overflow,
        };
        for pair in wire.pairs {
            if pair.model_id.len() > MAX_MODEL_ID_LEN {
                return Err(PerfError::Decode("model id too long".into()));
            }
            let mut stats = PairStats {
                successes: pair.successes,
                failures: pair.failures,
                ..PairStats::default()
            };
            for (index, count) in pair.buckets {
                let slot = stats
                    .latency
                    .get_mut(usize::from(index))
                    .ok_or_else(|| PerfError::Decode(format!("bucket {index}")))?;
                *slot = slot.saturating_add(count);
            }
            let key = PerfKey {
                pipeline: pair.pipeline,
                model_id: pair.model_id,
            };
            if table.pairs.insert(key, stats).is_some() {
                return Err(PerfError::Decode("duplicate pair".into()));
            }
        }
        Ok(Self {
            start_ms: wire.start_ms,
            end_ms: wire.end_ms,
            table,
        })
    }
}

/// A summary that cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PerfError {
    /// postcard could not encode it.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// Even with no pairs it does not fit (cannot happen for sane limits).
    #[error("summary of {len} bytes does not fit")]
    TooLarge {
        /// Its size with no pairs.
        len: usize,
    },
    /// Bytes that are not a valid summary.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// An encoding version we do not know.
    #[error("unknown summary version {0}")]
    Version(u8),
}

/// One node's recorder: a ring of time slices covering the benchmark window.
#[derive(Debug, Clone)]
pub struct PerfRecorder {
    window_ms: u64,
    slice_ms: u64,
    /// Oldest first; slice starts are multiples of `slice_ms` (unix time), so
    /// every node's slices line up.
    slices: VecDeque<(u64, PerfTable)>,
}

impl PerfRecorder {
    /// A recorder for a window of `window_ms` (slid in
    /// `window_ms / SLICES_PER_WINDOW` steps, at least [`MIN_SLICE_MS`]).
    pub fn new(window_ms: u64) -> Self {
        let slice_ms = (window_ms / SLICES_PER_WINDOW).max(MIN_SLICE_MS);
        Self {
            window_ms: window_ms.max(slice_ms),
            slice_ms,
            slices: VecDeque::new(),
        }
    }

    /// The window length.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The slice length (the window's step).
    pub fn slice_ms(&self) -> u64 {
        self.slice_ms
    }

    /// Counts one job that ended at `now_ms`.
    pub fn record(&mut self, now_ms: u64, key: PerfKey, result: JobResult) {
        let start = now_ms - now_ms % self.slice_ms;
        self.expire(now_ms);
        match self.slices.back_mut() {
            Some((last, table)) if *last == start => table.record(key, result),
            // A clock that stepped back lands in the newest slice.
            Some((last, table)) if *last > start => table.record(key, result),
            _ => {
                let mut table = PerfTable::default();
                table.record(key, result);
                self.slices.push_back((start, table));
            }
        }
    }

    /// The merge of the slices that overlap `(now - window, now]`.
    pub fn window(&self, now_ms: u64) -> PerfWindow {
        let oldest = self.oldest_kept(now_ms);
        let mut window = PerfWindow {
            start_ms: oldest,
            end_ms: now_ms,
            table: PerfTable::default(),
        };
        for (start, table) in self.slices.iter().filter(|(s, _)| *s >= oldest) {
            window.start_ms = window.start_ms.min(*start);
            window.table.merge(table);
        }
        window
    }

    /// Drops slices that ended before the window.
    pub fn expire(&mut self, now_ms: u64) {
        let oldest = self.oldest_kept(now_ms);
        while self.slices.front().is_some_and(|(s, _)| *s < oldest) {
            self.slices.pop_front();
        }
    }

    /// The start of the oldest slice inside the window at `now_ms`.
    fn oldest_kept(&self, now_ms: u64) -> u64 {
        let current = now_ms - now_ms % self.slice_ms;
        let back = self.window_ms.saturating_sub(self.slice_ms);
        current.saturating_sub(back - back % self.slice_ms)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WireWindow {
    version: u8,
    start_ms: u64,
    end_ms: u64,
    overflow: u64,
    pairs: Vec<WirePair>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WirePair {
    pipeline: Pipeline,
    model_id: String,
    successes: u64,
    failures: u64,
    /// Non-empty buckets as (index, count).
    buckets: Vec<(u8, u64)>,
}

impl From<&PerfWindow> for WireWindow {
    fn from(window: &PerfWindow) -> Self {
        Self {
            version: WIRE_VERSION,
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            overflow: window.table.overflow,
            pairs: window
                .table
                .pairs
                .iter()
                .map(|(key, stats)| WirePair {
                    pipeline: key.pipeline,
                    model_id: key.model_id.clone(),
                    successes: stats.successes,
                    failures: stats.failures,
                    buckets: stats.latency_buckets().map(|(i, c)| (i as u8, c)).collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
