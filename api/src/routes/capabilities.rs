//! `GET /v1/capabilities`: what the calling application can run right now,
//! per orchestrator region, with the warm/cold state of each model. The
//! data comes from [`CapabilityCatalog`](crate::ports::CapabilityCatalog):
//! only what this gateway offers, after the price caps and the operator's
//! exclusions (blocklist, ejections, GPU exclusions, allowed regions, the
//! caller's tier pool).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use mesh_core::Pipeline;
use serde::Serialize;

use crate::PublicState;
use crate::error::ApiError;

/// Body of `GET /v1/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilitiesReport {
    /// The region of the node that answered.
    pub region: String,
    /// When the answer was computed, unix ms.
    pub generated_at_ms: u64,
    /// Offered pipelines, in order; a pipeline with no usable orchestrator
    /// is listed with state `unavailable` models (or none).
    pub pipelines: Vec<PipelineCapabilities>,
}

/// One offered pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineCapabilities {
    /// The pipeline; also its path (`POST /<pipeline>`).
    pub pipeline: Pipeline,
    /// Its models.
    pub models: Vec<ModelCapabilities>,
}

/// One model of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCapabilities {
    /// The model id to send as `model_id`.
    pub model_id: String,
    /// `warm` (a loaded model can serve now), `cold` (only orchestrators
    /// that would have to load it) or `unavailable`.
    pub state: ModelState,
    /// Usable orchestrators with the model loaded.
    pub warm: u32,
    /// Usable orchestrators that advertise it unloaded (counted only when
    /// cold models are acceptable for it).
    pub cold: u32,
    /// The same counts per orchestrator region (its closest gateway region;
    /// `unknown` before it is measured).
    pub regions: Vec<RegionCapabilities>,
}

/// Counts in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionCapabilities {
    /// The region.
    pub region: String,
    /// Usable orchestrators there with the model loaded.
    pub warm: u32,
    /// Usable orchestrators there with it unloaded.
    pub cold: u32,
}

/// Whether a model can be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// At least one usable orchestrator has it loaded.
    Warm,
    /// Only usable orchestrators that must load it first.
    Cold,
    /// No usable orchestrator.
    Unavailable,
}

/// The handler: authenticated like the job routes.
pub(crate) async fn get_capabilities(
    State(state): State<Arc<PublicState>>,
    request: Request,
) -> Response {
    let caller = match super::jobs::authenticate(&state, request.headers()) {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    match &state.capabilities {
        Some(catalog) => Json(catalog.capabilities(&caller)).into_response(),
        None => ApiError::NotFound("/v1/capabilities".into()).into_response(),
    }
}
