//! The read side of the view: per-orchestrator aggregates over all observers,
//! plus per-(pipeline, model) offer rows precomputed for routing, so one pick
//! does a single hash lookup and a linear pass over plain numbers.
//!
//! Building is split in two: [`Part`] is everything about one orchestrator
//! (its summary, behind an `Arc`, and its offer rows), computed from its
//! records alone; [`assemble`] puts parts together into a snapshot (index
//! fix-up and `Arc` clones, no per-record work). The [`View`](super::View)
//! keeps the parts of orchestrators whose records did not change and reuses
//! them for up to [`SUMMARY_REUSE_MS`], so a rebuild after one gossip message
//! only summarizes the few orchestrators that message touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::observation::{LATENCY_BUCKETS, ObservationRecord, quantile_ms};
use crate::hlc::Hlc;
use crate::id::{NodeId, OrchestratorId, RegionId};
use crate::orchestrator::OrchestratorInfo;
use crate::pipeline::Pipeline;
use crate::pricing::WeiPrice;
use crate::view::ErrorClass;

/// Longest ejection any observer's record can impose, counted from snapshot
/// time: the routing policy never ejects for longer than a minute, so a
/// larger value is a bug or a hostile peer and must not disable an
/// orchestrator cluster-wide for good.
pub const MAX_HONORED_EJECTION_MS: u64 = 5 * 60_000;

/// How long the view may reuse an orchestrator's summary whose records did
/// not change. Only the decay of its counts moves in the meantime: one
/// second of a 30 s half-life is a 2.3 % drift of success and failure
/// counts, far below what routing can tell apart; everything else in a
/// summary is absolute (ejection ends, "busy" times) or time-invariant
/// (latency averages).
pub const SUMMARY_REUSE_MS: u64 = 1_000;

/// An immutable aggregate of a [`View`](super::View). Cloning is one `Arc`
/// increment.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSnapshot {
    inner: Arc<Inner>,
}

#[derive(Debug, PartialEq)]
struct Inner {
    taken_at_ms: u64,
    regions: Vec<RegionId>,
    orchestrators: Vec<Arc<OrchestratorSummary>>,
    blocked: Vec<OrchestratorId>,
    /// Orchestrator id → index (shared between snapshots while the set of
    /// orchestrators does not change).
    index: Arc<IdIndex>,
    /// Offer rows per (pipeline, model), sorted by that key.
    offers: Vec<(Pipeline, String, Vec<Offer>)>,
}

/// Orchestrator id → index, hashed a word at a time (ids are short;
/// SipHash would dominate a pick that looks up its in-flight counts).
pub(super) type IdIndex = HashMap<OrchestratorId, usize, BuildHasherDefault<WordHash>>;

/// Everything the cluster knows about one orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestratorSummary {
    /// The orchestrator.
    pub id: OrchestratorId,
    /// The freshest self-description any observer received (shared with
    /// the record it came from).
    pub info: Option<Arc<OrchestratorInfo>>,
    /// When that description was received (unix ms).
    pub info_seen_ms: u64,
    /// Who received it.
    pub info_observer: Option<NodeId>,
    /// On the blocklist.
    pub blocked: bool,
    /// Unusable before this time (max over observers, capped at
    /// [`MAX_HONORED_EJECTION_MS`] after the snapshot): an ejection seen by
    /// any node applies on every node, except one for a timeout
    /// ([`ErrorClass::is_path_local`]), which applies in the ejecting node's
    /// region only.
    pub ejected_until_ms: u64,
    /// The observer whose ejection lasts longest.
    pub ejected_by: Option<NodeId>,
    /// Every observer's record, by observer id.
    pub observers: Vec<ObserverFreshness>,
    /// Aggregates per observing region, by region id.
    pub regions: Vec<RegionHealth>,
    /// Jobs other nodes report running there.
    pub in_flight_remote: u32,
    /// The region closest to it by probe round trip (else by job latency).
    pub home_region: Option<RegionId>,
}

