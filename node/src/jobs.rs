//! Job execution: pick an orchestrator, get or refresh its session, send the
//! job, classify the outcome the way the protocol's error texts require, and
//! retry or fail over within the request's deadline. Streams are retried only
//! until their first byte: once a chunk is on its way to the client, the
//! orchestrator is committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api::{JobOutput, JobRunner, RequestContext};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use livepeer::{
    AiResponse, ErrorClass, OrchestratorClient, OrchestratorError, PaymentSource, Session,
};
use mesh_core::route::{RoutePlan, Tier};
use mesh_core::view::ErrorClass as ObservedError;
use mesh_core::{Attribution, JobError, JobSpec, NodeId, OrchestratorId, Pipeline, RegionId};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cluster::{Cluster, observed_error};
use crate::config::{JobsSection, MediaSection};
use crate::media::MemoryMediaStore;
use crate::registry::Registry;
use api::admin::EventKind;
use api::metrics::{Direction, FailoverKind, ForwardOutcome, JobOutcome, JobSample, RetryReason};

/// Deepest JSON nesting searched for media URLs; results are shallow.
const MAX_MEDIA_SEARCH_DEPTH: usize = 8;
/// Most media objects re-hosted from one response (num_images_per_prompt is small).
const MAX_MEDIA_PER_RESPONSE: usize = 64;
/// Most routing plans per job: the first plan, then re-plans after its
/// candidates are used up (ejections seen meanwhile change the plan).
const MAX_PLANS_PER_JOB: u32 = 3;
/// Most nodes of other regions a job is forwarded to before giving up.
const MAX_FORWARDS_PER_JOB: usize = 2;

/// Whether a job may be forwarded to another region's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// A job from our own clients: forwarding is the last resort.
    Allowed,
    /// A job another node forwarded to us: run it here or fail.
    Forbidden,
}

/// Runs jobs against orchestrators. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// What an executor is built from.
#[allow(missing_debug_implementations)] // holds a `dyn PaymentSource`
pub struct ExecutorParts {
    /// Sessions and in-flight counts.
    pub registry: Registry,
    /// The shared view (and the node's region and metrics).
    pub cluster: Cluster,
    /// The orchestrator client.
    pub client: OrchestratorClient,
    /// Payment credentials for each job.
    pub payment: Arc<dyn PaymentSource + Send + Sync>,
    /// Where re-hosted media goes.
    pub media: Arc<MemoryMediaStore>,
    /// Attempt and concurrency bounds.
    pub jobs: JobsSection,
    /// Media download bounds.
    pub media_limits: MediaSection,
    /// Timeout of one session `GetOrchestrator`.
    pub rpc_timeout: Duration,
    /// The capability declaration and price caps (routing rules per job).
    pub offering: Arc<crate::offer::Offering>,
    /// Live benchmarks for the offering (every client job is counted).
    pub benchmarks: crate::offering::Benchmarks,
}

struct Inner {
    registry: Registry,
    cluster: Cluster,
    client: OrchestratorClient,
    payment: Arc<dyn PaymentSource + Send + Sync>,
    media: Arc<MemoryMediaStore>,
    jobs: JobsSection,
    media_limits: MediaSection,
    region: RegionId,
    rpc_timeout: Duration,
    offering: Arc<crate::offer::Offering>,
    permits: Arc<Semaphore>,
    draining: AtomicBool,
    benchmarks: crate::offering::Benchmarks,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum AttemptError {
    /// The orchestrator answered with an error or could not be reached.
    Orchestrator(OrchestratorError),
    /// The orchestrator answered 200 with a result we cannot use.
    BadResult(String),
}

impl AttemptError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Orchestrator(error) => error.class(),
            Self::BadResult(_) => ErrorClass::Failed,
        }
    }

    fn observed(&self) -> ObservedError {
        match self {
            Self::Orchestrator(error) => observed_error(error),
            Self::BadResult(_) => ObservedError::BadResponse,
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Orchestrator(error) => error.fmt(f),
            Self::BadResult(message) => f.write_str(message),
        }
    }
}

