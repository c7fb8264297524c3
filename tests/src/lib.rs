//! # tests
//!
//! Black-box end-to-end tests of gatemesh: in-process gateway nodes
//! ([`node::Node`]) in front of emulated Livepeer orchestrators
//! ([`simulations::emulator`]), all on loopback, over real sockets and real
//! TLS. This library is the harness the files under `tests/` share:
//!
//! - [`https_client`]: a reqwest client (rustls with ring) that accepts the
//!   gateway's self-signed certificate.
//! - [`Gateway`]: a node started from a TOML string ([`GatewayConfig`]), with
//!   bounded readiness waits and request helpers carrying the API key.
//! - [`fleet`] / [`all_pipelines_spec`]: emulated orchestrators.
//! - [`expect_error`]: checks the JSON error envelope and `x-request-id`.
//! - [`check_png`] / [`check_wav`] / [`check_mp4`]: media that must be real.
//! - [`hostile`]: tiny fake orchestrators that answer with garbage.
//!
//! Waits are conditions polled on a short interval with a deadline, never
//! fixed sleeps; every helper that starts something returns a value that
//! stops it (explicitly with `shutdown`, or when dropped).

pub mod hostile;
pub mod lab;
pub mod ops;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use mesh_core::Pipeline;
use node::{Node, NodeConfig};
use serde_json::Value;
use simulations::emulator::{Fleet, ModelSpec, OrchestratorSpec};

/// The API key every test gateway accepts.
pub const API_KEY: &str = "e2e-test-key-0123456789abcdef";
/// How long a test waits for a condition (readiness, discovery) before it
/// fails. Generous: a loaded 2-core machine compiling in parallel is slow.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(20);
/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bound on one HTTP exchange made by a test client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Info refresh period of test gateways: short, so discovery is quick.
pub const INFO_REFRESH_MS: u64 = 250;

/// Installs ring as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Logs to the test's captured output; `RUST_LOG` sets the filter (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// An HTTPS client that accepts self-signed certificates (the gateway's).
pub fn https_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("the reqwest client builds with the ring provider installed")
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns true, failing with
/// `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What a test gateway is configured with; [`GatewayConfig::toml`] renders it.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Static orchestrator list (service URLs).
    pub orchestrators: Vec<String>,
    /// Extra lines of the `[api]` table.
    pub api: Vec<String>,
    /// Extra lines of the `[jobs]` table.
    pub jobs: Vec<String>,
    /// `discovery.info_refresh_ms`.
    pub info_refresh_ms: u64,
}

impl GatewayConfig {
    /// A gateway in front of `orchestrators`, with test defaults.
    pub fn new(orchestrators: Vec<String>) -> Self {
        Self {
            orchestrators,
            api: Vec::new(),
            jobs: Vec::new(),
            info_refresh_ms: INFO_REFRESH_MS,
        }
    }

    /// Adds a line to `[api]`.
    pub fn api(mut self, line: impl Into<String>) -> Self {
        self.api.push(line.into());
        self
    }

    /// Adds a line to `[jobs]`.
    pub fn jobs(mut self, line: impl Into<String>) -> Self {
        self.jobs.push(line.into());
        self
    }

    /// The node's TOML: loopback, port 0 everywhere, one key, short refresh.
    pub fn toml(&self) -> String {
        let orchestrators = self
            .orchestrators
            .iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"
[node]
name = "e2e-1"
region = "local"

[http]
listen_addr = "127.0.0.1:0"
shutdown_grace_ms = 2000

[admin]
listen_addr = "127.0.0.1:0"

[api]
request_deadline_ms = 20000
{api}

[[keys]]
key = "{API_KEY}"
tenant = "e2e"

[discovery]
orchestrators = [{orchestrators}]
info_refresh_ms = {refresh}
get_orchestrator_timeout_ms = 2000

[jobs]
{jobs}

[media]
fetch_timeout_ms = 4000
"#,
            api = self.api.join("\n"),
            jobs = self.jobs.join("\n"),
            refresh = self.info_refresh_ms,
        )
    }
}

/// A gateway node running in this process, and a client for it.
#[derive(Debug)]
pub struct Gateway {
    node: Option<Node>,
    url: String,
    client: reqwest::Client,
}

impl Gateway {
    /// Starts a node from `config` (ports are read back).
    pub async fn start(config: &GatewayConfig) -> anyhow::Result<Self> {
        Self::start_toml(&config.toml()).await
    }

