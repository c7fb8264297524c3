//! What one gateway node (the observer, the record's only writer) knows about
//! one orchestrator: its self-description, per (pipeline, model) latency and
//! outcome statistics, its last error and whether this observer ejected it.
//!
//! Counts decay exponentially with [`DECAY_HALF_LIFE_MS`], applied lazily
//! from each entry's `last_update_ms`, so old evidence fades without a timer.
//! Mutating methods do not touch [`ObservationRecord::version`]: the owner
//! stamps a new version from its [`HlcClock`](crate::hlc::HlcClock) before it
//! publishes (the [`View`](super::View) does this in its `local_*` methods).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::id::{NodeId, OrchestratorId, RegionId};
use crate::orchestrator::OrchestratorInfo;
use crate::pipeline::Pipeline;

/// Format byte in front of every encoded record. Bump it when the layout
/// changes: postcard is not self-describing, so old readers must refuse.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// Largest encoded record we produce or accept. Records travel in gossip
/// (chitchat values should stay well under 60 KB) and a node holds one per
/// (orchestrator, observer); 16 KiB leaves room for an orchestrator that
/// advertises dozens of models while keeping a hostile peer from making us
/// parse megabytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// Most (pipeline, model) statistics one record keeps. An orchestrator serves
/// a handful of models; 16 covers every batch pipeline with room to spare,
/// and the least recently updated entry is evicted beyond it.
pub const MAX_MODEL_STATS: usize = 16;

/// Longest model id we keep statistics for (same bound as ids).
pub const MAX_MODEL_ID_LEN: usize = crate::id::MAX_ID_LEN;

/// Half-life of success and failure counts: evidence older than a few
/// minutes barely counts, so a recovered orchestrator regains its standing.
pub const DECAY_HALF_LIFE_MS: u64 = 30_000;

/// Weight of a new latency sample in the moving average. 0.25 follows a 10×
/// slowdown within a handful of requests.
pub const LATENCY_EWMA_ALPHA: f64 = 0.25;

/// Upper bounds (inclusive, ms) of the latency histogram buckets; one more
/// bucket holds everything slower. Doubling from 25 ms spans a fast LLM
/// token stream start to a minute-long video job.
pub const LATENCY_BUCKET_BOUNDS_MS: [u32; 11] = [
    25, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600,
];

/// Number of histogram buckets (bounds plus the overflow bucket).
pub const LATENCY_BUCKETS: usize = LATENCY_BUCKET_BOUNDS_MS.len() + 1;

/// When a histogram holds this many samples all buckets are halved, so the
/// percentiles follow recent traffic.
pub const HISTOGRAM_AGE_AT: u32 = 512;

/// What kind of failure an attempt ended in. The class decides whether it
/// counts against the orchestrator and whether one failure ejects it.
///
/// On the wire a class is its position in this list. New classes go at the
/// end and stay unit variants: a reader that does not know one yet decodes
/// it as [`Self::Other`] instead of refusing the whole record, so a rolling
/// upgrade that adds a class does not cut old nodes off from new nodes'
/// observations. (Nodes before this rule refuse such records.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// TCP connect refused or reset, DNS failure: the host is not there.
    Connect,
    /// No response (or no first byte) within the deadline: the orchestrator
    /// hangs *or the path from the observer's region is slow or lossy*, so
    /// like [`Self::ConnectTimeout`] an ejection for it binds that region
    /// only; other regions learn of a hung orchestrator from their own
    /// timeouts.
    Timeout,
    /// TLS handshake failed.
    Tls,
    /// The orchestrator said it has no capacity (not a health problem).
    Busy,
    /// 5xx or a runner error.
    Server,
    /// A reply we could not understand.
    BadResponse,
    /// The request was at fault (4xx): says nothing about the orchestrator.
    Client,
    /// Anything else.
    Other,
    /// The TCP connection was not established within the connect timeout:
    /// the host is down *or the path from the observer's region to it is*
    /// (a partition between regions looks exactly like this). An ejection
    /// for it is honoured only in the observer's region; connection refused
    /// ([`Self::Connect`]) means the process is gone, for every region.
    /// (Last, so the encodings of the other classes do not change.)
    ConnectTimeout,
}

