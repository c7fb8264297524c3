//! The view: every node's observation records plus cluster-wide operator
//! state, held by each node and merged from gossip.
//!
//! - Records are keyed by (orchestrator, observer). Each key has one writer,
//!   the observer, so "highest version wins" is a CRDT (commutative,
//!   associative, idempotent). Versions are [`Hlc`](crate::hlc::Hlc)s; the rare tie between
//!   different contents (a writer bug) is broken by the encoded bytes so
//!   replicas still converge.
//! - The orchestrator blocklist is a `crdts::Orswot` that any node may edit;
//!   add wins over a concurrent remove.
//! - Reads go through [`View::snapshot`], an immutable aggregate that
//!   routing uses without touching the view again. The view keeps each
//!   orchestrator's summary until one of its records changes (or for at most
//!   [`SUMMARY_REUSE_MS`]), so a snapshot costs O(changed records), not
//!   O(all records).
//!
//! Time is passed in: `now_ms` is unix milliseconds from the caller.

mod observation;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crdts::{CmRDT, CvRDT, Orswot};

pub use observation::{
    DECAY_HALF_LIFE_MS, ErrorClass, HISTOGRAM_AGE_AT, LATENCY_BUCKET_BOUNDS_MS, LATENCY_BUCKETS,
    LATENCY_EWMA_ALPHA, LatencyHistogram, MAX_MODEL_ID_LEN, MAX_MODEL_STATS, MAX_RECORD_BYTES,
    ModelStats, ObservationRecord, RECORD_FORMAT_VERSION, RecordError, decay_factor, quantile_ms,
};
pub use snapshot::{
    MAX_HONORED_EJECTION_MS, ObserverFreshness, Offer, OrchestratorSummary, RegionHealth,
    RegionLatency, RegionModelStats, SUMMARY_REUSE_MS, ViewSnapshot,
};

use crate::hlc::{HlcClock, HlcError};
use crate::id::{NodeId, OrchestratorId, RegionId};
use crate::orchestrator::OrchestratorInfo;
use crate::pipeline::Pipeline;
use crate::route::EjectionPolicy;

/// Most orchestrators a view tracks. The public Livepeer network has a few
/// hundred active orchestrators; 1,024 leaves room for regional instances
/// while bounding memory to `MAX_ORCHESTRATORS × MAX_OBSERVERS` records.
pub const MAX_ORCHESTRATORS: usize = 1_024;

/// Most observers (gateway nodes) a view tracks: a cluster is a few nodes per
/// region in a handful of regions; 64 is ample and keeps the per-pick
/// aggregates small.
pub const MAX_OBSERVERS: usize = 64;

/// Most members of the blocklist: it is typed in by operators.
pub const MAX_BLOCKLIST: usize = 1_024;

/// Largest encoded blocklist state we produce or accept (same reasoning as
/// [`MAX_RECORD_BYTES`]: it travels in gossip).
pub const MAX_BLOCKLIST_BYTES: usize = 64 * 1024;

/// Format byte in front of the encoded blocklist state.
pub const BLOCKLIST_FORMAT_VERSION: u8 = 1;

/// The blocklist CRDT: orchestrators, edited by nodes.
pub type Blocklist = Orswot<OrchestratorId, NodeId>;

/// Why the view refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// Accepting the record would exceed [`MAX_ORCHESTRATORS`].
    #[error("view already tracks {MAX_ORCHESTRATORS} orchestrators")]
    TooManyOrchestrators,
    /// Accepting the record would exceed [`MAX_OBSERVERS`].
    #[error("view already tracks {MAX_OBSERVERS} observers")]
    TooManyObservers,
    /// The blocklist would exceed [`MAX_BLOCKLIST`] members or bytes.
    #[error("blocklist too large")]
    BlocklistTooLarge,
    /// The blocklist state is inconsistent with ours (a dot used twice).
    #[error("blocklist state conflicts with ours: {0}")]
    BlocklistConflict(String),
    /// The record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record's version is too far in the future.
    #[error(transparent)]
    Clock(#[from] HlcError),
}

/// What [`View::merge`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The record was new or newer and replaced ours.
    Applied,
    /// We already had this version or a newer one.
    Stale,
}

/// One node's copy of the cluster's observations and operator state.
#[derive(Debug, Clone)]
pub struct View {
    local: NodeId,
    local_region: RegionId,
    clock: HlcClock,
    records: BTreeMap<OrchestratorId, BTreeMap<NodeId, ObservationRecord>>,
    observers: BTreeMap<NodeId, usize>,
    blocklist: Blocklist,
    dirty: BTreeSet<OrchestratorId>,
    blocklist_dirty: bool,
    /// Records per observer region (the snapshot's region list).
    region_records: BTreeMap<RegionId, usize>,
    /// Summaries kept between snapshots.
    cache: SnapshotCache,
}

