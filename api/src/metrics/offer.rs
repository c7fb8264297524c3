//! Metrics of what we pay and what routing filters out:
//! `gatemesh_routing_filtered_orchestrators_total{reason}`,
//! `gatemesh_pricing_eth_usd`, `gatemesh_pricing_feed_age_seconds`,
//! `gatemesh_pricing_feed_failures_total`.

use std::sync::atomic::AtomicU64;

use mesh_core::route::FilterCounts;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::admin::pricing::FilteredRow;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabels {
    reason: &'static str,
}

/// The handles, registered once with the node's registry.
#[derive(Debug)]
pub(super) struct OfferMetrics {
    filtered: Family<FilterLabels, Counter>,
    eth_usd: Gauge<f64, AtomicU64>,
    feed_age: Gauge<f64, AtomicU64>,
    feed_failures: Counter,
}

impl OfferMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            filtered: Family::default(),
            eth_usd: Gauge::default(),
            feed_age: Gauge::default(),
            feed_failures: Counter::default(),
        };
        registry.register(
            "routing_filtered_orchestrators",
            "Orchestrators removed from routing decisions, by reason",
            this.filtered.clone(),
        );
        registry.register(
            "pricing_eth_usd",
            "ETH/USD rate used to convert USD price caps (display only; caps use the exact value)",
            this.eth_usd.clone(),
        );
        registry.register(
            "pricing_feed_age_seconds",
            "Age of the last good price-feed value (-1: never read)",
            this.feed_age.clone(),
        );
        registry.register(
            "pricing_feed_failures",
            "Failed price-feed reads",
            this.feed_failures.clone(),
        );
        this
    }
}

impl Metrics {
    /// One routing decision's filter counts:
    /// `gatemesh_routing_filtered_orchestrators_total{reason}` grows by each
    /// reason's count (`price_cap`, `gpu_excluded`, `region`, `pool`,
    /// `cold`, `blocked`, `ejected`, `latency_budget`).
    pub fn record_filtered(&self, counts: &FilterCounts) {
        for (reason, n) in FilteredRow::from(counts).reasons() {
            if n > 0 {
                self.inner
                    .offer
                    .filtered
                    .get_or_create(&FilterLabels { reason })
                    .inc_by(u64::from(n));
            }
        }
    }

    /// The ETH/USD rate in use (for display) and the feed's age in seconds
    /// (`None`: never read).
    pub fn set_price_feed(&self, usd_per_eth: Option<f64>, age_seconds: Option<f64>) {
        let offer = &self.inner.offer;
        offer.eth_usd.set(usd_per_eth.unwrap_or(0.0));
        offer.feed_age.set(age_seconds.unwrap_or(-1.0));
    }

    /// A price-feed read failed: `gatemesh_pricing_feed_failures_total`.
    pub fn record_price_feed_failure(&self) {
        self.inner.offer.feed_failures.inc();
    }
}
