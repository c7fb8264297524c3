//! The merged view end to end: an orchestrator failure that a node of one
//! region records reaches the view of every node of the other regions
//! within 1 s of the record's time (its version's wall clock).

use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::OrchestratorId;
use mesh_core::hlc::Hlc;
use tests::lab::{Lab, LabSpec, REGIONS, poll_until, unix_ms};

/// Acceptance bound on propagation, from the observer's record time.
const PROPAGATION_BOUND_MS: u64 = 1000;

/// The failure record of `observer` about `orchestrator` in `node`'s view:
/// its version, if it carries an error and an ejection.
fn failure_record(node: &node::Node, orchestrator: &OrchestratorId, observer: &str) -> Option<Hlc> {
    let snapshot = node.cluster().snapshot();
    let summary = snapshot.orchestrator(orchestrator)?;
    let record = summary
        .observers
        .iter()
        .find(|o| o.observer.as_str() == observer)?;
    (record.last_error.is_some() && record.ejected_until_ms > 0).then_some(record.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_failure_reaches_every_other_region_within_1_s() -> anyhow::Result<()> {
    let lab = Lab::start(LabSpec::new(&REGIONS, 2, 2)).await?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_all_alive(&everyone, Duration::from_secs(10))
        .await?;
    // Every node's view has every orchestrator (from its own region's observers).
    let orchestrators = lab.orchestrator_urls();
    poll_until(
        "every view to hold every orchestrator",
        Duration::from_secs(20),
        || {
            lab.running().into_iter().all(|i| {
                let snapshot = lab.node(i).cluster().snapshot();
                orchestrators.iter().all(|(_, url)| {
                    OrchestratorId::parse(url)
                        .ok()
                        .and_then(|id| snapshot.orchestrator(&id).map(|o| o.info.is_some()))
                        .unwrap_or(false)
                })
            })
        },
    )
    .await?;

    let victim = &lab.orchestrators(0)[0];
    let victim_id = OrchestratorId::parse(victim.url())?;
    victim.crash().await;

    let observers: Vec<usize> = lab
        .running()
        .into_iter()
        .filter(|&i| lab.members()[i].region_index == 0)
        .collect();
    let remote: Vec<usize> = lab
        .running()
        .into_iter()
        .filter(|&i| lab.members()[i].region_index != 0)
        .collect();
    let mut samples = Vec::new();
    for &o in &observers {
        let observer = lab.members()[o].name.as_str().to_owned();
        let mut version = None;
        poll_until(
            &format!("{observer} to record the failure"),
            Duration::from_secs(10),
            || {
                version = failure_record(lab.node(o), &victim_id, &observer);
                version.is_some()
            },
        )
        .await?;
        let version = version.context("polled")?;
        // Each remote node, polled together: when its view first holds this
        // observer's failure record (or a newer one).
        let mut seen_at: Vec<Option<u64>> = vec![None; remote.len()];
        poll_until(
            &format!("every other region to see {observer}'s record"),
            Duration::from_secs(5),
            || {
                for (k, &r) in remote.iter().enumerate() {
                    if seen_at[k].is_none()
                        && failure_record(lab.node(r), &victim_id, &observer)
                            .is_some_and(|v| v >= version)
                    {
                        seen_at[k] = Some(unix_ms());
                    }
                }
                seen_at.iter().all(Option::is_some)
            },
        )
        .await?;
        for (k, &r) in remote.iter().enumerate() {
            let delay_ms = seen_at[k]
                .unwrap_or(u64::MAX)
                .saturating_sub(version.wall_ms);
            eprintln!(
                "view: {observer}'s failure record on {victim_id} visible on {} after {delay_ms} ms",
                lab.members()[r].name
            );
            samples.push(delay_ms);
            // And routing there avoids it: the merged view has it ejected.
            let snapshot = lab.node(r).cluster().snapshot();
            let summary = snapshot.orchestrator(&victim_id).context("row")?;
            ensure!(
                summary.ejected_until_ms > version.wall_ms,
                "{} does not hold {victim_id} as ejected: {summary:?}",
                lab.members()[r].name
            );
        }
    }
    samples.sort_unstable();
    eprintln!(
        "view: failure propagation over {} (observer, node) pairs: min {} ms, max {} ms",
        samples.len(),
        samples[0],
        samples[samples.len() - 1]
    );
    ensure!(
        samples.iter().all(|&ms| ms <= PROPAGATION_BOUND_MS),
        "propagation above {PROPAGATION_BOUND_MS} ms: {samples:?}"
    );
    lab.shutdown().await;
    Ok(())
}
