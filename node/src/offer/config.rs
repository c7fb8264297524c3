//! The TOML of the capability declaration (`[[offer]]`, `[pools]`) and of
//! what we pay (`[pricing]`). Parsed here, compiled by
//! [`Policy::compile`](super::Policy::compile).

use std::collections::BTreeMap;
use std::path::PathBuf;

use mesh_core::{OrchestratorId, Pipeline, RegionId};
use serde::Deserialize;

/// One `[[offer]]` entry: a pipeline (optionally some of its models), where
/// it is offered, and how its jobs are routed. Several entries may name the
/// same pipeline: an entry that lists the job's model wins over one that
/// lists no models (all models); among equals the first wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferEntry {
    /// The pipeline (`text-to-image`, `llm`, …).
    pub pipeline: Pipeline,
    /// Models offered; empty = every model the orchestrators advertise.
    #[serde(default)]
    pub models: Vec<String>,
    /// Regions whose nodes offer this entry; empty = every region. A node
    /// of another region does not offer it (404).
    #[serde(default)]
    pub regions: Vec<RegionId>,
    /// GPU name fragments to prefer (case-insensitive substring, e.g. `4090`).
    #[serde(default)]
    pub gpu_preferred: Vec<String>,
    /// GPU name fragments never to use.
    #[serde(default)]
    pub gpu_excluded: Vec<String>,
    /// Highest expected latency from this node's region, ms; above it an
    /// orchestrator is a last resort (or never used, see `over_budget`).
    pub latency_budget_ms: Option<u32>,
    /// `last-resort` (default) or `never`.
    #[serde(default)]
    pub over_budget: OverBudgetMode,
    /// Regions a job may fail over to (orchestrators homed there, and
    /// forwarding to their nodes), besides this node's own. Absent: any
    /// region. Empty: this region only.
    pub failover_regions: Option<Vec<RegionId>>,
    /// Whether a cold model (not loaded) may serve when no warm one can.
    #[serde(default = "yes")]
    pub allow_cold: bool,
    /// Tier → pool name (`[pools]`): jobs of that tier only go to the
    /// pool's orchestrators. Tiers not listed use every orchestrator.
    #[serde(default)]
    pub tier_pools: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// What happens to orchestrators over the latency budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverBudgetMode {
    /// Tried after every orchestrator within the budget.
    #[default]
    LastResort,
    /// Never tried.
    Never,
}

/// `[pools]`: name → orchestrators (service URLs, go-livepeer `-orchAddr` rules).
pub type PoolsSection = BTreeMap<String, Vec<OrchestratorId>>;

/// `[pricing]`: the most we pay orchestrators (go-livepeer's gateway flags).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSection {
    /// `-maxPricePerUnit`: `<decimal>[currency]`, e.g. `"1200"` (wei) or
    /// `"0.02USD"`. Absent or 0: no global cap.
    pub max_price_per_unit: Option<String>,
    /// `-pixelsPerUnit`: units the global price buys, and the default of
    /// entries without `pixels_per_unit`. Default 1.
    #[serde(default = "default_pixels_per_unit")]
    pub pixels_per_unit: u64,
    /// `-maxPricePerCapability`: inline JSON (text starting with `{`) or
    /// the path of a JSON file, in go-livepeer's format.
    pub max_price_per_capability: Option<String>,
    /// A fixed ETH/USD rate (USD per ETH, decimal string) for USD caps.
    /// With a price feed it is the value used until the feed first answers.
    pub eth_usd: Option<String>,
    /// An HTTP(S) URL answering JSON with the ETH/USD rate.
    pub price_feed_url: Option<url::Url>,
    /// RFC 6901 JSON pointer to the rate in the feed's answer. Default
    /// `/ethereum/usd` (CoinGecko's `simple/price?ids=ethereum&vs_currencies=usd`).
    #[serde(default = "default_price_feed_pointer")]
    pub price_feed_pointer: String,
    /// How often the feed is read. Default 60 s, minimum 1 s.
    #[serde(default = "default_price_feed_refresh_ms")]
    pub price_feed_refresh_ms: u64,
}

impl Default for PricingSection {
    /// No caps, with the same defaults as an empty `[pricing]` table.
    fn default() -> Self {
        Self {
            max_price_per_unit: None,
            pixels_per_unit: default_pixels_per_unit(),
            max_price_per_capability: None,
            eth_usd: None,
            price_feed_url: None,
            price_feed_pointer: default_price_feed_pointer(),
            price_feed_refresh_ms: default_price_feed_refresh_ms(),
        }
    }
}

fn default_pixels_per_unit() -> u64 {
    1
}

fn default_price_feed_pointer() -> String {
    "/ethereum/usd".to_owned()
}

fn default_price_feed_refresh_ms() -> u64 {
    60_000
}

/// The feed is not read faster than this, whatever the config says.
pub const MIN_PRICE_FEED_REFRESH_MS: u64 = 1_000;

/// Most bytes of a `maxPricePerCapability` file read.
pub const MAX_CAPABILITY_FILE_BYTES: u64 = 1 << 20;

impl PricingSection {
    /// The `maxPricePerCapability` document: inline, or read from its file.
    pub fn capability_prices_json(&self) -> Result<Option<String>, String> {
        let Some(value) = &self.max_price_per_capability else {
            return Ok(None);
        };
        let trimmed = value.trim_start();
        if trimmed.starts_with('{') {
            return Ok(Some(value.clone()));
        }
        let path = PathBuf::from(value);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("pricing.max_price_per_capability {}: {e}", path.display()))?
            .len();
        if size > MAX_CAPABILITY_FILE_BYTES {
            return Err(format!(
                "pricing.max_price_per_capability {} is larger than {MAX_CAPABILITY_FILE_BYTES} bytes",
                path.display()
            ));
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("pricing.max_price_per_capability {}: {e}", path.display()))
    }
}
