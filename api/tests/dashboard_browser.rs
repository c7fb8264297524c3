//! The dashboard rendered by a real headless Chromium against the admin
//! router with fake ports: the page must fetch the admin JSON (with the
//! token from its URL) and render regions, nodes and orchestrators. Also
//! writes a screenshot to `target/test-artifacts/dashboard.png`.
//!
//! Chromium is required: `scripts/setup` installs Debian's `chromium`. When
//! it is missing this test fails (it does not skip).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::admin_common::*;
use api::admin_router;
use api::metrics::{JobOutcome, JobSample};
use mesh_core::Pipeline;
use tokio::net::TcpListener;
use tokio::process::Command;

const TOKEN: &str = "dash-token";
/// Generous: a cold Chromium start on a busy two-core machine takes seconds.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> &'static str {
    let found = std::process::Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "chromium is not installed or not on PATH: run scripts/setup \
         (or `apt-get install -y chromium`) to run the dashboard browser test"
    );
    "chromium"
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("test-artifacts")
}

async fn run_chromium(profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=5000")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("chromium starts");
    tokio::time::timeout(CHROMIUM_DEADLINE, child.wait_with_output())
        .await
        .expect("chromium finishes within the deadline")
        .expect("chromium output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_the_cluster_in_chromium() {
    let cluster = FakeCluster::new();
    let state = admin_state(cluster, Some(TOKEN));
    let metrics = state.metrics.clone();
    record_every_metric(&metrics);

    // Live traffic while the browser polls, so rates and latencies move.
    let traffic = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let fra = region("fra");
            let ok = orch(ORCH_OK);
            for i in 0u64.. {
                let failed = i % 17 == 0;
                metrics.record_job(&JobSample {
                    pipeline: if i % 3 == 0 {
                        Pipeline::Llm
                    } else {
                        Pipeline::TextToImage
                    },
                    model: if i % 3 == 0 { LLM_MODEL } else { IMAGE_MODEL },
                    region: Some(&fra),
                    orchestrator: Some(&ok),
                    outcome: if failed {
                        JobOutcome::Exhausted
                    } else {
                        JobOutcome::Success
                    },
                    duration: Duration::from_millis(180 + (i * 37) % 700),
                    first_byte: Some(Duration::from_millis(40 + i % 60)),
                    attempts: 1 + u32::from(failed),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, admin_router(state))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let url = format!("http://{addr}/dashboard?token={TOKEN}");

    let profile = tempfile::tempdir().expect("profile dir");
    let dom = run_chromium(profile.path(), &["--dump-dom".to_owned()], &url).await;
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        html.contains("data-loaded=\"true\""),
        "the page never rendered the admin JSON:\n{html}"
    );
    for name in REGIONS {
        assert!(
            html.contains(&format!("data-region=\"{name}\"")),
            "region {name} missing"
        );
    }
    for name in NODES {
        assert!(
            html.contains(&format!("data-node=\"{name}\"")),
            "node {name} missing"
        );
    }
    for id in [ORCH_OK, ORCH_EJECTED, ORCH_BLOCKED, ORCH_DEGRADED] {
        assert!(
            html.contains(&format!("data-id=\"{id}\"")),
            "orchestrator {id} missing"
        );
    }
    assert!(html.contains("cross-region failover"), "events missing");
    assert!(!html.contains(TOKEN), "the token is scrubbed from the page");

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot_profile = tempfile::tempdir().expect("profile dir");
    let shot = run_chromium(
        shot_profile.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,900".to_owned(),
        ],
        &url,
    )
    .await;
    assert!(
        shot.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10_000, "suspiciously small screenshot");

    traffic.abort();
    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("server ran without error");
}
