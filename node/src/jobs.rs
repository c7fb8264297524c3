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
use mesh_core::{Attribution, JobError, JobSpec, OrchestratorId, RegionId};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{JobsSection, MediaSection};
use crate::media::MemoryMediaStore;
use crate::registry::{Capable, Registry};

/// Deepest JSON nesting searched for media URLs; results are shallow.
const MAX_MEDIA_SEARCH_DEPTH: usize = 8;
/// Most media objects re-hosted from one response (num_images_per_prompt is small).
const MAX_MEDIA_PER_RESPONSE: usize = 64;

/// Runs jobs against orchestrators. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    client: OrchestratorClient,
    payment: Arc<dyn PaymentSource + Send + Sync>,
    media: Arc<MemoryMediaStore>,
    jobs: JobsSection,
    media_limits: MediaSection,
    region: RegionId,
    rpc_timeout: Duration,
    permits: Arc<Semaphore>,
    draining: AtomicBool,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Registry,
        client: OrchestratorClient,
        payment: Arc<dyn PaymentSource + Send + Sync>,
        media: Arc<MemoryMediaStore>,
        jobs: JobsSection,
        media_limits: MediaSection,
        region: RegionId,
        rpc_timeout: Duration,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(jobs.max_concurrent_jobs));
        Self {
            inner: Arc::new(Inner {
                registry,
                client,
                payment,
                media,
                jobs,
                media_limits,
                region,
                rpc_timeout,
                permits,
                draining: AtomicBool::new(false),
            }),
        }
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

        let mut tried: HashSet<OrchestratorId> = HashSet::new();
        let mut refreshed: HashSet<OrchestratorId> = HashSet::new();
        let mut retry_same: Option<Capable> = None;
        let mut failures: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        loop {
            let candidate = match retry_same.take() {
                Some(candidate) => candidate,
                None => match self.pick(&job, &tried) {
                    Some(candidate) => candidate,
                    None if attempts == 0 => {
                        return Err(JobError::NoCapableOrchestrator {
                            pipeline: job.pipeline,
                            model_id: job.model_id.clone(),
                        });
                    }
                    None => return Err(exhausted(attempts, &failures)),
                },
            };
            if attempts >= inner.jobs.max_attempts {
                return Err(exhausted(attempts, &failures));
            }
            attempts += 1;
            tried.insert(candidate.id.clone());
            let started = Instant::now();
            let outcome =
                tokio::time::timeout_at(deadline, self.attempt(&candidate, &job, &context)).await;
            let error = match outcome {
                Err(_) => {
                    inner.registry.suspend(&candidate.id, self.suspension());
                    tracing::info!(
                        request_id = %context.request_id,
                        orchestrator = %candidate.id,
                        attempts,
                        failures = ?failures,
                        "job deadline passed"
                    );
                    return Err(JobError::DeadlineExceeded { deadline_ms });
                }
                Ok(Ok((response, session_transcoder))) => {
                    inner.registry.clear_suspension(&candidate.id);
                    let attribution = Attribution {
                        orchestrator: candidate.id.clone(),
                        region: Some(inner.region.clone()),
                        attempts,
                    };
                    tracing::info!(
                        request_id = %context.request_id,
                        orchestrator = %candidate.id,
                        transcoder = %session_transcoder,
                        attempts,
                        warm = candidate.warm,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        failures = ?failures,
                        "job served"
                    );
                    return Ok(self.finish(response, attribution, permit));
                }
                Ok(Err(error)) => error,
            };
            let class = error.class();
            failures.push(format!("{}: {error}", candidate.id));
            tracing::debug!(
                request_id = %context.request_id,
                orchestrator = %candidate.id,
                %error,
                class = ?class,
                "attempt failed"
            );
            match class {
                ErrorClass::TryAnother => {}
                ErrorClass::ClientRejected(message) => {
                    return Err(JobError::RejectedByRunner(message));
                }
                ErrorClass::RefreshAndRetrySame => {
                    inner.registry.drop_sessions(&candidate.id);
                    if refreshed.insert(candidate.id.clone()) {
                        retry_same = Some(candidate);
                    } else {
                        inner.registry.suspend(&candidate.id, self.suspension());
                    }
                }
                ErrorClass::Failed => {
                    inner.registry.drop_sessions(&candidate.id);
                    inner.registry.suspend(&candidate.id, self.suspension());
                }
            }
        }
    }

    fn suspension(&self) -> Duration {
        Duration::from_millis(self.inner.jobs.suspension_ms)
    }

    /// The simple pick: warm before cold, healthy before suspended, least
    /// loaded first, random among equals.
    fn pick(&self, job: &JobSpec, tried: &HashSet<OrchestratorId>) -> Option<Capable> {
        let mut candidates: Vec<(Capable, u64)> = self
            .inner
            .registry
            .capable(job.pipeline, &job.model_id)
            .into_iter()
            .filter(|c| !tried.contains(&c.id))
            .map(|c| (c, rand::random::<u64>()))
            .collect();
        candidates.sort_by_key(|(c, tiebreak)| (c.suspended, !c.warm, c.in_flight, *tiebreak));
        candidates.into_iter().next().map(|(c, _)| c)
    }

    async fn attempt(
        &self,
        candidate: &Capable,
        job: &JobSpec,
        context: &RequestContext,
    ) -> Result<(Prepared, String), AttemptError> {
        let inner = &self.inner;
        let _in_flight = inner.registry.begin_job(&candidate.id);
        let session = self.session(&candidate.id, job).await?;
        let response = inner
            .client
            .submit(&session, job, inner.payment.as_ref(), context.deadline)
            .await
            .map_err(AttemptError::Orchestrator)?;
        let prepared = match response {
            AiResponse::Json(body) => Prepared::Json(self.rehost_media(body, context).await?),
            AiResponse::Stream(mut stream) => {
                // Retry stays possible until the first chunk: wait for it here.
                match stream.next().await {
                    Some(Ok(first)) => Prepared::Stream(first, stream),
                    Some(Err(error)) => return Err(AttemptError::Orchestrator(error)),
                    None => Prepared::Stream(Bytes::new(), stream),
                }
            }
        };
        Ok((prepared, session.transcoder.clone()))
    }

    async fn session(&self, id: &OrchestratorId, job: &JobSpec) -> Result<Session, AttemptError> {
        let inner = &self.inner;
        let now_unix = unix_now();
        if let Some(session) = inner.registry.session(id, job.pipeline, &job.model_id) {
            if !session.needs_refresh(now_unix) {
                return Ok(session);
            }
        }
        let capabilities = livepeer::job_capabilities(job.pipeline, &job.model_id);
        let session = inner
            .client
            .get_orchestrator(id, Some(capabilities), inner.rpc_timeout)
            .await
            .map_err(AttemptError::Orchestrator)?;
        inner
            .registry
            .store_session(id, job.pipeline, &job.model_id, session.clone());
        Ok(session)
    }

    /// Downloads every media URL in the response into the gateway's store and
    /// rewrites it to the gateway's own URL.
    async fn rehost_media(
        &self,
        body: Bytes,
        context: &RequestContext,
    ) -> Result<Bytes, AttemptError> {
        let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Err(AttemptError::BadResult(
                "orchestrator returned a 200 response that is not JSON".into(),
            ));
        };
        let mut urls = Vec::new();
        collect_media_urls(&mut document, 0, &mut urls);
        if urls.is_empty() {
            return Ok(body);
        }
        let limits = &self.inner.media_limits;
        let timeout = Duration::from_millis(limits.fetch_timeout_ms);
        for url in urls.into_iter().take(MAX_MEDIA_PER_RESPONSE) {
            let Some(source) = url.as_str().map(str::to_owned) else {
                continue;
            };
            let (content_type, bytes) = self
                .inner
                .client
                .fetch_media(&source, limits.max_object_bytes, timeout)
                .await
                .map_err(AttemptError::Orchestrator)?;
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
        Box::pin(self.clone().execute(job, context))
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
