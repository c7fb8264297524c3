//! The operator's offer: which pipelines and models this gateway serves, in
//! which regions, with which routing rules, and the most it pays
//! orchestrators.
//!
//! - [`config`]: the TOML (`[[offer]]`, `[pools]`, `[pricing]`).
//! - [`caps`]: go-livepeer's `maxPricePerUnit` / `maxPricePerCapability`
//!   as exact rationals, USD conversion, the price-feed body.
//! - [`policy`]: the compiled, immutable [`Policy`].
//! - [`Offering`]: the live policy (swapped whole by [`Offering::apply`] on
//!   a config reload) and the ETH/USD rate; [`run_price_feed`] refreshes the
//!   rate, keeping the last good value.
//! - [`NodeCatalog`]: the API ports `CapabilityCatalog` (404s and
//!   `GET /v1/capabilities`) and `OfferAdmin` (`GET /admin/pricing`).

pub mod caps;
pub mod config;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use api::admin::pricing::{CapabilityRow, FilteredRow, PricingReport, RateReport, WirePrice};
use api::routes::capabilities::{
    CapabilitiesReport, ModelCapabilities, ModelState, PipelineCapabilities, RegionCapabilities,
};
use api::{Caller, CapabilityCatalog};
use mesh_core::route::{JobRequirements, LocalState, RouteConfig, RoutePlan, Tier};
use mesh_core::{Pipeline, ViewSnapshot};
use num_rational::BigRational;
use num_traits::ToPrimitive;
use rand::SeedableRng;
use tokio::sync::watch;

pub use config::{OfferEntry, OverBudgetMode, PoolsSection, PricingSection};
pub use policy::{EffectiveCap, Policy, Rules};

use crate::cluster::{Cluster, unix_ms};
use crate::config::NodeConfig;

