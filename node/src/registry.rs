//! The node's table of the orchestrators discovery lists (static list and
//! webhook): the cached job sessions (auth tokens) and this node's jobs in
//! flight per orchestrator (how many, and since when the oldest runs).
//!
//! Health and latency statistics live in the mesh-core view (see
//! [`crate::cluster`]), shared with the other nodes; this table holds what
//! only this process needs. Every change of an in-flight count is also told
//! to an [`InFlightObserver`] (in a cluster, the load announcements of
//! [`crate::load`]), under the table's lock so changes arrive in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use livepeer::Session;
use mesh_core::{OrchestratorId, Pipeline};

/// Most orchestrators tracked. The public network has a few hundred; a
/// webhook that returns more is cut here rather than growing without bound.
pub const MAX_ORCHESTRATORS: usize = 2_000;

/// Shared, thread-safe orchestrator table.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<OrchestratorId, Entry>>>,
    /// Source of job tokens (tell the guards of one orchestrator apart).
    next_job: Arc<AtomicU64>,
    /// Told every change of an in-flight count (set once).
    observer: Arc<OnceLock<Arc<dyn InFlightObserver>>>,
}

/// Hears every change of this node's in-flight count on an orchestrator.
/// Called with the registry's lock held: must be quick and must not call
/// back into the registry.
pub trait InFlightObserver: Send + Sync + std::fmt::Debug {
    /// This node now has `in_flight` jobs on `orchestrator`.
    fn in_flight_changed(&self, orchestrator: &OrchestratorId, in_flight: u32);
}

/// What the table knows about one orchestrator.
#[derive(Debug, Default)]
struct Entry {
    in_flight: u32,
    /// (job token, start unix ms) of each job in flight; as many as
    /// `in_flight`, so bounded by this node's concurrency.
    started: Vec<(u64, u64)>,
    /// Job sessions per (pipeline, model): the auth token and transcoder URL.
    /// Shared, because every attempt reads one (a session holds the whole
    /// `OrchestratorInfo`, too much to copy per job).
    sessions: HashMap<(Pipeline, String), Arc<Session>>,
}

impl Registry {
    /// Replaces the set of known orchestrators (static list ∪ webhook),
    /// keeping what is known about those that stay. Returns how many were
    /// dropped because of [`MAX_ORCHESTRATORS`].
    pub fn set_members(&self, ids: impl IntoIterator<Item = OrchestratorId>) -> usize {
        let mut wanted: Vec<OrchestratorId> = ids.into_iter().collect();
        wanted.sort();
        wanted.dedup();
        let dropped = wanted.len().saturating_sub(MAX_ORCHESTRATORS);
        wanted.truncate(MAX_ORCHESTRATORS);
        let mut inner = self.write();
        inner.retain(|id, entry| {
            let keep = wanted.binary_search(id).is_ok();
            if !keep && entry.in_flight > 0 {
                // Its guards find no entry any more: announce the end now.
                self.notify(id, 0);
            }
            keep
        });
        for id in wanted {
            inner.entry(id).or_default();
        }
        dropped
    }

