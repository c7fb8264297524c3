//! A job as the gateway carries it between the public API, the executor and
//! (for cross-region forwarding) the mesh: parsed, validated, serializable.

use serde::{Deserialize, Serialize};

use crate::id::{OrchestratorId, RegionId};
use crate::pipeline::Pipeline;

/// One validated application request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Which pipeline.
    pub pipeline: Pipeline,
    /// The model (the request's `model_id`, or `model` for `/llm`, or the
    /// pipeline's default). Always set, because orchestrators dereference it.
    pub model_id: String,
    /// The body to send to the orchestrator, already completed with defaults
    /// the protocol requires (model id, `max_tokens` for LLM, …).
    pub body: JobBody,
    /// The client asked for a streamed response (`/llm` with `"stream": true`).
    pub stream: bool,
    /// Units the orchestrator will charge for (protocol §2.2), computed by the
    /// API from the request: pixels, milliseconds, tokens or characters.
    pub units: u64,
}

/// The request body as it goes to the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobBody {
    /// A JSON document (bytes of valid JSON).
    Json(Vec<u8>),
    /// Multipart form fields, in order.
    Multipart(Vec<FormPart>),
}

/// One multipart form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormPart {
    /// Field name (`image`, `prompt`, `model_id`, …).
    pub name: String,
    /// File name for file parts.
    pub file_name: Option<String>,
    /// Content type for file parts.
    pub content_type: Option<String>,
    /// The field's bytes.
    pub data: Vec<u8>,
}

impl FormPart {
    /// A plain text field (no file name, no content type).
    pub fn text(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            file_name: None,
            content_type: None,
            data: value.as_bytes().to_vec(),
        }
    }
}

/// Who served a job: returned in response headers and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The orchestrator that produced the response.
    pub orchestrator: OrchestratorId,
    /// The region of the node that ran the job.
    pub region: Option<RegionId>,
    /// How many orchestrator attempts were made (1 = first try succeeded).
    pub attempts: u32,
}

/// Who is at fault for a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The client sent something we or the runner reject.
    Client,
    /// Orchestrators failed or none could serve the job.
    Upstream,
    /// A bug or resource problem inside the gateway.
    Internal,
}

/// Why a job failed. Every variant says who is at fault and whether the client
/// may safely retry; `api` maps these to HTTP responses in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum JobError {
    /// No known orchestrator offers the pipeline and model.
    #[error("no orchestrator offers {pipeline} with model {model_id}")]
    NoCapableOrchestrator {
        /// The pipeline.
        pipeline: Pipeline,
        /// The model.
        model_id: String,
    },
    /// Capable orchestrators exist but every attempt failed within the deadline.
    #[error("no orchestrator could serve the job after {attempts} attempts: {last_error}")]
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure, for the log and the error body.
        last_error: String,
    },
    /// The runner rejected the input (orchestrator text `returned 400`).
    #[error("the model runner rejected the request: {0}")]
    RejectedByRunner(String),
    /// The per-request deadline passed before a result arrived.
    #[error("the request deadline of {deadline_ms} ms passed")]
    DeadlineExceeded {
        /// The deadline that passed.
        deadline_ms: u64,
    },
    /// The gateway is shutting down and takes no new work.
    #[error("the gateway is draining")]
    Draining,
    /// Something broke inside the gateway.
    #[error("internal error: {0}")]
    Internal(String),
}

impl JobError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Self::RejectedByRunner(_) => Fault::Client,
            Self::NoCapableOrchestrator { .. }
            | Self::AttemptsExhausted { .. }
            | Self::DeadlineExceeded { .. }
            | Self::Draining => Fault::Upstream,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn retry_safe(&self) -> bool {
        !matches!(self, Self::RejectedByRunner(_))
    }
}