impl Executor {
    /// A new executor.
    pub fn new(parts: ExecutorParts) -> Self {
        let permits = Arc::new(Semaphore::new(parts.jobs.max_concurrent_jobs));
        Self {
            inner: Arc::new(Inner {
                region: parts.cluster.region().clone(),
                registry: parts.registry,
                cluster: parts.cluster,
                client: parts.client,
                payment: parts.payment,
                media: parts.media,
                jobs: parts.jobs,
                media_limits: parts.media_limits,
                rpc_timeout: parts.rpc_timeout,
                offering: parts.offering,
                permits,
                draining: AtomicBool::new(false),
                benchmarks: parts.benchmarks,
            }),
        }
    }

    /// The shared view this executor records into.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// Stops taking new jobs; jobs already running continue.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Jobs currently running.
    pub fn running(&self) -> usize {
        self.inner.jobs.max_concurrent_jobs - self.inner.permits.available_permits()
    }

    async fn execute(self, job: JobSpec, context: RequestContext) -> Result<JobOutput, JobError> {
        self.execute_with(job, context, Forwarding::Allowed).await
    }

    /// Runs a job: walks the routing plan's orchestrators, re-plans once
    /// they are used up, and finally forwards to another region's node
    /// (unless the job itself was forwarded to us).
    pub async fn execute_with(
        self,
        job: JobSpec,
        context: RequestContext,
        forwarding: Forwarding,
    ) -> Result<JobOutput, JobError> {
        let inner = &self.inner;
        if inner.draining.load(Ordering::SeqCst) {
            return Err(JobError::Draining);
        }
        let deadline = Instant::now() + context.deadline;
        let deadline_ms = context.deadline.as_millis() as u64;
        let permit = tokio::time::timeout_at(deadline, inner.permits.clone().acquire_owned())
            .await
            .map_err(|_| JobError::DeadlineExceeded { deadline_ms })?
            .map_err(|_| JobError::Draining)?;

        let mut tried: Vec<OrchestratorId> = Vec::new();
        let mut refreshed: HashSet<OrchestratorId> = HashSet::new();
        let mut failures: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        let mut forward_to: Vec<(RegionId, NodeId)> = Vec::new();
        let mut plans = 0u32;
        let mut home_failed = false;
        'plans: while attempts < inner.jobs.max_attempts && plans < MAX_PLANS_PER_JOB {
            plans += 1;
            let plan = self.plan(&job, &tried, &context);
            if plans == 1 || forward_to.is_empty() {
                forward_to = plan.forward_to.clone();
            }
            if plan.attempts.is_empty() {
                break;
            }
            for candidate in plan.attempts {
                let mut same_again = true;
                while same_again {
                    same_again = false;
                    if attempts >= inner.jobs.max_attempts {
                        break 'plans;
                    }
                    attempts += 1;
                    if !tried.contains(&candidate.orchestrator) {
                        tried.push(candidate.orchestrator.clone());
                    }
                    let started = Instant::now();
                    let outcome = tokio::time::timeout_at(
                        deadline,
                        self.attempt(&candidate.orchestrator, &job, &context),
                    )
                    .await;
                    let error = match outcome {
                        Err(_) => {
                            inner.cluster.record_failure(
                                &candidate.orchestrator,
                                job.pipeline,
                                &job.model_id,
                                ObservedError::Timeout,
                            );
                            tracing::info!(
                                request_id = %context.request_id,
                                orchestrator = %candidate.orchestrator,
                                attempts,
                                failures = ?failures,
                                "job deadline passed"
                            );
                            return Err(JobError::DeadlineExceeded { deadline_ms });
                        }
                        Ok(Ok(prepared)) => {
                            let latency_ms =
                                started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
                            inner.cluster.record_success(
                                &candidate.orchestrator,
                                job.pipeline,
                                &job.model_id,
                                latency_ms,
                            );
                            if home_failed || candidate.tier != Tier::Home {
                                let (kind, event) = if candidate.tier == Tier::Home {
                                    (FailoverKind::InRegion, EventKind::FailoverInRegion)
                                } else {
                                    (FailoverKind::CrossRegion, EventKind::FailoverCrossRegion)
                                };
                                inner.cluster.metrics().record_failover(kind);
                                inner.cluster.event(
                                    event,
                                    Some(&candidate.orchestrator),
                                    format!(
                                        "request {} ({}) served as {:?} after {} attempts",
                                        context.request_id, job.pipeline, candidate.tier, attempts
                                    ),
                                );
                            }
                            let attribution = Attribution {
                                orchestrator: candidate.orchestrator.clone(),
                                region: Some(inner.region.clone()),
                                attempts,
                            };
                            // The API's "job request" line is the access log;
                            // this one adds why, at debug unless earlier
                            // attempts failed (one info line per job was ~6 %
                            // of a job's CPU on the gateway hop).
                            if failures.is_empty() {
                                tracing::debug!(
                                    request_id = %context.request_id,
                                    orchestrator = %candidate.orchestrator,
                                    tier = ?candidate.tier,
                                    reason = ?candidate.reason,
                                    expected_latency_ms = candidate.expected_latency_ms as u64,
                                    attempts,
                                    elapsed_ms = latency_ms,
                                    "job served"
                                );
                            } else {
                                tracing::info!(
                                    request_id = %context.request_id,
                                    orchestrator = %candidate.orchestrator,
                                    tier = ?candidate.tier,
                                    attempts,
                                    elapsed_ms = latency_ms,
                                    failures = ?failures,
                                    "job served after failed attempts"
                                );
                            }
                            return Ok(self.finish(prepared, attribution, permit));
                        }
                        Ok(Err(error)) => error,
                    };
                    home_failed |= candidate.tier == Tier::Home;
                    let class = error.class();
                    failures.push(format!("{}: {error}", candidate.orchestrator));
                    tracing::debug!(
                        request_id = %context.request_id,
                        orchestrator = %candidate.orchestrator,
                        %error,
                        class = ?class,
                        "attempt failed"
                    );
                    inner.cluster.metrics().record_retry(match &class {
                        ErrorClass::TryAnother => RetryReason::Capacity,
                        ErrorClass::RefreshAndRetrySame => RetryReason::Refresh,
                        _ => RetryReason::Failed,
                    });
                    match class {
                        ErrorClass::TryAnother => {
                            inner.cluster.record_failure(
                                &candidate.orchestrator,
                                job.pipeline,
                                &job.model_id,
                                ObservedError::Busy,
                            );
                        }
                        ErrorClass::ClientRejected(message) => {
                            return Err(JobError::RejectedByRunner(message));
                        }
                        ErrorClass::RefreshAndRetrySame => {
                            inner.registry.drop_sessions(&candidate.orchestrator);
                            if refreshed.insert(candidate.orchestrator.clone()) {
                                same_again = true;
                            } else {
                                inner.cluster.record_failure(
                                    &candidate.orchestrator,
                                    job.pipeline,
                                    &job.model_id,
                                    ObservedError::Other,
                                );
                            }
                        }
                        ErrorClass::Failed => {
                            inner.registry.drop_sessions(&candidate.orchestrator);
                            inner.cluster.record_failure(
                                &candidate.orchestrator,
                                job.pipeline,
                                &job.model_id,
                                error.observed(),
                            );
                        }
                    }
                }
            }
        }
        if forwarding == Forwarding::Allowed {
            for (region, node) in forward_to.into_iter().take(MAX_FORWARDS_PER_JOB) {
                match self.forward(&node, &job, &context, deadline).await {
                    Ok(output) => {
                        inner
                            .cluster
                            .metrics()
                            .record_failover(FailoverKind::Forwarded);
                        inner
                            .cluster
                            .metrics()
                            .record_forward(Direction::Out, ForwardOutcome::Success);
                        inner.cluster.event(
                            EventKind::Forwarded,
                            None,
                            format!(
                                "request {} ({}) forwarded to {node} in {region}",
                                context.request_id, job.pipeline
                            ),
                        );
                        drop(permit);
                        return Ok(output);
                    }
                    Err(error) => {
                        inner
                            .cluster
                            .metrics()
                            .record_forward(Direction::Out, ForwardOutcome::Failed);
                        failures.push(format!("forward to {node}: {error}"));
                        if matches!(
                            error,
                            JobError::RejectedByRunner(_) | JobError::DeadlineExceeded { .. }
                        ) {
                            return Err(error);
                        }
                    }
                }
            }
        }
        if attempts == 0 && failures.is_empty() {
            return Err(JobError::NoCapableOrchestrator {
                pipeline: job.pipeline,
                model_id: job.model_id.clone(),
            });
        }
        Err(exhausted(attempts, &failures))
    }

    /// Asks mesh-core's router where to run the job.
    fn plan(&self, job: &JobSpec, tried: &[OrchestratorId], context: &RequestContext) -> RoutePlan {
        let inner = &self.inner;
        let snapshot = inner.cluster.snapshot();
        // The operator's rules for this pipeline, model and tier; none when
        // a reload stopped offering it since the API checked.
        let Some(mut requirements) =
            inner
                .offering
                .requirements(job.pipeline, &job.model_id, &context.caller.tier)
        else {
            return RoutePlan {
                attempts: Vec::new(),
                forward_to: Vec::new(),
                filtered: Default::default(),
            };
        };
        requirements.exclude = tried.to_vec();
        let local = inner.cluster.local_state_from(&inner.registry);
        let plan = mesh_core::route::pick(&requirements, &snapshot, &local, &mut rand::rng());
        if tried.is_empty() {
            inner.cluster.metrics().record_routing(&plan);
            inner.cluster.metrics().record_filtered(&plan.filtered);
        }
        tracing::debug!(request_id = %context.request_id, pipeline = %job.pipeline, model_id = %job.model_id, plan = %plan, "route plan");
        plan
    }

    async fn attempt(
        &self,
        orchestrator: &OrchestratorId,
        job: &JobSpec,
        context: &RequestContext,
    ) -> Result<Prepared, AttemptError> {
        let inner = &self.inner;
        let _in_flight = inner.registry.begin_job(orchestrator);
        let session = self.session(orchestrator, job).await?;
        let response = inner
            .client
            .submit(&session, job, inner.payment.as_ref(), context.deadline)
            .await
            .map_err(AttemptError::Orchestrator)?;
        let prepared = match response {
            // An LLM answer has no media to re-host ("url" keys in it are
            // citations, not results): check that it is JSON, without
            // building a document.
            AiResponse::Json(body) if job.pipeline == Pipeline::Llm => {
                if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
                    return Err(not_json());
                }
                Prepared::Json(body)
            }
            AiResponse::Json(body) => Prepared::Json(
                self.rehost_media(body, [orchestrator.as_str(), &session.transcoder], context)
                    .await?,
            ),
            AiResponse::Stream(mut stream) => {
                // Retry stays possible until the first chunk: wait for it here.
                match stream.next().await {
                    Some(Ok(first)) => Prepared::Stream(first, stream),
                    Some(Err(error)) => return Err(AttemptError::Orchestrator(error)),
                    None => Prepared::Stream(Bytes::new(), stream),
                }
            }
        };
        Ok(prepared)
    }

    async fn session(
        &self,
        id: &OrchestratorId,
        job: &JobSpec,
    ) -> Result<Arc<Session>, AttemptError> {
        let inner = &self.inner;
        let now_unix = unix_now();
        if let Some(session) = inner.registry.session(id, job.pipeline, &job.model_id)
            && !session.needs_refresh(now_unix)
        {
            {
                return Ok(session);
            }
        }
        let capabilities = livepeer::job_capabilities(job.pipeline, &job.model_id);
        let session = inner
            .client
            .get_orchestrator(id, Some(capabilities), inner.rpc_timeout)
            .await
            .map_err(AttemptError::Orchestrator)?;
        let session = Arc::new(session);
        inner
            .registry
            .store_session(id, job.pipeline, &job.model_id, session.clone());
        Ok(session)
    }

    /// Downloads every media URL in the response into the gateway's store and
    /// rewrites it to the gateway's own URL.
    /// Downloads the media a JSON result points at and re-hosts it here.
    /// `origin` is where the result came from (the address we queried and
    /// the service URI the orchestrator answered with): results live there.
    async fn rehost_media(
        &self,
        body: Bytes,
        origin: [&str; 2],
        context: &RequestContext,
    ) -> Result<Bytes, AttemptError> {
        let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Err(not_json());
        };
        let mut urls = Vec::new();
        collect_media_urls(&mut document, 0, &mut urls);
        if urls.is_empty() {
            return Ok(body);
        }
        let origin_hosts: Vec<String> = origin.into_iter().filter_map(url_host).collect();
        let limits = &self.inner.media_limits;
        let timeout = Duration::from_millis(limits.fetch_timeout_ms);
        for url in urls.into_iter().take(MAX_MEDIA_PER_RESPONSE) {
            let Some(source) = url.as_str().map(str::to_owned) else {
                continue;
            };
            if !limits.fetch_from_other_hosts && !media_url_allowed(&source, &origin_hosts) {
                return Err(AttemptError::BadResult(format!(
                    "result URL {source:?} is not on the orchestrator's host ({}); not fetched ([media] fetch_from_other_hosts allows it)",
                    origin_hosts.join(", ")
                )));
            }
            let (content_type, bytes) = self
                .inner
                .client
                .fetch_media(&source, limits.max_object_bytes, timeout)
                .await
                // A result we could not download is a bad answer, not an
                // unreachable orchestrator: the job itself went through.
                .map_err(|error| {
                    AttemptError::BadResult(format!(
                        "fetching the result {source:?}: {}",
                        fetch_failure(&error)
                    ))
                })?;
            let id = self.inner.media.insert(content_type, bytes);
            *url = serde_json::Value::String(format!("{}/media/{id}", context.public_base_url));
        }
        serde_json::to_vec(&document)
            .map(Bytes::from)
            .map_err(|e| AttemptError::BadResult(e.to_string()))
    }

    fn finish(
        &self,
        prepared: Prepared,
        attribution: Attribution,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> JobOutput {
        match prepared {
            Prepared::Json(body) => JobOutput::Complete { attribution, body },
            Prepared::Stream(first, rest) => {
                let orchestrator = attribution.orchestrator.clone();
                let rest = rest.map_err(move |error| {
                    tracing::warn!(orchestrator = %orchestrator, %error, "stream broke after the first byte; not retried");
                    JobError::AttemptsExhausted {
                        attempts: 1,
                        last_error: error.to_string(),
                    }
                });
                // The permit lives as long as the stream: a streaming job
                // counts against the concurrency bound until it ends.
                let chunks = futures_util::stream::once(async move { Ok(first) })
                    .chain(rest)
                    .map(move |chunk| {
                        let _permit = &permit;
                        chunk
                    })
                    .filter(|chunk| {
                        let keep = !matches!(chunk, Ok(bytes) if bytes.is_empty());
                        async move { keep }
                    })
                    .boxed();
                JobOutput::Stream {
                    attribution,
                    chunks,
                }
            }
        }
    }
}

