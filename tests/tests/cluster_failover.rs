//! Cross-region failover end to end: a job sent to a region whose
//! orchestrators are all down still succeeds through another region, by
//! calling that region's orchestrators directly; and when this region
//! cannot reach them either, by forwarding the job over the mesh to a node
//! of that region (a batch job and an SSE stream).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::OrchestratorId;
use serde_json::{Value, json};
use tests::lab::{Lab, LabSpec, poll_until};
use tests::{JobAnswer, check_images, check_png};

/// Jobs sent while fra's orchestrators are down.
const JOBS: usize = 10;

/// Starts the lab and waits until every node's view holds every
/// orchestrator's info.
async fn lab(spec: LabSpec) -> anyhow::Result<Lab> {
    let lab = Lab::start(spec).await?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_all_alive(&everyone, Duration::from_secs(10))
        .await?;
    lab.wait_ready().await?;
    let urls = lab.orchestrator_urls();
    poll_until(
        "every view to hold every orchestrator's info",
        Duration::from_secs(20),
        || {
            lab.running().into_iter().all(|i| {
                let snapshot = lab.node(i).cluster().snapshot();
                urls.iter().all(|(_, url)| {
                    OrchestratorId::parse(url)
                        .ok()
                        .and_then(|id| snapshot.orchestrator(&id).map(|o| o.info.is_some()))
                        .unwrap_or(false)
                })
            })
        },
    )
    .await?;
    Ok(lab)
}

/// Forwarded jobs run by the lab's nodes, summed.
fn forwards_served(lab: &Lab) -> u64 {
    lab.running()
        .into_iter()
        .map(|i| lab.mesh(i).stats().forwards_served_total)
        .sum()
}

