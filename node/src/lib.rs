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
//! - [`registry`]: the known orchestrators, their sessions and in-flight counts.
//! - [`cluster`]: the shared view (mesh-core) and its replication over the mesh.
//! - [`load`]: jobs in flight announced to and from every peer at once.
//! - [`forward`]: cross-region forwarding of jobs over the mesh.
//! - [`jobs`]: pick, send, classify, retry and fail over; media re-hosting.
//! - [`media`]: the bounded, expiring store of re-hosted results.
//! - [`admin`]: the admin API's port over the cluster view.
//! - [`auth`]: API keys, held as hashes; configured plus runtime keys.
//! - [`tenancy`]: tenant limits (admission), spend, and the replication of
//!   usage counters and runtime keys.
//! - [`reload`]: configuration hot reload (SIGHUP, file watch).
//! - [`offering`]: the signed marketplace listing and its live benchmarks.
//! - [`tls`]: certificate files or a self-signed certificate.
//! - [`usage`]: rate cards, the durable usage log, its export and HTTP sink.
//! - [`telemetry`]: logging set-up.
//! - [`demo`]: the embedded default (`gatemesh demo`).
//!
//! ## What this crate is not
//! It holds no routing policy (that is `mesh-core`), no HTTP handlers (that
//! is `api`) and no wire encoding (that is `livepeer`).

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod forward;
pub mod jobs;
pub mod load;
pub mod media;
pub mod offer;
pub mod offering;
pub mod registry;
pub mod reload;
pub mod telemetry;
pub mod tenancy;
pub mod tls;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use config::NodeConfig;

