//! `GET /v1/offering`: the operator's signed marketplace listing. Public (no
//! API key): anyone may read and verify it. See `docs/offering.md`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::ports::OfferingSource;

/// The path of the listing.
pub const OFFERING_PATH: &str = "/v1/offering";

/// A router serving [`OFFERING_PATH`]; merge it into the public router.
pub fn offering_router(source: Arc<dyn OfferingSource>) -> Router {
    Router::new()
        .route(OFFERING_PATH, get(get_offering))
        .layer(middleware::from_fn(super::request_id))
        .with_state(source)
}

async fn get_offering(State(source): State<Arc<dyn OfferingSource>>) -> Response {
    match source.signed_offering() {
        Ok(body) => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=5"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot build the signed offering");
            ApiError::Job(mesh_core::JobError::Internal(error)).into_response()
        }
    }
}
