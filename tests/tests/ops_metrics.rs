//! `/metrics` on a running lab: every metric of `docs/metrics.md` is exposed
//! with its documented type and plausible values under traffic, and the
//! stability and failover metrics move when an orchestrator taking traffic
//! is killed.

use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::OrchestratorId;
use tests::lab::{LAB_DEADLINE, Lab, LabSpec, REGIONS};
use tests::ops::{Scrape, Traffic, documented_metrics, scrape, wait_views_complete};
use tests::wait_until;

/// Records a problem instead of returning early, so one run reports all.
macro_rules! check {
    ($problems:expr, $cond:expr, $($arg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            $problems.push(format!($($arg)+));
        }
    };
}

/// How long the test waits for traffic or metrics to move.
const MOVE_DEADLINE: Duration = Duration::from_secs(20);
/// Processing time of every job at the orchestrators.
const JOB_MS: u64 = 400;
/// Pause between two requests of one client loop.
const PACE: Duration = Duration::from_millis(100);

async fn scrape_all(lab: &Lab) -> anyhow::Result<Vec<Scrape>> {
    let mut scrapes = Vec::new();
    for i in lab.running() {
        scrapes.push(
            scrape(lab, i)
                .await
                .with_context(|| format!("scraping {}", lab.members()[i].name))?,
        );
    }
    Ok(scrapes)
}

/// Cluster-wide sums of the stability figures about `victim`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stability {
    ejections: f64,
    failovers: f64,
    retries: f64,
}

fn stability(scrapes: &[Scrape], victim: &str) -> Stability {
    Stability {
        ejections: scrapes
            .iter()
            .map(|s| {
                s.sum(
                    "gatemesh_orchestrator_ejections_total",
                    &[("orchestrator", victim)],
                )
            })
            .sum(),
        failovers: scrapes
            .iter()
            .map(|s| s.sum("gatemesh_failovers_total", &[]))
            .sum(),
        retries: scrapes
            .iter()
            .map(|s| s.sum("gatemesh_job_retries_total", &[]))
            .sum(),
    }
}

/// Metrics that only get a sample (and a `# TYPE` line) once their event
/// happened: none of these events is guaranteed before the crash.
const EVENT_DRIVEN: [&str; 15] = [
    "gatemesh_job_retries_total",
    "gatemesh_failovers_total",
    "gatemesh_orchestrator_ejections_total",
    "gatemesh_orchestrator_flaps_total",
    "gatemesh_orchestrator_last_failure_age_seconds",
    "gatemesh_orchestrator_price_wei_per_unit",
    "gatemesh_mesh_forwards_total",
    "gatemesh_tenant_limit_rejections_total",
    // Only when a filter removes an orchestrator (the lab has no caps).
    "gatemesh_routing_filtered_orchestrators_total",
    // Only for tenants with `[[tenants]]` limits (the lab has none).
    "gatemesh_tenant_usage_ratio",
    // Only after a reload.
    "gatemesh_config_reloads_total",
    // Only with a usage log (`[usage] dir`) and rate cards (the lab has neither).
    "gatemesh_tenant_charged_nano_usd_total",
    "gatemesh_usage_records_total",
    "gatemesh_usage_append_errors_total",
    // Only with `[usage] sink_url`.
    "gatemesh_usage_sink_batches_total",
];

/// Every documented metric is exposed with its documented type and labels;
/// returns the documented metrics that have no `# TYPE` line at all.
fn check_documented(scrape: &Scrape, node: &str) -> anyhow::Result<Vec<String>> {
    let mut absent = Vec::new();
    for metric in documented_metrics()? {
        let Some(kind) = scrape.family_type(&metric.name) else {
            absent.push(metric.name.clone());
            continue;
        };
        ensure!(
            kind == metric.kind,
            "{node}: {} is exposed as a {kind}, documented as a {}",
            metric.name,
            metric.kind
        );
        for sample in scrape.samples.iter().filter(|s| {
            s.name == metric.name
                || s.name
                    .strip_prefix(metric.name.as_str())
                    .is_some_and(|r| matches!(r, "_bucket" | "_count" | "_sum"))
        }) {
            let mut labels: Vec<&str> = sample
                .labels
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "le")
                .collect();
            labels.sort_unstable();
            let mut documented: Vec<&str> = metric.labels.iter().map(String::as_str).collect();
            documented.sort_unstable();
            ensure!(
                labels == documented,
                "{node}: {} has labels {labels:?}, documented {documented:?}",
                sample.name
            );
        }
    }
    Ok(absent)
}