/// A successful attempt's response, ready for the client.
enum Prepared {
    Json(Bytes),
    Stream(
        Bytes,
        futures_util::stream::BoxStream<'static, Result<Bytes, OrchestratorError>>,
    ),
}

impl JobRunner for Executor {
    fn run(
        &self,
        job: JobSpec,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let pipeline = job.pipeline;
            let model = job.model_id.clone();
            let metrics = this.inner.cluster.metrics().clone();
            metrics.record_tenant_request(&context.caller.tenant);
            let _in_flight = metrics.job_started();
            let result = this.clone().execute(job, context).await;
            let attribution = match &result {
                Ok(
                    JobOutput::Complete { attribution, .. } | JobOutput::Stream { attribution, .. },
                ) => Some(attribution),
                Err(_) => None,
            };
            let elapsed = started.elapsed();
            metrics.record_job(&JobSample {
                pipeline,
                model: &model,
                region: Some(&this.inner.region),
                orchestrator: attribution.map(|a| &a.orchestrator),
                outcome: JobOutcome::of(&result),
                duration: elapsed,
                first_byte: result.is_ok().then_some(elapsed),
                attempts: attribution.map_or(0, |a| a.attempts),
            });
            this.inner
                .benchmarks
                .record(pipeline, &model, &result, elapsed);
            result
        })
    }
}

