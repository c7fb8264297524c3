//! Crash and restart end to end, with a REAL `gatemesh run` process: it is
//! SIGKILLed (no departure notice), every other node lists it dead within
//! 3 s; restarted, it rejoins as exactly one alive entry with a new
//! generation (no duplicate, no zombie). Ten cycles.
//!
//! Needs `target/<profile>/gatemesh`: `cargo build -p node --bin gatemesh`.

use std::time::Duration;

use anyhow::{Context, ensure};
use mesh::MemberState;
use tests::lab::{Lab, LabSpec, ProcessNode, REGIONS, gatemesh_binary, poll_until};
use tokio::time::Instant;

/// Acceptance bound: the crashed node is dead on every other node.
const DEAD_WITHIN: Duration = Duration::from_secs(3);
/// Crash/restart cycles.
const CYCLES: usize = 10;
/// The node run as a process.
const VICTIM: &str = "sin-2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_dead_within_3_s_and_rejoins_once_ten_times() -> anyhow::Result<()> {
    let binary = gatemesh_binary()?;
    let mut spec = LabSpec::new(&REGIONS, 2, 0);
    spec.external = vec![VICTIM.to_owned()];
    let lab = Lab::start(spec).await?;
    let victim = lab.index_of(VICTIM).context("victim index")?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    let observers = lab.running();
    let log = lab.dir().join(format!("{VICTIM}.log"));

    let spawn = || -> anyhow::Result<ProcessNode> {
        let config = lab.write_config(victim, &lab.seeds(None), 0)?;
        ProcessNode::spawn(&binary, &config, log.clone())
    };
    let mut process = spawn()?;
    lab.wait_all_alive(&everyone, Duration::from_secs(10))
        .await
        .with_context(|| process.log_tail(20))?;

    let entries = |observer: usize| -> Vec<mesh::Member> {
        lab.node(observer)
            .cluster()
            .members()
            .into_iter()
            .filter(|m| m.node.as_str() == VICTIM)
            .collect()
    };
    let generation_on = |observer: usize| entries(observer).first().map(|m| m.generation);
    let mut generation = generation_on(observers[0]).context("victim generation")?;
    let mut detections = Vec::new();
    let mut rejoins = Vec::new();
    for cycle in 1..=CYCLES {
        process.kill()?;
        let killed = Instant::now();
        let dead = poll_until(
            &format!("cycle {cycle}: every node to list {VICTIM} dead"),
            DEAD_WITHIN * 2,
            || {
                observers.iter().all(|&o| {
                    let e = entries(o);
                    e.len() == 1 && e[0].state == MemberState::Dead && e[0].generation == generation
                })
            },
        )
        .await
        .with_context(|| lab.membership_report())?;
        ensure!(
            dead <= DEAD_WITHIN,
            "cycle {cycle}: dead after {dead:?}, more than {DEAD_WITHIN:?}"
        );
        detections.push(dead);

        process = spawn()?;
        let restarted = Instant::now();
        let rejoined = poll_until(
            &format!("cycle {cycle}: {VICTIM} to rejoin once"),
            Duration::from_secs(15),
            || {
                observers.iter().all(|&o| {
                    let e = entries(o);
                    e.len() == 1 && e[0].state == MemberState::Alive && e[0].generation > generation
                }) && lab.all_alive(&everyone)
            },
        )
        .await
        .with_context(|| {
            format!(
                "{}\nprocess log:\n{}",
                lab.membership_report(),
                process.log_tail(20)
            )
        })?;
        rejoins.push(rejoined);
        let new_generation = generation_on(observers[0]).context("new generation")?;
        // Every observer agrees on the new generation; no one lists more than 6.
        for &o in &observers {
            ensure!(
                generation_on(o) == Some(new_generation),
                "observers disagree on the generation"
            );
            ensure!(
                lab.node(o).cluster().members().len() == everyone.len(),
                "{}",
                lab.membership_report()
            );
        }
        eprintln!(
            "restart cycle {cycle}: dead everywhere {dead:?} after SIGKILL; rejoined (generation {generation} → {new_generation}) {rejoined:?} after respawn ({:?} since the kill)",
            killed.elapsed()
        );
        ensure!(restarted.elapsed() >= rejoined, "clock");
        generation = new_generation;
    }
    detections.sort_unstable();
    rejoins.sort_unstable();
    eprintln!(
        "restart: detection p50 {:?} max {:?}; rejoin p50 {:?} max {:?} over {CYCLES} cycles",
        detections[CYCLES / 2],
        detections[CYCLES - 1],
        rejoins[CYCLES / 2],
        rejoins[CYCLES - 1]
    );
    process.kill()?;
    lab.shutdown().await;
    Ok(())
}
