//! Every error the public API can answer, and the ONE place where errors
//! become HTTP responses.
//!
//! ## The envelope
//! Two client families must understand our errors: the Speakeasy SDKs
//! generated from ai-runner's `gateway.openapi.yaml` (schema `HTTPError`,
//! `{"detail":{"msg":…}}`, and for 422 `HTTPValidationError`,
//! `{"detail":[{"loc":[…],"msg":…,"type":…}]}`), and clients written against
//! go-livepeer's gateway (`{"error":{"message":…}}`). Every error body carries
//! both shapes plus a machine-readable code:
//!
//! ```json
//! {"detail":{"msg":"…"},"error":{"message":"…","code":"invalid_api_key"}}
//! ```
//!
//! Field validation errors answer 422 (what the OpenAPI declares for
//! "Validation Error", and what ai-runner's FastAPI sends) with `detail` as the
//! FastAPI list:
//!
//! ```json
//! {"detail":[{"loc":["body","prompt"],"msg":"Field required","type":"missing"}],
//!  "error":{"message":"body.prompt: Field required","code":"validation_failed"}}
//! ```
//!
//! Bodies that cannot be parsed at all (malformed JSON or multipart) answer
//! 400 with the `HTTPError` shape; a wrong `Content-Type` answers 415 (declared
//! by the OpenAPI for `/audio-to-text`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh_core::JobError;
use serde::Serialize;
use serde_json::json;

/// Seconds a draining gateway asks clients to wait before retrying. Short:
/// the load balancer will already send the retry to another node.
pub const DRAINING_RETRY_AFTER_SECS: u64 = 1;

/// One field-level validation problem, FastAPI style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldIssue {
    /// Where: `["body", "<field>", …]` (array indexes as numbers).
    pub loc: Vec<LocPart>,
    /// What is wrong, for humans.
    pub msg: String,
    /// What is wrong, for machines (`missing`, `int_parsing`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One element of [`FieldIssue::loc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    /// A field name.
    Field(String),
    /// An array index.
    Index(usize),
}

impl FieldIssue {
    /// An issue with a top-level body field.
    pub fn new(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec![LocPart::Field("body".into()), LocPart::Field(field.into())],
            msg: msg.into(),
            kind,
        }
    }

    /// An issue with the body as a whole (e.g. not a JSON object).
    pub fn body(kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec![LocPart::Field("body".into())],
            msg: msg.into(),
            kind,
        }
    }

    /// `body.messages.0.content: Field required`.
    pub fn describe(&self) -> String {
        let path: Vec<String> = self
            .loc
            .iter()
            .map(|part| match part {
                LocPart::Field(name) => name.clone(),
                LocPart::Index(index) => index.to_string(),
            })
            .collect();
        format!("{}: {}", path.join("."), self.msg)
    }
}

/// Why a public API request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer …` header.
    #[error("missing API key: send Authorization: Bearer <key>")]
    MissingKey,
    /// A bearer key the authenticator does not know.
    #[error("invalid API key")]
    UnknownKey,
    /// The body is not JSON.
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// The body is not a well-formed multipart form.
    #[error("malformed multipart body: {0}")]
    MalformedMultipart(String),
    /// The body could not be read (client went away, transport error).
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// Wrong `Content-Type` for the endpoint.
    #[error("unsupported content type {found:?}: this endpoint expects {expected}")]
    UnsupportedMediaType {
        /// What the client sent (empty when absent).
        found: String,
        /// What the endpoint takes.
        expected: &'static str,
    },
    /// The body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit_bytes} bytes")]
    BodyTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// Fields are missing or have the wrong type or value.
    #[error("{}", describe_issues(.0))]
    Validation(Vec<FieldIssue>),
    /// No route at this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The pipeline exists but this gateway does not offer it.
    #[error("pipeline {0} is not offered by this gateway")]
    PipelineNotOffered(String),
    /// The pipeline is offered but not this model.
    #[error(
        "model {model_id} is not offered for {pipeline} by this gateway (GET /v1/capabilities lists what is)"
    )]
    ModelNotOffered {
        /// The pipeline.
        pipeline: String,
        /// The model asked for.
        model_id: String,
    },
    /// The path exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// Unknown or expired media id.
    #[error("media not found or expired")]
    MediaNotFound,
    /// The caller's tenant is over one of its limits (429).
    #[error("tenant limit {} exceeded; retry in {retry_after_secs} s", .limit.as_str())]
    LimitExceeded {
        /// Which limit.
        limit: mesh_core::tenancy::LimitKind,
        /// Seconds until the limit's window frees (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The job itself failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The job ran but its usage record could not be kept, so it is not
    /// charged and not answered with 200.
    #[error("{0}")]
    UsageUnavailable(String),
}

