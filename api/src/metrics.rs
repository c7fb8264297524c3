//! Prometheus metrics: one [`Metrics`] handle (cheap to clone) that the node
//! records into, exposed by the admin router at `GET /metrics` in the
//! Prometheus text format 0.0.4.
//!
//! Names follow `gatemesh_<subsystem>_<name>_<unit>`; counters end in
//! `_total`. Every metric is listed, with its labels and meaning, in
//! `docs/metrics.md` (a test keeps the two in step).
//!
//! ## Bounded labels
//! Label values come from enums ([`JobOutcome`], [`RetryReason`],
//! [`FailoverKind`], [`Direction`], [`ForwardOutcome`], [`TenantLimit`],
//! [`MemberState`](crate::admin::MemberState), `Pipeline`) or from names
//! that pass through a [`BoundedLabels`]: models (clients choose them),
//! orchestrators, tenants, regions and nodes each admit a fixed number of
//! distinct values and report the rest as `other`.
//!
//! ## Recording
//! The node calls the `record_*` methods on the request path (each is a few
//! atomic operations and, for a new label set, one map insertion). Gauges
//! that describe the view and the membership are set by
//! [`Metrics::refresh_from_view`] and [`Metrics::refresh_from_cluster`]; the
//! admin router calls both before every scrape.

mod http;
pub mod labels;
mod load;
mod offer;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_core::route::RoutePlan;
use mesh_core::view::MAX_ORCHESTRATORS;
use mesh_core::{OrchestratorId, Pipeline, RegionId, ViewSnapshot};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

pub use http::{UNMATCHED_ROUTE, track_http, with_http_metrics};
pub use labels::LoadEvent;
pub use labels::{
    BoundedLabels, Direction, FailoverKind, ForwardOutcome, JobOutcome, NONE, OTHER, RetryReason,
    TenantLimit,
};

use crate::admin::report::{OrchestratorStatus, status_of, wei_per_unit};
use crate::admin::{ClusterReport, MemberState};

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Distinct model label values: clients name models, so this bounds what a
/// client can add; real deployments serve a few dozen models.
pub const MAX_MODEL_LABELS: usize = 128;
/// Distinct orchestrator label values: the view tracks at most this many.
pub const MAX_ORCHESTRATOR_LABELS: usize = MAX_ORCHESTRATORS;
/// Distinct tenant label values: tenants come from configured keys.
pub const MAX_TENANT_LABELS: usize = 256;
/// Distinct region and node label values: a cluster has at most 64 nodes
/// (`mesh_core::view::MAX_OBSERVERS`), so at most as many regions.
pub const MAX_NODE_LABELS: usize = 64;

/// Job duration buckets, seconds: a fast LLM answer (25 ms) to a long
/// video job (2 min).
/// 10 s is a bucket bound because the latency SLO in
/// `deploy/prometheus/rules.yml` reads `le="10"`.
pub const JOB_DURATION_BUCKETS_S: [f64; 14] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 15.0, 30.0, 60.0, 120.0,
];
/// Time-to-first-byte buckets, seconds: stream starts are fast or broken.
pub const FIRST_BYTE_BUCKETS_S: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Attempts-per-job buckets (the routing plan has at most a handful).
pub const ATTEMPT_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];
/// Routing ratio buckets: 1 is a perfect pick; two random choices among the
/// best few usually stays under 1.5.
pub const ROUTING_RATIO_BUCKETS: [f64; 10] = [1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 50.0];

/// The gateway's metrics. Cloning is one `Arc` increment.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// One finished job, for [`Metrics::record_job`].
#[derive(Debug, Clone, Copy)]
pub struct JobSample<'a> {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model id as requested (bounded into a label).
    pub model: &'a str,
    /// Region of the node that ran it (`None`: it never ran).
    pub region: Option<&'a RegionId>,
    /// The orchestrator that served it or failed last (`None`: none tried).
    pub orchestrator: Option<&'a OrchestratorId>,
    /// How it ended.
    pub outcome: JobOutcome,
    /// From accepting the request to the result (or the stream's start).
    pub duration: Duration,
    /// Time to the first byte or token from the orchestrator, if known.
    pub first_byte: Option<Duration>,
    /// Orchestrator attempts made (0 when none was tried).
    pub attempts: u32,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug)]
