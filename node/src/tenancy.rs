//! Tenant limits and runtime keys on a node: the [`Tenancy`] implements the
//! API's [`api::Admission`] port over a `mesh_core` [`UsageBook`], takes
//! completed jobs' charges ([`Tenancy::record_spend`]), and replicates both
//! the usage counters (record `tenant_usage`, this node's own counts only)
//! and the runtime key book (records `tenant_keys/<0-f>`) over the mesh,
//! coalesced like the blocklist. Admission never waits on the mesh: it
//! locks the book for a few microseconds and decides from what has arrived.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use api::metrics::TenantLimit;
use api::{AdmissionPermit, Caller, LimitExceeded};
use mesh_core::Pipeline;
use mesh_core::tenancy::keys::KEY_SHARDS;
use mesh_core::tenancy::{KeyBook, TenantLimits, UsageBook, UsageRecord};
use tokio::sync::{Notify, watch};

use crate::auth::KeyStore;
use crate::cluster::{Cluster, unix_ms};
use crate::config::NodeConfig;

/// Record key of a node's usage counters.
pub const USAGE_KEY: &str = "tenant_usage";
/// Record key prefix of the key book's shards (`tenant_keys/0` … `/f`).
pub const KEYS_KEY_PREFIX: &str = "tenant_keys/";
/// Shortest time between two publications (as the blocklist).
const PUBLISH_COALESCE: Duration = Duration::from_millis(50);
/// How often gauges, node count and expiry are refreshed; also how often
/// a node with jobs in flight re-publishes (peers age in-flight counts out
/// after `IN_FLIGHT_MAX_AGE_MS`).
const TICK: Duration = Duration::from_secs(1);
/// Re-publication period while jobs are in flight.
const IN_FLIGHT_REPUBLISH: Duration = Duration::from_secs(5);

/// Tenant admission, spend accounting and their replication. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tenancy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    book: Mutex<UsageBook>,
    limits: RwLock<Arc<BTreeMap<String, TenantLimits>>>,
    nodes: AtomicUsize,
    changed: Notify,
    cluster: Cluster,
    keys: Arc<KeyStore>,
}

