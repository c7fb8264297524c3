//! `POST /v1/quote` and `POST /v1/quote/{pipeline}`: what a request would
//! cost the caller, without running it.
//!
//! - `POST /v1/quote` takes JSON `{"pipeline": "text-to-image", "request":
//!   {…}}` where `request` is the body the client would send (JSON
//!   pipelines: text-to-image, llm, text-to-speech).
//! - `POST /v1/quote/{pipeline}` takes exactly the request the client would
//!   send to `POST /{pipeline}` (same content type: JSON, or the multipart
//!   form with its files for image-to-image, audio-to-text, …).
//!
//! Both authenticate like a job (the caller's tier selects the rate card),
//! validate like a job, and answer [`QuoteAnswer`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::header;
use mesh_core::{BodyKind, Pipeline};
use serde::Deserialize;

use crate::PublicState;
use crate::billing::{self, QuoteAnswer};
use crate::error::{ApiError, FieldIssue};
use crate::routes::jobs;
use crate::validate;

/// Body of `POST /v1/quote`.
#[derive(Debug, Deserialize)]
struct QuoteRequest {
    pipeline: String,
    request: serde_json::Value,
}

/// `POST /v1/quote`.
pub(crate) async fn quote_json(
    State(state): State<Arc<PublicState>>,
    request: Request,
) -> Result<Json<QuoteAnswer>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = jobs::authenticate(&state, &parts.headers)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.chars().take(100).collect(),
            expected: "application/json",
        });
    }
    let bytes = jobs::read_body(body, state.config.max_json_body_bytes).await?;
    let quote: QuoteRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let pipeline: Pipeline = quote
        .pipeline
        .parse()
        .map_err(|_| ApiError::NotFound(format!("/{}", short(&quote.pipeline))))?;
    if !pipeline.is_batch() || !state.config.offers(pipeline) {
        return Err(ApiError::PipelineNotOffered(pipeline.as_str().to_owned()));
    }
    if pipeline.body_kind() == BodyKind::Multipart {
        return Err(ApiError::Validation(vec![FieldIssue::new(
            "pipeline",
            "value_error",
            format!(
                "{pipeline} takes a multipart form: send it to POST /v1/quote/{pipeline} as you would to POST /{pipeline}"
            ),
        )]));
    }
    let request =
        serde_json::to_vec(&quote.request).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let job = validate::job_from_json(pipeline, &request)?;
    price(&state, &caller, &job)
}

/// `POST /v1/quote/{pipeline}`.
pub(crate) async fn quote_like_job(
    State(state): State<Arc<PublicState>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<QuoteAnswer>, ApiError> {
    let pipeline: Pipeline = name
        .parse()
        .map_err(|_| ApiError::NotFound(format!("/v1/quote/{}", short(&name))))?;
    let parsed = jobs::parse(&state, pipeline, request, jobs::Intent::Quote).await?;
    price(&state, &parsed.caller, &parsed.job)
}

fn price(
    state: &PublicState,
    caller: &crate::ports::Caller,
    job: &mesh_core::JobSpec,
) -> Result<Json<QuoteAnswer>, ApiError> {
    let facts = billing::request_facts(job)?;
    let quote = state
        .billing
        .quote(caller, job, &facts)
        .map_err(billing::billing_error)?;
    Ok(Json(quote.into()))
}

fn short(text: &str) -> String {
    text.chars().take(100).collect()
}
