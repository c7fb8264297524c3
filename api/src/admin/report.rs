//! The JSON bodies of `GET /admin/orchestrators`: a [`ViewSnapshot`] turned
//! into rows an operator (or the dashboard) reads directly. Absolute times
//! become ages relative to "now" so clients need no clock of their own.

use mesh_core::view::{ObserverFreshness, OrchestratorSummary, RegionHealth, RegionModelStats};
use mesh_core::{
    CapabilityPrice, ErrorClass, NodeId, OrchestratorId, OrchestratorInfo, Pipeline, RegionId,
    ViewSnapshot, WeiPrice,
};
use serde::Serialize;

/// Body of `GET /admin/orchestrators`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrchestratorsReport {
    /// When the snapshot was taken, unix ms.
    pub taken_at_ms: u64,
    /// `now - taken_at_ms`.
    pub snapshot_age_ms: u64,
    /// Every region with at least one observer.
    pub regions: Vec<RegionId>,
    /// The blocklist.
    pub blocked: Vec<OrchestratorId>,
    /// One row per orchestrator, sorted by id.
    pub orchestrators: Vec<OrchestratorRow>,
}

/// One orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrchestratorRow {
    /// Its address.
    pub id: OrchestratorId,
    /// One word for the dashboard's colour.
    pub status: OrchestratorStatus,
    /// On the blocklist.
    pub blocked: bool,
    /// Ms until its ejection ends (`None`: not ejected).
    pub ejected_until_ms: Option<u64>,
    /// The node whose ejection lasts longest.
    pub ejected_by: Option<NodeId>,
    /// The region closest to it.
    pub home_region: Option<RegionId>,
    /// Jobs other nodes report running there.
    pub in_flight_remote: u32,
    /// Its freshest self-description.
    pub info: Option<InfoSummary>,
    /// Statistics per observing region.
    pub regions: Vec<RegionRow>,
    /// Every node holding a record about it, with the record's freshness.
    pub observers: Vec<ObserverRow>,
}

/// Health in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrchestratorStatus {
    /// Usable.
    Ok,
    /// Usable, but recent failures outnumber successes.
    Degraded,
    /// Ejected by some node.
    Ejected,
    /// On the blocklist.
    Blocked,
    /// No node has a `GetOrchestrator` reply from it.
    Unknown,
}

impl OrchestratorStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Degraded,
        Self::Ejected,
        Self::Blocked,
        Self::Unknown,
    ];

    /// The JSON value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Ejected => "ejected",
            Self::Blocked => "blocked",
            Self::Unknown => "unknown",
        }
    }
}

/// What the orchestrator says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfoSummary {
    /// Ms since the reply was received.
    pub seen_ms_ago: u64,
    /// The node that received it.
    pub observer: Option<NodeId>,
    /// Base URL of its HTTP calls.
    pub transcoder: String,
    /// Its go-livepeer version (empty when not stated).
    pub version: String,
    /// Every (pipeline, model) it offers.
    pub models: Vec<ModelRow>,
    /// Distinct GPU names.
    pub gpus: Vec<String>,
    /// Every advertised price.
    pub prices: Vec<PriceRow>,
}

/// One offered (pipeline, model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    /// Pipeline name (`text-to-image`, …).
    pub pipeline: &'static str,
    /// Model id.
    pub model_id: String,
    /// Loaded.
    pub warm: bool,
    /// Concurrent capacity (0 = not stated).
    pub capacity: u32,
    /// Capacity in use (live video).
    pub capacity_in_use: u32,
    /// Its price, if any.
    pub price: Option<PriceRow>,
    /// GPUs serving it.
    pub gpus: Vec<String>,
}

/// One price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceRow {
    /// The pipeline, when the capability is an AI pipeline.
    pub pipeline: Option<&'static str>,
    /// Model id (empty: every model of the capability).
    pub model_id: String,
    /// Numerator: wei.
    pub wei: i64,
    /// Denominator: units.
    pub per_units: i64,
    /// `wei / per_units`.
    pub wei_per_unit: f64,
}