/// The parts of the last snapshot, per orchestrator, with whether its
/// records changed since. Behind a mutex so that [`View::snapshot`] can stay
/// `&self`; a cloned view starts with an empty cache.
#[derive(Default)]
struct SnapshotCache(Mutex<CacheState>);

#[derive(Default)]
struct CacheState {
    regions: Vec<RegionId>,
    blocked: Vec<OrchestratorId>,
    /// (part, still valid), by orchestrator.
    parts: BTreeMap<OrchestratorId, (snapshot::Part, bool)>,
    /// The id index of the last snapshot, while the set of orchestrators is
    /// the same.
    index: Option<Arc<snapshot::IdIndex>>,
}

impl Clone for SnapshotCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotCache")
    }
}

impl SnapshotCache {
    fn state(&mut self) -> &mut CacheState {
        self.0.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// The orchestrator's records changed.
    fn invalidate(&mut self, orchestrator: &OrchestratorId) {
        if let Some(entry) = self.state().parts.get_mut(orchestrator) {
            entry.1 = false;
        }
    }
}

impl View {
    /// An empty view for the node `local` in `local_region`, refusing remote
    /// versions more than `max_drift_ms` ahead of local time.
    pub fn new(local: NodeId, local_region: RegionId, max_drift_ms: u64) -> Self {
        Self {
            clock: HlcClock::new(&local, max_drift_ms),
            local,
            local_region,
            records: BTreeMap::new(),
            observers: BTreeMap::new(),
            blocklist: Blocklist::new(),
            dirty: BTreeSet::new(),
            blocklist_dirty: false,
            region_records: BTreeMap::new(),
            cache: SnapshotCache::default(),
        }
    }

    /// This node.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// This node's region.
    pub fn local_region(&self) -> &RegionId {
        &self.local_region
    }

