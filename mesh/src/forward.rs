//! Cross-node request forwarding over a bi stream.
//!
//! The caller sends one [`Frame::ForwardRequest`] (request id, time left,
//! opaque body) and reads [`Frame::ResponseChunk`]s until
//! [`Frame::ResponseEnd`] or [`Frame::ResponseError`], so a streamed answer
//! (SSE) is relayed chunk by chunk. The receiver remembers recent
//! `(origin, request id)` pairs and refuses a repeat with
//! [`RemoteFailure::Duplicate`], so a retry never runs a job twice.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use mesh_core::NodeId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::certs::PeerIdentity;
use crate::endpoint::{MeshEndpoint, peer_identity};
use crate::frame::{self, Frame, FrameError, MAX_FRAME_BYTES, RemoteFailure};

/// The response stream a forward handler returns.
pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<Bytes, HandlerError>> + Send>>;

/// Runs forwarded requests on this node. Must return quickly; the work
/// happens as the stream is polled.
pub type ForwardHandler = Arc<dyn Fn(ForwardRequest) -> ResponseStream + Send + Sync>;

/// Largest response chunk per frame: 1 MiB keeps frames well under
/// [`MAX_FRAME_BYTES`] and the relay latency of a big chunk low.
const MAX_RESPONSE_CHUNK_BYTES: usize = 1024 * 1024;

/// Longest deadline a peer may ask for: one hour, so a forwarded live
/// stream cannot pin a handler forever.
const MAX_FORWARD_DEADLINE: Duration = Duration::from_secs(3600);

/// Response chunks buffered between the stream reader and the caller; when
/// full, the reader stops reading and QUIC flow control slows the peer.
const FORWARD_RESPONSE_BUFFER: usize = 16;

/// Request ids remembered for duplicate detection. A retry follows its
/// original within seconds; 16,384 ids cover minutes at hundreds of
/// forwarded jobs per second, in about 1 MB.
pub(crate) const RECENT_REQUEST_IDS: usize = 16_384;

/// Identifies one forwarded request across retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u128);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// A forwarded request, as the handler sees it.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// The (certificate-verified) node that forwarded it.
    pub origin: PeerIdentity,
    /// Its id.
    pub request_id: RequestId,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Opaque request bytes.
    pub body: Bytes,
}

/// An error reported by a forward handler; sent to the caller as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// Why a forward failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// No reachable member with that name.
    #[error("no reachable member named {0}")]
    UnknownPeer(NodeId),
    /// The peer could not be reached (dial, stream, or connection lost).
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
    /// The node at the member's address presented another identity.
    #[error("expected {expected}, the peer's certificate says {actual}")]
    WrongPeer {
        /// Who we wanted.
        expected: NodeId,
        /// Who answered.
        actual: NodeId,
    },
    /// The deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The peer refused or failed the request.
    #[error("peer failed the request ({kind:?}): {message}")]
    Remote {
        /// Why.
        kind: RemoteFailure,
        /// Detail from the peer.
        message: String,
    },
    /// The request is larger than one frame.
    #[error("request of {0} bytes is too large to forward")]
    RequestTooLarge(usize),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// The streamed response of a forward: `Ok` chunks, then the end of the
/// stream, or one `Err` and the end. Dropping it cancels the request.
#[derive(Debug)]
pub struct ForwardResponse {
    chunks: mpsc::Receiver<Result<Bytes, ForwardError>>,
}

impl Stream for ForwardResponse {
    type Item = Result<Bytes, ForwardError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.poll_recv(cx)
    }
}

