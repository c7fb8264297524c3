//! A node whose stderr nobody reads keeps serving: log lines go to a writer
//! thread through a bounded queue, and when the queue is full they are
//! dropped and counted (`gatemesh_log_dropped_lines_total`), never waited
//! for on the request path.
//!
//! Needs the binary: `cargo build -p node --bin gatemesh` (same target dir
//! and profile as the tests).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use serde_json::{Value, json};
use simulations::emulator::{Emulator, ModelSpec, OrchestratorSpec};
use tests::lab::gatemesh_binary;
use tests::ops::{Scrape, started_urls, wait_public_ready};
use tests::{API_KEY, GatewayConfig, https_client};

/// How long the node may take to log "node started".
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long the whole test may take once the node is up.
const DEADLINE: Duration = Duration::from_secs(90);
/// Most jobs sent while waiting for the first dropped line.
const MAX_JOBS: usize = 2_000;
/// Longest any one job may take: a request stuck behind a blocked log write
/// would exceed it.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// The `gatemesh run` process; killed on drop, also when the test fails.
struct Node {
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stderr until the JSON `node started` line and returns it, leaving
/// the pipe open and unread from then on.
fn read_until_started(stderr: &mut BufReader<ChildStderr>) -> anyhow::Result<Value> {
    let mut line = String::new();
    for _ in 0..10_000 {
        line.clear();
        if stderr.read_line(&mut line).context("reading stderr")? == 0 {
            anyhow::bail!("stderr ended before `node started`");
        }
        if let Ok(value) = serde_json::from_str::<Value>(&line)
            && value["message"] == "node started"
        {
            return Ok(value);
        }
    }
    anyhow::bail!("no `node started` in the first 10,000 lines")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_drops_log_lines_and_delays_no_request() -> anyhow::Result<()> {
    let binary = gatemesh_binary()?;
    let orchestrator = Emulator::start(OrchestratorSpec::new(
        "plain",
        vec![ModelSpec::new(Pipeline::Llm).capacity(8)],
    ))
    .await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gatemesh.toml");
    let mut text = GatewayConfig::new(vec![orchestrator.url().to_owned()]).toml();
    text.push_str("\n[log]\nformat = \"json\"\n");
    std::fs::write(&config, text)?;

    // Trace logging: every job writes hundreds of lines (hyper, h2, rustls),
    // so the pipe (64 KiB) and then the queue (8,192 lines) fill within a
    // few hundred jobs.
    let mut child = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&config)
        .env("GATEMESH_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let node = Node { child };
    // Read on a thread, so that a node that never logs "node started" (and
    // never closes stderr) fails the test at STARTUP_DEADLINE instead of
    // blocking it; the thread ends when `node`'s drop kills the process.
    let (found, reader) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stderr = BufReader::new(stderr);
        let started = read_until_started(&mut stderr);
        let _ = found.send((started, stderr));
    });
    let (started, stderr) =
        tokio::task::block_in_place(|| reader.recv_timeout(STARTUP_DEADLINE))
            .with_context(|| format!("no `node started` on stderr within {STARTUP_DEADLINE:?}"))?;
    let started = started?;
    // `stderr` stays alive and unread until the end of the test.
    let (public, admin) = started_urls(&started)?;
    wait_public_ready(&public, Duration::from_secs(30)).await?;
    let client = https_client();
    let body = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2});
    let until = Instant::now() + DEADLINE;
    let mut jobs = 0usize;
    let mut dropped = 0.0;
    while dropped == 0.0 {
        ensure!(
            Instant::now() < until && jobs < MAX_JOBS,
            "no log line counted as dropped after {jobs} jobs in {DEADLINE:?}"
        );
        for _ in 0..20 {
            let response = tokio::time::timeout(
                JOB_TIMEOUT,
                client
                    .post(format!("{public}/llm"))
                    .bearer_auth(API_KEY)
                    .json(&body)
                    .send(),
            )
            .await
            .with_context(|| {
                format!("job {jobs} took over {JOB_TIMEOUT:?}: blocked behind the log?")
            })??;
            ensure!(
                response.status() == 200,
                "job {jobs} answered {}",
                response.status()
            );
            jobs += 1;
        }
        let scrape = client.get(format!("{admin}/metrics")).send().await?;
        dropped =
            Scrape::parse(&scrape.text().await?)?.sum("gatemesh_log_dropped_lines_total", &[]);
    }
    eprintln!("{dropped} log lines dropped after {jobs} jobs, every job answered 200");
    drop(node);
    drop(stderr);
    Ok(())
}
