//! Running a scenario under every policy, checking the acceptance
//! properties, and printing tables and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::baseline::{LivepeerPolicy, RandomPolicy, RoundRobinPolicy};
use super::bound::LateTruthPolicy;
use super::engine::Engine;
use super::gatemesh::{GatemeshParams, GatemeshPolicy};
use super::metrics::{RunMetrics, summarize};
use super::model::Size;
use super::policy::RoutingPolicy;
use super::scenario::{Plan, Scenario};

/// The policies compared, gatemesh first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    /// The real `mesh-core` view and routing.
    Gatemesh,
    /// go-livepeer's selection.
    Livepeer,
    /// Round robin.
    RoundRobin,
    /// Uniform random.
    Random,
}

impl PolicyKind {
    /// Every policy, in table order.
    pub const ALL: [Self; 4] = [
        Self::Gatemesh,
        Self::Livepeer,
        Self::RoundRobin,
        Self::Random,
    ];
}

fn run_with<P: RoutingPolicy>(plan: &Plan, policy: P) -> RunMetrics {
    let name = policy.name();
    let (log, _) = Engine::new(plan, policy).run();
    summarize(plan, name, &log)
}

/// One run of gatemesh with non-default node or routing knobs (experiments).
pub fn run_gatemesh_with(plan: &Plan, params: GatemeshParams) -> RunMetrics {
    run_with(plan, GatemeshPolicy::new(plan, params))
}

/// One run of one policy through `plan`.
pub fn run_policy(plan: &Plan, kind: PolicyKind) -> RunMetrics {
    let topo = &plan.config.topology;
    let (nodes, orchs) = (topo.nodes.len(), topo.orchestrators.len());
    let cap = plan.config.workload.price_cap_wei_per_unit;
    match kind {
        PolicyKind::Gatemesh => {
            run_with(plan, GatemeshPolicy::new(plan, GatemeshParams::default()))
        }
        PolicyKind::Livepeer => run_with(plan, LivepeerPolicy::new(nodes, orchs, cap)),
        PolicyKind::RoundRobin => run_with(plan, RoundRobinPolicy::new(nodes, cap)),
        PolicyKind::Random => run_with(plan, RandomPolicy::new(nodes, cap)),
    }
}

/// What a run computes besides gatemesh and the baselines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Also run the late-truth bound ([`super::bound`]) and report it beside
    /// the policies (it costs about one more policy run per seed).
    pub late_truth: bool,
}

/// An acceptance property that did not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Which property (numbered as in the design's acceptance list).
    pub property: String,
    /// What was measured.
    pub detail: String,
}

/// One scenario, one seed, every policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Size.
    pub size: Size,
    /// Per policy, gatemesh first.
    pub results: Vec<RunMetrics>,
    /// The late-truth bound, when asked for ([`RunOptions::late_truth`]):
    /// a yardstick, not a policy gatemesh must beat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_truth: Option<RunMetrics>,
    /// For `slow-orchestrator`: gatemesh's post-fault p99 in the same seed
    /// without the slow orchestrator.
    pub reference_p99_ms: Option<f64>,
    /// Properties that failed (empty = all held).
    pub violations: Vec<Violation>,
    /// The command that replays this run.
    pub replay: String,
}

/// The command line that reproduces `scenario` at `seed`.
pub fn replay_command(scenario: Scenario, size: Size, seed: u64) -> String {
    let small = if size == Size::SMALL { " --small" } else { "" };
    format!(
        "cargo run --release -p simulations --bin gatemesh-sim -- run {scenario} --seed {seed}{small}"
    )
}

/// Run `scenario` at `size` for `seed` under every policy and check the properties.
pub fn run_scenario(scenario: Scenario, size: Size, seed: u64) -> ScenarioReport {
    run_scenario_with(scenario, size, seed, RunOptions::default())
}

