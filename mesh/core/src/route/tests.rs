use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::fixture::{OfferSpec, orchestrator_info};
use crate::hlc::Hlc;
use crate::view::{ErrorClass, ObservationRecord};

const NOW: u64 = 10_000_000;
const MODEL: &str = "meta-llama/llama-3.1-8B-Instruct";

fn orch(i: usize) -> OrchestratorId {
    OrchestratorId::parse(&format!("orch-{i:02}.example:8935")).unwrap()
}

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// A warm offer of the test model on a GPU named `name`.
fn gpu_offer(name: &str) -> OfferSpec {
    OfferSpec {
        gpu: Some(name.into()),
        ..OfferSpec::warm(Pipeline::Llm, MODEL)
    }
}

/// Builds records the way nodes would, then a snapshot.
#[derive(Default)]
struct World {
    records: Vec<ObservationRecord>,
    blocked: Vec<OrchestratorId>,
}

impl World {
    fn record(&mut self, o: usize, region_name: &str) -> &mut ObservationRecord {
        let observer = node(&format!("{region_name}-1"));
        let pos = self
            .records
            .iter()
            .position(|r| r.orchestrator == orch(o) && r.observer == observer);
        let i = match pos {
            Some(i) => i,
            None => {
                let mut r = ObservationRecord::new(orch(o), observer, region(region_name));
                r.version = Hlc {
                    wall_ms: NOW,
                    counter: 0,
                    node: 1,
                };
                self.records.push(r);
                self.records.len() - 1
            }
        };
        &mut self.records[i]
    }

    /// Orchestrator `o` offers the model (as seen from `region_name`).
    fn offer(&mut self, o: usize, region_name: &str, spec: OfferSpec) -> &mut Self {
        let info = orchestrator_info(&orch(o), &[spec]);
        self.record(o, region_name).record_info(info, NOW - 1_000);
        self
    }

    fn warm(&mut self, o: usize, region_name: &str) -> &mut Self {
        self.offer(o, region_name, OfferSpec::warm(Pipeline::Llm, MODEL))
    }

    /// `n` successes at `latency_ms` observed from `region_name`.
    fn latency(&mut self, o: usize, region_name: &str, latency_ms: u32, n: u32) -> &mut Self {
        let r = self.record(o, region_name);
        for _ in 0..n {
            r.record_success(Pipeline::Llm, MODEL, latency_ms, NOW - 100);
        }
        self
    }

    fn probe(&mut self, o: usize, region_name: &str, rtt_ms: u32) -> &mut Self {
        self.record(o, region_name).record_probe(rtt_ms, NOW - 100);
        self
    }

    fn snapshot(&self) -> ViewSnapshot {
        ViewSnapshot::from_records(NOW, None, &self.records, self.blocked.clone())
    }
}

fn local(region_name: &str) -> LocalState {
    LocalState::new(region(region_name), NOW)
}

fn job() -> JobRequirements {
    JobRequirements::new(Pipeline::Llm, MODEL)
}

