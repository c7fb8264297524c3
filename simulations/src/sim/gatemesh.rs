//! gatemesh in the simulator: every node holds a real `mesh-core` [`View`],
//! records its own outcomes and discovery replies in it, gossips its changed
//! records, merges its peers', and picks with the real `mesh-core` routing
//! over a [`ViewSnapshot`]. This module only translates between simulator
//! indices and `mesh-core` ids; it decides nothing itself.

use std::collections::BTreeMap;
use std::rc::Rc;

use mesh_core::capability::Capabilities;
use mesh_core::load::{LoadAnnouncement, LoadBoard, LoadLedger};
use mesh_core::route::{EjectionPolicy, JobRequirements, LocalState, RouteConfig, pick_with};
use mesh_core::view::{ErrorClass, ObservationRecord, View, ViewSnapshot};
use mesh_core::{
    CapabilityPrice, GpuInfo, NodeId, OrchestratorId, OrchestratorInfo, Pipeline, RegionId,
    WeiPrice,
};

use super::model::{NodeIdx, OrchIdx, SimTime};
use super::policy::{
    AttemptReport, FailureKind, PickDecision, PickInput, ProbeResult, RoutingPolicy,
};
use super::rng::SimRng;
use super::scenario::Plan;

/// Virtual time zero as unix milliseconds (2026-01-01), so HLC versions look
/// like real ones.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// The pipeline every simulated job uses.
pub const PIPELINE: Pipeline = Pipeline::TextToImage;

/// Knobs of the node around the view (not of routing itself).
#[derive(Debug, Clone, PartialEq)]
pub struct GatemeshParams {
    /// Every node sends `GetOrchestrator` to every orchestrator this often.
    pub probe_interval_ms: f64,
    /// Every node probes the orchestrators it has ejected this often (the
    /// node's health-probe loop; an answer lifts an "unreachable" ejection).
    pub ejected_probe_interval_ms: f64,
    /// A node rebuilds its snapshot at most this often (and only when the view changed).
    pub snapshot_interval_ms: u64,
    /// Local records are re-stamped this often so peers keep them.
    pub refresh_local_ms: u64,
    /// Peers' records older than this are dropped.
    pub expire_after_ms: u64,
    /// Remote HLCs more than this ahead are refused.
    pub max_drift_ms: u64,
    /// Failed attempts on the client's node before the job is forwarded
    /// to a node of another region (the node's `[jobs] max_attempts`,
    /// default 5).
    pub forward_after_attempts: usize,
    /// Routing knobs, passed to `mesh_core::route::pick_with` unchanged
    /// (default: `RouteConfig::default()`, what `pick` uses in production).
    pub route: RouteConfig,
}

impl Default for GatemeshParams {
    fn default() -> Self {
        Self {
            probe_interval_ms: 5_000.0,
            ejected_probe_interval_ms: 1_000.0,
            snapshot_interval_ms: 10,
            refresh_local_ms: 10_000,
            expire_after_ms: 30_000,
            max_drift_ms: mesh_core::hlc::DEFAULT_MAX_DRIFT_MS,
            forward_after_attempts: 5,
            route: RouteConfig::default(),
        }
    }
}

/// What gatemesh nodes send each other.
#[derive(Debug)]
pub enum GmMessage {
    /// Changed observation records (one publication).
    Records(Vec<ObservationRecord>),
    /// Jobs in flight, sent at once (the mesh's load stream; the sender is
    /// the stream's authenticated peer).
    Load {
        /// The sending node.
        from: NodeIdx,
        /// Its counts.
        announcement: LoadAnnouncement,
    },
}

#[derive(Debug)]
struct GmNode {
    view: View,
    snapshot: ViewSnapshot,
    snapshot_at_ms: u64,
    changed: bool,
    last_refresh_ms: u64,
    last_expire_ms: u64,
    /// This node's attempts in flight per orchestrator.
    in_flight: Vec<u32>,
    /// Its counts, announced to peers on every change.
    ledger: LoadLedger,
    /// Peers' announced counts.
    board: LoadBoard,
    /// Start times (virtual µs) of this node's attempts in flight, per
    /// orchestrator (what a node's job table knows).
    starts: Vec<Vec<u64>>,
}

