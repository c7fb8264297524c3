//! The node's configuration: one TOML file, parsed into typed values at the
//! edge. Unknown keys are rejected so typos fail at start-up. Every default
//! lives here, next to the reason for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mesh_core::{NodeId, OrchestratorId, RegionId};
use serde::Deserialize;

/// Everything a node needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Who this node is.
    pub node: NodeSection,
    /// The public HTTPS listener.
    #[serde(default)]
    pub http: HttpSection,
    /// The operator listener (admin API, metrics).
    #[serde(default)]
    pub admin: AdminSection,
    /// Limits and behaviour of the public API.
    #[serde(default)]
    pub api: api::ApiConfig,
    /// API keys of the applications allowed to call the public API.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    /// Per-tenant limits, held across the whole cluster (see
    /// `mesh_core::tenancy::usage`). Tenants without an entry are unlimited.
    #[serde(default)]
    pub tenants: Vec<TenantEntry>,
    /// Where orchestrators come from and how often they are asked.
    #[serde(default)]
    pub discovery: DiscoverySection,
    /// Retries, failover and deadlines of jobs.
    #[serde(default)]
    pub jobs: JobsSection,
    /// The store of re-hosted result media.
    #[serde(default)]
    pub media: MediaSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// This node's cluster identity (certificates from `gatemesh certs`).
    /// With `[mesh]`, the node joins the mesh; without both, it runs alone.
    pub cluster: Option<ClusterSection>,
    /// The QUIC mesh between nodes.
    pub mesh: Option<mesh::MeshConfig>,
    /// Capability declaration: offered pipelines and models, per region,
    /// with their routing rules. Empty: every `[api] pipelines` entry, every
    /// model, default rules.
    #[serde(default)]
    pub offer: Vec<crate::offer::OfferEntry>,
    /// Named orchestrator pools for `offer.tier_pools`.
    #[serde(default)]
    pub pools: crate::offer::PoolsSection,
    /// The most we pay orchestrators (go-livepeer's price-cap flags).
    #[serde(default)]
    pub pricing: crate::offer::PricingSection,
    /// The durable usage log and its HTTP sink.
    #[serde(default)]
    pub usage: crate::usage::UsageSection,
    /// What applications are charged, per pipeline/model/tier.
    #[serde(default)]
    pub rate_cards: Vec<crate::usage::RateCardEntry>,
    /// The signed marketplace listing (`GET /v1/offering`); none without it.
    pub offering: Option<crate::offering::OfferingConfig>,
    /// The file this configuration was loaded from ([`NodeConfig::load`]);
    /// the node watches it for hot reloads. `None` when parsed from text.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    /// SHA-256 of the text that was loaded: the hot-reload watcher starts
    /// from it, so a change made between loading and watching is not
    /// missed. `None` when parsed from text.
    #[serde(skip)]
    pub source_sha256: Option<[u8; 32]>,
}

/// One `[[tenants]]` entry: a tenant's limits. Money is an exact decimal
/// USD string (`"50"`, `"0.25"`), held as nano-USD.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant, as named by `[[keys]]` and admin-created keys.
    pub name: String,
    /// Requests admitted per UTC minute, cluster-wide (fixed window).
    pub requests_per_minute: Option<u32>,
    /// Jobs running at once: exact on each node, cluster-wide best effort.
    pub max_concurrent_jobs: Option<u32>,
    /// Spend per UTC day in USD, cluster-wide.
    pub spend_per_day_usd: Option<String>,
    /// Spend per UTC month in USD, cluster-wide.
    pub spend_per_month_usd: Option<String>,
    /// Share (0–100 %) of `requests_per_minute` that is not reserved per
    /// node but shared; the cluster-wide overshoot is at most
    /// (nodes − 1) × this share (see docs/operations.md).
    #[serde(default = "default_rate_pool_percent")]
    pub rate_pool_percent: u8,
}

impl TenantEntry {
    /// The limits in integer units.
    pub fn limits(&self) -> Result<mesh_core::tenancy::TenantLimits, ConfigError> {
        let money = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(mesh_core::tenancy::parse_usd_nano)
                .transpose()
                .map_err(|e| ConfigError::Invalid(format!("tenants {:?}: {field}: {e}", self.name)))
        };
        Ok(mesh_core::tenancy::TenantLimits {
            requests_per_minute: self.requests_per_minute,
            max_concurrent_jobs: self.max_concurrent_jobs,
            spend_per_day_nano_usd: money("spend_per_day_usd", &self.spend_per_day_usd)?,
            spend_per_month_nano_usd: money("spend_per_month_usd", &self.spend_per_month_usd)?,
            rate_pool_percent: self.rate_pool_percent,
        })
    }
}

