//! Jobs in flight are shared directly between nodes: a job running on node
//! A shows up in node B's routing state (`Cluster::local_state_from`, with
//! `in_flight_includes_peers`) while it runs, and goes back to 0 when it
//! completes. Two in-process nodes of one region, one emulated orchestrator
//! that takes `JOB_MS` per job.

use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::OrchestratorId;
use serde_json::json;
use tests::lab::{Lab, LabSpec, poll_until};
use tokio::time::Instant;

/// Processing time of a job at the orchestrator: long enough to observe it
/// in flight from the other node.
const JOB_MS: u64 = 1_500;
/// Bound for a count to reach the other node (an announcement takes well
/// under 10 ms on loopback; this absorbs a loaded test machine).
const SHARE_DEADLINE: Duration = Duration::from_secs(1);

/// Jobs in flight on `orchestrator` in node `i`'s routing state.
fn routing_in_flight(lab: &Lab, i: usize, orchestrator: &OrchestratorId) -> (u32, bool) {
    let node = lab.node(i);
    let local = node.cluster().local_state_from(node.registry());
    (
        local.in_flight.get(orchestrator).copied().unwrap_or(0),
        local.in_flight_includes_peers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_in_flight_on_one_node_is_counted_by_the_other_within_a_bound() -> anyhow::Result<()>
{
    let mut spec = LabSpec::new(&["fra"], 2, 1);
    spec.orchestrator_latency_ms = JOB_MS;
    let lab = Lab::start(spec).await?;
    lab.wait_all_alive(&[0, 1], Duration::from_secs(10)).await?;
    lab.wait_ready().await?;
    let orchestrator = OrchestratorId::parse(lab.orchestrators(0)[0].url())?;
    ensure!(
        routing_in_flight(&lab, 1, &orchestrator) == (0, true),
        "a node in a mesh routes with the cluster's counts, none yet"
    );

    let request = lab
        .post_json(0, "/text-to-image", &json!({ "prompt": "held" }))
        .send();
    let job = tokio::spawn(request);
    // The job starts on node 0 …
    let started = poll_until(
        "the job to start on node 0",
        Duration::from_secs(10),
        || {
            lab.node(0)
                .registry()
                .in_flight()
                .get(&orchestrator)
                .is_some_and(|&n| n == 1)
        },
    )
    .await?;
    let at_start = Instant::now();
    // … and node 1 counts it for routing.
    let seen = poll_until("node 1 to count node 0's job", SHARE_DEADLINE, || {
        routing_in_flight(&lab, 1, &orchestrator) == (1, true)
    })
    .await?;
    let load = lab.node(1).cluster().load_sharing().context("mesh node")?;
    let peer = &lab.members()[0].name;
    ensure!(load.peer_in_flight_of(peer, &orchestrator) == 1);
    ensure!(
        lab.node(1).registry().in_flight().is_empty(),
        "node 1 runs nothing itself"
    );
    eprintln!(
        "job started on node 0 after {started:?}; node 1 counted it {seen:?} after node 0's registry did"
    );

    let response = job.await??;
    ensure!(
        response.status().is_success(),
        "the job succeeds: {}",
        response.status()
    );
    ensure!(
        at_start.elapsed() >= Duration::from_millis(JOB_MS / 2),
        "the job was observed while it ran"
    );
    let cleared = poll_until("node 1 to see the job end", SHARE_DEADLINE, || {
        routing_in_flight(&lab, 1, &orchestrator) == (0, true) && load.peer_in_flight().is_empty()
    })
    .await?;
    eprintln!("node 1 saw the end {cleared:?} after the response");
    lab.shutdown().await;
    Ok(())
}