/// What one region's nodes observe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    /// The region.
    pub region: RegionId,
    /// Its nodes holding a record.
    pub observers: u32,
    /// Mean probe round trip from there, ms.
    pub probe_rtt_ms: Option<f64>,
    /// Per (pipeline, model).
    pub models: Vec<RegionModelRow>,
}

/// One region's statistics for one (pipeline, model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionModelRow {
    /// Pipeline name.
    pub pipeline: &'static str,
    /// Model id.
    pub model_id: String,
    /// Latency moving average, ms.
    pub latency_ewma_ms: Option<f64>,
    /// Median latency (bucket bound), ms.
    pub p50_ms: Option<u32>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u32>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u32>,
    /// Decayed successes.
    pub successes: f64,
    /// Decayed failures.
    pub failures: f64,
}

/// One node's record about the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObserverRow {
    /// The node.
    pub node: NodeId,
    /// Its region.
    pub region: RegionId,
    /// Ms since the record's last version (how stale our copy is).
    pub age_ms: u64,
    /// Ms since the orchestrator last answered that node.
    pub last_seen_ms_ago: Option<u64>,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Class of its last failure.
    pub last_error: Option<&'static str>,
    /// Ms until that node's ejection ends.
    pub ejected_until_ms: Option<u64>,
    /// Its jobs in flight there.
    pub in_flight: u32,
}

impl OrchestratorsReport {
    /// Builds the report; `now_ms` is unix ms.
    pub fn from_snapshot(snapshot: &ViewSnapshot, now_ms: u64) -> Self {
        Self {
            taken_at_ms: snapshot.taken_at_ms(),
            snapshot_age_ms: now_ms.saturating_sub(snapshot.taken_at_ms()),
            regions: snapshot.regions().to_vec(),
            blocked: snapshot.blocked().to_vec(),
            orchestrators: snapshot
                .orchestrators()
                .iter()
                .map(|summary| OrchestratorRow::new(summary, snapshot.taken_at_ms(), now_ms))
                .collect(),
        }
    }
}

impl OrchestratorRow {
    fn new(summary: &OrchestratorSummary, taken_at_ms: u64, now_ms: u64) -> Self {
        let regions: Vec<RegionRow> = summary.regions.iter().map(RegionRow::new).collect();
        let ejected_until_ms = remaining(summary.ejected_until_ms, now_ms);
        let status = status_of(summary, now_ms);
        let lag = now_ms.saturating_sub(taken_at_ms);
        Self {
            id: summary.id.clone(),
            status,
            blocked: summary.blocked,
            ejected_by: ejected_until_ms.and(summary.ejected_by.clone()),
            ejected_until_ms,
            home_region: summary.home_region.clone(),
            in_flight_remote: summary.in_flight_remote,
            info: summary.info.as_ref().map(|info| {
                InfoSummary::new(
                    info,
                    summary.info_observer.clone(),
                    summary.info_seen_ms,
                    now_ms,
                )
            }),
            regions,
            observers: summary
                .observers
                .iter()
                .map(|o| ObserverRow::new(o, lag, now_ms))
                .collect(),
        }
    }
}

impl InfoSummary {
    fn new(info: &OrchestratorInfo, observer: Option<NodeId>, seen_ms: u64, now_ms: u64) -> Self {
        let mut models = Vec::new();
        for (capability, per_model) in &info.capabilities.models {
            let Some(pipeline) = Pipeline::from_capability(*capability) else {
                continue;
            };
            for (model_id, constraint) in per_model {
                models.push(ModelRow {
                    pipeline: pipeline.as_str(),
                    model_id: model_id.clone(),
                    warm: constraint.warm,
                    capacity: constraint.capacity,
                    capacity_in_use: constraint.capacity_in_use,
                    price: info
                        .price_for(pipeline, model_id)
                        .map(|p| PriceRow::new(Some(pipeline), model_id, p)),
                    gpus: info
                        .gpu_names(pipeline, model_id)
                        .map(str::to_owned)
                        .collect(),
                });
            }
        }
        let mut gpus: Vec<String> = info.hardware.iter().map(|g| g.name.clone()).collect();
        gpus.sort();
        gpus.dedup();
        Self {
            seen_ms_ago: now_ms.saturating_sub(seen_ms),
            observer,
            transcoder: info.transcoder.clone(),
            version: info.capabilities.version.clone(),
            models,
            gpus,
            prices: info.prices.iter().map(PriceRow::from_wire).collect(),
        }
    }
}

