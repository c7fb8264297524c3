//! An orchestrator emulator: a test peer that speaks the real Livepeer
//! orchestrator protocol (gRPC `GetOrchestrator` and the HTTP AI routes on one
//! TLS port) over real sockets, with controllable latency, errors, capacity,
//! crashes and restarts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), simulations::emulator::EmulatorError> {
//! use mesh_core::Pipeline;
//! use simulations::emulator::{Emulator, ModelSpec, OrchestratorSpec};
//!
//! let spec = OrchestratorSpec::new("orch-a", vec![ModelSpec::new(Pipeline::TextToImage)]);
//! let orch = Emulator::start(spec).await?;
//! println!("{}", orch.url()); // https://127.0.0.1:<port>
//! orch.crash().await;         // like kill -9
//! orch.restart().await?;      // same port, new certificate, new auth secret
//! # Ok(()) }
//! ```
//!
//! Layout: [`config`] (specs, TOML), [`auth`] (token HMAC), `info` (the
//! `OrchestratorInfo` reply), `jobs` (body parsing, runner behaviour),
//! [`media`] (PNG/WAV/MP4), [`store`] (result objects), `http`/`grpc` (the
//! two halves), `server` (TLS, accept loop, dispatch).

pub mod auth;
pub mod config;
mod grpc;
mod http;
mod info;
mod jobs;
pub mod media;
mod server;
mod state;
pub mod store;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::auth::{AUTH_TOKEN_VALIDITY_S, AuthSecret, TokenError};
pub use self::config::{
    ConfigError, FleetConfig, FleetEntry, LatencySpec, ModelSpec, OrchestratorSpec, PriceSpec,
    replicas,
};
pub use self::http::{AI_WORKER_AUTHORIZATION, PAYMENT_HEADER, PeerAddr, SEGMENT_HEADER};
pub use self::jobs::REJECT_WORD;
pub use self::state::EmulatorStats;

use self::server::{Incarnation, bind, tls_config};
use self::state::{Shared, bump, lock};

/// How long `restart` retries binding the old port.
const REBIND_DEADLINE: Duration = Duration::from_secs(2);

/// Why an emulated orchestrator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The spec is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Binding or listening failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate could not be generated.
    #[error("generating the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Entry point: starts emulated orchestrators.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emulator;

impl Emulator {
    /// Binds `spec.listen` (port 0 picks one) and starts serving.
    pub async fn start(spec: OrchestratorSpec) -> Result<EmulatedOrchestrator, EmulatorError> {
        EmulatedOrchestrator::start(spec).await
    }
}

/// A running (or crashed) emulated orchestrator. Dropping it stops every task.
#[derive(Debug)]
pub struct EmulatedOrchestrator {
    shared: Arc<Shared>,
    address: SocketAddr,
    host: String,
    plaintext: bool,
    incarnation: Mutex<Option<Incarnation>>,
    last_cert_der: Mutex<Option<Vec<u8>>>,
}

