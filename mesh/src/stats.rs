//! Counters for the mesh (exported by `node` as Prometheus metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters; every field only grows.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) gossip_sent: AtomicU64,
    pub(crate) gossip_send_failed: AtomicU64,
    pub(crate) gossip_send_dropped: AtomicU64,
    pub(crate) gossip_recv_dropped: AtomicU64,
    pub(crate) push_sent: AtomicU64,
    pub(crate) push_dropped: AtomicU64,
    pub(crate) records_accepted: AtomicU64,
    pub(crate) frames_rejected: AtomicU64,
    pub(crate) forwards_served: AtomicU64,
    pub(crate) forwards_duplicate: AtomicU64,
    pub(crate) gossip_bytes_sent: AtomicU64,
    pub(crate) gossip_bytes_received: AtomicU64,
    pub(crate) push_bytes_sent: AtomicU64,
    pub(crate) push_bytes_received: AtomicU64,
    pub(crate) load_sent: AtomicU64,
    pub(crate) load_bytes_sent: AtomicU64,
    pub(crate) load_dropped: AtomicU64,
    pub(crate) load_received: AtomicU64,
    pub(crate) load_bytes_received: AtomicU64,
    pub(crate) load_rejected: AtomicU64,
}

/// A copy of the mesh counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Gossip messages written to a stream.
    pub gossip_sent_total: u64,
    /// Gossip sends that failed (dial or stream error).
    pub gossip_send_failed_total: u64,
    /// Gossip sends dropped because all send slots were busy.
    pub gossip_send_dropped_total: u64,
    /// Received gossip dropped because chitchat's queue was full.
    pub gossip_recv_dropped_total: u64,
    /// Push frames sent to peers.
    pub push_sent_total: u64,
    /// Record updates not pushed because the push queue was full.
    pub push_dropped_total: u64,
    /// Record versions accepted into the local store (any path).
    pub records_accepted_total: u64,
    /// Streams closed because of a bad or unexpected frame.
    pub frames_rejected_total: u64,
    /// Forwarded requests run by the local handler.
    pub forwards_served_total: u64,
    /// Forwarded requests refused as duplicates.
    pub forwards_duplicate_total: u64,
    /// Bytes of gossip frames written to peers (framing included, QUIC and
    /// UDP/IP overhead not).
    pub gossip_bytes_sent_total: u64,
    /// Bytes of gossip (and departure) frames read from peers.
    pub gossip_bytes_received_total: u64,
    /// Bytes of push frames written to peers (once per peer).
    pub push_bytes_sent_total: u64,
    /// Bytes of push frames read from peers.
    pub push_bytes_received_total: u64,
    /// Load frames written to peers (one per peer and announcement).
    pub load_sent_total: u64,
    /// Bytes of load frames written to peers (framing included).
    pub load_bytes_sent_total: u64,
    /// Load frames not sent: all send slots busy, or the send failed.
    pub load_dropped_total: u64,
    /// Load frames received and handed to subscribers.
    pub load_received_total: u64,
    /// Bytes of load frames read from peers (refused ones included).
    pub load_bytes_received_total: u64,
    /// Load frames refused (announcement over the size limit); also in
    /// `frames_rejected_total`.
    pub load_rejected_total: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> MeshStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MeshStats {
            gossip_sent_total: get(&self.gossip_sent),
            gossip_send_failed_total: get(&self.gossip_send_failed),
            gossip_send_dropped_total: get(&self.gossip_send_dropped),
            gossip_recv_dropped_total: get(&self.gossip_recv_dropped),
            push_sent_total: get(&self.push_sent),
            push_dropped_total: get(&self.push_dropped),
            records_accepted_total: get(&self.records_accepted),
            frames_rejected_total: get(&self.frames_rejected),
            forwards_served_total: get(&self.forwards_served),
            forwards_duplicate_total: get(&self.forwards_duplicate),
            gossip_bytes_sent_total: get(&self.gossip_bytes_sent),
            gossip_bytes_received_total: get(&self.gossip_bytes_received),
            push_bytes_sent_total: get(&self.push_bytes_sent),
            push_bytes_received_total: get(&self.push_bytes_received),
            load_sent_total: get(&self.load_sent),
            load_bytes_sent_total: get(&self.load_bytes_sent),
            load_dropped_total: get(&self.load_dropped),
            load_received_total: get(&self.load_received),
            load_bytes_received_total: get(&self.load_bytes_received),
            load_rejected_total: get(&self.load_rejected),
        }
    }
}