/// A fifth of the rate limit is shared, four fifths reserved per node: a
/// tenant moving between regions still gets a useful rate at once, and the
/// overshoot stays (nodes − 1) × 20 % of the limit at worst.
fn default_rate_pool_percent() -> u8 {
    20
}

/// `[cluster]`: certificate files issued by `gatemesh certs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The cluster CA certificate (`ca.pem`).
    pub ca_cert_path: PathBuf,
    /// This node's certificate (`<node>.pem`); its name and region must
    /// match `[node]`.
    pub node_cert_path: PathBuf,
    /// This node's private key (`<node>.key`).
    pub node_key_path: PathBuf,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Unique node name in the cluster.
    pub name: NodeId,
    /// The region this node serves.
    pub region: RegionId,
}

/// `[http]`: the public HTTPS endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address to listen on. Port 0 picks a free port (tests).
    #[serde(default = "default_http_listen_addr")]
    pub listen_addr: SocketAddr,
    /// PEM certificate chain. With `tls_key_path`; when both are absent the
    /// node generates a self-signed certificate at start (local use only).
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key for `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// How long in-flight requests may finish after shutdown starts.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

/// `[admin]`: the operator listener, plain HTTP on loopback by default.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address to listen on.
    #[serde(default = "default_admin_listen_addr")]
    pub listen_addr: SocketAddr,
    /// Bearer token every admin request must carry. Required when
    /// `listen_addr` is not a loopback address.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field("listen_addr", &self.listen_addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One `[[keys]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The bearer key the application sends. Held only as a SHA-256 hash
    /// after start-up.
    pub key: String,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The tenant's tier; selects rate cards, limits and orchestrator
    /// pools. Default `default`.
    #[serde(default = "default_tier")]
    pub tier: String,
}

fn default_tier() -> String {
    "default".to_owned()
}

/// `[discovery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// Static orchestrator list (`host:port` or URL; go-livepeer `-orchAddr`
    /// rules: no scheme means https, no port means 8935).
    #[serde(default)]
    pub orchestrators: Vec<OrchestratorId>,
    /// Webhook returning a JSON array of `{"address", "score"}` (go-livepeer
    /// `-orchWebhookUrl`).
    pub webhook_url: Option<url::Url>,
    /// Minimum time between webhook fetches. go-livepeer refreshes at most
    /// once a minute; so do we.
    #[serde(default = "default_webhook_refresh_ms")]
    pub webhook_refresh_ms: u64,
    /// How often each orchestrator's info (capabilities, models, prices,
    /// GPUs) is refreshed. Short enough that a model turning warm is seen
    /// within seconds, long enough to cost the orchestrator nothing.
    #[serde(default = "default_info_refresh_ms")]
    pub info_refresh_ms: u64,
    /// Timeout of one `GetOrchestrator` call (go-livepeer: 3 s connect).
    #[serde(default = "default_get_orchestrator_timeout_ms")]
    pub get_orchestrator_timeout_ms: u64,
    /// Source IP for connections to orchestrators. Default: the OS picks.
    pub source_ip: Option<std::net::IpAddr>,
}

/// `[jobs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    /// Most orchestrator attempts for one job. go-livepeer allows 20 inside
    /// a 2 s window; we bound by count and by the request deadline.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Most jobs this node runs at once; more wait for the deadline's worth
    /// of time and then fail. Bounds memory under overload.
    #[serde(default = "default_max_concurrent_jobs")]
    pub max_concurrent_jobs: usize,
}

