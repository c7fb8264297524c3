//! The dashboard renders the live lab in a real browser: headless Chromium
//! loads `<admin>/dashboard`, runs its scripts against the admin API, and
//! the DOM shows every region, every node and the orchestrators. A
//! screenshot goes to `<target>/test-artifacts/lab-dashboard.png`.

use std::time::Duration;

use anyhow::ensure;
use tests::lab::{LAB_DEADLINE, Lab, LabSpec, REGIONS};
use tests::ops::{Traffic, artifact_path, chromium, wait_views_complete};
use tests::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_dashboard_shows_regions_nodes_and_orchestrators() -> anyhow::Result<()> {
    // Fail, not skip, when the browser is missing.
    chromium::binary()?;

    let mut spec = LabSpec::new(&REGIONS, 2, 2);
    spec.orchestrator_latency_ms = 50;
    spec.cross_region_delay_ms = 80;
    let lab = Lab::start(spec).await?;
    let all: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_ready().await?;
    lab.wait_all_alive(&all, LAB_DEADLINE).await?;
    wait_views_complete(&lab).await?;
    let lanes = all
        .iter()
        .map(|&i| vec![lab.node(i).public_url()])
        .collect();
    let traffic = Traffic::start(lanes, Duration::from_millis(150));
    wait_until("10 successful jobs", Duration::from_secs(30), || {
        let ok = traffic.records().iter().filter(|r| r.ok()).count();
        async move { ok >= 10 }
    })
    .await?;

    let url = format!("{}/dashboard", lab.node(0).admin_url());
    let dom = chromium::dump_dom(&url).await?;
    let mut missing = Vec::new();
    for region in REGIONS {
        // A region card: `<div class="region …" data-region="fra">`.
        if !dom.contains(&format!("data-region=\"{region}\"")) {
            missing.push(format!("region card {region}"));
        }
    }
    for member in lab.members() {
        if !dom.contains(member.name.as_str()) {
            missing.push(format!("node {}", member.name));
        }
    }
    let orchestrators: Vec<String> = lab
        .orchestrator_urls()
        .into_iter()
        .map(|(_, url)| url)
        .collect();
    let shown = orchestrators
        .iter()
        .filter(|u| dom.contains(u.as_str()))
        .count();
    if shown == 0 {
        missing.push(format!("any of the orchestrators {orchestrators:?}"));
    }
    // (The page's script holds the attribute's name too: look for values.)
    for member in lab.members() {
        if dom.contains(&format!("data-other-config=\"{}\"", member.name)) {
            missing.push(format!(
                "no \"other config\" mark on {} (every node runs the same file)",
                member.name
            ));
        }
    }
    ensure!(
        missing.is_empty(),
        "the dashboard DOM lacks {missing:?}; DOM ({} bytes):\n{}",
        dom.len(),
        dom.chars().take(4000).collect::<String>()
    );

    let screenshot = artifact_path("lab-dashboard.png");
    chromium::screenshot(&url, &screenshot, 1400, 900).await?;
    let png = std::fs::read(&screenshot)?;
    let (width, height) = tests::check_png(&png)?;
    ensure!(
        width >= 1000 && height >= 600,
        "screenshot is {width}×{height}"
    );
    println!(
        "ops_dashboard: {shown}/{} orchestrator URLs in the DOM; screenshot {} ({width}×{height}, {} bytes)",
        orchestrators.len(),
        screenshot.display(),
        png.len()
    );

    traffic.stop().await;
    lab.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_dashboard_marks_a_node_that_runs_another_routing_configuration() -> anyhow::Result<()>
{
    chromium::binary()?;
    let spec = LabSpec::new(&REGIONS[..2], 1, 0).line(
        Some("lax"),
        "tables",
        "[pools]\ngold = [\"https://orch-1.example.net:8935\"]",
    );
    let lab = Lab::start(spec).await?;
    lab.wait_all_alive(&[0, 1], LAB_DEADLINE).await?;
    let lax = lab.members()[1].name.to_string();
    // The digest travels by gossip: wait until fra sees lax's.
    let theirs = lab.node(1).cluster().routing_config();
    wait_until("fra sees lax's routing configuration", LAB_DEADLINE, || {
        let seen = lab
            .node(0)
            .cluster()
            .members()
            .iter()
            .any(|m| m.node.as_str() == lax && m.routing_config.as_deref() == Some(&theirs));
        async move { seen }
    })
    .await?;
    let dom = chromium::dump_dom(&format!("{}/dashboard", lab.node(0).admin_url())).await?;
    ensure!(
        dom.contains(&format!("data-other-config=\"{lax}\"")),
        "no \"other config\" mark on {lax}; DOM ({} bytes):\n{}",
        dom.len(),
        dom.chars().take(4000).collect::<String>()
    );
    let fra = lab.members()[0].name.to_string();
    ensure!(
        !dom.contains(&format!("data-other-config=\"{fra}\"")),
        "{fra} is the node itself"
    );
    lab.shutdown().await;
    Ok(())
}