/// [`run_scenario`], with the late-truth bound beside it if `options` ask.
pub fn run_scenario_with(
    scenario: Scenario,
    size: Size,
    seed: u64,
    options: RunOptions,
) -> ScenarioReport {
    let plan = Plan::new(scenario, size, seed);
    let results: Vec<RunMetrics> = PolicyKind::ALL
        .iter()
        .map(|&k| run_policy(&plan, k))
        .collect();
    let late_truth = options
        .late_truth
        .then(|| run_with(&plan, LateTruthPolicy::new()));
    let reference_p99_ms = (scenario == Scenario::SlowOrchestrator).then(|| {
        let steady = Plan::new(Scenario::Steady, size, seed);
        let mut m = run_policy(&steady, PolicyKind::Gatemesh);
        // Same window as the faulty run: jobs after the fault instant.
        m.post_fault_p99_ms.take().unwrap_or(m.latency_p99_ms)
    });
    let mut violations = check(&plan, &results, reference_p99_ms);
    if let Some(bound) = &late_truth {
        for v in violations
            .iter_mut()
            .filter(|v| v.property.starts_with("5a"))
        {
            let _ = write!(v.detail, " (late-truth bound {:.4})", bound.accuracy);
        }
    }
    ScenarioReport {
        scenario: scenario.name().to_owned(),
        seed,
        size,
        results,
        late_truth,
        reference_p99_ms,
        violations,
        replay: replay_command(scenario, size, seed),
    }
}

fn violation(list: &mut Vec<Violation>, property: &str, detail: String) {
    list.push(Violation {
        property: property.to_owned(),
        detail,
    });
}

/// The acceptance properties for gatemesh (`results[0]`) in this plan.
pub fn check(plan: &Plan, results: &[RunMetrics], reference_p99_ms: Option<f64>) -> Vec<Violation> {
    let mut v = Vec::new();
    let Some((gm, baselines)) = results.split_first() else {
        return v;
    };
    for b in baselines {
        if gm.accuracy <= b.accuracy {
            violation(
                &mut v,
                "5b accuracy above every baseline",
                format!(
                    "gatemesh {:.4} <= {} {:.4}",
                    gm.accuracy, b.policy, b.accuracy
                ),
            );
        }
    }
    match plan.scenario {
        Scenario::Steady if gm.accuracy < 0.95 => {
            violation(
                &mut v,
                "5a steady accuracy >= 95%",
                format!("{:.4}", gm.accuracy),
            );
        }
        Scenario::OrchestratorCrash => {
            if gm.failed > 3 {
                violation(
                    &mut v,
                    "2a at most 3 failed requests",
                    format!("{} failed", gm.failed),
                );
            }
            if let Some(avoid) = gm.avoid_ms.filter(|&a| a > 500.0) {
                violation(
                    &mut v,
                    "2b all nodes avoid within 500 ms",
                    format!("last pick {avoid:.1} ms after the crash"),
                );
            }
        }
        Scenario::SlowOrchestrator => {
            if let Some(share) = gm.target_share_after_2s.filter(|&s| s >= 0.01) {
                violation(
                    &mut v,
                    "3a slow share < 1% after 2 s",
                    format!("{:.3}%", share * 100.0),
                );
            }
            if let (Some(p99), Some(reference)) = (gm.post_fault_p99_ms, reference_p99_ms)
                && p99 > 1.2 * reference
            {
                violation(
                    &mut v,
                    "3b p99 within 1.2x of the run without it",
                    format!("{p99:.1} ms vs {reference:.1} ms ({:.2}x)", p99 / reference),
                );
            }
        }
        Scenario::RegionDown => {
            if let Some(s) = gm.success_during_fault.filter(|&s| s < 0.99) {
                violation(
                    &mut v,
                    "4a >= 99% of jobs succeed",
                    format!("{:.3}%", s * 100.0),
                );
            }
            match gm.back_in_region_ms {
                Some(b) if b <= 5_000.0 => {}
                other => violation(
                    &mut v,
                    "4b back in region within 5 s",
                    format!("{other:?} ms"),
                ),
            }
            if let Some(o) = gm.oscillations.filter(|&o| o > 0) {
                violation(
                    &mut v,
                    "4c no oscillation",
                    format!("{o} windows fell below 80% after recovery"),
                );
            }
        }
        _ => {}
    }
    v
}