/// Sends a request to `peer` at `addr` and returns once the peer's first
/// response frame arrived. A failure before that (stale connection, TLS
/// refusal surfacing on first use) is retried once on a fresh connection
/// with the same request id.
pub(crate) async fn forward(
    endpoint: &MeshEndpoint,
    addr: std::net::SocketAddr,
    peer: &NodeId,
    request_id: RequestId,
    body: Bytes,
    timeout: Duration,
) -> Result<ForwardResponse, ForwardError> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    for _attempt in 0..2 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = frame::encode(&Frame::ForwardRequest {
            request_id: request_id.0,
            deadline_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            body: body.to_vec(),
        })
        .map_err(|_| ForwardError::RequestTooLarge(body.len()))?;
        let attempt = tokio::time::timeout_at(deadline, attempt(endpoint, addr, peer, &request));
        match attempt.await {
            Err(_) => return Err(ForwardError::DeadlineExceeded),
            Ok(Ok((recv, first))) => return Ok(relay(recv, first, deadline)),
            Ok(Err(Attempt::Retry(reason))) => {
                debug!(peer = %peer, %reason, "forward attempt failed; retrying");
                last_error = Some(reason);
            }
            Ok(Err(Attempt::Fatal(error))) => return Err(error),
        }
    }
    Err(ForwardError::Unreachable {
        peer: peer.clone(),
        reason: last_error.unwrap_or_default(),
    })
}

enum Attempt {
    Retry(String),
    Fatal(ForwardError),
}

async fn attempt(
    endpoint: &MeshEndpoint,
    addr: std::net::SocketAddr,
    peer: &NodeId,
    request: &[u8],
) -> Result<(quinn::RecvStream, Frame), Attempt> {
    let connection = endpoint
        .connection(addr)
        .await
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    let actual = peer_identity(&connection).map_err(Attempt::Retry)?;
    if &actual.node != peer {
        return Err(Attempt::Fatal(ForwardError::WrongPeer {
            expected: peer.clone(),
            actual: actual.node,
        }));
    }
    let retry = |reason: String| {
        endpoint.forget(&connection);
        Attempt::Retry(reason)
    };
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| retry(e.to_string()))?;
    send.write_all(request)
        .await
        .map_err(|e| retry(e.to_string()))?;
    send.finish().map_err(|e| retry(e.to_string()))?;
    match frame::read_frame(&mut recv, MAX_FRAME_BYTES).await {
        Ok(Some(Frame::ResponseError { kind, message })) => {
            Err(Attempt::Fatal(ForwardError::Remote { kind, message }))
        }
        Ok(Some(first)) => Ok((recv, first)),
        Ok(None) => Err(Attempt::Fatal(ForwardError::Protocol(
            "peer closed the stream without answering".into(),
        ))),
        Err(FrameError::Io(e)) => Err(retry(e.to_string())),
        Err(e) => Err(Attempt::Fatal(ForwardError::Protocol(e.to_string()))),
    }
}

/// Spawns the reader that relays response frames into the returned stream.
fn relay(mut recv: quinn::RecvStream, first: Frame, deadline: Instant) -> ForwardResponse {
    let (tx, rx) = mpsc::channel(FORWARD_RESPONSE_BUFFER);
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(frame) => frame,
                None => {
                    let read = frame::read_frame(&mut recv, MAX_FRAME_BYTES);
                    match tokio::time::timeout_at(deadline, read).await {
                        Err(_) => {
                            let _ = recv.stop(0u32.into());
                            let _ = tx.send(Err(ForwardError::DeadlineExceeded)).await;
                            return;
                        }
                        Ok(Ok(Some(frame))) => frame,
                        Ok(Ok(None)) => {
                            let error = ForwardError::Protocol("response ended early".into());
                            let _ = tx.send(Err(error)).await;
                            return;
                        }
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(ForwardError::Protocol(e.to_string()))).await;
                            return;
                        }
                    }
                }
            };
            let item = match frame {
                Frame::ResponseChunk { bytes } => Ok(Bytes::from(bytes)),
                Frame::ResponseEnd => return,
                Frame::ResponseError { kind, message } => {
                    Err(ForwardError::Remote { kind, message })
                }
                other => Err(ForwardError::Protocol(format!(
                    "unexpected frame in a response: {}",
                    frame_name(&other)
                ))),
            };
            let last = item.is_err();
            if tx.send(item).await.is_err() {
                // The caller dropped the response: tell the peer to stop.
                let _ = recv.stop(0u32.into());
                return;
            }
            if last {
                return;
            }
        }
    });
    ForwardResponse { chunks: rx }
}

