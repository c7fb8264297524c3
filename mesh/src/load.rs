//! Load announcements: small, frequent, opaque messages (a node's jobs in
//! flight, encoded by `mesh_core::load`) sent **at once** to every reachable
//! peer on a uni stream ([`Frame::Load`](crate::frame::Frame::Load)), with
//! no coalescing and no gossip backstop. The sender re-sends its whole table
//! every second while busy, so a lost frame is repaired by the next one.
//!
//! - Sending ([`MeshHandle::announce_load`](crate::MeshHandle::announce_load))
//!   never waits on the network: one task per peer, at most
//!   [`MAX_INFLIGHT_LOAD_SENDS`] at once; beyond that a send is dropped and
//!   counted.
//! - Receiving: every accepted frame goes to the subscribers of
//!   [`MeshHandle::subscribe_load`](crate::MeshHandle::subscribe_load) as a
//!   [`LoadMessage`] whose `from` is the peer's certificate identity.
//!   Frames over [`MAX_LOAD_ANNOUNCEMENT_BYTES`] are refused and counted.

use bytes::Bytes;
use mesh_core::NodeId;
pub use mesh_core::load::MAX_LOAD_ANNOUNCEMENT_BYTES;

/// Load frames in flight at once (all peers together). Each is one uni
/// stream of a few hundred bytes; at 50 peers this allows ~5 announcements
/// to overlap per peer. Beyond it, a send is dropped and counted: the next
/// announcement (absolute counts) or the 1 s refresh repairs it.
pub const MAX_INFLIGHT_LOAD_SENDS: usize = 256;

/// Load messages buffered per subscriber. A busy cluster announces a few
/// thousand per second in all (each node on every change of a count), and
/// applying one takes microseconds, so 4,096 rides out a stall of the
/// receiving task of about a second. A subscriber that lags gets `Lagged`:
/// the lost counts are absolute and repaired by the next announcement or
/// refresh of each peer.
pub const LOAD_EVENT_BUFFER: usize = 4_096;

/// One load announcement from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadMessage {
    /// The sender, from its certificate.
    pub from: NodeId,
    /// The announcement, opaque to the mesh (`mesh_core::load`).
    pub bytes: Bytes,
}

/// Why [`MeshHandle::announce_load`](crate::MeshHandle::announce_load)
/// sent nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// Over [`MAX_LOAD_ANNOUNCEMENT_BYTES`].
    #[error("load announcement of {len} bytes exceeds {MAX_LOAD_ANNOUNCEMENT_BYTES} bytes")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The mesh is shut down.
    #[error("mesh is shut down")]
    ShutDown,
    /// The frame could not be encoded.
    #[error("cannot encode the load frame: {0}")]
    Encode(String),
}