impl EmulatedOrchestrator {
    async fn start(spec: OrchestratorSpec) -> Result<Self, EmulatorError> {
        spec.validate()?;
        let listener = bind(spec.listen).map_err(|source| EmulatorError::Bind {
            addr: spec.listen,
            source,
        })?;
        let address = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: spec.listen,
                source,
            })?;
        let host = spec.effective_host();
        let scheme = if spec.plaintext { "http" } else { "https" };
        let url_host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let shared = Arc::new(Shared::new(
            &spec,
            format!("{scheme}://{url_host}:{}", address.port()),
        ));
        let tls = if spec.plaintext {
            None
        } else {
            Some(tls_config(&host)?)
        };
        let incarnation = Incarnation::spawn(Arc::clone(&shared), listener, tls);
        tracing::info!(orchestrator = %spec.name, url = %shared.base_url, "emulated orchestrator started");
        Ok(Self {
            shared,
            address,
            host,
            plaintext: spec.plaintext,
            last_cert_der: Mutex::new(incarnation.cert_der.clone()),
            incarnation: Mutex::new(Some(incarnation)),
        })
    }

    /// The service URI (`https://host:port`), also the `transcoder` it advertises.
    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    /// The bound socket address (stable across restarts).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The spec's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// DER of the certificate of the current (or last) incarnation; `None` in plaintext mode.
    pub fn cert_der(&self) -> Option<Vec<u8>> {
        lock(&self.last_cert_der).clone()
    }

    /// Whether it is accepting connections.
    pub fn is_running(&self) -> bool {
        lock(&self.incarnation).is_some()
    }

    /// Stops accepting and aborts every connection and in-flight job, like
    /// `kill -9`. On return the port refuses connections. No-op when crashed.
    pub async fn crash(&self) {
        let incarnation = lock(&self.incarnation).take();
        if let Some(incarnation) = incarnation {
            incarnation.kill().await;
            tracing::info!(orchestrator = %self.shared.name, "emulated orchestrator crashed");
        }
    }

    /// Crashes (if running) and starts again on the SAME port with a NEW
    /// certificate and a NEW auth secret (old tokens fail with 403) and an
    /// empty result store. Counters and settings are kept.
    pub async fn restart(&self) -> Result<(), EmulatorError> {
        self.crash().await;
        let deadline = tokio::time::Instant::now() + REBIND_DEADLINE;
        let listener = loop {
            match bind(self.address) {
                Ok(listener) => break listener,
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(EmulatorError::Bind {
                        addr: self.address,
                        source,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let tls = if self.plaintext {
            None
        } else {
            Some(tls_config(&self.host)?)
        };
        self.shared.reset_for_restart();
        let incarnation = Incarnation::spawn(Arc::clone(&self.shared), listener, tls);
        *lock(&self.last_cert_der) = incarnation.cert_der.clone();
        let previous = lock(&self.incarnation).replace(incarnation);
        drop(previous);
        bump(&self.shared.counters.restarts);
        tracing::info!(orchestrator = %self.shared.name, "emulated orchestrator restarted");
        Ok(())
    }

    /// Counters since start (kept across restarts).
    pub fn stats(&self) -> EmulatorStats {
        self.shared.stats()
    }

    /// Sets the share of jobs that fail with an injected 500 (clamped to 0.0–1.0).
    pub fn set_error_rate(&self, error_rate: f64) {
        let rate = if error_rate.is_nan() {
            0.0
        } else {
            error_rate.clamp(0.0, 1.0)
        };
        self.shared.update_settings(|s| s.error_rate = rate);
    }

    /// Answers every job 200 with `application/json` content that is not
    /// JSON (`true`), or normally again (`false`).
    pub fn set_broken_answers(&self, broken: bool) {
        self.shared.update_settings(|s| s.broken_answers = broken);
    }

    /// Sets the per-job processing time.
    pub fn set_latency(&self, latency: LatencySpec) {
        self.shared.update_settings(|s| s.latency = latency);
    }

    /// Replaces the served models (capabilities change on the next `GetOrchestrator`).
    pub fn set_models(&self, models: Vec<ModelSpec>) {
        self.shared.update_settings(|s| s.models = models);
    }

    /// Sets the default price (`None`: free).
    pub fn set_price(&self, price: Option<PriceSpec>) {
        self.shared.update_settings(|s| s.price = price);
    }

    /// Sets the delay between LLM stream chunks.
    pub fn set_inter_token_delay(&self, delay: Duration) {
        self.shared.update_settings(|s| s.inter_token_delay = delay);
    }

    /// Replaces the per-caller-IP extra delay table (milliseconds).
    pub fn set_region_latency(&self, table: BTreeMap<IpAddr, u64>) {
        self.shared.update_settings(|s| s.region_latency_ms = table);
    }
}

/// Several emulated orchestrators started together; dropping it stops all.
#[derive(Debug, Default)]
pub struct Fleet {
    orchestrators: Vec<EmulatedOrchestrator>,
}

impl Fleet {
    /// Starts `count` replicas of `template` (see [`replicas`]).
    pub async fn start(template: &OrchestratorSpec, count: usize) -> Result<Self, EmulatorError> {
        Self::start_all(replicas(template, count)).await
    }

    /// Starts every spec; on the first failure the ones started are stopped.
    pub async fn start_all(specs: Vec<OrchestratorSpec>) -> Result<Self, EmulatorError> {
        let mut orchestrators = Vec::with_capacity(specs.len());
        for spec in specs {
            orchestrators.push(Emulator::start(spec).await?);
        }
        Ok(Self { orchestrators })
    }

    /// Starts every orchestrator of a config file.
    pub async fn from_config(config: &FleetConfig) -> Result<Self, EmulatorError> {
        Self::start_all(config.specs()).await
    }

    /// The orchestrators, in start order.
    pub fn orchestrators(&self) -> &[EmulatedOrchestrator] {
        &self.orchestrators
    }

    /// One orchestrator.
    pub fn get(&self, index: usize) -> Option<&EmulatedOrchestrator> {
        self.orchestrators.get(index)
    }

    /// Every service URL, in start order.
    pub fn urls(&self) -> Vec<String> {
        self.orchestrators
            .iter()
            .map(|o| o.url().to_owned())
            .collect()
    }

    /// Number of orchestrators.
    pub fn len(&self) -> usize {
        self.orchestrators.len()
    }

    /// Whether the fleet is empty.
    pub fn is_empty(&self) -> bool {
        self.orchestrators.is_empty()
    }

    /// Crashes every orchestrator.
    pub async fn crash_all(&self) {
        for orchestrator in &self.orchestrators {
            orchestrator.crash().await;
        }
    }
}
