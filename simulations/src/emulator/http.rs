//! The HTTP half: `POST /<pipeline>` for every AI pipeline and
//! `GET /stream/<request-id>/<name>` for stored results. Checks run in
//! go-livepeer's order (payment 402, segment credentials 403, body 400,
//! capacity 503, runner 500) and every error body is plain text.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use livepeer::proto;
use mesh_core::Pipeline;
use prost::Message as _;
use serde_json::{Value, json};

use super::info::{caps_from_proto, offered_capabilities};
use super::jobs::{self, JobKind, ParsedJob};
use super::media;
use super::state::{CapacityGuard, NoCapacity, Shared, bump, unix_now_s};

/// Header carrying the base64 protobuf `Payment`.
pub const PAYMENT_HEADER: &str = "livepeer-payment";
/// Header carrying the base64 protobuf `SegData`.
pub const SEGMENT_HEADER: &str = "livepeer-segment";
/// `Authorization` value of current gateways; without it images come back inline.
pub const AI_WORKER_AUTHORIZATION: &str = "Livepeer-AI-Worker-1.0";
/// Largest request body accepted (audio and images are small in tests).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The caller's socket address, put into every request's extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A refused job: status, plain-text body, and which counter it bumps.
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    text: String,
}

impl Reject {
    fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            text: text.into(),
        }
    }
}

/// go's `http.Error`: text/plain, nosniff, message plus newline.
fn plain_text(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

/// The router with every AI route and the result store.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for pipeline in Pipeline::ALL {
        router = router.route(
            &format!("/{pipeline}"),
            post(
                move |State(shared): State<Arc<Shared>>,
                      peer: Option<Extension<PeerAddr>>,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    let peer = peer.map(|Extension(p)| p);
                    handle_job(shared, pipeline, peer, headers, body).await
                },
            ),
        );
    }
    router
        .route("/stream/{request_id}/{name}", get(result_object))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

