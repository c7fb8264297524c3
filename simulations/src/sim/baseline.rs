//! Baseline policies, run in the same simulator as gatemesh:
//!
//! - [`LivepeerPolicy`]: go-livepeer's batch-AI selection (protocol reference
//!   §2.5, §5.3, §5.4), one independent selector per node, nothing shared.
//! - [`RoundRobinPolicy`] and [`RandomPolicy`]: the orchestrators from one
//!   discovery, in turn or at random, without any health tracking.

use super::model::{NodeIdx, OrchIdx, SimTime};
use super::policy::{
    AttemptReport, FailureKind, PickDecision, PickInput, ProbeResult, RoutingPolicy,
};
use super::rng::SimRng;

/// go-livepeer's AI session manager TTL (hard-coded 10 min).
const SESSION_TTL_US: u64 = 10 * 60 * 1_000_000;
/// Batch-AI suspension penalty, in refreshes (`AISessionPool.Remove`).
const SUSPENSION_REFRESHES: u64 = 3;
/// Refresh when the pool holds fewer than `min(8, ceil(discovered / 2))`.
const MIN_POOL: usize = 8;

#[derive(Debug, Clone)]
struct Session {
    orch: OrchIdx,
    /// `LatencyScore`: 0 until a job completes, then the last job's latency.
    latency_score_ms: f64,
    /// Position in the discovery reply order (fastest `GetOrchestrator` first).
    order: usize,
    /// In-flight requests on this session.
    in_flight: u32,
}

#[derive(Debug, Default)]
struct LpNode {
    /// `sessMap`: every session in the pool (available or in use).
    sessions: Vec<Session>,
    /// Refresh counter (`suspender.count`).
    refreshes: u64,
    /// Orchestrator → refresh count at which it is usable again.
    suspended_until: Vec<u64>,
    last_refresh: Option<SimTime>,
    discovered: usize,
}

impl LpNode {
    fn needs_refresh(&self, now: SimTime) -> bool {
        let Some(last) = self.last_refresh else {
            return true;
        };
        let floor = MIN_POOL.min(self.discovered.div_ceil(2)).max(1);
        self.sessions.len() < floor || now.since_us(last) >= SESSION_TTL_US
    }

    fn position(&self, orch: OrchIdx) -> Option<usize> {
        self.sessions.iter().position(|s| s.orch == orch)
    }
}

/// go-livepeer's per-node AI selection, offchain mode.
#[derive(Debug)]
pub struct LivepeerPolicy {
    nodes: Vec<LpNode>,
    orchestrators: usize,
    price_cap_wei_per_unit: i64,
}

impl LivepeerPolicy {
    /// One selector per node.
    pub fn new(nodes: usize, orchestrators: usize, price_cap_wei_per_unit: i64) -> Self {
        Self {
            nodes: (0..nodes).map(|_| LpNode::default()).collect(),
            orchestrators,
            price_cap_wei_per_unit,
        }
    }
}

impl RoutingPolicy for LivepeerPolicy {
    type Gossip = ();

    fn name(&self) -> &'static str {
        "livepeer"
    }

    fn pick(&mut self, input: &PickInput<'_>, rng: &mut SimRng) -> PickDecision {
        let node = &mut self.nodes[input.node];
        if node.needs_refresh(input.now) {
            return PickDecision::Discover;
        }
        // `Selector.Select`: the first available (not in use) session, in
        // ascending LatencyScore, ties in discovery order.
        let best = node
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_flight == 0 && !input.tried.contains(&s.orch))
            .min_by(|(_, a), (_, b)| {
                a.latency_score_ms
                    .total_cmp(&b.latency_score_ms)
                    .then(a.order.cmp(&b.order))
            })
            .map(|(i, _)| i);
        let chosen = best.or_else(|| {
            // `selectInUse`: a random in-use session.
            let in_use: Vec<usize> = (0..node.sessions.len())
                .filter(|&i| !input.tried.contains(&node.sessions[i].orch))
                .collect();
            (!in_use.is_empty()).then(|| in_use[rng.below(in_use.len())])
        });
        match chosen {
            Some(i) => {
                node.sessions[i].in_flight += 1;
                PickDecision::Send(node.sessions[i].orch)
            }
            None => PickDecision::Wait,
        }
    }

    fn on_attempt_end(&mut self, node: NodeIdx, _now: SimTime, report: &AttemptReport) {
        let node = &mut self.nodes[node];
        let Some(i) = node.position(report.orch) else {
            return; // removed meanwhile (suspended or refreshed away)
        };
        match report.result {
            Ok(()) => {
                let s = &mut node.sessions[i];
                s.in_flight = s.in_flight.saturating_sub(1);
                s.latency_score_ms = report.latency_ms;
            }
            // "insufficient capacity": set aside, back in the pool afterwards.
            Err(FailureKind::Capacity) => {
                let s = &mut node.sessions[i];
                s.in_flight = s.in_flight.saturating_sub(1);
            }
            // Anything else: remove and suspend for 3 refreshes.
            Err(_) => {
                node.sessions.remove(i);
                let until = node.refreshes + SUSPENSION_REFRESHES;
                node.suspended_until[report.orch] = node.suspended_until[report.orch].max(until);
            }
        }
    }

    fn on_discovery(&mut self, node: NodeIdx, now: SimTime, results: &[ProbeResult]) {
        let orchestrators = self.orchestrators;
        let cap = self.price_cap_wei_per_unit;
        let node = &mut self.nodes[node];
        if node.suspended_until.len() != orchestrators {
            node.suspended_until = vec![0; orchestrators];
        }
        node.refreshes += 1;
        node.last_refresh = Some(now);
        // Replies arrive in RTT order; go-livepeer adds them in that order.
        let mut replies: Vec<(f64, OrchIdx)> = results
            .iter()
            .filter_map(|r| match r.reply {
                Ok(reply) if reply.price_wei_per_unit <= cap => Some((reply.rtt_ms, r.orch)),
                _ => None,
            })
            .collect();
        replies.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        node.discovered = replies.len();
        let mut usable: Vec<OrchIdx> = replies
            .iter()
            .map(|&(_, o)| o)
            .filter(|&o| node.suspended_until[o] <= node.refreshes)
            .collect();
        if usable.is_empty() {
            // Pools completely empty: suspensions are released.
            node.suspended_until.iter_mut().for_each(|s| *s = 0);
            usable = replies.iter().map(|&(_, o)| o).collect();
        }
        // `Clear(newSessions)`: keep known sessions that answered again (with
        // their scores), drop the others, add the new ones with score 0.
        let old = std::mem::take(&mut node.sessions);
        for (order, &orch) in usable.iter().enumerate() {
            let kept = old.iter().find(|s| s.orch == orch);
            node.sessions.push(Session {
                orch,
                latency_score_ms: kept.map_or(0.0, |s| s.latency_score_ms),
                order,
                in_flight: kept.map_or(0, |s| s.in_flight),
            });
        }
    }

    fn on_node_restart(&mut self, node: NodeIdx, _now: SimTime) {
        self.nodes[node] = LpNode::default();
    }
}