/// `[media]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// Most objects held.
    #[serde(default = "default_media_max_objects")]
    pub max_objects: usize,
    /// Most bytes held in total.
    #[serde(default = "default_media_max_total_bytes")]
    pub max_total_bytes: usize,
    /// Largest single object fetched from an orchestrator.
    #[serde(default = "default_media_max_object_bytes")]
    pub max_object_bytes: usize,
    /// How long an object stays downloadable. Orchestrators keep results for
    /// 10 minutes; so do we.
    #[serde(default = "default_media_ttl_ms")]
    pub ttl_ms: u64,
    /// Timeout of one download from an orchestrator (go-livepeer: 4 s).
    #[serde(default = "default_media_fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    /// Download result URLs on any host. Off by default: a result must be
    /// on the host of the orchestrator that produced it (go-livepeer serves
    /// them at `https://<orch>/stream/…`), so an orchestrator cannot make
    /// the gateway fetch from hosts only the gateway can reach (cloud
    /// metadata, the admin listener, the private network) and hand the
    /// bytes to a client.
    #[serde(default)]
    pub fetch_from_other_hosts: bool,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (human-readable) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter; `GATEMESH_LOG` overrides it.
    #[serde(default = "default_log_filter")]
    pub filter: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said, with line and column.
        source: Box<toml::de::Error>,
    },
    /// Values parse but do not fit together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Digest of the settings that decide how this node runs a job it is
    /// given, forwarded ones included: `[[offer]]`, `[pools]`, `[pricing]`,
    /// `[[tenants]]` and `[[rate_cards]]`, as parsed (so defaults written out
    /// or left implicit give the same digest). 16 hex digits of SHA-256 over
    /// their debug form: equal on nodes of one version with equal settings;
    /// nodes of different versions may differ although their files agree.
    /// Published to the mesh (of the settings in force, after a reload that
    /// applied only in part) so that nodes can tell when a forwarded job
    /// would run under other rules than the caller's node applies.
    pub fn routing_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            self.offer, self.pools, self.pricing, self.tenants, self.rate_cards
        );
        crate::auth::hex(&Sha256::digest(text.as_bytes())[..8])
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|error| match error {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        config.source_path = Some(path.to_owned());
        config.source_sha256 = Some({
            use sha2::{Digest, Sha256};
            Sha256::digest(text.as_bytes()).into()
        });
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every tenant's limits, by tenant name.
    pub fn tenant_limits(
        &self,
    ) -> Result<std::collections::BTreeMap<String, mesh_core::tenancy::TenantLimits>, ConfigError>
    {
        let mut limits = std::collections::BTreeMap::new();
        for entry in &self.tenants {
            if limits.insert(entry.name.clone(), entry.limits()?).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "tenants {:?} is listed twice",
                    entry.name
                )));
            }
        }
        Ok(limits)
    }

    /// The settings that differ from `old` but only take effect after a
    /// restart (listeners, identity, mesh, logging).
    pub fn needs_restart(&self, old: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        if differs(&self.node, &old.node) {
            changed.push("node");
        }
        if differs(&self.http, &old.http) {
            changed.push("http");
        }
        if self.admin.listen_addr != old.admin.listen_addr || self.admin.token != old.admin.token {
            changed.push("admin");
        }
        if differs(&self.cluster, &old.cluster) {
            changed.push("cluster");
        }
        if differs(&self.mesh, &old.mesh) {
            changed.push("mesh");
        }
        if differs(&self.log, &old.log) {
            changed.push("log");
        }
        changed
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_some() != self.mesh.is_some() {
            return Err(ConfigError::Invalid(
                "[cluster] and [mesh] must be given together".into(),
            ));
        }
        if let Some(mesh) = &self.mesh {
            mesh.validate()
                .map_err(|e| ConfigError::Invalid(format!("mesh: {e}")))?;
        }
        self.api
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(offering) = &self.offering {
            offering.validate().map_err(ConfigError::Invalid)?;
        }
        if self.http.tls_cert_path.is_some() != self.http.tls_key_path.is_some() {
            return Err(ConfigError::Invalid(
                "http.tls_cert_path and http.tls_key_path must be given together".into(),
            ));
        }
        if !self.admin.listen_addr.ip().is_loopback()
            && self
                .admin
                .token
                .as_ref()
                .is_none_or(|t| t.len() < MIN_KEY_LEN)
        {
            return Err(ConfigError::Invalid(format!(
                "admin.listen_addr {} is not loopback: admin.token (at least {MIN_KEY_LEN} characters) is required",
                self.admin.listen_addr
            )));
        }
        if self.jobs.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "jobs.max_attempts must be at least 1".into(),
            ));
        }
        if self.jobs.max_concurrent_jobs == 0 {
            return Err(ConfigError::Invalid(
                "jobs.max_concurrent_jobs must be at least 1".into(),
            ));
        }
        if self.media.max_objects == 0 || self.media.max_total_bytes == 0 {
            return Err(ConfigError::Invalid(
                "media.max_objects and media.max_total_bytes must be positive".into(),
            ));
        }
        if self.discovery.webhook_refresh_ms < MIN_WEBHOOK_REFRESH_MS {
            return Err(ConfigError::Invalid(format!(
                "discovery.webhook_refresh_ms must be at least {MIN_WEBHOOK_REFRESH_MS}"
            )));
        }
        if self.discovery.info_refresh_ms < MIN_INFO_REFRESH_MS {
            return Err(ConfigError::Invalid(format!(
                "discovery.info_refresh_ms must be at least {MIN_INFO_REFRESH_MS}"
            )));
        }
        crate::offer::Policy::compile(self).map_err(ConfigError::Invalid)?;
        crate::usage::validate_config(&self.usage, &self.rate_cards)
            .map_err(ConfigError::Invalid)?;
        if self.tenants.len() > mesh_core::tenancy::MAX_TENANTS {
            return Err(ConfigError::Invalid(format!(
                "at most {} [[tenants]] entries",
                mesh_core::tenancy::MAX_TENANTS
            )));
        }
        for entry in &self.tenants {
            mesh_core::tenancy::keys::validate_name(
                "tenants.name",
                &entry.name,
                mesh_core::tenancy::MAX_TENANT_NAME_LEN,
            )
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if entry.rate_pool_percent > 100 {
                return Err(ConfigError::Invalid(format!(
                    "tenants {:?}: rate_pool_percent must be 0–100",
                    entry.name
                )));
            }
        }
        self.tenant_limits()?;
        for entry in &self.keys {
            if entry.key.len() < MIN_KEY_LEN {
                return Err(ConfigError::Invalid(format!(
                    "API key of tenant {:?} is shorter than {MIN_KEY_LEN} characters",
                    entry.tenant
                )));
            }
        }
        Ok(())
    }
}

