//! `GET /admin/usage`: usage records from this node's log as JSON lines
//! (`application/x-ndjson`), oldest first.
//!
//! Query parameters, all optional: `tenant`, `pipeline`, `since` and `until`
//! (unix ms, `since ≤ unix_ms < until`), `after_seq` (paging: the last `seq`
//! of the previous page), `limit` (default
//! [`DEFAULT_EXPORT_LIMIT`](crate::billing::DEFAULT_EXPORT_LIMIT), at most
//! [`MAX_EXPORT_LIMIT`](crate::billing::MAX_EXPORT_LIMIT)).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{AdminError, AdminState};
use crate::billing::{DEFAULT_EXPORT_LIMIT, MAX_EXPORT_LIMIT, json_lines};
use crate::ports::UsageFilter;

/// `Content-Type` of the export.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

pub(super) async fn export(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<UsageFilter>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(mut filter) = query.map_err(|e| AdminError::InvalidQuery(e.body_text()))?;
    let Some(usage) = state.usage.clone() else {
        return Err(AdminError::NotFound(
            "/admin/usage (no usage log is configured: set [usage] dir)".into(),
        ));
    };
    filter.limit = Some(
        filter
            .limit
            .unwrap_or(DEFAULT_EXPORT_LIMIT)
            .min(MAX_EXPORT_LIMIT),
    );
    let records = usage.query(filter).await.map_err(AdminError::Unavailable)?;
    let mut response = json_lines(&records).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
