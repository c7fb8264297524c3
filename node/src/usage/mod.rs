//! What the node charges applications and how it keeps the records:
//! the rate cards (swappable at run time), the durable usage [`log`], its
//! export to an HTTP [`sink`], and [`UsageService`], which implements the
//! API's `Billing` and `UsageExport` ports.
//!
//! ## Exactly one record per request
//! The API calls [`UsageService`] once per client request, on the node the
//! client called. Retries and failovers inside the executor happen below
//! that call, and a node that runs a job forwarded to it over the mesh runs
//! it through `Executor::execute_with`, which never records: the origin node
//! writes the record, once. A request that returned 200 returned after its
//! record was durable (see `api::billing`).
//!
//! ## Seams for other parts of the node
//! - Spend limits: [`UsageService::observe`] registers a callback told of
//!   every durable record (cost in `cost_nano_usd`, tenant in `tenant`).
//! - Config reload: [`UsageService::apply`] swaps the rate cards
//!   ([`rate_cards_from_config`] builds them from `[[rate_cards]]`).
//! - Marketplace listing: [`UsageService::rate_cards`] lists them as data.

pub mod log;
pub mod sink;

use std::sync::{Arc, RwLock};

use api::{Billing, Caller, JobUsage, UsageExport, UsageFilter, UsageUnavailable};
use futures_util::future::BoxFuture;
use mesh_core::billing::{
    BillingError, BillingUnit, Quote, RateCard, RateCards, RequestFacts, UsageRecord, Wei,
    parse_usd,
};
use mesh_core::{JobSpec, Pipeline};
use serde::Deserialize;

pub use log::{LogError, Observer, UsageLog, UsageLogOptions};

use crate::cluster::Cluster;
use crate::registry::Registry;

/// `[usage]`: the durable usage log and its HTTP sink. Without `dir` no log
/// is kept (jobs are still priced and answer the cost header).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSection {
    /// Directory of the log segments and the sink cursor.
    pub dir: Option<std::path::PathBuf>,
    /// A segment is closed when the next batch would take it past this.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// Appends waiting for the writer; beyond it a successful job answers
    /// 503 `usage_log_unavailable` instead of 200 (and is not charged).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most records per write + fsync.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// Where records are pushed (POST of JSON lines); needs `dir`.
    pub sink_url: Option<url::Url>,
    /// Bearer token for the sink.
    pub sink_token: Option<String>,
    /// Most records per POST.
    #[serde(default = "default_sink_batch_records")]
    pub sink_batch_records: usize,
    /// Idle wait between rounds, and wait after a failed round.
    #[serde(default = "default_sink_interval_ms")]
    pub sink_interval_ms: u64,
    /// Timeout of one POST.
    #[serde(default = "default_sink_timeout_ms")]
    pub sink_timeout_ms: u64,
    /// Tries of one batch per round (exponential backoff 0.2 s to 10 s).
    #[serde(default = "default_sink_max_attempts")]
    pub sink_max_attempts: u32,
}

impl Default for UsageSection {
    fn default() -> Self {
        Self {
            dir: None,
            segment_max_bytes: default_segment_max_bytes(),
            queue_capacity: default_queue_capacity(),
            max_batch_records: default_max_batch_records(),
            sink_url: None,
            sink_token: None,
            sink_batch_records: default_sink_batch_records(),
            sink_interval_ms: default_sink_interval_ms(),
            sink_timeout_ms: default_sink_timeout_ms(),
            sink_max_attempts: default_sink_max_attempts(),
        }
    }
}

/// 64 MiB: a day of a busy node in a handful of files.
fn default_segment_max_bytes() -> u64 {
    64 * 1024 * 1024
}
/// A few seconds of a busy node's jobs; each waiting record is ~1 KB.
fn default_queue_capacity() -> usize {
    8_192
}
fn default_max_batch_records() -> usize {
    1_024
}
fn default_sink_batch_records() -> usize {
    500
}
fn default_sink_interval_ms() -> u64 {
    1_000
}
fn default_sink_timeout_ms() -> u64 {
    10_000
}
fn default_sink_max_attempts() -> u32 {
    5
}

