//! The late-truth bound: how accurate routing can be when every orchestrator's
//! state reaches the node a one-way delay late, the soonest any message from
//! it could.
//!
//! [`LateTruthPolicy`] is not a gateway and not a baseline to beat: it reads
//! the engine's ground truth ([`super::engine::LateTruth`]), which no real
//! node has. On each pick it takes the orchestrators that could admit a job
//! as of a one-way delay ago (up, with a free slot), ranks them by true
//! expected latency from the node, another region's multiplied by gatemesh's
//! `other_region_factor` (1.5; without it, crossing on news 40–75 ms old
//! does worse: seed 971 72.1 % instead of 83.5 %), and picks at random among
//! those within 10 % of the best (spreading the nodes that see the same
//! picture over near-equals). If none is seen free it sends to the best
//! admissible one anyway: it never holds a job back (picks are judged,
//! waiting is not). Its accuracy is judged exactly like gatemesh's, so on a
//! seed where gatemesh misses 95 % it answers the question: would a gateway
//! that knew everything, as late as physics allows, have made it?
//!
//! It is not an upper bound in the strict sense: a policy that also
//! predicted when running jobs end could do better on slots that free while
//! the news travels. It is the yardstick of perfect but late knowledge.

use super::model::{NodeIdx, SimTime};
use super::policy::{AttemptReport, PickDecision, PickInput, ProbeResult, RoutingPolicy};
use super::rng::SimRng;

/// How much slower than the best seen-free orchestrator a pick may be and
/// still count as accurate (the accuracy metric's own margin).
const NEAR_EQUAL: f64 = 1.1;

/// Routing on ground truth a one-way delay late (see the module docs).
#[derive(Debug)]
pub struct LateTruthPolicy {
    /// How much faster another region's orchestrator must be to be picked
    /// over one at home.
    other_region_factor: f64,
    /// Reused between picks: the seen-free candidates (index, ranking ms).
    candidates: Vec<(usize, f64)>,
}

impl LateTruthPolicy {
    /// The bound with gatemesh's own preference for home
    /// ([`mesh_core::RouteConfig::other_region_factor`]).
    pub fn new() -> Self {
        Self {
            other_region_factor: mesh_core::RouteConfig::default().other_region_factor,
            candidates: Vec::new(),
        }
    }
}

impl Default for LateTruthPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutingPolicy for LateTruthPolicy {
    type Gossip = ();

    fn name(&self) -> &'static str {
        "late-truth"
    }

    fn sees_truth(&self) -> bool {
        true
    }

    fn pick(&mut self, input: &PickInput<'_>, rng: &mut SimRng) -> PickDecision {
        let Some(truth) = &input.truth else {
            // The engine shows truth to every policy that asks; without it
            // there is nothing to route on.
            return PickDecision::Wait;
        };
        self.candidates.clear();
        let mut fallback: Option<(usize, f64)> = None;
        for orch in 0..truth.orchestrators() {
            if input.tried.contains(&orch) || !truth.admissible(orch) {
                continue;
            }
            let expected = truth.expected_ms(orch);
            // Ranked as gatemesh ranks: another region's orchestrator must
            // look this much faster before a job crosses for it.
            let ranked = if truth.is_home(orch) {
                expected
            } else {
                expected * self.other_region_factor
            };
            if truth.seen_free(orch) {
                self.candidates.push((orch, ranked));
            } else if fallback.is_none_or(|(_, best)| ranked < best) {
                fallback = Some((orch, ranked));
            }
        }
        let Some(best) = self
            .candidates
            .iter()
            .map(|&(_, ranked)| ranked)
            .min_by(f64::total_cmp)
        else {
            return fallback.map_or(PickDecision::Wait, |(orch, _)| PickDecision::Send(orch));
        };
        self.candidates
            .retain(|&(_, ranked)| ranked <= best * NEAR_EQUAL);
        PickDecision::Send(self.candidates[rng.below(self.candidates.len())].0)
    }

    fn on_attempt_end(&mut self, _node: NodeIdx, _now: SimTime, _report: &AttemptReport) {}

    fn on_discovery(&mut self, _node: NodeIdx, _now: SimTime, _results: &[ProbeResult]) {}

    fn on_node_restart(&mut self, _node: NodeIdx, _now: SimTime) {}
}