impl ErrorClass {
    /// Every class in wire order, and its name (the serde variant name).
    const WIRE: [(Self, &'static str); 9] = [
        (Self::Connect, "Connect"),
        (Self::Timeout, "Timeout"),
        (Self::Tls, "Tls"),
        (Self::Busy, "Busy"),
        (Self::Server, "Server"),
        (Self::BadResponse, "BadResponse"),
        (Self::Client, "Client"),
        (Self::Other, "Other"),
        (Self::ConnectTimeout, "ConnectTimeout"),
    ];

    /// Whether the failure is evidence against the orchestrator's health.
    /// "Busy" is not: it says the orchestrator is popular (the load factor
    /// steers around full ones), and counting it would lower the reliability
    /// of exactly the best orchestrators.
    pub const fn counts_against_orchestrator(self) -> bool {
        !matches!(self, Self::Client | Self::Busy)
    }

    /// Whether the failure says the orchestrator is unreachable: one is
    /// enough to eject, and a successful probe clears that ejection.
    pub const fn is_unreachable(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::ConnectTimeout | Self::Timeout | Self::Tls
        )
    }

    /// Whether the failure may be a property of the path from the
    /// observer's region rather than of the orchestrator, so an ejection
    /// for it binds only nodes of that region: no connection or no answer
    /// in time. A refusal, a reset, a TLS failure or a bad answer come from
    /// the orchestrator itself and bind every region.
    pub const fn is_path_local(self) -> bool {
        matches!(self, Self::ConnectTimeout | Self::Timeout)
    }

    /// Whether the failure may lead to ejection at all. "Busy" never does
    /// (go-livepeer #3436: suspending busy orchestrators drains the best ones).
    pub const fn may_eject(self) -> bool {
        !matches!(self, Self::Busy | Self::Client)
    }
}

impl<'de> Deserialize<'de> for ErrorClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: [&str; 9] = {
            let mut names = [""; 9];
            let mut i = 0;
            while i < names.len() {
                names[i] = ErrorClass::WIRE[i].1;
                i += 1;
            }
            names
        };
        deserializer.deserialize_enum("ErrorClass", &NAMES, ClassVisitor)
    }
}

/// Reads an [`ErrorClass`], unknown ones as [`ErrorClass::Other`].
struct ClassVisitor;

impl<'de> serde::de::Visitor<'de> for ClassVisitor {
    type Value = ErrorClass;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an error class")
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<ErrorClass, A::Error> {
        use serde::de::VariantAccess;
        let (ClassId(class), variant) = data.variant::<ClassId>()?;
        variant.unit_variant()?;
        Ok(class)
    }
}

/// A class's wire index (postcard) or name (self-describing formats).
struct ClassId(ErrorClass);

impl<'de> Deserialize<'de> for ClassId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = ClassId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an error class index or name")
            }

            fn visit_u64<E: serde::de::Error>(self, index: u64) -> Result<ClassId, E> {
                let class = usize::try_from(index)
                    .ok()
                    .and_then(|i| ErrorClass::WIRE.get(i))
                    .map_or(ErrorClass::Other, |(class, _)| *class);
                Ok(ClassId(class))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ClassId, E> {
                let class = ErrorClass::WIRE
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map_or(ErrorClass::Other, |(class, _)| *class);
                Ok(ClassId(class))
            }
        }
        deserializer.deserialize_identifier(IdVisitor)
    }
}

/// A fixed-bucket latency histogram (see [`LATENCY_BUCKET_BOUNDS_MS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    counts: [u32; LATENCY_BUCKETS],
}

