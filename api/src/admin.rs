//! The operator API, served by the node on a loopback (or otherwise
//! private) plain-HTTP listener:
//!
//! | route | answer |
//! |---|---|
//! | `GET /admin/cluster` | this node and every member ([`ClusterReport`]) |
//! | `GET /admin/orchestrators` | the merged view per orchestrator ([`OrchestratorsReport`]) |
//! | `GET /admin/blocklist` | `{"blocked":[…]}` |
//! | `PUT /admin/blocklist/{orchestrator}` | blocks it (id URL-encoded) |
//! | `DELETE /admin/blocklist/{orchestrator}` | unblocks it |
//! | `GET /admin/events` | recent notable events, oldest first |
//! | `GET /admin/pricing` | price caps, the ETH/USD rate and what routing filters out ([`PricingReport`]) |
//! | `GET /admin/keys`, `POST /admin/keys`, `DELETE /admin/keys/{id}` | runtime API keys ([`keys`]; with [`admin_router_with_keys`]) |
//! | `GET /admin/stats` | cumulative job counters for the dashboard ([`StatsReport`](crate::metrics::StatsReport)) |
//! | `GET /admin/usage` | usage records as JSON lines, filtered ([`usage`]) |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//! | `GET /dashboard` | the self-contained dashboard page |
//!
//! When [`AdminState::token`] is set, every route requires
//! `Authorization: Bearer <token>` (401 with the JSON error envelope
//! otherwise). Browsers cannot add that header to a page load, so
//! `GET /dashboard` also accepts `?token=<token>`; the page then sends the
//! header on its own requests.

mod error;
mod events;
pub mod keys;
pub mod ports;
pub mod pricing;
pub mod report;
pub mod usage;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mesh_core::OrchestratorId;
use serde::Serialize;

pub use error::AdminError;
pub use events::{DEFAULT_EVENT_CAPACITY, EventRing};
pub use ports::{ClusterAdmin, ClusterReport, Event, EventKind, EventLog, MemberRow, MemberState};
pub use pricing::{OfferAdmin, PricingReport};
pub use report::{OrchestratorStatus, OrchestratorsReport};

use crate::metrics::{self, Metrics};

/// The dashboard page: one HTML file with inline CSS and JavaScript.
pub const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// Membership, the view and the blocklist.
    pub cluster: Arc<dyn ClusterAdmin>,
    /// Recent notable events.
    pub events: Arc<dyn EventLog>,
    /// The node's metrics (also refreshed from the view on every scrape).
    pub metrics: Metrics,
    /// When set, the bearer token every admin request must carry.
    pub token: Option<String>,
    /// Price caps and routing filters (`GET /admin/pricing`; 404 without).
    pub offer: Option<Arc<dyn OfferAdmin>>,
    /// The usage log behind `GET /admin/usage`; `None` answers 404.
    pub usage: Option<Arc<dyn crate::ports::UsageExport>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The admin router (see the module documentation for its routes).
pub fn admin_router(state: AdminState) -> Router {
    build_router(state, None)
}

/// The admin router plus the `/admin/keys` routes over `keys`, behind the
/// same token check.
pub fn admin_router_with_keys(state: AdminState, keys: Arc<dyn keys::KeyAdmin>) -> Router {
    build_router(state, Some(keys))
}