struct Inner {
    registry: Registry,
    offer: offer::OfferMetrics,
    load: load::LoadMetrics,
    jobs: Family<JobLabels, Counter>,
    job_duration: HistogramFamily<DurationLabels>,
    job_first_byte: HistogramFamily<PipelineModelLabels>,
    job_attempts: HistogramFamily<PipelineLabels>,
    jobs_in_flight: Gauge,
    retries: Family<ReasonLabels, Counter>,
    failovers: Family<KindLabels, Counter>,
    routing_ratio: Histogram,
    ejections: Family<OrchestratorLabels, Counter>,
    flaps: Family<OrchestratorLabels, Counter>,
    error_ratio: Family<OrchestratorLabels, FloatGauge>,
    last_failure_age: Family<OrchestratorLabels, FloatGauge>,
    capacity: Family<OfferLabels, Gauge>,
    price: Family<OfferLabels, FloatGauge>,
    view_orchestrators: Family<StatusLabels, Gauge>,
    capable: Family<PipelineOnlyLabels, Gauge>,
    members: Family<StateLabels, Gauge>,
    gossip_bytes: Family<DirectionLabels, Counter>,
    config_mismatched_peers: Gauge,
    staleness: Family<OriginLabels, FloatGauge>,
    forwards: Family<ForwardLabels, Counter>,
    tenant_requests: Family<TenantLabels, Counter>,
    tenant_rejections: Family<TenantLimitLabels, Counter>,
    tenant_usage_ratio: Family<TenantLimitLabels, FloatGauge>,
    config_reloads: Family<ReloadLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    log_dropped_lines: Counter,
    usage: usage::UsageMetrics,
    models: BoundedLabels,
    orchestrators: BoundedLabels,
    tenants: BoundedLabels,
    regions: BoundedLabels,
    nodes: BoundedLabels,
    totals: Totals,
    view_state: Mutex<ViewState>,
}

/// What [`Metrics::refresh_from_view`] remembers between calls.
#[derive(Debug, Default)]
struct ViewState {
    /// Whether each orchestrator was ejected at the previous refresh.
    ejected: HashMap<OrchestratorId, bool>,
    /// Last local failure per orchestrator, unix ms.
    last_failure_ms: HashMap<OrchestratorId, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every gatemesh metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatemesh");
        let jobs = Family::default();
        let job_duration: HistogramFamily<DurationLabels> =
            Family::new_with_constructor(job_duration_histogram);
        let job_first_byte: HistogramFamily<PipelineModelLabels> =
            Family::new_with_constructor(first_byte_histogram);
        let job_attempts: HistogramFamily<PipelineLabels> =
            Family::new_with_constructor(attempts_histogram);
        let jobs_in_flight = Gauge::default();
        let retries = Family::default();
        let failovers = Family::default();
        let routing_ratio = Histogram::new(ROUTING_RATIO_BUCKETS);
        let ejections = Family::default();
        let flaps = Family::default();
        let error_ratio = Family::default();
        let last_failure_age = Family::default();
        let capacity = Family::default();
        let price = Family::default();
        let view_orchestrators = Family::default();
        let capable = Family::<PipelineOnlyLabels, Gauge>::default();
        let members = Family::default();
        let gossip_bytes = Family::default();
        let config_mismatched_peers = Gauge::default();
        let staleness = Family::default();
        let forwards = Family::default();
        let tenant_requests = Family::default();
        let tenant_rejections = Family::default();
        let tenant_usage_ratio = Family::<TenantLimitLabels, FloatGauge>::default();
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        let http_requests = Family::default();
        let log_dropped_lines = Counter::default();

