//! The node's table of known orchestrators: what discovery learned about each
//! (capabilities, models, prices, GPUs), the cached job sessions (auth
//! tokens), and this node's in-flight count per orchestrator.
//!
//! Health and latency statistics live in the mesh-core view (see
//! [`crate::cluster`]), shared with the other nodes; this table holds what
//! only this process needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use livepeer::Session;
use mesh_core::{OrchestratorId, OrchestratorInfo, Pipeline};
use tokio::time::Instant;

/// Most orchestrators tracked. The public network has a few hundred; a
/// webhook that returns more is cut here rather than growing without bound.
pub const MAX_ORCHESTRATORS: usize = 2_000;

/// Shared, thread-safe orchestrator table.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<OrchestratorId, Entry>>>,
}

/// What the table knows about one orchestrator.
#[derive(Debug, Default)]
struct Entry {
    info: Option<OrchestratorInfo>,
    info_fetched_at: Option<Instant>,
    last_info_error: Option<String>,
    in_flight: u32,
    /// Job sessions per (pipeline, model): the auth token and transcoder URL.
    sessions: HashMap<(Pipeline, String), Session>,
}

/// A summary row for readiness and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrchestratorStatus {
    /// The orchestrator.
    pub id: OrchestratorId,
    /// Info was fetched at least once.
    pub has_info: bool,
    /// Milliseconds since the last successful info fetch.
    pub info_age_ms: Option<u64>,
    /// The last info fetch error, if the last fetch failed.
    pub last_info_error: Option<String>,
    /// Jobs in flight from this node.
    pub in_flight: u32,
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
        inner.retain(|id, _| wanted.binary_search(id).is_ok());
        for id in wanted {
            inner.entry(id).or_default();
        }
        dropped
    }

    /// The known orchestrators.
    pub fn members(&self) -> Vec<OrchestratorId> {
        self.read().keys().cloned().collect()
    }

    /// Records a successful info fetch.
    pub fn set_info(&self, id: &OrchestratorId, info: OrchestratorInfo) {
        if let Some(entry) = self.write().get_mut(id) {
            entry.info = Some(info);
            entry.info_fetched_at = Some(Instant::now());
            entry.last_info_error = None;
        }
    }

    /// Records a failed info fetch. The last good info is kept: a transient
    /// error must not make a working orchestrator disappear; job outcomes and
    /// the shared view decide whether it is healthy.
    pub fn set_info_error(&self, id: &OrchestratorId, error: String) {
        if let Some(entry) = self.write().get_mut(id) {
            entry.last_info_error = Some(error);
        }
    }

    /// The latest info of one orchestrator.
    pub fn info(&self, id: &OrchestratorId) -> Option<OrchestratorInfo> {
        self.read().get(id)?.info.clone()
    }

    /// Summary rows.
    pub fn statuses(&self) -> Vec<OrchestratorStatus> {
        let now = Instant::now();
        self.read()
            .iter()
            .map(|(id, entry)| OrchestratorStatus {
                id: id.clone(),
                has_info: entry.info.is_some(),
                info_age_ms: entry
                    .info_fetched_at
                    .map(|at| now.duration_since(at).as_millis() as u64),
                last_info_error: entry.last_info_error.clone(),
                in_flight: entry.in_flight,
            })
            .collect()
    }

    /// The cached session for a job on an orchestrator.
    pub fn session(
        &self,
        id: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
    ) -> Option<Session> {
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
        session: Session,
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

    /// Counts a job in flight until the guard drops.
    pub fn begin_job(&self, id: &OrchestratorId) -> InFlightGuard {
        if let Some(entry) = self.write().get_mut(id) {
            entry.in_flight += 1;
        }
        InFlightGuard {
            registry: self.clone(),
            id: id.clone(),
        }
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
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.registry.write().get_mut(&self.id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }
}
