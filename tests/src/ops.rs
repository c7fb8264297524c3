//! Operator-facing helpers for the `ops_*` tests, on top of [`crate::lab`]
//! (the in-process multi-region lab and the `gatemesh` process runner):
//!
//! - [`Traffic`]: client loops sending text-to-image jobs, every answer
//!   recorded ([`Record`]).
//! - [`wait_views_complete`] / [`is_ejected_in_view`]: conditions on each
//!   node's copy of the shared view.
//! - [`Scrape`]: a parsed Prometheus text exposition, and
//!   [`documented_metrics`]: the table of `docs/metrics.md`.
//! - [`wait_log_line`]: a JSON log event of a `gatemesh` process.
//! - [`chromium`]: headless Chromium runs (DOM dump, screenshot).
//!
//! Every wait polls a condition with a deadline; every start returns a value
//! that stops what it started (explicitly, or when dropped).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use mesh_core::OrchestratorId;
use node::Node;
use serde_json::Value;

use crate::lab::{LAB_DEADLINE, Lab, poll_until};
use crate::{API_KEY, JobAnswer, https_client};

/// Waits (bounded) until every running lab node holds the self-description
/// of every lab orchestrator in its view.
pub async fn wait_views_complete(lab: &Lab) -> anyhow::Result<Duration> {
    let ids: Vec<OrchestratorId> = lab
        .orchestrator_urls()
        .iter()
        .filter_map(|(_, url)| OrchestratorId::parse(url).ok())
        .collect();
    poll_until(
        "every node to hold every orchestrator's info",
        LAB_DEADLINE,
        || {
            lab.running().into_iter().all(|i| {
                let snapshot = lab.node(i).cluster().snapshot();
                ids.iter().all(|id| {
                    snapshot
                        .orchestrators()
                        .iter()
                        .any(|o| &o.id == id && o.info.is_some())
                })
            })
        },
    )
    .await
}

/// `GET <node i admin>/metrics`, parsed.
pub async fn scrape(lab: &Lab, i: usize) -> anyhow::Result<Scrape> {
    let url = format!("{}/metrics", lab.node(i).admin_url());
    let response = lab
        .client()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(
        response.status() == 200,
        "GET {url} answered {}",
        response.status()
    );
    Scrape::parse(&response.text().await?)
}

/// One client request of a [`Traffic`] run.
#[derive(Debug, Clone)]
pub struct Record {
    /// Index of the loop that sent it.
    pub lane: usize,
    /// The gateway it went to.
    pub url: String,
    /// When it was sent.
    pub sent: tokio::time::Instant,
    /// When its answer (or error) was complete.
    pub done: tokio::time::Instant,
    /// The status, if an answer came.
    pub status: Option<u16>,
    /// `error.code` of an error answer.
    pub code: Option<String>,
    /// The transport error, if no answer came.
    pub error: Option<String>,
    /// `x-gatemesh-orchestrator`.
    pub orchestrator: Option<String>,
}

impl Record {
    /// A 200 answer.
    pub fn ok(&self) -> bool {
        self.status == Some(200)
    }
}

