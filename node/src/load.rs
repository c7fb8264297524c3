//! Jobs in flight, shared with every peer at once (the I/O around
//! `mesh_core::load`).
//!
//! - **Sending**: the [`Registry`](crate::registry::Registry) tells
//!   [`LoadSharing`] every change of this node's in-flight count on an
//!   orchestrator (an [`InFlightObserver`]); that sets the [`LoadLedger`]
//!   and wakes the publisher task, which takes `ledger.announcement(now)`
//!   without sleeping and hands it to `MeshHandle::announce_load`. Changes
//!   made while it sends are batched into the next announcement. The same
//!   task wakes every `refresh_interval_ms` for the complete-table refresh.
//! - **Receiving**: a task decodes every `LoadMessage` and applies it to the
//!   [`LoadBoard`] (undecodable or refused: a warning naming the peer and a
//!   counter, never a panic); on membership changes it forgets peers that
//!   are no longer reachable, and every second it expires silent peers.
//! - **Routing**: [`crate::cluster::Cluster::local_state_from`] adds the
//!   board's totals to this node's counts and sets
//!   `LocalState::in_flight_includes_peers`.
//!
//! The hot path (one job start or end) takes the ledger's mutex for one map
//! update and notifies a task; the board's mutex is held for one `apply`
//! or one copy of the totals. Times given to the ledger and the board come
//! from a monotonic clock, so a wall-clock step cannot stall refreshes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use api::metrics::{Direction, LoadEvent};
use bytes::Bytes;
use mesh::{AnnounceError, LoadMessage, MeshHandle};
use mesh_core::load::{LoadAnnouncement, LoadBoard, LoadLedger};
use mesh_core::{NodeId, OrchestratorId};
use tokio::sync::{Notify, broadcast, watch};

use crate::registry::InFlightObserver;

/// How often silent peers are expired and the mesh's load counters are
/// copied into the metrics.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);

/// This node's ledger and the peers' board. Cheap to clone.
#[derive(Clone)]
pub struct LoadSharing {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Mutex<LoadLedger>,
    board: Mutex<LoadBoard>,
    wake: Notify,
    metrics: api::Metrics,
}

impl std::fmt::Debug for LoadSharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadSharing")
            .field("peers", &lock(&self.inner.board).peers())
            .finish_non_exhaustive()
    }
}

