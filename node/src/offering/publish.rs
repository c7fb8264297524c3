//! `gatemesh offering publish`: POST the signed envelope to a registry with
//! bounded retries. Retried: connection errors, timeouts and 5xx (the
//! registry may be restarting); not retried: any other non-2xx answer (the
//! registry looked at the listing and said no).

use std::time::Duration;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most POSTs in total.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Bound on one POST, connect to last byte.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts over about 4 s of backoff: rides out a registry restart
    /// without hanging a deploy script.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The registry accepted the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Its status (2xx).
    pub status: u16,
    /// Its body (first [`MAX_REPORTED_BODY_BYTES`], lossy UTF-8).
    pub body: String,
    /// POSTs made.
    pub attempts: u32,
}

/// The registry did not accept the listing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// It answered with a status that is not retried.
    #[error("the registry answered {status} after {attempts} attempt(s): {body}")]
    Rejected {
        /// Its status.
        status: u16,
        /// Its body.
        body: String,
        /// POSTs made.
        attempts: u32,
    },
    /// Every attempt failed with a retryable error.
    #[error("gave up after {attempts} attempt(s); last error: {last_error}")]
    Exhausted {
        /// POSTs made.
        attempts: u32,
        /// The last failure (status and body, or the connection error).
        last_error: String,
    },
}

/// The most of a registry's answer that is reported.
pub const MAX_REPORTED_BODY_BYTES: usize = 64 * 1024;

/// POSTs `body` (JSON) to `url`, retrying per `policy`.
pub async fn publish(
    client: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
    policy: &RetryPolicy,
) -> Result<PublishReport, PublishError> {
    let mut backoff = policy.first_backoff;
    let mut last_error = String::from("no attempt made");
    let max_attempts = policy.max_attempts.max(1);
    for attempt in 1..=max_attempts {
        let sent = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(policy.timeout)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = read_body(response).await;
                if (200..300).contains(&status) {
                    return Ok(PublishReport {
                        status,
                        body: text,
                        attempts: attempt,
                    });
                }
                if status < 500 {
                    return Err(PublishError::Rejected {
                        status,
                        body: text,
                        attempts: attempt,
                    });
                }
                last_error = format!("{status}: {text}");
            }
            Err(error) => last_error = error.to_string(),
        }
        tracing::warn!(attempt, max_attempts, error = %last_error, "publishing the offering failed");
        if attempt < max_attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    Err(PublishError::Exhausted {
        attempts: max_attempts,
        last_error,
    })
}

async fn read_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_REPORTED_BODY_BYTES - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_REPORTED_BODY_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