use crate::auth::KeyStore;
use crate::cluster::Cluster;
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
    /// The cluster identity could not be loaded or does not match `[node]`.
    #[error("cluster identity: {0}")]
    Identity(String),
    /// The mesh could not start.
    #[error("mesh: {0}")]
    Mesh(String),
    /// The capability declaration or price caps do not compile.
    #[error("offer: {0}")]
    Offer(String),
    /// The usage log could not be opened or the rate cards are invalid.
    #[error("usage: {0}")]
    Usage(String),
    /// The offering's signing key could not be loaded.
    #[error("offering: {0}")]
    Offering(#[from] offering::key::KeyError),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    config: NodeConfig,
    executor: Executor,
    registry: Registry,
    cluster: Cluster,
    readiness: Arc<NodeReadiness>,
    usage: usage::UsageService,
    tenancy: tenancy::Tenancy,
    config_updates: watch::Receiver<Arc<NodeConfig>>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    server: axum_server::Handle<SocketAddr>,
    server_task: JoinHandle<Result<(), RunError>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    offering: Arc<offer::Offering>,
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

        let public_base_url = config
            .api
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("https://{public_addr}"));
        let admin_listener = tokio::net::TcpListener::bind(config.admin.listen_addr)
            .await
            .map_err(|source| RunError::Bind {
                addr: config.admin.listen_addr,
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| RunError::Bind {
                addr: config.admin.listen_addr,
                source,
            })?;
        let metrics = api::Metrics::new();
        let offering = offer::Offering::new(&config, metrics.clone()).map_err(RunError::Offer)?;
        let (stop_background, stop_rx) = watch::channel(false);
        let cluster = start_cluster(
            &config,
            &public_base_url,
            admin_addr,
            metrics.clone(),
            stop_rx.clone(),
        )
        .await?;

        let registry = Registry::default();
        if let Some(load) = cluster.load_sharing() {
            registry.observe_in_flight(Arc::new(load.clone()));
        }
        let client = livepeer::OrchestratorClient::with_options(livepeer::ClientOptions {
            local_address: config.discovery.source_ip,
            ..livepeer::ClientOptions::default()
        })
        .map_err(|e| RunError::Client(e.to_string()))?;
        let media = Arc::new(MemoryMediaStore::new(config.media.clone()));
        let usage_log = match &config.usage.dir {
            Some(dir) => Some(
                usage::UsageLog::open(
                    usage::UsageLogOptions {
                        dir: dir.clone(),
                        segment_max_bytes: config.usage.segment_max_bytes,
                        queue_capacity: config.usage.queue_capacity,
                        max_batch_records: config.usage.max_batch_records,
                    },
                    metrics.usage().clone(),
                )
                .map_err(|e| RunError::Usage(e.to_string()))?,
            ),
            None => None,
        };
        let rate_cards = usage::rate_cards_from_config(&config.rate_cards)
            .map_err(|e| RunError::Usage(e.to_string()))?;
        let usage = usage::UsageService::new(
            rate_cards,
            usage_log,
            config.node.name.to_string(),
            registry.clone(),
            cluster.clone(),
        );
        let benchmarks = offering::Benchmarks::new(
            config.node.name.clone(),
            config.node.region.clone(),
            config
                .offering
                .as_ref()
                .map_or(offering::config::DEFAULT_BENCHMARK_WINDOW_S, |o| {
                    o.benchmark_window_s
                })
                * 1000,
        );
        if let Some(mesh) = cluster.mesh() {
            benchmarks.spawn(mesh.clone(), stop_rx.clone());
        }
        let executor = Executor::new(jobs::ExecutorParts {
            registry: registry.clone(),
            cluster: cluster.clone(),
            client: client.clone(),
            payment: Arc::new(livepeer::Offchain),
            media: media.clone(),
            jobs: config.jobs.clone(),
            media_limits: config.media.clone(),
            rpc_timeout: Duration::from_millis(config.discovery.get_orchestrator_timeout_ms),
            offering: offering.clone(),
            benchmarks: benchmarks.clone(),
        });
        let catalog = Arc::new(offer::NodeCatalog::new(offering.clone(), cluster.clone()));
        if let Some(mesh) = cluster.mesh() {
            mesh.set_forward_handler(forward::handler(executor.clone(), public_base_url.clone()));
        }
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readiness = Arc::new(NodeReadiness {
            cluster: cluster.clone(),
            offered: offering.policy().offered_pipelines(),
            max_info_age_ms: config.discovery.info_refresh_ms.saturating_mul(3) + 5_000,
            draining: draining.clone(),
        });
        let keys = Arc::new(KeyStore::new(cluster.node(), &config.keys));
        let tenancy = tenancy::Tenancy::new(cluster.clone(), keys.clone(), &config);
        let mut background = tenancy.spawn(stop_rx.clone());
        // Hot reload: the file the config came from, if any. Subsystems
        // follow `config_updates` (one `apply(&config)` each).
        let (config_updates, reload_task) = match &config.source_path {
            Some(path) => {
                let (updates, task) = reload::spawn(
                    path.clone(),
                    Arc::new(config.clone()),
                    metrics.clone(),
                    stop_rx.clone(),
                );
                (updates, Some(task))
            }
            None => (watch::channel(Arc::new(config.clone())).1, None),
        };
        background.extend(reload_task);
        background.push(tenancy.follow(config_updates.clone()));
        cluster.set_routing_config(config.routing_digest()).await;
        background.push(follow_reloads(
            config_updates.clone(),
            offering.clone(),
            usage.clone(),
            cluster.clone(),
        ));
        // Charged jobs count against their tenant's spend limits once their
        // usage record is durable.
        {
            let tenancy = tenancy.clone();
            usage.observe(Arc::new(move |record: &mesh_core::billing::UsageRecord| {
                if record.cost_nano_usd > 0 {
                    tenancy.record_spend(&record.tenant, record.cost_nano_usd);
                }
            }));
        }
        let state = api::PublicState {
            jobs: Arc::new(executor.clone()),
            media,
            readiness: readiness.clone(),
            authenticator: keys.clone(),
            billing: Arc::new(usage.clone()),
            admission: Arc::new(tenancy.clone()),
            config: config.api.clone(),
            capabilities: Some(catalog.clone()),
        };
        let mut public = api::public_router(state);
        if let Some(listing) = offering::serve(
            &config,
            cluster.clone(),
            benchmarks,
            usage.clone(),
            offering.clone(),
        )? {
            public = public.merge(api::offering_router(listing));
        }
        let router = api::metrics::with_http_metrics(public, metrics.clone());
        let admin_router = api::admin_router_with_keys(
            api::AdminState {
                cluster: admin::NodeAdmin::new(cluster.clone()),
                events: cluster.events(),
                metrics: metrics.clone(),
                token: config.admin.token.clone(),
                offer: Some(catalog),
                usage: usage
                    .log()
                    .map(|_| Arc::new(usage.clone()) as Arc<dyn api::UsageExport>),
            },
            keys,
        );

        let refresh_now = Arc::new(Notify::new());
        let mut admin_stop = stop_rx.clone();
        let probe = discovery::probe_ejected(
            cluster.clone(),
            client.clone(),
            Duration::from_millis(config.discovery.get_orchestrator_timeout_ms),
            stop_rx.clone(),
        );
        background.extend([
            tokio::spawn(probe),
            tokio::spawn(offer::run_price_feed(offering.clone(), stop_rx.clone())),
            tokio::spawn(discovery::run(
                config.discovery.clone(),
                registry.clone(),
                cluster.clone(),
                client,
                refresh_now,
                stop_rx,
            )),
            tokio::spawn(copy_dropped_log_lines(
                metrics.clone(),
                stop_background.subscribe(),
            )),
            tokio::spawn(async move {
                let serve =
                    axum::serve(admin_listener, admin_router).with_graceful_shutdown(async move {
                        let _ = admin_stop.changed().await;
                    });
                if let Err(error) = serve.await {
                    tracing::error!(%error, "admin listener failed");
                }
            }),
        ]);

        if let (Some(url), Some(log)) = (&config.usage.sink_url, usage.log()) {
            background.push(tokio::spawn(usage::sink::run(
                log.clone(),
                usage::sink::SinkOptions {
                    url: url.clone(),
                    token: config.usage.sink_token.clone(),
                    batch_records: config.usage.sink_batch_records,
                    interval: Duration::from_millis(config.usage.sink_interval_ms),
                    timeout: Duration::from_millis(config.usage.sink_timeout_ms),
                    max_attempts: config.usage.sink_max_attempts,
                },
                metrics.usage().clone(),
                stop_background.subscribe(),
            )));
        }

        let server = axum_server::Handle::new();
        let acceptor = tls::public_acceptor(tls_config);
        let serve = axum_server::from_tcp(listener)
            .map_err(|source| RunError::Bind {
                addr: public_addr,
                source,
            })?
            .acceptor(acceptor)
            .handle(server.clone())
            .serve(router.into_make_service());
        let server_task =
            tokio::spawn(async move { serve.await.map_err(|e| RunError::Serve(e.to_string())) });
        tracing::info!(
            node = %config.node.name,
            region = %config.node.region,
            public_addr = %public_addr,
            admin_addr = %admin_addr,
            "node started"
        );
        Ok(Self {
            public_addr,
            admin_addr,
            config,
            executor,
            registry,
            cluster,
            readiness,
            usage,
            tenancy,
            config_updates,
            draining,
            server,
            server_task,
            stop_background,
            background,
            offering,
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

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// `http://<admin address>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The capability declaration and price caps in force. A config reload
    /// calls [`offer::Offering::apply`] on it.
    pub fn offering(&self) -> &Arc<offer::Offering> {
        &self.offering
    }

    /// The orchestrator table (for tests and the demo).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether `/readyz` would answer 200 now.
    pub fn is_ready(&self) -> bool {
        api::Readiness::readiness(self.readiness.as_ref()).ready
    }

    /// Rate cards, the usage log and its observers: [`usage::UsageService::apply`]
    /// swaps rate cards at run time, [`usage::UsageService::observe`] hooks
    /// spend counters.
    pub fn usage(&self) -> &usage::UsageService {
        &self.usage
    }

    /// Tenant admission and spend (the usage path calls
    /// [`tenancy::Tenancy::record_spend`]).
    pub fn tenancy(&self) -> &tenancy::Tenancy {
        &self.tenancy
    }

    /// The configurations applied so far (the start one, then each valid
    /// reload). Subscribe with `.clone()`.
    pub fn config_updates(&self) -> watch::Receiver<Arc<NodeConfig>> {
        self.config_updates.clone()
    }

    /// The shared view and, in a cluster, the mesh.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Drains and stops: `/readyz` turns false, new jobs get 503, in-flight
    /// jobs finish within the grace period, then the listeners close.
    pub async fn shutdown(self) -> Result<(), RunError> {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.executor.start_draining();
        let grace = Duration::from_millis(self.config.http.shutdown_grace_ms);
        // Keep the listener open while in-flight jobs finish, so load
        // balancers see /readyz answer 503 and new jobs get 503 `draining`
        // (a clear answer) instead of refused connections.
        let drain_deadline = tokio::time::Instant::now() + grace;
        while self.executor.running() > 0 && tokio::time::Instant::now() < drain_deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let grace = drain_deadline.saturating_duration_since(tokio::time::Instant::now());
        self.server.graceful_shutdown(Some(grace));
        let result =
            match tokio::time::timeout(grace + Duration::from_secs(1), self.server_task).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(RunError::Serve(join.to_string())),
                Err(_) => Err(RunError::Serve(
                    "server did not stop within the grace period".into(),
                )),
            };
        if let Some(mesh) = self.cluster.mesh() {
            mesh.leave().await;
        }
        let _ = self.stop_background.send(true);
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// How often draining checks whether in-flight jobs are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs a node until `shutdown` completes, then drains and stops.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let node = Node::start(config).await?;
    shutdown.await;
    tracing::info!("shutdown requested; draining");
    node.shutdown().await
}

/// How often the log writer's dropped-line count is copied into the metrics.
const LOG_DROPPED_REFRESH: Duration = Duration::from_secs(5);

/// Copies [`telemetry::dropped_log_lines`] into
/// `gatemesh_log_dropped_lines_total` until `stop` changes.
async fn copy_dropped_log_lines(metrics: api::Metrics, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LOG_DROPPED_REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.set_log_dropped_lines(telemetry::dropped_log_lines()),
            _ = stop.changed() => return,
        }
    }
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
    cluster: Cluster,
    offered: Vec<mesh_core::Pipeline>,
    max_info_age_ms: u64,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl api::Readiness for NodeReadiness {
    fn readiness(&self) -> api::ReadinessReport {
        let mut reasons = Vec::new();
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            reasons.push("draining".to_owned());
        }
        let snapshot = self.cluster.snapshot();
        let now = cluster::unix_ms();
        let capable = snapshot.orchestrators().iter().any(|o| {
            !o.blocked
                && now.saturating_sub(o.info_seen_ms) <= self.max_info_age_ms
                && o.info.as_ref().is_some_and(|info| {
                    self.offered.iter().any(|p| {
                        info.capabilities
                            .models
                            .get(&p.capability())
                            .is_some_and(|models| !models.is_empty())
                    })
                })
        });
        if !capable {
            reasons.push("no orchestrator with fresh info serves an offered pipeline".to_owned());
        }
        api::ReadinessReport {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

/// Loads the cluster identity and joins the mesh when `[cluster]` and
/// `[mesh]` are configured; otherwise a standalone view.
async fn start_cluster(
    config: &NodeConfig,
    public_base_url: &str,
    admin_addr: SocketAddr,
    metrics: api::Metrics,
    stop: watch::Receiver<bool>,
) -> Result<Cluster, RunError> {
    let (Some(cluster), Some(mesh_config)) = (&config.cluster, &config.mesh) else {
        return Ok(Cluster::standalone(
            config.node.name.clone(),
            config.node.region.clone(),
            metrics,
        ));
    };
    let identity = mesh::NodeIdentity::load(
        &cluster.node_cert_path,
        &cluster.node_key_path,
        &cluster.ca_cert_path,
    )
    .map_err(|e| RunError::Identity(e.to_string()))?;
    if identity.node() != &config.node.name || identity.region() != &config.node.region {
        return Err(RunError::Identity(format!(
            "the certificate is for node {} in region {}, but [node] says {} in {}",
            identity.node(),
            identity.region(),
            config.node.name,
            config.node.region
        )));
    }
    let mut mesh_config = mesh_config.clone();
    if mesh_config.api_url.is_empty() {
        mesh_config.api_url = public_base_url.to_owned();
    }
    if mesh_config.admin_url.is_empty() {
        mesh_config.admin_url = format!("http://{admin_addr}");
    }
    let mut stop_mesh = stop.clone();
    let handle = mesh::Mesh::start(mesh_config, identity, async move {
        let _ = stop_mesh.changed().await;
    })
    .await
    .map_err(|e| RunError::Mesh(e.to_string()))?;
    Ok(Cluster::with_mesh(handle, metrics, stop))
}

/// Applies each reloaded configuration to the price caps and capability
/// declaration and to the rate cards; a part that does not compile keeps its
/// running value (the reload itself was already validated). Then publishes
/// the digest of the routing configuration now in force.
fn follow_reloads(
    mut configs: watch::Receiver<Arc<NodeConfig>>,
    offering: Arc<offer::Offering>,
    usage: usage::UsageService,
    cluster: Cluster,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut in_force: NodeConfig = (**configs.borrow()).clone();
        while configs.changed().await.is_ok() {
            let config = configs.borrow_and_update().clone();
            let offer_applied = match offering.apply(&config) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "reload: price caps and offer kept");
                    false
                }
            };
            let rate_cards_applied = match usage::rate_cards_from_config(&config.rate_cards) {
                Ok(cards) => {
                    usage.apply(cards);
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, "reload: rate cards kept");
                    false
                }
            };
            in_force = routing_in_force(&config, &in_force, offer_applied, rate_cards_applied);
            cluster.set_routing_config(in_force.routing_digest()).await;
        }
    })
}