    /// Starts a node from raw TOML.
    pub async fn start_toml(toml: &str) -> anyhow::Result<Self> {
        install_crypto_provider();
        init_tracing();
        let config = NodeConfig::parse(toml).context("the test configuration must parse")?;
        let node = Node::start(config).await.context("the node must start")?;
        let url = node.public_url();
        Ok(Self {
            node: Some(node),
            url,
            client: https_client(),
        })
    }

    /// Starts a node in front of `orchestrators` and waits until `/readyz` is 200.
    pub async fn start_ready(orchestrators: Vec<String>) -> anyhow::Result<Self> {
        let gateway = Self::start(&GatewayConfig::new(orchestrators)).await?;
        gateway.wait_ready().await?;
        Ok(gateway)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The running node.
    pub fn node(&self) -> &Node {
        self.node
            .as_ref()
            .expect("the node runs until shutdown consumes the gateway")
    }

    /// The HTTPS client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Waits (bounded) until `GET /readyz` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.url);
        let client = self.client.clone();
        wait_until("the gateway's /readyz to answer 200", WAIT_DEADLINE, || {
            let request = client.get(&url).send();
            async move { request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await
    }

    /// Waits (bounded) until `count` orchestrators offer (`pipeline`, its
    /// default model) in the node's view.
    pub async fn wait_capable(&self, pipeline: Pipeline, count: usize) -> anyhow::Result<()> {
        self.wait_capable_model(pipeline, pipeline.default_model_id(), count)
            .await
    }

    /// Waits (bounded) until `count` orchestrators are capable of (`pipeline`, `model`).
    pub async fn wait_capable_model(
        &self,
        pipeline: Pipeline,
        model: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        let node = self.node();
        wait_until(
            &format!("{count} orchestrator(s) offering {pipeline} {model} in the view"),
            WAIT_DEADLINE,
            || {
                let n = node.cluster().snapshot().offers(pipeline, model).len();
                async move { n >= count }
            },
        )
        .await
    }

    /// `POST <gateway>/<path>` with the API key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(API_KEY)
    }

    /// `POST` a JSON body with the API key.
    pub fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post(path).json(body)
    }

    /// `GET <gateway>/<path>` without a key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    /// A valid `/text-to-image` job: 200 and one image that downloads as a PNG.
    pub async fn check_text_to_image(&self, prompt: &str) -> anyhow::Result<JobAnswer> {
        let response = self
            .post_json("/text-to-image", &serde_json::json!({ "prompt": prompt }))
            .send()
            .await
            .context("sending /text-to-image")?;
        let answer = JobAnswer::read(response).await?;
        ensure!(
            answer.status == 200,
            "/text-to-image answered {}: {}",
            answer.status,
            answer.body
        );
        let images = check_images(&answer.body, 1)?;
        let png = self.download(&images[0]).await?;
        check_png(&png)?;
        Ok(answer)
    }

    /// Downloads a media URL, which must point at this gateway.
    pub async fn download(&self, url: &str) -> anyhow::Result<bytes::Bytes> {
        ensure!(
            url.starts_with(&format!("{}/media/", self.url)),
            "media URL {url:?} does not point at the gateway {}",
            self.url
        );
        let response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("downloading {url}"))?;
        ensure!(
            response.status() == 200,
            "downloading {url} answered {}",
            response.status()
        );
        Ok(response.bytes().await?)
    }

    /// Drains and stops the node.
    pub async fn shutdown(mut self) {
        if let Some(node) = self.node.take()
            && let Err(error) = node.shutdown().await
        {
            panic!("the node did not shut down cleanly: {error}");
        }
    }
}

/// A job response read to the end: status, headers that matter, JSON body.
#[derive(Debug, Clone)]
pub struct JobAnswer {
    /// HTTP status.
    pub status: u16,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// `x-gatemesh-orchestrator`.
    pub orchestrator: Option<String>,
    /// `x-gatemesh-attempts`.
    pub attempts: Option<u32>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// The body as JSON (`Value::Null` if it is not JSON; see `raw`).
    pub body: Value,
    /// The raw body.
    pub raw: bytes::Bytes,
}

impl JobAnswer {
    /// Reads the whole response.
    pub async fn read(response: reqwest::Response) -> anyhow::Result<Self> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let request_id = header("x-request-id");
        let orchestrator = header("x-gatemesh-orchestrator");
        let attempts = header("x-gatemesh-attempts").and_then(|v| v.parse().ok());
        let content_type = header("content-type");
        let raw = response
            .bytes()
            .await
            .context("reading the response body")?;
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Self {
            status,
            request_id,
            orchestrator,
            attempts,
            content_type,
            body,
            raw,
        })
    }
}

