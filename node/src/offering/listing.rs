//! The listing document and its signed envelope (see `docs/offering.md`).
//!
//! [`build`] is a pure function from the operator's config, the time, what
//! the gateway offers and the merged benchmarks to a [`Listing`]; [`sign`]
//! serialises it once to compact JSON and signs exactly those bytes. The
//! envelope carries the signed text as a JSON *string*, so a verifier checks
//! the signature over `envelope.listing` as received and only then parses it;
//! nothing is ever re-serialised.

use std::collections::BTreeMap;

use mesh_core::perf::{BUCKETS_PER_DOUBLING, PerfWindow};
use mesh_core::{Pipeline, RegionId};
use serde::{Deserialize, Serialize};

use super::config::{LatencyGuarantee, OfferedPrice, OfferedRegion, OfferingConfig};
use super::key::{Address, checksum_address};

/// The value of [`Listing::format`].
pub const LISTING_FORMAT: &str = "gatemesh-offering/1";
/// The value of [`SignedOffering::signature_scheme`].
pub const SIGNATURE_SCHEME: &str = "eip191-personal-sign";
/// Most models listed per pipeline (the view can know many).
const MAX_MODELS_PER_PIPELINE: usize = 64;

/// What `GET /v1/offering` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOffering {
    /// The listing as compact JSON text: the exact signed bytes (UTF-8).
    pub listing: String,
    /// `0x` + 130 hex digits: r ‖ s ‖ v of the EIP-191 personal-message
    /// signature of `listing`, v = 27/28.
    pub signature: String,
    /// The signer's EIP-55 address (also inside the listing as `signer`).
    pub address: String,
    /// Always [`SIGNATURE_SCHEME`].
    pub signature_scheme: String,
}

/// The signed listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Always [`LISTING_FORMAT`].
    pub format: String,
    /// The gateway's name.
    pub name: String,
    /// A description for application developers.
    pub description: String,
    /// How to reach the operator.
    pub contact: Option<String>,
    /// The operator's web page.
    pub url: Option<String>,
    /// The EIP-55 address of the key that signs this listing.
    pub signer: String,
    /// When it was signed (RFC 3339, UTC, seconds).
    pub issued_at: String,
    /// When it stops being valid (RFC 3339, UTC, seconds).
    pub valid_until: String,
    /// Regions and their public endpoints.
    pub regions: Vec<OfferedRegion>,
    /// Pipelines offered and the models orchestrators serve for them.
    pub pipelines: Vec<ListedPipeline>,
    /// What applications pay.
    pub pricing: Pricing,
    /// Measured from live traffic.
    pub benchmarks: Benchmarks,
    /// Declared by the operator.
    pub sla: Sla,
}

/// One offered pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedPipeline {
    /// Pipeline name.
    pub pipeline: Pipeline,
    /// Models seen in the cluster's view for it (may be empty).
    pub models: Vec<ListedModel>,
}

/// One model of a pipeline, as the cluster's view knows it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedModel {
    /// The model id.
    pub model_id: String,
    /// Whether at least one orchestrator has it loaded (warm).
    pub warm: bool,
    /// Orchestrators (not blocked) advertising it.
    pub orchestrators: u32,
}

/// `pricing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    /// Always `USD`.
    pub currency: String,
    /// The unit of every `price_per_unit_nano_usd`: 10⁻⁹ USD.
    pub amount_unit: String,
    /// The prices (empty when none are declared).
    pub prices: Vec<OfferedPrice>,
}

/// `benchmarks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Benchmarks {
    /// The configured window length.
    pub window_s: u64,
    /// Start of the measured interval (RFC 3339); `None` without data.
    pub window_start: Option<String>,
    /// End of the measured interval (RFC 3339); `None` without data.
    pub window_end: Option<String>,
    /// How latencies are measured and quantised.
    pub method: String,
    /// Per region, pipeline and model.
    pub entries: Vec<BenchmarkEntry>,
}

/// One measured (region, pipeline, model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkEntry {
    /// Region whose endpoint took the jobs.
    pub region: RegionId,
    /// Pipeline.
    pub pipeline: Pipeline,
    /// Model id.
    pub model_id: String,
    /// Jobs counted.
    pub requests: u64,
    /// Jobs served.
    pub successes: u64,
    /// Jobs failed (the gateway's or orchestrators' fault).
    pub failures: u64,
    /// successes / requests, rounded to 4 decimals.
    pub success_rate: f64,
    /// Median latency of served jobs (bucket upper edge, ms).
    pub p50_ms: Option<u32>,
    /// 95th percentile latency of served jobs (bucket upper edge, ms).
    pub p95_ms: Option<u32>,
}

/// `sla`: the operator's declared guarantees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// Promised monthly availability in percent.
    pub availability_percent: Option<f64>,
    /// Promised time to first support answer, in minutes.
    pub support_response_minutes: Option<u32>,
    /// Promised p95 latency per pipeline.
    pub latency: Vec<LatencyGuarantee>,
}

