//! What the API needs from the rest of the gateway, as small traits that
//! `node` implements and tests fake.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use mesh_core::billing::{BillingError, Quote, RateCards, RequestFacts, UsageOutcome, UsageRecord};
use mesh_core::{Attribution, JobError, JobSpec, Pipeline};

use crate::routes::capabilities::CapabilitiesReport;

/// Runs validated jobs: picks orchestrators, retries, fails over.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs one job to completion or to the start of its stream.
    fn run(
        &self,
        job: JobSpec,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<JobOutput, JobError>>;
}

/// Per-request facts the runner needs besides the job.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The id returned to the client in `x-request-id`.
    pub request_id: String,
    /// Scheme and authority under which this gateway's media URLs are served,
    /// e.g. `https://127.0.0.1:8443` (no trailing slash).
    pub public_base_url: String,
    /// How long the job may still take: the configured request deadline
    /// minus the time already spent reading and parsing the request.
    pub deadline: Duration,
    /// The authenticated caller.
    pub caller: Caller,
}

/// What a job produced.
pub enum JobOutput {
    /// A complete JSON response; media URLs already point at this gateway.
    Complete {
        /// Who served it.
        attribution: Attribution,
        /// The JSON body.
        body: Bytes,
    },
    /// A server-sent-event stream relayed chunk by chunk (`/llm` with `stream`).
    Stream {
        /// Who serves it.
        attribution: Attribution,
        /// Raw SSE bytes as they arrive. An `Err` ends the stream; no retry
        /// happens after the first chunk reached the client.
        chunks: BoxStream<'static, Result<Bytes, JobError>>,
    },
}

impl std::fmt::Debug for JobOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete { attribution, body } => f
                .debug_struct("Complete")
                .field("attribution", attribution)
                .field("body_len", &body.len())
                .finish(),
            Self::Stream { attribution, .. } => f
                .debug_struct("Stream")
                .field("attribution", attribution)
                .finish_non_exhaustive(),
        }
    }
}

/// Result media re-hosted by the gateway (images, video, audio).
pub trait MediaStore: Send + Sync + 'static {
    /// The object stored under `id`, if it exists and has not expired.
    fn get(&self, id: &str) -> Option<MediaObject>;
}

/// One stored media object.
#[derive(Debug, Clone)]
pub struct MediaObject {
    /// `image/png`, `video/mp4`, `audio/wav`, …
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// Whether the node can take traffic (`/readyz`).
pub trait Readiness: Send + Sync + 'static {
    /// The current readiness and, when not ready, why.
    fn readiness(&self) -> ReadinessReport;
}

/// Answer of [`Readiness::readiness`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadinessReport {
    /// Ready for traffic.
    pub ready: bool,
    /// Human-readable reasons when not ready (empty when ready).
    pub reasons: Vec<String>,
}

/// Checks API keys.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller for a bearer key, or `None` when the key is unknown.
    fn authenticate(&self, bearer_key: &str) -> Option<Caller>;
}

/// An authenticated application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Tenant name from the key's configuration.
    pub tenant: String,
    /// The tenant's tier (`default` unless configured): selects rate cards,
    /// limits and orchestrator pools.
    pub tier: String,
}

/// What this gateway offers, as declared by the operator and seen in the
/// view. Consulted by the job routes (404 for what is not offered) and by
/// `GET /v1/capabilities`.
pub trait CapabilityCatalog: Send + Sync + 'static {
    /// Whether `pipeline` is offered here now.
    fn offers_pipeline(&self, pipeline: Pipeline) -> bool;

    /// Whether (`pipeline`, `model_id`) is offered here now.
    fn offers_model(&self, pipeline: Pipeline, model_id: &str) -> bool;

    /// What `caller` can run right now.
    fn capabilities(&self, caller: &Caller) -> CapabilitiesReport;
}

/// Prices jobs and keeps their usage records (see [`crate::billing`]).
pub trait Billing: Send + Sync + 'static {
    /// What `job` costs `caller`, from the current rate cards.
    fn quote(
        &self,
        caller: &Caller,
        job: &JobSpec,
        facts: &RequestFacts,
    ) -> Result<Quote, BillingError>;

    /// Writes the usage record of one finished job and resolves once it is
    /// durable (or at once when no log is configured). An error means the
    /// record is not kept: the client must not be charged.
    fn record(&self, usage: JobUsage) -> BoxFuture<'static, Result<UsageRecord, UsageUnavailable>>;
}

