//! The node's side of the shared view: this node's observations go into the
//! mesh-core [`View`], records from other nodes are merged into it, and
//! routing reads snapshots of it. With a mesh, records travel as mesh
//! records (`obs/<orchestrator>`, `blocklist`); without one, the view is
//! simply local. With a mesh, jobs in flight are also shared directly
//! ([`crate::load`]) and routing counts every node's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use api::admin::{Event, EventKind, EventRing};
use mesh::{Member, MemberState, MeshHandle};
use mesh_core::view::{ErrorClass as ObservedError, ObservationRecord, View, ViewSnapshot};
use mesh_core::{
    EjectionPolicy, LocalState, NodeId, OrchestratorId, OrchestratorInfo, Pipeline, RegionId,
};
use tokio::sync::{Notify, watch};

/// How long a remote observer's record may stay unchanged before it is
/// dropped; owners re-stamp theirs every [`REFRESH_LOCAL_EVERY`], so only
/// records of nodes that are gone for good expire.
const RECORD_MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// How often this node re-stamps its own records.
const REFRESH_LOCAL_EVERY: Duration = Duration::from_secs(60);
/// Shortest time between two publication rounds. Small against the 250 ms
/// propagation target, large against the per-job change rate under load.
const PUBLISH_COALESCE: Duration = Duration::from_millis(50);
/// Record key prefix for observations.
const OBSERVATION_KEY_PREFIX: &str = "obs/";
/// Record key of the blocklist.
const BLOCKLIST_KEY: &str = "blocklist";
/// Clock drift tolerated from peers' hybrid logical clocks.
const MAX_DRIFT_MS: u64 = mesh_core::hlc::DEFAULT_MAX_DRIFT_MS;

