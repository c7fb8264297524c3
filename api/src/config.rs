//! Settings of the public API, as they appear in the node's TOML file
//! (`[api]` table). Unknown keys are rejected so typos fail at start-up.

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_core::Pipeline;
use serde::{Deserialize, Serialize};

/// One MiB.
const MIB: usize = 1024 * 1024;

/// Settings of the public job API.
///
/// Defaults and why:
/// - `max_json_body_bytes` = 1 MiB: the largest JSON bodies are LLM
///   conversations; 1 MiB holds a few hundred thousand tokens of chat history,
///   far above what the served models accept, and bounds what one request can
///   make us hold in memory.
/// - `max_multipart_body_bytes` = 50 MiB: uploads are one image or one audio
///   file; 50 MiB fits a long WAV recording or a large PNG while keeping the
///   per-request buffer bounded (the whole body is buffered because it is
///   re-sent, possibly to several orchestrators).
/// - `request_deadline_ms` = 120 s: image-to-video and long transcriptions take
///   tens of seconds on one GPU; two minutes leaves room for a retry on another
///   orchestrator without letting a stuck request hold a connection forever.
/// - `public_base_url` = none: media URLs are derived from the request's
///   `Host` as `https://<host>`, which is right behind a plain TLS listener; set
///   it when a proxy or CDN fronts the gateway under another name.
/// - `pipelines` = the nine batch pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest accepted body for JSON pipelines (text-to-image, llm,
    /// text-to-speech); larger bodies get 413.
    pub max_json_body_bytes: usize,
    /// Largest accepted body for multipart pipelines; larger bodies get 413.
    pub max_multipart_body_bytes: usize,
    /// How long one job request may take, passed to the runner as
    /// [`crate::ports::RequestContext::deadline`].
    pub request_deadline_ms: u64,
    /// Scheme and authority under which this gateway is reached, e.g.
    /// `https://ai.example.com` (no trailing slash). `None`: `https://<Host>`.
    pub public_base_url: Option<String>,
    /// Pipelines this gateway offers; the others answer 404.
    pub pipelines: BTreeSet<Pipeline>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_json_body_bytes: MIB,
            max_multipart_body_bytes: 50 * MIB,
            request_deadline_ms: 120_000,
            public_base_url: None,
            pipelines: Pipeline::BATCH.into_iter().collect(),
        }
    }
}

/// A configuration the API cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A body limit of zero would reject every request.
    #[error("api.{field} must be at least 1 byte")]
    ZeroBodyLimit {
        /// Which limit.
        field: &'static str,
    },
    /// A zero deadline would fail every job.
    #[error("api.request_deadline_ms must be at least 1")]
    ZeroDeadline,
    /// Only batch pipelines are served by this router.
    #[error("api.pipelines: {0} is not a batch pipeline")]
    NotBatch(Pipeline),
    /// The base URL must be `http(s)://authority` without a path.
    #[error("api.public_base_url {0:?} must look like https://host[:port] with no path")]
    BadBaseUrl(String),
}

impl ApiConfig {
    /// Checks the settings; the node calls this at start-up and on reload.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_json_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit {
                field: "max_json_body_bytes",
            });
        }
        if self.max_multipart_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit {
                field: "max_multipart_body_bytes",
            });
        }
        if self.request_deadline_ms == 0 {
            return Err(ConfigError::ZeroDeadline);
        }
        if let Some(pipeline) = self.pipelines.iter().find(|p| !p.is_batch()) {
            return Err(ConfigError::NotBatch(*pipeline));
        }
        if let Some(url) = &self.public_base_url {
            let authority = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let ok = authority.is_some_and(|a| {
                !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
            });
            if !ok {
                return Err(ConfigError::BadBaseUrl(url.clone()));
            }
        }
        Ok(())
    }

    /// [`Self::request_deadline_ms`] as a duration.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }

    /// Whether the pipeline is offered.
    pub fn offers(&self, pipeline: Pipeline) -> bool {
        self.pipelines.contains(&pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_offer_all_batch_pipelines() {
        let config = ApiConfig::default();
        assert_eq!(config.validate(), Ok(()));
        for pipeline in Pipeline::BATCH {
            assert!(config.offers(pipeline));
        }
        assert!(!config.offers(Pipeline::LiveVideoToVideo));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = serde_json::from_str::<ApiConfig>(r#"{"max_body": 1}"#);
        assert!(err.is_err());
        let config: ApiConfig = serde_json::from_str(
            r#"{"pipelines": ["llm"], "public_base_url": "https://a.example"}"#,
        )
        .expect("valid config");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.pipelines.len(), 1);
        let live = ApiConfig {
            pipelines: [Pipeline::LiveVideoToVideo].into_iter().collect(),
            ..ApiConfig::default()
        };
        assert!(matches!(live.validate(), Err(ConfigError::NotBatch(_))));
        let bad_url = ApiConfig {
            public_base_url: Some("https://a.example/path".into()),
            ..ApiConfig::default()
        };
        assert!(matches!(
            bad_url.validate(),
            Err(ConfigError::BadBaseUrl(_))
        ));
    }
}
