//! A partition, end to end: fra is cut off from lax and sin (the mesh's
//! fault-injection link filter on every node) for 30 s while every node
//! keeps writing observations and both sides change the blocklist; after
//! healing, every node's view is identical within 2 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::ensure;
use mesh::{LinkFilter, MemberState};
use mesh_core::{NodeId, OrchestratorId, Pipeline};
use tests::lab::{Lab, LabSpec, REGIONS, ViewDigest, poll_until, unix_ms};
use tokio::time::Instant;

/// How long the sides stay apart.
const PARTITION: Duration = Duration::from_secs(30);
/// Acceptance bound: views identical this soon after healing.
const HEAL_BOUND: Duration = Duration::from_secs(2);
/// How often each node writes an observation during the partition.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// Orchestrators the nodes write about (no real ones: the test writes).
const ORCHESTRATORS: usize = 4;

fn orchestrator(k: usize) -> OrchestratorId {
    OrchestratorId::parse(&format!("https://127.0.0.1:{}", 40_001 + k)).expect("valid id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_identical_within_2_s_after_a_30_s_partition() -> anyhow::Result<()> {
    // Discovery has nothing to refresh: only this test writes observations.
    let lab = Lab::start(LabSpec::new(&REGIONS, 2, 0)).await?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_all_alive(&everyone, Duration::from_secs(10))
        .await?;

    let side_a: Vec<usize> = everyone
        .iter()
        .copied()
        .filter(|&i| lab.members()[i].region_index == 0)
        .collect();
    let side_b: Vec<usize> = everyone
        .iter()
        .copied()
        .filter(|&i| lab.members()[i].region_index != 0)
        .collect();
    let names = |side: &[usize]| -> Arc<Vec<NodeId>> {
        Arc::new(
            side.iter()
                .map(|&i| lab.members()[i].name.clone())
                .collect(),
        )
    };
    let (names_a, names_b) = (names(&side_a), names(&side_b));
    for (side, other) in [(&side_a, &names_b), (&side_b, &names_a)] {
        for &i in side.iter() {
            let other = other.clone();
            let filter: LinkFilter = Arc::new(move |peer: &NodeId| !other.contains(peer));
            lab.mesh(i).set_link_filter(Some(filter));
        }
    }
    let cut_at = unix_ms();
    let apart = poll_until(
        "both sides to see the other dead",
        Duration::from_secs(5),
        || {
            side_a.iter().all(|&a| {
                side_b
                    .iter()
                    .all(|&b| state(&lab, a, b) == Some(MemberState::Dead))
            }) && side_b.iter().all(|&b| {
                side_a
                    .iter()
                    .all(|&a| state(&lab, b, a) == Some(MemberState::Dead))
            })
        },
    )
    .await?;
    eprintln!("partition: both sides saw the other dead {apart:?} after the cut");

    // Every node writes observations; each side changes the blocklist.
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = everyone
        .iter()
        .map(|&i| {
            let cluster = lab.node(i).cluster().clone();
            let writing = writing.clone();
            tokio::spawn(async move {
                let mut n = 0usize;
                while writing.load(Ordering::SeqCst) {
                    let id = orchestrator(n % ORCHESTRATORS);
                    let model = Pipeline::TextToImage.default_model_id();
                    cluster.record_success(&id, Pipeline::TextToImage, model, 20 + (n % 50) as u32);
                    n += 1;
                    tokio::time::sleep(WRITE_EVERY).await;
                }
                n
            })
        })
        .collect();
    let _ = lab.node(side_a[0]).cluster().block(orchestrator(0));
    let _ = lab.node(side_b[0]).cluster().block(orchestrator(1));
    tokio::time::sleep(PARTITION).await;

    // The partition held: neither side has the other's recent writes.
    for (side, other) in [(&side_a, &names_b), (&side_b, &names_a)] {
        for &i in side.iter() {
            let digest = ViewDigest::of(lab.node(i));
            for observers in digest.versions.values() {
                for (observer, version) in observers {
                    let crossed = other.iter().any(|n| n.as_str() == observer)
                        && version.wall_ms > cut_at + apart.as_millis() as u64;
                    ensure!(
                        !crossed,
                        "{observer}'s write of {version:?} crossed the partition to {}",
                        lab.members()[i].name
                    );
                }
            }
        }
    }
    writing.store(false, Ordering::SeqCst);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await?;
    }

    for &i in &everyone {
        lab.mesh(i).set_link_filter(None);
    }
    let healed_at = Instant::now();
    let mut last = Vec::new();
    let identical = poll_until(
        "every view to be identical after healing",
        Duration::from_secs(10),
        || {
            last = everyone
                .iter()
                .map(|&i| ViewDigest::of(lab.node(i)))
                .collect::<Vec<_>>();
            last.iter().all(|d| d == &last[0])
                && last[0].records() == everyone.len() * ORCHESTRATORS
                && last[0].blocked.len() == 2
        },
    )
    .await;
    let membership = poll_until(
        "every node to list every node alive again",
        Duration::from_secs(10),
        || lab.all_alive(&everyone),
    )
    .await;
    let membership_at = healed_at.elapsed();
    if let Err(error) = identical {
        let detail: Vec<String> = last
            .iter()
            .zip(&everyone)
            .map(|(d, &i)| {
                format!(
                    "{}: {} records, blocked {:?}",
                    lab.members()[i].name,
                    d.records(),
                    d.blocked
                )
            })
            .collect();
        return Err(error.context(detail.join("\n")));
    }
    let identical = identical?;
    membership?;
    eprintln!(
        "partition: {writes} observations written during {PARTITION:?}; after healing all {} views identical in {identical:?} ({} records, blocklist {:?}); membership whole again in {membership_at:?}",
        everyone.len(),
        last[0].records(),
        last[0].blocked
    );
    ensure!(
        identical <= HEAL_BOUND,
        "views converged after {identical:?}, more than {HEAL_BOUND:?}"
    );
    lab.shutdown().await;
    Ok(())
}

fn state(lab: &Lab, observer: usize, of: usize) -> Option<MemberState> {
    let name = &lab.members()[of].name;
    lab.node(observer)
        .cluster()
        .members()
        .into_iter()
        .find(|m| &m.node == name)
        .map(|m| m.state)
}
