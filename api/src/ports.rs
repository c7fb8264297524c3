//! What the API needs from the rest of the gateway, as small traits that
//! `node` implements and tests fake.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use mesh_core::{Attribution, JobError, JobSpec};

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

/// The operator's signed marketplace listing (`GET /v1/offering`).
pub trait OfferingSource: Send + Sync + 'static {
    /// The response body: the signed envelope as JSON bytes (cached by the
    /// implementation; called on every request).
    fn signed_offering(&self) -> Result<Bytes, String>;
}