/// Checks `[usage]` and `[[rate_cards]]` together (called by the config's
/// validation).
pub fn validate_config(usage: &UsageSection, cards: &[RateCardEntry]) -> Result<(), String> {
    rate_cards_from_config(cards).map_err(|e| format!("rate_cards: {e}"))?;
    if usage.sink_url.is_some() && usage.dir.is_none() {
        return Err("usage.sink_url needs usage.dir (records are pushed from the log)".into());
    }
    if usage.segment_max_bytes < 4_096 {
        return Err("usage.segment_max_bytes must be at least 4096".into());
    }
    if usage.queue_capacity == 0 || usage.max_batch_records == 0 || usage.sink_batch_records == 0 {
        return Err(
            "usage.queue_capacity, max_batch_records and sink_batch_records must be positive"
                .into(),
        );
    }
    Ok(())
}

/// One `[[rate_cards]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCardEntry {
    /// The pipeline (`text-to-image`, `llm`, …).
    pub pipeline: Pipeline,
    /// The model, or `default` (every model without its own card).
    #[serde(default = "default_name")]
    pub model_id: String,
    /// The tier, or `default` (every tier without its own card).
    #[serde(default = "default_name")]
    pub tier: String,
    /// `frame`, `second`, `run` or `gpu_minute`.
    pub unit: BillingUnit,
    /// USD per unit as a decimal string, at most nine decimals (`"0.0025"`).
    pub price_usd: String,
}

fn default_name() -> String {
    mesh_core::billing::DEFAULT.to_owned()
}

/// Validated rate cards from `[[rate_cards]]` entries.
pub fn rate_cards_from_config(entries: &[RateCardEntry]) -> Result<RateCards, BillingError> {
    let cards = entries
        .iter()
        .map(|entry| {
            Ok(RateCard {
                pipeline: entry.pipeline,
                model_id: entry.model_id.clone(),
                tier: entry.tier.clone(),
                unit: entry.unit,
                price_per_unit_nano_usd: parse_usd(&entry.price_usd)?,
            })
        })
        .collect::<Result<Vec<_>, BillingError>>()?;
    RateCards::new(cards)
}

/// Prices jobs, records their usage, and exports it. Cheap to clone.
#[derive(Clone)]
pub struct UsageService {
    inner: Arc<Inner>,
}

struct Inner {
    cards: RwLock<Arc<RateCards>>,
    log: Option<UsageLog>,
    node: String,
    registry: Registry,
    cluster: Cluster,
    /// Told of records inline when there is no log (with a log, the log's
    /// writer tells them).
    observers: RwLock<Vec<Observer>>,
}

impl std::fmt::Debug for UsageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageService")
            .field("node", &self.inner.node)
            .field("log", &self.inner.log)
            .finish_non_exhaustive()
    }
}