impl LatencyHistogram {
    /// Adds one sample, halving every bucket first when the total reaches
    /// [`HISTOGRAM_AGE_AT`].
    pub fn record(&mut self, latency_ms: u32) {
        if self.total() >= HISTOGRAM_AGE_AT {
            for c in &mut self.counts {
                *c /= 2;
            }
        }
        let bucket = LATENCY_BUCKET_BOUNDS_MS
            .iter()
            .position(|&bound| latency_ms <= bound)
            .unwrap_or(LATENCY_BUCKETS - 1);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
    }

    /// Samples held.
    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    /// The bucket counts, fastest first.
    pub fn counts(&self) -> &[u32; LATENCY_BUCKETS] {
        &self.counts
    }

    /// Adds another histogram's counts into `sum` (for aggregation).
    pub fn add_into(&self, sum: &mut [u64; LATENCY_BUCKETS]) {
        for (s, &c) in sum.iter_mut().zip(&self.counts) {
            *s += u64::from(c);
        }
    }
}

/// The upper bound of the bucket holding quantile `q` (0–1) of `counts`;
/// `None` when empty. The overflow bucket reports twice the last bound.
pub fn quantile_ms(counts: &[u64; LATENCY_BUCKETS], q: f64) -> Option<u32> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper_ms(i));
        }
    }
    Some(bucket_upper_ms(LATENCY_BUCKETS - 1))
}

fn bucket_upper_ms(bucket: usize) -> u32 {
    LATENCY_BUCKET_BOUNDS_MS
        .get(bucket)
        .copied()
        .unwrap_or(LATENCY_BUCKET_BOUNDS_MS[LATENCY_BUCKET_BOUNDS_MS.len() - 1] * 2)
}

/// `0.5^(elapsed / half-life)`.
pub fn decay_factor(elapsed_ms: u64) -> f64 {
    if elapsed_ms == 0 {
        return 1.0;
    }
    (-(elapsed_ms as f64) / DECAY_HALF_LIFE_MS as f64).exp2()
}

/// One observer's statistics for one (pipeline, model) on one orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model id.
    pub model_id: String,
    /// Exponentially weighted moving average of successful job latency, ms
    /// (0 until the first sample).
    pub latency_ewma_ms: f64,
    /// Latency distribution of successful jobs.
    pub histogram: LatencyHistogram,
    /// Successes, decayed to `last_update_ms`.
    pub successes: f64,
    /// Failures that count against the orchestrator, decayed to `last_update_ms`.
    pub failures: f64,
    /// When the counts were last decayed (unix ms).
    pub last_update_ms: u64,
}

impl ModelStats {
    fn new(pipeline: Pipeline, model_id: &str, now_ms: u64) -> Self {
        Self {
            pipeline,
            model_id: model_id.to_owned(),
            latency_ewma_ms: 0.0,
            histogram: LatencyHistogram::default(),
            successes: 0.0,
            failures: 0.0,
            last_update_ms: now_ms,
        }
    }

    /// (successes, failures) decayed to `now_ms`, without mutating.
    pub fn decayed_counts(&self, now_ms: u64) -> (f64, f64) {
        let f = decay_factor(now_ms.saturating_sub(self.last_update_ms));
        (self.successes * f, self.failures * f)
    }

    fn decay_to(&mut self, now_ms: u64) {
        if now_ms > self.last_update_ms {
            let (s, f) = self.decayed_counts(now_ms);
            self.successes = s;
            self.failures = f;
            self.last_update_ms = now_ms;
        }
    }

    fn add_success(&mut self, latency_ms: u32, now_ms: u64) {
        self.decay_to(now_ms);
        self.successes += 1.0;
        let sample = f64::from(latency_ms);
        self.latency_ewma_ms = if self.latency_ewma_ms <= 0.0 {
            sample
        } else {
            self.latency_ewma_ms + LATENCY_EWMA_ALPHA * (sample - self.latency_ewma_ms)
        };
        self.histogram.record(latency_ms);
    }

    fn add_failure(&mut self, now_ms: u64) {
        self.decay_to(now_ms);
        self.failures += 1.0;
    }