fn check_plausible(
    scrape: &Scrape,
    node: &str,
    region: &str,
    nodes: usize,
    orchs: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let success = scrape.sum(
        "gatemesh_jobs_total",
        &[
            ("outcome", "success"),
            ("pipeline", "text-to-image"),
            ("region", region),
        ],
    );
    check!(
        problems,
        success > 0.0,
        "{node}: no successful text-to-image job counted"
    );
    let durations = scrape.sum(
        "gatemesh_job_duration_seconds_count",
        &[("outcome", "success")],
    );
    check!(
        problems,
        durations >= success,
        "{node}: job_duration count {durations} < successful jobs {success}"
    );
    let duration_sum = scrape.sum(
        "gatemesh_job_duration_seconds_sum",
        &[("outcome", "success")],
    );
    check!(
        problems,
        duration_sum > 0.0 && duration_sum / durations < 10.0,
        "{node}: implausible mean job duration {} s",
        duration_sum / durations
    );
    check!(
        problems,
        scrape.sum(
            "gatemesh_job_attempts_count",
            &[("pipeline", "text-to-image")]
        ) > 0.0,
        "{node}: job_attempts histogram is empty"
    );
    check!(
        problems,
        scrape.sum("gatemesh_routing_latency_ratio_count", &[]) > 0.0,
        "{node}: routing_latency_ratio histogram is empty"
    );
    let alive = scrape.sum("gatemesh_mesh_members", &[("state", "alive")]);
    check!(
        problems,
        alive == nodes as f64,
        "{node}: mesh_members{{state=\"alive\"}} = {alive}, want {nodes}"
    );
    let in_view = scrape.sum("gatemesh_view_orchestrators", &[]);
    check!(
        problems,
        in_view == orchs as f64,
        "{node}: view_orchestrators sums to {in_view}, want {orchs}"
    );
    check!(
        problems,
        scrape.sum("gatemesh_view_orchestrators", &[("status", "ok")]) >= 1.0,
        "{node}: no orchestrator is ok in the view"
    );
    for direction in ["in", "out"] {
        check!(
            problems,
            scrape.sum(
                "gatemesh_mesh_gossip_bytes_total",
                &[("direction", direction)]
            ) > 0.0,
            "{node}: no gossip bytes {direction}"
        );
    }
    check!(
        problems,
        scrape.sum(
            "gatemesh_http_requests_total",
            &[("route", "/text-to-image"), ("status", "200")]
        ) >= success,
        "{node}: http_requests_total for /text-to-image 200 is below the job count"
    );
    check!(
        problems,
        scrape.sum("gatemesh_tenant_requests_total", &[("tenant", "lab")]) >= success,
        "{node}: tenant_requests_total for tenant lab is below the job count"
    );
    let capacity = scrape.sum(
        "gatemesh_orchestrator_capacity",
        &[("pipeline", "text-to-image")],
    );
    check!(
        problems,
        capacity > 0.0,
        "{node}: no advertised text-to-image capacity"
    );
    let in_flight = scrape.sum("gatemesh_jobs_in_flight", &[]);
    check!(
        problems,
        (0.0..=64.0).contains(&in_flight),
        "{node}: jobs_in_flight = {in_flight}"
    );
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_metrics_documented_plausible_and_moving_on_orchestrator_crash() -> anyhow::Result<()> {
    let mut spec = LabSpec::new(&REGIONS, 1, 2);
    // Long enough that a job seen running at an orchestrator is still
    // running when the test kills it, even on a loaded machine: the crash
    // must be found by a job (discovery finds it too, but its ejections are
    // not counted; see the report of this test's author).
    spec.orchestrator_latency_ms = JOB_MS;
    spec.cross_region_delay_ms = 80;
    let lab = Lab::start(spec).await?;
    let all: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_ready().await?;
    lab.wait_all_alive(&all, LAB_DEADLINE).await?;
    wait_views_complete(&lab).await?;
    let nodes = all.len();
    let orchs = lab.orchestrator_urls().len();

    let lanes = all
        .iter()
        .map(|&i| vec![lab.node(i).public_url()])
        .collect();
    let traffic = Traffic::start(lanes, PACE);
    wait_until("5 successful jobs on every node", MOVE_DEADLINE, || {
        let records = traffic.records();
        let done =
            (0..nodes).all(|lane| records.iter().filter(|r| r.lane == lane && r.ok()).count() >= 5);
        async move { done }
    })
    .await?;

    let scrapes = scrape_all(&lab).await?;
    let mut problems: Vec<String> = Vec::new();
    for (scrape, member) in scrapes.iter().zip(lab.members()) {
        let (name, region) = (member.name.as_str(), member.region.as_str());
        let absent = check_documented(scrape, name)?;
        let unexpected: Vec<&String> = absent
            .iter()
            .filter(|m| !EVENT_DRIVEN.contains(&m.as_str()))
            .collect();
        check!(
            problems,
            unexpected.is_empty(),
            "{name}: documented metrics missing from /metrics under traffic: {unexpected:?}"
        );
        println!("ops_metrics: {name}: documented metrics without any series yet: {absent:?}");
        problems.extend(check_plausible(scrape, name, region, nodes, orchs));
    }

    // Kill the fra orchestrator that is running a job right now.
    let fra = lab.orchestrators(0);
    let mut victim = None;
    wait_until(
        "a fra orchestrator with a job in flight",
        MOVE_DEADLINE,
        || {
            victim = fra.iter().find(|o| o.stats().in_flight > 0);
            let found = victim.is_some();
            async move { found }
        },
    )
    .await?;
    let victim = victim.context("a victim was found")?;
    let victim_id = OrchestratorId::parse(victim.url())?.to_string();
    let before = stability(&scrape_all(&lab).await?, &victim_id);
    victim.crash().await;
    let crashed_at = tokio::time::Instant::now();

    let until = crashed_at + MOVE_DEADLINE;
    let after = loop {
        let now = stability(&scrape_all(&lab).await?, &victim_id);
        if now.ejections > before.ejections
            && (now.failovers > before.failovers || now.retries > before.retries)
        {
            break now;
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "victim {victim_id}: the ejection and failover metrics did not move within \
             {MOVE_DEADLINE:?}: before {before:?}, last seen {now:?}"
        );
        tokio::time::sleep(tests::POLL_INTERVAL).await;
    };
    println!(
        "ops_metrics: killed {victim_id}; after {:?}: ejections {} -> {}, failovers {} -> {}, retries {} -> {}",
        crashed_at.elapsed(),
        before.ejections,
        after.ejections,
        before.failovers,
        after.failovers,
        before.retries,
        after.retries
    );

    // The victim's failure gauges are there too, on the nodes that ejected
    // it, and the series that appeared have their documented types and labels.
    let scrapes = scrape_all(&lab).await?;
    for (scrape, member) in scrapes.iter().zip(lab.members()) {
        check_documented(scrape, member.name.as_str())?;
    }
    ensure!(
        scrapes.iter().any(|s| s
            .matching(
                "gatemesh_orchestrator_last_failure_age_seconds",
                &[("orchestrator", victim_id.as_str())]
            )
            .any(|x| (0.0..60.0).contains(&x.value))),
        "no node reports a recent last failure of {victim_id}"
    );
    ensure!(
        scrapes.iter().any(
            |s| s.sum("gatemesh_view_orchestrators", &[("status", "ejected")]) >= 1.0
                || s.sum("gatemesh_view_orchestrators", &[("status", "degraded")]) >= 1.0
        ),
        "no node's view_orchestrators shows {victim_id} ejected or degraded"
    );

    let records = traffic.stop().await;
    let failed: Vec<_> = records.iter().filter(|r| !r.ok()).collect();
    println!(
        "ops_metrics: {} requests, {} failed: {failed:?}",
        records.len(),
        failed.len()
    );
    lab.shutdown().await;
    ensure!(
        problems.is_empty(),
        "/metrics problems under traffic:\n{}",
        problems.join("\n")
    );
    Ok(())
}