/// Bounded memory of recently seen `(origin, request id)` pairs.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    seen: HashSet<(NodeId, u128)>,
    order: VecDeque<(NodeId, u128)>,
}

impl RecentIds {
    /// Remembers the pair; false if it was already there.
    pub(crate) fn insert(&mut self, origin: &NodeId, id: u128) -> bool {
        let key = (origin.clone(), id);
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= RECENT_REQUEST_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

/// What the serving side needs from the node.
pub(crate) struct ServeContext<'a> {
    pub(crate) handler: Option<ForwardHandler>,
    pub(crate) recent: &'a std::sync::Mutex<RecentIds>,
}

/// Serves one forwarded request on a bi stream whose first frame was read.
/// Returns whether the handler ran.
pub(crate) async fn serve(
    context: ServeContext<'_>,
    origin: PeerIdentity,
    mut send: quinn::SendStream,
    request: Frame,
) -> Result<bool, String> {
    let Frame::ForwardRequest {
        request_id,
        deadline_ms,
        body,
    } = request
    else {
        return Err(format!("unexpected first frame {}", frame_name(&request)));
    };
    let fresh = context
        .recent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(&origin.node, request_id);
    let refuse = |kind, message: &str| Frame::ResponseError {
        kind,
        message: message.to_owned(),
    };
    if !fresh {
        write(
            &mut send,
            &refuse(RemoteFailure::Duplicate, "request id already seen"),
        )
        .await?;
        return Ok(false);
    }
    let Some(handler) = context.handler else {
        write(
            &mut send,
            &refuse(RemoteFailure::NoHandler, "no forward handler"),
        )
        .await?;
        return Ok(false);
    };
    let deadline = Instant::now() + Duration::from_millis(deadline_ms).min(MAX_FORWARD_DEADLINE);
    let mut stream = handler(ForwardRequest {
        origin,
        request_id: RequestId(request_id),
        deadline,
        body: Bytes::from(body),
    });
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                let frame = refuse(RemoteFailure::DeadlineExceeded, "deadline exceeded");
                write(&mut send, &frame).await?;
                break;
            }
            Ok(None) => {
                write(&mut send, &Frame::ResponseEnd).await?;
                break;
            }
            Ok(Some(Ok(bytes))) => {
                for chunk in bytes.chunks(MAX_RESPONSE_CHUNK_BYTES) {
                    let frame = Frame::ResponseChunk {
                        bytes: chunk.to_vec(),
                    };
                    // A write error means the caller went away: dropping
                    // the stream cancels the handler's work.
                    write(&mut send, &frame).await?;
                }
            }
            Ok(Some(Err(error))) => {
                write(&mut send, &refuse(RemoteFailure::Handler, &error.0)).await?;
                break;
            }
        }
    }
    let _ = send.finish();
    Ok(true)
}

async fn write(send: &mut quinn::SendStream, frame: &Frame) -> Result<(), String> {
    frame::write_frame(send, frame)
        .await
        .map_err(|e| e.to_string())
}

pub(crate) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Gossip { .. } => "Gossip",
        Frame::Push { .. } => "Push",
        Frame::Leave { .. } => "Leave",
        Frame::ForwardRequest { .. } => "ForwardRequest",
        Frame::ResponseChunk { .. } => "ResponseChunk",
        Frame::ResponseEnd => "ResponseEnd",
        Frame::ResponseError { .. } => "ResponseError",
        Frame::Load { .. } => "Load",
        Frame::Heartbeat { .. } => "Heartbeat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded_and_detect_repeats() {
        let mut recent = RecentIds::default();
        let a = NodeId::new("a").unwrap();
        let b = NodeId::new("b").unwrap();
        assert!(recent.insert(&a, 1));
        assert!(!recent.insert(&a, 1));
        assert!(recent.insert(&b, 1), "ids are per origin");
        for id in 2..(RECENT_REQUEST_IDS as u128 + 10) {
            recent.insert(&a, id);
        }
        assert!(recent.order.len() <= RECENT_REQUEST_IDS);
        assert!(recent.insert(&a, 1), "the oldest id was forgotten");
    }
}
