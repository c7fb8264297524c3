//! What a run records, and the figures computed from it afterwards.

use serde::Serialize;

use super::model::SimTime;
use super::scenario::{Plan, Scenario};

/// One finished client request.
#[derive(Debug, Clone, Copy)]
pub struct JobRecord {
    /// Arrival at the gateway node, µs.
    pub arrival_us: u64,
    /// Answer (or failure) time, µs.
    pub end_us: u64,
    /// Region of the node that took it.
    pub region: u8,
    /// Who served it; `None` = the client got an error.
    pub served_by: Option<u16>,
    /// Attempts made.
    pub attempts: u16,
    /// Handed to a node of another region.
    pub forwarded: bool,
}

/// One routing decision that sent an attempt.
#[derive(Debug, Clone, Copy)]
pub struct PickRecord {
    /// When, µs.
    pub at_us: u64,
    /// Which node picked.
    pub node: u16,
    /// Which orchestrator it picked.
    pub orch: u16,
    /// Whether its true expected latency was within 10 % of the best
    /// available orchestrator's (`None`: nothing was available).
    pub accurate: Option<bool>,
    /// The same judged at arrival: within 10 % of the best orchestrator
    /// that would have admitted a job arriving from this node (`None`:
    /// none would have).
    pub accurate_on_arrival: Option<bool>,
    /// The orchestrator's price was above the cap at that moment.
    pub over_cap: bool,
}

/// The raw log of one run.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Finished jobs, in finishing order.
    pub jobs: Vec<JobRecord>,
    /// Picks, in time order.
    pub picks: Vec<PickRecord>,
    /// Sampled gossip propagation delays, ms.
    pub propagation_ms: Vec<f32>,
    /// Events processed.
    pub events: u64,
}

