//! The HTTP middleware behind `gatemesh_http_requests_total{route,status}`.
//! `route` is the matched route template (`/media/{id}`, not the raw path),
//! or `unmatched` for requests no route took (404 fallbacks), so the label
//! set stays bounded whatever clients send.

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use super::Metrics;

/// `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Wraps every route of `router` so each response is counted in
/// `gatemesh_http_requests_total`. For the public router:
/// `api::metrics::with_http_metrics(api::public_router(state), metrics)`.
pub fn with_http_metrics<S>(router: Router<S>, metrics: Metrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(middleware::from_fn_with_state(metrics, track_http))
}

/// The middleware function itself, for callers composing their own layers
/// (`axum::middleware::from_fn_with_state(metrics, track_http)`).
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    metrics.record_http(&route, response.status().as_u16());
    response
}