fn exhausted(attempts: u32, failures: &[String]) -> JobError {
    JobError::AttemptsExhausted {
        attempts,
        last_error: failures
            .last()
            .cloned()
            .unwrap_or_else(|| "no orchestrator left to try".into()),
    }
}

/// Why a result download failed, in words about the result's host (the
/// client's errors speak of "the orchestrator", which a result URL may not
/// be).
fn fetch_failure(error: &livepeer::OrchestratorError) -> String {
    use livepeer::OrchestratorError as E;
    match error {
        E::Connect(detail) => format!("cannot connect: {detail}"),
        E::ConnectTimeout(detail) => format!("cannot connect: connect timed out: {detail}"),
        E::Http { status, body } => format!("answered {status}: {body}"),
        other => other.to_string(),
    }
}

/// The host of a URL, lower-case for `http(s)` (the `url` crate
/// normalizes it; an IPv6 address in brackets).
fn url_host(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.host_str().map(str::to_owned)
}

/// Whether a result at `url` may be downloaded when results must come from
/// the orchestrator: a `data:` URI (nothing to download), or a URL on one of
/// `origin_hosts` (any port or scheme).
fn media_url_allowed(url: &str, origin_hosts: &[String]) -> bool {
    if url.starts_with("data:") {
        return true;
    }
    url_host(url).is_some_and(|host| origin_hosts.contains(&host))
}