/// Figures of one policy in one run. Fractions are 0–1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMetrics {
    /// Policy name.
    pub policy: String,
    /// Client requests counted (arrived after the warm-up).
    pub jobs: u64,
    /// Of those, how many the client saw fail.
    pub failed: u64,
    /// Median job latency at the gateway (successes), ms.
    pub latency_p50_ms: f64,
    /// 99th percentile job latency, ms.
    pub latency_p99_ms: f64,
    /// Share of picks within 10 % of the best available true expected latency.
    pub accuracy: f64,
    /// The same judged at arrival (see [`PickRecord::accurate_on_arrival`]).
    pub accuracy_on_arrival: f64,
    /// Share of successful jobs served in the node's own region.
    pub in_region: f64,
    /// Total-variation distance between served share and capacity share over
    /// orchestrators (0 = load exactly proportional to capacity).
    pub load_deviation: f64,
    /// Attempts per counted job.
    pub attempts_per_job: f64,
    /// Picks sent to an orchestrator priced above the cap.
    pub over_cap_picks: u64,
    /// Last pick of the faulty orchestrator while it was down/over cap, ms after the fault.
    pub avoid_ms: Option<f64>,
    /// Share of picks to the faulty orchestrator from 2 s after the fault.
    pub target_share_after_2s: Option<f64>,
    /// Latency p99 of jobs arriving after the fault, ms.
    pub post_fault_p99_ms: Option<f64>,
    /// Success share of jobs arriving while the fault lasts.
    pub success_during_fault: Option<f64>,
    /// Time from recovery until the affected region's in-region share is back
    /// to 90 % of its pre-fault level (1 s windows), ms.
    pub back_in_region_ms: Option<f64>,
    /// Later 1 s windows whose in-region share fell below 80 % of pre-fault.
    pub oscillations: Option<u64>,
    /// Gossip propagation p50 / p99, ms (policies that gossip).
    pub propagation_p50_ms: Option<f64>,
    /// See `propagation_p50_ms`.
    pub propagation_p99_ms: Option<f64>,
    /// Counted jobs handed to a node of another region (gatemesh's last
    /// resort).
    pub forwarded: u64,
    /// Events the run processed.
    pub events: u64,
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Rounds to 0.1 µs so printed figures never depend on float noise.
fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Compute the figures of one run.
pub fn summarize(plan: &Plan, policy: &str, log: &RunLog) -> RunMetrics {
    let topo = &plan.config.topology;
    let warmup_us = SimTime::from_ms(plan.config.workload.warmup_s * 1000.0).0;
    let fault_us = plan.fault_at.0;
    let counted: Vec<&JobRecord> = log
        .jobs
        .iter()
        .filter(|j| j.arrival_us >= warmup_us)
        .collect();
    let ok: Vec<&&JobRecord> = counted.iter().filter(|j| j.served_by.is_some()).collect();
    let latencies = sorted(ok.iter().map(|j| ms(j.end_us - j.arrival_us)).collect());
    let in_region = ok
        .iter()
        .filter(|j| {
            j.served_by
                .is_some_and(|o| topo.orchestrators[o as usize].region == j.region as usize)
        })
        .count();
    let picks: Vec<&PickRecord> = log.picks.iter().filter(|p| p.at_us >= warmup_us).collect();
    let scored: Vec<bool> = picks.iter().filter_map(|p| p.accurate).collect();
    let scored_on_arrival: Vec<bool> = picks.iter().filter_map(|p| p.accurate_on_arrival).collect();

    // Load against capacity share.
    let total_capacity: u32 = topo.orchestrators.iter().map(|o| o.capacity).sum();
    let mut served = vec![0u64; topo.orchestrators.len()];
    for j in &ok {
        if let Some(o) = j.served_by {
            served[o as usize] += 1;
        }
    }
    let load_deviation = if ok.is_empty() || total_capacity == 0 {
        0.0
    } else {
        topo.orchestrators
            .iter()
            .zip(&served)
            .map(|(o, &s)| {
                (s as f64 / ok.len() as f64 - f64::from(o.capacity) / f64::from(total_capacity))
                    .abs()
            })
            .sum::<f64>()
            / 2.0
    };

    let mut m = RunMetrics {
        policy: policy.to_owned(),
        jobs: counted.len() as u64,
        failed: (counted.len() - ok.len()) as u64,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        accuracy: if scored.is_empty() {
            1.0
        } else {
            scored.iter().filter(|&&a| a).count() as f64 / scored.len() as f64
        },
        accuracy_on_arrival: if scored_on_arrival.is_empty() {
            1.0
        } else {
            scored_on_arrival.iter().filter(|&&a| a).count() as f64 / scored_on_arrival.len() as f64
        },
        in_region: if ok.is_empty() {
            0.0
        } else {
            in_region as f64 / ok.len() as f64
        },
        load_deviation,
        attempts_per_job: if counted.is_empty() {
            0.0
        } else {
            counted.iter().map(|j| f64::from(j.attempts)).sum::<f64>() / counted.len() as f64
        },
        over_cap_picks: picks.iter().filter(|p| p.over_cap).count() as u64,
        forwarded: counted.iter().filter(|j| j.forwarded).count() as u64,
        avoid_ms: None,
        target_share_after_2s: None,
        post_fault_p99_ms: None,
        success_during_fault: None,
        back_in_region_ms: None,
        oscillations: None,
        propagation_p50_ms: None,
        propagation_p99_ms: None,
        events: log.events,
    };

    if !log.propagation_ms.is_empty() {
        let p = sorted(log.propagation_ms.iter().map(|&x| f64::from(x)).collect());
        m.propagation_p50_ms = Some(percentile(&p, 0.5));
        m.propagation_p99_ms = Some(percentile(&p, 0.99));
    }

    // Jobs arriving after the fault: p99 (compared against the steady run).
    let post = sorted(
        ok.iter()
            .filter(|j| j.arrival_us >= fault_us)
            .map(|j| ms(j.end_us - j.arrival_us))
            .collect(),
    );
    m.post_fault_p99_ms = Some(percentile(&post, 0.99));

    if let Some(target) = plan.target {
        let target = target as u16;
        // How long until nobody picks the target while it is unusable.
        let bad_until = match plan.scenario {
            Scenario::OrchestratorCrash | Scenario::PriceAboveCap => Some(u64::MAX),
            _ => None,
        };
        if let Some(until) = bad_until {
            let last = picks
                .iter()
                .filter(|p| p.orch == target && p.at_us >= fault_us && p.at_us < until)
                .map(|p| p.at_us)
                .max();
            m.avoid_ms = Some(last.map_or(0.0, |t| ms(t - fault_us)));
        }
        let after = fault_us + 2_000_000;
        let later: Vec<&&PickRecord> = picks.iter().filter(|p| p.at_us >= after).collect();
        if !later.is_empty() {
            let hits = later.iter().filter(|p| p.orch == target).count();
            m.target_share_after_2s = Some(hits as f64 / later.len() as f64);
        }
    }

    if let Some(recover) = plan.recover_at {
        let during: Vec<&&JobRecord> = counted
            .iter()
            .filter(|j| j.arrival_us >= fault_us && j.arrival_us < recover.0)
            .collect();
        if !during.is_empty() {
            let good = during.iter().filter(|j| j.served_by.is_some()).count();
            m.success_during_fault = Some(good as f64 / during.len() as f64);
        }
        if plan.scenario == Scenario::RegionDown
            && let Some(region) = plan.region
        {
            let (back, osc) =
                back_in_region(plan, &ok, region as u8, warmup_us, fault_us, recover.0);
            m.back_in_region_ms = back;
            m.oscillations = Some(osc);
        }
    }

    for x in [
        &mut m.latency_p50_ms,
        &mut m.latency_p99_ms,
        &mut m.accuracy,
        &mut m.accuracy_on_arrival,
        &mut m.in_region,
        &mut m.load_deviation,
        &mut m.attempts_per_job,
    ] {
        *x = round(*x);
    }
    for x in [
        &mut m.avoid_ms,
        &mut m.target_share_after_2s,
        &mut m.post_fault_p99_ms,
        &mut m.success_during_fault,
        &mut m.back_in_region_ms,
        &mut m.propagation_p50_ms,
        &mut m.propagation_p99_ms,
    ]
    .into_iter()
    .flatten()
    {
        *x = round(*x);
    }
    m
}