        registry.register(
            "jobs",
            "Jobs finished, by pipeline, model, serving region, orchestrator and outcome",
            jobs.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Time from accepting a job to its result or stream start",
            job_duration.clone(),
        );
        registry.register(
            "job_first_byte_seconds",
            "Time to the first byte or token from the orchestrator",
            job_first_byte.clone(),
        );
        registry.register(
            "job_attempts",
            "Orchestrator attempts per job",
            job_attempts.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Jobs this node is running now",
            jobs_in_flight.clone(),
        );
        registry.register(
            "job_retries",
            "Attempts retried, by reason",
            retries.clone(),
        );
        registry.register(
            "failovers",
            "Jobs moved past their first orchestrator, by where they went",
            failovers.clone(),
        );
        registry.register(
            "routing_latency_ratio",
            "Chosen candidate's expected latency divided by the best candidate's",
            routing_ratio.clone(),
        );
        registry.register(
            "orchestrator_ejections",
            "Ejections of an orchestrator by this node",
            ejections.clone(),
        );
        registry.register(
            "orchestrator_flaps",
            "Returns of an orchestrator from ejection to service, as seen in this node's view",
            flaps.clone(),
        );
        registry.register(
            "orchestrator_error_ratio",
            "Decayed failures over decayed outcomes, all regions and models",
            error_ratio.clone(),
        );
        registry.register(
            "orchestrator_last_failure_age_seconds",
            "Seconds since this node last saw the orchestrator fail",
            last_failure_age.clone(),
        );
        registry.register(
            "orchestrator_capacity",
            "Advertised concurrent capacity per pipeline and model",
            capacity.clone(),
        );
        registry.register(
            "orchestrator_price_wei_per_unit",
            "Advertised price in wei per pricing unit",
            price.clone(),
        );
        registry.register(
            "view_orchestrators",
            "Orchestrators in the view by status",
            view_orchestrators.clone(),
        );
        registry.register(
            "pipeline_capable_orchestrators",
            "Usable orchestrators (not ejected, not blocked) serving each batch pipeline",
            capable.clone(),
        );
        registry.register(
            "mesh_members",
            "Cluster members by state, as this node sees them",
            members.clone(),
        );
        registry.register(
            "mesh_gossip_bytes",
            "Gossip bytes sent and received",
            gossip_bytes.clone(),
        );
        registry.register(
            "mesh_config_mismatched_peers",
            "Live peers whose routing configuration ([[offer]], [pools], [pricing], [[tenants]], [[rate_cards]]) differs from this node's",
            config_mismatched_peers.clone(),
        );
        registry.register(
            "mesh_view_staleness_seconds",
            "Age of the freshest record from each observing node",
            staleness.clone(),
        );
        registry.register(
            "mesh_forwards",
            "Jobs forwarded across regions, by direction and outcome",
            forwards.clone(),
        );
        registry.register(
            "tenant_requests",
            "Authenticated job requests by tenant",
            tenant_requests.clone(),
        );
        registry.register(
            "tenant_limit_rejections",
            "Requests rejected by a tenant limit",
            tenant_rejections.clone(),
        );
        registry.register(
            "tenant_usage_ratio",
            "Cluster-wide use of a tenant limit in its current window, as a fraction of the limit",
            tenant_usage_ratio.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result (applied or rejected)",
            config_reloads.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route template and status code",
            http_requests.clone(),
        );
        registry.register(
            "log_dropped_lines",
            "Log lines dropped because the queue to the log writer was full (stderr stalled)",
            log_dropped_lines.clone(),
        );
        let usage = usage::UsageMetrics::register(&mut registry);