fn opt(x: Option<f64>, scale: f64, decimals: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{:.*}", decimals, x * scale))
}

/// A fixed-width table of one report (deterministic text).
pub fn table(report: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  seed {}  {} nodes/region  {} orchestrators  {} s  {} jobs/s",
        report.scenario,
        report.seed,
        report.size.nodes_per_region,
        report.size.orchestrators,
        report.size.duration_s,
        report.size.jobs_per_s
    );
    let _ = writeln!(
        out,
        "{:<12} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "policy",
        "jobs",
        "failed",
        "p50 ms",
        "p99 ms",
        "accuracy",
        "in-reg",
        "loaddev",
        "tries",
        "avoid ms",
        "tgt%>2s",
        "back ms",
        "ok%fault"
    );
    for m in report.results.iter().chain(&report.late_truth) {
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>6} {:>8.1} {:>8.1} {:>7.2}% {:>7.2}% {:>7.3} {:>6.2} {:>8} {:>8} {:>8} {:>8}",
            m.policy,
            m.jobs,
            m.failed,
            m.latency_p50_ms,
            m.latency_p99_ms,
            m.accuracy * 100.0,
            m.in_region * 100.0,
            m.load_deviation,
            m.attempts_per_job,
            opt(m.avoid_ms, 1.0, 0),
            opt(m.target_share_after_2s, 100.0, 2),
            opt(m.back_in_region_ms, 1.0, 0),
            opt(m.success_during_fault, 100.0, 2),
        );
    }
    if report.late_truth.is_some() {
        let _ = writeln!(
            out,
            "late-truth: a yardstick, not a gateway: exact state of every orchestrator, a one-way delay late"
        );
    }
    if let Some(r) = report.reference_p99_ms {
        let _ = writeln!(
            out,
            "reference p99 without the slow orchestrator: {r:.1} ms"
        );
    }
    if let (Some(p50), Some(p99)) = (
        report.results.first().and_then(|m| m.propagation_p50_ms),
        report.results.first().and_then(|m| m.propagation_p99_ms),
    ) {
        let _ = writeln!(
            out,
            "view propagation (gatemesh): p50 {p50:.1} ms, p99 {p99:.1} ms"
        );
    }
    if report.violations.is_empty() {
        let _ = writeln!(out, "properties: all held");
    } else {
        for v in &report.violations {
            let _ = writeln!(out, "PROPERTY VIOLATED: {}: {}", v.property, v.detail);
        }
        let _ = writeln!(out, "replay: {}", report.replay);
    }
    out
}

/// Aggregate of many seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// Scenario name.
    pub scenario: String,
    /// Seeds run: `0..seeds`.
    pub seeds: u64,
    /// Mean figures per policy over the seeds (gatemesh first).
    pub mean: Vec<RunMetrics>,
    /// Mean figures of the late-truth bound, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_truth: Option<RunMetrics>,
    /// When the bound ran: the seeds where gatemesh's steady accuracy is
    /// under 95 % and the bound's is not (where knowing more would have
    /// been enough).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub under_95_but_bound_over: Option<Vec<u64>>,
    /// Worst gatemesh figures over the seeds.
    pub worst: WorstCase,
    /// Seeds where a property failed, with what failed and how to replay.
    pub failing: Vec<FailingSeed>,
}

/// Worst gatemesh values over a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorstCase {
    /// Lowest accuracy.
    pub accuracy: f64,
    /// Most failed requests.
    pub failed: u64,
    /// Highest p99.
    pub latency_p99_ms: f64,
    /// Longest avoid time.
    pub avoid_ms: Option<f64>,
    /// Longest return to region.
    pub back_in_region_ms: Option<f64>,
}

/// A seed that violated a property.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailingSeed {
    /// The seed.
    pub seed: u64,
    /// What failed.
    pub violations: Vec<Violation>,
    /// How to replay it.
    pub replay: String,
}