/// The routing configuration in force after a reload of `loaded`: its
/// sections, except those that did not apply, which keep `previous`'s.
/// (`[[offer]]`, `[pools]` and `[pricing]` compile into one policy, applied
/// whole or not at all; tenant limits always apply.)
fn routing_in_force(
    loaded: &NodeConfig,
    previous: &NodeConfig,
    offer_applied: bool,
    rate_cards_applied: bool,
) -> NodeConfig {
    let mut in_force = loaded.clone();
    if !offer_applied {
        in_force.offer = previous.offer.clone();
        in_force.pools = previous.pools.clone();
        in_force.pricing = previous.pricing.clone();
    }
    if !rate_cards_applied {
        in_force.rate_cards = previous.rate_cards.clone();
    }
    in_force
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_a_partly_applied_reload_is_that_of_what_is_in_force() {
        let base = "[node]\nname = \"a\"\nregion = \"fra\"\n";
        let previous = NodeConfig::parse(base).unwrap();
        let loaded = NodeConfig::parse(&format!(
            "{base}[pools]\ngold = [\"https://orch-1.example.net:8935\"]\n\
             [[rate_cards]]\npipeline = \"llm\"\nunit = \"run\"\nprice_usd = \"0.01\"\n"
        ))
        .unwrap();
        let digest =
            |offer, cards| routing_in_force(&loaded, &previous, offer, cards).routing_digest();
        assert_eq!(digest(true, true), loaded.routing_digest());
        assert_eq!(digest(false, false), previous.routing_digest());
        // The pool did not apply, the rate card did: neither file's digest.
        let mut expected = previous.clone();
        expected.rate_cards = loaded.rate_cards.clone();
        assert_eq!(digest(false, true), expected.routing_digest());
        assert_ne!(digest(false, true), loaded.routing_digest());
        assert_ne!(digest(false, true), previous.routing_digest());
    }
}