        let offer = offer::OfferMetrics::register(&mut registry);
        let load = load::LoadMetrics::register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                offer,
                load,
                registry,
                jobs,
                job_duration,
                job_first_byte,
                job_attempts,
                jobs_in_flight,
                retries,
                failovers,
                routing_ratio,
                ejections,
                flaps,
                error_ratio,
                last_failure_age,
                capacity,
                price,
                view_orchestrators,
                capable,
                members,
                gossip_bytes,
                config_mismatched_peers,
                staleness,
                forwards,
                tenant_requests,
                tenant_rejections,
                tenant_usage_ratio,
                config_reloads,
                http_requests,
                log_dropped_lines,
                usage,
                models: BoundedLabels::new(MAX_MODEL_LABELS),
                orchestrators: BoundedLabels::new(MAX_ORCHESTRATOR_LABELS),
                tenants: BoundedLabels::new(MAX_TENANT_LABELS),
                regions: BoundedLabels::new(MAX_NODE_LABELS),
                nodes: BoundedLabels::new(MAX_NODE_LABELS),
                totals: Totals::default(),
                view_state: Mutex::new(ViewState::default()),
            }),
        }
    }

    /// Sets `gatemesh_log_dropped_lines_total` to the log writer's count
    /// since start (a counter: a lower `total` is ignored).
    pub fn set_log_dropped_lines(&self, total: u64) {
        let counter = &self.inner.log_dropped_lines;
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// Every metric in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry)
        {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }

    // ---- jobs ----

    /// One finished job: `gatemesh_jobs_total`, `gatemesh_job_duration_seconds`,
    /// `gatemesh_job_first_byte_seconds` (when known) and
    /// `gatemesh_job_attempts` (when at least one attempt was made).
    pub fn record_job(&self, job: &JobSample<'_>) {
        let inner = &self.inner;
        let pipeline = job.pipeline.as_str();
        let model = inner.models.admit(job.model);
        let region = job
            .region
            .map_or_else(|| NONE.to_owned(), |r| inner.regions.admit(r.as_str()));
        let orchestrator = job.orchestrator.map_or_else(
            || NONE.to_owned(),
            |o| inner.orchestrators.admit(o.as_str()),
        );
        let outcome = job.outcome.as_str();
        inner
            .jobs
            .get_or_create(&JobLabels {
                pipeline,
                model: model.clone(),
                region: region.clone(),
                orchestrator,
                outcome,
            })
            .inc();
        let seconds = job.duration.as_secs_f64();
        inner
            .job_duration
            .get_or_create(&DurationLabels {
                pipeline,
                model: model.clone(),
                region: region.clone(),
                outcome,
            })
            .observe(seconds);
        if let Some(first_byte) = job.first_byte {
            inner
                .job_first_byte
                .get_or_create(&PipelineModelLabels { pipeline, model })
                .observe(first_byte.as_secs_f64());
        }
        if job.attempts > 0 {
            inner
                .job_attempts
                .get_or_create(&PipelineLabels { pipeline })
                .observe(f64::from(job.attempts));
        }
        inner
            .totals
            .record_job(&region, job.outcome.is_failure(), job.duration);
    }

    /// A job started; the returned guard counts it in
    /// `gatemesh_jobs_in_flight` until dropped.
    pub fn job_started(&self) -> InFlightGuard {
        self.inner.jobs_in_flight.inc();
        InFlightGuard {
            metrics: self.clone(),
        }
    }

    /// An attempt was retried: `gatemesh_job_retries_total{reason}`.
    pub fn record_retry(&self, reason: RetryReason) {
        self.inner
            .retries
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        self.inner.totals.retries[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A job moved past its first orchestrator: `gatemesh_failovers_total{kind}`.
    pub fn record_failover(&self, kind: FailoverKind) {
        self.inner
            .failovers
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
        self.inner.totals.failovers[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One routing decision: the chosen candidate's expected latency over the
    /// best candidate's (`gatemesh_routing_latency_ratio`). Ignored when
    /// either is not a positive finite number.
    pub fn record_routing_ratio(&self, chosen_latency_ms: f64, best_latency_ms: f64) {
        let valid = |x: f64| x.is_finite() && x > 0.0;
        if valid(chosen_latency_ms) && valid(best_latency_ms) {
            self.inner
                .routing_ratio
                .observe(chosen_latency_ms / best_latency_ms);
        }
    }

    /// One routing decision from its plan: the first attempt is the chosen
    /// candidate, the lowest expected latency among the attempts the best.
    pub fn record_routing(&self, plan: &RoutePlan) {
        let Some(chosen) = plan.attempts.first() else {
            return;
        };
        let best = plan
            .attempts
            .iter()
            .map(|c| c.expected_latency_ms)
            .filter(|x| x.is_finite() && *x > 0.0)
            .fold(f64::INFINITY, f64::min);
        self.record_routing_ratio(chosen.expected_latency_ms, best);
    }

    // ---- orchestrators ----

    /// This node ejected an orchestrator: `gatemesh_orchestrator_ejections_total`.
    pub fn record_ejection(&self, orchestrator: &OrchestratorId) {
        let orchestrator = self.inner.orchestrators.admit(orchestrator.as_str());
        self.inner
            .ejections
            .get_or_create(&OrchestratorLabels { orchestrator })
            .inc();
    }

    /// An attempt on `orchestrator` failed at `now_ms` (unix ms); feeds
    /// `gatemesh_orchestrator_last_failure_age_seconds` at the next refresh.
    pub fn record_orchestrator_failure(&self, orchestrator: &OrchestratorId, now_ms: u64) {
        let mut state = self.view_state();
        if state.last_failure_ms.len() >= MAX_ORCHESTRATOR_LABELS
            && !state.last_failure_ms.contains_key(orchestrator)
        {
            return;
        }
        let at = state
            .last_failure_ms
            .entry(orchestrator.clone())
            .or_default();
        *at = (*at).max(now_ms);
    }

    /// Sets the gauges that describe the view (error ratio, last failure
    /// age, capacity, price, status counts, staleness per observing node)
    /// and counts orchestrators that came back from ejection since the last
    /// call (`gatemesh_orchestrator_flaps_total`). `now_ms` is unix ms.
    pub fn refresh_from_view(&self, snapshot: &ViewSnapshot, now_ms: u64) {
        let inner = &self.inner;
        let mut state = self.view_state();
        inner.error_ratio.clear();
        inner.last_failure_age.clear();
        inner.capacity.clear();
        inner.price.clear();
        inner.staleness.clear();
        let mut status_counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut freshest_ms: BTreeMap<&str, u64> = BTreeMap::new();
        let lag_ms = now_ms.saturating_sub(snapshot.taken_at_ms());
        let mut ejected_now = HashMap::with_capacity(snapshot.orchestrators().len());
        for summary in snapshot.orchestrators() {
            let orchestrator = inner.orchestrators.admit(summary.id.as_str());
            let status = status_of(summary, now_ms);
            *status_counts.entry(status.as_str()).or_default() += 1;

            let ejected = summary.ejected_until_ms > now_ms;
            if state.ejected.get(&summary.id) == Some(&true) && !ejected {
                inner
                    .flaps
                    .get_or_create(&OrchestratorLabels {
                        orchestrator: orchestrator.clone(),
                    })
                    .inc();
            }
            ejected_now.insert(summary.id.clone(), ejected);

            let (successes, failures) = summary
                .regions
                .iter()
                .flat_map(|r| &r.models)
                .fold((0.0, 0.0), |(s, f), m| (s + m.successes, f + m.failures));
            let outcomes = successes + failures;
            let ratio = if outcomes > 1e-9 {
                failures / outcomes
            } else {
                0.0
            };
            let labels = OrchestratorLabels {
                orchestrator: orchestrator.clone(),
            };
            inner.error_ratio.get_or_create(&labels).set(ratio);
            if let Some(&at) = state.last_failure_ms.get(&summary.id) {
                let age_s = now_ms.saturating_sub(at) as f64 / 1_000.0;
                inner.last_failure_age.get_or_create(&labels).set(age_s);
            }
            if let Some(info) = &summary.info {
                for (capability, models) in &info.capabilities.models {
                    let Some(pipeline) = Pipeline::from_capability(*capability) else {
                        continue;
                    };
                    for (model_id, constraint) in models {
                        let offer = OfferLabels {
                            orchestrator: orchestrator.clone(),
                            pipeline: pipeline.as_str(),
                            model: inner.models.admit(model_id),
                        };
                        inner
                            .capacity
                            .get_or_create(&offer)
                            .set(i64::from(constraint.capacity));
                        if let Some(price) = info.price_for(pipeline, model_id) {
                            inner.price.get_or_create(&offer).set(wei_per_unit(price));
                        }
                    }
                }
            }
            for observer in &summary.observers {
                let age = observer.age_ms.saturating_add(lag_ms);
                let entry = freshest_ms
                    .entry(observer.observer.as_str())
                    .or_insert(u64::MAX);
                *entry = (*entry).min(age);
            }
        }
        for pipeline in Pipeline::BATCH {
            let usable = snapshot
                .orchestrators()
                .iter()
                .filter(|summary| {
                    !summary.blocked
                        && summary.ejected_until_ms <= now_ms
                        && summary.info.as_ref().is_some_and(|info| {
                            info.capabilities
                                .models
                                .get(&pipeline.capability())
                                .is_some_and(|models| !models.is_empty())
                        })
                })
                .count();
            inner
                .capable
                .get_or_create(&PipelineOnlyLabels {
                    pipeline: pipeline.as_str(),
                })
                .set(usable as i64);
        }
        for status in OrchestratorStatus::ALL {
            let count = status_counts.get(status.as_str()).copied().unwrap_or(0);
            inner
                .view_orchestrators
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(count);
        }
        for (origin, age_ms) in freshest_ms {
            inner
                .staleness
                .get_or_create(&OriginLabels {
                    origin: inner.nodes.admit(origin),
                })
                .set(age_ms as f64 / 1_000.0);
        }
        state
            .last_failure_ms
            .retain(|id, _| ejected_now.contains_key(id));
        state.ejected = ejected_now;
    }

    // ---- mesh ----

    /// Sets `gatemesh_mesh_members{state}` from a membership report (every
    /// state is exported, zeros included).
    pub fn refresh_from_cluster(&self, cluster: &ClusterReport) {
        for state in MemberState::ALL {
            let count = cluster.members.iter().filter(|m| m.state == state).count();
            self.set_members(state, count);
        }
    }

    /// Sets `gatemesh_mesh_members{state}` for one state.
    pub fn set_members(&self, state: MemberState, count: usize) {
        self.inner
            .members
            .get_or_create(&StateLabels {
                state: state.as_str(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Gossip traffic: `gatemesh_mesh_gossip_bytes_total{direction}`.
    pub fn record_gossip_bytes(&self, direction: Direction, bytes: u64) {
        self.inner
            .gossip_bytes
            .get_or_create(&DirectionLabels {
                direction: direction.as_str(),
            })
            .inc_by(bytes);
    }

    /// Live peers whose routing configuration differs from ours:
    /// `gatemesh_mesh_config_mismatched_peers`.
    pub fn set_config_mismatched_peers(&self, count: usize) {
        self.inner
            .config_mismatched_peers
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A forwarded job ended: `gatemesh_mesh_forwards_total{direction,outcome}`.
    pub fn record_forward(&self, direction: Direction, outcome: ForwardOutcome) {
        self.inner
            .forwards
            .get_or_create(&ForwardLabels {
                direction: direction.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    // ---- usage ----

    /// Metrics of the usage log, its sink and charges per tenant.
    pub fn usage(&self) -> &usage::UsageMetrics {
        &self.inner.usage
    }

    // ---- tenants ----

    /// An authenticated job request: `gatemesh_tenant_requests_total{tenant}`.
    pub fn record_tenant_request(&self, tenant: &str) {
        let tenant = self.inner.tenants.admit(tenant);
        self.inner
            .tenant_requests
            .get_or_create(&TenantLabels { tenant })
            .inc();
    }

    /// A request rejected by a tenant limit:
    /// `gatemesh_tenant_limit_rejections_total{tenant,limit}`.
    pub fn record_tenant_rejection(&self, tenant: &str, limit: TenantLimit) {
        let tenant = self.inner.tenants.admit(tenant);
        self.inner
            .tenant_rejections
            .get_or_create(&TenantLimitLabels {
                tenant,
                limit: limit.as_str(),
            })
            .inc();
    }

    /// Cluster-wide use of a limit in its current window:
    /// `gatemesh_tenant_usage_ratio{tenant,limit}` (1.0 = at the limit).
    pub fn set_tenant_usage_ratio(&self, tenant: &str, limit: TenantLimit, ratio: f64) {
        let tenant = self.inner.tenants.admit(tenant);
        self.inner
            .tenant_usage_ratio
            .get_or_create(&TenantLimitLabels {
                tenant,
                limit: limit.as_str(),
            })
            .set(ratio);
    }

    /// A configuration reload: `gatemesh_config_reloads_total{result}`
    /// (`applied` or `rejected`).
    pub fn record_config_reload(&self, applied: bool) {
        self.inner
            .config_reloads
            .get_or_create(&ReloadLabels {
                result: if applied { "applied" } else { "rejected" },
            })
            .inc();
    }

    // ---- http ----

    /// One HTTP response: `gatemesh_http_requests_total{route,status}`.
    /// `route` must be a route template (bounded), not a raw path.
    pub fn record_http(&self, route: &str, status: u16) {
        self.inner
            .http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.inner.totals.http.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.inner.totals.http_5xx.fetch_add(1, Ordering::Relaxed);
        }
    }

    // ---- dashboard ----

    /// Cumulative totals for the dashboard (`GET /admin/stats`); the browser
    /// turns two readings into rates and windowed percentiles.
    pub fn stats(&self, now_ms: u64) -> StatsReport {
        let totals = &self.inner.totals;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsReport {
            now_ms,
            jobs_total: load(&totals.jobs),
            jobs_failed: load(&totals.failed),
            jobs_in_flight: self.inner.jobs_in_flight.get().max(0).unsigned_abs(),
            latency_bounds_s: JOB_DURATION_BUCKETS_S.to_vec(),
            latency_counts: totals.latency.iter().map(load).collect(),
            latency_sum_s: load(&totals.latency_sum_us) as f64 / 1e6,
            failovers: FailoverKind::ALL
                .iter()
                .map(|k| (k.as_str(), load(&totals.failovers[*k as usize])))
                .collect(),
            retries: RetryReason::ALL
                .iter()
                .map(|r| (r.as_str(), load(&totals.retries[*r as usize])))
                .collect(),
            by_region: totals
                .by_region
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            http_requests: load(&totals.http),
            http_5xx: load(&totals.http_5xx),
        }
    }

    fn view_state(&self) -> std::sync::MutexGuard<'_, ViewState> {
        // The maps stay consistent even if a holder panicked.
        self.inner
            .view_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts one job in `gatemesh_jobs_in_flight` while alive.
#[derive(Debug)]
pub struct InFlightGuard {
    metrics: Metrics,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.metrics.inner.jobs_in_flight.dec();
    }
}

/// Body of `GET /admin/stats`: cumulative counts since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsReport {
    /// Unix ms of the reading.
    pub now_ms: u64,
    /// Jobs finished.
    pub jobs_total: u64,
    /// Jobs that did not succeed.
    pub jobs_failed: u64,
    /// Jobs running now.
    pub jobs_in_flight: u64,
    /// Upper bounds of the latency buckets, seconds (one more bucket, +Inf).
    pub latency_bounds_s: Vec<f64>,
    /// Jobs per latency bucket (not cumulative), `latency_bounds_s.len() + 1`.
    pub latency_counts: Vec<u64>,
    /// Sum of job durations, seconds.
    pub latency_sum_s: f64,
    /// Failovers by kind.
    pub failovers: BTreeMap<&'static str, u64>,
    /// Retries by reason.
    pub retries: BTreeMap<&'static str, u64>,
    /// Jobs and failures by the region that ran them.
    pub by_region: BTreeMap<String, RegionTotals>,
    /// HTTP requests counted by the middleware.
    pub http_requests: u64,
    /// Of which answered 5xx.
    pub http_5xx: u64,
}

/// Per-region job counts in [`StatsReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegionTotals {
    /// Jobs finished.
    pub jobs: u64,
    /// Of which failed.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Totals {
    jobs: AtomicU64,
    failed: AtomicU64,
    latency: [AtomicU64; JOB_DURATION_BUCKETS_S.len() + 1],
    latency_sum_us: AtomicU64,
    failovers: [AtomicU64; FailoverKind::ALL.len()],
    retries: [AtomicU64; RetryReason::ALL.len()],
    by_region: Mutex<BTreeMap<String, RegionTotals>>,
    http: AtomicU64,
    http_5xx: AtomicU64,
}

impl Totals {
    fn record_job(&self, region: &str, failed: bool, duration: Duration) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = duration.as_secs_f64();
        let bucket = JOB_DURATION_BUCKETS_S
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(JOB_DURATION_BUCKETS_S.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // `region` already went through the bounded node labels.
        let mut by_region = self
            .by_region
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = by_region.entry(region.to_owned()).or_default();
        entry.jobs += 1;
        entry.failed += u64::from(failed);
    }
}

fn job_duration_histogram() -> Histogram {
    Histogram::new(JOB_DURATION_BUCKETS_S)
}

fn first_byte_histogram() -> Histogram {
    Histogram::new(FIRST_BYTE_BUCKETS_S)
}

fn attempts_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    pipeline: &'static str,
    model: String,
    region: String,
    orchestrator: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    pipeline: &'static str,
    model: String,
    region: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineModelLabels {
    pipeline: &'static str,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrchestratorLabels {
    orchestrator: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfferLabels {
    orchestrator: String,
    pipeline: &'static str,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineOnlyLabels {
    pipeline: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    direction: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLimitLabels {
    tenant: String,
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_log_lines_only_count_up() {
        let metrics = Metrics::new();
        let line = |metrics: &Metrics| {
            metrics
                .encode()
                .lines()
                .find(|l| l.starts_with("gatemesh_log_dropped_lines_total "))
                .map(str::to_owned)
        };
        assert_eq!(
            line(&metrics).as_deref(),
            Some("gatemesh_log_dropped_lines_total 0")
        );
        metrics.set_log_dropped_lines(7);
        metrics.set_log_dropped_lines(3);
        assert_eq!(
            line(&metrics).as_deref(),
            Some("gatemesh_log_dropped_lines_total 7")
        );
        metrics.set_log_dropped_lines(12);
        assert_eq!(
            line(&metrics).as_deref(),
            Some("gatemesh_log_dropped_lines_total 12")
        );
    }
}