/// What the API knows about a finished job; the node adds what only it
/// knows (its name, the orchestrator's price) to make the [`UsageRecord`].
#[derive(Debug, Clone)]
pub struct JobUsage {
    /// The request id.
    pub request_id: String,
    /// Who called.
    pub caller: Caller,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// Units the orchestrator prices in ([`JobSpec::units`]).
    pub orchestrator_units: u64,
    /// The price charged (cost 0 for failed jobs).
    pub quote: Quote,
    /// Who served it, when a job succeeded.
    pub attribution: Option<Attribution>,
    /// Time from accepting the request to the result or stream start.
    pub latency_ms: u64,
    /// How it ended.
    pub outcome: UsageOutcome,
}

/// The usage log cannot take a record (queue full, disk error, stopped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usage log unavailable: {0}")]
pub struct UsageUnavailable(pub String);

/// Free of charge and keeps nothing: for tests and nodes without billing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBilling;

impl Billing for NoBilling {
    fn quote(
        &self,
        caller: &Caller,
        job: &JobSpec,
        facts: &RequestFacts,
    ) -> Result<Quote, BillingError> {
        RateCards::default().quote(job.pipeline, &job.model_id, &caller.tier, facts)
    }

    fn record(&self, usage: JobUsage) -> BoxFuture<'static, Result<UsageRecord, UsageUnavailable>> {
        let record = crate::billing::record_without_node(usage, "");
        Box::pin(async move { Ok(record) })
    }
}

/// Reads usage records back for `GET /admin/usage`.
pub trait UsageExport: Send + Sync + 'static {
    /// Records matching `filter`, oldest first, at most `filter.limit`.
    fn query(&self, filter: UsageFilter) -> BoxFuture<'static, Result<Vec<UsageRecord>, String>>;
}

/// Filters of `GET /admin/usage`; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFilter {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this pipeline.
    pub pipeline: Option<Pipeline>,
    /// Only records made at or after this unix ms.
    pub since: Option<u64>,
    /// Only records made before this unix ms.
    pub until: Option<u64>,
    /// Only records after this log position (paging: pass the last `seq`).
    pub after_seq: Option<u64>,
    /// Most records returned (default and cap in [`crate::billing`]).
    pub limit: Option<usize>,
}
/// Tenant limits: decides whether an authenticated request may start.
/// `node` implements it over the cluster-wide usage counters; it must be
/// fast (no I/O, no lock held across an await).
pub trait Admission: Send + Sync + 'static {
    /// Admits one request of `caller` for `pipeline`, or says which limit
    /// it is over. The permit holds a concurrent-job slot until dropped.
    fn admit(
        &self,
        caller: &Caller,
        pipeline: mesh_core::Pipeline,
    ) -> Result<AdmissionPermit, LimitExceeded>;
}

/// A request over one of its tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which limit.
    pub limit: mesh_core::tenancy::LimitKind,
    /// Seconds until the limit's window frees (`Retry-After`), at least 1.
    pub retry_after_secs: u64,
}

/// An admitted request's slot; dropping it ends the slot (the job ended).
pub struct AdmissionPermit {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl AdmissionPermit {
    /// A permit that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }

    /// A permit that holds nothing.
    pub fn unlimited() -> Self {
        Self { release: None }
    }
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("holds_slot", &self.release.is_some())
            .finish()
    }
}

/// Admits everything (no tenant limits).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Admission for Unlimited {
    fn admit(
        &self,
        _caller: &Caller,
        _pipeline: mesh_core::Pipeline,
    ) -> Result<AdmissionPermit, LimitExceeded> {
        Ok(AdmissionPermit::unlimited())
    }
}

/// The operator's signed marketplace listing (`GET /v1/offering`).
pub trait OfferingSource: Send + Sync + 'static {
    /// The response body: the signed envelope as JSON bytes (cached by the
    /// implementation; called on every request).
    fn signed_offering(&self) -> Result<Bytes, String>;
}