    fn is_valid(&self) -> bool {
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        finite(self.latency_ewma_ms)
            && finite(self.successes)
            && finite(self.failures)
            && !self.model_id.is_empty()
            && self.model_id.len() <= MAX_MODEL_ID_LEN
    }
}

/// A record that cannot be encoded or was refused on decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Empty input.
    #[error("empty record")]
    Empty,
    /// A format version this build does not read.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("record is {0} bytes, more than {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    /// postcard could not encode or decode it.
    #[error("record encoding: {0}")]
    Codec(String),
    /// Bytes left over after the record.
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    /// Decoded but violates an invariant (named).
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

/// What one observer knows about one orchestrator. Single writer: only
/// `observer` changes it; replicas keep the highest `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationRecord {
    /// Whom this is about.
    pub orchestrator: OrchestratorId,
    /// Who wrote it.
    pub observer: NodeId,
    /// The observer's region.
    pub observer_region: RegionId,
    /// Version: the observer's HLC at its last change.
    pub version: Hlc,
    /// The orchestrator's last `GetOrchestrator` reply as this observer saw
    /// it (shared: snapshots and replicas hold the same allocation).
    pub info: Option<Arc<OrchestratorInfo>>,
    /// When `info` was received (unix ms, 0 = never).
    pub info_seen_ms: u64,
    /// Moving average of the discovery round trip from the observer, ms
    /// (0 = never probed): network distance, independent of the model.
    pub probe_rtt_ms: f64,
    /// Per (pipeline, model) statistics, at most [`MAX_MODEL_STATS`].
    pub stats: Vec<ModelStats>,
    /// Failures in a row that count against the orchestrator.
    pub consecutive_failures: u32,
    /// The class of the last failure.
    pub last_error: Option<ErrorClass>,
    /// When the last failure happened (unix ms).
    pub last_error_ms: u64,
    /// This observer does not use the orchestrator before this time (unix ms).
    pub ejected_until_ms: u64,
    /// Ejections since the last success; the next ejection lasts
    /// `base × 2^ejection_count`.
    pub ejection_count: u32,
    /// Last time the orchestrator answered anything (unix ms).
    pub last_seen_ms: u64,
    /// Jobs this observer currently has running there.
    pub in_flight: u32,
}

impl ObservationRecord {
    /// An empty record at version zero.
    pub fn new(orchestrator: OrchestratorId, observer: NodeId, observer_region: RegionId) -> Self {
        Self {
            orchestrator,
            observer,
            observer_region,
            version: Hlc::ZERO,
            info: None,
            info_seen_ms: 0,
            probe_rtt_ms: 0.0,
            stats: Vec::new(),
            consecutive_failures: 0,
            last_error: None,
            last_error_ms: 0,
            ejected_until_ms: 0,
            ejection_count: 0,
            last_seen_ms: 0,
            in_flight: 0,
        }
    }

    /// Statistics for (pipeline, model), if any.
    pub fn stats_for(&self, pipeline: Pipeline, model_id: &str) -> Option<&ModelStats> {
        self.stats
            .iter()
            .find(|s| s.pipeline == pipeline && s.model_id == model_id)
    }