/// The orchestrator list from one discovery, per node.
#[derive(Debug)]
struct StaticLists {
    lists: Vec<Option<Vec<OrchIdx>>>,
    price_cap_wei_per_unit: i64,
}

impl StaticLists {
    fn new(nodes: usize, price_cap_wei_per_unit: i64) -> Self {
        Self {
            lists: vec![None; nodes],
            price_cap_wei_per_unit,
        }
    }

    fn learn(&mut self, node: NodeIdx, results: &[ProbeResult]) {
        let cap = self.price_cap_wei_per_unit;
        let list: Vec<OrchIdx> = results
            .iter()
            .filter(|r| matches!(r.reply, Ok(reply) if reply.price_wei_per_unit <= cap))
            .map(|r| r.orch)
            .collect();
        self.lists[node] = Some(list);
    }
}

/// Round robin over the discovered orchestrators, per node.
#[derive(Debug)]
pub struct RoundRobinPolicy {
    lists: StaticLists,
    cursors: Vec<usize>,
}

impl RoundRobinPolicy {
    /// Round robin on every node.
    pub fn new(nodes: usize, price_cap_wei_per_unit: i64) -> Self {
        Self {
            lists: StaticLists::new(nodes, price_cap_wei_per_unit),
            cursors: vec![0; nodes],
        }
    }
}

impl RoutingPolicy for RoundRobinPolicy {
    type Gossip = ();

    fn name(&self) -> &'static str {
        "round-robin"
    }

    fn pick(&mut self, input: &PickInput<'_>, _rng: &mut SimRng) -> PickDecision {
        let Some(list) = self.lists.lists[input.node]
            .as_ref()
            .filter(|l| !l.is_empty())
        else {
            return PickDecision::Discover;
        };
        for _ in 0..list.len() {
            let cursor = &mut self.cursors[input.node];
            let orch = list[*cursor % list.len()];
            *cursor = cursor.wrapping_add(1);
            if !input.tried.contains(&orch) {
                return PickDecision::Send(orch);
            }
        }
        PickDecision::Wait
    }

    fn on_attempt_end(&mut self, _node: NodeIdx, _now: SimTime, _report: &AttemptReport) {}

    fn on_discovery(&mut self, node: NodeIdx, _now: SimTime, results: &[ProbeResult]) {
        self.lists.learn(node, results);
    }

    fn on_node_restart(&mut self, node: NodeIdx, _now: SimTime) {
        self.lists.lists[node] = None;
    }
}

/// Uniform random choice among the discovered orchestrators, per node.
#[derive(Debug)]
pub struct RandomPolicy {
    lists: StaticLists,
}

impl RandomPolicy {
    /// Random choice on every node.
    pub fn new(nodes: usize, price_cap_wei_per_unit: i64) -> Self {
        Self {
            lists: StaticLists::new(nodes, price_cap_wei_per_unit),
        }
    }
}

impl RoutingPolicy for RandomPolicy {
    type Gossip = ();

    fn name(&self) -> &'static str {
        "random"
    }

    fn pick(&mut self, input: &PickInput<'_>, rng: &mut SimRng) -> PickDecision {
        let Some(list) = self.lists.lists[input.node]
            .as_ref()
            .filter(|l| !l.is_empty())
        else {
            return PickDecision::Discover;
        };
        let untried: Vec<OrchIdx> = list
            .iter()
            .copied()
            .filter(|o| !input.tried.contains(o))
            .collect();
        if untried.is_empty() {
            return PickDecision::Wait;
        }
        PickDecision::Send(untried[rng.below(untried.len())])
    }

    fn on_attempt_end(&mut self, _node: NodeIdx, _now: SimTime, _report: &AttemptReport) {}

    fn on_discovery(&mut self, node: NodeIdx, _now: SimTime, results: &[ProbeResult]) {
        self.lists.learn(node, results);
    }

    fn on_node_restart(&mut self, node: NodeIdx, _now: SimTime) {
        self.lists.lists[node] = None;
    }
}
