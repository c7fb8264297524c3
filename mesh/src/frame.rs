//! Wire framing for every mesh stream.
//!
//! A frame is `[u32 big-endian length][version byte][postcard(Frame)]`, where
//! the length covers the version byte and the body. Readers reject a frame
//! whose length exceeds the limit they pass (at most [`MAX_FRAME_BYTES`])
//! before allocating, and reject unknown versions. Uni streams use
//! [`read_uni_frame`]: [`MAX_GOSSIP_FRAME_BYTES`], except that a
//! [`Frame::Load`] may reach [`MAX_LOAD_FRAME_BYTES`] (its variant tag is
//! checked before the larger buffer is allocated). A bad frame is an error
//! for that one stream; the caller resets the stream and nothing else.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version byte in front of every frame body. Bump it (and keep decoding the
/// old one) when [`Frame`] changes shape: postcard is not self-describing.
pub const WIRE_VERSION: u8 = 1;

/// Largest frame any stream accepts: 8 MiB. Forwarded job bodies (an image
/// for image-to-image, a short audio clip) travel as one frame; anything
/// larger belongs in object storage, and this bound keeps a peer from making
/// us allocate more per stream.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Largest gossip or push frame: chitchat messages are at most 65,507 B and
/// push batches are bounded to the same size, plus framing overhead.
pub const MAX_GOSSIP_FRAME_BYTES: usize = 70 * 1024;

/// Largest [`Frame::Load`]: a load announcement of at most
/// [`MAX_LOAD_ANNOUNCEMENT_BYTES`](mesh_core::load::MAX_LOAD_ANNOUNCEMENT_BYTES)
/// (a complete table of thousands of orchestrators can exceed the gossip
/// limit) plus the version byte, the variant tag and the bytes' length.
pub const MAX_LOAD_FRAME_BYTES: usize = mesh_core::load::MAX_LOAD_ANNOUNCEMENT_BYTES + 16;

/// Postcard tag of [`Frame::Load`] (its index in [`Frame`], one varint
/// byte): read before allocating a uni frame larger than the gossip limit.
pub const LOAD_VARIANT_TAG: u8 = 7;

/// Size of the length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;

/// One message on a mesh stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// One chitchat message, in chitchat's own encoding (uni stream).
    Gossip {
        /// `ChitchatMessage::serialize_to_vec()`.
        message: Vec<u8>,
    },
    /// Records the sender changed, pushed directly (uni stream). The origin
    /// is the sender's certificate identity, never a field.
    Push {
        /// The sender's generation.
        generation: u64,
        /// The records.
        records: Vec<PushedRecord>,
    },
    /// The sender leaves the cluster now (uni stream).
    Leave {
        /// The generation that leaves.
        generation: u64,
    },
    /// A forwarded request (first frame of a bi stream).
    ForwardRequest {
        /// Caller-chosen id; the receiver runs each id at most once.
        request_id: u128,
        /// Time left for the whole exchange, in milliseconds.
        deadline_ms: u64,
        /// Opaque request bytes.
        body: Vec<u8>,
    },
    /// A piece of a forwarded response.
    ResponseChunk {
        /// Opaque response bytes.
        bytes: Vec<u8>,
    },
    /// The forwarded response is complete.
    ResponseEnd,
    /// The forwarded request failed on the peer.
    ResponseError {
        /// Why.
        kind: RemoteFailure,
        /// Human-readable detail.
        message: String,
    },
    /// This node's jobs in flight (uni stream): an encoded
    /// `mesh_core::load::LoadAnnouncement`, opaque here. The sender is the
    /// certificate identity, never a field. Appended last so the earlier
    /// variants keep their postcard index.
    Load {
        /// The encoded announcement.
        bytes: Vec<u8>,
    },
    /// The sender is alive (uni stream, every `heartbeat_interval_ms` to
    /// every known peer): the failure detector's only input. The sender is
    /// the certificate identity; the generation tells its incarnations
    /// apart. Twelve bytes on the wire. Appended last so the earlier
    /// variants keep their postcard index.
    Heartbeat {
        /// The sender's generation.
        generation: u64,
    },
}