/// One observer's record, summarized.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverFreshness {
    /// The observer.
    pub observer: NodeId,
    /// Its region.
    pub region: RegionId,
    /// The record's version.
    pub version: Hlc,
    /// `snapshot time - version.wall_ms` (0 if the version is ahead).
    pub age_ms: u64,
    /// Last time the orchestrator answered this observer.
    pub last_seen_ms: u64,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The class of its last failure.
    pub last_error: Option<ErrorClass>,
    /// Its ejection end.
    pub ejected_until_ms: u64,
    /// Its jobs in flight there.
    pub in_flight: u32,
}

/// What the observers of one region report about one orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHealth {
    /// The region.
    pub region: RegionId,
    /// How many of its nodes have a record.
    pub observers: u32,
    /// Mean probe round trip from the region, ms (0 = none).
    pub probe_rtt_ms: f64,
    /// Per (pipeline, model).
    pub models: Vec<RegionModelStats>,
}

/// One region's view of one (pipeline, model) on one orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionModelStats {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// Latency moving average, weighted by each observer's recent successes.
    pub latency_ewma_ms: f64,
    /// Decayed successes, summed over the region's observers.
    pub successes: f64,
    /// Decayed failures, summed.
    pub failures: f64,
    /// Median latency (bucket upper bound), ms.
    pub p50_ms: Option<u32>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u32>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u32>,
}

/// One routable (orchestrator, pipeline, model) row, flattened for `pick`.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Index into [`ViewSnapshot::orchestrators`].
    pub orchestrator: usize,
    /// The model is loaded.
    pub warm: bool,
    /// Advertised concurrent capacity (0 = not stated).
    pub capacity: u32,
    /// Advertised capacity in use (live video).
    pub capacity_in_use: u32,
    /// Advertised price, if any.
    pub price: Option<WeiPrice>,
    /// `price` as wei per unit in floating point (0 when free or absent),
    /// for scoring only.
    pub price_per_unit: f64,
    /// GPU names serving the model, lower-cased.
    pub gpus_lower: Arc<[String]>,
    /// Copied from the summary.
    pub blocked: bool,
    /// Copied from the summary.
    pub ejected_until_ms: u64,
    /// Copied from the summary.
    pub in_flight_remote: u32,
    /// Decayed successes over every region (health evidence).
    pub successes: f64,
    /// Decayed failures over every region.
    pub failures: f64,
    /// Per region, indexed like [`ViewSnapshot::regions`].
    pub by_region: Arc<[RegionLatency]>,
    /// Index of the summary's home region.
    pub home_region: Option<usize>,
    /// The latest "insufficient capacity" answer any observer got with no
    /// answer since (unix ms; 0 = none): the orchestrator was full then,
    /// whatever the gossiped in-flight counts say.
    pub busy_at_ms: u64,
}

/// One region's latency evidence for one offer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionLatency {
    /// Job latency moving average from this region, ms (0 = none).
    pub latency_ms: f64,
    /// Weight of that evidence: decayed successes from this region.
    pub samples: f64,
    /// Probe round trip from this region, ms (0 = none).
    pub probe_rtt_ms: f64,
}

impl ViewSnapshot {
    /// A snapshot of nothing.
    pub fn empty(now_ms: u64) -> Self {
        Self::from_records(now_ms, None, std::iter::empty(), Vec::new())
    }