    /// This node's clock (e.g. to stamp other state).
    pub fn clock_mut(&mut self) -> &mut HlcClock {
        &mut self.clock
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.values().map(BTreeMap::len).sum()
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, ordered by (orchestrator, observer).
    pub fn records(&self) -> impl Iterator<Item = &ObservationRecord> {
        self.records.values().flat_map(BTreeMap::values)
    }

    /// The record of `observer` about `orchestrator`.
    pub fn record(
        &self,
        orchestrator: &OrchestratorId,
        observer: &NodeId,
    ) -> Option<&ObservationRecord> {
        self.records.get(orchestrator)?.get(observer)
    }

    /// This node's own record about `orchestrator`.
    pub fn local_record(&self, orchestrator: &OrchestratorId) -> Option<&ObservationRecord> {
        self.record(orchestrator, &self.local)
    }

    /// This node's own records.
    pub fn local_records(&self) -> impl Iterator<Item = &ObservationRecord> {
        self.records().filter(|r| r.observer == self.local)
    }

    /// Whether a local record changed since the last [`Self::take_dirty`].
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Orchestrators whose local record changed since the last call, for the
    /// gossip layer to publish.
    pub fn take_dirty(&mut self) -> Vec<OrchestratorId> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Merges a record from a peer (or our own, echoed back): the higher
    /// version wins. The version also advances our clock, so our next local
    /// write is newer than anything we have seen (this is how a restarted
    /// node gets past its own pre-restart records).
    pub fn merge(
        &mut self,
        record: ObservationRecord,
        now_ms: u64,
    ) -> Result<MergeOutcome, ViewError> {
        record.validate()?;
        self.clock.observe(record.version, now_ms)?;
        if let Some(existing) = self
            .records
            .get(&record.orchestrator)
            .and_then(|per| per.get(&record.observer))
        {
            if !newer(&record, existing) {
                return Ok(MergeOutcome::Stale);
            }
        } else {
            self.check_room(&record.orchestrator, &record.observer)?;
        }
        self.insert(record);
        Ok(MergeOutcome::Applied)
    }

    /// Merges every record and the blocklist of another replica (state-based
    /// anti-entropy; simulations and tests). Returns how many records were
    /// applied; records the bounds refuse are skipped.
    pub fn merge_view(&mut self, other: &View, now_ms: u64) -> usize {
        let mut applied = 0;
        for record in other.records() {
            if let Ok(MergeOutcome::Applied) = self.merge(record.clone(), now_ms) {
                applied += 1;
            }
        }
        let _ = self.merge_blocklist(other.blocklist.clone());
        applied
    }

    fn check_room(
        &self,
        orchestrator: &OrchestratorId,
        observer: &NodeId,
    ) -> Result<(), ViewError> {
        if !self.records.contains_key(orchestrator) && self.records.len() >= MAX_ORCHESTRATORS {
            return Err(ViewError::TooManyOrchestrators);
        }
        if !self.observers.contains_key(observer) && self.observers.len() >= MAX_OBSERVERS {
            return Err(ViewError::TooManyObservers);
        }
        Ok(())
    }

    fn insert(&mut self, record: ObservationRecord) {
        self.cache.invalidate(&record.orchestrator);
        let per = match self.records.get_mut(&record.orchestrator) {
            Some(per) => per,
            None => self.records.entry(record.orchestrator.clone()).or_default(),
        };
        let observer = record.observer.clone();
        let region = record.observer_region.clone();
        match per.insert(observer.clone(), record) {
            Some(old) => {
                if old.observer_region != region {
                    self.count_region(&old.observer_region, false);
                    self.count_region(&region, true);
                }
            }
            None => {
                *self.observers.entry(observer).or_default() += 1;
                self.count_region(&region, true);
            }
        }
    }

    fn count_region(&mut self, region: &RegionId, add: bool) {
        if add {
            match self.region_records.get_mut(region) {
                Some(n) => *n += 1,
                None => {
                    self.region_records.insert(region.clone(), 1);
                }
            }
        } else if let Some(n) = self.region_records.get_mut(region) {
            *n -= 1;
            if *n == 0 {
                self.region_records.remove(region);
            }
        }
    }

    fn remove(&mut self, orchestrator: &OrchestratorId, observer: &NodeId) {
        self.cache.invalidate(orchestrator);
        let Some(per) = self.records.get_mut(orchestrator) else {
            return;
        };
        let removed = per.remove(observer);
        if per.is_empty() {
            self.records.remove(orchestrator);
        }
        if let Some(old) = removed {
            self.count_region(&old.observer_region, false);
            if let Some(count) = self.observers.get_mut(observer) {
                *count -= 1;
                if *count == 0 {
                    self.observers.remove(observer);
                }
            }
        }
    }

    /// Changes this node's record about `orchestrator` (created if absent),
    /// stamps a new version and marks it for publication.
    pub fn update_local<R>(
        &mut self,
        orchestrator: &OrchestratorId,
        now_ms: u64,
        change: impl FnOnce(&mut ObservationRecord) -> R,
    ) -> Result<R, ViewError> {
        let existing = self
            .records
            .get_mut(orchestrator)
            .and_then(|per| per.get_mut(&self.local));
        let result = if let Some(record) = existing {
            let result = change(record);
            record.version = self.clock.tick(now_ms);
            self.cache.invalidate(orchestrator);
            result
        } else {
            self.check_room(orchestrator, &self.local)?;
            let mut record = ObservationRecord::new(
                orchestrator.clone(),
                self.local.clone(),
                self.local_region.clone(),
            );
            let result = change(&mut record);
            record.version = self.clock.tick(now_ms);
            self.insert(record);
            result
        };
        self.dirty.insert(orchestrator.clone());
        Ok(result)
    }

    /// Local: a job succeeded.
    pub fn local_success(
        &mut self,
        orchestrator: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
        latency_ms: u32,
        now_ms: u64,
    ) -> Result<(), ViewError> {
        self.update_local(orchestrator, now_ms, |r| {
            r.record_success(pipeline, model_id, latency_ms, now_ms)
        })
    }

    /// Local: a job failed. Applies the ejection policy and returns the end
    /// of the ejection if this failure ejected the orchestrator.
    pub fn local_failure(
        &mut self,
        orchestrator: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
        class: ErrorClass,
        policy: &EjectionPolicy,
        now_ms: u64,
    ) -> Result<Option<u64>, ViewError> {
        self.update_local(orchestrator, now_ms, |r| {
            r.record_failure(pipeline, model_id, class, now_ms);
            policy.after_failure(r, class, now_ms)
        })
    }

    /// Local: a health or discovery probe failed. Applies the ejection policy
    /// (an unreachable orchestrator is ejected) without counting a job
    /// failure; returns the end of the ejection, if any.
    pub fn local_probe_failure(
        &mut self,
        orchestrator: &OrchestratorId,
        class: ErrorClass,
        policy: &EjectionPolicy,
        now_ms: u64,
    ) -> Result<Option<u64>, ViewError> {
        self.update_local(orchestrator, now_ms, |r| {
            r.record_probe_failure(class, now_ms);
            policy.after_failure(r, class, now_ms)
        })
    }

    /// Local: a `GetOrchestrator` reply (`rtt_ms` is its round trip, if timed).
    pub fn local_info(
        &mut self,
        orchestrator: &OrchestratorId,
        info: OrchestratorInfo,
        rtt_ms: Option<u32>,
        now_ms: u64,
    ) -> Result<(), ViewError> {
        self.update_local(orchestrator, now_ms, |r| {
            r.record_info(info, now_ms);
            if let Some(rtt) = rtt_ms {
                r.record_probe(rtt, now_ms);
            }
        })
    }

    /// Local: a health probe answered.
    pub fn local_probe(
        &mut self,
        orchestrator: &OrchestratorId,
        rtt_ms: u32,
        now_ms: u64,
    ) -> Result<(), ViewError> {
        self.update_local(orchestrator, now_ms, |r| r.record_probe(rtt_ms, now_ms))
    }

    /// Local: this node's in-flight count on the orchestrator. Only stamps a
    /// new version (and so only gossips) when the value changes. Nodes do
    /// not call this for routing: counts travel as load announcements
    /// (`crate::load`), far fresher than a gossiped record.
    pub fn local_in_flight(
        &mut self,
        orchestrator: &OrchestratorId,
        in_flight: u32,
        now_ms: u64,
    ) -> Result<(), ViewError> {
        if self
            .local_record(orchestrator)
            .is_some_and(|r| r.in_flight == in_flight)
        {
            return Ok(());
        }
        self.update_local(orchestrator, now_ms, |r| r.set_in_flight(in_flight))
    }

    /// Re-stamps every local record (e.g. once a minute) so peers do not
    /// expire them while nothing changes.
    pub fn refresh_local(&mut self, now_ms: u64) {
        let locals: Vec<OrchestratorId> = self
            .local_records()
            .map(|r| r.orchestrator.clone())
            .collect();
        for orchestrator in locals {
            let _ = self.update_local(&orchestrator, now_ms, |_| ());
        }
    }

    /// Drops records of other observers whose version is older than
    /// `max_age_ms` (their writer stopped refreshing them: gone or partitioned
    /// for long). Local records are kept. Returns how many were dropped.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(max_age_ms);
        let stale: Vec<(OrchestratorId, NodeId)> = self
            .records()
            .filter(|r| r.observer != self.local && r.version.wall_ms < cutoff)
            .map(|r| (r.orchestrator.clone(), r.observer.clone()))
            .collect();
        for (orchestrator, observer) in &stale {
            self.remove(orchestrator, observer);
        }
        stale.len()
    }

