//! Routing: a pure function from (job, view snapshot, local state, rng) to an
//! ordered plan of orchestrators to try, then nodes of other regions to
//! forward to.
//!
//! 1. **Filter** the snapshot's offers for (pipeline, model): blocklist,
//!    ejection (any node's), price cap, excluded GPUs, allowed regions, jobs
//!    already tried, cold models unless allowed, outside the job's pool
//!    (see `constraints`).
//! 2. **Score** (lower is better, in milliseconds): expected latency *from
//!    this region* ÷ reliability × load factor × price factor × GPU factor.
//!    Latency comes from this region's observations; without them, from
//!    another region's job latency corrected by probe round trips; without
//!    those, from the service time of the same GPU (measured here, else
//!    elsewhere) plus our probe round trip; without that, a prior (median
//!    of the known ones × a penalty). Other regions'
//!    outcomes count as health evidence (reliability), never as latency.
//! 3. **Tier**: warm and observed from here; warm, seen only from other
//!    regions; warm but unreliable; cold (only if allowed). Failover walks
//!    the tiers in order.
//! 4. **Pick** the first attempt by two random choices among the best
//!    `top_k` of the best tier that score within `choice_band` of the best
//!    (else the best alone), or, with a small probability, explore an
//!    orchestrator with few samples from this region. The rest follow in
//!    score order. A free slot costs (almost) nothing; a full orchestrator,
//!    by counts or by a fresh "busy" answer, drops behind every free one;
//!    the age of this node's oldest job in flight bounds latency from below.
//!
//! A latency budget (see `constraints`) moves orchestrators expected to be
//! slower than it from here to the end of the plan, or out of it.
//!
//! Traffic returns home without oscillating because home orchestrators are
//! only ever removed by ejection (growing backoff, lifted early by a
//! successful probe) or by a low decayed success rate that recovers with the
//! decay half-life; there is no per-pick flip-flop state.

mod constraints;
mod outlier;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use rand_core::Rng;

pub use constraints::{LatencyBudget, OverBudget};
pub use outlier::EjectionPolicy;

use crate::id::{NodeId, OrchestratorId, RegionId};
use crate::pipeline::Pipeline;
use crate::pricing::WeiPrice;
use crate::view::{Offer, ViewSnapshot};

/// What a job needs from an orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequirements {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// Highest acceptable price per unit.
    pub max_price: Option<WeiPrice>,
    /// GPU name fragments to prefer (case-insensitive substring, e.g. "4090").
    pub gpu_preferred: Vec<String>,
    /// GPU name fragments to refuse.
    pub gpu_excluded: Vec<String>,
    /// Cold models may be used when no warm one is available.
    pub allow_cold: bool,
    /// Only orchestrators whose home region is one of these, and only
    /// forwarding to these regions (data residency).
    pub allowed_regions: Option<Vec<RegionId>>,
    /// Orchestrators not to try (already tried for this job).
    pub exclude: Vec<OrchestratorId>,
    /// Only these orchestrators may serve the job (a tier's pool).
    pub pool: Option<Arc<[OrchestratorId]>>,
    /// Expected latency from this region above which an orchestrator is a
    /// last resort or never used (see [`LatencyBudget`]).
    pub latency_budget: Option<LatencyBudget>,
}

impl JobRequirements {
    /// Requirements with no constraints beyond (pipeline, model); cold
    /// models allowed as a fallback.
    pub fn new(pipeline: Pipeline, model_id: impl Into<String>) -> Self {
        Self {
            pipeline,
            model_id: model_id.into(),
            max_price: None,
            gpu_preferred: Vec::new(),
            gpu_excluded: Vec::new(),
            allow_cold: true,
            allowed_regions: None,
            exclude: Vec::new(),
            pool: None,
            latency_budget: None,
        }
    }
}

/// What the picking node knows that the snapshot does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    /// This node's region.
    pub region: RegionId,
    /// Current time, unix ms.
    pub now_ms: u64,
    /// This node's jobs in flight per orchestrator (exact and fresh, unlike
    /// the gossiped counts); with `in_flight_includes_peers`, plus the
    /// counts peers announced directly (see [`crate::load`]).
    pub in_flight: HashMap<OrchestratorId, u32>,
    /// `in_flight` already counts every peer's jobs (from a
    /// [`crate::load::LoadBoard`]), so the snapshot's gossiped counts
    /// (older by a gossip round) are not added.
    pub in_flight_includes_peers: bool,
    /// Alive nodes per region, for forwarding (this region may be included;
    /// it is skipped).
    pub nodes_by_region: BTreeMap<RegionId, Vec<NodeId>>,
    /// When this node's oldest job still in flight on an orchestrator
    /// started (unix ms). Its age is a lower bound on that orchestrator's
    /// latency, known long before the job completes: a suddenly slow
    /// orchestrator is avoided within about one expected latency. Optional
    /// (empty = no such evidence).
    pub in_flight_since_ms: HashMap<OrchestratorId, u64>,
}

