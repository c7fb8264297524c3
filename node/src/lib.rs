//! # node
//!
//! The composition root of gatemesh and the home of the `gatemesh` binary.
//! It reads the configuration, builds the Livepeer orchestrator client,
//! discovery, the job executor and the media store, and serves the `api`
//! routers over HTTPS. Tests start nodes in-process through [`Node::start`];
//! the binary calls [`run`].
//!
//! ## Layout
//! - [`config`]: the TOML configuration, parsed into typed values.
//! - [`discovery`]: static list and webhook; periodic `GetOrchestrator`.
//! - [`registry`]: the known orchestrators, their info and sessions.
//! - [`jobs`]: pick, send, classify, retry and fail over; media re-hosting.
//! - [`media`]: the bounded, expiring store of re-hosted results.
//! - [`auth`]: API keys, held as hashes.
//! - [`tls`]: certificate files or a self-signed certificate.
//! - [`telemetry`]: logging set-up.
//! - [`demo`]: the embedded default (`gatemesh demo`).
//!
//! ## What this crate is not
//! It holds no routing policy (that is `mesh-core`), no HTTP handlers (that
//! is `api`) and no wire encoding (that is `livepeer`).

pub mod auth;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod jobs;
pub mod media;
pub mod registry;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use config::NodeConfig;

use crate::auth::KeyStore;
use crate::jobs::Executor;
use crate::media::MemoryMediaStore;
use crate::registry::Registry;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// TLS material could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The orchestrator client could not be built.
    #[error("orchestrator client: {0}")]
    Client(String),
    /// The HTTPS server failed.
    #[error("public server: {0}")]
    Serve(String),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    public_addr: SocketAddr,
    config: NodeConfig,
    executor: Executor,
    registry: Registry,
    draining: Arc<std::sync::atomic::AtomicBool>,
    server: axum_server::Handle<SocketAddr>,
    server_task: JoinHandle<Result<(), RunError>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
}

impl Node {
    /// Binds the listeners, starts discovery and serves the public API.
    /// Returns once the listeners are bound (their ports can be read back).
    pub async fn start(config: NodeConfig) -> Result<Self, RunError> {
        // One process-wide provider, ring, for crates that ask for the default.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let tls_config = match (&config.http.tls_cert_path, &config.http.tls_key_path) {
            (Some(cert), Some(key)) => tls::server_config_from_files(cert, key)?,
            _ => tls::self_signed_server_config(config.http.listen_addr.ip())?,
        };
        let listener = std::net::TcpListener::bind(config.http.listen_addr).map_err(|source| {
            RunError::Bind {
                addr: config.http.listen_addr,
                source,
            }
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| RunError::Bind {
                addr: config.http.listen_addr,
                source,
            })?;
        let public_addr = listener.local_addr().map_err(|source| RunError::Bind {
            addr: config.http.listen_addr,
            source,
        })?;

        let registry = Registry::default();
        let client =
            livepeer::OrchestratorClient::new().map_err(|e| RunError::Client(e.to_string()))?;
        let media = Arc::new(MemoryMediaStore::new(config.media.clone()));
        let executor = Executor::new(
            registry.clone(),
            client.clone(),
            Arc::new(livepeer::Offchain),
            media.clone(),
            config.jobs.clone(),
            config.media.clone(),
            config.node.region.clone(),
            Duration::from_millis(config.discovery.get_orchestrator_timeout_ms),
        );
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readiness = NodeReadiness {
            registry: registry.clone(),
            offered: config.api.pipelines.iter().copied().collect(),
            max_info_age: Duration::from_millis(
                config.discovery.info_refresh_ms.saturating_mul(3) + 5_000,
            ),
            draining: draining.clone(),
        };
        let state = api::PublicState {
            jobs: Arc::new(executor.clone()),
            media,
            readiness: Arc::new(readiness),
            authenticator: Arc::new(KeyStore::new(&config.keys)),
            config: config.api.clone(),
        };
        let router = api::public_router(state);

        let (stop_background, stop_rx) = watch::channel(false);
        let refresh_now = Arc::new(Notify::new());
        let background = vec![tokio::spawn(discovery::run(
            config.discovery.clone(),
            registry.clone(),
            client,
            refresh_now,
            stop_rx,
        ))];

        let server = axum_server::Handle::new();
        let rustls_config =
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls_config));
        let serve = axum_server::from_tcp_rustls(listener, rustls_config)
            .map_err(|source| RunError::Bind {
                addr: public_addr,
                source,
            })?
            .handle(server.clone())
            .serve(router.into_make_service());
        let server_task =
            tokio::spawn(async move { serve.await.map_err(|e| RunError::Serve(e.to_string())) });
        tracing::info!(
            node = %config.node.name,
            region = %config.node.region,
            public_addr = %public_addr,
            "node started"
        );
        Ok(Self {
            public_addr,
            config,
            executor,
            registry,
            draining,
            server,
            server_task,
            stop_background,
            background,
        })
    }

    /// The bound public address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// `https://<public address>`.
    pub fn public_url(&self) -> String {
        format!("https://{}", self.public_addr)
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The orchestrator table (for tests and the demo).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Drains and stops: `/readyz` turns false, new jobs get 503, in-flight
    /// jobs finish within the grace period, then the listeners close.
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.executor.start_draining();
        let grace = Duration::from_millis(self.config.http.shutdown_grace_ms);
        self.server.graceful_shutdown(Some(grace));
        let result =
            match tokio::time::timeout(grace + Duration::from_secs(1), self.server_task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(RunError::Serve(join.to_string())),
                Err(_) => Err(RunError::Serve(
                    "server did not stop within the grace period".into(),
                )),
            };
        let _ = self.stop_background.send(true);
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// Runs a node until `shutdown` completes, then drains and stops.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let node = Node::start(config).await?;
    shutdown.await;
    tracing::info!("shutdown requested; draining");
    node.shutdown().await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// `/readyz`: discovery is fresh and at least one orchestrator can serve an
/// offered pipeline; false while draining.
#[derive(Debug)]
struct NodeReadiness {
    registry: Registry,
    offered: Vec<mesh_core::Pipeline>,
    max_info_age: Duration,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl api::Readiness for NodeReadiness {
    fn readiness(&self) -> api::ReadinessReport {
        let mut reasons = Vec::new();
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            reasons.push("draining".to_owned());
        }
        if !self
            .registry
            .any_capable_fresh(&self.offered, self.max_info_age)
        {
            reasons.push("no orchestrator with fresh info serves an offered pipeline".to_owned());
        }
        api::ReadinessReport {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}