impl LoadSharing {
    /// Starts the publisher and receiver tasks over `mesh`; they stop when
    /// `shutdown` changes or the mesh stops.
    pub fn start(mesh: MeshHandle, metrics: api::Metrics, shutdown: watch::Receiver<bool>) -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                ledger: Mutex::new(LoadLedger::new(mesh.generation())),
                board: Mutex::new(LoadBoard::default()),
                wake: Notify::new(),
                metrics,
            }),
        };
        tokio::spawn(this.clone().publish_loop(mesh.clone(), shutdown.clone()));
        tokio::spawn(this.clone().receive_loop(mesh, shutdown));
        this
    }

    /// This node now has `in_flight` jobs on `orchestrator`: announce it.
    pub fn set_local(&self, orchestrator: &OrchestratorId, in_flight: u32) {
        lock(&self.inner.ledger).set(orchestrator, in_flight);
        self.inner.wake.notify_one();
    }

    /// Adds the peers' announced jobs in flight to `in_flight`.
    pub fn add_peer_totals(&self, in_flight: &mut HashMap<OrchestratorId, u32>) {
        lock(&self.inner.board).add_to(in_flight);
    }

    /// The peers' announced jobs in flight per orchestrator (non-zero only).
    pub fn peer_in_flight(&self) -> BTreeMap<OrchestratorId, u32> {
        lock(&self.inner.board)
            .totals()
            .map(|(o, n)| (o.clone(), n))
            .collect()
    }

    /// `peer`'s announced jobs in flight on `orchestrator`.
    pub fn peer_in_flight_of(&self, peer: &NodeId, orchestrator: &OrchestratorId) -> u32 {
        lock(&self.inner.board).peer_in_flight(peer, orchestrator)
    }

    /// Applies one received message to the board.
    fn apply(&self, message: &LoadMessage) {
        let metrics = &self.inner.metrics;
        let announcement = match LoadAnnouncement::decode(&message.bytes) {
            Ok(announcement) => announcement,
            Err(error) => {
                tracing::warn!(peer = %message.from, %error, "undecodable load announcement");
                metrics.record_load_announcements(LoadEvent::Refused, 1);
                return;
            }
        };
        let applied = lock(&self.inner.board).apply(&message.from, &announcement, mono_ms());
        match applied {
            Ok(_) => metrics.record_load_announcements(LoadEvent::Received, 1),
            Err(error) => {
                tracing::warn!(peer = %message.from, %error, "load announcement refused");
                metrics.record_load_announcements(LoadEvent::Refused, 1);
            }
        }
    }

    /// Sends what changed as soon as it changed, and the whole table every
    /// refresh interval while busy.
    async fn publish_loop(self, mesh: MeshHandle, mut shutdown: watch::Receiver<bool>) {
        let refresh = Duration::from_millis(lock(&self.inner.ledger).refresh_interval_ms());
        loop {
            let announcement = lock(&self.inner.ledger).announcement(mono_ms());
            if let Some(announcement) = announcement {
                match announcement.encode() {
                    Ok(bytes) => match mesh.announce_load(Bytes::from(bytes)) {
                        Ok(_) => {}
                        Err(AnnounceError::ShutDown) => return,
                        Err(error) => {
                            tracing::warn!(%error, "load announcement not sent");
                        }
                    },
                    Err(error) => tracing::warn!(%error, "load announcement not encoded"),
                }
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(refresh) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Applies peers' announcements, forgets peers that left or died, and
    /// expires silent ones.
    async fn receive_loop(self, mesh: MeshHandle, mut shutdown: watch::Receiver<bool>) {
        let mut events = mesh.subscribe_load();
        let mut members = mesh.subscribe_members();
        let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut copied = mesh::MeshStats::default();
        loop {
            tokio::select! {
                received = events.recv() => match received {
                    Ok(message) => self.apply(&message),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "load announcements lost (receiver lagged); the next refreshes repair them");
                        self.inner.metrics.record_load_announcements(LoadEvent::Dropped, missed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = members.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let reachable: HashSet<NodeId> = members
                        .borrow_and_update()
                        .iter()
                        .filter(|m| !m.is_self && m.state.is_reachable())
                        .map(|m| m.node.clone())
                        .collect();
                    lock(&self.inner.board).retain_peers(|node| reachable.contains(node));
                }
                _ = tick.tick() => {
                    lock(&self.inner.board).expire(mono_ms());
                    copied = self.copy_mesh_stats(&mesh, copied);
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Adds the mesh's load counters since `before` to the metrics.
    fn copy_mesh_stats(&self, mesh: &MeshHandle, before: mesh::MeshStats) -> mesh::MeshStats {
        let now = mesh.stats();
        let metrics = &self.inner.metrics;
        let delta = |a: u64, b: u64| a.saturating_sub(b);
        metrics.record_load_announcements(
            LoadEvent::Sent,
            delta(now.load_sent_total, before.load_sent_total),
        );
        metrics.record_load_announcements(
            LoadEvent::Dropped,
            delta(now.load_dropped_total, before.load_dropped_total),
        );
        // Frames the mesh refused never reach `apply`.
        metrics.record_load_announcements(
            LoadEvent::Refused,
            delta(now.load_rejected_total, before.load_rejected_total),
        );
        metrics.record_load_bytes(
            Direction::Out,
            delta(now.load_bytes_sent_total, before.load_bytes_sent_total),
        );
        metrics.record_load_bytes(
            Direction::In,
            delta(
                now.load_bytes_received_total,
                before.load_bytes_received_total,
            ),
        );
        now
    }
}

impl InFlightObserver for LoadSharing {
    fn in_flight_changed(&self, orchestrator: &OrchestratorId, in_flight: u32) {
        self.set_local(orchestrator, in_flight);
    }
}

/// Milliseconds on a monotonic clock (since the first call in this
/// process): what the ledger and the board are given as `now`.
fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharing() -> LoadSharing {
        LoadSharing {
            inner: Arc::new(Inner {
                ledger: Mutex::new(LoadLedger::new(1)),
                board: Mutex::new(LoadBoard::default()),
                wake: Notify::new(),
                metrics: api::Metrics::new(),
            }),
        }
    }

    fn message(from: &str, bytes: Vec<u8>) -> LoadMessage {
        LoadMessage {
            from: NodeId::new(from).unwrap(),
            bytes: Bytes::from(bytes),
        }
    }

    #[test]
    fn garbage_is_refused_and_counted_and_good_announcements_add_up() {
        let load = sharing();
        let orch = OrchestratorId::parse("https://o1.example:8935").unwrap();
        for junk in [vec![], vec![9, 1, 2], vec![1, 0xff, 0xff, 0xff, 0xff, 0xff]] {
            load.apply(&message("b", junk));
        }
        let good = |seq, n| LoadAnnouncement {
            generation: 7,
            seq,
            complete: false,
            counts: vec![(orch.clone(), n)],
        };
        load.apply(&message("b", good(1, 2).encode().unwrap()));
        load.apply(&message("c", good(1, 3).encode().unwrap()));
        let mut in_flight = HashMap::from([(orch.clone(), 1)]);
        load.add_peer_totals(&mut in_flight);
        assert_eq!(in_flight[&orch], 6);
        assert_eq!(load.peer_in_flight_of(&NodeId::new("c").unwrap(), &orch), 3);
        load.apply(&message("b", good(2, 0).encode().unwrap()));
        assert_eq!(load.peer_in_flight(), BTreeMap::from([(orch.clone(), 3)]));

        let text = load.inner.metrics.encode();
        assert!(
            text.contains("gatemesh_mesh_load_announcements_total{direction=\"refused\"} 3"),
            "{text}"
        );
        assert!(text.contains("gatemesh_mesh_load_announcements_total{direction=\"received\"} 3"));

        // Local changes reach the ledger.
        load.set_local(&orch, 4);
        let announced = lock(&load.inner.ledger).announcement(5).unwrap();
        assert_eq!(announced.counts, vec![(orch, 4)]);
    }
}