/// Shared handle to the node's view. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    region: RegionId,
    view: Mutex<View>,
    snapshot: RwLock<Option<ViewSnapshot>>,
    changed: Notify,
    mesh: Option<MeshHandle>,
    /// Jobs in flight shared with peers (with a mesh only).
    load: Option<crate::load::LoadSharing>,
    members: Option<watch::Receiver<Vec<Member>>>,
    events: Arc<EventRing>,
    metrics: api::Metrics,
    policy: EjectionPolicy,
    /// [`NodeConfig::routing_digest`](crate::config::NodeConfig::routing_digest)
    /// of the configuration in force (empty until set).
    routing_config: RwLock<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A view with no mesh (single node).
    pub fn standalone(node: NodeId, region: RegionId, metrics: api::Metrics) -> Self {
        Self::build(node, region, None, None, metrics)
    }

    /// A view replicated over `mesh`. Starts the replication tasks; they stop
    /// when `shutdown` flips to true.
    pub fn with_mesh(
        mesh: MeshHandle,
        metrics: api::Metrics,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let load = crate::load::LoadSharing::start(mesh.clone(), metrics.clone(), shutdown.clone());
        let cluster = Self::build(
            mesh.node().clone(),
            mesh.region().clone(),
            Some(mesh),
            Some(load),
            metrics,
        );
        tokio::spawn(cluster.clone().publish_loop(shutdown.clone()));
        tokio::spawn(cluster.clone().receive_loop(shutdown.clone()));
        tokio::spawn(cluster.clone().maintenance_loop(shutdown.clone()));
        tokio::spawn(cluster.clone().mesh_stats_loop(shutdown));
        cluster
    }

    fn build(
        node: NodeId,
        region: RegionId,
        mesh: Option<MeshHandle>,
        load: Option<crate::load::LoadSharing>,
        metrics: api::Metrics,
    ) -> Self {
        let members = mesh.as_ref().map(MeshHandle::subscribe_members);
        Self {
            inner: Arc::new(Inner {
                view: Mutex::new(View::new(node.clone(), region.clone(), MAX_DRIFT_MS)),
                node,
                region,
                snapshot: RwLock::new(None),
                changed: Notify::new(),
                mesh,
                load,
                members,
                events: Arc::new(EventRing::default()),
                metrics,
                policy: EjectionPolicy::default(),
                routing_config: RwLock::new(String::new()),
            }),
        }
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// This node's region.
    pub fn region(&self) -> &RegionId {
        &self.inner.region
    }

    /// Jobs in flight shared with peers, when the node runs in a cluster.
    pub fn load_sharing(&self) -> Option<&crate::load::LoadSharing> {
        self.inner.load.as_ref()
    }

    /// The mesh, when the node runs in a cluster.
    pub fn mesh(&self) -> Option<&MeshHandle> {
        self.inner.mesh.as_ref()
    }

    /// The current snapshot (rebuilt after any change, at most once per read).
    pub fn snapshot(&self) -> ViewSnapshot {
        if let Some(snapshot) = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return snapshot.clone();
        }
        let snapshot = self.view(|view| view.snapshot(unix_ms()));
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        snapshot
    }

    /// Routing's view of this node: region, time, in-flight counts and the
    /// alive nodes of every region that jobs may be forwarded to (see
    /// [`forwarding_nodes`]).
    pub fn local_state(&self, in_flight: BTreeMap<OrchestratorId, u32>) -> LocalState {
        let mut local = LocalState::new(self.inner.region.clone(), unix_ms());
        local.in_flight = in_flight.into_iter().collect();
        local.nodes_by_region = forwarding_nodes(&self.routing_config(), self.members());
        local
    }

    /// [`Self::local_state`] from the registry's jobs in flight: counts and
    /// the start of the oldest job per orchestrator (latency evidence). In a
    /// cluster the counts include every peer's announced jobs in flight
    /// (`in_flight_includes_peers`).
    pub fn local_state_from(&self, registry: &crate::registry::Registry) -> LocalState {
        let mut local = self.local_state(registry.in_flight());
        local.in_flight_since_ms = registry.in_flight_since().into_iter().collect();
        if let Some(load) = &self.inner.load {
            load.add_peer_totals(&mut local.in_flight);
            local.in_flight_includes_peers = true;
        }
        local
    }

    /// Records the digest of the routing configuration in force and
    /// publishes it to the peers, who compare it with theirs.
    pub async fn set_routing_config(&self, digest: String) {
        if let Some(mesh) = &self.inner.mesh {
            mesh.set_routing_config(&digest).await;
        }
        *self
            .inner
            .routing_config
            .write()
            .unwrap_or_else(|p| p.into_inner()) = digest;
    }

    /// The digest of the routing configuration in force (empty until set).
    pub fn routing_config(&self) -> String {
        self.inner
            .routing_config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Cluster members (empty without a mesh).
    pub fn members(&self) -> Vec<Member> {
        self.inner
            .members
            .as_ref()
            .map(|m| m.borrow().clone())
            .unwrap_or_default()
    }

    /// A job succeeded on `orchestrator`.
    pub fn record_success(
        &self,
        orchestrator: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
        latency_ms: u32,
    ) {
        self.change(|view, now| {
            view.local_success(orchestrator, pipeline, model_id, latency_ms, now)
                .map(|_| ())
        });
    }

    /// A job failed on `orchestrator`; returns the ejection's end if this
    /// failure ejected it.
    pub fn record_failure(
        &self,
        orchestrator: &OrchestratorId,
        pipeline: Pipeline,
        model_id: &str,
        class: ObservedError,
    ) -> Option<u64> {
        let policy = self.inner.policy;
        let ejected = self
            .change(|view, now| {
                view.local_failure(orchestrator, pipeline, model_id, class, &policy, now)
            })
            .flatten();
        self.failure_recorded(orchestrator, ejected, &format!("after {class:?}"));
        ejected
    }

    /// Counts a recorded failure and, if it ejected the orchestrator, the
    /// ejection (metric and event).
    fn failure_recorded(&self, orchestrator: &OrchestratorId, ejected: Option<u64>, cause: &str) {
        let now = unix_ms();
        self.inner
            .metrics
            .record_orchestrator_failure(orchestrator, now);
        if let Some(until) = ejected {
            self.inner.metrics.record_ejection(orchestrator);
            self.event(
                EventKind::Ejected,
                Some(orchestrator),
                format!("ejected for {} ms {cause}", until.saturating_sub(now)),
            );
        }
    }

    /// Discovery fetched `orchestrator`'s info in `rtt_ms`.
    pub fn record_info(&self, orchestrator: &OrchestratorId, info: OrchestratorInfo, rtt_ms: u32) {
        self.change(|view, now| view.local_info(orchestrator, info, Some(rtt_ms), now));
    }

    /// Discovery could not reach `orchestrator`.
    pub fn record_unreachable(&self, orchestrator: &OrchestratorId, class: ObservedError) {
        let policy = self.inner.policy;
        let ejected = self
            .change(|view, now| view.local_probe_failure(orchestrator, class, &policy, now))
            .flatten();
        self.failure_recorded(
            orchestrator,
            ejected,
            &format!("after GetOrchestrator failed ({class:?})"),
        );
    }

    /// Blocks an orchestrator cluster-wide.
    pub fn block(&self, orchestrator: OrchestratorId) -> Result<(), String> {
        let result = self
            .change(|view, _| view.block(orchestrator.clone()))
            .ok_or_else(|| "blocklist is full".to_owned());
        if result.is_ok() {
            self.event(
                EventKind::Blocked,
                Some(&orchestrator),
                "blocked through the admin API".into(),
            );
        }
        result
    }

    /// Unblocks an orchestrator cluster-wide.
    pub fn unblock(&self, orchestrator: &OrchestratorId) {
        self.change(|view, _| {
            view.unblock(orchestrator);
            Ok::<(), mesh_core::view::ViewError>(())
        });
        self.event(
            EventKind::Unblocked,
            Some(orchestrator),
            "unblocked through the admin API".into(),
        );
    }

    /// The blocked orchestrators.
    pub fn blocked(&self) -> Vec<OrchestratorId> {
        self.view(|view| view.blocked())
    }

    /// Records an event for operators (admin API, dashboard).
    pub fn event(&self, kind: EventKind, orchestrator: Option<&OrchestratorId>, message: String) {
        tracing::info!(kind = kind.as_str(), orchestrator = ?orchestrator, %message, "cluster event");
        self.inner.events.push(Event {
            at_ms: unix_ms(),
            kind,
            node: Some(self.inner.node.clone()),
            region: Some(self.inner.region.clone()),
            orchestrator: orchestrator.cloned(),
            message,
        });
    }

    /// The event log, for the admin API.
    pub fn events(&self) -> Arc<EventRing> {
        self.inner.events.clone()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &api::Metrics {
        &self.inner.metrics
    }

    fn view<R>(&self, read: impl FnOnce(&View) -> R) -> R {
        read(&self.inner.view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies a local change, invalidates the snapshot and wakes the publisher.
    fn change<R, E: std::fmt::Display>(
        &self,
        apply: impl FnOnce(&mut View, u64) -> Result<R, E>,
    ) -> Option<R> {
        let result = {
            let mut view = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
            apply(&mut view, unix_ms())
        };
        self.invalidate();
        self.inner.changed.notify_one();
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(%error, "view change refused");
                None
            }
        }
    }

    fn invalidate(&self) {
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Publishes changed local records and the blocklist as mesh records.
    async fn publish_loop(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mesh) = self.inner.mesh.clone() else {
            return;
        };
        loop {
            let (records, blocklist) = {
                let mut view = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
                let dirty = view.take_dirty();
                let records: Vec<(String, Vec<u8>)> = dirty
                    .iter()
                    .filter_map(|id| {
                        let record = view.local_record(id)?;
                        match record.encode() {
                            Ok(bytes) => Some((format!("{OBSERVATION_KEY_PREFIX}{id}"), bytes)),
                            Err(error) => {
                                tracing::warn!(orchestrator = %id, %error, "observation record not published");
                                None
                            }
                        }
                    })
                    .collect();
                let blocklist = if view.take_blocklist_dirty() {
                    view.encode_blocklist().ok()
                } else {
                    None
                };
                (records, blocklist)
            };
            for (key, bytes) in records {
                match mesh.publish_record(&key, &bytes).await {
                    // Shutting down: the last observations go nowhere, as meant.
                    Ok(()) | Err(mesh::RecordError::ShutDown) => {}
                    Err(error) => tracing::warn!(%key, %error, "cannot publish record"),
                }
            }
            if let Some(bytes) = blocklist
                && let Err(error) = mesh.publish_record(BLOCKLIST_KEY, &bytes).await
            {
                {
                    tracing::warn!(%error, "cannot publish the blocklist");
                }
            }
            tokio::select! {
                _ = self.inner.changed.notified() => {}
                _ = shutdown.changed() => return,
            }
            // Coalesce: a busy orchestrator's record changes with every job;
            // publishing at most every PUBLISH_COALESCE sends each changed
            // record once per round instead of once per job.
            tokio::time::sleep(PUBLISH_COALESCE).await;
        }
    }

    /// Merges every record the mesh delivers (our own echoes included: they
    /// move the clock past versions written before a restart).
    async fn receive_loop(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mesh) = self.inner.mesh.clone() else {
            return;
        };
        follow_records(&mesh, &mut shutdown, |record| self.merge_record(record)).await;
    }

    fn merge_record(&self, record: &mesh::Record) {
        let now = unix_ms();
        if record.key == BLOCKLIST_KEY {
            match View::decode_blocklist(&record.value) {
                Ok(blocklist) => {
                    let mut view = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(error) = view.merge_blocklist(blocklist) {
                        tracing::warn!(origin = %record.origin, %error, "blocklist refused");
                    }
                }
                Err(error) => {
                    tracing::warn!(origin = %record.origin, %error, "undecodable blocklist")
                }
            }
        } else if record.key.starts_with(OBSERVATION_KEY_PREFIX) {
            match ObservationRecord::decode(&record.value) {
                Ok(observation) if observation.observer == record.origin => {
                    let mut view = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(error) = view.merge(observation, now) {
                        tracing::debug!(origin = %record.origin, %error, "observation refused");
                    }
                }
                Ok(observation) => tracing::warn!(
                    origin = %record.origin,
                    observer = %observation.observer,
                    "observation written by another node than its origin; ignored"
                ),
                Err(error) => {
                    tracing::warn!(origin = %record.origin, %error, "undecodable observation")
                }
            }
        } else {
            return;
        }
        self.invalidate();
    }

    /// Copies the mesh's byte counters into the node's metrics every second,
    /// and compares the peers' routing configuration with ours.
    async fn mesh_stats_loop(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mesh) = self.inner.mesh.clone() else {
            return;
        };
        let (mut sent, mut received) = (0u64, 0u64);
        let mut mismatched: Vec<NodeId> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let stats = mesh.stats();
            let now_sent = stats.gossip_bytes_sent_total + stats.push_bytes_sent_total;
            let now_received = stats.gossip_bytes_received_total + stats.push_bytes_received_total;
            let metrics = &self.inner.metrics;
            metrics
                .record_gossip_bytes(api::metrics::Direction::Out, now_sent.saturating_sub(sent));
            metrics.record_gossip_bytes(
                api::metrics::Direction::In,
                now_received.saturating_sub(received),
            );
            (sent, received) = (now_sent, now_received);

            let own = self.routing_config();
            let now_mismatched = mismatched_peers(&own, &mesh.members());
            metrics.set_config_mismatched_peers(now_mismatched.len());
            if now_mismatched != mismatched {
                let peers: Vec<&str> = now_mismatched.iter().map(NodeId::as_str).collect();
                if now_mismatched.is_empty() {
                    tracing::info!(routing_config = %own, "every live peer runs our routing configuration again");
                } else {
                    tracing::warn!(routing_config = %own, ?peers, "live peers run another routing configuration ([[offer]], [pools], [pricing], [[tenants]], [[rate_cards]]): jobs forwarded to them run under their rules");
                }
                mismatched = now_mismatched;
            }
        }
    }

    async fn maintenance_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REFRESH_LOCAL_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = unix_ms();
                    {
                        let mut view = self.inner.view.lock().unwrap_or_else(|p| p.into_inner());
                        view.refresh_local(now);
                        view.expire(now, RECORD_MAX_AGE_MS);
                    }
                    self.invalidate();
                    self.inner.changed.notify_one();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Maps the client's error to what the view records about the orchestrator.
