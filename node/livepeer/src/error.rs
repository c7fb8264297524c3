//! What can go wrong talking to an orchestrator, and what the caller should
//! do about it (protocol §2.5).
//!
//! Orchestrator error bodies are plain text, so [`OrchestratorError::class`]
//! classifies them by case-insensitive substring, exactly as go-livepeer's
//! `processAIRequest` does. Callers branch on [`ErrorClass`], never on the
//! message.

/// The longest orchestrator error body we keep (the rest is cut off); the
/// interesting text is always at the start.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// A failed exchange with one orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestratorError {
    /// A URL we were given (orchestrator address, transcoder, result URL) is not usable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL (truncated).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// TCP or TLS connection set-up failed: refused, reset, unresolvable,
    /// or the TLS handshake failed.
    #[error("cannot connect to the orchestrator: {0}")]
    Connect(String),
    /// The TCP connection was not established within the connect timeout
    /// (2 s by default): the host is down, or the network path to it is.
    #[error("cannot connect to the orchestrator: connect timed out: {0}")]
    ConnectTimeout(String),
    /// The call did not finish within its time bound.
    #[error("no answer within {timeout_ms} ms")]
    Timeout {
        /// The bound that passed.
        timeout_ms: u64,
    },
    /// The connection broke while sending or receiving.
    #[error("transport error: {0}")]
    Transport(String),
    /// `GetOrchestrator` returned a gRPC error status.
    #[error("GetOrchestrator failed with {code}: {message}")]
    Grpc {
        /// The gRPC status code, as text (`Unavailable`, `Unknown`, …).
        code: String,
        /// The status message.
        message: String,
    },
    /// The orchestrator answered an HTTP call with a non-success status.
    #[error("orchestrator answered {status}: {body}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The plain-text body, at most [`MAX_ERROR_BODY_BYTES`].
        body: String,
    },
    /// A response body exceeded the caller's size bound.
    #[error("response body exceeds {limit_bytes} bytes")]
    BodyTooLarge {
        /// The bound.
        limit_bytes: usize,
    },
    /// The orchestrator's reply could not be understood.
    #[error("invalid reply from the orchestrator: {0}")]
    InvalidReply(String),
    /// A `data:` URI could not be decoded.
    #[error("invalid data URI: {0}")]
    DataUri(String),
    /// The payment source could not produce credentials.
    #[error("payment: {0}")]
    Payment(#[from] PaymentError),
}

/// Why a [`crate::PaymentSource`] could not produce headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The session's auth token or ticket parameters are too old: fetch a
    /// fresh session (`GetOrchestrator`) and try again.
    #[error("session credentials expired")]
    SessionExpired,
    /// The signer (local key or remote signer) failed.
    #[error("signer failed: {0}")]
    Signer(String),
}

/// What the caller should do after an [`OrchestratorError`] (protocol §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not this orchestrator's fault (`insufficient capacity`, `invalid
    /// ticket senderNonce`): put it aside for this job and try another one.
    TryAnother,
    /// The input was rejected (`returned 400` from the runner, or any other
    /// HTTP 400 such as `MaxTokens not specified`): give the client a 400 with
    /// this message and stop retrying.
    ClientRejected(String),
    /// The session is stale (`TicketParams expired`, HTTP 403, auth-token
    /// errors: the orchestrator restarted and forgot our token): refresh the
    /// session with `GetOrchestrator` and retry the same orchestrator.
    RefreshAndRetrySame,
    /// The orchestrator failed (timeouts, connect errors, 5xx, garbage, gRPC
    /// errors): suspend it and try another.
    Failed,
}

impl OrchestratorError {
    /// Classifies the error as go-livepeer's gateway does (§2.5), by
    /// case-insensitive substring on the orchestrator's text first, then by
    /// status.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Http { status, body } => classify_http(*status, body),
            Self::Payment(PaymentError::SessionExpired) => ErrorClass::RefreshAndRetrySame,
            Self::Grpc { message, .. } => {
                // A gRPC error is a failure, except for the ticket-params text
                // that go-livepeer also matches on every error it sees.
                if contains_ignore_case(message, "ticketparams expired") {
                    ErrorClass::RefreshAndRetrySame
                } else {
                    ErrorClass::Failed
                }
            }
            Self::InvalidUrl { .. }
            | Self::Connect(_)
            | Self::ConnectTimeout(_)
            | Self::Timeout { .. }
            | Self::Transport(_)
            | Self::BodyTooLarge { .. }
            | Self::InvalidReply(_)
            | Self::DataUri(_)
            | Self::Payment(PaymentError::Signer(_)) => ErrorClass::Failed,
        }
    }
}