/// In-region share of `region`'s successful jobs in 1 s windows (by arrival).
fn back_in_region(
    plan: &Plan,
    ok: &[&&JobRecord],
    region: u8,
    warmup_us: u64,
    fault_us: u64,
    recover_us: u64,
) -> (Option<f64>, u64) {
    let topo = &plan.config.topology;
    let share = |from: u64, to: u64| -> Option<f64> {
        let window: Vec<_> = ok
            .iter()
            .filter(|j| j.region == region && j.arrival_us >= from && j.arrival_us < to)
            .collect();
        if window.is_empty() {
            return None;
        }
        let local = window
            .iter()
            .filter(|j| {
                j.served_by
                    .is_some_and(|o| topo.orchestrators[o as usize].region == region as usize)
            })
            .count();
        Some(local as f64 / window.len() as f64)
    };
    let Some(pre) = share(warmup_us, fault_us) else {
        return (None, 0);
    };
    let end_us = SimTime::from_ms(plan.config.workload.duration_s * 1000.0).0;
    let mut back = None;
    let mut oscillations = 0;
    let mut start = recover_us;
    while start + 1_000_000 <= end_us {
        if let Some(s) = share(start, start + 1_000_000) {
            match back {
                None if s >= 0.9 * pre => back = Some(ms(start + 1_000_000 - recover_us)),
                Some(_) if s < 0.8 * pre => oscillations += 1,
                _ => {}
            }
        }
        start += 1_000_000;
    }
    (back, oscillations)
}
