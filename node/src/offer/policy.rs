//! The compiled declaration: which (pipeline, model) this node offers, the
//! routing rules of each, the pools, and the price caps. Immutable; a config
//! reload compiles a new one and swaps it in ([`super::Offering::apply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mesh_core::route::{JobRequirements, LatencyBudget, OverBudget};
use mesh_core::{OrchestratorId, Pipeline, RegionId, WeiPrice};
use num_rational::BigRational;

use super::caps::{self, CapSource, CapTable, Currency};
use super::config::{MIN_PRICE_FEED_REFRESH_MS, OverBudgetMode};
use crate::config::NodeConfig;

/// Routing rules of one offered (pipeline, models) entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// GPU name fragments to prefer.
    pub gpu_preferred: Vec<String>,
    /// GPU name fragments to refuse.
    pub gpu_excluded: Vec<String>,
    /// The latency budget.
    pub latency_budget: Option<LatencyBudget>,
    /// This region plus the failover regions; `None` = any region.
    pub allowed_regions: Option<Vec<RegionId>>,
    /// Cold models acceptable as a fallback.
    pub allow_cold: bool,
    /// Tier → the pool's orchestrators.
    pub tier_pools: BTreeMap<String, Arc<[OrchestratorId]>>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            gpu_preferred: Vec::new(),
            gpu_excluded: Vec::new(),
            latency_budget: None,
            allowed_regions: None,
            allow_cold: true,
            tier_pools: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    pipeline: Pipeline,
    /// Empty = every model.
    models: Vec<String>,
    rules: Rules,
}

/// Where the ETH/USD rate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSettings {
    /// The feed's URL.
    pub url: url::Url,
    /// JSON pointer to the rate.
    pub pointer: String,
    /// Read period, ms.
    pub refresh_ms: u64,
}

/// The effective cap of one (pipeline, model) at a given ETH/USD rate.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveCap {
    /// The cap in wei per unit; `None` = any price.
    pub wei: Option<WeiPrice>,
    /// The configured cap, e.g. `0.0005/1000000 USD`.
    pub configured: Option<String>,
    /// Which entry applied.
    pub source: Option<CapSource>,
    /// The cap is in USD and no rate is known: it is enforced as 0 wei
    /// (only free orchestrators) until one is.
    pub rate_missing: bool,
}

/// A compiled capability declaration and price caps.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    region: RegionId,
    /// `[[offer]]` entries exist (else: every `[api] pipelines` entry, default rules).
    declared: bool,
    api_pipelines: BTreeSet<Pipeline>,
    entries: Vec<Entry>,
    caps: CapTable,
    fixed_rate: Option<BigRational>,
    feed: Option<FeedSettings>,
    /// Lines about ignored price entries, logged at compile.
    pub warnings: Vec<String>,
}

impl Policy {
    /// Compiles the declaration of `config` for this node's region; reads
    /// the `maxPricePerCapability` file. Errors name the offending key.
    pub fn compile(config: &NodeConfig) -> Result<Self, String> {
        let region = config.node.region.clone();
        let mut entries = Vec::new();
        for (i, offer) in config.offer.iter().enumerate() {
            let at = format!("offer[{i}] ({})", offer.pipeline);
            if !offer.pipeline.is_batch() {
                return Err(format!("{at}: only batch pipelines are served"));
            }
            if offer.models.iter().any(String::is_empty) {
                return Err(format!("{at}: model ids must not be empty"));
            }
            if offer.latency_budget_ms == Some(0) {
                return Err(format!("{at}: latency_budget_ms must be at least 1"));
            }
            let mut tier_pools = BTreeMap::new();
            for (tier, pool) in &offer.tier_pools {
                let members = config
                    .pools
                    .get(pool)
                    .ok_or_else(|| format!("{at}: tier {tier:?} names unknown pool {pool:?}"))?;
                tier_pools.insert(tier.clone(), Arc::from(members.clone()));
            }
            if !offer.regions.is_empty() && !offer.regions.contains(&region) {
                continue;
            }
            let allowed_regions = offer.failover_regions.as_ref().map(|failover| {
                let mut regions = vec![region.clone()];
                regions.extend(failover.iter().filter(|r| **r != region).cloned());
                regions
            });
            entries.push(Entry {
                pipeline: offer.pipeline,
                models: offer.models.clone(),
                rules: Rules {
                    gpu_preferred: offer.gpu_preferred.clone(),
                    gpu_excluded: offer.gpu_excluded.clone(),
                    latency_budget: offer.latency_budget_ms.map(|ms| LatencyBudget {
                        max_ms: f64::from(ms),
                        over_budget: match offer.over_budget {
                            OverBudgetMode::LastResort => OverBudget::LastResort,
                            OverBudgetMode::Never => OverBudget::Never,
                        },
                    }),
                    allowed_regions,
                    allow_cold: offer.allow_cold,
                    tier_pools,
                },
            });
        }
        let pricing = &config.pricing;
        let json = pricing.capability_prices_json()?;
        let (caps, warnings) = CapTable::build(
            pricing.max_price_per_unit.as_deref(),
            pricing.pixels_per_unit,
            json.as_deref(),
        )
        .map_err(|e| format!("pricing: {e}"))?;
        let fixed_rate = match &pricing.eth_usd {
            Some(text) => {
                let rate =
                    caps::parse_decimal(text).map_err(|e| format!("pricing.eth_usd: {e}"))?;
                if rate == BigRational::from_integer(0.into()) {
                    return Err("pricing.eth_usd must be positive".into());
                }
                Some(rate)
            }
            None => None,
        };
        if pricing.price_feed_refresh_ms < MIN_PRICE_FEED_REFRESH_MS {
            return Err(format!(
                "pricing.price_feed_refresh_ms must be at least {MIN_PRICE_FEED_REFRESH_MS}"
            ));
        }
        let feed = pricing.price_feed_url.as_ref().map(|url| FeedSettings {
            url: url.clone(),
            pointer: pricing.price_feed_pointer.clone(),
            refresh_ms: pricing.price_feed_refresh_ms,
        });
        if caps.needs_rate() && fixed_rate.is_none() && feed.is_none() {
            return Err(
                "pricing: a cap is in USD; set pricing.eth_usd or pricing.price_feed_url".into(),
            );
        }
        if let Some(feed) = &feed
            && !matches!(feed.url.scheme(), "http" | "https")
        {
            return Err("pricing.price_feed_url must be http(s)".into());
        }
        Ok(Self {
            region,
            declared: !config.offer.is_empty(),
            api_pipelines: config.api.pipelines.clone(),
            entries,
            caps,
            fixed_rate,
            feed,
            warnings,
        })
    }