    /// A snapshot of arbitrary records (simulations, tests). `local` is the
    /// node whose in-flight counts the caller supplies itself.
    pub fn from_records<'a>(
        now_ms: u64,
        local: Option<&NodeId>,
        records: impl IntoIterator<Item = &'a ObservationRecord>,
        mut blocked: Vec<OrchestratorId>,
    ) -> Self {
        let mut grouped: BTreeMap<&OrchestratorId, BTreeMap<&NodeId, &ObservationRecord>> =
            BTreeMap::new();
        for r in records {
            grouped
                .entry(&r.orchestrator)
                .or_default()
                .insert(&r.observer, r);
        }
        blocked.sort();
        blocked.dedup();
        Self::build(
            now_ms,
            local,
            grouped
                .into_values()
                .map(|per| per.into_values().collect())
                .collect(),
            blocked,
        )
    }

    pub(super) fn build(
        now_ms: u64,
        local: Option<&NodeId>,
        groups: Vec<Vec<&ObservationRecord>>,
        blocked: Vec<OrchestratorId>,
    ) -> Self {
        let regions: Vec<RegionId> = groups
            .iter()
            .flatten()
            .map(|r| &r.observer_region)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        // The local node's region, as its own records state it.
        let local_region = local.and_then(|local| {
            groups
                .iter()
                .flatten()
                .find(|r| r.observer == *local)
                .map(|r| &r.observer_region)
        });
        let parts: Vec<Part> = groups
            .iter()
            .filter_map(|records| {
                let id = records.first()?.orchestrator.clone();
                Some(Part::build(
                    now_ms,
                    local,
                    local_region,
                    id,
                    records,
                    &regions,
                    &blocked,
                ))
            })
            .collect();
        assemble(now_ms, regions, blocked, parts.iter(), None)
    }

    /// When the snapshot was taken (unix ms); counts are decayed to this time
    /// (to within [`SUMMARY_REUSE_MS`] for snapshots of a [`View`](super::View)).
    pub fn taken_at_ms(&self) -> u64 {
        self.inner.taken_at_ms
    }

    /// Every region with at least one observer, sorted.
    pub fn regions(&self) -> &[RegionId] {
        &self.inner.regions
    }

    /// The index of a region in [`Self::regions`].
    pub fn region_index(&self, region: &RegionId) -> Option<usize> {
        // A cluster spans a handful of regions: a scan comparing by pointer
        // first beats a binary search comparing text.
        self.inner.regions.iter().position(|r| r == region)
    }

    /// Every observed orchestrator, sorted by id.
    pub fn orchestrators(&self) -> &[Arc<OrchestratorSummary>] {
        &self.inner.orchestrators
    }

    /// One orchestrator's summary.
    pub fn orchestrator(&self, id: &OrchestratorId) -> Option<&OrchestratorSummary> {
        self.inner
            .orchestrators
            .get(self.orchestrator_index(id)?)
            .map(|s| &**s)
    }

    /// The index of an orchestrator in [`Self::orchestrators`].
    pub fn orchestrator_index(&self, id: &OrchestratorId) -> Option<usize> {
        self.inner.index.get(id).copied()
    }

    /// The blocklist at snapshot time, sorted.
    pub fn blocked(&self) -> &[OrchestratorId] {
        &self.inner.blocked
    }

    /// Whether the orchestrator is blocked.
    pub fn is_blocked(&self, id: &OrchestratorId) -> bool {
        self.inner.blocked.binary_search(id).is_ok()
    }

    /// Orchestrators offering (pipeline, model), warm or cold, in id order.
    pub fn offers(&self, pipeline: Pipeline, model_id: &str) -> &[Offer] {
        self.inner
            .offers
            .binary_search_by(|(p, m, _)| p.cmp(&pipeline).then_with(|| m.as_str().cmp(model_id)))
            .map_or(&[], |i| self.inner.offers[i].2.as_slice())
    }
}

/// A word-at-a-time multiply-rotate hash (the FxHash step) as a `Hasher`,
/// for the id index: ids are ~40 bytes, so hashing 8 bytes per step instead
/// of FNV's one keeps a pick's in-flight lookups cheap. Not exposed to
/// peers' choice of keys in a way that matters: the index only holds ids
/// already accepted into the view.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct WordHash(u64);

impl WordHash {
    const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }
}

