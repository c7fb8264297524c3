//! The marketplace offering: the gateway's signed public listing.
//!
//! - [`config`]: `[offering]` (name, regions and endpoints, SLA, signing key
//!   file, benchmark window, registry URL, placeholder prices).
//! - [`key`]: the operator's secp256k1 key and EIP-191 signatures.
//! - [`bench`]: benchmarks from live traffic, published per node over the
//!   mesh and merged per region.
//! - [`listing`]: the listing document, [`listing::build`] and
//!   [`listing::sign`].
//! - [`publish`]: posting the envelope to a registry with bounded retries.
//! - [`cli`]: `gatemesh offering keygen | show | publish`.
//!
//! [`Offering`] puts them together and serves `GET /v1/offering` through
//! [`api::OfferingSource`], re-signing at most every [`CACHE_TTL`].
//! Pricing and the offered pipelines come in as plain data through
//! [`PriceSource`] and [`PipelineSource`], so rate cards and capability
//! declarations plug in without this module knowing them.

pub mod bench;
pub mod cli;
pub mod config;
pub mod key;
pub mod listing;
pub mod publish;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mesh_core::{Pipeline, ViewSnapshot};

pub use bench::Benchmarks;
pub use config::{OfferedPrice, OfferedRegion, OfferingConfig};
pub use key::OperatorKey;
pub use listing::{ListedModel, Listing, SignedOffering};

use crate::cluster::{Cluster, unix_ms};

/// How long a signed listing is served before it is rebuilt: serving stays
/// a memory copy under any request rate, and benchmarks are at most this
/// much older than the published window.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Where the listing's prices come from (rate cards; a config list until
/// they are wired in).
pub type PriceSource = Arc<dyn Fn() -> Vec<OfferedPrice> + Send + Sync>;
/// Where the offered pipelines come from (`[api] pipelines` or richer
/// capability declarations).
pub type PipelineSource = Arc<dyn Fn() -> Vec<Pipeline> + Send + Sync>;

/// What the listing is built from besides the config and key.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // closures
pub struct OfferingSources {
    /// Offered pipelines.
    pub pipelines: PipelineSource,
    /// Prices.
    pub prices: PriceSource,
    /// The cluster's view (models, warm/cold); `None` offline.
    pub cluster: Option<Cluster>,
    /// Live benchmarks; `None` offline.
    pub benchmarks: Option<Benchmarks>,
}

/// The listing service of a node (or of the offline CLI).
pub struct Offering {
    config: OfferingConfig,
    key: OperatorKey,
    sources: OfferingSources,
    cache: Mutex<Option<(tokio::time::Instant, Bytes)>>,
}

impl std::fmt::Debug for Offering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offering")
            .field("name", &self.config.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Offering {
    /// A listing service.
    pub fn new(config: OfferingConfig, key: OperatorKey, sources: OfferingSources) -> Self {
        Self {
            config,
            key,
            sources,
            cache: Mutex::new(None),
        }
    }

    /// The listing as of `now_ms`, unsigned.
    pub fn listing(&self, now_ms: u64) -> Listing {
        let pipelines = (self.sources.pipelines)();
        let models = self
            .sources
            .cluster
            .as_ref()
            .map(|cluster| models_from(&cluster.snapshot(), &pipelines))
            .unwrap_or_default();
        let benchmarks = self
            .sources
            .benchmarks
            .as_ref()
            .map(|b| b.by_region(now_ms))
            .unwrap_or_default();
        listing::build(
            &self.config,
            listing::ListingInputs {
                signer: self.key.address(),
                now_ms,
                pipelines,
                models,
                prices: (self.sources.prices)(),
                benchmarks,
            },
        )
    }

    /// The listing as of now, signed.
    pub fn signed(&self) -> Result<SignedOffering, String> {
        listing::sign(&self.listing(unix_ms()), &self.key)
    }
}

impl api::OfferingSource for Offering {
    fn signed_offering(&self) -> Result<Bytes, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, body)) = cache.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(body.clone());
        }
        let body = Bytes::from(serde_json::to_vec(&self.signed()?).map_err(|e| e.to_string())?);
        *cache = Some((tokio::time::Instant::now(), body.clone()));
        Ok(body)
    }
}