    // ---- blocklist ----

    /// Blocks an orchestrator cluster-wide (effective on every node once the
    /// blocklist state has been merged there).
    pub fn block(&mut self, orchestrator: OrchestratorId) -> Result<(), ViewError> {
        if self.blocklist.contains(&orchestrator).val {
            return Ok(());
        }
        if self.blocklist.read().val.len() >= MAX_BLOCKLIST {
            return Err(ViewError::BlocklistTooLarge);
        }
        let ctx = self.blocklist.read_ctx().derive_add_ctx(self.local.clone());
        let op = self.blocklist.add(orchestrator, ctx);
        self.blocklist.apply(op);
        self.blocklist_dirty = true;
        Ok(())
    }

    /// Removes an orchestrator from the blocklist (a concurrent block on
    /// another node wins).
    pub fn unblock(&mut self, orchestrator: &OrchestratorId) {
        let read = self.blocklist.contains(orchestrator);
        if !read.val {
            return;
        }
        let op = self
            .blocklist
            .rm(orchestrator.clone(), read.derive_rm_ctx());
        self.blocklist.apply(op);
        self.blocklist_dirty = true;
    }

    /// Whether the orchestrator is blocked.
    pub fn is_blocked(&self, orchestrator: &OrchestratorId) -> bool {
        self.blocklist.contains(orchestrator).val
    }

    /// The blocked orchestrators, sorted.
    pub fn blocked(&self) -> Vec<OrchestratorId> {
        let mut list: Vec<_> = self.blocklist.read().val.into_iter().collect();
        list.sort();
        list
    }

    /// The blocklist CRDT state (to gossip).
    pub fn blocklist(&self) -> &Blocklist {
        &self.blocklist
    }

    /// Whether the blocklist changed locally since the last call.
    pub fn take_blocklist_dirty(&mut self) -> bool {
        std::mem::take(&mut self.blocklist_dirty)
    }