/// Orchestrator texts that mean a payment was refused: the orchestrator (or
/// our payment set-up) is at fault, not the client's input, even though the
/// status is 400 (protocol §4.3).
const PAYMENT_FAILURE_TEXTS: [&str; 4] = [
    "insufficient balance",
    "invalid ticket",
    "is inactive in round",
    "invalid payment",
];

fn classify_http(status: u16, body: &str) -> ErrorClass {
    if contains_ignore_case(body, "ticketparams expired") {
        return ErrorClass::RefreshAndRetrySame;
    }
    if contains_ignore_case(body, "insufficient capacity")
        || contains_ignore_case(body, "invalid ticket sendernonce")
    {
        return ErrorClass::TryAnother;
    }
    if contains_ignore_case(body, "returned 400") {
        return ErrorClass::ClientRejected(body.trim().to_owned());
    }
    if status == 403 || contains_ignore_case(body, "auth token") {
        return ErrorClass::RefreshAndRetrySame;
    }
    if PAYMENT_FAILURE_TEXTS
        .iter()
        .any(|text| contains_ignore_case(body, text))
    {
        return ErrorClass::Failed;
    }
    if status == 400 {
        return ErrorClass::ClientRejected(body.trim().to_owned());
    }
    ErrorClass::Failed
}

/// ASCII case-insensitive substring search (go-livepeer lower-cases both sides).
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return true;
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Cuts `text` to at most `max_bytes` on a character boundary.
pub(crate) fn truncate_text(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, body: &str) -> ErrorClass {
        OrchestratorError::Http {
            status,
            body: body.to_owned(),
        }
        .class()
    }

    #[test]
    fn substrings_decide_before_status() {
        assert_eq!(http(503, "insufficient capacity\n"), ErrorClass::TryAnother);
        assert_eq!(http(503, "Insufficient Capacity"), ErrorClass::TryAnother);
        assert_eq!(
            http(400, "invalid ticket senderNonce: already seen 3"),
            ErrorClass::TryAnother
        );
        assert_eq!(
            http(400, "TicketParams expired"),
            ErrorClass::RefreshAndRetrySame
        );
        assert_eq!(
            http(500, "text-to-image container returned 400: bad prompt\n"),
            ErrorClass::ClientRejected("text-to-image container returned 400: bad prompt".into())
        );
    }

    #[test]
    fn stale_sessions_refresh() {
        assert_eq!(http(403, "Forbidden"), ErrorClass::RefreshAndRetrySame);
        assert_eq!(
            http(403, "invalid auth token"),
            ErrorClass::RefreshAndRetrySame
        );
        assert_eq!(
            http(403, "expired auth token"),
            ErrorClass::RefreshAndRetrySame
        );
        assert_eq!(
            OrchestratorError::Payment(PaymentError::SessionExpired).class(),
            ErrorClass::RefreshAndRetrySame
        );
    }

    #[test]
    fn other_400s_reject_the_client_but_payment_400s_fail() {
        assert_eq!(
            http(400, "MaxTokens not specified"),
            ErrorClass::ClientRejected("MaxTokens not specified".into())
        );
        assert_eq!(http(400, "Insufficient balance"), ErrorClass::Failed);
        assert_eq!(http(400, "invalid ticket signature"), ErrorClass::Failed);
    }

    #[test]
    fn everything_else_fails() {
        assert_eq!(http(500, "runner crashed"), ErrorClass::Failed);
        assert_eq!(http(402, "malformed payment"), ErrorClass::Failed);
        assert_eq!(http(502, ""), ErrorClass::Failed);
        for error in [
            OrchestratorError::Timeout { timeout_ms: 10 },
            OrchestratorError::Connect("refused".into()),
            OrchestratorError::InvalidReply("garbage".into()),
            OrchestratorError::Grpc {
                code: "Unknown".into(),
                message: "orchestrator req sig check failed".into(),
            },
            OrchestratorError::Payment(PaymentError::Signer("down".into())),
        ] {
            assert_eq!(error.class(), ErrorClass::Failed, "{error}");
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_text("héllo".into(), 2), "h");
        assert_eq!(truncate_text("abc".into(), 10), "abc");
        assert!(!contains_ignore_case("", "x"));
    }
}