impl From<crate::ports::LimitExceeded> for ApiError {
    fn from(exceeded: crate::ports::LimitExceeded) -> Self {
        Self::LimitExceeded {
            limit: exceeded.limit,
            retry_after_secs: exceeded.retry_after_secs.max(1),
        }
    }
}

fn describe_issues(issues: &[FieldIssue]) -> String {
    if issues.is_empty() {
        return "invalid request".to_owned();
    }
    issues
        .iter()
        .map(FieldIssue::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::MalformedJson(_) | Self::MalformedMultipart(_) | Self::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_)
            | Self::PipelineNotOffered(_)
            | Self::ModelNotOffered { .. }
            | Self::MediaNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UsageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Job(job) => match job {
                JobError::NoCapableOrchestrator { .. }
                | JobError::AttemptsExhausted { .. }
                | JobError::Draining => StatusCode::SERVICE_UNAVAILABLE,
                JobError::RejectedByRunner(_) => StatusCode::BAD_REQUEST,
                JobError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
                JobError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The machine-readable code in `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::UnknownKey => "invalid_api_key",
            Self::MalformedJson(_) => "malformed_json",
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::BodyRead(_) => "body_read_failed",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Validation(_) => "validation_failed",
            Self::NotFound(_) => "not_found",
            Self::PipelineNotOffered(_) => "pipeline_not_offered",
            Self::ModelNotOffered { .. } => "model_not_offered",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::MediaNotFound => "media_not_found",
            Self::UsageUnavailable(_) => "usage_log_unavailable",
            Self::LimitExceeded { .. } => "tenant_limit_exceeded",
            Self::Job(job) => match job {
                JobError::NoCapableOrchestrator { .. } => "no_capable_orchestrator",
                JobError::AttemptsExhausted { .. } => "attempts_exhausted",
                JobError::RejectedByRunner(_) => "rejected_by_runner",
                JobError::DeadlineExceeded { .. } => "deadline_exceeded",
                JobError::Draining => "draining",
                JobError::Internal(_) => "internal",
            },
        }
    }

    /// The message clients see. Internal errors say nothing about the cause;
    /// the real text goes only to the log (see [`Self::to_string`]).
    pub fn public_message(&self) -> String {
        match self {
            Self::Job(JobError::Internal(_)) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let detail = match &self {
            Self::Validation(issues) => json!(issues),
            _ => json!({ "msg": message }),
        };
        let mut body = json!({
            "detail": detail,
            "error": { "message": message, "code": self.code() },
        });
        if let Self::LimitExceeded {
            limit,
            retry_after_secs,
        } = &self
        {
            body["error"]["limit"] = json!(limit.as_str());
            body["error"]["retry_after_secs"] = json!(retry_after_secs);
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::MissingKey => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::UnknownKey => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::LimitExceeded {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Job(JobError::Draining) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(DRAINING_RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::Pipeline;

    #[test]
    fn job_errors_map_in_one_place() {
        let cases = [
            (
                JobError::NoCapableOrchestrator {
                    pipeline: Pipeline::Llm,
                    model_id: "m".into(),
                },
                503,
            ),
            (
                JobError::AttemptsExhausted {
                    attempts: 3,
                    last_error: "x".into(),
                },
                503,
            ),
            (JobError::RejectedByRunner("bad".into()), 400),
            (JobError::DeadlineExceeded { deadline_ms: 1 }, 504),
            (JobError::Draining, 503),
            (JobError::Internal("secret".into()), 500),
        ];
        for (job, status) in cases {
            assert_eq!(ApiError::Job(job).status().as_u16(), status);
        }
        let internal = ApiError::Job(JobError::Internal("db password wrong".into()));
        assert!(!internal.public_message().contains("password"));
    }

    #[tokio::test]
    async fn limits_answer_429_with_retry_after_and_the_limit_named() {
        use mesh_core::tenancy::LimitKind;
        for limit in LimitKind::ALL {
            let error = ApiError::from(crate::ports::LimitExceeded {
                limit,
                retry_after_secs: 0,
            });
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(body["error"]["code"], "tenant_limit_exceeded");
            assert_eq!(body["error"]["limit"], limit.as_str());
            assert!(
                body["detail"]["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains(limit.as_str()))
            );
        }
    }

    #[test]
    fn issues_describe_their_location() {
        let mut issue = FieldIssue::new("messages", "missing", "Field required");
        issue.loc.push(LocPart::Index(0));
        assert_eq!(issue.describe(), "body.messages.0: Field required");
    }
}