impl LocalState {
    /// A state with no load and no peers.
    pub fn new(region: RegionId, now_ms: u64) -> Self {
        Self {
            region,
            now_ms,
            in_flight: HashMap::new(),
            in_flight_includes_peers: false,
            nodes_by_region: BTreeMap::new(),
            in_flight_since_ms: HashMap::new(),
        }
    }
}

/// Tuning knobs of [`pick_with`]. The defaults are what [`pick`] uses.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Two random choices are drawn among this many best candidates.
    pub top_k: usize,
    /// ... and only among those whose score is within this fraction of the
    /// best one (0.03 = 3 % worse at most); otherwise the best is taken.
    /// With load announced at once, herding on one orchestrator is rare;
    /// the band only spreads work over near-equal ones.
    pub choice_band: f64,
    /// Probability that the first attempt explores an orchestrator with few
    /// samples from this region (bounded, e.g. 0.01).
    pub explore_share: f64,
    /// Only little-known orchestrators whose score is within this fraction
    /// of the best are explored: exploration checks whether one is as good
    /// as it looks, it does not sample ones that are clearly slower.
    pub explore_band: f64,
    /// Below this many decayed successes from this region an orchestrator is
    /// "little known" and eligible for exploration.
    pub min_confident_samples: f64,
    /// Most orchestrator attempts in a plan.
    pub max_attempts: usize,
    /// Most forwarding targets in a plan (one node per region).
    pub max_forward: usize,
    /// Unknown latency from here = median of known ones × this.
    pub unknown_latency_penalty: f64,
    /// Latency assumed when nothing at all is known, ms.
    pub default_latency_ms: f64,
    /// Bayesian prior: pseudo-successes.
    pub prior_successes: f64,
    /// Bayesian prior: pseudo-failures.
    pub prior_failures: f64,
    /// Below this reliability a warm orchestrator drops behind the
    /// other-region tier.
    pub degraded_reliability: f64,
    /// Price weight: the dearest candidate's score is up to `1 + price_weight`
    /// times worse than the cheapest's. Prices are capped by the job's
    /// `max_price`; the default only breaks ties between equally fast
    /// orchestrators (raise it to trade latency for price).
    pub price_weight: f64,
    /// While free slots remain, the score grows by this × load (a
    /// tie-break between equally fast orchestrators, small enough that it
    /// never sends work to a clearly slower one). It adds to the noise of
    /// measured latencies, so it stays well under the 10 % by which a pick
    /// counts as accurate: at 0.1 a 3/4-busy orchestrator lost to a free one
    /// up to 7.5 % slower, and steady accuracy in the simulator was 96.48 %
    /// over 200 seeds (22 under 95 %); at 0.02 it is 96.74 % (18), with 0.01
    /// and 0.03 the same within 0.01 point. At 0 there is no tie-break and
    /// one seed's nodes herded (worst seed 67 %).
    pub free_slot_load_weight: f64,
    /// Score multiplier for an orchestrator with a preferred GPU.
    pub gpu_preferred_factor: f64,
    /// Score multiplier for an orchestrator homed in another region: a
    /// nearby one that is at most this much slower is preferred. Crossing
    /// regions adds a long, variable network path, and the load our job
    /// puts there reaches that region's nodes a one-way delay late (and its
    /// end twice that), so their picks race ours. In the simulator accuracy
    /// rose at every step from 1.0 to 1.5 (100 seeds: 1.2 → 96.7 %, worst
    /// seed 82.6 %; 1.5 → 97.0 %, worst 89.2 %) with p50 unchanged; a
    /// region whose own orchestrators are all down or ejected still fails
    /// over at once (they are filtered, not scored).
    pub other_region_factor: f64,
    /// An orchestrator that answered "insufficient capacity" (to any node)
    /// counts as full for this long after, ms: its slots may be taken by
    /// clients we cannot see (other gateways). Short, because our own
    /// counts are fresh and the answer may only mean a lost race.
    pub busy_hold_ms: u64,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            top_k: 4,
            choice_band: 0.03,
            explore_share: 0.01,
            explore_band: 0.25,
            min_confident_samples: 3.0,
            max_attempts: 6,
            max_forward: 2,
            unknown_latency_penalty: 1.5,
            default_latency_ms: 1_000.0,
            prior_successes: 1.0,
            prior_failures: 0.0,
            degraded_reliability: 0.5,
            price_weight: 0.02,
            gpu_preferred_factor: 0.8,
            other_region_factor: 1.5,
            free_slot_load_weight: 0.02,
            busy_hold_ms: 50,
        }
    }
}

/// Failover tier, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Warm, observed from this region.
    Home,
    /// Warm, observed only by other regions (called directly from here).
    Remote,
    /// Warm but with a low decayed success rate.
    Degraded,
    /// Cold, observed from this region.
    ColdHome,
    /// Cold, elsewhere or unreliable.
    ColdRemote,
}