pub fn observed_error(error: &livepeer::OrchestratorError) -> ObservedError {
    use livepeer::OrchestratorError as E;
    match error {
        E::Connect(message) if message.to_ascii_lowercase().contains("tls") => ObservedError::Tls,
        E::Connect(_) | E::InvalidUrl { .. } => ObservedError::Connect,
        E::ConnectTimeout(_) => ObservedError::ConnectTimeout,
        E::Timeout { .. } => ObservedError::Timeout,
        E::Transport(_) => ObservedError::Connect,
        E::Http { status, body } => {
            let body = body.to_ascii_lowercase();
            if body.contains("insufficient capacity") {
                ObservedError::Busy
            } else if body.contains("returned 400")
                || (*status >= 400 && *status < 500 && *status != 403)
            {
                ObservedError::Client
            } else if *status >= 500 {
                ObservedError::Server
            } else {
                ObservedError::Other
            }
        }
        E::Grpc { .. } => ObservedError::Server,
        E::BodyTooLarge { .. } | E::InvalidReply(_) | E::DataUri(_) => ObservedError::BadResponse,
        E::Payment(_) => ObservedError::Other,
    }
}

/// Hands `merge` every record the mesh holds now and then every record it
/// delivers, until `shutdown` changes or the mesh stops. After a lag (the
/// bounded broadcast overflowed) it re-reads every record: merges are
/// idempotent, so nothing is lost. The one receive loop of every
/// subsystem that replicates records (view, tenancy, benchmarks).
pub async fn follow_records(
    mesh: &MeshHandle,
    shutdown: &mut watch::Receiver<bool>,
    merge: impl Fn(&mesh::Record),
) {
    let mut records = mesh.subscribe_records();
    for record in mesh.records() {
        merge(&record);
    }
    loop {
        tokio::select! {
            received = records.recv() => match received {
                Ok(record) => merge(&record),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "record stream lagged; re-reading all records");
                    for record in mesh.records() {
                        merge(&record);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// The alive peers of every region, as forwarding targets. A forwarded job
/// runs under the receiver's routing configuration, so where some of a
/// region's alive peers publish the same digest as `own`, only those are
/// listed; a region where none does keeps all of its alive peers (a job
/// run under other rules beats a job not run).
pub(crate) fn forwarding_nodes(own: &str, members: Vec<Member>) -> BTreeMap<RegionId, Vec<NodeId>> {
    let mut by_region: BTreeMap<RegionId, Vec<(NodeId, bool)>> = BTreeMap::new();
    for member in members {
        if member.state == MemberState::Alive
            && !member.is_self
            && let Some(region) = member.region
        {
            let same = !own.is_empty() && member.routing_config.as_deref() == Some(own);
            by_region
                .entry(region)
                .or_default()
                .push((member.node, same));
        }
    }
    by_region
        .into_iter()
        .map(|(region, nodes)| {
            let any_same = nodes.iter().any(|(_, same)| *same);
            let nodes = nodes
                .into_iter()
                .filter(|(_, same)| *same || !any_same)
                .map(|(node, _)| node)
                .collect();
            (region, nodes)
        })
        .collect()
}

/// Live peers (alive or suspect) that published a routing configuration
/// digest other than `own`, in member order. Peers that published none
/// (starting, or an older version) are not counted; nothing is while `own`
/// is unset.
pub(crate) fn mismatched_peers(own: &str, members: &[Member]) -> Vec<NodeId> {
    if own.is_empty() {
        return Vec::new();
    }
    members
        .iter()
        .filter(|m| !m.is_self && matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .filter(|m| m.routing_config.as_deref().is_some_and(|d| d != own))
        .map(|m| m.node.clone())
        .collect()
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use livepeer::OrchestratorError as E;

    fn member(name: &str, state: MemberState, routing_config: Option<&str>) -> Member {
        Member {
            node: NodeId::new(name).unwrap(),
            region: None,
            generation: 1,
            state,
            mesh_addr: "127.0.0.1:1".parse().unwrap(),
            api_url: None,
            admin_url: None,
            version: None,
            load: None,
            routing_config: routing_config.map(str::to_owned),
            last_heard: None,
            is_self: name == "self",
        }
    }

    #[test]
    fn forwarding_prefers_peers_with_our_routing_configuration() {
        let in_region = |region: &str, name: &str, state, digest| Member {
            region: Some(RegionId::new(region).unwrap()),
            ..member(name, state, digest)
        };
        let members = vec![
            in_region("fra", "self", MemberState::Alive, Some("aaaa")),
            in_region("fra", "fra-2", MemberState::Alive, Some("aaaa")),
            in_region("lax", "lax-1", MemberState::Alive, Some("bbbb")),
            in_region("lax", "lax-2", MemberState::Alive, Some("aaaa")),
            in_region("lax", "lax-3", MemberState::Suspect, Some("aaaa")),
            in_region("sin", "sin-1", MemberState::Alive, Some("bbbb")),
            in_region("sin", "sin-2", MemberState::Alive, None),
        ];
        let names = |own: &str| -> Vec<(String, Vec<String>)> {
            forwarding_nodes(own, members.clone())
                .into_iter()
                .map(|(r, nodes)| {
                    (
                        r.to_string(),
                        nodes.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect()
        };
        let strings = |v: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            v.iter()
                .map(|(r, n)| (r.to_string(), n.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        // lax: only the node that runs our rules; sin: none does, so both.
        assert_eq!(
            names("aaaa"),
            strings(&[
                ("fra", &["fra-2"]),
                ("lax", &["lax-2"]),
                ("sin", &["sin-1", "sin-2"])
            ])
        );
        // Before our own digest is known, every alive peer.
        assert_eq!(
            names(""),
            strings(&[
                ("fra", &["fra-2"]),
                ("lax", &["lax-1", "lax-2"]),
                ("sin", &["sin-1", "sin-2"])
            ])
        );
    }

    #[test]
    fn live_peers_with_another_routing_configuration_are_mismatched() {
        let members = [
            member("self", MemberState::Alive, Some("aaaa")),
            member("same", MemberState::Alive, Some("aaaa")),
            member("other", MemberState::Alive, Some("bbbb")),
            member("slow", MemberState::Suspect, Some("cccc")),
            member("dead", MemberState::Dead, Some("bbbb")),
            member("gone", MemberState::Left, Some("bbbb")),
            member("old-version", MemberState::Alive, None),
        ];
        let names: Vec<String> = mismatched_peers("aaaa", &members)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["other", "slow"]);
        assert!(
            mismatched_peers("", &members).is_empty(),
            "nothing to compare with before our own digest is set"
        );
    }

    #[test]
    fn connection_failures_keep_what_they_say_about_the_path() {
        // Refused: the process is gone (ejects everywhere). Timed out: the
        // host or only the path from here is down (ejects in this region).
        assert_eq!(
            observed_error(&E::Connect("connection refused".into())),
            ObservedError::Connect
        );
        assert_eq!(
            observed_error(&E::ConnectTimeout("deadline has elapsed".into())),
            ObservedError::ConnectTimeout
        );
        assert_eq!(
            observed_error(&E::Connect("tls handshake eof".into())),
            ObservedError::Tls
        );
        assert_eq!(
            observed_error(&E::Timeout { timeout_ms: 10 }),
            ObservedError::Timeout
        );
        assert!(ObservedError::ConnectTimeout.is_path_local());
        assert!(!ObservedError::Connect.is_path_local());
        assert!(ObservedError::Timeout.is_path_local());
        assert!(!ObservedError::Tls.is_path_local());
    }
}