/// Timeout of one price-feed read.
const FEED_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest price-feed body read (a rate is a few bytes; CoinGecko answers
/// tens of bytes).
const MAX_FEED_BODY_BYTES: usize = 64 * 1024;
/// Without a feed, how often the feed task looks for one (a reload may add it).
const FEED_IDLE_CHECK: Duration = Duration::from_secs(1);
/// The feed is stale after this many refresh periods without a good value.
const FEED_STALE_PERIODS: u64 = 3;
/// Most models listed per pipeline in reports (orchestrators advertise a
/// handful; the bound keeps a hostile advertisement from growing answers).
const MAX_MODELS_PER_PIPELINE: usize = 256;
/// Tier whose pool the admin report applies.
const REPORT_TIER: &str = "default";

/// What the price feed has done.
#[derive(Debug, Clone, Default)]
struct RateState {
    /// The last good feed value and when it was read (unix ms).
    feed: Option<(BigRational, u64)>,
    /// The last read's error, cleared by a success.
    last_error: Option<String>,
    /// Failed reads since start.
    failures_total: u64,
}

/// The live offer: the policy in force and the ETH/USD rate. Shared by the
/// executor, the API ports and the feed task.
#[derive(Debug)]
pub struct Offering {
    policy: RwLock<Arc<Policy>>,
    rate: Mutex<RateState>,
    metrics: api::Metrics,
}

impl Offering {
    /// Compiles `config`'s declaration and caps.
    pub fn new(config: &NodeConfig, metrics: api::Metrics) -> Result<Arc<Self>, String> {
        let policy = Policy::compile(config)?;
        log_warnings(&policy);
        Ok(Arc::new(Self {
            policy: RwLock::new(Arc::new(policy)),
            rate: Mutex::new(RateState::default()),
            metrics,
        }))
    }

    /// **Hot reload**: compiles the declaration, pools and caps of a new
    /// config (re-reading the `maxPricePerCapability` file) and swaps them
    /// in; jobs planned after this call use them. On error the old policy
    /// stays. The price feed's last good rate is kept across reloads.
    pub fn apply(&self, config: &NodeConfig) -> Result<(), String> {
        let policy = Policy::compile(config)?;
        log_warnings(&policy);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        tracing::info!("capability declaration and price caps reloaded");
        Ok(())
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// USD per ETH: the feed's last good value, else the fixed rate.
    pub fn usd_per_eth(&self) -> Option<BigRational> {
        let state = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        state
            .feed
            .as_ref()
            .map(|(rate, _)| rate.clone())
            .or_else(|| self.policy().fixed_rate().cloned())
    }

    /// Routing requirements of a job, or `None` when (pipeline, model) is
    /// not offered here.
    pub fn requirements(
        &self,
        pipeline: Pipeline,
        model_id: &str,
        tier: &str,
    ) -> Option<JobRequirements> {
        let rate = self.usd_per_eth();
        self.policy()
            .requirements(pipeline, model_id, tier, rate.as_ref())
    }

    fn record_feed(&self, result: Result<BigRational, String>, now_ms: u64) {
        let mut state = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(rate) => {
                state.feed = Some((rate, now_ms));
                state.last_error = None;
            }
            Err(error) => {
                state.failures_total += 1;
                self.metrics.record_price_feed_failure();
                let age_s = state
                    .feed
                    .as_ref()
                    .map(|(_, at)| now_ms.saturating_sub(*at) / 1_000);
                tracing::warn!(%error, last_good_age_s = ?age_s, "price feed read failed; keeping the last good ETH/USD rate");
                state.last_error = Some(error);
            }
        }
    }

    fn rate_report(&self, now_ms: u64) -> RateReport {
        let policy = self.policy();
        let state = self.rate.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (usd_per_eth, source) = match (&state.feed, policy.fixed_rate()) {
            (Some((rate, _)), _) => (Some(rate.clone()), "feed"),
            (None, Some(rate)) => (Some(rate.clone()), "fixed"),
            (None, None) => (None, "none"),
        };
        let feed_age_ms = state
            .feed
            .as_ref()
            .map(|(_, at)| now_ms.saturating_sub(*at));
        let stale = policy.feed().is_some_and(|feed| {
            feed_age_ms.is_none_or(|age| age > feed.refresh_ms.saturating_mul(FEED_STALE_PERIODS))
        });
        self.metrics.set_price_feed(
            usd_per_eth.as_ref().and_then(ToPrimitive::to_f64),
            feed_age_ms.map(|ms| ms as f64 / 1_000.0),
        );
        RateReport {
            needed: policy.needs_rate(),
            usd_per_eth: usd_per_eth.as_ref().map(caps::decimal_string),
            source: source.to_owned(),
            feed_url: policy.feed().map(|f| f.url.to_string()),
            feed_age_ms,
            stale,
            last_error: state.last_error.clone(),
            failures_total: state.failures_total,
        }
    }
}

fn log_warnings(policy: &Policy) {
    for warning in &policy.warnings {
        tracing::warn!(%warning, "price cap entry ignored");
    }
}

/// Reads the price feed every `price_feed_refresh_ms` until `stop`, keeping
/// the last good value when a read fails. Follows reloads: the URL, pointer
/// and period are read from the policy in force before each read.
pub async fn run_price_feed(offering: Arc<Offering>, mut stop: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder().timeout(FEED_TIMEOUT).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "price feed client could not be built");
            return;
        }
    };
    loop {
        let policy = offering.policy();
        let wait = match policy.feed() {
            None => FEED_IDLE_CHECK,
            Some(feed) => {
                let result = read_feed(&http, &feed.url, &feed.pointer).await;
                offering.record_feed(result, unix_ms());
                Duration::from_millis(feed.refresh_ms)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn read_feed(
    http: &reqwest::Client,
    url: &url::Url,
    pointer: &str,
) -> Result<BigRational, String> {
    let mut response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: status {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_FEED_BODY_BYTES {
            return Err(format!(
                "{url}: body larger than {MAX_FEED_BODY_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    caps::parse_rate(&body, pointer).map_err(|e| format!("{url}: {e}"))
}

/// The API ports over the offering and the view.
#[derive(Debug, Clone)]
pub struct NodeCatalog {
    offering: Arc<Offering>,
    cluster: Cluster,
}

impl NodeCatalog {
    /// A catalog reading `offering` and `cluster`'s view.
    pub fn new(offering: Arc<Offering>, cluster: Cluster) -> Self {
        Self { offering, cluster }
    }

    /// Every usable orchestrator for `job` (no exploration, no bound
    /// below the number of offers), with the filter counts.
    fn usable(&self, job: &JobRequirements, snapshot: &ViewSnapshot, now_ms: u64) -> RoutePlan {
        let offers = snapshot.offers(job.pipeline, &job.model_id).len();
        let config = RouteConfig {
            max_attempts: offers.max(1),
            max_forward: 0,
            explore_share: 0.0,
            ..RouteConfig::default()
        };
        let local = LocalState::new(self.cluster.region().clone(), now_ms);
        mesh_core::route::pick_with(
            job,
            snapshot,
            &local,
            &config,
            &mut rand::rngs::StdRng::seed_from_u64(0),
        )
    }

    /// The (pipeline, model) pairs to report: declared models, or every
    /// model the view has for the pipeline.
    fn models(policy: &Policy, pipeline: Pipeline, snapshot: &ViewSnapshot) -> Vec<String> {
        if let Some(models) = policy.offered_models(pipeline) {
            return models;
        }
        let capability = pipeline.capability();
        let mut models = BTreeSet::new();
        for summary in snapshot.orchestrators() {
            if let Some(advertised) = summary
                .info
                .as_ref()
                .and_then(|info| info.capabilities.models.get(&capability))
            {
                for model in advertised.keys() {
                    if models.len() >= MAX_MODELS_PER_PIPELINE {
                        break;
                    }
                    models.insert(model.clone());
                }
            }
        }
        models.into_iter().collect()
    }
}

impl CapabilityCatalog for NodeCatalog {
    fn offers_pipeline(&self, pipeline: Pipeline) -> bool {
        self.offering.policy().offers_pipeline(pipeline)
    }

    fn offers_model(&self, pipeline: Pipeline, model_id: &str) -> bool {
        self.offering.policy().rules(pipeline, model_id).is_some()
    }

    fn capabilities(&self, caller: &Caller) -> CapabilitiesReport {
        let now_ms = unix_ms();
        let policy = self.offering.policy();
        let rate = self.offering.usd_per_eth();
        let snapshot = self.cluster.snapshot();
        let mut pipelines = Vec::new();
        for pipeline in policy.offered_pipelines() {
            let mut models = Vec::new();
            for model_id in Self::models(&policy, pipeline, &snapshot) {
                let Some(job) =
                    policy.requirements(pipeline, &model_id, &caller.tier, rate.as_ref())
                else {
                    continue;
                };
                let plan = self.usable(&job, &snapshot, now_ms);
                let mut by_region: BTreeMap<String, (u32, u32)> = BTreeMap::new();
                let (mut warm, mut cold) = (0u32, 0u32);
                for candidate in &plan.attempts {
                    let region = snapshot
                        .orchestrator(&candidate.orchestrator)
                        .and_then(|s| s.home_region.as_ref())
                        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
                    let counts = by_region.entry(region).or_default();
                    if matches!(candidate.tier, Tier::ColdHome | Tier::ColdRemote) {
                        cold += 1;
                        counts.1 += 1;
                    } else {
                        warm += 1;
                        counts.0 += 1;
                    }
                }
                models.push(ModelCapabilities {
                    model_id,
                    state: if warm > 0 {
                        ModelState::Warm
                    } else if cold > 0 {
                        ModelState::Cold
                    } else {
                        ModelState::Unavailable
                    },
                    warm,
                    cold,
                    regions: by_region
                        .into_iter()
                        .map(|(region, (warm, cold))| RegionCapabilities { region, warm, cold })
                        .collect(),
                });
            }
            pipelines.push(PipelineCapabilities { pipeline, models });
        }
        CapabilitiesReport {
            region: self.cluster.region().to_string(),
            generated_at_ms: now_ms,
            pipelines,
        }
    }
}

impl api::admin::OfferAdmin for NodeCatalog {
    fn pricing(&self) -> PricingReport {
        let now_ms = unix_ms();
        let policy = self.offering.policy();
        let rate_report = self.offering.rate_report(now_ms);
        let rate = self.offering.usd_per_eth();
        let snapshot = self.cluster.snapshot();
        let mut capabilities = Vec::new();
        let mut filtered_total = FilteredRow::default();
        for pipeline in policy.offered_pipelines() {
            for model_id in Self::models(&policy, pipeline, &snapshot) {
                let Some(job) =
                    policy.requirements(pipeline, &model_id, REPORT_TIER, rate.as_ref())
                else {
                    continue;
                };
                let cap = policy.cap(pipeline, &model_id, rate.as_ref());
                let plan = self.usable(&job, &snapshot, now_ms);
                let filtered = FilteredRow::from(&plan.filtered);
                filtered_total.add(&filtered);
                capabilities.push(CapabilityRow {
                    pipeline,
                    model_id,
                    cap_configured: cap.configured,
                    cap_source: cap.source.map(|s| s.as_str().to_owned()),
                    cap_wei: cap.wei.map(|w| WirePrice {
                        price_per_unit: w.per_unit(),
                        pixels_per_unit: w.pixels_per_unit(),
                    }),
                    rate_missing: cap.rate_missing,
                    offered: plan.filtered.offered,
                    usable: plan.attempts.len() as u32,
                    filtered,
                });
            }
        }
        PricingReport {
            rate: rate_report,
            global_cap: policy.global_cap(),
            capabilities,
            filtered_total,
        }
    }
}

#[cfg(test)]
mod tests;
