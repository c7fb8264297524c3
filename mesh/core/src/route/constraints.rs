//! Operator constraints on top of the basic filters: pinning a job to an
//! orchestrator pool, and a latency budget.
//!
//! - **Pool** ([`JobRequirements::pool`]): only the listed orchestrators may
//!   serve the job (a tier pinned to its own fleet). The others are filtered
//!   out and counted as `not_in_pool`.
//! - **Latency budget** ([`JobRequirements::latency_budget`]): an
//!   orchestrator whose expected latency *from this region* exceeds the
//!   budget is, depending on [`OverBudget`], either tried only after every
//!   candidate within the budget (`LastResort`: it keeps its tier and score
//!   order among the other over-budget ones), or never (`Never`, counted as
//!   `over_latency_budget`). An expected latency that is only the prior (no
//!   job or probe evidence from this region) is not evidence of being slow,
//!   so such an orchestrator counts as within the budget: otherwise a new
//!   orchestrator could never be measured.

use super::{Candidate, FilterCounts, JobRequirements, LatencySource, Scored};
use crate::id::OrchestratorId;

/// A latency budget for one job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyBudget {
    /// Highest acceptable expected latency from this region, ms.
    pub max_ms: f64,
    /// What happens to orchestrators above it.
    pub over_budget: OverBudget,
}

/// The fate of an orchestrator whose expected latency exceeds the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverBudget {
    /// Tried after every orchestrator within the budget (and used normally
    /// when none is within it).
    #[default]
    LastResort,
    /// Never tried.
    Never,
}

/// Whether the job is pinned to a pool that does not contain `id`.
pub(super) fn outside_pool(job: &JobRequirements, id: &OrchestratorId) -> bool {
    job.pool.as_ref().is_some_and(|pool| !pool.contains(id))
}

/// Moves the candidates over the job's latency budget out of `scored`:
/// dropped (and counted) under [`OverBudget::Never`], returned for the end
/// of the plan under [`OverBudget::LastResort`]. When every candidate is
/// over a last-resort budget, they all stay in `scored` (nothing better
/// exists) and the result is empty.
pub(super) fn split_over_budget(
    job: &JobRequirements,
    scored: &mut Vec<Scored>,
    filtered: &mut FilterCounts,
) -> Vec<Scored> {
    let Some(budget) = job.latency_budget else {
        return Vec::new();
    };
    let over =
        |s: &Scored| s.latency_source != LatencySource::Prior && s.latency_ms > budget.max_ms;
    match budget.over_budget {
        OverBudget::Never => {
            let before = scored.len();
            scored.retain(|s| !over(s));
            filtered.over_latency_budget += (before - scored.len()) as u32;
            Vec::new()
        }
        OverBudget::LastResort => {
            if scored.iter().all(over) {
                return Vec::new();
            }
            let (late, within): (Vec<Scored>, Vec<Scored>) = scored.drain(..).partition(over);
            *scored = within;
            late
        }
    }
}