/// Where the expected latency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencySource {
    /// Job latency observed by this region's nodes.
    OwnRegion,
    /// Another region's job latency, minus its probe round trip, plus ours.
    ProbeAdjusted,
    /// The service time this region observes on orchestrators with the
    /// same GPU, plus our probe round trip to this one.
    SameGpu,
    /// No orchestrator with this GPU is measured from here: the service
    /// time other regions observe on ones with the same GPU (their job
    /// latency minus their probe round trip), plus our probe round trip. A
    /// GPU's speed does not depend on who calls it; without this, the only
    /// GPU of its kind in a region kept the prior (median × 1.5) and, being
    /// outside the exploration band, was never tried.
    SameGpuElsewhere,
    /// Nothing usable: the prior.
    Prior,
}

/// Why a candidate is where it is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickReason {
    /// First attempt: the better of two random choices among the best.
    PowerOfTwo,
    /// First attempt: the only candidate of the best tier.
    Best,
    /// First attempt: exploration of a little-known orchestrator.
    Exploration,
    /// A later attempt, in tier and score order.
    Failover,
}

/// The parts of a score, for debug logs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreComponents {
    /// Expected latency from this region, ms.
    pub latency_ms: f64,
    /// Its source.
    pub latency_source: LatencySource,
    /// Decayed successes observed from this region.
    pub own_region_samples: f64,
    /// Posterior success rate over all regions.
    pub reliability: f64,
    /// In flight (local + gossiped) ÷ advertised capacity.
    pub load: f64,
    /// Multiplier from load.
    pub load_factor: f64,
    /// Multiplier from price.
    pub price_factor: f64,
    /// Multiplier from GPU preference.
    pub gpu_factor: f64,
}

/// One orchestrator in a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The orchestrator.
    pub orchestrator: OrchestratorId,
    /// Its tier.
    pub tier: Tier,
    /// Expected latency from here, ms.
    pub expected_latency_ms: f64,
    /// Score (lower is better).
    pub score: f64,
    /// Why it is here.
    pub reason: PickReason,
    /// How the score was made.
    pub components: ScoreComponents,
}

/// How many offers each filter removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    /// Offers of (pipeline, model) in the snapshot.
    pub offered: u32,
    /// Blocked.
    pub blocked: u32,
    /// Ejected by some node.
    pub ejected: u32,
    /// Above the price cap.
    pub over_price: u32,
    /// With an excluded GPU.
    pub gpu_excluded: u32,
    /// Home region not allowed.
    pub region_not_allowed: u32,
    /// Cold and cold not allowed.
    pub cold_not_allowed: u32,
    /// In the job's exclude list.
    pub excluded: u32,
    /// Outside the pool the job is pinned to.
    pub not_in_pool: u32,
    /// Expected latency from here over a strict latency budget.
    pub over_latency_budget: u32,
}

/// The outcome of a pick: try `attempts` in order, then forward.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    /// Orchestrators to try, best first.
    pub attempts: Vec<Candidate>,
    /// Nodes of other regions to forward the job to if every attempt fails,
    /// best region first.
    pub forward_to: Vec<(RegionId, NodeId)>,
    /// What the filters removed.
    pub filtered: FilterCounts,
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.filtered;
        write!(
            f,
            "offered={} blocked={} ejected={} over_price={} gpu_excluded={} region={} cold={} excluded={} pool={} over_budget={}",
            c.offered,
            c.blocked,
            c.ejected,
            c.over_price,
            c.gpu_excluded,
            c.region_not_allowed,
            c.cold_not_allowed,
            c.excluded,
            c.not_in_pool,
            c.over_latency_budget
        )?;
        for (i, a) in self.attempts.iter().enumerate() {
            let s = &a.components;
            write!(
                f,
                "\n  #{i} {} {:?}/{:?} score={:.1} latency={:.1}ms ({:?}, n={:.1}) reliability={:.3} load={:.2}×{:.2} price×{:.2} gpu×{:.2}",
                a.orchestrator,
                a.tier,
                a.reason,
                a.score,
                s.latency_ms,
                s.latency_source,
                s.own_region_samples,
                s.reliability,
                s.load,
                s.load_factor,
                s.price_factor,
                s.gpu_factor
            )?;
        }
        for (region, node) in &self.forward_to {
            write!(f, "\n  forward {region}/{node}")?;
        }
        Ok(())
    }
}

/// [`pick_with`] with the default [`RouteConfig`].
pub fn pick<R: Rng + ?Sized>(
    job: &JobRequirements,
    snapshot: &ViewSnapshot,
    local: &LocalState,
    rng: &mut R,
) -> RoutePlan {
    pick_with(job, snapshot, local, &RouteConfig::default(), rng)
}

/// One offer that passed the filters. Kept small: a pick scores every offer
/// but builds [`ScoreComponents`] only for the few in the plan.
struct Scored {
    /// Index into the offers of (pipeline, model).
    offer: u32,
    /// The offer's orchestrator (index into the snapshot's).
    orchestrator: u32,
    /// The offer's price, wei per unit (0 = free or none).
    price_per_unit: f64,
    tier: Tier,
    latency_source: LatencySource,
    /// Expected latency from here, ms (NaN until estimated when no job
    /// latency from this region is known).
    latency_ms: f64,
    own_region_samples: f64,
    load: f64,
    /// Everything in the score but latency and price: load factor × GPU
    /// factor × other-region factor ÷ reliability.
    multiplier: f64,
    score: f64,
}