fn first(plan: &RoutePlan) -> Option<&OrchestratorId> {
    plan.attempts.first().map(|c| &c.orchestrator)
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// 50 orchestrators seen from fra at 90–110 ms, each with 20 samples.
fn fifty() -> World {
    let mut w = World::default();
    for o in 0..50 {
        w.warm(o, "fra")
            .latency(o, "fra", 90 + (o as u32 * 7) % 21, 20);
    }
    w
}

#[test]
fn warm_is_preferred_over_cold_and_cold_is_only_a_fallback() {
    let mut w = World::default();
    w.warm(1, "fra").latency(1, "fra", 500, 10);
    w.offer(
        2,
        "fra",
        OfferSpec {
            warm: false,
            ..OfferSpec::warm(Pipeline::Llm, MODEL)
        },
    )
    .latency(2, "fra", 50, 10);
    let snap = w.snapshot();
    for seed in 0..50 {
        let plan = pick(
            &job(),
            &snap,
            &local("fra"),
            &mut StdRng::seed_from_u64(seed),
        );
        assert_eq!(first(&plan), Some(&orch(1)));
        assert_eq!(plan.attempts[1].orchestrator, orch(2));
        assert_eq!(plan.attempts[1].tier, Tier::ColdHome);
    }
    let mut no_cold = job();
    no_cold.allow_cold = false;
    let plan = pick(&no_cold, &snap, &local("fra"), &mut rng());
    assert_eq!(plan.attempts.len(), 1);
    assert_eq!(plan.filtered.cold_not_allowed, 1);

    // Only cold available: used if allowed, nothing otherwise.
    let mut w = World::default();
    w.offer(
        2,
        "fra",
        OfferSpec {
            warm: false,
            ..OfferSpec::warm(Pipeline::Llm, MODEL)
        },
    );
    let snap = w.snapshot();
    assert_eq!(
        first(&pick(&job(), &snap, &local("fra"), &mut rng())),
        Some(&orch(2))
    );
    assert!(
        pick(&no_cold, &snap, &local("fra"), &mut rng())
            .attempts
            .is_empty()
    );
}

#[test]
fn price_cap_filters() {
    let mut w = World::default();
    let priced = |per_unit| OfferSpec {
        price: Some(WeiPrice::new(per_unit, 1).unwrap()),
        ..OfferSpec::warm(Pipeline::Llm, MODEL)
    };
    w.offer(1, "fra", priced(100)).latency(1, "fra", 50, 10);
    w.offer(2, "fra", priced(10)).latency(2, "fra", 400, 10);
    let mut capped = job();
    capped.max_price = Some(WeiPrice::new(50, 1).unwrap());
    let plan = pick(&capped, &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(plan.attempts.len(), 1);
    assert_eq!(first(&plan), Some(&orch(2)));
    assert_eq!(plan.filtered.over_price, 1);
    // Uncapped, the dear but fast one wins: price only breaks ties.
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(first(&plan), Some(&orch(1)));
    assert!((plan.attempts[0].components.price_factor - 1.02).abs() < 1e-9);
}

#[test]
fn blocklist_filters() {
    let mut w = fifty();
    w.blocked = (0..49).map(orch).collect();
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(plan.attempts.len(), 1);
    assert_eq!(first(&plan), Some(&orch(49)));
    assert_eq!(plan.filtered.blocked, 49);
}

#[test]
fn ejected_is_filtered_until_the_ejection_expires() {
    let mut w = World::default();
    w.warm(1, "fra").latency(1, "fra", 50, 10);
    w.warm(2, "fra").latency(2, "fra", 400, 10);
    // Ejected by a node of another region: applies here too.
    w.warm(1, "lax");
    let policy = EjectionPolicy::default();
    let r = w.record(1, "lax");
    r.record_failure(Pipeline::Llm, MODEL, ErrorClass::Connect, NOW);
    let until = policy.after_failure(r, ErrorClass::Connect, NOW).unwrap();
    let snap = w.snapshot();
    let plan = pick(&job(), &snap, &local("fra"), &mut rng());
    assert_eq!(
        plan.attempts
            .iter()
            .map(|c| &c.orchestrator)
            .collect::<Vec<_>>(),
        [&orch(2)]
    );
    assert_eq!(plan.filtered.ejected, 1);
    let mut later = local("fra");
    later.now_ms = until;
    let plan = pick(&job(), &snap, &later, &mut rng());
    assert_eq!(plan.attempts.len(), 2);
    assert_eq!(first(&plan), Some(&orch(1)), "back, and still the fastest");
}

#[test]
fn own_region_latency_beats_other_region_evidence() {
    let mut w = World::default();
    w.warm(1, "fra").latency(1, "fra", 200, 10);
    w.warm(2, "lax").latency(2, "lax", 50, 10);
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(first(&plan), Some(&orch(1)));
    assert_eq!(plan.attempts[0].tier, Tier::Home);
    assert_eq!(plan.attempts[1].tier, Tier::Remote);
    assert_eq!(
        plan.attempts[1].components.latency_source,
        LatencySource::Prior
    );
    assert!(
        (plan.attempts[1].expected_latency_ms - 300.0).abs() < 1e-9,
        "median × 1.5"
    );
    // Seen from lax, the same snapshot prefers orchestrator 2.
    let plan = pick(&job(), &w.snapshot(), &local("lax"), &mut rng());
    assert_eq!(first(&plan), Some(&orch(2)));
}

#[test]
fn probe_round_trips_translate_other_regions_latency() {
    let mut w = World::default();
    // Service time 100 ms; lax is 10 ms away, fra 140 ms.
    w.warm(1, "lax")
        .latency(1, "lax", 110, 10)
        .probe(1, "lax", 10)
        .probe(1, "fra", 140);
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    let c = &plan.attempts[0];
    assert_eq!(c.components.latency_source, LatencySource::ProbeAdjusted);
    assert!((c.expected_latency_ms - 240.0).abs() < 1e-9);
    assert_eq!(c.tier, Tier::Home, "probed from here");
}

#[test]
fn a_ten_times_slower_orchestrator_gets_almost_no_picks() {
    let mut w = fifty();
    w.latency(13, "fra", 1_000, 40);
    let snap = w.snapshot();
    let mut rng = rng();
    let slow = (0..10_000)
        .filter(|_| first(&pick(&job(), &snap, &local("fra"), &mut rng)) == Some(&orch(13)))
        .count();
    assert!(
        slow < 10,
        "slow orchestrator picked first {slow} times in 10,000"
    );
}

#[test]
fn picks_spread_over_the_best_and_follow_load() {
    let snap = fifty().snapshot();
    let mut counts = std::collections::BTreeMap::new();
    let mut rng = rng();
    for _ in 0..2_000 {
        let plan = pick(&job(), &snap, &local("fra"), &mut rng);
        *counts.entry(first(&plan).unwrap().clone()).or_insert(0u32) += 1;
    }
    // Two distinct random choices among the top 4: the best three get
    // 1/2, 1/3, 1/6 of the first attempts.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&c| c > 200), "{counts:?}");
    let (best, _) = counts.iter().max_by_key(|(_, c)| **c).unwrap();
    // Loading the favourite moves traffic off it.
    let mut loaded = local("fra");
    loaded.in_flight.insert(best.clone(), 8);
    let plan = pick(&job(), &snap, &loaded, &mut rng);
    let c = plan.attempts.iter().find(|c| &c.orchestrator == best);
    assert!(c.is_none_or(|c| c.components.load_factor >= 4.0));
    assert_ne!(first(&plan), Some(best));
}

#[test]
fn exploration_share_is_bounded() {
    let mut w = fifty();
    // 10 newcomers, probed from here but without job samples.
    for o in 50..60 {
        w.warm(o, "fra").probe(o, "fra", 20);
    }
    let snap = w.snapshot();
    let mut rng = rng();
    // Their latency is unknown (the prior: median × 1.5, far behind the
    // best): by default they are not worth exploring.
    assert!((0..2_000).all(|_| {
        pick(&job(), &snap, &local("fra"), &mut rng).attempts[0].reason != PickReason::Exploration
    }));
    // With a band wide enough to include them, exploration takes its share.
    let wide = RouteConfig {
        explore_band: 10.0,
        ..RouteConfig::default()
    };
    let explored = (0..10_000)
        .filter(|_| {
            pick_with(&job(), &snap, &local("fra"), &wide, &mut rng).attempts[0].reason
                == PickReason::Exploration
        })
        .count();
    assert!(
        (50..=160).contains(&explored),
        "explored {explored} of 10,000 (share 1 %)"
    );
    let none = RouteConfig {
        explore_share: 0.0,
        ..RouteConfig::default()
    };
    assert!((0..1_000).all(|_| {
        pick_with(&job(), &snap, &local("fra"), &none, &mut rng).attempts[0].reason
            != PickReason::Exploration
    }));
}

#[test]
fn plan_is_ordered_and_bounded_and_forwards_to_other_regions() {
    let mut w = fifty();
    w.warm(60, "lax").latency(60, "lax", 80, 10);
    w.warm(61, "sin").latency(61, "sin", 300, 10);
    w.latency(3, "fra", 100, 1); // keeps fra's evidence; nothing else changes
    let mut me = local("fra");
    for r in ["fra", "lax", "sin"] {
        me.nodes_by_region.insert(
            region(r),
            vec![node(&format!("{r}-a")), node(&format!("{r}-b"))],
        );
    }
    let plan = pick(&job(), &w.snapshot(), &me, &mut rng());
    assert_eq!(plan.attempts.len(), RouteConfig::default().max_attempts);
    assert!(
        plan.attempts[1..]
            .iter()
            .all(|c| c.reason == PickReason::Failover)
    );
    for pair in plan.attempts[1..].windows(2) {
        assert!((pair[0].tier, pair[0].score) <= (pair[1].tier, pair[1].score));
    }
    let regions: Vec<&RegionId> = plan.forward_to.iter().map(|(r, _)| r).collect();
    assert_eq!(
        regions,
        [&region("lax"), &region("sin")],
        "best evidence first, never home"
    );
    assert!(plan.to_string().contains("orch-"));

    let mut only_sin = job();
    only_sin.allowed_regions = Some(vec![region("sin")]);
    let plan = pick(&only_sin, &w.snapshot(), &me, &mut rng());
    assert_eq!(
        plan.attempts
            .iter()
            .map(|c| &c.orchestrator)
            .collect::<Vec<_>>(),
        [&orch(61)]
    );
    assert_eq!(plan.forward_to.len(), 1);
    assert_eq!(plan.forward_to[0].0, region("sin"));
}

#[test]
fn when_home_is_down_remote_capacity_then_home_again() {
    let mut w = World::default();
    for o in 0..3 {
        w.warm(o, "fra").latency(o, "fra", 50, 20);
    }
    for o in 10..13 {
        w.warm(o, "lax").latency(o, "lax", 60, 20);
    }
    let policy = EjectionPolicy::default();
    for o in 0..3 {
        let r = w.record(o, "fra");
        r.record_failure(Pipeline::Llm, MODEL, ErrorClass::Connect, NOW);
        policy.after_failure(r, ErrorClass::Connect, NOW);
    }
    let snap = w.snapshot();
    let plan = pick(&job(), &snap, &local("fra"), &mut rng());
    assert!(
        plan.attempts
            .iter()
            .all(|c| c.tier == Tier::Remote && c.orchestrator >= orch(10))
    );
    // Recovery: a probe lifts the ejection; home is first again at once.
    for o in 0..3 {
        w.record(o, "fra").record_probe(5, NOW + 200);
    }
    let snap = w.snapshot();
    let mut after = local("fra");
    after.now_ms = NOW + 200;
    for seed in 0..20 {
        let plan = pick(&job(), &snap, &after, &mut StdRng::seed_from_u64(seed));
        assert!(first(&plan).unwrap() < &orch(3));
    }
}

#[test]
fn gpu_constraints() {
    let mut w = World::default();
    w.offer(1, "fra", gpu_offer("NVIDIA GeForce RTX 4090"))
        .latency(1, "fra", 100, 10);
    w.offer(2, "fra", gpu_offer("NVIDIA A100"))
        .latency(2, "fra", 100, 10);
    let mut j = job();
    j.gpu_excluded = vec!["4090".into()];
    let plan = pick(&j, &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(plan.attempts.len(), 1);
    assert_eq!(first(&plan), Some(&orch(2)));
    let mut j = job();
    j.gpu_preferred = vec!["rtx 4090".into()];
    j.exclude = vec![];
    let plan = pick(&j, &w.snapshot(), &local("fra"), &mut rng());
    assert_eq!(first(&plan), Some(&orch(1)));
    assert!((plan.attempts[0].components.gpu_factor - 0.8).abs() < 1e-9);
}

#[test]
fn deterministic_for_a_fixed_seed() {
    let snap = fifty().snapshot();
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..100)
            .map(|_| pick(&job(), &snap, &local("fra"), &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn nothing_offered_gives_an_empty_plan() {
    let plan = pick(&job(), &ViewSnapshot::empty(NOW), &local("fra"), &mut rng());
    assert!(plan.attempts.is_empty() && plan.forward_to.is_empty());
    assert_eq!(plan.filtered, FilterCounts::default());
}

/// Orchestrator 1 at 330 ms, 2 at 420 ms, 3 at 480 ms (capacity 4 each).
fn three_classes() -> World {
    let mut w = World::default();
    for (o, latency) in [(1, 330), (2, 420), (3, 480)] {
        w.warm(o, "fra").latency(o, "fra", latency, 30);
    }
    w
}

fn share_of(
    snap: &ViewSnapshot,
    local: &LocalState,
    o: &OrchestratorId,
    rng: &mut StdRng,
) -> usize {
    (0..1_000)
        .filter(|_| first(&pick(&job(), snap, local, rng)) == Some(o))
        .count()
}

#[test]
fn a_free_slot_is_not_penalised_and_clearly_slower_ones_are_not_drawn() {
    let snap = three_classes().snapshot();
    let mut rng = rng();
    let mut busy = local("fra");
    // Three of four slots busy: still the fastest, every time (bar exploration).
    busy.in_flight.insert(orch(1), 3);
    assert!(share_of(&snap, &busy, &orch(1), &mut rng) > 950);
    // Full: the next class takes over.
    busy.in_flight.insert(orch(1), 4);
    assert!(share_of(&snap, &busy, &orch(2), &mut rng) > 950);
}

#[test]
fn a_busy_orchestrator_keeps_its_traffic_over_a_free_one_four_percent_slower() {
    // Latency is measured with noise, so the load tie-break must stay far
    // below the 10 % by which a pick counts as accurate.
    let mut w = World::default();
    w.warm(1, "fra").latency(1, "fra", 300, 30);
    w.warm(2, "fra").latency(2, "fra", 312, 30);
    let snap = w.snapshot();
    let mut rng = rng();
    let mut busy = local("fra");
    busy.in_flight.insert(orch(1), 3);
    assert!(share_of(&snap, &busy, &orch(1), &mut rng) > 950);
    // Equally fast: the free one takes the work.
    let mut w = World::default();
    w.warm(1, "fra").latency(1, "fra", 300, 30);
    w.warm(2, "fra").latency(2, "fra", 300, 30);
    let snap = w.snapshot();
    assert!(share_of(&snap, &busy, &orch(2), &mut rng) > 950);
}

#[test]
fn an_old_job_in_flight_is_latency_evidence() {
    let snap = three_classes().snapshot();
    let mut rng = rng();
    let mut slow = local("fra");
    slow.in_flight.insert(orch(1), 1);
    // One job has been running there for 2 s: it is at least that slow.
    slow.in_flight_since_ms.insert(orch(1), NOW - 2_000);
    assert_eq!(share_of(&snap, &slow, &orch(1), &mut rng), 0);
    let plan = pick(&job(), &snap, &slow, &mut rng);
    let c = plan.attempts.iter().find(|c| c.orchestrator == orch(1));
    assert!(c.is_some_and(|c| c.expected_latency_ms >= 2_000.0));
    // A young job says nothing.
    slow.in_flight_since_ms.insert(orch(1), NOW - 100);
    assert!(share_of(&snap, &slow, &orch(1), &mut rng) > 950);
}

#[test]
fn a_fresh_busy_answer_counts_as_full() {
    let mut w = three_classes();
    w.record(1, "fra")
        .record_failure(Pipeline::Llm, MODEL, ErrorClass::Busy, NOW - 20);
    let snap = w.snapshot();
    let mut rng = rng();
    assert!(share_of(&snap, &local("fra"), &orch(2), &mut rng) > 950);
    // Later, the hold is over.
    let later = LocalState::new(region("fra"), NOW + 1_000);
    assert!(share_of(&snap, &later, &orch(1), &mut rng) > 950);
    // And "busy" is not a health failure.
    let offer = &snap.offers(Pipeline::Llm, MODEL)[0];
    assert_eq!(offer.failures, 0.0);
}

#[test]
fn an_unsampled_orchestrator_is_estimated_from_the_same_gpu() {
    let mut w = World::default();
    // Known: a 4090 at 330 ms (10 ms away) and an A100 at 480 ms.
    w.offer(1, "fra", gpu_offer("NVIDIA GeForce RTX 4090"))
        .latency(1, "fra", 330, 20)
        .probe(1, "fra", 10);
    w.offer(2, "fra", gpu_offer("NVIDIA A100"))
        .latency(2, "fra", 480, 20)
        .probe(2, "fra", 10);
    // New: another 4090, 4 ms away, never used.
    w.offer(3, "fra", gpu_offer("NVIDIA GeForce RTX 4090"))
        .probe(3, "fra", 4);
    let mut busy = local("fra");
    busy.in_flight.insert(orch(1), 1);
    let plan = pick(&job(), &w.snapshot(), &busy, &mut rng());
    let new = plan
        .attempts
        .iter()
        .find(|c| c.orchestrator == orch(3))
        .unwrap();
    assert_eq!(new.components.latency_source, LatencySource::SameGpu);
    assert!(
        (new.expected_latency_ms - 324.0).abs() < 1e-9,
        "320 ms service + 4 ms"
    );
    // It ranks with the fast GPU, not behind the A100 as the prior would.
    let a100 = plan.attempts.iter().position(|c| c.orchestrator == orch(2));
    let new_rank = plan.attempts.iter().position(|c| c.orchestrator == orch(3));
    assert!(new_rank < a100, "{plan}");
}

#[test]
fn announced_peer_counts_replace_the_gossiped_ones() {
    let mut w = World::default();
    let capacity = |n| OfferSpec {
        capacity: n,
        ..OfferSpec::warm(Pipeline::Llm, MODEL)
    };
    w.offer(1, "fra", capacity(2)).latency(1, "fra", 100, 20);
    w.offer(2, "fra", capacity(2)).latency(2, "fra", 200, 20);
    // A peer's gossiped record says orchestrator 1 is full...
    w.record(1, "fra").set_in_flight(2);
    let snap = w.snapshot();
    let gossiped = pick(&job(), &snap, &local("fra"), &mut rng());
    assert_eq!(first(&gossiped), Some(&orch(2)));
    // ...but its newer announcement says it has finished.
    let mut announced = local("fra");
    announced.in_flight_includes_peers = true;
    let plan = pick(&job(), &snap, &announced, &mut rng());
    assert_eq!(first(&plan), Some(&orch(1)));
    assert_eq!(plan.attempts[0].components.load, 0.0);
    // And an announced count fills it again.
    announced.in_flight.insert(orch(1), 2);
    let plan = pick(&job(), &snap, &announced, &mut rng());
    assert_eq!(first(&plan), Some(&orch(2)));
}

/// Seen from fra: orchestrator 1 (home fra, 2 ms away) at 400 ms, and
/// orchestrator 2 (home lax, 150 ms away) at `abroad_ms`.
fn home_or_abroad(abroad_ms: u32) -> Option<OrchestratorId> {
    let mut w = World::default();
    w.warm(1, "fra")
        .latency(1, "fra", 400, 20)
        .probe(1, "fra", 2);
    w.warm(2, "fra")
        .latency(2, "fra", abroad_ms, 20)
        .probe(2, "fra", 150);
    w.warm(2, "lax").probe(2, "lax", 2);
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    first(&plan).cloned()
}

#[test]
fn a_nearby_orchestrator_wins_over_a_slightly_faster_one_abroad() {
    // 5 % faster abroad: home wins.
    assert_eq!(home_or_abroad(380), Some(orch(1)));
    // 20 % faster: home still wins; the load we put abroad is known there late.
    assert_eq!(home_or_abroad(320), Some(orch(1)));
    // Twice as fast abroad wins.
    assert_eq!(home_or_abroad(200), Some(orch(2)));
}

#[test]
fn forwarding_tries_first_the_region_whose_own_orchestrators_serve_best() {
    let mut w = fifty();
    // lax's own orchestrator is slow as lax sees it.
    w.warm(60, "lax")
        .latency(60, "lax", 300, 10)
        .probe(60, "lax", 5)
        .probe(60, "sin", 150);
    // sin's own orchestrator is fast as sin sees it.
    w.warm(61, "sin")
        .latency(61, "sin", 80, 10)
        .probe(61, "sin", 5)
        .probe(61, "lax", 150);
    // lax sees sin's other orchestrator fast, but lax's nodes would mostly
    // use lax's own: that is no evidence for forwarding to lax.
    w.warm(62, "sin")
        .probe(62, "sin", 5)
        .probe(62, "lax", 120)
        .latency(62, "lax", 40, 10);
    let mut me = local("fra");
    for r in ["fra", "lax", "sin"] {
        me.nodes_by_region
            .insert(region(r), vec![node(&format!("{r}-a"))]);
    }
    let snap = w.snapshot();
    let home = |o: usize| {
        let i = snap.orchestrator_index(&orch(o)).unwrap();
        snap.orchestrators()[i].home_region.clone()
    };
    assert_eq!(home(60), Some(region("lax")));
    assert_eq!(home(62), Some(region("sin")));
    let plan = pick(&job(), &snap, &me, &mut rng());
    let regions: Vec<&RegionId> = plan.forward_to.iter().map(|(r, _)| r).collect();
    assert_eq!(
        regions,
        [&region("sin"), &region("lax")],
        "sin's own capacity is better evidence than lax's, whatever the names"
    );
}

#[test]
fn the_only_gpu_of_its_kind_here_is_estimated_from_other_regions() {
    let mut w = World::default();
    // fra measures two A100s at ~420 ms; its only 4090 (orch 3) was never
    // used from anywhere. lax measures its own 4090 (orch 4): 480 ms of
    // which 150 ms is the round trip, so 330 ms of service.
    for o in [1, 2] {
        w.offer(o, "fra", gpu_offer("NVIDIA A100"))
            .latency(o, "fra", 420, 20)
            .probe(o, "fra", 2);
    }
    w.offer(3, "fra", gpu_offer("NVIDIA GeForce RTX 4090"))
        .probe(3, "fra", 2);
    w.offer(4, "lax", gpu_offer("NVIDIA GeForce RTX 4090"))
        .latency(4, "lax", 480, 20)
        .probe(4, "lax", 150);
    let plan = pick(&job(), &w.snapshot(), &local("fra"), &mut rng());
    let new = plan
        .attempts
        .iter()
        .find(|c| c.orchestrator == orch(3))
        .unwrap();
    assert_eq!(
        new.components.latency_source,
        LatencySource::SameGpuElsewhere
    );
    assert!(
        (new.expected_latency_ms - 332.0).abs() < 1e-9,
        "330 ms service seen by lax + 2 ms from here: {plan}"
    );
    // It is the best here, not behind the A100s as the prior (630 ms)
    // would put it, outside the exploration band.
    assert_eq!(first(&plan), Some(&orch(3)), "{plan}");
}