    /// Merges a peer's blocklist state.
    pub fn merge_blocklist(&mut self, other: Blocklist) -> Result<(), ViewError> {
        if other.read().val.len() > MAX_BLOCKLIST {
            return Err(ViewError::BlocklistTooLarge);
        }
        self.blocklist
            .validate_merge(&other)
            .map_err(|e| ViewError::BlocklistConflict(e.to_string()))?;
        self.blocklist.merge(other);
        Ok(())
    }

    /// `[BLOCKLIST_FORMAT_VERSION] ++ postcard(blocklist)`.
    pub fn encode_blocklist(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = vec![BLOCKLIST_FORMAT_VERSION];
        let body = postcard::to_allocvec(&self.blocklist)
            .map_err(|e| RecordError::Codec(e.to_string()))?;
        out.extend_from_slice(&body);
        if out.len() > MAX_BLOCKLIST_BYTES {
            return Err(RecordError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decodes a blocklist state from a peer (bounded; never panics).
    pub fn decode_blocklist(bytes: &[u8]) -> Result<Blocklist, RecordError> {
        if bytes.len() > MAX_BLOCKLIST_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let (&format, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        if format != BLOCKLIST_FORMAT_VERSION {
            return Err(RecordError::UnknownVersion(format));
        }
        let (list, rest): (Blocklist, _) =
            postcard::take_from_bytes(body).map_err(|e| RecordError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RecordError::TrailingBytes(rest.len()));
        }
        Ok(list)
    }

    // ---- read side ----

    /// An immutable aggregate of the view at `now_ms` for routing, the API
    /// and dashboards. Summarizes only the orchestrators whose records
    /// changed since the last snapshot (or whose summary is older than
    /// [`SUMMARY_REUSE_MS`]); the rest is reused, so the cost is
    /// O(changed records + orchestrators). Still: build it when the view
    /// changes (or every few ms), not per pick.
    pub fn snapshot(&self, now_ms: u64) -> ViewSnapshot {
        let blocked = self.blocked();
        let regions: Vec<RegionId> = self.region_records.keys().cloned().collect();
        let mut guard = self.cache.0.lock().unwrap_or_else(|p| p.into_inner());
        let cache = &mut *guard;
        if cache.regions != regions || cache.blocked != blocked {
            // Every summary depends on both.
            cache.parts.clear();
            cache.index = None;
            cache.regions = regions.clone();
            cache.blocked = blocked.clone();
        }
        if cache.parts.len() != self.records.len()
            || cache
                .parts
                .keys()
                .zip(self.records.keys())
                .any(|(a, b)| a != b)
        {
            cache.parts.retain(|id, _| self.records.contains_key(id));
            cache.index = None;
        }
        let fresh = |(part, valid): &(snapshot::Part, bool)| {
            *valid && part.built_at_ms <= now_ms && now_ms - part.built_at_ms < SUMMARY_REUSE_MS
        };
        let build = |id: &OrchestratorId, per: &BTreeMap<NodeId, ObservationRecord>| {
            let group: Vec<&ObservationRecord> = per.values().collect();
            snapshot::Part::build(
                now_ms,
                Some(&self.local),
                Some(&self.local_region),
                id.clone(),
                &group,
                &regions,
                &blocked,
            )
        };
        if cache.parts.len() == self.records.len() {
            // The same ids (the cache holds no others, see above) in the
            // same order: walk both at once instead of looking each up.
            for ((id, per), (_, entry)) in self.records.iter().zip(cache.parts.iter_mut()) {
                if !fresh(entry) {
                    *entry = (build(id, per), true);
                }
            }
        } else {
            for (id, per) in &self.records {
                if cache.parts.get(id).is_some_and(fresh) {
                    continue;
                }
                let part = build(id, per);
                match cache.parts.get_mut(id) {
                    Some(entry) => *entry = (part, true),
                    None => {
                        cache.parts.insert(id.clone(), (part, true));
                        cache.index = None;
                    }
                }
            }
        }
        let snap = snapshot::assemble(
            now_ms,
            regions,
            blocked,
            cache.parts.values().map(|(part, _)| part),
            cache.index.clone(),
        );
        cache.index = Some(snap.index_arc());
        snap
    }
}

/// Highest version wins; equal versions with different contents are ordered
/// by their encoding, so every replica makes the same choice.
fn newer(candidate: &ObservationRecord, existing: &ObservationRecord) -> bool {
    match candidate.version.cmp(&existing.version) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            if candidate == existing {
                return false;
            }
            let a = postcard::to_allocvec(candidate).unwrap_or_default();
            let b = postcard::to_allocvec(existing).unwrap_or_default();
            a > b
        }
    }
}

#[cfg(test)]
mod tests;