impl Tenancy {
    /// Limits from `config`, counters empty.
    pub fn new(cluster: Cluster, keys: Arc<KeyStore>, config: &NodeConfig) -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                book: Mutex::new(UsageBook::new(cluster.node().clone())),
                limits: RwLock::new(Arc::new(BTreeMap::new())),
                nodes: AtomicUsize::new(1),
                changed: Notify::new(),
                cluster,
                keys,
            }),
        };
        this.apply(config);
        this
    }

    /// Applies the tenant limits and configured keys of a (re)loaded config.
    pub fn apply(&self, config: &NodeConfig) {
        let limits = match config.tenant_limits() {
            Ok(limits) => limits,
            Err(error) => {
                // Validated at load; keep the old limits if it happens anyway.
                tracing::error!(%error, "tenant limits not applied");
                return;
            }
        };
        self.book().set_tracked(limits.keys().map(String::as_str));
        *self.inner.limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(limits);
        self.inner.keys.apply_config(&config.keys);
    }

    /// The key store (authenticator and key admin).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.inner.keys
    }

    /// Adds a completed job's charge to its tenant's day and month spend.
    /// The usage path calls it once per charged job.
    pub fn record_spend(&self, tenant: &str, amount_nano_usd: u64) {
        let now = unix_ms();
        self.book().record_spend(tenant, amount_nano_usd, now);
        self.refresh_gauges(tenant, now);
        self.inner.changed.notify_one();
    }

    /// The overshoot bound of `requests_per_minute` for `tenant` now (see
    /// `mesh_core::tenancy::usage`), for tests and operators.
    pub fn overshoot_bound(&self, tenant: &str) -> Option<u64> {
        let limits = self.limits_of(tenant)?;
        self.book().overshoot_bound(
            tenant,
            &limits,
            self.inner.nodes.load(Ordering::Relaxed),
            unix_ms(),
        )
    }

    fn limits_of(&self, tenant: &str) -> Option<TenantLimits> {
        self.inner
            .limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .copied()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, UsageBook> {
        self.inner.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh_gauges(&self, tenant: &str, now: u64) {
        let Some(limits) = self.limits_of(tenant) else {
            return;
        };
        let usage = self.book().usage(tenant, &limits, now);
        let metrics = self.inner.cluster.metrics();
        for (kind, used, limit) in usage {
            let ratio = if limit == 0 {
                1.0
            } else {
                used as f64 / limit as f64
            };
            metrics.set_tenant_usage_ratio(tenant, TenantLimit::from(kind), ratio);
        }
    }

    /// Starts the replication and housekeeping tasks (until `shutdown`).
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.clone().tick_loop(shutdown.clone()))];
        if self.inner.cluster.mesh().is_some() {
            tasks.push(tokio::spawn(self.clone().publish_loop(shutdown.clone())));
            tasks.push(tokio::spawn(self.clone().receive_loop(shutdown)));
        }
        tasks
    }

    /// Follows config reloads: applies each new configuration.
    pub fn follow(
        &self,
        mut configs: watch::Receiver<Arc<NodeConfig>>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            while configs.changed().await.is_ok() {
                let config = configs.borrow_and_update().clone();
                this.apply(&config);
            }
        })
    }

    async fn tick_loop(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        let mut since_publish = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let alive = self
                .inner
                .cluster
                .members()
                .iter()
                .filter(|m| m.state == mesh::MemberState::Alive)
                .count();
            self.inner.nodes.store(alive.max(1), Ordering::Relaxed);
            let now = unix_ms();
            let in_flight = {
                let mut book = self.book();
                book.expire(now);
                book.has_in_flight()
            };
            let tenants: Vec<String> = self
                .inner
                .limits
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            for tenant in &tenants {
                self.refresh_gauges(tenant, now);
            }
            since_publish += TICK;
            if in_flight && since_publish >= IN_FLIGHT_REPUBLISH {
                since_publish = Duration::ZERO;
                self.book().set_dirty();
                self.inner.changed.notify_one();
            }
        }
    }

    async fn publish_loop(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mesh) = self.inner.cluster.mesh().cloned() else {
            return;
        };
        loop {
            let usage = {
                let mut book = self.book();
                if book.take_dirty() {
                    match book.encode_local(unix_ms()) {
                        Ok(bytes) => Some(bytes),
                        Err(error) => {
                            tracing::warn!(%error, "tenant usage not published");
                            None
                        }
                    }
                } else {
                    None
                }
            };
            let shards: Vec<(String, Vec<u8>)> = self.inner.keys.with_book(|book| {
                book.take_dirty()
                    .into_iter()
                    .filter_map(|shard| match book.encode_shard(shard) {
                        Ok(bytes) => Some((format!("{KEYS_KEY_PREFIX}{shard:x}"), bytes)),
                        Err(error) => {
                            tracing::warn!(shard, %error, "key shard not published");
                            None
                        }
                    })
                    .collect()
            });
            if let Some(bytes) = usage
                && let Err(error) = mesh.publish_record(USAGE_KEY, &bytes).await
            {
                tracing::warn!(%error, "cannot publish tenant usage");
            }
            for (key, bytes) in shards {
                if let Err(error) = mesh.publish_record(&key, &bytes).await {
                    tracing::warn!(%key, %error, "cannot publish a key shard");
                }
            }
            tokio::select! {
                _ = self.inner.changed.notified() => {}
                _ = self.inner.keys.changed.notified() => {}
                _ = shutdown.changed() => return,
            }
            tokio::time::sleep(PUBLISH_COALESCE).await;
        }
    }

    async fn receive_loop(self, mut shutdown: watch::Receiver<bool>) {
        let Some(mesh) = self.inner.cluster.mesh().cloned() else {
            return;
        };
        crate::cluster::follow_records(&mesh, &mut shutdown, |record| self.merge_record(record))
            .await;
    }

    fn merge_record(&self, record: &mesh::Record) {
        let now = unix_ms();
        if record.key == USAGE_KEY {
            match UsageRecord::decode(&record.value) {
                Ok(usage) => {
                    if let Err(error) = self.book().merge(&record.origin, usage, now) {
                        tracing::debug!(origin = %record.origin, %error, "tenant usage refused");
                    }
                }
                Err(error) => {
                    tracing::warn!(origin = %record.origin, %error, "undecodable tenant usage")
                }
            }
        } else if let Some(shard) = record.key.strip_prefix(KEYS_KEY_PREFIX) {
            let valid_shard = u8::from_str_radix(shard, 16).is_ok_and(|s| s < KEY_SHARDS);
            if !valid_shard {
                return;
            }
            match KeyBook::decode_shard(&record.value) {
                Ok(entries) => {
                    let merged = self.inner.keys.with_book(|book| book.merge(entries, now));
                    match merged {
                        // Re-publish what we learned, so a revocation
                        // outlives the node that made it.
                        Ok(true) => self.inner.keys.changed.notify_one(),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::debug!(origin = %record.origin, %error, "key shard refused")
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(origin = %record.origin, %error, "undecodable key shard")
                }
            }
        }
    }
}

impl api::Admission for Tenancy {
    fn admit(
        &self,
        caller: &Caller,
        _pipeline: Pipeline,
    ) -> Result<AdmissionPermit, LimitExceeded> {
        let metrics = self.inner.cluster.metrics();
        let Some(limits) = self.limits_of(&caller.tenant) else {
            return Ok(AdmissionPermit::unlimited());
        };
        let now = unix_ms();
        let nodes = self.inner.nodes.load(Ordering::Relaxed);
        let decision = self.book().admit(&caller.tenant, &limits, nodes, now);
        self.inner.changed.notify_one();
        self.refresh_gauges(&caller.tenant, now);
        match decision {
            Ok(()) => {
                let this = self.clone();
                let tenant = caller.tenant.clone();
                Ok(AdmissionPermit::new(move || {
                    this.book().release(&tenant);
                    this.inner.changed.notify_one();
                }))
            }
            Err(rejection) => {
                metrics.record_tenant_rejection(&caller.tenant, TenantLimit::from(rejection.limit));
                Err(LimitExceeded {
                    limit: rejection.limit,
                    retry_after_secs: rejection.retry_after_ms.div_ceil(1_000).max(1),
                })
            }
        }
    }
}