/// One orchestrator's share of a snapshot: its summary and offer rows
/// (whose `orchestrator` index [`assemble`] sets).
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) summary: Arc<OrchestratorSummary>,
    offers: Vec<(Pipeline, String, Offer)>,
    /// When it was computed (unix ms).
    pub(super) built_at_ms: u64,
}

impl Part {
    /// Summarizes the records about `id` at `now_ms`.
    pub(super) fn build(
        now_ms: u64,
        local: Option<&NodeId>,
        local_region: Option<&RegionId>,
        id: OrchestratorId,
        records: &[&ObservationRecord],
        regions: &[RegionId],
        blocked: &[OrchestratorId],
    ) -> Self {
        let summary = summarize(now_ms, local, local_region, id, records, regions, blocked);
        let mut offers = Vec::new();
        add_offers(&mut offers, &summary, records, regions, now_ms);
        Self {
            summary: Arc::new(summary),
            offers,
            built_at_ms: now_ms,
        }
    }
}

/// A snapshot of `parts` (in orchestrator id order). `index` is reused when
/// given (the caller vouches that it maps exactly these ids to their
/// positions); otherwise it is built.
pub(super) fn assemble<'a>(
    now_ms: u64,
    regions: Vec<RegionId>,
    blocked: Vec<OrchestratorId>,
    parts: impl Iterator<Item = &'a Part>,
    index: Option<Arc<IdIndex>>,
) -> ViewSnapshot {
    let mut orchestrators = Vec::new();
    let mut rows: Vec<(Pipeline, &str, Offer)> = Vec::new();
    for (i, part) in parts.enumerate() {
        orchestrators.push(Arc::clone(&part.summary));
        for (pipeline, model, offer) in &part.offers {
            let mut offer = offer.clone();
            offer.orchestrator = i;
            rows.push((*pipeline, model.as_str(), offer));
        }
    }
    // Stable: rows of one key stay in orchestrator order.
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut offers: Vec<(Pipeline, String, Vec<Offer>)> = Vec::new();
    for (pipeline, model, offer) in rows {
        match offers.last_mut() {
            Some((p, m, list)) if *p == pipeline && m == model => list.push(offer),
            _ => offers.push((pipeline, model.to_owned(), vec![offer])),
        }
    }
    let index = index.unwrap_or_else(|| Arc::new(build_index(&orchestrators)));
    ViewSnapshot {
        inner: Arc::new(Inner {
            index,
            taken_at_ms: now_ms,
            regions,
            orchestrators,
            blocked,
            offers,
        }),
    }
}

impl ViewSnapshot {
    /// The shared id index, for reuse by the next snapshot of the same set.
    pub(super) fn index_arc(&self) -> Arc<IdIndex> {
        Arc::clone(&self.inner.index)
    }
}

fn build_index(orchestrators: &[Arc<OrchestratorSummary>]) -> IdIndex {
    orchestrators
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect()
}

