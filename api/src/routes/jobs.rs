//! `POST /<pipeline>`: authenticate, check the content type and size, parse
//! into a [`mesh_core::JobSpec`], price it, run it, write its usage record
//! (durably, before answering 200), and relay the answer (JSON, or SSE chunk
//! by chunk) with the cost header. One log line per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use mesh_core::billing::UsageOutcome;
use mesh_core::{Attribution, BodyKind, Fault, JobError, JobSpec, Pipeline};

use crate::PublicState;
use crate::billing::{self, COST_HEADER};
use crate::error::ApiError;
use crate::ports::{AdmissionPermit, Caller, JobOutput, JobUsage, RequestContext};
use crate::routes::RequestId;
use crate::validate;

/// Response header naming the orchestrator that served the job.
pub const ORCHESTRATOR_HEADER: &str = "x-gatemesh-orchestrator";
/// Response header naming the region of the node that ran the job.
pub const REGION_HEADER: &str = "x-gatemesh-region";
/// Response header with the number of orchestrator attempts.
pub const ATTEMPTS_HEADER: &str = "x-gatemesh-attempts";

/// What the log line says about a job besides status and time.
#[derive(Debug, Default)]
struct JobFacts {
    model_id: Option<String>,
    orchestrator: Option<String>,
    attempts: Option<u32>,
}

/// Handles one job request end to end and logs it.
pub(crate) async fn handle(
    state: Arc<PublicState>,
    pipeline: Pipeline,
    request: Request,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let mut facts = JobFacts::default();
    let outcome = run(&state, pipeline, &request_id, request, &mut facts).await;
    let (response, error) = match outcome {
        Ok(response) => (response, None),
        Err(error) => {
            // The full text, including internal causes clients never see.
            let text = error.to_string();
            (error.into_response(), Some(text))
        }
    };
    let status = response.status().as_u16();
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let model_id = facts.model_id.as_deref().unwrap_or("");
    let orchestrator = facts.orchestrator.as_deref().unwrap_or("");
    let attempts = facts.attempts.unwrap_or(0);
    let error = error.as_deref().unwrap_or("");
    if status >= 500 {
        tracing::warn!(
            request_id,
            pipeline = pipeline.as_str(),
            model_id,
            status,
            orchestrator,
            attempts,
            elapsed_ms,
            error,
            "job request"
        );
    } else {
        tracing::info!(
            request_id,
            pipeline = pipeline.as_str(),
            model_id,
            status,
            orchestrator,
            attempts,
            elapsed_ms,
            error,
            "job request"
        );
    }
    response
}

/// A request read, authenticated and validated into a job.
pub(crate) struct ParsedJob {
    /// Who called.
    pub(crate) caller: Caller,
    /// The validated job.
    pub(crate) job: JobSpec,
    /// The request's head (headers, URI).
    pub(crate) parts: axum::http::request::Parts,
    /// The tenant-limit slot of a job that will run (`None` for a quote).
    pub(crate) permit: Option<AdmissionPermit>,
}

/// Whether a parsed request will run (and so counts against the tenant's
/// limits) or is only priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    /// A job: admitted against the tenant's limits.
    Run,
    /// A quote: priced, never admitted or counted.
    Quote,
}

