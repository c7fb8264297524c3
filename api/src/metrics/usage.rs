//! Metrics of charging and the usage log (subsystem `usage`), plus the
//! charged total per tenant. The node's usage log and sink record into
//! [`UsageMetrics`] through [`Metrics::usage`](super::Metrics::usage).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::MAX_TENANT_LABELS;
use super::labels::BoundedLabels;

/// fsync duration buckets, seconds: 50 µs (page cache on tmpfs) to 1 s (a
/// struggling disk).
pub const FSYNC_BUCKETS_S: [f64; 10] = [
    0.000_05, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];
/// Records-per-batch buckets.
pub const BATCH_RECORDS_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1024.0];

/// Why an append failed (`gatemesh_usage_append_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The writer's queue was full.
    QueueFull,
    /// Writing or syncing failed.
    Io,
    /// The writer has stopped.
    Stopped,
}

impl AppendError {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Io => "io",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

/// The usage metrics (cheap to clone: every field is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct UsageMetrics {
    records: Family<OutcomeLabels, Counter>,
    batches: Counter,
    batch_records: Histogram,
    fsync: Histogram,
    bytes: Counter,
    append_errors: Family<ReasonLabels, Counter>,
    sink_batches: Family<ResultLabels, Counter>,
    sink_records: Counter,
    sink_rejected: Counter,
    sink_holding: Gauge,
    charged: Family<TenantLabels, Counter>,
    tenants: std::sync::Arc<BoundedLabels>,
}

impl UsageMetrics {
    /// Registers every usage metric in `registry` (prefix `gatemesh`).
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            records: Family::default(),
            batches: Counter::default(),
            batch_records: Histogram::new(BATCH_RECORDS_BUCKETS),
            fsync: Histogram::new(FSYNC_BUCKETS_S),
            bytes: Counter::default(),
            append_errors: Family::default(),
            sink_batches: Family::default(),
            sink_records: Counter::default(),
            sink_rejected: Counter::default(),
            sink_holding: Gauge::default(),
            charged: Family::default(),
            tenants: std::sync::Arc::new(BoundedLabels::new(MAX_TENANT_LABELS)),
        };
        registry.register(
            "usage_records",
            "Usage records made durable, by outcome",
            this.records.clone(),
        );
        registry.register(
            "usage_fsync_batches",
            "Group commits of the usage log (one write and one fsync each)",
            this.batches.clone(),
        );
        registry.register(
            "usage_batch_records",
            "Records per group commit",
            this.batch_records.clone(),
        );
        registry.register(
            "usage_fsync_duration_seconds",
            "Time of one write plus fsync of a batch",
            this.fsync.clone(),
        );
        registry.register(
            "usage_written_bytes",
            "Bytes appended to the usage log",
            this.bytes.clone(),
        );
        registry.register(
            "usage_append_errors",
            "Records the usage log refused, by reason",
            this.append_errors.clone(),
        );
        registry.register(
            "usage_sink_batches",
            "Batches pushed to the usage sink, by result",
            this.sink_batches.clone(),
        );
        registry.register(
            "usage_sink_records",
            "Records the usage sink acknowledged",
            this.sink_records.clone(),
        );
        registry.register(
            "usage_sink_rejected_records",
            "Records the usage sink refused for good (400, 413 or 422 for that record alone), skipped and listed in sink.rejected",
            this.sink_rejected.clone(),
        );
        registry.register(
            "usage_sink_holding",
            "Whether the usage sink holds a record it refused instead of skipping it (1: it refused every record lately, or sink.rejected is full)",
            this.sink_holding.clone(),
        );
        registry.register(
            "tenant_charged_nano_usd",
            "Nano-USD charged to each tenant (durable usage records)",
            this.charged.clone(),
        );
        this
    }

    /// One durable batch: `records` records of `bytes` bytes, written and
    /// synced in `fsync_seconds`.
    pub fn record_batch(&self, records: usize, bytes: u64, fsync_seconds: f64) {
        self.batches.inc();
        self.batch_records.observe(records as f64);
        self.fsync.observe(fsync_seconds);
        self.bytes.inc_by(bytes);
    }

    /// One durable record and its charge.
    pub fn record_durable(&self, tenant: &str, outcome: &'static str, cost_nano_usd: u64) {
        self.records.get_or_create(&OutcomeLabels { outcome }).inc();
        let tenant = self.tenants.admit(tenant);
        self.charged
            .get_or_create(&TenantLabels { tenant })
            .inc_by(cost_nano_usd);
    }

    /// An append the log refused.
    pub fn record_append_error(&self, reason: AppendError) {
        self.append_errors
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The sink refused one record for good; it was skipped.
    pub fn record_sink_rejected(&self) {
        self.sink_rejected.inc();
    }

    /// Whether the sink holds a refused record instead of skipping it.
    pub fn set_sink_holding(&self, holding: bool) {
        self.sink_holding.set(i64::from(holding));
    }

    /// One push to the sink: `records` acknowledged when `ok`.
    pub fn record_sink_push(&self, ok: bool, records: usize) {
        let result = if ok { "ok" } else { "failed" };
        self.sink_batches
            .get_or_create(&ResultLabels { result })
            .inc();
        if ok {
            self.sink_records.inc_by(records as u64);
        }
    }
}
