//! The seam between the simulator and a routing policy.
//!
//! A policy holds the routing state of *every* node (each node's part is
//! private to that node: nothing crosses between nodes except through
//! [`RoutingPolicy::Gossip`] messages, which the engine delays, loses and
//! partitions like the real mesh). The engine owns ground truth and never
//! shows it to a policy: a policy learns only from discovery replies
//! (`GetOrchestrator`), the outcomes of its own attempts and gossip. The one
//! exception is the late-truth bound ([`super::bound`]), a yardstick rather
//! than a gateway, which asks for [`PickInput::truth`].

use std::rc::Rc;

use super::engine::LateTruth;
use super::model::{NodeIdx, OrchIdx, SimTime};
use super::rng::SimRng;

/// What a node knows when it picks.
#[derive(Debug)]
pub struct PickInput<'a> {
    /// Now.
    pub now: SimTime,
    /// The picking node.
    pub node: NodeIdx,
    /// Orchestrators this job already tried (in order).
    pub tried: &'a [OrchIdx],
    /// This node's in-flight attempts per orchestrator.
    pub inflight: &'a [u32],
    /// Ground truth a one-way delay late, only for a policy whose
    /// [`RoutingPolicy::sees_truth`] is true (the late-truth bound).
    pub truth: Option<LateTruth<'a>>,
}

/// A policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickDecision {
    /// Send the attempt to this orchestrator.
    Send(OrchIdx),
    /// Run discovery (`GetOrchestrator` to every orchestrator) first, then ask again.
    Discover,
    /// Nothing usable right now; ask again after the backoff.
    Wait,
}

/// Why an attempt failed, as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum FailureKind {
    /// Connection refused: the orchestrator is down.
    Refused,
    /// The orchestrator answered "insufficient capacity".
    Capacity,
    /// The connection broke while the job ran (orchestrator crashed).
    Reset,
    /// No answer within the connect timeout (network partition).
    Timeout,
}

/// The outcome of one attempt, delivered to the node that made it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttemptReport {
    /// The orchestrator tried.
    pub orch: OrchIdx,
    /// When the attempt was sent.
    pub started: SimTime,
    /// Time from send to outcome, in ms (the full job latency on success).
    pub latency_ms: f64,
    /// `Ok` or why it failed.
    pub result: Result<(), FailureKind>,
}

/// One orchestrator's reply to `GetOrchestrator` during discovery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// Who was asked.
    pub orch: OrchIdx,
    /// The reply, or why there was none.
    pub reply: Result<ProbeReply, FailureKind>,
}

/// What an orchestrator tells a node in `GetOrchestrator`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeReply {
    /// Round trip of the RPC as measured by the node, in ms.
    pub rtt_ms: f64,
    /// Advertised price, wei per unit.
    pub price_wei_per_unit: i64,
    /// Advertised capacity for the model.
    pub capacity: u32,
    /// Capacity in use (`ModelConstraint.capacityInUse`).
    pub capacity_in_use: u32,
}

/// A routing policy under test: gatemesh or a baseline.
pub trait RoutingPolicy {
    /// What nodes gossip to each other (`()` when nothing is shared).
    type Gossip;

    /// Short name for tables.
    fn name(&self) -> &'static str;

    /// Choose where the next attempt of a job goes.
    fn pick(&mut self, input: &PickInput<'_>, rng: &mut SimRng) -> PickDecision;

    /// An attempt by `node` ended.
    fn on_attempt_end(&mut self, node: NodeIdx, now: SimTime, report: &AttemptReport);

    /// Discovery by `node` finished.
    fn on_discovery(&mut self, node: NodeIdx, now: SimTime, results: &[ProbeResult]);

    /// Run discovery on every node every this many ms, besides on demand.
    fn poll_interval_ms(&self) -> Option<f64> {
        None
    }

    /// Run [`Self::probe_targets`] on every node every this many ms (a
    /// health-probe loop beside full discovery).
    fn probe_interval_ms(&self) -> Option<f64> {
        None
    }

    /// Orchestrators `node` wants probed now (`GetOrchestrator` to just
    /// these); the answers arrive through [`Self::on_discovery`].
    fn probe_targets(&mut self, _node: NodeIdx, _now: SimTime) -> Vec<OrchIdx> {
        Vec::new()
    }

    /// Periodic housekeeping on `node` (every
    /// [`super::model::Propagation::publish_coalesce_ms`]).
    fn tick(&mut self, _node: NodeIdx, _now: SimTime) {}

    /// Whether `node` has changed records to publish.
    fn has_changes(&self, _node: NodeIdx) -> bool {
        false
    }

    /// `node`'s changed records, taken, for every peer (the engine calls it
    /// [`super::model::Propagation::publish_coalesce_ms`] after
    /// [`Self::has_changes`] first said so).
    fn publish(&mut self, _node: NodeIdx, _now: SimTime) -> Option<Rc<Self::Gossip>> {
        None
    }

    /// What `node` sends to every peer at once, outside publications (load
    /// announcements). The engine asks after each of the node's picks and
    /// attempt ends and at each housekeeping tick; deliveries take the one-way
    /// network delay plus [`super::model::Propagation::direct_median_ms`].
    fn direct_message(&mut self, _node: NodeIdx, _now: SimTime) -> Option<Rc<Self::Gossip>> {
        None
    }

    /// After this many failed attempts on the node the client called, the
    /// job is handed to a node of another region, which goes on with it
    /// (gatemesh's last resort; `None`: never).
    fn forward_after_attempts(&self) -> Option<usize> {
        None
    }

    /// Whether the engine shows this policy [`PickInput::truth`]: only the
    /// late-truth bound, which is not a gateway but a yardstick.
    fn sees_truth(&self) -> bool {
        false
    }

    /// Whether this policy gossips at all (the engine skips housekeeping
    /// ticks and publications otherwise).
    fn gossips(&self) -> bool {
        false
    }

    /// A gossip message reached `node`.
    fn on_gossip(&mut self, _node: NodeIdx, _now: SimTime, _msg: &Self::Gossip) {}

    /// `node` restarted with empty memory.
    fn on_node_restart(&mut self, node: NodeIdx, now: SimTime);
}
