//! Errors of the admin API, answered with the same JSON envelope as the
//! public API (see [`crate::error`]):
//! `{"detail":{"msg":…},"error":{"message":…,"code":…}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// An admin token is configured and the request did not carry it.
    #[error("missing or wrong admin token: send Authorization: Bearer <admin token>")]
    Unauthorized,
    /// The path segment is not an orchestrator address.
    #[error("invalid orchestrator address: {0}")]
    InvalidOrchestrator(String),
    /// The blocklist is at its size limit.
    #[error("the blocklist is full")]
    BlocklistFull,
    /// A key request is malformed (body, tenant, tier or key).
    #[error("invalid key request: {0}")]
    InvalidKey(String),
    /// No key with this id.
    #[error("no key with id {0}")]
    KeyNotFound(String),
    /// The key conflicts with the key book (revoked, already present, full).
    #[error("{0}")]
    KeyConflict(String),
    /// The node cannot do it right now (e.g. shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No admin route at this path.
    #[error("no admin route for {0}")]
    NotFound(String),
    /// Query parameters that do not parse.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Something broke inside the node; the text goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidOrchestrator(_) | Self::InvalidQuery(_) | Self::InvalidKey(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::BlocklistFull | Self::KeyConflict(_) => StatusCode::CONFLICT,
            Self::KeyNotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "invalid_admin_token",
            Self::InvalidOrchestrator(_) => "invalid_orchestrator",
            Self::BlocklistFull => "blocklist_full",
            Self::InvalidKey(_) => "invalid_key_request",
            Self::KeyNotFound(_) => "key_not_found",
            Self::KeyConflict(_) => "key_conflict",
            Self::Unavailable(_) => "unavailable",
            Self::NotFound(_) => "not_found",
            Self::InvalidQuery(_) => "invalid_query",
            Self::Internal(_) => "internal",
        }
    }

    /// The message clients see; internal errors say nothing about the cause.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "admin request failed");
        }
        let message = self.public_message();
        let body = json!({
            "detail": { "msg": message },
            "error": { "message": message, "code": self.code() },
        });
        let mut response = (self.status(), Json(body)).into_response();
        if self == Self::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