/// One record in a [`Frame::Push`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedRecord {
    /// Record key.
    pub key: String,
    /// Per-generation sequence number; higher wins.
    pub seq: u64,
    /// Opaque value.
    pub value: Vec<u8>,
}

/// Why a forwarded request failed on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteFailure {
    /// The peer has no forward handler registered.
    NoHandler,
    /// The request id was already seen; it was not run again.
    Duplicate,
    /// The deadline passed on the peer.
    DeadlineExceeded,
    /// The handler reported an error.
    Handler,
}

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix announced more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// A zero-length frame (no version byte).
    #[error("empty frame")]
    Empty,
    /// A version byte we don't speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// The body is not a valid postcard [`Frame`].
    #[error("malformed frame body: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes a frame with its length prefix and version byte.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LENGTH_PREFIX_BYTES];
    out.push(WIRE_VERSION);
    let mut out = postcard::to_extend(frame, out)?;
    let len = out.len() - LENGTH_PREFIX_BYTES;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME_BYTES,
        });
    }
    // `len <= MAX_FRAME_BYTES` fits in u32.
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame body (version byte + postcard), without the prefix.
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let (&version, rest) = body.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    Ok(postcard::from_bytes(rest)?)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), FrameError> {
    writer.write_all(&encode(frame)?).await?;
    Ok(())
}

/// An [`AsyncRead`] that counts the bytes read through it (traffic stats).
#[derive(Debug)]
pub struct CountingReader<'a, R> {
    inner: &'a mut R,
    bytes: u64,
}

impl<'a, R> CountingReader<'a, R> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut R) -> Self {
        Self { inner, bytes: 0 }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<'_, R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.bytes += (buf.filled().len() - before) as u64;
        polled
    }
}

/// Reads one frame of at most `limit` bytes. `Ok(None)` means the stream
/// ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Frame>, FrameError> {
    let Some(len) = read_prefix(reader).await? else {
        return Ok(None);
    };
    let limit = limit.min(MAX_FRAME_BYTES);
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len];
    read_body(reader, &mut body).await?;
    decode_body(&body).map(Some)
}

/// Reads the one frame of a uni stream: at most [`MAX_GOSSIP_FRAME_BYTES`],
/// or at most [`MAX_LOAD_FRAME_BYTES`] for a [`Frame::Load`]. A frame over
/// the gossip limit must show the current version and the `Load` tag in its
/// first two bytes before the rest is allocated.
pub async fn read_uni_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Frame>, FrameError> {
    let Some(len) = read_prefix(reader).await? else {
        return Ok(None);
    };
    if len > MAX_LOAD_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_LOAD_FRAME_BYTES,
        });
    }
    if len <= MAX_GOSSIP_FRAME_BYTES {
        let mut body = vec![0u8; len];
        read_body(reader, &mut body).await?;
        return decode_body(&body).map(Some);
    }
    let mut head = [0u8; 2];
    read_body(reader, &mut head).await?;
    if head != [WIRE_VERSION, LOAD_VARIANT_TAG] {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_GOSSIP_FRAME_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    body[..2].copy_from_slice(&head);
    read_body(reader, &mut body[2..]).await?;
    decode_body(&body).map(Some)
}