/// A ranking key packed in one integer, so comparing two is one integer
/// comparison: tier (high bits), then the score's bits (finite and
/// non-negative, so they order like the number), then position in `scored`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RankKey(u128);

impl RankKey {
    fn new(tier: Tier, score: f64, position: usize) -> Self {
        Self(
            (tier as u128) << 96
                | u128::from(rank_score(score).to_bits()) << 32
                | u128::from(position as u32),
        )
    }

    fn tier(self) -> u8 {
        (self.0 >> 96) as u8
    }

    fn score(self) -> f64 {
        f64::from_bits((self.0 >> 32) as u64)
    }

    fn position(self) -> usize {
        self.0 as u32 as usize
    }
}

/// The job's filters, with what every offer's check needs worked out once.
struct Filters<'a> {
    job: &'a JobRequirements,
    snapshot: &'a ViewSnapshot,
    now_ms: u64,
    /// Snapshot indices of the allowed regions.
    allowed: Option<Vec<usize>>,
}

impl<'a> Filters<'a> {
    fn new(job: &'a JobRequirements, snapshot: &'a ViewSnapshot, now_ms: u64) -> Self {
        let allowed = job.allowed_regions.as_ref().map(|list| {
            list.iter()
                .filter_map(|r| snapshot.region_index(r))
                .collect()
        });
        Self {
            job,
            snapshot,
            now_ms,
            allowed,
        }
    }

    /// Why `offer` cannot serve the job, if it cannot. Cheap checks first;
    /// the ones most jobs do not use cost a test of an empty list.
    #[inline(always)]
    fn reject(&self, offer: &Offer) -> Option<Filtered> {
        let job = self.job;
        if offer.blocked {
            return Some(Filtered::Blocked);
        }
        if offer.ejected_until_ms > self.now_ms {
            return Some(Filtered::Ejected);
        }
        if !offer.warm && !job.allow_cold {
            return Some(Filtered::Cold);
        }
        if let (Some(max), Some(price)) = (job.max_price, offer.price)
            && price > max
        {
            return Some(Filtered::Price);
        }
        if !job.gpu_excluded.is_empty() && gpu_matches(offer, &job.gpu_excluded) {
            return Some(Filtered::Gpu);
        }
        if let Some(allowed) = &self.allowed
            && !offer.home_region.is_some_and(|h| allowed.contains(&h))
        {
            return Some(Filtered::Region);
        }
        if !job.exclude.is_empty()
            && job
                .exclude
                .contains(&self.snapshot.orchestrators()[offer.orchestrator].id)
        {
            return Some(Filtered::Excluded);
        }
        if job.pool.is_some()
            && constraints::outside_pool(job, &self.snapshot.orchestrators()[offer.orchestrator].id)
        {
            return Some(Filtered::Pool);
        }
        None
    }
}

/// Whether any of the offer's GPUs contains any of `fragments`.
fn gpu_matches(offer: &Offer, fragments: &[String]) -> bool {
    offer
        .gpus_lower
        .iter()
        .any(|g| fragments.iter().any(|x| contains_ignore_case(g, x)))
}