impl PriceRow {
    fn new(pipeline: Option<Pipeline>, model_id: &str, price: WeiPrice) -> Self {
        Self {
            pipeline: pipeline.map(Pipeline::as_str),
            model_id: model_id.to_owned(),
            wei: price.per_unit(),
            per_units: price.pixels_per_unit(),
            wei_per_unit: wei_per_unit(price),
        }
    }

    fn from_wire(price: &CapabilityPrice) -> Self {
        Self::new(
            Pipeline::from_capability(price.capability),
            &price.model_id,
            price.price,
        )
    }
}

impl RegionRow {
    fn new(health: &RegionHealth) -> Self {
        Self {
            region: health.region.clone(),
            observers: health.observers,
            probe_rtt_ms: positive(health.probe_rtt_ms),
            models: health.models.iter().map(RegionModelRow::new).collect(),
        }
    }
}

impl RegionModelRow {
    fn new(stats: &RegionModelStats) -> Self {
        Self {
            pipeline: stats.pipeline.as_str(),
            model_id: stats.model_id.clone(),
            latency_ewma_ms: positive(stats.latency_ewma_ms),
            p50_ms: stats.p50_ms,
            p95_ms: stats.p95_ms,
            p99_ms: stats.p99_ms,
            successes: round3(stats.successes),
            failures: round3(stats.failures),
        }
    }
}

impl ObserverRow {
    fn new(record: &ObserverFreshness, snapshot_lag_ms: u64, now_ms: u64) -> Self {
        Self {
            node: record.observer.clone(),
            region: record.region.clone(),
            age_ms: record.age_ms.saturating_add(snapshot_lag_ms),
            last_seen_ms_ago: (record.last_seen_ms > 0)
                .then(|| now_ms.saturating_sub(record.last_seen_ms)),
            consecutive_failures: record.consecutive_failures,
            last_error: record.last_error.map(error_class_str),
            ejected_until_ms: remaining(record.ejected_until_ms, now_ms),
            in_flight: record.in_flight,
        }
    }
}

/// The health of one orchestrator at `now_ms` (unix ms), in one word:
/// blocked, else ejected, else unknown (no self-description yet), else
/// degraded (recent failures outnumber successes), else ok.
pub fn status_of(summary: &OrchestratorSummary, now_ms: u64) -> OrchestratorStatus {
    let (successes, failures) = summary
        .regions
        .iter()
        .flat_map(|r| &r.models)
        .fold((0.0, 0.0), |(s, f), m| (s + m.successes, f + m.failures));
    if summary.blocked {
        OrchestratorStatus::Blocked
    } else if summary.ejected_until_ms > now_ms {
        OrchestratorStatus::Ejected
    } else if summary.info.is_none() {
        OrchestratorStatus::Unknown
    } else if failures >= 1.0 && failures > successes {
        OrchestratorStatus::Degraded
    } else {
        OrchestratorStatus::Ok
    }
}

/// A stable lower-case name for an error class (JSON and dashboards).
pub const fn error_class_str(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Connect => "connect",
        ErrorClass::ConnectTimeout => "connect_timeout",
        ErrorClass::Timeout => "timeout",
        ErrorClass::Tls => "tls",
        ErrorClass::Busy => "busy",
        ErrorClass::Server => "server",
        ErrorClass::BadResponse => "bad_response",
        ErrorClass::Client => "client",
        ErrorClass::Other => "other",
    }
}

/// A price as wei per unit in floating point (for display and metrics only).
pub fn wei_per_unit(price: WeiPrice) -> f64 {
    price.per_unit() as f64 / price.pixels_per_unit().max(1) as f64
}

/// Ms from `now_ms` until `until_ms`, or `None` when that is not in the future.
fn remaining(until_ms: u64, now_ms: u64) -> Option<u64> {
    (until_ms > now_ms).then(|| until_ms - now_ms)
}

fn positive(value: f64) -> Option<f64> {
    (value.is_finite() && value > 0.0).then(|| round3(value))
}

fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}
