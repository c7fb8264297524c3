//! `GET /admin/pricing`: what we pay orchestrators and what routing filters
//! out. Per offered (pipeline, model): the configured cap, the effective
//! cap in wei, how many orchestrators advertise it and how many each filter
//! removes (price cap, GPU exclusion, region, pool, cold, blocklist,
//! ejection); plus the ETH/USD rate and the state of the price feed.

use mesh_core::Pipeline;
use mesh_core::route::FilterCounts;
use serde::Serialize;

/// What the pricing report needs from the node.
pub trait OfferAdmin: Send + Sync + 'static {
    /// The report as of now.
    fn pricing(&self) -> PricingReport;
}

/// Body of `GET /admin/pricing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricingReport {
    /// The ETH/USD rate used for USD caps.
    pub rate: RateReport,
    /// The global cap as configured (`price/pixels CURRENCY`), if any.
    pub global_cap: Option<String>,
    /// One row per offered (pipeline, model) advertised by some orchestrator
    /// or named in the declaration.
    pub capabilities: Vec<CapabilityRow>,
    /// The sum of the rows' filter counts.
    pub filtered_total: FilteredRow,
}

/// The ETH/USD rate and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateReport {
    /// Some cap is in USD.
    pub needed: bool,
    /// USD per ETH as a decimal string, if known.
    pub usd_per_eth: Option<String>,
    /// `feed`, `fixed` or `none`.
    pub source: String,
    /// The feed URL, if configured.
    pub feed_url: Option<String>,
    /// Age of the last good feed value, ms.
    pub feed_age_ms: Option<u64>,
    /// The feed has not answered for three refresh periods (or never).
    pub stale: bool,
    /// The last feed error, if the last read failed.
    pub last_error: Option<String>,
    /// Failed feed reads since start.
    pub failures_total: u64,
}

/// One (pipeline, model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityRow {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// The cap as configured, if any.
    pub cap_configured: Option<String>,
    /// `model`, `pipeline_default` or `global`, if a cap applies.
    pub cap_source: Option<String>,
    /// The effective cap in wei per unit (`price_per_unit / pixels_per_unit`).
    pub cap_wei: Option<WirePrice>,
    /// The cap is in USD and no rate is known: only free orchestrators pass.
    pub rate_missing: bool,
    /// Orchestrators advertising it.
    pub offered: u32,
    /// Left after the filters.
    pub usable: u32,
    /// Why the others were removed.
    pub filtered: FilteredRow,
}

/// A price as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WirePrice {
    /// Wei.
    pub price_per_unit: i64,
    /// Units.
    pub pixels_per_unit: i64,
}

/// Orchestrators removed, per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FilteredRow {
    /// Above the price cap.
    pub over_price: u32,
    /// With an excluded GPU.
    pub gpu_excluded: u32,
    /// Homed in a region the job may not use.
    pub region_not_allowed: u32,
    /// Outside the tier's pool.
    pub not_in_pool: u32,
    /// Cold while cold models are not acceptable.
    pub cold_not_allowed: u32,
    /// On the blocklist.
    pub blocked: u32,
    /// Ejected after failures.
    pub ejected: u32,
    /// Measured slower than a strict latency budget.
    pub over_latency_budget: u32,
}

impl From<&FilterCounts> for FilteredRow {
    fn from(c: &FilterCounts) -> Self {
        Self {
            over_price: c.over_price,
            gpu_excluded: c.gpu_excluded,
            region_not_allowed: c.region_not_allowed,
            not_in_pool: c.not_in_pool,
            cold_not_allowed: c.cold_not_allowed,
            blocked: c.blocked,
            ejected: c.ejected,
            over_latency_budget: c.over_latency_budget,
        }
    }
}

impl FilteredRow {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Self) {
        self.over_price += other.over_price;
        self.gpu_excluded += other.gpu_excluded;
        self.region_not_allowed += other.region_not_allowed;
        self.not_in_pool += other.not_in_pool;
        self.cold_not_allowed += other.cold_not_allowed;
        self.blocked += other.blocked;
        self.ejected += other.ejected;
        self.over_latency_budget += other.over_latency_budget;
    }

    /// Every reason with its count, for metrics and the dashboard.
    pub fn reasons(&self) -> [(&'static str, u32); 8] {
        [
            ("price_cap", self.over_price),
            ("gpu_excluded", self.gpu_excluded),
            ("region", self.region_not_allowed),
            ("pool", self.not_in_pool),
            ("cold", self.cold_not_allowed),
            ("blocked", self.blocked),
            ("ejected", self.ejected),
            ("latency_budget", self.over_latency_budget),
        ]
    }
}