/// The node's listing service when `[offering]` is configured: loads the
/// key (refusing a readable file), takes pipelines from `[api] pipelines`
/// and prices from `[[offering.prices]]`.
pub fn serve(
    config: &crate::NodeConfig,
    cluster: Cluster,
    benchmarks: Benchmarks,
    usage: crate::usage::UsageService,
    offer: Arc<crate::offer::Offering>,
) -> Result<Option<Arc<Offering>>, key::KeyError> {
    let Some(offering) = &config.offering else {
        return Ok(None);
    };
    let key = OperatorKey::load(&offering.signing_key_path)?;
    tracing::info!(
        address = %key::checksum_address(&key.address()),
        "offering signed by the operator key"
    );
    // The live rate cards are the pricing structure; `[[offering.prices]]`
    // is listed only when no rate card is configured.
    let configured = configured_prices(offering);
    let prices: PriceSource = Arc::new(move || {
        let cards = rate_card_prices(&usage.rate_cards());
        if cards.is_empty() {
            configured()
        } else {
            cards
        }
    });
    Ok(Some(Arc::new(Offering::new(
        offering.clone(),
        key,
        OfferingSources {
            pipelines: Arc::new(move || offer.policy().offered_pipelines().into_iter().collect()),
            prices,
            cluster: Some(cluster),
            benchmarks: Some(benchmarks),
        },
    ))))
}

/// Rate cards as listed prices (the listing's unit names).
pub fn rate_card_prices(cards: &[mesh_core::billing::RateCard]) -> Vec<OfferedPrice> {
    use mesh_core::billing::BillingUnit;
    cards
        .iter()
        .map(|card| OfferedPrice {
            pipeline: card.pipeline.as_str().to_owned(),
            model_id: card.model_id.clone(),
            tier: card.tier.clone(),
            unit: match card.unit {
                BillingUnit::Frame => "per_frame",
                BillingUnit::Second => "per_second",
                BillingUnit::Run => "per_inference_run",
                BillingUnit::GpuMinute => "per_gpu_minute",
            }
            .to_owned(),
            price_per_unit_nano_usd: card.price_per_unit_nano_usd,
        })
        .collect()
}

/// The config's `[[offering.prices]]`, as a [`PriceSource`].
pub fn configured_prices(config: &OfferingConfig) -> PriceSource {
    let prices = config.prices.clone();
    Arc::new(move || prices.clone())
}

/// Per offered pipeline, the models orchestrators advertise in the view
/// (blocked orchestrators left out): warm if any has it warm.
pub fn models_from(
    snapshot: &ViewSnapshot,
    pipelines: &[Pipeline],
) -> BTreeMap<Pipeline, Vec<ListedModel>> {
    let mut out = BTreeMap::new();
    for pipeline in pipelines {
        let mut models: BTreeMap<&str, ListedModel> = BTreeMap::new();
        for orchestrator in snapshot.orchestrators().iter().filter(|o| !o.blocked) {
            let Some(offered) = orchestrator
                .info
                .as_ref()
                .and_then(|info| info.capabilities.models.get(&pipeline.capability()))
            else {
                continue;
            };
            for (model_id, constraint) in offered {
                let entry = models.entry(model_id).or_insert_with(|| ListedModel {
                    model_id: model_id.clone(),
                    warm: false,
                    orchestrators: 0,
                });
                entry.warm |= constraint.warm;
                entry.orchestrators = entry.orchestrators.saturating_add(1);
            }
        }
        out.insert(*pipeline, models.into_values().collect());
    }
    out
}