/// Plans where to run `job`. Pure: the same inputs and rng state give the
/// same plan.
pub fn pick_with<R: Rng + ?Sized>(
    job: &JobRequirements,
    snapshot: &ViewSnapshot,
    local: &LocalState,
    config: &RouteConfig,
    rng: &mut R,
) -> RoutePlan {
    let offers = snapshot.offers(job.pipeline, &job.model_id);
    let local_idx = snapshot.region_index(&local.region);
    let filters = Filters::new(job, snapshot, local.now_ms);
    let mut forwarding = Forwarding::new(job, snapshot, local, local_idx, config);
    let mut filtered = FilterCounts {
        offered: offers.len() as u32,
        ..FilterCounts::default()
    };
    let mut scored: Vec<Scored> = Vec::with_capacity(offers.len());
    let mut min_price = f64::INFINITY;
    let mut unknown_latencies = 0usize;

    // Local loads by snapshot index: hashing every offer's id would cost
    // more than looking up the few ids with jobs in flight.
    let local_loads: Option<Vec<u32>> = (!local.in_flight.is_empty()
        && local.in_flight.len() < offers.len())
    .then(|| by_snapshot_index(snapshot, &local.in_flight, |&n| n));

    // Pass 1: filters, reliability, load, latency from here when known.
    for (i, offer) in offers.iter().enumerate() {
        if let Some(reason) = filters.reject(offer) {
            match reason {
                Filtered::Blocked => filtered.blocked += 1,
                Filtered::Ejected => filtered.ejected += 1,
                Filtered::Price => filtered.over_price += 1,
                Filtered::Gpu => filtered.gpu_excluded += 1,
                Filtered::Region => filtered.region_not_allowed += 1,
                Filtered::Cold => filtered.cold_not_allowed += 1,
                Filtered::Excluded => filtered.excluded += 1,
                Filtered::Pool => filtered.not_in_pool += 1,
            }
            continue;
        }
        let own = local_idx
            .and_then(|r| offer.by_region.get(r))
            .copied()
            .unwrap_or_default();
        // Posterior success rate = good ÷ all; only its inverse is needed
        // per offer (one division), the rate itself only for the plan.
        let (good, all) = posterior(offer, config);
        let degraded = good < config.degraded_reliability * all;
        let per_reliability = if good > 0.0 && good >= 0.01 * all {
            all / good
        } else {
            100.0
        };
        let local_load = match &local_loads {
            Some(loads) => loads.get(offer.orchestrator).copied().unwrap_or(0),
            None if local.in_flight.is_empty() => 0,
            None => {
                let id = &snapshot.orchestrators()[offer.orchestrator].id;
                local.in_flight.get(id).copied().unwrap_or(0)
            }
        };
        let remote = if local.in_flight_includes_peers {
            0
        } else {
            offer.in_flight_remote
        };
        let in_flight = local_load.saturating_add(remote);
        let mut load = f64::from(in_flight) / f64::from(offer.capacity.max(1));
        if offer.capacity > 0
            && offer.busy_at_ms > 0
            && local.now_ms.saturating_sub(offer.busy_at_ms) < config.busy_hold_ms
        {
            // It said "insufficient capacity" a moment ago: full, although
            // the gossiped counts may not show it yet.
            load = load.max(1.0);
        }
        let observed_here = own.samples > 0.0 || own.probe_rtt_ms > 0.0;
        let tier = match (offer.warm, observed_here, degraded) {
            (true, true, false) => Tier::Home,
            (true, false, false) => Tier::Remote,
            (true, _, true) => Tier::Degraded,
            (false, true, false) => Tier::ColdHome,
            (false, _, _) => Tier::ColdRemote,
        };
        min_price = min_price.min(offer.price_per_unit);
        let latency_ms = if own.samples > 0.0 && own.latency_ms > 0.0 {
            own.latency_ms
        } else {
            unknown_latencies += 1;
            f64::NAN
        };
        if tier <= Tier::Remote {
            forwarding.observe(offer, per_reliability);
        }
        let away = match (offer.home_region, local_idx) {
            (Some(home), Some(here)) if home != here => config.other_region_factor,
            _ => 1.0,
        };
        scored.push(Scored {
            offer: i as u32,
            orchestrator: offer.orchestrator as u32,
            price_per_unit: offer.price_per_unit,
            tier,
            latency_source: LatencySource::OwnRegion,
            latency_ms,
            own_region_samples: own.samples,
            load,
            multiplier: per_reliability
                * load_factor(load, offer.capacity, config.free_slot_load_weight)
                * gpu_factor(job, offer, config)
                * away,
            score: 0.0,
        });
    }
    if scored.is_empty() {
        return RoutePlan {
            attempts: Vec::new(),
            forward_to: forwarding.targets(config, rng),
            filtered,
        };
    }

    // Pass 2: estimates for unknown latency, the age bound, price, score.
    if unknown_latencies > 0 {
        estimate_unknown_latencies(&mut scored, offers, local_idx, config);
    }
    // Ages of this node's oldest jobs in flight, by snapshot index.
    let ages: Option<Vec<u64>> = (!local.in_flight_since_ms.is_empty()).then(|| {
        by_snapshot_index(snapshot, &local.in_flight_since_ms, |&since| {
            local.now_ms.saturating_sub(since)
        })
    });
    let prices = PriceFactor::new(min_price, config.price_weight);
    for s in &mut scored {
        if let Some(age) = ages.as_ref().and_then(|a| a.get(s.orchestrator as usize)) {
            // A job running this long means the latency is at least this.
            s.latency_ms = s.latency_ms.max(*age as f64);
        }
        s.score = s.latency_ms * s.multiplier * prices.of(s.price_per_unit);
    }
    let last_resort = constraints::split_over_budget(job, &mut scored, &mut filtered);
    if scored.is_empty() {
        return RoutePlan {
            attempts: Vec::new(),
            forward_to: forwarding.targets(config, rng),
            filtered,
        };
    }

    // Only the head of the order is ever used: keep just that, sorted, on
    // the stack unless the configuration asks for a long one.
    let head = config.max_attempts.max(config.top_k).max(1);
    let mut on_stack = [RankKey(0); 16];
    let mut on_heap = Vec::new();
    let buffer: &mut [RankKey] = if head <= on_stack.len() {
        &mut on_stack[..head]
    } else {
        on_heap.resize(head, RankKey(0));
        &mut on_heap
    };
    let mut len = 0;
    for (i, s) in scored.iter().enumerate() {
        let key = RankKey::new(s.tier, s.score, i);
        if len < head {
            buffer[len] = key;
            len += 1;
        } else if key < buffer[head - 1] {
            buffer[head - 1] = key;
        } else {
            continue;
        }
        // Insertion step: the head is short, a few swaps beat a memmove.
        let mut j = len - 1;
        while j > 0 && buffer[j - 1] > buffer[j] {
            buffer.swap(j - 1, j);
            j -= 1;
        }
    }
    let ranked = &buffer[..len];

    let (first, reason) = choose_first(&scored, ranked, config, rng);
    let candidate = |s: &Scored, reason: PickReason| {
        let offer = &offers[s.offer as usize];
        Candidate {
            orchestrator: snapshot.orchestrators()[offer.orchestrator].id.clone(),
            tier: s.tier,
            expected_latency_ms: s.latency_ms,
            score: s.score,
            reason,
            components: ScoreComponents {
                latency_ms: s.latency_ms,
                latency_source: s.latency_source,
                own_region_samples: s.own_region_samples,
                reliability: reliability(offer, config),
                load: s.load,
                load_factor: load_factor(s.load, offer.capacity, config.free_slot_load_weight),
                price_factor: prices.of(offer.price_per_unit),
                gpu_factor: gpu_factor(job, offer, config),
            },
        }
    };
    let mut attempts = Vec::with_capacity(config.max_attempts.min(scored.len()));
    let rest = ranked.iter().map(|k| k.position()).filter(|&i| i != first);
    for (n, i) in std::iter::once(first)
        .chain(rest)
        .take(config.max_attempts)
        .enumerate()
    {
        attempts.push(candidate(
            &scored[i],
            if n == 0 { reason } else { PickReason::Failover },
        ));
    }
    if !last_resort.is_empty() {
        constraints::append_last_resort(&mut attempts, last_resort, config.max_attempts, |s| {
            candidate(s, PickReason::Failover)
        });
    }
    RoutePlan {
        attempts,
        forward_to: forwarding.targets(config, rng),
        filtered,
    }
}

