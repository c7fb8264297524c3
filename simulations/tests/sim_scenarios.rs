//! The acceptance properties, asserted on small versions of each scenario
//! (`Size::SMALL`: 3 regions × 2 nodes, 18 orchestrators, 30 s, 60 jobs/s),
//! plus determinism. Full-size figures come from release runs of
//! `gatemesh-sim` (see SIMULATION.md).

use simulations::sim::report::{ScenarioReport, check};
use simulations::sim::{
    Plan, PolicyKind, RunOptions, Scenario, Size, run_policy, run_scenario, run_scenario_with,
    sweep_table, sweep_with, table,
};

const SEED: u64 = 3;

fn run(scenario: Scenario) -> ScenarioReport {
    let report = run_scenario(scenario, Size::SMALL, SEED);
    println!("{}", table(&report));
    report
}

fn violations(report: &ScenarioReport, prefix: &str) -> Vec<String> {
    report
        .violations
        .iter()
        .filter(|v| v.property.starts_with(prefix))
        .map(|v| format!("{}: {} (replay: {})", v.property, v.detail, report.replay))
        .collect()
}

/// Smaller still, for the determinism check (it runs three times).
const TINY: Size = Size {
    nodes_per_region: 2,
    orchestrators: 12,
    duration_s: 15.0,
    jobs_per_s: 40.0,
};

#[test]
fn same_seed_gives_byte_identical_output() {
    let a = serde_json::to_string(&run_scenario(Scenario::Flapping, TINY, 11)).unwrap();
    let b = serde_json::to_string(&run_scenario(Scenario::Flapping, TINY, 11)).unwrap();
    assert_eq!(a, b);
    let c = serde_json::to_string(&run_scenario(Scenario::Flapping, TINY, 12)).unwrap();
    assert_ne!(a, c, "a different seed must give a different run");
}

#[test]
fn every_scenario_parses_by_name_and_serves_jobs() {
    for scenario in Scenario::ALL {
        assert_eq!(scenario.name().parse::<Scenario>().unwrap(), scenario);
    }
    assert!("no-such".parse::<Scenario>().is_err());
    let plan = Plan::new(Scenario::Steady, Size::SMALL, SEED);
    let m = run_policy(&plan, PolicyKind::Livepeer);
    assert!(m.jobs > 1_000, "{m:?}");
    assert_eq!(m.failed, 0, "{m:?}");
}

#[test]
fn property_2_orchestrator_crash() {
    let report = run(Scenario::OrchestratorCrash);
    let gm = &report.results[0];
    assert!(gm.avoid_ms.is_some());
    let v = violations(&report, "2");
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn property_3a_slow_orchestrator_share_below_1_percent_after_2_s() {
    let report = run(Scenario::SlowOrchestrator);
    let v = violations(&report, "3a");
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn property_3b_slow_orchestrator_p99_within_1_2x() {
    let report = run(Scenario::SlowOrchestrator);
    assert!(report.reference_p99_ms.is_some());
    let v = violations(&report, "3b");
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn property_4_region_down() {
    let report = run(Scenario::RegionDown);
    assert!(report.results[0].back_in_region_ms.is_some());
    let v = violations(&report, "4");
    assert!(v.is_empty(), "{v:#?}");
}

/// The cluster of the acceptance criteria (3 regions × 3 nodes, 50
/// orchestrators, 150 jobs/s), shortened to 20 s: in the small world each
/// region has 6 orchestrators, so a fifth of the jobs cross regions and
/// accuracy is bounded by how late load crosses an ocean (SIMULATION.md).
const STEADY_ACCEPTANCE: Size = Size {
    duration_s: 20.0,
    ..Size::FULL
};

/// How far gatemesh may trail the late-truth bound (routing on every
/// orchestrator's exact state a one-way delay late) on that run: 0.64
/// points today, 1.27 with the load tie-break at 0.1. Over 1,000 full-length
/// seeds it trails by 0.31 points on average (2.5 on seed 971). A routing
/// change that wastes what the node can know shows here first.
const MAX_POINTS_BEHIND_LATE_TRUTH: f64 = 1.0;

#[test]
fn property_5a_steady_accuracy_at_least_95_percent() {
    let options = RunOptions { late_truth: true };
    let report = run_scenario_with(Scenario::Steady, STEADY_ACCEPTANCE, SEED, options);
    println!("{}", table(&report));
    let v = violations(&report, "5a");
    assert!(v.is_empty(), "{v:#?}");
    let gatemesh = report.results[0].accuracy;
    let bound = report.late_truth.as_ref().map_or(0.0, |b| b.accuracy);
    assert!(
        gatemesh * 100.0 >= bound * 100.0 - MAX_POINTS_BEHIND_LATE_TRUTH,
        "gatemesh {gatemesh:.4} trails the late-truth bound {bound:.4} by more than \
         {MAX_POINTS_BEHIND_LATE_TRUTH:.1} points"
    );
}

#[test]
fn property_5b_accuracy_above_every_baseline_in_every_scenario() {
    let mut failures = Vec::new();
    for scenario in Scenario::ALL {
        let plan = Plan::new(scenario, Size::SMALL, SEED);
        let results: Vec<_> = PolicyKind::ALL
            .iter()
            .map(|&k| run_policy(&plan, k))
            .collect();
        for v in check(&plan, &results, None)
            .into_iter()
            .filter(|v| v.property.starts_with("5b"))
        {
            failures.push(format!("{scenario}: {}", v.detail));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_late_truth_bound_runs_beside_the_policies_only_when_asked() {
    let with = RunOptions { late_truth: true };
    let report = run_scenario_with(Scenario::Steady, TINY, 11, with);
    let bound = report.late_truth.as_ref().expect("asked for the bound");
    let gatemesh = &report.results[0];
    assert_eq!(bound.policy, "late-truth");
    // The same clients: the bound serves the jobs gatemesh serves.
    assert_eq!(bound.jobs, gatemesh.jobs);
    assert!(bound.accuracy > 0.5 && bound.accuracy <= 1.0, "{bound:?}");
    // It is a yardstick: the properties are gatemesh's alone, and a 5a
    // miss names the bound beside gatemesh's figure.
    let plain = run_scenario(Scenario::Steady, TINY, 11);
    let properties = |r: &ScenarioReport| -> Vec<String> {
        r.violations.iter().map(|v| v.property.clone()).collect()
    };
    assert_eq!(properties(&report), properties(&plain));
    for v in report
        .violations
        .iter()
        .filter(|v| v.property.starts_with("5a"))
    {
        assert!(
            v.detail
                .ends_with(&format!("(late-truth bound {:.4})", bound.accuracy)),
            "{v:?}"
        );
    }
    assert!(table(&report).contains("\nlate-truth "));

    // Without the option, neither the table nor the JSON changes.
    assert!(plain.late_truth.is_none());
    assert!(!table(&plain).contains("late-truth"));
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("late_truth")
    );

    let sweep = sweep_with(Scenario::Steady, TINY, 2, 2, with);
    let mean = sweep.late_truth.as_ref().expect("the bound's mean");
    assert_eq!(mean.policy, "late-truth");
    assert!(sweep.under_95_but_bound_over.is_some());
    assert!(
        sweep_table(&sweep).contains("seeds under 95 % steady accuracy where late-truth reaches"),
        "{}",
        sweep_table(&sweep)
    );
}