fn summarize(
    now_ms: u64,
    local: Option<&NodeId>,
    local_region: Option<&RegionId>,
    id: OrchestratorId,
    records: &[&ObservationRecord],
    regions: &[RegionId],
    blocked: &[OrchestratorId],
) -> OrchestratorSummary {
    let info_record = records.iter().filter(|r| r.info.is_some()).max_by(|a, b| {
        a.info_seen_ms
            .cmp(&b.info_seen_ms)
            .then_with(|| b.observer.cmp(&a.observer))
    });
    let cap = now_ms.saturating_add(MAX_HONORED_EJECTION_MS);
    // An ejection for a timeout may only say that the path from the
    // ejecting node's region is cut or slow: it binds that region alone.
    let ejector = records
        .iter()
        .filter(|r| r.ejected_until_ms > 0)
        .filter(|r| {
            !r.last_error.is_some_and(ErrorClass::is_path_local)
                || local_region.is_none_or(|here| *here == r.observer_region)
        })
        .max_by(|a, b| {
            a.ejected_until_ms
                .cmp(&b.ejected_until_ms)
                .then_with(|| b.observer.cmp(&a.observer))
        });
    let observers = records
        .iter()
        .map(|r| ObserverFreshness {
            observer: r.observer.clone(),
            region: r.observer_region.clone(),
            version: r.version,
            age_ms: now_ms.saturating_sub(r.version.wall_ms),
            last_seen_ms: r.last_seen_ms,
            consecutive_failures: r.consecutive_failures,
            last_error: r.last_error,
            ejected_until_ms: r.ejected_until_ms,
            in_flight: r.in_flight,
        })
        .collect();
    let in_flight_remote = records
        .iter()
        .filter(|r| Some(&r.observer) != local)
        .fold(0u32, |sum, r| sum.saturating_add(r.in_flight));
    let region_health: Vec<RegionHealth> = regions
        .iter()
        .filter_map(|region| region_health(now_ms, region, records))
        .collect();
    let home_region = region_health
        .iter()
        .filter(|h| h.probe_rtt_ms > 0.0)
        .min_by(|a, b| a.probe_rtt_ms.total_cmp(&b.probe_rtt_ms))
        .or_else(|| {
            region_health
                .iter()
                .filter_map(|h| {
                    let best = h
                        .models
                        .iter()
                        .filter(|m| m.latency_ewma_ms > 0.0)
                        .map(|m| m.latency_ewma_ms)
                        .min_by(f64::total_cmp)?;
                    Some((h, best))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(h, _)| h)
        })
        .map(|h| h.region.clone());
    OrchestratorSummary {
        blocked: blocked.binary_search(&id).is_ok(),
        id,
        info: info_record.and_then(|r| r.info.as_ref().map(Arc::clone)),
        info_seen_ms: info_record.map_or(0, |r| r.info_seen_ms),
        info_observer: info_record.map(|r| r.observer.clone()),
        ejected_until_ms: ejector.map_or(0, |r| r.ejected_until_ms.min(cap)),
        ejected_by: ejector.map(|r| r.observer.clone()),
        observers,
        regions: region_health,
        in_flight_remote,
        home_region,
    }
}

fn region_health(
    now_ms: u64,
    region: &RegionId,
    records: &[&ObservationRecord],
) -> Option<RegionHealth> {
    let in_region: Vec<&&ObservationRecord> = records
        .iter()
        .filter(|r| &r.observer_region == region)
        .collect();
    if in_region.is_empty() {
        return None;
    }
    let (probe_sum, probes) = in_region
        .iter()
        .map(|r| r.probe_rtt_ms)
        .filter(|&p| p > 0.0)
        .fold((0.0, 0u32), |(sum, n), p| (sum + p, n + 1));
    let probe_rtt_ms = if probes == 0 {
        0.0
    } else {
        probe_sum / f64::from(probes)
    };
    // Sorted and deduplicated: a few keys per record, so a vector beats a
    // tree (this runs for every changed orchestrator of every snapshot).
    let mut keys: Vec<(Pipeline, &str)> = in_region
        .iter()
        .flat_map(|r| r.stats.iter().map(|s| (s.pipeline, s.model_id.as_str())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let models = keys
        .into_iter()
        .map(|(pipeline, model_id)| {
            let agg = aggregate(now_ms, in_region.iter().map(|r| **r), pipeline, model_id);
            RegionModelStats {
                pipeline,
                model_id: model_id.to_owned(),
                latency_ewma_ms: agg.latency_ms,
                successes: agg.successes,
                failures: agg.failures,
                p50_ms: quantile_ms(&agg.histogram, 0.50),
                p95_ms: quantile_ms(&agg.histogram, 0.95),
                p99_ms: quantile_ms(&agg.histogram, 0.99),
            }
        })
        .collect();
    Some(RegionHealth {
        region: region.clone(),
        observers: in_region.len() as u32,
        probe_rtt_ms,
        models,
    })
}

struct Aggregate {
    latency_ms: f64,
    successes: f64,
    failures: f64,
    histogram: [u64; LATENCY_BUCKETS],
}

fn aggregate<'a>(
    now_ms: u64,
    records: impl Iterator<Item = &'a ObservationRecord>,
    pipeline: Pipeline,
    model_id: &str,
) -> Aggregate {
    let mut agg = Aggregate {
        latency_ms: 0.0,
        successes: 0.0,
        failures: 0.0,
        histogram: [0; LATENCY_BUCKETS],
    };
    let (mut weighted, mut weight, mut plain, mut plain_n) = (0.0, 0.0, 0.0, 0u32);
    for r in records {
        let Some(s) = r.stats_for(pipeline, model_id) else {
            continue;
        };
        let (succ, fail) = s.decayed_counts(now_ms);
        agg.successes += succ;
        agg.failures += fail;
        s.histogram.add_into(&mut agg.histogram);
        if s.latency_ewma_ms > 0.0 {
            weighted += s.latency_ewma_ms * succ;
            weight += succ;
            plain += s.latency_ewma_ms;
            plain_n += 1;
        }
    }
    agg.latency_ms = if weight > 1e-9 {
        weighted / weight
    } else if plain_n > 0 {
        plain / f64::from(plain_n)
    } else {
        0.0
    };
    agg
}

fn add_offers(
    offers: &mut Vec<(Pipeline, String, Offer)>,
    summary: &OrchestratorSummary,
    records: &[&ObservationRecord],
    regions: &[RegionId],
    now_ms: u64,
) {
    let Some(info) = &summary.info else {
        return;
    };
    let home_region = summary
        .home_region
        .as_ref()
        .and_then(|h| regions.binary_search(h).ok());
    let busy_at_ms = records
        .iter()
        .filter(|r| r.last_error == Some(ErrorClass::Busy) && r.last_error_ms > r.last_seen_ms)
        .map(|r| r.last_error_ms)
        .max()
        .unwrap_or(0);
    for (capability, models) in &info.capabilities.models {
        let Some(pipeline) = Pipeline::from_capability(*capability) else {
            continue;
        };
        if !info.capabilities.bitstring.contains(*capability) {
            continue;
        }
        for (model_id, constraint) in models {
            let all = aggregate(now_ms, records.iter().copied(), pipeline, model_id);
            let by_region: Arc<[RegionLatency]> = regions
                .iter()
                .map(|region| {
                    let health = summary.regions.iter().find(|h| &h.region == region);
                    let stats = health.and_then(|h| {
                        h.models
                            .iter()
                            .find(|m| m.pipeline == pipeline && &m.model_id == model_id)
                    });
                    RegionLatency {
                        latency_ms: stats.map_or(0.0, |m| m.latency_ewma_ms),
                        samples: stats.map_or(0.0, |m| m.successes),
                        probe_rtt_ms: health.map_or(0.0, |h| h.probe_rtt_ms),
                    }
                })
                .collect();
            let price = info.price_for(pipeline, model_id);
            let offer = Offer {
                orchestrator: usize::MAX,
                warm: constraint.warm,
                capacity: constraint.capacity,
                capacity_in_use: constraint.capacity_in_use,
                price,
                price_per_unit: price.map_or(0.0, |p| {
                    p.per_unit() as f64 / (p.pixels_per_unit().max(1)) as f64
                }),
                gpus_lower: info
                    .gpu_names(pipeline, model_id)
                    .map(str::to_ascii_lowercase)
                    .collect(),
                blocked: summary.blocked,
                ejected_until_ms: summary.ejected_until_ms,
                in_flight_remote: summary.in_flight_remote,
                successes: all.successes,
                failures: all.failures,
                by_region,
                home_region,
                busy_at_ms,
            };
            offers.push((pipeline, model_id.clone(), offer));
        }
    }
}
