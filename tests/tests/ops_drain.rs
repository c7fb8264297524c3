//! SIGTERM drains the real `gatemesh` binary without losing accepted jobs:
//! `target/<profile>/gatemesh run` in front of in-process emulated
//! orchestrators (300 ms per job, so jobs are in flight), 20 client loops
//! sending text-to-image jobs, SIGTERM while jobs run. Every answer is 200
//! or 503 `draining`; every job that reached an orchestrator before SIGTERM
//! comes back 200; `/readyz` answers 503 during the drain; the process exits
//! 0 within its grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use simulations::emulator::{Fleet, LatencySpec, ModelSpec, OrchestratorSpec};
use tests::lab::{ProcessNode, gatemesh_binary, poll_until};
use tests::ops::{Record, send_text_to_image, started_urls, wait_log_line, wait_public_ready};
use tests::{API_KEY, https_client, wait_until};
use tokio::time::Instant;

/// Concurrent client loops.
const CLIENTS: usize = 20;
/// Processing time of one job at the orchestrators.
const JOB_MS: u64 = 300;
/// `http.shutdown_grace_ms` of the node.
const GRACE_MS: u64 = 5_000;
/// Successful jobs before SIGTERM (the stream is established).
const WARM_UP_JOBS: usize = 20;
/// Jobs that must be running at the orchestrators when SIGTERM is sent.
const IN_FLIGHT_AT_SIGTERM: u64 = 5;
/// Slack on top of the grace period for the process to exit.
const EXIT_SLACK: Duration = Duration::from_secs(2);
/// How often `/readyz` is polled during the drain.
const READYZ_POLL: Duration = Duration::from_millis(5);

fn node_toml(orchestrators: &[String]) -> String {
    let orchestrators = orchestrators
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[node]
name = "drain-1"
region = "local"

[http]
listen_addr = "127.0.0.1:0"
shutdown_grace_ms = {GRACE_MS}

[admin]
listen_addr = "127.0.0.1:0"

[api]
request_deadline_ms = 20000

[[keys]]
key = "{API_KEY}"
tenant = "ops"

[discovery]
orchestrators = [{orchestrators}]
info_refresh_ms = 500
get_orchestrator_timeout_ms = 1000

[log]
format = "json"
filter = "warn,node=info,api=info"
"#
    )
}

/// One `/readyz` poll.
#[derive(Debug, Clone)]
struct ReadyzPoll {
    at: Instant,
    status: Option<u16>,
    body: String,
}

