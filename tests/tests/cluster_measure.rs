//! Measurements for the closing note, run by hand:
//! `cargo build -p node --bin gatemesh && cargo nextest run -p tests --run-ignored only --no-capture -E 'test(/^cluster_measure::/)'`.
//! Prints a table: observation propagation (p50/p99 until visible on all
//! other nodes), crash detection, gossip bytes per node per second (idle
//! and with every record changing each second), RSS per real process.

use std::time::Duration;

use anyhow::Context;
use mesh::MemberState;
use mesh_core::{OrchestratorId, Pipeline};
use serde_json::json;
use tests::lab::{Lab, LabSpec, ProcessNode, ViewDigest, gatemesh_binary, poll_until};
use tokio::time::Instant;

const SAMPLES: usize = 200;
const RECORDS_PER_NODE: usize = 50;
const WINDOW: Duration = Duration::from_secs(5);
/// Half the idle traffic is gossip rounds, 10 s apart: a window of several
/// rounds, so that one round more or less does not swing the figure.
const IDLE_WINDOW: Duration = Duration::from_secs(60);

fn orch(k: usize) -> OrchestratorId {
    OrchestratorId::parse(&format!("https://127.0.0.1:{}", 41_000 + k)).expect("valid id")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A counter of the loopback interface (Linux), if readable.
fn loopback_counter(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/lo/statistics/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn bytes_sent(lab: &Lab) -> Vec<u64> {
    lab.running()
        .into_iter()
        .map(|i| {
            let s = lab.mesh(i).stats();
            s.gossip_bytes_sent_total + s.push_bytes_sent_total
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn measure_cluster() -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    // 3 regions × 3 nodes, as in the design's numbers.
    let mut lab = Lab::start(LabSpec::new(&["fra", "lax", "sin"], 3, 0)).await?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_all_alive(&everyone, Duration::from_secs(10))
        .await?;

    // Idle gossip: what the mesh writes (its own counters), and what goes on
    // the wire (the loopback interface's counters, with QUIC, UDP and IP
    // headers and acknowledgements, as the peers' script counts Serf).
    let before = bytes_sent(&lab);
    let (wire_before, packets_before) =
        (loopback_counter("tx_bytes"), loopback_counter("tx_packets"));
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle: Vec<u64> = bytes_sent(&lab)
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / IDLE_WINDOW.as_secs())
        .collect();
    rows.push((
        "gossip+push bytes/s per node, idle (9 nodes)".into(),
        format!(
            "mean {} max {}",
            idle.iter().sum::<u64>() / idle.len() as u64,
            idle.iter().max().unwrap_or(&0)
        ),
    ));
    if let (Some(w0), Some(p0), Some(w1), Some(p1)) = (
        wire_before,
        packets_before,
        loopback_counter("tx_bytes"),
        loopback_counter("tx_packets"),
    ) {
        let per_node = |a: u64, b: u64| (a - b) / IDLE_WINDOW.as_secs() / everyone.len() as u64;
        rows.push((
            "loopback bytes/s and packets/s per node, idle (everything on lo)".into(),
            format!("{} B/s, {} packets/s", per_node(w1, w0), per_node(p1, p0)),
        ));
    }

    // Propagation: one write, time until every other node has it.
    let mut delays = Vec::new();
    for n in 0..SAMPLES {
        let writer = n % everyone.len();
        let name = lab.members()[writer].name.as_str().to_owned();
        let id = orch(n % 10);
        let start = Instant::now();
        lab.node(writer)
            .cluster()
            .record_success(&id, Pipeline::TextToImage, "m", 10);
        let version = ViewDigest::of(lab.node(writer)).versions[id.as_str()][&name];
        poll_until("propagation", Duration::from_secs(5), || {
            everyone.iter().filter(|&&i| i != writer).all(|&i| {
                ViewDigest::of(lab.node(i))
                    .versions
                    .get(id.as_str())
                    .and_then(|o| o.get(&name))
                    .is_some_and(|v| *v >= version)
            })
        })
        .await?;
        delays.push(start.elapsed());
    }
    delays.sort_unstable();
    rows.push((
        format!("observation visible on all 8 other nodes ({SAMPLES} writes)"),
        format!(
            "p50 {:?} p99 {:?} max {:?}",
            pct(&delays, 0.5),
            pct(&delays, 0.99),
            delays[SAMPLES - 1]
        ),
    ));

    // Under load: every node changes RECORDS_PER_NODE records each second.
    let before = bytes_sent(&lab);
    let until = Instant::now() + WINDOW;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RECORDS_PER_NODE as u64));
    let mut k = 0usize;
    let mut false_dead = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        for i in lab.running() {
            lab.node(i).cluster().record_success(
                &orch(100 + k % RECORDS_PER_NODE),
                Pipeline::TextToImage,
                "m",
                10 + (k % 40) as u32,
            );
        }
        if !lab.all_alive(&everyone) {
            false_dead += 1;
        }
        k += 1;
    }
    let loaded: Vec<u64> = bytes_sent(&lab)
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / WINDOW.as_secs())
        .collect();
    rows.push((
        format!(
            "gossip+push bytes/s per node, {RECORDS_PER_NODE} records/node changing each second"
        ),
        format!(
            "mean {} max {}",
            loaded.iter().sum::<u64>() / loaded.len() as u64,
            loaded.iter().max().unwrap_or(&0)
        ),
    ));
    rows.push((
        "ticks of the load phase with some node not listing all 9 alive".into(),
        format!("{false_dead} of {k}"),
    ));
    let recovered = lab.wait_all_alive(&everyone, Duration::from_secs(30)).await;
    rows.push((
        "membership whole again after the load phase".into(),
        format!("{recovered:?}"),
    ));
    for (what, value) in &rows {
        eprintln!("| {what} | {value} |");
    }
    for i in lab.running() {
        eprintln!("stats {}: {:?}", lab.members()[i].name, lab.mesh(i).stats());
    }

    // Crash detection (in-process abort), three different nodes.
    let mut detections = Vec::new();
    let victims: &[usize] = if recovered.is_ok() { &[2, 5, 8] } else { &[] };
    for &victim in victims {
        let name = lab.members()[victim].name.clone();
        lab.crash_node(victim).await;
        let start = Instant::now();
        poll_until("dead everywhere", Duration::from_secs(5), || {
            lab.running().into_iter().all(|o| {
                lab.node(o)
                    .cluster()
                    .members()
                    .iter()
                    .any(|m| m.node == name && m.state == MemberState::Dead)
            })
        })
        .await
        .with_context(|| format!("victim {name}: {}", lab.membership_report()))?;
        detections.push(start.elapsed());
        lab.start_node(victim).await?;
        lab.wait_all_alive(&everyone, Duration::from_secs(10))
            .await?;
    }
    detections.sort_unstable();
    rows.push((
        "crash detected dead by all others (3 kills, in-process)".into(),
        if detections.is_empty() {
            "skipped: membership did not recover after the load phase".into()
        } else {
            format!(
                "p50 {:?} max {:?}",
                pct(&detections, 0.5),
                detections[detections.len() - 1]
            )
        },
    ));
    lab.shutdown().await;

    // RSS of real processes: 3 regions × 1 process, one in-process observer.
    let binary = gatemesh_binary()?;
    let mut spec = LabSpec::new(&["fra", "lax", "sin"], 2, 1);
    spec.external = vec![
        "fra-2".into(),
        "lax-1".into(),
        "lax-2".into(),
        "sin-1".into(),
        "sin-2".into(),
    ];
    let lab = Lab::start(spec).await?;
    let mut processes = Vec::new();
    for name in ["fra-2", "lax-1", "sin-1"] {
        let i = lab.index_of(name).context("index")?;
        let config = lab.write_config(i, &lab.seeds(None), 0)?;
        processes.push((
            name,
            ProcessNode::spawn(&binary, &config, lab.dir().join(format!("{name}.log")))?,
        ));
    }
    let up: Vec<usize> = ["fra-1", "fra-2", "lax-1", "sin-1"]
        .iter()
        .filter_map(|n| lab.index_of(n))
        .collect();
    lab.wait_all_alive(&up, Duration::from_secs(15)).await?;
    tokio::time::sleep(WINDOW).await;
    let idle_rss: Vec<u64> = processes
        .iter()
        .map(|(_, p)| p.rss_kib())
        .collect::<Result<_, _>>()?;
    // Light load: 10 jobs/s to each process for WINDOW.
    let urls: Vec<String> = lab
        .node(0)
        .cluster()
        .members()
        .into_iter()
        .filter(|m| !m.is_self)
        .filter_map(|m| m.api_url)
        .collect();
    let until = Instant::now() + WINDOW;
    let mut ok = 0;
    while Instant::now() < until {
        for url in &urls {
            let response = lab
                .client()
                .post(format!("{url}/text-to-image"))
                .bearer_auth(tests::API_KEY)
                .json(&json!({"prompt": "rss"}))
                .send()
                .await?;
            ok += u32::from(response.status() == 200);
            let _ = response.bytes().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded_rss: Vec<u64> = processes
        .iter()
        .map(|(_, p)| p.rss_kib())
        .collect::<Result<_, _>>()?;
    rows.push((
        format!(
            "RSS per idle gatemesh process ({} build)",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        ),
        format!("{idle_rss:?} KiB"),
    ));
    rows.push((
        format!("RSS per process after ~10 jobs/s for {WINDOW:?} ({ok} jobs ok)"),
        format!("{loaded_rss:?} KiB"),
    ));
    drop(processes);
    lab.shutdown().await;

    eprintln!("\n| measurement | value |\n|---|---|");
    for (what, value) in rows {
        eprintln!("| {what} | {value} |");
    }
    Ok(())
}