/// Checks that the pipeline is offered, authenticates, reads the body within
/// its limit and validates it: everything before a job runs. `POST /v1/quote`
/// parses through here too, so a quote prices exactly what would run.
pub(crate) async fn parse(
    state: &PublicState,
    pipeline: Pipeline,
    request: Request,
    intent: Intent,
) -> Result<ParsedJob, ApiError> {
    if !pipeline.is_batch()
        || !state.config.offers(pipeline)
        || state
            .capabilities
            .as_ref()
            .is_some_and(|c| !c.offers_pipeline(pipeline))
    {
        return Err(ApiError::PipelineNotOffered(pipeline.as_str().to_owned()));
    }
    let (parts, body) = request.into_parts();
    let caller = authenticate(state, &parts.headers)?;
    // Tenant limits, before the body is read: a tenant over its limit costs
    // us no more than the headers. The permit holds a concurrent-job slot
    // until the job's response (or stream) ends.
    let permit = match intent {
        Intent::Run => Some(state.admission.admit(&caller, pipeline)?),
        Intent::Quote => None,
    };

    let kind = pipeline.body_kind();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (limit, expected) = match kind {
        BodyKind::Json => (state.config.max_json_body_bytes, "application/json"),
        BodyKind::Multipart => (state.config.max_multipart_body_bytes, "multipart/form-data"),
    };
    if essence != expected {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.chars().take(100).collect(),
            expected,
        });
    }
    let boundary = match kind {
        BodyKind::Json => None,
        BodyKind::Multipart => Some(
            multer::parse_boundary(content_type)
                .map_err(|e| ApiError::MalformedMultipart(e.to_string()))?,
        ),
    };
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit_bytes: limit });
    }
    let bytes = read_body(body, limit).await?;

    let job = match boundary {
        None => validate::job_from_json(pipeline, &bytes)?,
        Some(boundary) => {
            let form = validate::read_multipart(bytes, &boundary).await?;
            validate::job_from_parts(pipeline, form)?
        }
    };
    if let Some(catalog) = &state.capabilities
        && !catalog.offers_model(pipeline, &job.model_id)
    {
        return Err(ApiError::ModelNotOffered {
            pipeline: pipeline.as_str().to_owned(),
            model_id: job.model_id.chars().take(200).collect(),
        });
    }
    Ok(ParsedJob {
        caller,
        job,
        parts,
        permit,
    })
}

async fn run(
    state: &PublicState,
    pipeline: Pipeline,
    request_id: &str,
    request: Request,
    facts: &mut JobFacts,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let ParsedJob {
        caller,
        job,
        parts,
        permit,
    } = parse(state, pipeline, request, Intent::Run).await?;
    facts.model_id = Some(job.model_id.clone());
    let request_facts = billing::request_facts(&job)?;
    let quote = state
        .billing
        .quote(&caller, &job, &request_facts)
        .map_err(billing::billing_error)?;
    // The record a job leaves behind; attribution, latency and outcome are
    // filled in when it ends.
    let template = JobUsage {
        request_id: request_id.to_owned(),
        caller: caller.clone(),
        pipeline,
        model_id: job.model_id.clone(),
        orchestrator_units: job.units,
        quote,
        attribution: None,
        latency_ms: 0,
        outcome: UsageOutcome::Ok,
    };

    // The runner gets what is left of the request's deadline after reading
    // and parsing the body, so its own timeouts fire before ours.
    let deadline = state.config.request_deadline();
    let remaining = deadline.saturating_sub(started.elapsed());
    let context = RequestContext {
        request_id: request_id.to_owned(),
        public_base_url: public_base_url(state, &parts.headers, &parts.uri),
        deadline: remaining,
        caller,
    };
    let output = tokio::time::timeout(remaining, state.jobs.run(job, context))
        .await
        .map_err(|_| deadline_error(deadline))
        .and_then(|result| result.map_err(ApiError::Job));
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            record_failure(state, template, &error, started).await;
            return Err(error);
        }
    };
    match output {
        JobOutput::Complete { attribution, body } => {
            note(facts, &attribution);
            let cost = charge(state, &template, &attribution, started).await?;
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            attribution_headers(response.headers_mut(), &attribution);
            response
                .headers_mut()
                .insert(COST_HEADER, HeaderValue::from(cost));
            drop(permit);
            Ok(response)
        }
        JobOutput::Stream {
            attribution,
            mut chunks,
        } => {
            note(facts, &attribution);
            // Wait for the first chunk so a stream that fails before sending
            // anything still gets a proper error status.
            let remaining = deadline.saturating_sub(started.elapsed());
            let first = tokio::time::timeout(remaining, chunks.next())
                .await
                .map_err(|_| deadline_error(deadline))?;
            let first = match first {
                Some(Ok(bytes)) => Some(bytes),
                Some(Err(error)) => {
                    let error = ApiError::Job(error);
                    record_failure(state, template, &error, started).await;
                    return Err(error);
                }
                None => None,
            };
            // The stream starts: its cost is known from the request, so it
            // is recorded (durably) before the 200 head goes out.
            let cost = charge(state, &template, &attribution, started).await?;
            let id = request_id.to_owned();
            let rest = chunks
                .take_while(move |item| {
                    if let Err(error) = item {
                        // Bytes already reached the client: no retry, no
                        // error status; end the stream and say why here.
                        tracing::warn!(request_id = id, %error, "job stream ended by an error");
                    }
                    std::future::ready(item.is_ok())
                })
                .filter_map(|item| std::future::ready(item.ok()));
            let stream = futures_util::stream::iter(first)
                .chain(rest)
                .map(move |chunk| {
                    // The slot lasts as long as the stream.
                    let _slot = &permit;
                    Ok::<Bytes, std::convert::Infallible>(chunk)
                });
            let mut response = (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/event-stream"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                ],
                Body::from_stream(stream),
            )
                .into_response();
            response
                .headers_mut()
                .insert("x-accel-buffering", HeaderValue::from_static("no"));
            attribution_headers(response.headers_mut(), &attribution);
            response
                .headers_mut()
                .insert(COST_HEADER, HeaderValue::from(cost));
            Ok(response)
        }
    }
}