/// Client loops sending `/text-to-image` until stopped: loop `i` cycles
/// over `lanes[i]`'s gateway URLs, one request at a time, pausing `pace`
/// between requests (pacing, not synchronisation).
#[derive(Debug)]
pub struct Traffic {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Traffic {
    /// Starts one loop per entry of `lanes`.
    pub fn start(lanes: Vec<Vec<String>>, pace: Duration) -> Self {
        let client = https_client();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let records = Arc::new(Mutex::new(Vec::new()));
        let tasks = lanes
            .into_iter()
            .enumerate()
            .map(|(lane, urls)| {
                let client = client.clone();
                let records = records.clone();
                let mut stop_rx = stop_rx.clone();
                tokio::spawn(async move {
                    for (n, url) in urls.iter().cycle().enumerate() {
                        if *stop_rx.borrow() {
                            return;
                        }
                        let record = send_text_to_image(&client, lane, url, n).await;
                        records
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(record);
                        tokio::select! {
                            _ = tokio::time::sleep(pace) => {}
                            _ = stop_rx.changed() => return,
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            records,
        }
    }

    /// The requests answered so far.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the loops (requests in flight are awaited) and returns every record.
    pub async fn stop(self) -> Vec<Record> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Sends one `/text-to-image` job with the test key and records the outcome.
pub async fn send_text_to_image(
    client: &reqwest::Client,
    lane: usize,
    url: &str,
    n: usize,
) -> Record {
    let sent = tokio::time::Instant::now();
    let response = client
        .post(format!("{url}/text-to-image"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "prompt": format!("ops lane {lane} request {n}") }))
        .send()
        .await;
    let (status, code, error, orchestrator) = match response {
        Err(error) => (None, None, Some(format!("{error:?}")), None),
        Ok(response) => match JobAnswer::read(response).await {
            Ok(answer) => (
                Some(answer.status),
                answer.body["error"]["code"].as_str().map(str::to_owned),
                None,
                answer.orchestrator,
            ),
            Err(error) => (None, None, Some(format!("{error:#}")), None),
        },
    };
    Record {
        lane,
        url: url.to_owned(),
        sent,
        done: tokio::time::Instant::now(),
        status,
        code,
        error,
        orchestrator,
    }
}

/// Whether `id` is ejected in `node`'s current view.
pub fn is_ejected_in_view(node: &Node, id: &OrchestratorId) -> bool {
    let now = node::cluster::unix_ms();
    node.cluster()
        .snapshot()
        .orchestrators()
        .iter()
        .any(|o| &o.id == id && o.ejected_until_ms > now)
}

/// One sample of a Prometheus exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name (`gatemesh_jobs_total`, `…_bucket`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    /// `# TYPE` lines: family name → type.
    pub types: BTreeMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4 / OpenMetrics-ish lines).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    bail!("bad TYPE line {line:?}");
                };
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line).with_context(|| format!("bad sample {line:?}"))?);
        }
        Ok(Self {
            text: text.to_owned(),
            types,
            samples,
        })
    }

    /// The type of the family documented as `name` (a counter's family may
    /// be declared with or without its `_total` suffix).
    pub fn family_type(&self, name: &str) -> Option<&str> {
        self.types
            .get(name)
            .or_else(|| name.strip_suffix("_total").and_then(|n| self.types.get(n)))
            .map(String::as_str)
    }

    /// Samples named `name` whose labels include every `(key, value)` of `with`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// Sum of the samples [`Scrape::matching`] finds (0 when none).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        // `+ 0.0` turns the empty sum's -0.0 into 0.
        self.matching(name, with).map(|s| s.value).sum::<f64>() + 0.0
    }

    /// Whether any sample of `name` (or its `_bucket`/`_count`/`_sum`) exists.
    pub fn has_samples(&self, name: &str) -> bool {
        self.samples.iter().any(|s| {
            s.name == name
                || s.name
                    .strip_prefix(name)
                    .is_some_and(|rest| matches!(rest, "_bucket" | "_count" | "_sum" | "_total"))
        })
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').context("unclosed label set")?;
            ensure!(close > open, "malformed label set");
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_once(' ').context("no value")?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))?),
        None => (series, BTreeMap::new()),
    };
    let value = rest
        .split_whitespace()
        .next()
        .context("no value")?
        .parse::<f64>()
        .context("value is not a number")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(labels);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        ensure!(chars.next() == Some('='), "label {key:?} without '='");
        ensure!(chars.next() == Some('"'), "label {key:?} value not quoted");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => bail!("dangling escape"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => bail!("unterminated label value"),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

/// One row of the metrics table of `docs/metrics.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedMetric {
    /// Metric name.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Its labels.
    pub labels: Vec<String>,
}

