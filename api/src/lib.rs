//! # api
//!
//! gatemesh's public HTTP API as axum routers. The `node` crate serves them
//! over HTTPS; this crate only builds [`axum::Router`]s and talks to the rest
//! of the gateway through the small traits in [`ports`], so every handler is
//! tested with fakes.
//!
//! ## Table of contents
//! - [`public_router`] / [`PublicState`]: the application-facing API —
//!   `POST /<pipeline>` for the nine batch pipelines, `GET /v1/capabilities` with the bodies of
//!   ai-runner's published `gateway.openapi.yaml` (so the `livepeer-ai` SDKs
//!   work unchanged), `GET /media/{id}`, `GET /healthz`, `GET /readyz`.
//! - [`routes`]: the handlers ([`routes::jobs`], [`routes::media`],
//!   [`routes::health`]) and the `x-request-id` middleware.
//! - [`billing`]: request facts for pricing, `POST /v1/quote`'s answer, the
//!   cost header and usage records (rules in `mesh_core::billing`).
//! - [`validate`]: per-pipeline typed request structs, required-field and type
//!   checks, defaults, and the price units of protocol §2.2 → `JobSpec`.
//! - [`probe`]: image sizes (PNG/JPEG/GIF/WebP/BMP) and WAV durations from
//!   untrusted bytes.
//! - [`error`]: [`ApiError`] and the ONE error-to-response mapping, including
//!   the dual error envelope `{"detail":{"msg"},"error":{"message","code"}}`.
//! - [`config`]: [`ApiConfig`] (body limits, deadline, base URL, pipelines).
//! - [`ports`]: what the API needs from the gateway (`JobRunner`,
//!   `MediaStore`, `Readiness`, `Authenticator`, `Admission`, `OfferingSource`).
//! - [`offering_router`]: `GET /v1/offering`, the signed marketplace
//!   listing (public; merged into the public router when configured).
//!
//! ## Headers
//! Every response carries `x-request-id` (the client's own when it is 1–128
//! bytes of `[A-Za-z0-9_-]`, else a fresh UUID v4). Job responses also carry
//! `x-gatemesh-orchestrator`, `x-gatemesh-region` (when known) and
//! `x-gatemesh-attempts`, and `x-gatemesh-cost-nano-usd` (what the job cost
//! the caller, see [`billing`]).

pub mod admin;
pub mod billing;
pub mod config;
pub mod error;
pub mod metrics;
pub mod ports;
pub mod probe;
pub mod routes;
pub mod validate;

use std::sync::Arc;

pub use admin::{AdminState, admin_router, admin_router_with_keys};
pub use config::{ApiConfig, ConfigError};
pub use error::{ApiError, FieldIssue};
pub use metrics::Metrics;
pub use routes::{RequestId, public_router};

pub use ports::{
    Admission, AdmissionPermit, Authenticator, Billing, Caller, CapabilityCatalog, JobOutput,
    JobRunner, JobUsage, LimitExceeded, MediaObject, MediaStore, NoBilling, OfferingSource,
    Readiness, ReadinessReport, RequestContext, Unlimited, UsageExport, UsageFilter,
    UsageUnavailable,
};
pub use routes::offering::offering_router;

/// Everything the public router's handlers share. [`public_router`] puts it
/// behind one `Arc`, so a request clones a pointer, not the config.
#[derive(Clone)]
pub struct PublicState {
    /// Runs validated jobs.
    pub jobs: Arc<dyn JobRunner>,
    /// Serves re-hosted result media.
    pub media: Arc<dyn MediaStore>,
    /// Answers `/readyz`.
    pub readiness: Arc<dyn Readiness>,
    /// Checks bearer keys.
    pub authenticator: Arc<dyn Authenticator>,
    /// Prices jobs and keeps their usage records ([`NoBilling`]: free).
    pub billing: Arc<dyn Billing>,
    /// Tenant limits ([`Unlimited`] for none).
    pub admission: Arc<dyn Admission>,
    /// Limits, deadline, base URL, offered pipelines.
    pub config: ApiConfig,
    /// The operator's capability declaration (`None`: every pipeline of
    /// `config.pipelines`, every model; `GET /v1/capabilities` answers 404).
    pub capabilities: Option<Arc<dyn CapabilityCatalog>>,
}

impl std::fmt::Debug for PublicState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