/// Appends the last-resort candidates after the plan's others, in tier and
/// score order, up to `max_attempts` in all.
pub(super) fn append_last_resort(
    attempts: &mut Vec<Candidate>,
    mut late: Vec<Scored>,
    max_attempts: usize,
    to_candidate: impl Fn(&Scored) -> Candidate,
) {
    late.sort_by(|a, b| {
        (a.tier, a.score)
            .partial_cmp(&(b.tier, b.score))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for s in &late {
        if attempts.len() >= max_attempts {
            break;
        }
        attempts.push(to_candidate(s));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::fixture::{OfferSpec, orchestrator_info};
    use crate::hlc::Hlc;
    use crate::id::{NodeId, RegionId};
    use crate::pipeline::Pipeline;
    use crate::route::{LocalState, PickReason, Tier, pick};
    use crate::view::{ObservationRecord, ViewSnapshot};

    const NOW: u64 = 10_000_000;
    const MODEL: &str = "meta-llama/llama-3.1-8B-Instruct";

    fn orch(i: usize) -> OrchestratorId {
        OrchestratorId::parse(&format!("orch-{i:02}.example:8935")).unwrap()
    }

    /// Orchestrators observed from fra with the given job latencies (ms);
    /// `None` = advertised but never measured.
    fn snapshot(latencies: &[Option<u32>]) -> ViewSnapshot {
        let records: Vec<ObservationRecord> = latencies
            .iter()
            .enumerate()
            .map(|(i, latency)| {
                let mut r = ObservationRecord::new(
                    orch(i),
                    NodeId::new("fra-1").unwrap(),
                    RegionId::new("fra").unwrap(),
                );
                r.version = Hlc {
                    wall_ms: NOW,
                    counter: 0,
                    node: 1,
                };
                let info = orchestrator_info(&orch(i), &[OfferSpec::warm(Pipeline::Llm, MODEL)]);
                r.record_info(info, NOW - 1_000);
                if let Some(ms) = latency {
                    for _ in 0..20 {
                        r.record_success(Pipeline::Llm, MODEL, *ms, NOW - 100);
                    }
                }
                r
            })
            .collect();
        ViewSnapshot::from_records(NOW, None, &records, Vec::new())
    }

    fn local() -> LocalState {
        LocalState::new(RegionId::new("fra").unwrap(), NOW)
    }

    fn ids(plan: &crate::route::RoutePlan) -> Vec<OrchestratorId> {
        plan.attempts
            .iter()
            .map(|c| c.orchestrator.clone())
            .collect()
    }

    #[test]
    fn a_pool_admits_only_its_members() {
        let snap = snapshot(&[Some(50), Some(60), Some(70), Some(80)]);
        let mut job = JobRequirements::new(Pipeline::Llm, MODEL);
        job.pool = Some(Arc::from(vec![orch(2), orch(3)]));
        for seed in 0..20 {
            let plan = pick(&job, &snap, &local(), &mut StdRng::seed_from_u64(seed));
            let mut got = ids(&plan);
            got.sort();
            assert_eq!(got, vec![orch(2), orch(3)]);
            assert_eq!(plan.filtered.not_in_pool, 2);
        }
        // An empty pool admits nobody.
        job.pool = Some(Arc::from(Vec::new()));
        let plan = pick(&job, &snap, &local(), &mut StdRng::seed_from_u64(1));
        assert!(plan.attempts.is_empty());
        assert_eq!(plan.filtered.not_in_pool, 4);
    }

    #[test]
    fn over_budget_orchestrators_are_a_last_resort() {
        // 0 and 1 are fast; 2 is slow; 3 was never measured (prior).
        let snap = snapshot(&[Some(400), Some(420), Some(2_000), None]);
        let mut job = JobRequirements::new(Pipeline::Llm, MODEL);
        job.latency_budget = Some(LatencyBudget {
            max_ms: 1_000.0,
            over_budget: OverBudget::LastResort,
        });
        for seed in 0..50 {
            let plan = pick(&job, &snap, &local(), &mut StdRng::seed_from_u64(seed));
            assert_eq!(plan.attempts.len(), 4, "{plan}");
            assert_eq!(plan.attempts[3].orchestrator, orch(2), "{plan}");
            assert_eq!(plan.attempts[3].reason, PickReason::Failover);
            assert_ne!(plan.attempts[0].orchestrator, orch(2));
        }
        // When every measured orchestrator is over budget, they are used as usual.
        let slow = snapshot(&[Some(2_000), Some(3_000)]);
        let plan = pick(&job, &slow, &local(), &mut StdRng::seed_from_u64(3));
        assert_eq!(ids(&plan), vec![orch(0), orch(1)]);
        assert_eq!(plan.attempts[0].tier, Tier::Home);
    }

    #[test]
    fn a_strict_budget_drops_measured_slow_orchestrators() {
        let snap = snapshot(&[Some(400), Some(2_000), None]);
        let mut job = JobRequirements::new(Pipeline::Llm, MODEL);
        job.latency_budget = Some(LatencyBudget {
            max_ms: 1_000.0,
            over_budget: OverBudget::Never,
        });
        let plan = pick(&job, &snap, &local(), &mut StdRng::seed_from_u64(5));
        let mut got = ids(&plan);
        got.sort();
        assert_eq!(got, vec![orch(0), orch(2)], "{plan}");
        assert_eq!(plan.filtered.over_latency_budget, 1);
        // All measured and slow: nothing to try.
        let slow = snapshot(&[Some(2_000)]);
        let plan = pick(&job, &slow, &local(), &mut StdRng::seed_from_u64(5));
        assert!(plan.attempts.is_empty());
        assert_eq!(plan.filtered.over_latency_budget, 1);
    }
}