/// Run seeds `0..seeds` on `threads` threads; the result does not depend on
/// the thread count or scheduling (reports are put back in seed order).
pub fn sweep(scenario: Scenario, size: Size, seeds: u64, threads: usize) -> SweepReport {
    sweep_with(scenario, size, seeds, threads, RunOptions::default())
}

/// [`sweep`], with the late-truth bound run for every seed if `options` ask.
pub fn sweep_with(
    scenario: Scenario,
    size: Size,
    seeds: u64,
    threads: usize,
    options: RunOptions,
) -> SweepReport {
    let threads = threads.max(1);
    // Each worker takes the next seed when it is done with one (seeds differ
    // in cost, a fixed split would leave a core idle at the end); reports are
    // put back in seed order, so the output does not depend on the threads.
    let next = std::sync::atomic::AtomicU64::new(0);
    let mut reports: Vec<ScenarioReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= seeds {
                            break done;
                        }
                        done.push(run_scenario_with(scenario, size, seed, options));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    reports.sort_by_key(|r| r.seed);
    aggregate(scenario, seeds, &reports)
}

/// The mean of one policy's figures over seeds (totals for counts).
fn mean_metrics(col: &[&RunMetrics]) -> RunMetrics {
    let n = col.len().max(1) as f64;
    let round = |x: f64| (x * 1e4).round() / 1e4;
    let avg = |f: &dyn Fn(&RunMetrics) -> f64| round(col.iter().map(|m| f(m)).sum::<f64>() / n);
    let avg_opt = |f: &dyn Fn(&RunMetrics) -> Option<f64>| {
        let v: Vec<f64> = col.iter().filter_map(|m| f(m)).collect();
        (!v.is_empty()).then(|| round(v.iter().sum::<f64>() / v.len() as f64))
    };
    RunMetrics {
        policy: col.first().map(|m| m.policy.clone()).unwrap_or_default(),
        jobs: col.iter().map(|m| m.jobs).sum(),
        failed: col.iter().map(|m| m.failed).sum(),
        latency_p50_ms: avg(&|m| m.latency_p50_ms),
        latency_p99_ms: avg(&|m| m.latency_p99_ms),
        accuracy: avg(&|m| m.accuracy),
        accuracy_on_arrival: avg(&|m| m.accuracy_on_arrival),
        in_region: avg(&|m| m.in_region),
        load_deviation: avg(&|m| m.load_deviation),
        attempts_per_job: avg(&|m| m.attempts_per_job),
        over_cap_picks: col.iter().map(|m| m.over_cap_picks).sum(),
        avoid_ms: avg_opt(&|m| m.avoid_ms),
        target_share_after_2s: avg_opt(&|m| m.target_share_after_2s),
        post_fault_p99_ms: avg_opt(&|m| m.post_fault_p99_ms),
        success_during_fault: avg_opt(&|m| m.success_during_fault),
        back_in_region_ms: avg_opt(&|m| m.back_in_region_ms),
        oscillations: Some(col.iter().filter_map(|m| m.oscillations).sum()),
        propagation_p50_ms: avg_opt(&|m| m.propagation_p50_ms),
        propagation_p99_ms: avg_opt(&|m| m.propagation_p99_ms),
        forwarded: col.iter().map(|m| m.forwarded).sum(),
        events: col.iter().map(|m| m.events).sum(),
    }
}