impl UsageService {
    /// A service over `cards`, writing to `log` when one is configured.
    pub fn new(
        cards: RateCards,
        log: Option<UsageLog>,
        node: String,
        registry: Registry,
        cluster: Cluster,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cards: RwLock::new(Arc::new(cards)),
                log,
                node,
                registry,
                cluster,
                observers: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Replaces the rate cards (config reload). Jobs already priced keep
    /// their price; the next quote and job use the new cards.
    pub fn apply(&self, cards: RateCards) {
        *self
            .inner
            .cards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(cards);
        tracing::info!("rate cards applied");
    }

    /// The current rate cards as plain data (pipeline, model, tier, unit,
    /// price per unit in nano-USD), e.g. for the marketplace listing.
    pub fn rate_cards(&self) -> Vec<RateCard> {
        self.cards().cards()
    }

    /// Registers a callback told of every record made durable (every record
    /// kept, when no log is configured), exactly once, in order. Used for
    /// tenant spend counters; it must be quick.
    pub fn observe(&self, observer: Observer) {
        match &self.inner.log {
            Some(log) => log.observe(observer),
            None => self
                .inner
                .observers
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(observer),
        }
    }

    /// The durable log, when configured.
    pub fn log(&self) -> Option<&UsageLog> {
        self.inner.log.as_ref()
    }

    fn cards(&self) -> Arc<RateCards> {
        self.inner
            .cards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Completes what the API knows with what only the node knows: its
    /// name and the orchestrator's price (the session this node holds, or
    /// else the price in the shared view, e.g. for forwarded jobs).
    fn complete(&self, usage: JobUsage) -> UsageRecord {
        let orchestrator = usage.attribution.as_ref().map(|a| a.orchestrator.clone());
        // The price of the session the job ran on, else the capability
        // price in that session's own reply. Only if the session is gone
        // already (dropped by a refresh since) the shared view's copy of the
        // orchestrator's info: a snapshot is rebuilt after every job's
        // observation, too dear to read per job.
        let price = orchestrator.as_ref().and_then(|id| {
            match self
                .inner
                .registry
                .session(id, usage.pipeline, &usage.model_id)
            {
                Some(session) => session
                    .price
                    .or_else(|| session.info.price_for(usage.pipeline, &usage.model_id)),
                None => self
                    .inner
                    .cluster
                    .snapshot()
                    .orchestrator(id)
                    .and_then(|o| o.info.as_ref())
                    .and_then(|info| info.price_for(usage.pipeline, &usage.model_id)),
            }
        });
        let units = usage.orchestrator_units;
        let paid = usage.outcome == mesh_core::billing::UsageOutcome::Ok;
        let mut record = api::billing::record_without_node(usage, &self.inner.node);
        if let Some(price) = price {
            record.orchestrator_price_wei_per_unit =
                Some(format!("{}/{}", price.per_unit(), price.pixels_per_unit()));
            if paid {
                record.orchestrator_paid_wei = Wei(price.cost_wei(units));
            }
        }
        record
    }
}

impl Billing for UsageService {
    fn quote(
        &self,
        caller: &Caller,
        job: &JobSpec,
        facts: &RequestFacts,
    ) -> Result<Quote, BillingError> {
        self.cards()
            .quote(job.pipeline, &job.model_id, &caller.tier, facts)
    }

    fn record(&self, usage: JobUsage) -> BoxFuture<'static, Result<UsageRecord, UsageUnavailable>> {
        let record = self.complete(usage);
        let this = self.clone();
        Box::pin(async move {
            match &this.inner.log {
                Some(log) => log
                    .append(record)
                    .await
                    .map_err(|e| UsageUnavailable(e.to_string())),
                None => {
                    let observers = this
                        .inner
                        .observers
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    for observer in &observers {
                        observer(&record);
                    }
                    Ok(record)
                }
            }
        })
    }
}

impl UsageExport for UsageService {
    fn query(&self, filter: UsageFilter) -> BoxFuture<'static, Result<Vec<UsageRecord>, String>> {
        let log = self.inner.log.clone();
        Box::pin(async move {
            let Some(log) = log else {
                return Err("no usage log is configured".to_owned());
            };
            tokio::task::spawn_blocking(move || log.read(&filter))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_entries_become_cards() {
        let entries: Vec<RateCardEntry> =
            toml::from_str::<std::collections::BTreeMap<String, Vec<RateCardEntry>>>(
                r#"
            [[cards]]
            pipeline = "text-to-image"
            unit = "frame"
            price_usd = "0.0025"
            [[cards]]
            pipeline = "llm"
            model_id = "meta-llama/llama-3.1-8B-Instruct"
            tier = "pro"
            unit = "gpu_minute"
            price_usd = "0.12"
            "#,
            )
            .unwrap()
            .remove("cards")
            .unwrap();
        let cards = rate_cards_from_config(&entries).unwrap().cards();
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].price_per_unit_nano_usd, 2_500_000);
        assert_eq!(cards[0].model_id, "default");
        assert_eq!(cards[1].price_per_unit_nano_usd, 120_000_000);
        let mut bad = entries.clone();
        bad[0].price_usd = "0.0000000001".into();
        assert!(matches!(
            rate_cards_from_config(&bad),
            Err(BillingError::TooPrecise(_))
        ));
    }
}
