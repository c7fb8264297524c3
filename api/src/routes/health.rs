//! `/healthz` (the process answers) and `/readyz` (it should get traffic).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::PublicState;

/// `GET /healthz`: 200 `{"status":"ok"}` while the process serves HTTP.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: 200 when ready, else 503; the body is the
/// [`crate::ports::ReadinessReport`] either way.
pub async fn readyz(State(state): State<Arc<PublicState>>) -> Response {
    let report = state.readiness.readiness();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