/// Keys shorter than this are guessable.
pub const MIN_KEY_LEN: usize = 16;
/// Webhooks are not polled faster than this, whatever the config says, so a
/// typo cannot hammer the operator's discovery service.
pub const MIN_WEBHOOK_REFRESH_MS: u64 = 1_000;
/// Orchestrators are not asked for info faster than this.
pub const MIN_INFO_REFRESH_MS: u64 = 200;

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen_addr: default_http_listen_addr(),
            tls_cert_path: None,
            tls_key_path: None,
            shutdown_grace_ms: default_shutdown_grace_ms(),
        }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen_addr: default_admin_listen_addr(),
            token: None,
        }
    }
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            orchestrators: Vec::new(),
            webhook_url: None,
            webhook_refresh_ms: default_webhook_refresh_ms(),
            info_refresh_ms: default_info_refresh_ms(),
            get_orchestrator_timeout_ms: default_get_orchestrator_timeout_ms(),
            source_ip: None,
        }
    }
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            max_concurrent_jobs: default_max_concurrent_jobs(),
        }
    }
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            max_objects: default_media_max_objects(),
            max_total_bytes: default_media_max_total_bytes(),
            max_object_bytes: default_media_max_object_bytes(),
            ttl_ms: default_media_ttl_ms(),
            fetch_timeout_ms: default_media_fetch_timeout_ms(),
            fetch_from_other_hosts: false,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            filter: default_log_filter(),
        }
    }
}

fn default_http_listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_admin_listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9443))
}
/// In-flight image jobs take seconds; 30 s lets them finish.
fn default_shutdown_grace_ms() -> u64 {
    30_000
}
fn default_webhook_refresh_ms() -> u64 {
    60_000
}
fn default_info_refresh_ms() -> u64 {
    10_000
}
fn default_get_orchestrator_timeout_ms() -> u64 {
    3_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_max_concurrent_jobs() -> usize {
    1_024
}
fn default_media_max_objects() -> usize {
    10_000
}
/// 512 MiB of results in memory at most.
fn default_media_max_total_bytes() -> usize {
    512 * 1024 * 1024
}
/// A short generated video is a few MiB; 64 MiB leaves room.
fn default_media_max_object_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_media_ttl_ms() -> u64 {
    600_000
}
fn default_media_fetch_timeout_ms() -> u64 {
    4_000
}
fn default_log_filter() -> String {
    "warn,rustls=error,node=info,mesh=info,api=info,livepeer=info".into()
}