/// The price factor of an offer: `1 + weight × (price ÷ cheapest − 1)`,
/// the relative excess capped at 1.
struct PriceFactor {
    min_price: f64,
    per_min_price: f64,
    weight: f64,
}

impl PriceFactor {
    fn new(min_price: f64, weight: f64) -> Self {
        Self {
            min_price,
            per_min_price: if min_price > 0.0 {
                1.0 / min_price
            } else {
                0.0
            },
            weight,
        }
    }

    #[inline]
    fn of(&self, price_per_unit: f64) -> f64 {
        let relative = if self.min_price > 0.0 {
            (price_per_unit * self.per_min_price - 1.0).clamp(0.0, 1.0)
        } else if price_per_unit > 0.0 {
            1.0
        } else {
            0.0
        };
        1.0 + self.weight * relative
    }
}

/// Posterior success counts over every region, prior included: (good,
/// all). The reliability (health evidence) is good ÷ all.
fn posterior(offer: &Offer, config: &RouteConfig) -> (f64, f64) {
    let good = offer.successes + config.prior_successes;
    let all = offer.successes + offer.failures + config.prior_successes + config.prior_failures;
    (good, all)
}

/// Posterior success rate over every region (health evidence).
fn reliability(offer: &Offer, config: &RouteConfig) -> f64 {
    let (good, all) = posterior(offer, config);
    good / all
}

/// `value` of each orchestrator in `map`, as a table by snapshot index
/// (default for the others): a few id lookups instead of one per offer.
fn by_snapshot_index<V, T: Copy + Default>(
    snapshot: &ViewSnapshot,
    map: &HashMap<OrchestratorId, V>,
    value: impl Fn(&V) -> T,
) -> Vec<T> {
    let mut table = vec![T::default(); snapshot.orchestrators().len()];
    for (id, v) in map {
        if let Some(i) = snapshot.orchestrator_index(id) {
            table[i] = value(v);
        }
    }
    table
}

/// The score multiplier for the job's preferred GPUs.
#[inline]
fn gpu_factor(job: &JobRequirements, offer: &Offer, config: &RouteConfig) -> f64 {
    if !job.gpu_preferred.is_empty() && gpu_matches(offer, &job.gpu_preferred) {
        config.gpu_preferred_factor
    } else {
        1.0
    }
}

/// Latency from here for the offers without job latency from this region:
/// another region's, corrected by probe round trips; else the service time
/// this region sees on the same GPU plus our round trip; else the prior.
fn estimate_unknown_latencies(
    scored: &mut [Scored],
    offers: &[Offer],
    local_idx: Option<usize>,
    config: &RouteConfig,
) {
    let mut known: Vec<f64> = scored
        .iter()
        .map(|s| s.latency_ms)
        .filter(|l| !l.is_nan())
        .collect();
    // Service times seen from here by GPU.
    let by_gpu: Vec<(&str, f64)> = scored
        .iter()
        .filter(|s| !s.latency_ms.is_nan())
        .filter_map(|s| {
            let offer = &offers[s.offer as usize];
            let gpu = offer.gpus_lower.first()?;
            let rtt = local_idx
                .and_then(|r| offer.by_region.get(r))
                .map_or(0.0, |l| l.probe_rtt_ms);
            Some((gpu.as_str(), (s.latency_ms - rtt).max(0.0)))
        })
        .collect();
    let prior = prior_latency(&mut known, config);
    // Service times other regions see, by GPU: built on first need.
    let mut elsewhere: Option<Vec<(&str, f64)>> = None;
    for s in scored.iter_mut().filter(|s| s.latency_ms.is_nan()) {
        let offer = &offers[s.offer as usize];
        (s.latency_ms, s.latency_source) = match local_idx.and_then(|r| probe_adjusted(offer, r)) {
            Some(l) => (l, LatencySource::ProbeAdjusted),
            None => match same_gpu(offer, local_idx, &by_gpu) {
                Some(l) => (l, LatencySource::SameGpu),
                None => {
                    let by_gpu_elsewhere = elsewhere
                        .get_or_insert_with(|| service_by_gpu_elsewhere(offers, local_idx));
                    match same_gpu(offer, local_idx, by_gpu_elsewhere) {
                        Some(l) => (l, LatencySource::SameGpuElsewhere),
                        None => (prior, LatencySource::Prior),
                    }
                }
            },
        };
    }
}