/// Checks an error answer: `status`, `x-request-id`, a JSON content type and
/// the envelope `{"detail":{"msg":…},"error":{"message":…,"code":code}}`
/// (`detail` may be the FastAPI list for 422). Returns the whole answer.
pub async fn expect_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> anyhow::Result<JobAnswer> {
    let answer = JobAnswer::read(response).await?;
    let text = String::from_utf8_lossy(&answer.raw).into_owned();
    ensure!(
        answer.status == status,
        "expected status {status}, got {} with body {text}",
        answer.status
    );
    ensure!(
        answer
            .request_id
            .as_deref()
            .is_some_and(|id| !id.is_empty()),
        "the {status} answer has no x-request-id header"
    );
    ensure!(
        answer
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json")),
        "the {status} answer is not JSON: content-type {:?}, body {text}",
        answer.content_type
    );
    let message = answer.body["error"]["message"]
        .as_str()
        .with_context(|| format!("error.message missing in {text}"))?
        .to_owned();
    ensure!(!message.is_empty(), "error.message is empty in {text}");
    let found_code = answer.body["error"]["code"].as_str();
    ensure!(
        found_code == Some(code),
        "expected error.code {code:?}, got {found_code:?} in {text}"
    );
    let detail = &answer.body["detail"];
    let detail_ok = detail["msg"].as_str().is_some_and(|m| !m.is_empty())
        || detail.as_array().is_some_and(|items| !items.is_empty());
    ensure!(detail_ok, "detail.msg missing in {text}");
    Ok(answer)
}

/// The `images` array of an image result: `count` entries, each with a
/// string `url`, an integer `seed` and `nsfw: false`. Returns the URLs.
pub fn check_images(body: &Value, count: usize) -> anyhow::Result<Vec<String>> {
    let images = body["images"]
        .as_array()
        .with_context(|| format!("no images array in {body}"))?;
    ensure!(
        images.len() == count,
        "expected {count} image(s), got {body}"
    );
    images
        .iter()
        .map(|image| {
            ensure!(
                image["seed"].is_u64(),
                "image without an integer seed: {image}"
            );
            ensure!(image["nsfw"] == false, "image with nsfw != false: {image}");
            image["url"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("image without a url: {image}"))
        })
        .collect()
}

/// The bytes are a PNG: the signature, and the `png` crate decodes a frame.
pub fn check_png(bytes: &[u8]) -> anyhow::Result<(u32, u32)> {
    ensure!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG signature: {:?}",
        &bytes[..bytes.len().min(16)]
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().context("PNG header")?;
    let size = reader
        .output_buffer_size()
        .context("PNG output buffer size")?;
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).context("PNG frame")?;
    ensure!(frame.width > 0 && frame.height > 0, "empty PNG");
    Ok((frame.width, frame.height))
}

/// The bytes are a RIFF/WAVE file with a `fmt ` chunk.
pub fn check_wav(bytes: &[u8]) -> anyhow::Result<()> {
    ensure!(
        bytes.get(0..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE"),
        "not a WAV file"
    );
    ensure!(bytes.get(12..16) == Some(b"fmt "), "WAV without fmt chunk");
    Ok(())
}

/// The bytes are an MP4 starting with an `ftyp` box.
pub fn check_mp4(bytes: &[u8]) -> anyhow::Result<()> {
    ensure!(bytes.get(4..8) == Some(b"ftyp"), "not an MP4 (no ftyp box)");
    Ok(())
}

/// An orchestrator spec serving every batch pipeline's default model with
/// `capacity` slots each.
pub fn all_pipelines_spec(name: &str, capacity: u32) -> OrchestratorSpec {
    let models = Pipeline::BATCH
        .into_iter()
        .map(|p| ModelSpec::new(p).capacity(capacity))
        .collect();
    OrchestratorSpec::new(name, models)
}

/// `count` emulated orchestrators serving `pipeline`'s default model.
pub async fn fleet(pipeline: Pipeline, capacity: u32, count: usize) -> anyhow::Result<Fleet> {
    let spec = OrchestratorSpec::new("orch", vec![ModelSpec::new(pipeline).capacity(capacity)]);
    Fleet::start(&spec, count)
        .await
        .context("the emulated orchestrators must start")
}
