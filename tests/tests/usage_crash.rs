//! Acceptance 6 of issue 6: kill -9 of a real `gatemesh run` process under
//! load, then a restart on the same usage directory: every request that
//! returned 200 has its usage record in the log exactly once, with the cost
//! its response announced.
//!
//! Needs the binary: `cargo build -p node --bin gatemesh` (same target dir
//! and profile as the tests).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use mesh_core::billing::UsageRecord;
use serde_json::json;
use simulations::emulator::{Fleet, LatencySpec, ModelSpec, OrchestratorSpec};
use tests::lab::{ProcessNode, gatemesh_binary};
use tests::ops::{started_urls, wait_log_line, wait_public_ready};
use tests::{API_KEY, GatewayConfig, https_client, wait_until};

/// Concurrent client loops.
const CLIENTS: usize = 16;
/// 200 answers before the kill.
const OK_BEFORE_KILL: usize = 60;
/// Price of one image.
const FRAME_NANO_USD: u64 = 2_500_000;

/// The test gateway's configuration, logging JSON (the harness reads the
/// process's log), charging per image and writing usage to `usage_dir`.
fn node_toml(orchestrators: &[String], usage_dir: &std::path::Path) -> String {
    let mut text = GatewayConfig::new(orchestrators.to_vec()).toml();
    text.push_str(&format!(
        r#"
[log]
format = "json"
filter = "warn,node=info"

[[rate_cards]]
pipeline = "text-to-image"
unit = "frame"
price_usd = "0.0025"

[usage]
dir = {dir:?}
max_batch_records = 64
"#,
        dir = usage_dir.display().to_string(),
    ));
    text
}

async fn start(
    binary: &std::path::Path,
    config: &std::path::Path,
    log: std::path::PathBuf,
) -> anyhow::Result<(ProcessNode, String, String)> {
    let child = ProcessNode::spawn(binary, config, log.clone())?;
    let started = wait_log_line(&log, "node started", Duration::from_secs(30))
        .await
        .with_context(|| child.log_tail(50))?;
    let (public, admin) = started_urls(&started)?;
    wait_public_ready(&public, Duration::from_secs(30))
        .await
        .with_context(|| child.log_tail(50))?;
    Ok((child, public, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_charged_record_exactly_once() -> anyhow::Result<()> {
    tests::install_crypto_provider();
    let binary = gatemesh_binary()?;
    let mut spec = OrchestratorSpec::new(
        "crash-orch",
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(64)],
    );
    spec.latency = LatencySpec::Uniform {
        base_ms: 20,
        jitter_ms: 20,
    };
    let fleet = Fleet::start(&spec, 2).await?;
    let dir = tempfile::tempdir()?;
    let usage_dir = dir.path().join("usage");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, node_toml(&fleet.urls(), &usage_dir))?;
    let (mut child, public, _) = start(&binary, &config, dir.path().join("1.log")).await?;

    // Clients hammer the node; every 200 is remembered with its cost.
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let client = https_client();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|lane| {
            let (client, public, stop, answered) = (
                client.clone(),
                public.clone(),
                stop.clone(),
                answered.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("lane{lane}-job{n}");
                    let sent = client
                        .post(format!("{public}/text-to-image"))
                        .bearer_auth(API_KEY)
                        .header("x-request-id", &id)
                        .json(&json!({"prompt": "crash", "num_images_per_prompt": 1 + n % 3}))
                        .send()
                        .await;
                    let Ok(response) = sent else {
                        // The node is gone: connection errors from here on.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    if response.status() != 200 {
                        continue;
                    }
                    let cost = response
                        .headers()
                        .get("x-gatemesh-cost-nano-usd")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    // A 200 counts once its head arrived, body or not.
                    if let Some(cost) = cost {
                        answered
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, cost);
                    }
                }
            })
        })
        .collect();
    wait_until(
        "enough 200s before the kill",
        Duration::from_secs(60),
        || {
            let count = answered.lock().unwrap_or_else(|p| p.into_inner()).len();
            async move { count >= OK_BEFORE_KILL }
        },
    )
    .await?;
    child.kill()?; // SIGKILL while requests are in flight
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await?;
    }
    let answered = answered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ensure!(answered.len() >= OK_BEFORE_KILL);

    // Restart on the same directory; read everything back over the admin API.
    let (child, _, admin) = start(&binary, &config, dir.path().join("2.log")).await?;
    let text = client
        .get(format!("{admin}/admin/usage?limit=100000"))
        .send()
        .await?
        .text()
        .await?;
    let mut records: BTreeMap<String, UsageRecord> = BTreeMap::new();
    let mut seqs = Vec::new();
    for line in text.lines() {
        let record: UsageRecord = serde_json::from_str(line).context("record line")?;
        seqs.push(record.seq);
        let previous = records.insert(record.request_id.clone(), record);
        ensure!(previous.is_none(), "a request recorded twice: {line}");
    }
    ensure!(
        seqs.windows(2).all(|w| w[0] + 1 == w[1]),
        "seq numbers are consecutive"
    );
    for (id, cost) in &answered {
        let record = records
            .get(id)
            .with_context(|| format!("request {id} returned 200 but has no usage record"))?;
        ensure!(
            record.cost_nano_usd == *cost,
            "{id}: {record:?} vs header {cost}"
        );
        ensure!(cost % FRAME_NANO_USD == 0 && *cost > 0);
    }
    // Records of requests whose answer the kill cut off may exist (durable,
    // not answered); none is duplicated, and none is unknown.
    ensure!(records.keys().all(|id| id.starts_with("lane")));
    eprintln!(
        "answered 200: {}, records after restart: {}",
        answered.len(),
        records.len()
    );
    drop(child);
    Ok(())
}