/// (GPU, service time) for every offer measured by a region other than
/// `local_idx`: that region's job latency minus its probe round trip.
fn service_by_gpu_elsewhere(offers: &[Offer], local_idx: Option<usize>) -> Vec<(&str, f64)> {
    let mut found = Vec::new();
    for offer in offers {
        let Some(gpu) = offer.gpus_lower.first() else {
            continue;
        };
        for (r, l) in offer.by_region.iter().enumerate() {
            if Some(r) != local_idx && l.samples > 0.0 && l.latency_ms > 0.0 && l.probe_rtt_ms > 0.0
            {
                found.push((gpu.as_str(), (l.latency_ms - l.probe_rtt_ms).max(0.0)));
            }
        }
    }
    found
}

enum Filtered {
    Blocked,
    Ejected,
    Price,
    Gpu,
    Region,
    Cold,
    Excluded,
    Pool,
}

/// Score multiplier for `load` = in flight ÷ advertised capacity. A free
/// slot serves at full speed (one runner per GPU slot), so while slots
/// remain the penalty is only a tie-break among equals (`free_slot_weight`,
/// e.g. ×1.1 when nearly full: gossiped counts are a little stale, and the
/// emptier of two equally fast orchestrators is less likely to be full); at or over capacity the orchestrator answers
/// "insufficient capacity", so it drops behind every free one (×4 and
/// more). Without a stated capacity, load is guessed from the count alone.
fn load_factor(load: f64, capacity: u32, free_slot_weight: f64) -> f64 {
    if capacity == 0 {
        1.0 + load + 2.0 * (load - 1.0).max(0.0)
    } else if load < 1.0 {
        1.0 + free_slot_weight * load
    } else {
        2.0 + 2.0 * load
    }
}

/// Median of the latencies known from here × the penalty, or the default.
fn prior_latency(known: &mut [f64], config: &RouteConfig) -> f64 {
    if known.is_empty() {
        return config.default_latency_ms;
    }
    let mid = known.len() / 2;
    let (_, median, _) = known.select_nth_unstable_by(mid, f64::total_cmp);
    *median * config.unknown_latency_penalty
}

/// The mean service time this region observed on orchestrators with the
/// same (first) GPU, plus the probe round trip to `offer` (needs one, so the
/// estimate is of latency from here).
fn same_gpu(offer: &Offer, local_idx: Option<usize>, by_gpu: &[(&str, f64)]) -> Option<f64> {
    let gpu = offer.gpus_lower.first()?;
    let rtt = offer.by_region.get(local_idx?)?.probe_rtt_ms;
    if rtt <= 0.0 {
        return None;
    }
    let (sum, count) = by_gpu
        .iter()
        .filter(|(g, _)| *g == gpu.as_str())
        .fold((0.0, 0u32), |(sum, n), (_, service)| (sum + service, n + 1));
    (count > 0).then(|| sum / f64::from(count) + rtt)
}

/// Another region's service time (job latency minus its probe round trip)
/// plus our probe round trip; the best such estimate.
fn probe_adjusted(offer: &Offer, local_idx: usize) -> Option<f64> {
    let here = offer.by_region.get(local_idx)?.probe_rtt_ms;
    if here <= 0.0 {
        return None;
    }
    offer
        .by_region
        .iter()
        .enumerate()
        .filter(|(r, l)| {
            *r != local_idx && l.samples > 0.0 && l.latency_ms > 0.0 && l.probe_rtt_ms > 0.0
        })
        .map(|(_, l)| (l.latency_ms - l.probe_rtt_ms).max(0.0) + here)
        .min_by(f64::total_cmp)
}