async fn result_object(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<PeerAddr>>,
    Path((request_id, name)): Path<(String, String)>,
) -> Response {
    region_delay(&shared, peer.map(|Extension(p)| p)).await;
    match shared.store_get(&format!("{request_id}/{name}")) {
        Some(object) => {
            ([(header::CONTENT_TYPE, object.content_type)], object.data).into_response()
        }
        None => plain_text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn region_delay(shared: &Shared, peer: Option<PeerAddr>) {
    if let Some(PeerAddr(addr)) = peer {
        let delay = shared.region_delay(addr.ip());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

async fn handle_job(
    shared: Arc<Shared>,
    pipeline: Pipeline,
    peer: Option<PeerAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    region_delay(&shared, peer).await;
    match run_job(&shared, pipeline, &headers, body).await {
        Ok(response) => {
            bump(&shared.counters.jobs_served);
            response
        }
        Err(reject) => {
            let counters = &shared.counters;
            let counter = match reject.status {
                StatusCode::PAYMENT_REQUIRED => &counters.rejected_payment,
                StatusCode::FORBIDDEN => &counters.rejected_credentials,
                StatusCode::BAD_REQUEST => &counters.rejected_bad_request,
                StatusCode::SERVICE_UNAVAILABLE => &counters.rejected_capacity,
                _ => &counters.failed,
            };
            bump(counter);
            tracing::debug!(orchestrator = %shared.name, %pipeline, status = %reject.status, text = %reject.text, "job refused");
            plain_text(reject.status, &reject.text)
        }
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, ()> {
    headers
        .get(name)
        .map_or(Ok(""), |v: &HeaderValue| v.to_str().map_err(|_| ()))
}

fn check_payment(headers: &HeaderMap) -> Result<proto::Payment, Reject> {
    let reject = |text: String| Reject::new(StatusCode::PAYMENT_REQUIRED, text);
    let text = header_text(headers, PAYMENT_HEADER)
        .map_err(|()| reject("base64 decode error: non-ASCII header".into()))?;
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| reject(format!("base64 decode error: {e}")))?;
    proto::Payment::decode(bytes.as_slice())
        .map_err(|e| reject(format!("protobuf unmarshal error: {e}")))
}

fn check_segment(shared: &Shared, headers: &HeaderMap) -> Result<proto::SegData, Reject> {
    let reject = |text: String| Reject::new(StatusCode::FORBIDDEN, text);
    let text =
        header_text(headers, SEGMENT_HEADER).map_err(|()| reject("ErrorSegEncoding".into()))?;
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| reject("ErrorSegEncoding".into()))?;
    let seg =
        proto::SegData::decode(bytes.as_slice()).map_err(|e| reject(format!("proto: {e}")))?;
    if let Some(wanted) = &seg.capabilities {
        let offered = offered_capabilities(shared, &shared.settings());
        if let Err(why) = offered.accepts(&caps_from_proto(wanted)) {
            tracing::debug!(orchestrator = %shared.name, %why, "capability check failed");
            return Err(reject("incompatible capabilities".into()));
        }
    }
    shared
        .secret()
        .verify(seg.auth_token.as_ref(), unix_now_s())
        .map_err(|e| reject(e.to_string()))?;
    Ok(seg)
}

async fn run_job(
    shared: &Arc<Shared>,
    pipeline: Pipeline,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Reject> {
    check_payment(headers)?;
    check_segment(shared, headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let job = jobs::parse(pipeline, content_type, body)
        .await
        .map_err(|text| Reject::new(StatusCode::BAD_REQUEST, text))?;
    let guard = shared.try_reserve(pipeline, &job.model_id).map_err(|why| {
        if why == NoCapacity::NotServed {
            tracing::debug!(orchestrator = %shared.name, %pipeline, model = %job.model_id, "model not served");
        }
        Reject::new(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity")
    })?;
    if let Some(message) = job.kind.runner_rejection() {
        return Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{pipeline} container returned 400: {message}"),
        ));
    }
    if pipeline != Pipeline::LiveVideoToVideo {
        let latency = shared.job_latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
    if shared.inject_error() {
        return Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{pipeline} container returned 500: emulated runner failure (injected)"),
        ));
    }
    if shared.broken_answers() {
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            "<html>502 Bad Gateway (emulated broken runner)</html>",
        )
            .into_response());
    }
    let legacy_images = headers
        .get(header::AUTHORIZATION)
        .is_none_or(|v| v.as_bytes() != AI_WORKER_AUTHORIZATION.as_bytes());
    Ok(respond(shared, job, guard, legacy_images))
}

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Stores `data` and returns its public URL.
fn store(
    shared: &Shared,
    request_id: &str,
    extension: &str,
    content_type: &'static str,
    data: Vec<u8>,
) -> String {
    let name = format!("{}.{extension}", shared.random_hex(6));
    shared.store_put(
        format!("{request_id}/{name}"),
        content_type,
        Bytes::from(data),
    );
    format!("{}/stream/{request_id}/{name}", shared.base_url)
}

fn respond(
    shared: &Arc<Shared>,
    job: ParsedJob,
    guard: CapacityGuard,
    legacy_images: bool,
) -> Response {
    let request_id = shared.random_hex(4);
    match job.kind {
        JobKind::Images { count, seed, .. } => {
            let base_seed = seed.unwrap_or_else(|| shared.random_u64() % 4_294_967_296);
            let images: Vec<Value> = (0..u64::from(count))
                .map(|i| {
                    let seed = base_seed.wrapping_add(i);
                    let png = media::png_image(seed);
                    let url = if legacy_images {
                        format!("data:image/png;base64,{}", BASE64.encode(&png))
                    } else {
                        store(shared, &request_id, "png", "image/png", png)
                    };
                    json!({"url": url, "seed": seed, "nsfw": false})
                })
                .collect();
            json_response(&json!({ "images": images }))
        }
        JobKind::Video { seed } => {
            let url = store(shared, &request_id, "mp4", "video/mp4", media::mp4_video());
            let seed = seed.unwrap_or_else(|| shared.random_u64() % 4_294_967_296);
            json_response(&json!({"images": [{"url": url, "seed": seed, "nsfw": false}]}))
        }
        JobKind::Transcribe { duration_ms } => {
            let seconds = (duration_ms / 1000).clamp(1, 60);
            let chunks: Vec<Value> = (0..seconds)
                .map(|s| json!({"timestamp": [s as f64, (s + 1) as f64], "text": format!(" emulated second {}", s + 1)}))
                .collect();
            let text = format!(
                "Emulated transcript of {seconds} s of audio from {}.",
                shared.name
            );
            json_response(&json!({"text": text, "chunks": chunks}))
        }
        JobKind::Segment => json_response(&json!({
            "masks": "[[[0.0, 1.0], [1.0, 0.0]]]",
            "scores": "[0.97]",
            "logits": "[[[-1.5, 2.25], [2.25, -1.5]]]",
        })),
        JobKind::Caption { .. } => {
            json_response(&json!({"text": format!("an emulated caption from {}", shared.name)}))
        }
        JobKind::Speech { text } => {
            let duration_ms = (text.chars().count() as u32 * 60).clamp(1_000, 5_000);
            let url = store(
                shared,
                &request_id,
                "wav",
                "audio/wav",
                media::wav_audio(duration_ms),
            );
            json_response(&json!({"audio": {"url": url}}))
        }
        JobKind::Live { stream_id } => {
            drop(guard);
            let mid = shared.random_hex(8);
            let base = format!("{}/ai/trickle/{mid}", shared.base_url);
            tracing::debug!(orchestrator = %shared.name, %stream_id, %mid, "live-video-to-video started");
            json_response(&json!({
                "publish_url": base,
                "subscribe_url": format!("{base}-out"),
                "control_url": format!("{base}-control"),
                "events_url": format!("{base}-events"),
                "manifest_id": mid,
            }))
        }
        JobKind::Llm {
            prompt,
            max_tokens,
            stream,
        } => {
            let tokens = jobs::llm_tokens(&shared.name, max_tokens);
            let llm = LlmAnswer {
                id: format!("chatcmpl-{request_id}"),
                model: job.model_id,
                created: unix_now_s(),
                prompt_tokens: jobs::prompt_tokens(&prompt),
                tokens,
            };
            if stream {
                llm.stream(shared.inter_token_delay(), guard)
            } else {
                let content: String = llm.tokens.concat();
                let usage = (llm.prompt_tokens, llm.tokens.len() as u32);
                json_response(&jobs::llm_response(
                    &llm.id,
                    &llm.model,
                    llm.created,
                    usage,
                    &content,
                    Some("stop"),
                    false,
                ))
            }
        }
    }
}

struct LlmAnswer {
    id: String,
    model: String,
    created: i64,
    prompt_tokens: u32,
    tokens: Vec<String>,
}

impl LlmAnswer {
    /// `text/event-stream`, one `data: <LLMResponse>` per token, `delay`
    /// apart, the last with `finish_reason: "stop"`, no `[DONE]`. The
    /// capacity guard is released when the stream ends or is dropped.
    fn stream(self, delay: Duration, guard: CapacityGuard) -> Response {
        let state = (self, 0usize, Some(guard));
        let chunks = futures_util::stream::unfold(state, move |(answer, next, guard)| async move {
            if next >= answer.tokens.len() {
                drop(guard);
                return None;
            }
            if next > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let last = next + 1 == answer.tokens.len();
            let usage = (answer.prompt_tokens, (next + 1) as u32);
            let chunk = jobs::llm_response(
                &answer.id,
                &answer.model,
                answer.created,
                usage,
                &answer.tokens[next],
                last.then_some("stop"),
                true,
            );
            let frame = Bytes::from(format!("data: {chunk}\n\n"));
            Some((Ok::<_, Infallible>(frame), (answer, next + 1, guard)))
        });
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(chunks),
        )
            .into_response()
    }
}