fn region_of(lab: &Lab, orchestrator: &str) -> Option<usize> {
    lab.orchestrator_urls()
        .into_iter()
        .find(|(_, url)| url == orchestrator)
        .map(|(r, _)| r)
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Waits until `node`'s view has every orchestrator of `region` ejected.
async fn wait_ejected(lab: &Lab, node: usize, region: usize) -> anyhow::Result<Duration> {
    let ids: Vec<OrchestratorId> = lab
        .orchestrators(region)
        .iter()
        .map(|o| OrchestratorId::parse(o.url()))
        .collect::<Result<_, _>>()?;
    poll_until(
        "the region's orchestrators to be ejected",
        Duration::from_secs(10),
        || {
            let snapshot = lab.node(node).cluster().snapshot();
            let now = tests::lab::unix_ms();
            ids.iter().all(|id| {
                snapshot
                    .orchestrator(id)
                    .is_some_and(|o| o.ejected_until_ms > now)
            })
        },
    )
    .await
}

/// From fra, the other regions' orchestrators answer too late to be used
/// (10 s); from the other regions' nodes, orchestrator `i` of region `r`
/// answers after `delay_ms(r, i)` ms.
fn cut_fra_off(lab: &Lab, delay_ms: impl Fn(usize, usize) -> u64) {
    for region in 1..lab.spec().regions.len() {
        for (i, orchestrator) in lab.orchestrators(region).iter().enumerate() {
            let table: BTreeMap<IpAddr, u64> = lab
                .delay_table(region, 0)
                .into_keys()
                .map(|ip| {
                    let from = lab
                        .members()
                        .iter()
                        .find(|m| IpAddr::V4(m.ip) == ip)
                        .map(|m| m.region_index);
                    let delay = match from {
                        Some(0) => 10_000,
                        Some(r) if r == region => delay_ms(region, i),
                        _ => 0,
                    };
                    (ip, delay)
                })
                .collect();
            orchestrator.set_region_latency(table);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_to_a_region_without_orchestrators_are_served_by_another_region() -> anyhow::Result<()>
{
    let mut spec = LabSpec::three_regions();
    spec.cross_region_delay_ms = 20;
    let lab = lab(spec).await?;
    let fra_1 = lab.index_of("fra-1").context("fra-1")?;
    for orchestrator in lab.orchestrators(0) {
        orchestrator.crash().await;
    }
    // No wait for discovery: the first jobs may still try a dead one.
    for n in 0..JOBS {
        let response = lab
            .post_json(
                fra_1,
                "/text-to-image",
                &json!({ "prompt": format!("failover {n}") }),
            )
            .send()
            .await?;
        let region = header(&response, "x-gatemesh-region");
        let answer = JobAnswer::read(response).await?;
        ensure!(
            answer.status == 200,
            "job {n}: {} {}",
            answer.status,
            answer.body
        );
        let orchestrator = answer
            .orchestrator
            .clone()
            .context("x-gatemesh-orchestrator")?;
        let served_by = region_of(&lab, &orchestrator).context("an orchestrator of the lab")?;
        ensure!(
            served_by != 0,
            "job {n} served by fra's {orchestrator}, which is down"
        );
        ensure!(
            answer.attempts.is_some_and(|a| a >= 1),
            "x-gatemesh-attempts {:?}",
            answer.attempts
        );
        ensure!(region.is_some(), "no x-gatemesh-region");
        let images = check_images(&answer.body, 1)?;
        let png = lab.client().get(&images[0]).send().await?.bytes().await?;
        check_png(&png)?;
        eprintln!(
            "failover job {n}: 200 via {orchestrator} ({}), x-gatemesh-region {region:?}, attempts {:?}",
            lab.spec().regions[served_by],
            answer.attempts
        );
    }
    lab.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_forwarded_to_another_region_when_none_of_its_orchestrators_is_reachable_from_here()
-> anyhow::Result<()> {
    // fra's nodes make ONE orchestrator attempt per job, then forward.
    let mut spec = LabSpec::three_regions().line(Some("fra"), "jobs", "max_attempts = 1");
    spec.get_orchestrator_timeout_ms = 500;
    let lab = lab(spec).await?;
    let fra_1 = lab.index_of("fra-1").context("fra-1")?;
    for orchestrator in lab.orchestrators(0) {
        orchestrator.crash().await;
    }
    cut_fra_off(&lab, |_, _| 0);
    wait_ejected(&lab, fra_1, 0).await?;

    // A batch job.
    let response = lab
        .post_json(fra_1, "/text-to-image", &json!({ "prompt": "forwarded" }))
        .send()
        .await?;
    let region = header(&response, "x-gatemesh-region");
    let answer = JobAnswer::read(response).await?;
    ensure!(
        answer.status == 200,
        "forwarded job: {} {}",
        answer.status,
        answer.body
    );
    let orchestrator = answer
        .orchestrator
        .clone()
        .context("x-gatemesh-orchestrator")?;
    let served_by = region_of(&lab, &orchestrator).context("an orchestrator of the lab")?;
    let region = region.context("x-gatemesh-region")?;
    ensure!(
        served_by != 0 && region == lab.spec().regions[served_by],
        "forwarded job: run by region {region}, orchestrator of region {served_by}"
    );
    let served = forwards_served(&lab);
    ensure!(served >= 1, "no node ran a forwarded job");
    let images = check_images(&answer.body, 1)?;
    let png = lab.client().get(&images[0]).send().await?.bytes().await?;
    check_png(&png)?;
    eprintln!(
        "forwarded batch job: 200, x-gatemesh-region {region}, orchestrator {orchestrator}, attempts {:?}",
        answer.attempts
    );

    // An SSE stream, relayed chunk by chunk through the forward.
    let response = lab
        .post_json(
            fra_1,
            "/llm",
            &json!({"messages": [{"role": "user", "content": "stream through the mesh"}], "max_tokens": 6, "stream": true}),
        )
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "forwarded stream: status {}",
        response.status()
    );
    let content_type = header(&response, "content-type").unwrap_or_default();
    ensure!(
        content_type.starts_with("text/event-stream"),
        "content type {content_type:?}"
    );
    let region =
        header(&response, "x-gatemesh-region").context("x-gatemesh-region on the stream")?;
    ensure!(region != "fra", "the stream was served in fra");
    let mut response = response;
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = response.chunk().await? {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
        })
        .collect();
    let json_events: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    ensure!(
        json_events.len() >= 2,
        "forwarded stream has {} JSON events: {text:?}",
        json_events.len()
    );
    let content: String = json_events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    ensure!(
        !content.trim().is_empty(),
        "no content in the forwarded stream: {text:?}"
    );
    eprintln!(
        "forwarded SSE stream: 200 from region {region}, {} events in {chunks} chunks, content {content:?}",
        events.len()
    );
    lab.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_jobs_go_to_the_nodes_that_run_our_routing_configuration() -> anyhow::Result<()> {
    // As above, fra forwards every job; lax-1 and sin-1 run another
    // routing configuration (one more pool), lax-2 and sin-2 ours.
    let other_pool = "[pools]\nelsewhere = [\"https://orch-9.example.net:8935\"]";
    let mut spec = LabSpec::three_regions()
        .line(Some("fra"), "jobs", "max_attempts = 1")
        .line(Some("lax-1"), "tables", other_pool)
        .line(Some("sin-1"), "tables", other_pool);
    spec.get_orchestrator_timeout_ms = 500;
    let lab = lab(spec).await?;
    let index = |name: &str| lab.index_of(name).with_context(|| name.to_owned());
    let fra_1 = index("fra-1")?;
    let (lax_1, lax_2, sin_1, sin_2) = (
        index("lax-1")?,
        index("lax-2")?,
        index("sin-1")?,
        index("sin-2")?,
    );
    let ours = lab.node(fra_1).cluster().routing_config();
    ensure!(lab.node(lax_2).cluster().routing_config() == ours);
    ensure!(lab.node(lax_1).cluster().routing_config() != ours);
    poll_until(
        "fra-1 to see that lax-1 and sin-1 run another configuration",
        Duration::from_secs(10),
        || {
            lab.node(fra_1)
                .cluster()
                .metrics()
                .encode()
                .contains("\ngatemesh_mesh_config_mismatched_peers 2\n")
        },
    )
    .await?;
    for orchestrator in lab.orchestrators(0) {
        orchestrator.crash().await;
    }
    cut_fra_off(&lab, |_, _| 0);
    wait_ejected(&lab, fra_1, 0).await?;

    for n in 0..JOBS {
        let response = lab
            .post_json(
                fra_1,
                "/text-to-image",
                &json!({ "prompt": format!("same rules {n}") }),
            )
            .send()
            .await?;
        let answer = JobAnswer::read(response).await?;
        ensure!(
            answer.status == 200,
            "job {n}: {} {}",
            answer.status,
            answer.body
        );
    }
    let served = |i: usize| lab.mesh(i).stats().forwards_served_total;
    ensure!(
        served(lax_1) == 0 && served(sin_1) == 0,
        "nodes with another configuration ran forwarded jobs: lax-1 {}, sin-1 {}",
        served(lax_1),
        served(sin_1)
    );
    ensure!(
        served(lax_2) + served(sin_2) >= JOBS as u64,
        "lax-2 ran {}, sin-2 {} of {JOBS} forwarded jobs",
        served(lax_2),
        served(sin_2)
    );
    lab.shutdown().await;
    Ok(())
}

/// The premium tenant's key in the tier test.
const PREMIUM_KEY: &str = "premium-tenant-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_job_keeps_its_callers_tier_and_so_its_orchestrator_pool() -> anyhow::Result<()>
{
    // Premium callers may only use lax's second orchestrator ("gold"). fra
    // makes one attempt, cannot reach gold, and forwards; the node that
    // runs the job must apply the premium pool too, although its default
    // tier would prefer lax's first orchestrator (gold answers lax's own
    // nodes 300 ms late) or its own region's.
    let mut spec = LabSpec::three_regions()
        .line(Some("fra"), "jobs", "max_attempts = 1")
        .line(
            None,
            "tables",
            &format!("[[keys]]\nkey = \"{PREMIUM_KEY}\"\ntenant = \"vip\"\ntier = \"premium\""),
        )
        .line(
            None,
            "tables",
            "[[offer]]\npipeline = \"text-to-image\"\ntier_pools = { premium = \"gold\" }",
        )
        .line(None, "tables", "[pools]\ngold = [\"@orchestrator:1:1@\"]");
    spec.get_orchestrator_timeout_ms = 500;
    let lab = lab(spec).await?;
    let fra_1 = lab.index_of("fra-1").context("fra-1")?;
    let gold = lab.orchestrators(1)[1].url().to_owned();
    for orchestrator in lab.orchestrators(0) {
        orchestrator.crash().await;
    }
    cut_fra_off(
        &lab,
        |region, i| if (region, i) == (1, 1) { 300 } else { 0 },
    );
    wait_ejected(&lab, fra_1, 0).await?;

    for n in 0..4 {
        let response = lab
            .client()
            .post(format!("{}/text-to-image", lab.node(fra_1).public_url()))
            .bearer_auth(PREMIUM_KEY)
            .json(&json!({ "prompt": format!("premium {n}") }))
            .send()
            .await?;
        let region = header(&response, "x-gatemesh-region");
        let answer = JobAnswer::read(response).await?;
        ensure!(
            answer.status == 200,
            "premium job {n}: {} {}",
            answer.status,
            answer.body
        );
        let orchestrator = answer.orchestrator.context("x-gatemesh-orchestrator")?;
        ensure!(
            orchestrator == gold,
            "premium job {n} ran on {orchestrator} (region {region:?}), outside the premium pool [{gold}]"
        );
        eprintln!(
            "premium job {n}: 200 on the pool's {orchestrator}, x-gatemesh-region {region:?}"
        );
    }
    let served = forwards_served(&lab);
    ensure!(served >= 4, "{served} forwarded jobs run, 4 expected");
    lab.shutdown().await;
    Ok(())
}