    /// Installs the observer of in-flight changes; returns false (and keeps
    /// the first) if one is installed already.
    pub fn observe_in_flight(&self, observer: Arc<dyn InFlightObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    fn notify(&self, id: &OrchestratorId, in_flight: u32) {
        if let Some(observer) = self.observer.get() {
            observer.in_flight_changed(id, in_flight);
        }
    }

    /// The known orchestrators.
    pub fn members(&self) -> Vec<OrchestratorId> {
        self.read().keys().cloned().collect()
    }

    /// The cached session for a job on an orchestrator.
    pub fn session(
        &self,
        id: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
    ) -> Option<Arc<Session>> {
        self.read()
            .get(id)?
            .sessions
            .get(&(pipeline, model_id.to_owned()))
            .cloned()
    }

    /// Caches a session. Sessions per orchestrator are bounded by the number
    /// of (pipeline, model) pairs it serves, which its info bounds.
    pub fn store_session(
        &self,
        id: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
        session: Arc<Session>,
    ) {
        if let Some(entry) = self.write().get_mut(id) {
            if entry.sessions.len() >= MAX_SESSIONS_PER_ORCHESTRATOR {
                entry.sessions.clear();
            }
            entry
                .sessions
                .insert((pipeline, model_id.to_owned()), session);
        }
    }

    /// Forgets every session of an orchestrator (it restarted, or rejected
    /// our credentials).
    pub fn drop_sessions(&self, id: &OrchestratorId) {
        if let Some(entry) = self.write().get_mut(id) {
            entry.sessions.clear();
        }
    }

    /// Counts a job in flight, started now, until the guard drops.
    pub fn begin_job(&self, id: &OrchestratorId) -> InFlightGuard {
        self.begin_job_at(id, crate::cluster::unix_ms())
    }

    /// Counts a job in flight that started at `now_ms` (unix ms) until the
    /// guard drops.
    pub fn begin_job_at(&self, id: &OrchestratorId, now_ms: u64) -> InFlightGuard {
        let token = self.next_job.fetch_add(1, Ordering::Relaxed);
        if let Some(entry) = self.write().get_mut(id) {
            entry.in_flight += 1;
            entry.started.push((token, now_ms));
            self.notify(id, entry.in_flight);
        }
        InFlightGuard {
            registry: self.clone(),
            id: id.clone(),
            token,
        }
    }

    /// When this node's oldest job still in flight on each orchestrator
    /// started (unix ms), for orchestrators with jobs in flight: routing's
    /// `LocalState::in_flight_since_ms` (a job running this long means the
    /// orchestrator's latency is at least that).
    pub fn in_flight_since(&self) -> BTreeMap<OrchestratorId, u64> {
        self.read()
            .iter()
            .filter_map(|(id, entry)| {
                let oldest = entry.started.iter().map(|&(_, start)| start).min()?;
                Some((id.clone(), oldest))
            })
            .collect()
    }

    /// In-flight counts per orchestrator.
    pub fn in_flight(&self) -> BTreeMap<OrchestratorId, u32> {
        self.read()
            .iter()
            .filter(|(_, entry)| entry.in_flight > 0)
            .map(|(id, entry)| (id.clone(), entry.in_flight))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<OrchestratorId, Entry>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<OrchestratorId, Entry>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Most cached sessions per orchestrator (one per pipeline and model).
const MAX_SESSIONS_PER_ORCHESTRATOR: usize = 256;

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    registry: Registry,
    id: OrchestratorId,
    token: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.registry.write().get_mut(&self.id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if let Some(i) = entry.started.iter().position(|&(t, _)| t == self.token) {
                entry.started.swap_remove(i);
            }
            self.registry.notify(&self.id, entry.in_flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orch(n: u32) -> OrchestratorId {
        OrchestratorId::parse(&format!("https://o{n}.example:8935")).unwrap()
    }

    #[test]
    fn in_flight_since_is_the_oldest_running_job_per_orchestrator() {
        let registry = Registry::default();
        registry.set_members([orch(1), orch(2)]);
        assert!(registry.in_flight_since().is_empty());

        let first = registry.begin_job_at(&orch(1), 1_000);
        let second = registry.begin_job_at(&orch(1), 1_500);
        let other = registry.begin_job_at(&orch(2), 1_200);
        let since = registry.in_flight_since();
        assert_eq!(since.get(&orch(1)), Some(&1_000));
        assert_eq!(since.get(&orch(2)), Some(&1_200));
        assert_eq!(registry.in_flight().get(&orch(1)), Some(&2));

        // The oldest job ends: the next oldest is the evidence now.
        drop(first);
        assert_eq!(registry.in_flight_since().get(&orch(1)), Some(&1_500));
        drop(second);
        drop(other);
        assert!(registry.in_flight_since().is_empty());
        assert!(registry.in_flight().is_empty());

        // A job on an orchestrator outside the table is not tracked.
        let _stray = registry.begin_job_at(&orch(3), 2_000);
        assert!(registry.in_flight_since().is_empty());
    }

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<(OrchestratorId, u32)>>);

    impl InFlightObserver for Recorder {
        fn in_flight_changed(&self, orchestrator: &OrchestratorId, in_flight: u32) {
            self.0
                .lock()
                .unwrap()
                .push((orchestrator.clone(), in_flight));
        }
    }

    #[test]
    fn the_observer_hears_every_change_and_the_end_of_removed_orchestrators() {
        let registry = Registry::default();
        let recorder = Arc::new(Recorder::default());
        assert!(registry.observe_in_flight(recorder.clone()));
        assert!(!registry.observe_in_flight(Arc::new(Recorder::default())));
        registry.set_members([orch(1), orch(2)]);
        let first = registry.clone().begin_job(&orch(1));
        let second = registry.begin_job(&orch(1));
        let other = registry.begin_job(&orch(2));
        drop(first);
        // orch(2) leaves the table with a job running: announced as 0 now,
        // and its guard's drop changes nothing.
        registry.set_members([orch(1)]);
        drop(other);
        drop(second);
        let _stray = registry.begin_job(&orch(3));
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![
                (orch(1), 1),
                (orch(1), 2),
                (orch(2), 1),
                (orch(1), 1),
                (orch(2), 0),
                (orch(1), 0),
            ]
        );
    }
}