    fn stats_mut(
        &mut self,
        pipeline: Pipeline,
        model_id: &str,
        now_ms: u64,
    ) -> Option<&mut ModelStats> {
        if model_id.is_empty() || model_id.len() > MAX_MODEL_ID_LEN {
            return None;
        }
        let index = match self
            .stats
            .iter()
            .position(|s| s.pipeline == pipeline && s.model_id == model_id)
        {
            Some(i) => i,
            None => {
                if self.stats.len() >= MAX_MODEL_STATS {
                    let oldest = self
                        .stats
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.last_update_ms)
                        .map(|(i, _)| i)?;
                    self.stats.swap_remove(oldest);
                }
                self.stats.push(ModelStats::new(pipeline, model_id, now_ms));
                self.stats.len() - 1
            }
        };
        self.stats.get_mut(index)
    }

    /// A job on (pipeline, model) succeeded after `latency_ms`. Resets the
    /// failure streak and the ejection backoff.
    pub fn record_success(
        &mut self,
        pipeline: Pipeline,
        model_id: &str,
        latency_ms: u32,
        now_ms: u64,
    ) {
        if let Some(stats) = self.stats_mut(pipeline, model_id, now_ms) {
            stats.add_success(latency_ms, now_ms);
        }
        self.consecutive_failures = 0;
        self.ejection_count = 0;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }

    /// A job on (pipeline, model) failed with `class`. Client faults only
    /// update `last_error`; the rest count against the orchestrator.
    pub fn record_failure(
        &mut self,
        pipeline: Pipeline,
        model_id: &str,
        class: ErrorClass,
        now_ms: u64,
    ) {
        self.last_error = Some(class);
        self.last_error_ms = self.last_error_ms.max(now_ms);
        if !class.counts_against_orchestrator() {
            return;
        }
        if let Some(stats) = self.stats_mut(pipeline, model_id, now_ms) {
            stats.add_failure(now_ms);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    /// A health or discovery probe went unanswered: the orchestrator may be
    /// ejected (see `EjectionPolicy`), but the job statistics are untouched
    /// (no job ran, so reliability and latency say nothing new).
    pub fn record_probe_failure(&mut self, class: ErrorClass, now_ms: u64) {
        self.last_error = Some(class);
        self.last_error_ms = self.last_error_ms.max(now_ms);
        if class.counts_against_orchestrator() {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
    }

    /// A fresh `GetOrchestrator` reply.
    pub fn record_info(&mut self, info: OrchestratorInfo, now_ms: u64) {
        self.info = Some(Arc::new(info));
        self.info_seen_ms = self.info_seen_ms.max(now_ms);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }

    /// A discovery probe answered after `rtt_ms`. If this observer ejected
    /// the orchestrator for being unreachable, the answer ends the ejection
    /// (the backoff count stays until a job succeeds).
    pub fn record_probe(&mut self, rtt_ms: u32, now_ms: u64) {
        let sample = f64::from(rtt_ms);
        self.probe_rtt_ms = if self.probe_rtt_ms <= 0.0 {
            sample
        } else {
            self.probe_rtt_ms + LATENCY_EWMA_ALPHA * (sample - self.probe_rtt_ms)
        };
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        if self.is_ejected(now_ms) && self.last_error.is_some_and(ErrorClass::is_unreachable) {
            self.ejected_until_ms = now_ms;
            self.consecutive_failures = 0;
        }
    }

    /// Sets this observer's current load on the orchestrator.
    pub fn set_in_flight(&mut self, in_flight: u32) {
        self.in_flight = in_flight;
    }

    /// The ejection length after `ejection_count` earlier ejections:
    /// `base_ms × 2^count`, capped at `max_ms`.
    pub fn ejection_duration_ms(&self, base_ms: u64, max_ms: u64) -> u64 {
        let shift = self.ejection_count.min(32);
        base_ms.saturating_mul(1u64 << shift).min(max_ms)
    }

    /// Ejects the orchestrator from `now_ms` for the current backoff; returns
    /// the end of the ejection. Each consecutive ejection doubles the length.
    pub fn eject(&mut self, now_ms: u64, base_ms: u64, max_ms: u64) -> u64 {
        let until = now_ms.saturating_add(self.ejection_duration_ms(base_ms, max_ms));
        self.ejected_until_ms = self.ejected_until_ms.max(until);
        self.ejection_count = self.ejection_count.saturating_add(1);
        self.consecutive_failures = 0;
        self.ejected_until_ms
    }

    /// Whether this observer has the orchestrator ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms
    }

    /// Checks the invariants a decoded or merged record must hold.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.stats.len() > MAX_MODEL_STATS {
            return Err(RecordError::Invalid("too many model statistics"));
        }
        if !self.stats.iter().all(ModelStats::is_valid) {
            return Err(RecordError::Invalid("model statistics out of range"));
        }
        if !(self.probe_rtt_ms.is_finite() && self.probe_rtt_ms >= 0.0) {
            return Err(RecordError::Invalid("probe round trip out of range"));
        }
        if let Some(info) = &self.info {
            if info.id != self.orchestrator {
                return Err(RecordError::Invalid("info describes another orchestrator"));
            }
            if info
                .prices
                .iter()
                .any(|p| p.price.pixels_per_unit() <= 0 || p.price.per_unit() < 0)
            {
                return Err(RecordError::Invalid("price out of range"));
            }
        }
        Ok(())
    }

    /// `[RECORD_FORMAT_VERSION] ++ postcard(record)`, at most [`MAX_RECORD_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = vec![RECORD_FORMAT_VERSION];
        let body = postcard::to_allocvec(self).map_err(|e| RecordError::Codec(e.to_string()))?;
        out.extend_from_slice(&body);
        if out.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decodes and validates a record from a peer. Any input yields a record
    /// or an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let (&format, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        if format != RECORD_FORMAT_VERSION {
            return Err(RecordError::UnknownVersion(format));
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|e| RecordError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RecordError::TrailingBytes(rest.len()));
        }
        record.validate()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capabilities;

    fn record() -> ObservationRecord {
        ObservationRecord::new(
            OrchestratorId::parse("orch-1.example:8935").unwrap(),
            NodeId::new("fra-1").unwrap(),
            RegionId::new("fra").unwrap(),
        )
    }

    #[test]
    fn an_error_class_from_a_newer_node_reads_as_other_and_keeps_the_record() {
        // Two encodings that differ only in the class byte: Other (7) and
        // ConnectTimeout (8). A class 9, added by a later version, must
        // not make this node refuse the record.
        let with = |class| {
            let mut r = record();
            r.record_failure(Pipeline::Llm, "m", class, 1_000);
            r
        };
        let other = with(ErrorClass::Other).encode().unwrap();
        let timeout = with(ErrorClass::ConnectTimeout).encode().unwrap();
        assert_eq!(other.len(), timeout.len());
        let differing: Vec<usize> = (0..other.len())
            .filter(|&i| other[i] != timeout[i])
            .collect();
        assert_eq!(differing.len(), 1, "{differing:?}");
        let at = differing[0];
        assert_eq!((other[at], timeout[at]), (7, 8));
        let mut future = timeout.clone();
        future[at] = 9;
        let decoded =
            ObservationRecord::decode(&future).expect("a newer class must not refuse the record");
        assert_eq!(decoded.last_error, Some(ErrorClass::Other));
        assert_eq!(decoded, with(ErrorClass::Other));
        assert_eq!(
            ObservationRecord::decode(&timeout).unwrap().last_error,
            Some(ErrorClass::ConnectTimeout)
        );

        // Every known class round-trips, in postcard and in JSON.
        for (class, name) in ErrorClass::WIRE {
            let bytes = postcard::to_allocvec(&class).unwrap();
            assert_eq!(postcard::from_bytes::<ErrorClass>(&bytes).unwrap(), class);
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ErrorClass>(&json).unwrap(), class);
        }
        assert_eq!(
            serde_json::from_str::<ErrorClass>("\"FromTheFuture\"").unwrap(),
            ErrorClass::Other
        );
        assert!(serde_json::from_str::<ErrorClass>("{\"Busy\":1}").is_err());
    }

    #[test]
    fn success_and_failure_counts_decay_with_half_life() {
        let mut r = record();
        r.record_success(Pipeline::TextToImage, "m", 100, 1_000);
        r.record_failure(Pipeline::TextToImage, "m", ErrorClass::Server, 1_000);
        let s = r.stats_for(Pipeline::TextToImage, "m").unwrap();
        let (succ, fail) = s.decayed_counts(1_000 + DECAY_HALF_LIFE_MS);
        assert!((succ - 0.5).abs() < 1e-9 && (fail - 0.5).abs() < 1e-9);
        assert_eq!(r.consecutive_failures, 1);
        r.record_failure(Pipeline::TextToImage, "m", ErrorClass::Client, 1_000);
        assert_eq!(r.consecutive_failures, 1, "client faults do not count");
        assert_eq!(r.last_error, Some(ErrorClass::Client));
    }

    #[test]
    fn latency_ewma_and_histogram_follow_samples() {
        let mut r = record();
        for _ in 0..100 {
            r.record_success(Pipeline::Llm, "m", 80, 0);
        }
        for _ in 0..20 {
            r.record_success(Pipeline::Llm, "m", 800, 0);
        }
        let s = r.stats_for(Pipeline::Llm, "m").unwrap();
        assert!(s.latency_ewma_ms > 700.0);
        let mut sum = [0u64; LATENCY_BUCKETS];
        s.histogram.add_into(&mut sum);
        assert_eq!(quantile_ms(&sum, 0.5), Some(100));
        assert_eq!(quantile_ms(&sum, 0.99), Some(800));
    }

    #[test]
    fn model_stats_are_bounded() {
        let mut r = record();
        for i in 0..(MAX_MODEL_STATS as u64 + 5) {
            r.record_success(Pipeline::Llm, &format!("model-{i}"), 10, i);
        }
        assert_eq!(r.stats.len(), MAX_MODEL_STATS);
        assert!(
            r.stats_for(Pipeline::Llm, "model-0").is_none(),
            "oldest evicted"
        );
        assert!(r.stats_for(Pipeline::Llm, "model-20").is_some());
    }

    #[test]
    fn ejection_backs_off_and_probe_clears_unreachable() {
        let mut r = record();
        assert_eq!(r.eject(0, 500, 4_000), 500);
        assert!(r.is_ejected(499) && !r.is_ejected(500));
        assert_eq!(r.eject(1_000, 500, 4_000), 2_000);
        assert_eq!(r.eject(3_000, 500, 4_000), 5_000);
        assert_eq!(r.eject(6_000, 500, 4_000), 10_000, "capped at max");
        r.record_failure(Pipeline::Llm, "m", ErrorClass::Connect, 6_000);
        r.record_probe(30, 7_000);
        assert!(!r.is_ejected(7_000));
        assert_eq!(r.ejection_count, 4, "backoff kept until a job succeeds");
        r.record_success(Pipeline::Llm, "m", 10, 7_100);
        assert_eq!(r.ejection_count, 0);
    }

    #[test]
    fn encoding_round_trips_and_rejects_hostile_bytes() {
        let mut r = record();
        r.version = Hlc {
            wall_ms: 5,
            counter: 1,
            node: 9,
        };
        r.record_success(Pipeline::Llm, "m", 10, 1);
        r.record_info(
            OrchestratorInfo {
                id: r.orchestrator.clone(),
                transcoder: "https://orch-1.example:8935".into(),
                capabilities: Capabilities::for_job(Pipeline::Llm, "m", true),
                prices: vec![],
                hardware: vec![],
            },
            2,
        );
        let bytes = r.encode().unwrap();
        assert!(bytes.len() < 1024, "record is {} bytes", bytes.len());
        assert_eq!(ObservationRecord::decode(&bytes).unwrap(), r);

        assert_eq!(ObservationRecord::decode(&[]), Err(RecordError::Empty));
        assert_eq!(
            ObservationRecord::decode(&[9, 1]),
            Err(RecordError::UnknownVersion(9))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            ObservationRecord::decode(&trailing),
            Err(RecordError::TrailingBytes(1))
        ));
        for cut in 0..bytes.len() {
            assert!(ObservationRecord::decode(&bytes[..cut]).is_err());
        }
        let huge = vec![RECORD_FORMAT_VERSION; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            ObservationRecord::decode(&huge),
            Err(RecordError::TooLarge(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut framed = vec![RECORD_FORMAT_VERSION];
            framed.extend_from_slice(&bytes);
            let _ = ObservationRecord::decode(&framed);
            let _ = ObservationRecord::decode(&bytes);
        }
    }
}
