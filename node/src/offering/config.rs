//! `[offering]`: what the operator publishes about this gateway in the
//! marketplace listing. Parsed and checked at start-up like every section.

use std::path::PathBuf;

use mesh_core::{Pipeline, RegionId};
use serde::{Deserialize, Serialize};

/// `[offering]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferingConfig {
    /// The listing's name.
    pub name: String,
    /// A short description for application developers.
    #[serde(default)]
    pub description: String,
    /// How to reach the operator (e-mail address or URL).
    pub contact: Option<String>,
    /// The operator's web page.
    pub url: Option<url::Url>,
    /// File holding the operator's secp256k1 private key (64 hex digits,
    /// mode 0600; `gatemesh offering keygen` writes one).
    pub signing_key_path: PathBuf,
    /// The regions and their public endpoints.
    #[serde(default)]
    pub regions: Vec<OfferedRegion>,
    /// Declared service levels.
    #[serde(default)]
    pub sla: SlaSection,
    /// Length of the benchmark window, in seconds. 15 minutes: long enough
    /// to hold hundreds of jobs at modest traffic, short enough that the
    /// listing shows today's performance.
    #[serde(default = "default_benchmark_window_s")]
    pub benchmark_window_s: u64,
    /// How long a signed listing stays valid after it is issued.
    #[serde(default = "default_valid_for_s")]
    pub valid_for_s: u64,
    /// The marketplace registry `gatemesh offering publish` posts to when
    /// `--to` is not given.
    pub registry_url: Option<url::Url>,
    /// Prices listed until rate cards are wired in (per pipeline, model,
    /// tier, unit; integer nano-USD).
    #[serde(default)]
    pub prices: Vec<OfferedPrice>,
}

/// One `[[offering.regions]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfferedRegion {
    /// The region name, as in `[node] region`.
    pub region: RegionId,
    /// The public HTTPS endpoint applications call in that region.
    pub endpoint: url::Url,
}

/// `[offering.sla]`: declared guarantees (not measured; the benchmarks are).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlaSection {
    /// Monthly availability promised, in percent (e.g. 99.9).
    pub availability_percent: Option<f64>,
    /// Longest time to a first support answer, in minutes.
    pub support_response_minutes: Option<u32>,
    /// Latency promised per pipeline.
    #[serde(default)]
    pub latency: Vec<LatencyGuarantee>,
}

/// One `[[offering.sla.latency]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyGuarantee {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The 95th percentile latency promised, in milliseconds.
    pub p95_ms: u32,
}

/// One price in the listing: plain data, so any rate-card source can feed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfferedPrice {
    /// Pipeline name (`text-to-image`, `llm`, …).
    pub pipeline: String,
    /// Model id, or `default` for every model of the pipeline.
    pub model_id: String,
    /// The tier the price applies to (`default` unless tiers are used).
    pub tier: String,
    /// One of [`PRICE_UNITS`].
    pub unit: String,
    /// Price of one unit in nano-USD (10⁻⁹ USD).
    pub price_per_unit_nano_usd: u64,
}

/// The units operators price in.
pub const PRICE_UNITS: [&str; 4] = [
    "per_frame",
    "per_second",
    "per_inference_run",
    "per_gpu_minute",
];
/// Longest name, contact or description accepted (the listing must stay small).
const MAX_TEXT_LEN: usize = 2_000;
/// Most regions, prices and latency guarantees in a listing.
const MAX_LIST_LEN: usize = 256;
/// Benchmark windows between one minute and one day.
const BENCHMARK_WINDOW_S: std::ops::RangeInclusive<u64> = 60..=86_400;

impl OfferingConfig {
    /// Checks what types cannot: lengths, ranges, units, duplicates.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("offering.name must be 1–200 characters".into());
        }
        if self.description.len() > MAX_TEXT_LEN
            || self.contact.as_ref().is_some_and(|c| c.len() > 200)
        {
            return Err(format!(
                "offering.description (≤ {MAX_TEXT_LEN}) or offering.contact (≤ 200) is too long"
            ));
        }
        if self.regions.is_empty() {
            return Err("offering.regions: list at least one region with its endpoint".into());
        }
        if self.regions.len() > MAX_LIST_LEN
            || self.prices.len() > MAX_LIST_LEN
            || self.sla.latency.len() > MAX_LIST_LEN
        {
            return Err(format!(
                "offering: at most {MAX_LIST_LEN} regions, prices and latency guarantees"
            ));
        }
        for (i, region) in self.regions.iter().enumerate() {
            if !matches!(region.endpoint.scheme(), "https" | "http") {
                return Err(format!(
                    "offering.regions: endpoint {} must be an https URL",
                    region.endpoint
                ));
            }
            if self.regions[..i].iter().any(|r| r.region == region.region) {
                return Err(format!(
                    "offering.regions: {} is listed twice",
                    region.region
                ));
            }
        }
        if let Some(percent) = self.sla.availability_percent
            && !(0.0..=100.0).contains(&percent)
        {
            return Err("offering.sla.availability_percent must be within 0–100".into());
        }
        if !BENCHMARK_WINDOW_S.contains(&self.benchmark_window_s) {
            return Err("offering.benchmark_window_s must be within 60–86400".into());
        }
        if self.valid_for_s < 60 {
            return Err("offering.valid_for_s must be at least 60".into());
        }
        for price in &self.prices {
            if !PRICE_UNITS.contains(&price.unit.as_str()) {
                return Err(format!(
                    "offering.prices: unit {:?} is not one of {PRICE_UNITS:?}",
                    price.unit
                ));
            }
        }
        Ok(())
    }
}

/// The benchmark window when `[offering]` is absent or does not say.
pub const DEFAULT_BENCHMARK_WINDOW_S: u64 = 900;

fn default_benchmark_window_s() -> u64 {
    DEFAULT_BENCHMARK_WINDOW_S
}
/// One hour: registries re-fetch or re-publish well within it, and a
/// leaked old listing stops being valid soon.
fn default_valid_for_s() -> u64 {
    3_600
}