/// A 200 answer whose body is not JSON: a bad result, retried elsewhere.
fn not_json() -> AttemptError {
    AttemptError::BadResult("orchestrator returned a 200 response that is not JSON".into())
}

/// Finds string values under keys named `url` that point at media
/// (`http(s)://` or `data:`), depth-first, bounded in depth.
fn collect_media_urls<'a>(
    value: &'a mut serde_json::Value,
    depth: usize,
    found: &mut Vec<&'a mut serde_json::Value>,
) {
    if depth > MAX_MEDIA_SEARCH_DEPTH {
        return;
    }
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let is_media_url = key == "url"
                    && child.as_str().is_some_and(|s| {
                        s.starts_with("http://")
                            || s.starts_with("https://")
                            || s.starts_with("data:")
                    });
                if is_media_url {
                    found.push(child);
                } else {
                    collect_media_urls(child, depth + 1, found);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect_media_urls(child, depth + 1, found);
            }
        }
        _ => {}
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_fetched_only_from_the_orchestrators_host() {
        let origin: Vec<String> = ["https://orch-1.example:8935", "https://[::1]:9000"]
            .into_iter()
            .filter_map(url_host)
            .collect();
        assert_eq!(origin, ["orch-1.example", "[::1]"]);
        for allowed in [
            "https://orch-1.example:8935/stream/a/b.png",
            "http://ORCH-1.example/stream/x.wav",
            "https://[::1]:1234/stream/c.png",
            "data:image/png;base64,AAAA",
        ] {
            assert!(media_url_allowed(allowed, &origin), "{allowed}");
        }
        for refused in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9443/admin/keys",
            "https://orch-1.example.evil.net/stream/a.png",
            "https://evil@10.0.0.1/orch-1.example",
            "http://[::2]/x",
            "not a url",
        ] {
            assert!(!media_url_allowed(refused, &origin), "{refused}");
        }
    }

    #[test]
    fn media_urls_are_found_in_images_and_audio() {
        let mut doc = serde_json::json!({
            "images": [{"url": "https://o:1/stream/a.png", "seed": 1, "nsfw": false},
                       {"url": "data:image/png;base64,AAAA"}],
            "audio": {"url": "https://o:1/stream/b.wav"},
            "text": "url",
            "chunks": [{"url": "not-a-url"}]
        });
        let mut found = Vec::new();
        collect_media_urls(&mut doc, 0, &mut found);
        assert_eq!(found.len(), 3);
    }
}