fn choose_first<R: Rng + ?Sized>(
    scored: &[Scored],
    ranked: &[RankKey],
    config: &RouteConfig,
    rng: &mut R,
) -> (usize, PickReason) {
    if config.explore_share > 0.0 && unit(rng) < config.explore_share {
        let plausible = ranked[0].score() * (1.0 + config.explore_band.max(0.0));
        let eligible = |s: &&Scored| {
            matches!(s.tier, Tier::Home | Tier::Remote)
                && rank_score(s.score) <= plausible
                && s.own_region_samples < config.min_confident_samples
        };
        let count = scored.iter().filter(eligible).count();
        if count > 0 {
            let nth = below(rng, count);
            if let Some(i) = scored
                .iter()
                .enumerate()
                .filter(|(_, s)| eligible(s))
                .nth(nth)
                .map(|(i, _)| i)
            {
                return (i, PickReason::Exploration);
            }
        }
    }
    let best_tier = ranked[0].tier();
    // Only candidates close to the best score share the traffic: spreading
    // onto a clearly slower one costs latency for nothing.
    let limit = ranked[0].score() * (1.0 + config.choice_band.max(0.0));
    let tier_len = ranked
        .iter()
        .take(config.top_k)
        .take_while(|k| k.tier() == best_tier && k.score() <= limit)
        .count();
    let k = config.top_k.min(tier_len);
    if k < 2 {
        return (ranked[0].position(), PickReason::Best);
    }
    let a = below(rng, k);
    let mut b = below(rng, k - 1);
    if b >= a {
        b += 1;
    }
    // Ranked by score within the tier, so the lower rank is the better one.
    (ranked[a.min(b)].position(), PickReason::PowerOfTwo)
}

/// A score as ranked: finite and non-negative (NaN and infinity last).
fn rank_score(score: f64) -> f64 {
    if score.is_finite() {
        score.max(0.0)
    } else {
        f64::MAX
    }
}

/// Regions for which `pick` tracks forwarding evidence (a cluster spans a
/// handful of regions; regions beyond this count still get forwarded to,
/// just without evidence-based ordering).
const FORWARD_REGIONS: usize = 16;

/// The other regions a plan may forward to: alive nodes, allowed by the job.
/// For each the pick tracks the best evidence of healthy capacity for this
/// job there: latency ÷ reliability that region observed on the usable warm
/// offers homed in it (what its nodes will mostly use), to try the best
/// region first.
struct Forwarding<'a> {
    /// (best evidence, region, its nodes), in region order.
    regions: Vec<(f64, &'a RegionId, &'a [NodeId])>,
    /// Per snapshot region index (the first [`FORWARD_REGIONS`]), its
    /// position in `regions` (`u8::MAX` = not a forwarding target).
    slot: [u8; FORWARD_REGIONS],
}

impl<'a> Forwarding<'a> {
    fn new(
        job: &JobRequirements,
        snapshot: &ViewSnapshot,
        local: &'a LocalState,
        local_idx: Option<usize>,
        config: &RouteConfig,
    ) -> Self {
        let mut forwarding = Self {
            regions: Vec::new(),
            slot: [u8::MAX; FORWARD_REGIONS],
        };
        if config.max_forward == 0 {
            return forwarding;
        }
        // Both lists are sorted by region: one walk finds each region's
        // snapshot index with one comparison per step.
        let known = snapshot.regions();
        let mut cursor = 0;
        for (region, nodes) in &local.nodes_by_region {
            let index = loop {
                match known.get(cursor).map(|k| k.cmp(region)) {
                    Some(std::cmp::Ordering::Less) => cursor += 1,
                    Some(std::cmp::Ordering::Equal) => break Some(cursor),
                    _ => break None,
                }
            };
            let here = match (index, local_idx) {
                (Some(index), Some(local_idx)) => index == local_idx,
                _ => region == &local.region,
            };
            if here || nodes.is_empty() {
                continue;
            }
            if let Some(allowed) = &job.allowed_regions
                && !allowed.contains(region)
            {
                continue;
            }
            let position = forwarding.regions.len();
            if position < FORWARD_REGIONS
                && let Some(slot) = index.and_then(|r| forwarding.slot.get_mut(r))
            {
                *slot = position as u8;
            }
            forwarding
                .regions
                .push((f64::INFINITY, region, nodes.as_slice()));
        }
        forwarding
    }

    /// Counts a usable, warm, reliable offer as evidence for its home
    /// region, if that region observed its job latency.
    #[inline]
    fn observe(&mut self, offer: &Offer, per_reliability: f64) {
        let Some(home) = offer.home_region else {
            return;
        };
        let Some(&slot) = self.slot.get(home) else {
            return;
        };
        if let Some((best, _, _)) = self.regions.get_mut(usize::from(slot))
            && let Some(l) = offer.by_region.get(home)
            && l.samples > 0.0
            && l.latency_ms > 0.0
        {
            *best = best.min(l.latency_ms * per_reliability);
        }
    }

    /// One random alive node per region, best evidence first (ties by
    /// region name), at most `max_forward`.
    fn targets<R: Rng + ?Sized>(
        mut self,
        config: &RouteConfig,
        rng: &mut R,
    ) -> Vec<(RegionId, NodeId)> {
        self.regions
            .sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        self.regions
            .into_iter()
            .take(config.max_forward)
            .map(|(_, region, nodes)| (region.clone(), nodes[below(rng, nodes.len())].clone()))
            .collect()
    }
}

/// Whether `haystack` (already lower-case) contains `needle`, ignoring ASCII case.
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| *a == b.to_ascii_lowercase()))
}

/// Uniform in `0..n` (n ≥ 1), by multiply-shift (bias below 2^-32 · n).
fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Uniform in `[0, 1)`.
fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests;