fn aggregate(scenario: Scenario, seeds: u64, reports: &[ScenarioReport]) -> SweepReport {
    let policies = reports.first().map_or(0, |r| r.results.len());
    let mean = (0..policies)
        .map(|p| {
            let col: Vec<&RunMetrics> = reports.iter().map(|r| &r.results[p]).collect();
            mean_metrics(&col)
        })
        .collect();
    let bounds: Vec<&RunMetrics> = reports
        .iter()
        .filter_map(|r| r.late_truth.as_ref())
        .collect();
    let late_truth = (!bounds.is_empty()).then(|| mean_metrics(&bounds));
    let under_95_but_bound_over = late_truth.is_some().then(|| {
        reports
            .iter()
            .filter(|r| {
                r.violations.iter().any(|v| v.property.starts_with("5a"))
                    && r.late_truth.as_ref().is_some_and(|b| b.accuracy >= 0.95)
            })
            .map(|r| r.seed)
            .collect()
    });
    let gm: Vec<&RunMetrics> = reports.iter().filter_map(|r| r.results.first()).collect();
    let max_opt = |xs: Vec<Option<f64>>| xs.into_iter().flatten().max_by(f64::total_cmp);
    let worst = WorstCase {
        accuracy: gm
            .iter()
            .map(|m| m.accuracy)
            .min_by(f64::total_cmp)
            .unwrap_or(0.0),
        failed: gm.iter().map(|m| m.failed).max().unwrap_or(0),
        latency_p99_ms: gm
            .iter()
            .map(|m| m.latency_p99_ms)
            .max_by(f64::total_cmp)
            .unwrap_or(0.0),
        avoid_ms: max_opt(gm.iter().map(|m| m.avoid_ms).collect()),
        back_in_region_ms: max_opt(gm.iter().map(|m| m.back_in_region_ms).collect()),
    };
    let failing = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| FailingSeed {
            seed: r.seed,
            violations: r.violations.clone(),
            replay: r.replay.clone(),
        })
        .collect();
    SweepReport {
        scenario: scenario.name().to_owned(),
        seeds,
        mean,
        late_truth,
        under_95_but_bound_over,
        worst,
        failing,
    }
}

/// A fixed-width table of a sweep (deterministic text).
pub fn sweep_table(report: &SweepReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  seeds 0..{}  (means over seeds; jobs/failed are totals)",
        report.scenario, report.seeds
    );
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8}",
        "policy",
        "jobs",
        "failed",
        "p50 ms",
        "p99 ms",
        "accuracy",
        "in-reg",
        "loaddev",
        "avoid ms",
        "tgt%>2s",
        "back ms"
    );
    for m in report.mean.iter().chain(&report.late_truth) {
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>7} {:>8.1} {:>8.1} {:>7.2}% {:>7.2}% {:>7.3} {:>8} {:>8} {:>8}",
            m.policy,
            m.jobs,
            m.failed,
            m.latency_p50_ms,
            m.latency_p99_ms,
            m.accuracy * 100.0,
            m.in_region * 100.0,
            m.load_deviation,
            opt(m.avoid_ms, 1.0, 0),
            opt(m.target_share_after_2s, 100.0, 2),
            opt(m.back_in_region_ms, 1.0, 0),
        );
    }
    if let Some(seeds) = &report.under_95_but_bound_over {
        let _ = writeln!(
            out,
            "late-truth: a yardstick, not a gateway: exact state of every orchestrator, a one-way delay late"
        );
        let _ = writeln!(
            out,
            "seeds under 95 % steady accuracy where late-truth reaches 95 %: {} {:?}",
            seeds.len(),
            seeds
        );
    }
    let w = &report.worst;
    let _ = writeln!(
        out,
        "gatemesh worst: accuracy {:.2}%  failed {}  p99 {:.1} ms  avoid {} ms  back {} ms",
        w.accuracy * 100.0,
        w.failed,
        w.latency_p99_ms,
        opt(w.avoid_ms, 1.0, 0),
        opt(w.back_in_region_ms, 1.0, 0)
    );
    if report.failing.is_empty() {
        let _ = writeln!(out, "properties: held on every seed");
    } else {
        let _ = writeln!(
            out,
            "properties failed on {} of {} seeds:",
            report.failing.len(),
            report.seeds
        );
        for f in &report.failing {
            for v in &f.violations {
                let _ = writeln!(out, "  seed {}: {}: {}", f.seed, v.property, v.detail);
            }
            let _ = writeln!(out, "    replay: {}", f.replay);
        }
    }
    out
}