/// Writes the usage record of a successful job and waits until it is
/// durable; returns the cost to put in [`COST_HEADER`].
async fn charge(
    state: &PublicState,
    template: &JobUsage,
    attribution: &Attribution,
    started: Instant,
) -> Result<u64, ApiError> {
    let mut usage = template.clone();
    usage.attribution = Some(attribution.clone());
    usage.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = state
        .billing
        .record(usage)
        .await
        .map_err(|e| ApiError::UsageUnavailable(e.to_string()))?;
    Ok(record.cost_nano_usd)
}

/// Records a job that reached the runner and failed (cost 0). Best effort:
/// a failure record that cannot be written is only logged.
async fn record_failure(
    state: &PublicState,
    mut usage: JobUsage,
    error: &ApiError,
    started: Instant,
) {
    usage.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    usage.outcome = match error {
        ApiError::Job(job) => match job.fault() {
            Fault::Client => UsageOutcome::ClientError,
            Fault::Upstream => UsageOutcome::UpstreamError,
            Fault::Internal => UsageOutcome::InternalError,
        },
        _ => UsageOutcome::InternalError,
    };
    let request_id = usage.request_id.clone();
    if let Err(error) = state.billing.record(usage).await {
        tracing::warn!(request_id, %error, "usage record of a failed job not written");
    }
}

fn deadline_error(deadline: Duration) -> ApiError {
    ApiError::Job(JobError::DeadlineExceeded {
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
    })
}

pub(crate) fn authenticate(state: &PublicState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingKey)?
        .to_str()
        .map_err(|_| ApiError::UnknownKey)?;
    let (scheme, key) = value.trim().split_once(' ').ok_or(ApiError::MissingKey)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingKey);
    }
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiError::MissingKey);
    }
    state
        .authenticator
        .authenticate(key)
        .ok_or(ApiError::UnknownKey)
}

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit_bytes: limit })
        }
        Err(error) => Err(ApiError::BodyRead(error.to_string())),
    }
}

/// `https://<host>` from the configured base URL or the request's host.
fn public_base_url(state: &PublicState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    if let Some(url) = &state.config.public_base_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|host| is_sane_host(host))
        .unwrap_or("localhost");
    format!("https://{host}")
}

/// A host\[:port\] we may put in URLs we hand out: letters, digits, `.-_:`
/// and IPv6 brackets, at most 255 bytes.
fn is_sane_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

fn note(facts: &mut JobFacts, attribution: &Attribution) {
    facts.orchestrator = Some(attribution.orchestrator.to_string());
    facts.attempts = Some(attribution.attempts);
}

fn attribution_headers(headers: &mut HeaderMap, attribution: &Attribution) {
    if let Ok(value) = HeaderValue::from_str(attribution.orchestrator.as_str()) {
        headers.insert(ORCHESTRATOR_HEADER, value);
    }
    if let Some(region) = &attribution.region
        && let Ok(value) = HeaderValue::from_str(region.as_str())
    {
        headers.insert(REGION_HEADER, value);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attribution.attempts));
}