fn build_router(state: AdminState, keys: Option<Arc<dyn keys::KeyAdmin>>) -> Router {
    let state = Arc::new(state);
    let mut router = Router::new();
    if let Some(keys) = keys {
        let (list, create) = (keys.clone(), keys.clone());
        router = router
            .route(
                "/admin/keys",
                get(move || {
                    let keys = list.clone();
                    async move { Json(keys::KeysBody { keys: keys.list() }) }
                })
                .post(move |body: Result<Json<keys::NewKey>, JsonRejection>| {
                    let keys = create.clone();
                    async move {
                        let Json(request) =
                            body.map_err(|e| AdminError::InvalidKey(e.body_text()))?;
                        let created = keys.create(request)?;
                        tracing::info!(id = %created.row.id, tenant = %created.row.tenant, "API key created through the admin API");
                        Ok::<_, AdminError>((axum::http::StatusCode::CREATED, Json(created)))
                    }
                }),
            )
            .route(
                "/admin/keys/{id}",
                axum::routing::delete(move |id: Result<Path<String>, PathRejection>| {
                    let keys = keys.clone();
                    async move {
                        let Path(id) = id.map_err(|e| AdminError::InvalidKey(e.body_text()))?;
                        let row = keys.revoke(&id)?;
                        tracing::info!(id = %row.id, tenant = %row.tenant, "API key revoked through the admin API");
                        Ok::<_, AdminError>(Json(row))
                    }
                }),
            );
    }
    router
        .route("/admin/cluster", get(cluster))
        .route("/admin/orchestrators", get(orchestrators))
        .route("/admin/blocklist", get(blocklist))
        .route(
            "/admin/blocklist/{orchestrator}",
            axum::routing::put(block).delete(unblock),
        )
        .route("/admin/events", get(events))
        .route("/admin/stats", get(stats))
        .route("/admin/pricing", get(pricing))
        .route("/admin/usage", get(usage::export))
        .route("/metrics", get(prometheus))
        .route("/dashboard", get(dashboard))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

type Shared = State<Arc<AdminState>>;

async fn cluster(State(state): Shared) -> Json<ClusterReport> {
    Json(state.cluster.cluster())
}

async fn orchestrators(State(state): Shared) -> Json<OrchestratorsReport> {
    let snapshot = state.cluster.view();
    Json(OrchestratorsReport::from_snapshot(
        &snapshot,
        state.cluster.now_ms(),
    ))
}

/// Body of the blocklist routes.
#[derive(Debug, Serialize)]
struct BlocklistBody {
    blocked: Vec<OrchestratorId>,
}

async fn blocklist(State(state): Shared) -> Json<BlocklistBody> {
    Json(BlocklistBody {
        blocked: state.cluster.blocklist(),
    })
}

async fn block(
    State(state): Shared,
    orchestrator: Result<Path<String>, PathRejection>,
) -> Result<Json<BlocklistBody>, AdminError> {
    let orchestrator = parse_orchestrator(orchestrator)?;
    state.cluster.block(orchestrator)?;
    tracing::info!("orchestrator blocked through the admin API");
    Ok(Json(BlocklistBody {
        blocked: state.cluster.blocklist(),
    }))
}

async fn unblock(
    State(state): Shared,
    orchestrator: Result<Path<String>, PathRejection>,
) -> Result<Json<BlocklistBody>, AdminError> {
    let orchestrator = parse_orchestrator(orchestrator)?;
    state.cluster.unblock(&orchestrator)?;
    tracing::info!("orchestrator unblocked through the admin API");
    Ok(Json(BlocklistBody {
        blocked: state.cluster.blocklist(),
    }))
}

fn parse_orchestrator(
    path: Result<Path<String>, PathRejection>,
) -> Result<OrchestratorId, AdminError> {
    let Path(raw) = path.map_err(|e| AdminError::InvalidOrchestrator(e.body_text()))?;
    OrchestratorId::parse(&raw).map_err(|e| AdminError::InvalidOrchestrator(e.to_string()))
}

/// Body of `GET /admin/events`.
#[derive(Debug, Serialize)]
struct EventsBody {
    now_ms: u64,
    events: Vec<Event>,
}

async fn events(State(state): Shared) -> Json<EventsBody> {
    Json(EventsBody {
        now_ms: state.cluster.now_ms(),
        events: state.events.recent(),
    })
}

async fn pricing(State(state): Shared) -> Result<Json<PricingReport>, AdminError> {
    match &state.offer {
        Some(offer) => Ok(Json(offer.pricing())),
        None => Err(AdminError::NotFound("GET /admin/pricing".into())),
    }
}

async fn stats(State(state): Shared) -> Json<metrics::StatsReport> {
    Json(state.metrics.stats(state.cluster.now_ms()))
}

async fn prometheus(State(state): Shared) -> Response {
    let now_ms = state.cluster.now_ms();
    state
        .metrics
        .refresh_from_view(&state.cluster.view(), now_ms);
    state.metrics.refresh_from_cluster(&state.cluster.cluster());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> AdminError {
    let path: String = uri.path().chars().take(MAX_ECHO_CHARS).collect();
    AdminError::NotFound(format!("{method} {path}"))
}

/// Client text echoed in an error message, cut to a readable length.
const MAX_ECHO_CHARS: usize = 200;

async fn require_token(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let query_token = (request.uri().path() == "/dashboard")
        .then(|| query_token(request.uri()))
        .flatten();
    let authorized = bearer.is_some_and(|t| same_secret(t, expected))
        || query_token.is_some_and(|t| same_secret(&t, expected));
    if !authorized {
        return AdminError::Unauthorized.into_response();
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `token` query parameter, percent-decoded.
fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        percent_decode(value)
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Compares secrets without an early exit on the first differing byte.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded() {
        let uri: Uri = "/dashboard?x=1&token=a%2Bb%3D".parse().expect("uri");
        assert_eq!(query_token(&uri).as_deref(), Some("a+b="));
        let bad: Uri = "/dashboard?token=%zz".parse().expect("uri");
        assert_eq!(query_token(&bad), None);
        let cut: Uri = "/dashboard?token=%4".parse().expect("uri");
        assert_eq!(query_token(&cut), None);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
    }
}