/// Reads the length prefix; `None` when the stream ended before it.
async fn read_prefix<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<usize>, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut filled = 0;
    while filled < LENGTH_PREFIX_BYTES {
        let n = reader.read(&mut prefix[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }
    Ok(Some(u32::from_be_bytes(prefix) as usize))
}

/// Fills `body` from the stream; an early end is [`FrameError::Truncated`].
async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: &mut [u8],
) -> Result<(), FrameError> {
    reader.read_exact(body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Gossip {
                message: vec![1, 2, 3],
            },
            Frame::Push {
                generation: 7,
                records: vec![PushedRecord {
                    key: "obs".into(),
                    seq: 3,
                    value: vec![9; 100],
                }],
            },
            Frame::ForwardRequest {
                request_id: u128::MAX,
                deadline_ms: 1500,
                body: b"hello".to_vec(),
            },
            Frame::ResponseEnd,
            Frame::ResponseError {
                kind: RemoteFailure::Duplicate,
                message: "x".into(),
            },
            Frame::Load {
                bytes: vec![1, 0, 4],
            },
            Frame::Heartbeat {
                generation: 1_767_225_600_123,
            },
        ]
    }

    #[tokio::test]
    async fn frames_round_trip_back_to_back() {
        let mut wire = Vec::new();
        for frame in sample() {
            write_frame(&mut wire, &frame).await.unwrap();
        }
        let mut reader = &wire[..];
        for frame in sample() {
            let got = read_frame(&mut reader, MAX_FRAME_BYTES).await.unwrap();
            assert_eq!(got, Some(frame));
        }
        assert!(
            read_frame(&mut reader, MAX_FRAME_BYTES)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_are_errors() {
        let oversized = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        let too_big = read_frame(&mut &oversized[..], MAX_FRAME_BYTES).await;
        assert!(matches!(too_big, Err(FrameError::TooLarge { .. })));

        let small_limit = encode(&Frame::Gossip {
            message: vec![0; 200],
        })
        .unwrap();
        assert!(matches!(
            read_frame(&mut &small_limit[..], 100).await,
            Err(FrameError::TooLarge { .. })
        ));

        let truncated = [0, 0, 0, 10, WIRE_VERSION, 0];
        assert!(matches!(
            read_frame(&mut &truncated[..], 100).await,
            Err(FrameError::Truncated)
        ));
        let bad_version = [0, 0, 0, 2, 99, 0];
        assert!(matches!(
            read_frame(&mut &bad_version[..], 100).await,
            Err(FrameError::UnsupportedVersion(99))
        ));
        let bad_body = [0, 0, 0, 3, WIRE_VERSION, 200, 200];
        assert!(matches!(
            read_frame(&mut &bad_body[..], 100).await,
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..], 100).await,
            Err(FrameError::Empty)
        ));
        // Pseudo-random garbage never panics.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 64) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = decode_body(&bytes);
            let _ = read_frame(&mut &bytes[..], 1024).await;
        }
    }

    #[test]
    fn a_heartbeat_is_twelve_bytes() {
        // The failure detector sends one per peer several times a second:
        // its size is most of the mesh's idle traffic.
        let wire = encode(&Frame::Heartbeat {
            generation: 1_767_225_600_123,
        })
        .unwrap();
        assert_eq!(wire.len(), 12);
    }

    #[tokio::test]
    async fn load_frames_may_exceed_the_gossip_limit_and_nothing_else_may() {
        let encoded = encode(&Frame::Load { bytes: vec![5] }).unwrap();
        assert_eq!(encoded[LENGTH_PREFIX_BYTES + 1], LOAD_VARIANT_TAG);

        let big = Frame::Load {
            bytes: vec![7; MAX_GOSSIP_FRAME_BYTES * 3],
        };
        let wire = encode(&big).unwrap();
        assert_eq!(read_uni_frame(&mut &wire[..]).await.unwrap(), Some(big));

        let largest = Frame::Load {
            bytes: vec![0; mesh_core::load::MAX_LOAD_ANNOUNCEMENT_BYTES],
        };
        let wire = encode(&largest).unwrap();
        assert!(wire.len() - LENGTH_PREFIX_BYTES <= MAX_LOAD_FRAME_BYTES);
        assert!(read_uni_frame(&mut &wire[..]).await.unwrap().is_some());

        // A gossip frame of the same size is refused before allocation.
        let wire = encode(&Frame::Gossip {
            message: vec![7; MAX_GOSSIP_FRAME_BYTES * 3],
        })
        .unwrap();
        assert!(matches!(
            read_uni_frame(&mut &wire[..]).await,
            Err(FrameError::TooLarge { .. })
        ));
        // Over the load limit: refused from the prefix alone.
        let prefix = ((MAX_LOAD_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            read_uni_frame(&mut &prefix[..]).await,
            Err(FrameError::TooLarge { .. })
        ));
        // Small frames read as before.
        let wire = encode(&Frame::Leave { generation: 3 }).unwrap();
        assert_eq!(
            read_uni_frame(&mut &wire[..]).await.unwrap(),
            Some(Frame::Leave { generation: 3 })
        );
    }
}