/// The gatemesh policy: real view, real routing.
#[derive(Debug)]
pub struct GatemeshPolicy {
    params: GatemeshParams,
    ejection: EjectionPolicy,
    model_id: String,
    price_cap_wei_per_unit: i64,
    node_ids: Vec<NodeId>,
    region_ids: Vec<RegionId>,
    node_regions: Vec<usize>,
    orch_ids: Vec<OrchestratorId>,
    index: BTreeMap<OrchestratorId, OrchIdx>,
    gpus: Vec<&'static str>,
    nodes: Vec<GmNode>,
}

fn now_ms(now: SimTime) -> u64 {
    EPOCH_MS + now.0 / 1000
}

fn class_of(kind: FailureKind) -> ErrorClass {
    match kind {
        FailureKind::Refused | FailureKind::Reset => ErrorClass::Connect,
        FailureKind::Capacity => ErrorClass::Busy,
        // The simulator's only timeout is a connect timeout (a partition).
        FailureKind::Timeout => ErrorClass::ConnectTimeout,
    }
}

impl GatemeshPolicy {
    /// Nodes and orchestrators named after the plan's topology.
    pub fn new(plan: &Plan, params: GatemeshParams) -> Self {
        let topo = &plan.config.topology;
        let region_ids: Vec<RegionId> = topo
            .regions
            .iter()
            .map(|r| RegionId::new(r.name.clone()).unwrap_or_else(|_| unreachable_id()))
            .collect();
        let node_ids: Vec<NodeId> = topo
            .nodes
            .iter()
            .map(|n| NodeId::new(n.name.clone()).unwrap_or_else(|_| unreachable_id()))
            .collect();
        let orch_ids: Vec<OrchestratorId> = topo
            .orchestrators
            .iter()
            .map(|o| {
                OrchestratorId::parse(&format!("https://{}.sim:8935", o.name))
                    .unwrap_or_else(|_| unreachable_id())
            })
            .collect();
        let index = orch_ids
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        let node_regions: Vec<usize> = topo.nodes.iter().map(|n| n.region).collect();
        let mut policy = Self {
            params,
            ejection: EjectionPolicy::default(),
            model_id: PIPELINE.default_model_id().to_owned(),
            price_cap_wei_per_unit: plan.config.workload.price_cap_wei_per_unit,
            gpus: topo.orchestrators.iter().map(|o| o.gpu).collect(),
            nodes: Vec::new(),
            node_ids,
            region_ids,
            node_regions,
            orch_ids,
            index,
        };
        policy.nodes = (0..topo.nodes.len())
            .map(|n| policy.fresh_node(n, 0))
            .collect();
        policy
    }

    fn fresh_node(&self, node: NodeIdx, now: u64) -> GmNode {
        let view = View::new(
            self.node_ids[node].clone(),
            self.region_ids[self.node_regions[node]].clone(),
            self.params.max_drift_ms,
        );
        GmNode {
            view,
            snapshot: ViewSnapshot::empty(now),
            snapshot_at_ms: 0,
            changed: true,
            last_refresh_ms: now,
            last_expire_ms: now,
            in_flight: vec![0; self.orch_ids.len()],
            // A restarted node announces a newer generation.
            ledger: LoadLedger::new(now + 1),
            board: LoadBoard::default(),
            starts: vec![Vec::new(); self.orch_ids.len()],
        }
    }

    fn info(&self, orch: OrchIdx, price: i64, capacity: u32) -> OrchestratorInfo {
        let id = self.orch_ids[orch].clone();
        let mut capabilities = Capabilities::for_job(PIPELINE, &self.model_id, true);
        let cap = PIPELINE.capability();
        capabilities.capacities.insert(cap, capacity);
        if let Some(m) = capabilities
            .models
            .get_mut(&cap)
            .and_then(|m| m.get_mut(&self.model_id))
        {
            m.capacity = capacity;
        }
        OrchestratorInfo {
            transcoder: id.as_str().to_owned(),
            capabilities,
            prices: WeiPrice::new(price, 1)
                .map(|price| {
                    vec![CapabilityPrice {
                        capability: cap,
                        model_id: self.model_id.clone(),
                        price,
                    }]
                })
                .unwrap_or_default(),
            hardware: vec![GpuInfo {
                pipeline: PIPELINE.as_str().to_owned(),
                model_id: self.model_id.clone(),
                gpu_id: "0".to_owned(),
                name: self.gpus[orch].to_owned(),
                major: 8,
                minor: 9,
                memory_free_bytes: 8 << 30,
                memory_total_bytes: 24 << 30,
            }],
            id,
        }
    }

