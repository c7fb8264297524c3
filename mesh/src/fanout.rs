//! Fire-and-forget sends of one encoded frame to many peers: one task and
//! one uni stream per peer, at most as many in flight as the caller's
//! semaphore allows, each outcome counted in [`Stats`]. Record pushes,
//! heartbeats and load announcements go out this way; none of them ever
//! waits on the network where it is called.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::endpoint::MeshEndpoint;
use crate::stats::Stats;

/// The counters one kind of send updates.
pub(crate) struct Counters {
    /// Bytes written.
    pub(crate) bytes: fn(&Stats) -> &AtomicU64,
    /// Frames written, where counted.
    pub(crate) sent: Option<fn(&Stats) -> &AtomicU64>,
    /// Not started: every slot was taken.
    pub(crate) no_slot: fn(&Stats) -> &AtomicU64,
    /// Started, but the dial or the stream failed.
    pub(crate) failed: fn(&Stats) -> &AtomicU64,
    /// The debug line of a failed send.
    pub(crate) failure_log: &'static str,
}

/// Record pushes (gossip delivers what a failed push missed).
pub(crate) const PUSH: Counters = Counters {
    bytes: |s| &s.push_bytes_sent,
    sent: Some(|s| &s.push_sent),
    no_slot: |s| &s.push_dropped,
    failed: |s| &s.push_dropped,
    failure_log: "push failed; gossip will deliver",
};

/// Heartbeats (counted as membership traffic, with gossip).
pub(crate) const HEARTBEAT: Counters = Counters {
    bytes: |s| &s.gossip_bytes_sent,
    sent: None,
    no_slot: |s| &s.gossip_send_dropped,
    failed: |s| &s.gossip_send_failed,
    failure_log: "heartbeat failed",
};

/// Load announcements.
pub(crate) const LOAD: Counters = Counters {
    bytes: |s| &s.load_bytes_sent,
    sent: Some(|s| &s.load_sent),
    no_slot: |s| &s.load_dropped,
    failed: |s| &s.load_dropped,
    failure_log: "load announcement not delivered",
};

/// Sends `encoded` to each of `peers`, one task per peer; returns how many
/// sends were started.
pub(crate) fn send_to_peers(
    endpoint: &MeshEndpoint,
    slots: &Arc<Semaphore>,
    stats: &Arc<Stats>,
    encoded: &Bytes,
    peers: impl IntoIterator<Item = SocketAddr>,
    counters: &'static Counters,
) -> usize {
    let mut started = 0;
    for addr in peers {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            (counters.no_slot)(stats).fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let endpoint = endpoint.clone();
        let encoded = encoded.clone();
        let stats = stats.clone();
        started += 1;
        tokio::spawn(async move {
            let _slot = slot;
            match endpoint.send_uni(addr, &encoded).await {
                Ok(()) => {
                    (counters.bytes)(&stats).fetch_add(encoded.len() as u64, Ordering::Relaxed);
                    if let Some(sent) = counters.sent {
                        sent(&stats).fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    debug!(peer = %addr, %error, "{}", counters.failure_log);
                    (counters.failed)(&stats).fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    started
}