/// The table of `docs/metrics.md`: rows whose first cell is a backticked name.
pub fn documented_metrics() -> anyhow::Result<Vec<DocumentedMetric>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('|')) {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let Some(name) = cells
            .first()
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        ensure!(cells.len() == 4, "row of {name} needs 4 cells: {line}");
        out.push(DocumentedMetric {
            name: name.to_owned(),
            kind: cells[1].to_owned(),
            labels: cells[2]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty() && l != "—")
                .collect(),
        });
    }
    ensure!(out.len() > 10, "the metrics table of {path} was not found");
    Ok(out)
}

/// Waits (bounded) until the JSON log at `path` (a `gatemesh` process
/// with `log.format = "json"`) has an event whose `message` is `message`,
/// and returns that event.
pub async fn wait_log_line(
    path: &Path,
    message: &str,
    deadline: Duration,
) -> anyhow::Result<Value> {
    let mut found = None;
    poll_until(&format!("the log line {message:?}"), deadline, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| event["message"] == message);
        found.is_some()
    })
    .await?;
    found.context("the log line was found")
}

/// The public (`https://…`) and admin (`http://…`) URLs a `gatemesh`
/// process logged in its JSON `node started` event.
pub fn started_urls(started: &Value) -> anyhow::Result<(String, String)> {
    let public = format!(
        "https://{}",
        started["public_addr"].as_str().context("public_addr")?
    );
    let admin = format!(
        "http://{}",
        started["admin_addr"].as_str().context("admin_addr")?
    );
    Ok((public, admin))
}

/// Waits (bounded) until `{public}/readyz` answers 200.
pub async fn wait_public_ready(public: &str, deadline: Duration) -> anyhow::Result<()> {
    let client = https_client();
    crate::wait_until("/readyz 200", deadline, || {
        let request = client.get(format!("{public}/readyz")).send();
        async move { request.await.is_ok_and(|r| r.status() == 200) }
    })
    .await
}

/// Headless Chromium.
pub mod chromium {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use anyhow::{Context, bail, ensure};

    /// Bound on one Chromium run (start, page load, virtual time, dump).
    pub const RUN_TIMEOUT: Duration = Duration::from_secs(45);

    /// The Chromium binary: `$CHROMIUM`, else `chromium` or
    /// `chromium-browser` on the `PATH`.
    pub fn binary() -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os("CHROMIUM") {
            return Ok(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            for name in ["chromium", "chromium-browser"] {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        bail!("chromium is not installed (apt-get install chromium, or set CHROMIUM=/path)")
    }

    /// Runs headless Chromium on `url` with `extra` flags (a fresh profile
    /// directory each time) and returns its stdout.
    pub async fn run(url: &str, extra: &[String]) -> anyhow::Result<String> {
        let binary = binary()?;
        let profile = tempfile::tempdir().context("a profile directory")?;
        let mut command = tokio::process::Command::new(&binary);
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
                "--virtual-time-budget=6000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let output = match tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output()).await {
            Ok(output) => output.context("waiting for chromium")?,
            Err(_) => bail!("chromium did not finish within {RUN_TIMEOUT:?}"),
        };
        ensure!(
            output.status.success(),
            "chromium failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The DOM of `url` after scripts ran (`--dump-dom`).
    pub async fn dump_dom(url: &str) -> anyhow::Result<String> {
        run(url, &["--dump-dom".to_owned()]).await
    }

    /// A PNG screenshot of `url` at `width`×`height`, written to `path`.
    pub async fn screenshot(url: &str, path: &Path, width: u32, height: u32) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let _ = std::fs::remove_file(path);
        run(
            url,
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={width},{height}"),
                "--hide-scrollbars".to_owned(),
            ],
        )
        .await?;
        ensure!(
            path.is_file(),
            "chromium wrote no screenshot at {}",
            path.display()
        );
        Ok(())
    }
}

/// `<target dir>/test-artifacts/<name>`, the target dir being the one the
/// test binary was built into (`<target>/<profile>/deps/<test>`).
pub fn artifact_path(name: &str) -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("test-artifacts").join(name)
}