    fn snapshot(&mut self, node: NodeIdx, now: u64) -> ViewSnapshot {
        let n = &mut self.nodes[node];
        if n.changed && now.saturating_sub(n.snapshot_at_ms) >= self.params.snapshot_interval_ms {
            n.snapshot = n.view.snapshot(now);
            n.snapshot_at_ms = now;
            n.changed = false;
        }
        n.snapshot.clone()
    }
}

/// Ids built from the simulator's own generated names always parse.
fn unreachable_id<T>() -> T {
    panic!("simulator-generated id failed to parse")
}

impl RoutingPolicy for GatemeshPolicy {
    type Gossip = GmMessage;

    fn name(&self) -> &'static str {
        "gatemesh"
    }

    fn pick(&mut self, input: &PickInput<'_>, rng: &mut SimRng) -> PickDecision {
        let now = now_ms(input.now);
        let snapshot = self.snapshot(input.node, now);
        if snapshot.offers(PIPELINE, &self.model_id).is_empty() {
            return PickDecision::Discover;
        }
        let region = &self.region_ids[self.node_regions[input.node]];
        match self.route(&snapshot, region, input, now, rng) {
            Some(orch) => {
                let id = &self.orch_ids[orch];
                let n = &mut self.nodes[input.node];
                n.starts[orch].push(input.now.0);
                n.in_flight[orch] += 1;
                n.ledger.set(id, n.in_flight[orch]);
                PickDecision::Send(orch)
            }
            None => PickDecision::Wait,
        }
    }

    fn on_attempt_end(&mut self, node: NodeIdx, now: SimTime, report: &AttemptReport) {
        let now = now_ms(now);
        let id = &self.orch_ids[report.orch];
        let n = &mut self.nodes[node];
        let starts = &mut n.starts[report.orch];
        if let Some(i) = starts.iter().position(|&t| t == report.started.0) {
            starts.swap_remove(i);
        }
        n.in_flight[report.orch] = n.in_flight[report.orch].saturating_sub(1);
        n.ledger.set(id, n.in_flight[report.orch]);
        let result = match report.result {
            Ok(()) => n.view.local_success(
                id,
                PIPELINE,
                &self.model_id,
                report.latency_ms.round() as u32,
                now,
            ),
            Err(kind) => n
                .view
                .local_failure(
                    id,
                    PIPELINE,
                    &self.model_id,
                    class_of(kind),
                    &self.ejection,
                    now,
                )
                .map(|_| ()),
        };
        if result.is_ok() {
            n.changed = true;
        }
    }

    fn on_discovery(&mut self, node: NodeIdx, now: SimTime, results: &[ProbeResult]) {
        let now = now_ms(now);
        for r in results {
            let id = self.orch_ids[r.orch].clone();
            let outcome = match r.reply {
                Ok(reply) => {
                    let info = self.info(r.orch, reply.price_wei_per_unit, reply.capacity);
                    let same = self.nodes[node]
                        .view
                        .local_record(&id)
                        .and_then(|rec| rec.info.as_ref())
                        .is_some_and(|old| **old == info);
                    let rtt = reply.rtt_ms.round() as u32;
                    let view = &mut self.nodes[node].view;
                    if same {
                        view.local_probe(&id, rtt, now)
                    } else {
                        view.local_info(&id, info, Some(rtt), now)
                    }
                }
                Err(kind) => self.nodes[node]
                    .view
                    .local_probe_failure(&id, class_of(kind), &self.ejection, now)
                    .map(|_| ()),
            };
            if outcome.is_ok() {
                self.nodes[node].changed = true;
            }
        }
    }

    fn poll_interval_ms(&self) -> Option<f64> {
        Some(self.params.probe_interval_ms)
    }

    fn forward_after_attempts(&self) -> Option<usize> {
        Some(self.params.forward_after_attempts)
    }

    fn gossips(&self) -> bool {
        true
    }

    fn probe_interval_ms(&self) -> Option<f64> {
        Some(self.params.ejected_probe_interval_ms)
    }

    fn probe_targets(&mut self, node: NodeIdx, now: SimTime) -> Vec<OrchIdx> {
        let now = now_ms(now);
        let view = &self.nodes[node].view;
        view.local_records()
            .filter(|r| r.is_ejected(now))
            .filter_map(|r| self.index.get(&r.orchestrator).copied())
            .collect()
    }

    fn tick(&mut self, node: NodeIdx, now: SimTime) {
        let now = now_ms(now);
        let params = self.params.clone();
        let n = &mut self.nodes[node];
        if now.saturating_sub(n.last_refresh_ms) >= params.refresh_local_ms {
            n.view.refresh_local(now);
            n.last_refresh_ms = now;
        }
        if now.saturating_sub(n.last_expire_ms) >= 1_000 {
            if n.view.expire(now, params.expire_after_ms) > 0 {
                n.changed = true;
            }
            n.board.expire(now);
            n.last_expire_ms = now;
        }
    }

    fn has_changes(&self, node: NodeIdx) -> bool {
        self.nodes[node].view.has_dirty()
    }

    fn publish(&mut self, node: NodeIdx, _now: SimTime) -> Option<Rc<Self::Gossip>> {
        let n = &mut self.nodes[node];
        let dirty = n.view.take_dirty();
        if dirty.is_empty() {
            return None;
        }
        let records: Vec<ObservationRecord> = dirty
            .iter()
            .filter_map(|id| n.view.local_record(id).cloned())
            .collect();
        Some(Rc::new(GmMessage::Records(records)))
    }

    fn direct_message(&mut self, node: NodeIdx, now: SimTime) -> Option<Rc<Self::Gossip>> {
        let announcement = self.nodes[node].ledger.announcement(now_ms(now))?;
        Some(Rc::new(GmMessage::Load {
            from: node,
            announcement,
        }))
    }

    fn on_gossip(&mut self, node: NodeIdx, now: SimTime, msg: &Self::Gossip) {
        let now = now_ms(now);
        match msg {
            GmMessage::Records(records) => {
                let n = &mut self.nodes[node];
                for record in records {
                    if n.view.merge(record.clone(), now).is_ok() {
                        n.changed = true;
                    }
                }
            }
            GmMessage::Load { from, announcement } => {
                let from = &self.node_ids[*from];
                // Announcements are built by the simulator's own ledgers.
                let _ = self.nodes[node].board.apply(from, announcement, now);
            }
        }
    }

    fn on_node_restart(&mut self, node: NodeIdx, now: SimTime) {
        self.nodes[node] = self.fresh_node(node, now_ms(now));
    }
}