/// Everything [`build`] reads besides the config.
#[derive(Debug, Clone)]
pub struct ListingInputs {
    /// The signer.
    pub signer: Address,
    /// Now, unix ms.
    pub now_ms: u64,
    /// Pipelines the gateway offers.
    pub pipelines: Vec<Pipeline>,
    /// Models per pipeline from the view.
    pub models: BTreeMap<Pipeline, Vec<ListedModel>>,
    /// Prices from the rate cards (or the config's placeholder list).
    pub prices: Vec<OfferedPrice>,
    /// Merged benchmark windows per region (`None`: not measured here, e.g.
    /// `gatemesh offering show` without a running node).
    pub benchmarks: BTreeMap<RegionId, PerfWindow>,
}

/// Builds the listing.
pub fn build(config: &OfferingConfig, inputs: ListingInputs) -> Listing {
    let now_s = inputs.now_ms / 1000;
    let pipelines = inputs
        .pipelines
        .iter()
        .map(|pipeline| {
            let mut models = inputs.models.get(pipeline).cloned().unwrap_or_default();
            models.truncate(MAX_MODELS_PER_PIPELINE);
            ListedPipeline {
                pipeline: *pipeline,
                models,
            }
        })
        .collect();
    let mut prices = inputs.prices;
    prices.sort();
    Listing {
        format: LISTING_FORMAT.to_owned(),
        name: config.name.clone(),
        description: config.description.clone(),
        contact: config.contact.clone(),
        url: config.url.as_ref().map(url::Url::to_string),
        signer: checksum_address(&inputs.signer),
        issued_at: rfc3339(now_s),
        valid_until: rfc3339(now_s.saturating_add(config.valid_for_s)),
        regions: config.regions.clone(),
        pipelines,
        pricing: Pricing {
            currency: "USD".into(),
            amount_unit: "nano_usd".into(),
            prices,
        },
        benchmarks: benchmarks(config.benchmark_window_s, &inputs.benchmarks),
        sla: Sla {
            availability_percent: config.sla.availability_percent,
            support_response_minutes: config.sla.support_response_minutes,
            latency: config.sla.latency.clone(),
        },
    }
}

fn benchmarks(window_s: u64, windows: &BTreeMap<RegionId, PerfWindow>) -> Benchmarks {
    let mut entries = Vec::new();
    let (mut start_ms, mut end_ms) = (u64::MAX, 0u64);
    for (region, window) in windows {
        for (key, stats) in window.table.pairs() {
            if stats.requests() == 0 {
                continue;
            }
            start_ms = start_ms.min(window.start_ms);
            end_ms = end_ms.max(window.end_ms);
            entries.push(BenchmarkEntry {
                region: region.clone(),
                pipeline: key.pipeline,
                model_id: key.model_id.clone(),
                requests: stats.requests(),
                successes: stats.successes,
                failures: stats.failures,
                success_rate: f64::from(stats.success_rate_ppm().unwrap_or(0) / 100) / 10_000.0,
                p50_ms: stats.quantile_ms(500),
                p95_ms: stats.quantile_ms(950),
            });
        }
    }
    let measured = !entries.is_empty();
    Benchmarks {
        window_s,
        window_start: measured.then(|| rfc3339(start_ms / 1000)),
        window_end: measured.then(|| rfc3339(end_ms / 1000)),
        method: format!(
            "live traffic at the gateway: job latency from the job entering the executor to the \
             complete answer (first chunk for streams), successful jobs only; log-scale buckets, \
             {BUCKETS_PER_DOUBLING} per doubling (resolution 2^(1/{BUCKETS_PER_DOUBLING}) ≈ 19 %); \
             a percentile is the upper edge of the bucket holding it; client errors not counted"
        ),
        entries,
    }
}

/// Serialises the listing once and signs those bytes.
pub fn sign(listing: &Listing, key: &super::key::OperatorKey) -> Result<SignedOffering, String> {
    let text = serde_json::to_string(listing).map_err(|e| e.to_string())?;
    let signature = key.sign_personal(text.as_bytes());
    Ok(SignedOffering {
        listing: text,
        signature: format!("0x{}", super::key::hex(&signature)),
        address: checksum_address(&key.address()),
        signature_scheme: SIGNATURE_SCHEME.to_owned(),
    })
}

/// Checks an envelope with our own code: the signature recovers to
/// `address`, the listing names the same signer, and it has not expired.
pub fn verify(envelope: &SignedOffering, now_s: u64) -> Result<Listing, String> {
    let signature = super::key::parse_hex(&envelope.signature).ok_or("signature is not hex")?;
    let signer = super::key::recover_personal(envelope.listing.as_bytes(), &signature)
        .map_err(|e| e.to_string())?;
    let signer = checksum_address(&signer);
    if !signer.eq_ignore_ascii_case(&envelope.address) {
        return Err(format!(
            "signed by {signer}, but the envelope says {}",
            envelope.address
        ));
    }
    let listing: Listing =
        serde_json::from_str(&envelope.listing).map_err(|e| format!("listing: {e}"))?;
    if !listing.signer.eq_ignore_ascii_case(&signer) {
        return Err(format!(
            "listing names signer {}, signed by {signer}",
            listing.signer
        ));
    }
    if listing.valid_until < rfc3339(now_s) {
        return Err(format!("listing expired at {}", listing.valid_until));
    }
    Ok(listing)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (proleptic Gregorian, UTC).
pub fn rfc3339(unix_s: u64) -> String {
    let (year, month, day) = mesh_core::tenancy::window::civil_from_days(unix_s / 86_400);
    let secs = unix_s % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