/// Polls `/readyz` until `stop`, over one keep-alive connection
/// (`keep_alive`) or a fresh connection per poll.
fn poll_readyz(
    url: String,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<ReadyzPoll>> {
    tokio::spawn(async move {
        let client = if keep_alive {
            https_client()
        } else {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_else(|_| https_client())
        };
        let mut polls = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let at = Instant::now();
            let (status, body) = match client.get(format!("{url}/readyz")).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (Some(status), response.text().await.unwrap_or_default())
                }
                Err(error) => (None, format!("{error:?}")),
            };
            polls.push(ReadyzPoll { at, status, body });
            tokio::time::sleep(READYZ_POLL).await;
        }
        polls
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_drain_sigterm_loses_no_accepted_job() -> anyhow::Result<()> {
    tests::install_crypto_provider();
    let binary = gatemesh_binary()?;

    let mut spec = OrchestratorSpec::new(
        "drain-orch",
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(64)],
    );
    spec.latency = LatencySpec::Uniform {
        base_ms: JOB_MS,
        jitter_ms: 50,
    };
    let fleet = Fleet::start(&spec, 2).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("node.toml");
    std::fs::write(&config, node_toml(&fleet.urls()))?;

    let log_path = dir.path().join("node.log");
    let mut child = ProcessNode::spawn(&binary, &config, log_path.clone())?;
    let started = wait_log_line(&log_path, "node started", Duration::from_secs(20))
        .await
        .with_context(|| child.log_tail(50))?;
    let (url, _) = started_urls(&started)?;
    wait_public_ready(&url, Duration::from_secs(20))
        .await
        .with_context(|| child.log_tail(50))?;
    let client = https_client();

    // The stream of jobs.
    let sigterm_sent = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(std::sync::Mutex::new(Vec::<Record>::new()));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|lane| {
            let (client, url) = (client.clone(), url.clone());
            let (sigterm_sent, stop, records) =
                (sigterm_sent.clone(), stop.clone(), records.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let record = send_text_to_image(&client, lane, &url, n).await;
                    n += 1;
                    let failed = !record.ok();
                    records
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(record);
                    // After SIGTERM, one refusal is enough for this loop.
                    if failed && sigterm_sent.load(Ordering::SeqCst) {
                        return;
                    }
                }
            })
        })
        .collect();
    let ok_count = || {
        records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.ok())
            .count()
    };
    let in_flight = || -> u64 {
        fleet
            .orchestrators()
            .iter()
            .map(|o| o.stats().in_flight)
            .sum()
    };
    wait_until(
        &format!("{WARM_UP_JOBS} jobs served and {IN_FLIGHT_AT_SIGTERM} in flight"),
        Duration::from_secs(30),
        || {
            let ready = ok_count() >= WARM_UP_JOBS && in_flight() >= IN_FLIGHT_AT_SIGTERM;
            async move { ready }
        },
    )
    .await
    .with_context(|| child.log_tail(50))?;

    let readyz_stop = Arc::new(AtomicBool::new(false));
    let pollers = [
        poll_readyz(url.clone(), true, readyz_stop.clone()),
        poll_readyz(url.clone(), false, readyz_stop.clone()),
    ];
    // Jobs at the orchestrators now were accepted before SIGTERM.
    let accepted_in_flight = in_flight();
    let sigterm_at = Instant::now();
    sigterm_sent.store(true, Ordering::SeqCst);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.pid().to_string()])
        .status()
        .context("running kill -TERM")?;
    ensure!(kill.success(), "kill -TERM {} failed: {kill}", child.pid());

    let grace = Duration::from_millis(GRACE_MS);
    let mut status = None;
    poll_until("gatemesh to exit after SIGTERM", grace + EXIT_SLACK, || {
        status = child.exited();
        status.is_some()
    })
    .await
    .with_context(|| child.log_tail(50))?;
    let status = status.context("the exit status was read")?;
    let drain = sigterm_at.elapsed();
    readyz_stop.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await?;
    }
    let mut polls = Vec::new();
    for poller in pollers {
        polls.extend(poller.await?);
    }
    let records = records.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let served_by_orchestrators: u64 = fleet
        .orchestrators()
        .iter()
        .map(|o| o.stats().jobs_served)
        .sum();
    let left_in_flight = in_flight();
    let log = child.log_tail(50);

    let ok = records.iter().filter(|r| r.ok()).count();
    let pre = |r: &&Record| r.sent < sigterm_at;
    let finished_after_sigterm_ok = records
        .iter()
        .filter(pre)
        .filter(|r| r.done >= sigterm_at && r.ok())
        .count();
    let draining_503 = records
        .iter()
        .filter(|r| r.status == Some(503) && r.code.as_deref() == Some("draining"))
        .count();
    let transport_pre: Vec<&Record> = records
        .iter()
        .filter(pre)
        .filter(|r| r.status.is_none())
        .collect();
    let transport_post = records
        .iter()
        .filter(|r| r.sent >= sigterm_at && r.status.is_none())
        .count();
    let readyz_503 = polls
        .iter()
        .filter(|p| p.at >= sigterm_at && p.status == Some(503))
        .count();
    let readyz_after: Vec<String> = polls
        .iter()
        .filter(|p| p.at >= sigterm_at)
        .take(6)
        .map(|p| {
            format!(
                "{:?}: {:?} {}",
                p.at - sigterm_at,
                p.status,
                p.body.chars().take(120).collect::<String>()
            )
        })
        .collect();
    println!(
        "ops_drain: {} requests, {ok} answered 200, {draining_503} answered 503 draining; \
         {accepted_in_flight} jobs in flight at SIGTERM, {finished_after_sigterm_ok} sent before \
         SIGTERM finished 200 after it; transport errors: {} sent before SIGTERM, {transport_post} \
         after; orchestrators served {served_by_orchestrators}; exit {status} {drain:?} after SIGTERM \
         (grace {grace:?}); /readyz polls after SIGTERM: {} ({readyz_503} answered 503), first: {readyz_after:#?}",
        records.len(),
        transport_pre.len(),
        polls.iter().filter(|p| p.at >= sigterm_at).count(),
    );

    // Nothing but 200 and 503 `draining`.
    let odd: Vec<&Record> = records
        .iter()
        .filter(|r| r.status.is_some())
        .filter(|r| !(r.ok() || (r.status == Some(503) && r.code.as_deref() == Some("draining"))))
        .collect();
    ensure!(
        odd.is_empty(),
        "answers other than 200 / 503 draining: {odd:#?}\nlog:\n{log}"
    );
    // Every job that reached an orchestrator before SIGTERM came back 200 …
    ensure!(
        accepted_in_flight >= IN_FLIGHT_AT_SIGTERM,
        "too few jobs in flight at SIGTERM"
    );
    ensure!(
        finished_after_sigterm_ok as u64 >= accepted_in_flight,
        "{accepted_in_flight} jobs were running at SIGTERM but only {finished_after_sigterm_ok} \
         requests sent before it came back 200; transport errors of requests sent before \
         SIGTERM: {transport_pre:#?}\nlog:\n{log}"
    );
    // … and no job an orchestrator served was lost on the way back.
    ensure!(
        served_by_orchestrators == ok as u64 && left_in_flight == 0,
        "the orchestrators served {served_by_orchestrators} jobs ({left_in_flight} still running) \
         but clients got {ok} answers 200\nlog:\n{log}"
    );
    ensure!(
        readyz_503 > 0,
        "/readyz never answered 503 during the drain (it must, so load balancers stop sending); \
         polls after SIGTERM: {readyz_after:#?}"
    );
    ensure!(
        status.code() == Some(0),
        "gatemesh exited with {status} after SIGTERM\nlog:\n{log}"
    );
    ensure!(
        drain <= grace + EXIT_SLACK,
        "the drain took {drain:?}, grace is {grace:?}"
    );
    fleet.crash_all().await;
    Ok(())
}