impl GatemeshPolicy {
    /// The routing decision: `mesh_core::route::pick` over this node's
    /// snapshot, with the job's already-tried orchestrators excluded; the
    /// plan's first attempt is sent. (Each retry re-plans with a fresh
    /// snapshot, which is what a node does after a failure.)
    fn route(
        &self,
        snapshot: &ViewSnapshot,
        region: &RegionId,
        input: &PickInput<'_>,
        now: u64,
        rng: &mut SimRng,
    ) -> Option<OrchIdx> {
        let mut job = JobRequirements::new(PIPELINE, self.model_id.clone());
        job.max_price = WeiPrice::new(self.price_cap_wei_per_unit, 1).ok();
        job.exclude = input
            .tried
            .iter()
            .map(|&o| self.orch_ids[o].clone())
            .collect();
        let mut local = LocalState::new(region.clone(), now);
        let n = &self.nodes[input.node];
        let starts = &n.starts;
        for (orch, &count) in input.inflight.iter().enumerate() {
            if count > 0 {
                local.in_flight.insert(self.orch_ids[orch].clone(), count);
            }
            if let Some(&oldest) = starts[orch].iter().min() {
                local
                    .in_flight_since_ms
                    .insert(self.orch_ids[orch].clone(), now_ms(SimTime(oldest)));
            }
        }
        n.board.add_to(&mut local.in_flight);
        local.in_flight_includes_peers = true;
        let plan = pick_with(&job, snapshot, &local, &self.params.route, rng);
        let first = plan.attempts.first()?;
        self.index.get(&first.orchestrator).copied()
    }
}