    /// This node's region.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// Whether the pipeline is offered here at all.
    pub fn offers_pipeline(&self, pipeline: Pipeline) -> bool {
        self.api_pipelines.contains(&pipeline)
            && (!self.declared || self.entries.iter().any(|e| e.pipeline == pipeline))
    }

    /// The offered pipelines, in order.
    pub fn offered_pipelines(&self) -> Vec<Pipeline> {
        self.api_pipelines
            .iter()
            .copied()
            .filter(|p| self.offers_pipeline(*p))
            .collect()
    }

    /// The models offered for `pipeline`: `None` = every advertised model.
    pub fn offered_models(&self, pipeline: Pipeline) -> Option<Vec<String>> {
        if !self.declared {
            return None;
        }
        let mut models = BTreeSet::new();
        for entry in self.entries.iter().filter(|e| e.pipeline == pipeline) {
            if entry.models.is_empty() {
                return None;
            }
            models.extend(entry.models.iter().cloned());
        }
        Some(models.into_iter().collect())
    }

    /// The rules for (pipeline, model), or `None` when it is not offered.
    pub fn rules(&self, pipeline: Pipeline, model_id: &str) -> Option<Rules> {
        if !self.api_pipelines.contains(&pipeline) {
            return None;
        }
        if !self.declared {
            return Some(Rules::default());
        }
        let of_pipeline = || self.entries.iter().filter(|e| e.pipeline == pipeline);
        of_pipeline()
            .find(|e| e.models.iter().any(|m| m == model_id))
            .or_else(|| of_pipeline().find(|e| e.models.is_empty()))
            .map(|e| e.rules.clone())
    }

    /// The cap for (pipeline, model) at the rate `usd_per_eth`.
    pub fn cap(
        &self,
        pipeline: Pipeline,
        model_id: &str,
        usd_per_eth: Option<&BigRational>,
    ) -> EffectiveCap {
        match self.caps.resolve(pipeline, model_id) {
            None => EffectiveCap {
                wei: None,
                configured: None,
                source: None,
                rate_missing: false,
            },
            Some((cap, source)) => {
                let wei = cap.wei_per_unit(usd_per_eth);
                EffectiveCap {
                    rate_missing: wei.is_none(),
                    wei: Some(wei.as_ref().map_or(WeiPrice::FREE, caps::to_wei_price)),
                    configured: Some(cap.describe()),
                    source: Some(source),
                }
            }
        }
    }

    /// What routing needs for a job of `tier`, or `None` when (pipeline,
    /// model) is not offered here.
    pub fn requirements(
        &self,
        pipeline: Pipeline,
        model_id: &str,
        tier: &str,
        usd_per_eth: Option<&BigRational>,
    ) -> Option<JobRequirements> {
        let rules = self.rules(pipeline, model_id)?;
        let mut job = JobRequirements::new(pipeline, model_id.to_owned());
        job.max_price = self.cap(pipeline, model_id, usd_per_eth).wei;
        job.gpu_preferred = rules.gpu_preferred;
        job.gpu_excluded = rules.gpu_excluded;
        job.allow_cold = rules.allow_cold;
        job.allowed_regions = rules.allowed_regions;
        job.latency_budget = rules.latency_budget;
        job.pool = rules.tier_pools.get(tier).cloned();
        Some(job)
    }

    /// The fixed ETH/USD rate, if configured.
    pub fn fixed_rate(&self) -> Option<&BigRational> {
        self.fixed_rate.as_ref()
    }

    /// The price feed, if configured.
    pub fn feed(&self) -> Option<&FeedSettings> {
        self.feed.as_ref()
    }

    /// Whether a cap needs the ETH/USD rate.
    pub fn needs_rate(&self) -> bool {
        self.caps.needs_rate()
    }

    /// The global cap as configured.
    pub fn global_cap(&self) -> Option<String> {
        self.caps.global.as_ref().map(caps::CapPrice::describe)
    }

    /// Every (pipeline, model-or-"default") with its own cap, and its currency.
    pub fn capability_caps(&self) -> Vec<(Pipeline, String, Currency)> {
        self.caps
            .per_capability
            .iter()
            .map(|((p, m), c)| (*p, m.clone(), c.currency))
            .collect()
    }
}
