//! The public router: routes, the `x-request-id` middleware and the JSON
//! fallbacks for unknown paths (404) and wrong methods (405).

pub mod capabilities;
pub mod health;
pub mod jobs;
pub mod media;
pub mod offering;
pub mod quote;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use mesh_core::Pipeline;

use crate::PublicState;
use crate::error::ApiError;

/// The request-id header, on every request and response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest client-supplied request id we echo back.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the current request, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The application-facing API:
///
/// | route | auth | answer |
/// |---|---|---|
/// | `POST /<pipeline>` (nine batch pipelines) | bearer key | the job's JSON, or SSE for `/llm` with `"stream": true` |
/// | `POST /live-video-to-video` | — | 404 "not offered" (live video is not served here) |
/// | `GET /v1/capabilities` | bearer key | what the caller can run now, per region, warm/cold ([`capabilities::CapabilitiesReport`]) |
/// | `POST /v1/quote`, `POST /v1/quote/{pipeline}` | bearer key | what the request would cost ([`quote`]) |
/// | `GET /media/{id}` | none (ids are unguessable) | the stored bytes |
/// | `GET /healthz` | none | `{"status":"ok"}` |
/// | `GET /readyz` | none | 200 or 503 with the readiness report |
/// | anything else | — | 404 / 405 JSON |
pub fn public_router(state: PublicState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/media/{id}", get(media::get_media))
        .route("/v1/capabilities", get(capabilities::get_capabilities))
        .route("/v1/quote", post(quote::quote_json))
        .route("/v1/quote/{pipeline}", post(quote::quote_like_job));
    for pipeline in Pipeline::ALL {
        let path = format!("/{}", pipeline.as_str());
        router = router.route(
            &path,
            post(
                move |state: axum::extract::State<Arc<PublicState>>, request: Request| {
                    jobs::handle(state.0, pipeline, request)
                },
            ),
        );
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id))
        .with_state(Arc::new(state))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(short(uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: short(method.as_str()),
        path: short(uri.path()),
    }
}

/// Client text echoed in an error message, cut to a readable length.
fn short(text: &str) -> String {
    const MAX_ECHO_CHARS: usize = 200;
    text.chars().take(MAX_ECHO_CHARS).collect()
}

/// Whether a client-supplied request id may be echoed.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
