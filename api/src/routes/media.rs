//! `GET /media/{id}`: result media re-hosted by the gateway. No API key: ids
//! are unguessable, and media URLs are handed to browsers and other tools
//! that do not hold the key.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::PublicState;
use crate::error::ApiError;

/// Cache policy of media responses: an id always names the same bytes, so
/// they are immutable; `private` keeps shared caches from holding what is in
/// effect a capability URL.
pub const MEDIA_CACHE_CONTROL: &str = "private, max-age=86400, immutable";
/// Longest media id looked up.
pub const MAX_MEDIA_ID_LEN: usize = 256;

/// Serves one stored object, or 404 JSON when unknown or expired.
pub async fn get_media(
    State(state): State<Arc<PublicState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return ApiError::MediaNotFound.into_response();
    };
    if id.is_empty() || id.len() > MAX_MEDIA_ID_LEN {
        return ApiError::MediaNotFound.into_response();
    }
    let Some(object) = state.media.get(&id) else {
        return ApiError::MediaNotFound.into_response();
    };
    let content_type = HeaderValue::from_str(&object.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(MEDIA_CACHE_CONTROL),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        object.bytes,
    )
        .into_response()
}
