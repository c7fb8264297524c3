use proptest::prelude::*;

use super::*;
use crate::fixture::{OfferSpec, orchestrator_info};
use crate::hlc::{DEFAULT_MAX_DRIFT_MS, Hlc};

const NOW: u64 = 1_000_000;

fn orch(i: usize) -> OrchestratorId {
    OrchestratorId::parse(&format!("orch-{i}.example:8935")).unwrap()
}

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn view(name: &str, region_name: &str) -> View {
    View::new(node(name), region(region_name), DEFAULT_MAX_DRIFT_MS)
}

fn info(i: usize) -> OrchestratorInfo {
    orchestrator_info(&orch(i), &[OfferSpec::warm(Pipeline::Llm, "m")])
}

fn state(v: &View) -> (Vec<ObservationRecord>, Vec<OrchestratorId>) {
    (v.records().cloned().collect(), v.blocked())
}

#[test]
fn local_writes_bump_versions_and_mark_dirty() {
    let mut v = view("fra-1", "fra");
    v.local_success(&orch(1), Pipeline::Llm, "m", 100, NOW)
        .unwrap();
    let first = v.local_record(&orch(1)).unwrap().version;
    v.local_success(&orch(1), Pipeline::Llm, "m", 100, NOW)
        .unwrap();
    let second = v.local_record(&orch(1)).unwrap().version;
    assert!(second > first);
    assert_eq!(v.take_dirty(), vec![orch(1)]);
    assert!(v.take_dirty().is_empty());
    v.local_in_flight(&orch(1), 0, NOW).unwrap();
    assert!(
        v.take_dirty().is_empty(),
        "unchanged in-flight does not republish"
    );
}

#[test]
fn merge_keeps_highest_version_and_echo_advances_clock() {
    let mut a = view("fra-1", "fra");
    let mut b = view("lax-1", "lax");
    a.local_success(&orch(1), Pipeline::Llm, "m", 100, NOW)
        .unwrap();
    let rec = a.local_record(&orch(1)).unwrap().clone();
    assert_eq!(b.merge(rec.clone(), NOW).unwrap(), MergeOutcome::Applied);
    assert_eq!(b.merge(rec.clone(), NOW).unwrap(), MergeOutcome::Stale);
    let mut older = rec.clone();
    older.version.wall_ms -= 1;
    older.in_flight = 9;
    assert_eq!(b.merge(older, NOW).unwrap(), MergeOutcome::Stale);

    // A restarted node (fresh view, clock behind) learns its old record back
    // and its next write wins over it.
    let mut restarted = view("fra-1", "fra");
    let mut future = rec;
    future.version.wall_ms = NOW + 1_000;
    restarted.merge(future.clone(), NOW).unwrap();
    restarted.local_in_flight(&orch(1), 3, NOW).unwrap();
    assert!(restarted.local_record(&orch(1)).unwrap().version > future.version);
}

#[test]
fn merge_refuses_far_future_and_invalid_records() {
    let mut v = view("fra-1", "fra");
    let mut r = ObservationRecord::new(orch(1), node("x"), region("lax"));
    r.version = Hlc {
        wall_ms: NOW + DEFAULT_MAX_DRIFT_MS + 1,
        counter: 0,
        node: 1,
    };
    assert!(matches!(v.merge(r.clone(), NOW), Err(ViewError::Clock(_))));
    r.version.wall_ms = NOW;
    r.probe_rtt_ms = f64::NAN;
    assert!(matches!(v.merge(r, NOW), Err(ViewError::Record(_))));
    assert!(v.is_empty());
}

#[test]
fn observers_are_bounded() {
    let mut v = view("fra-1", "fra");
    for i in 0..MAX_OBSERVERS {
        let mut r = ObservationRecord::new(orch(1), node(&format!("n{i}")), region("fra"));
        r.version = Hlc {
            wall_ms: NOW,
            counter: 0,
            node: i as u64,
        };
        v.merge(r, NOW).unwrap();
    }
    let r = ObservationRecord::new(orch(1), node("one-too-many"), region("fra"));
    assert_eq!(v.merge(r, NOW), Err(ViewError::TooManyObservers));
}

#[test]
fn expire_drops_silent_observers_but_not_local() {
    let mut v = view("fra-1", "fra");
    v.local_success(&orch(1), Pipeline::Llm, "m", 100, 1_000)
        .unwrap();
    let mut r = ObservationRecord::new(orch(1), node("lax-1"), region("lax"));
    r.version = Hlc {
        wall_ms: 1_000,
        counter: 0,
        node: 2,
    };
    v.merge(r.clone(), 1_000).unwrap();
    r.observer = node("lax-2");
    r.version.wall_ms = 50_000;
    v.merge(r, 50_000).unwrap();
    assert_eq!(v.expire(61_000, 30_000), 1);
    assert!(v.record(&orch(1), &node("lax-1")).is_none());
    assert!(v.record(&orch(1), &node("lax-2")).is_some());
    assert!(v.local_record(&orch(1)).is_some());
}

#[test]
fn snapshot_aggregates_across_observers() {
    let mut fra = view("fra-1", "fra");
    let mut lax = view("lax-1", "lax");
    fra.local_info(&orch(1), info(1), Some(20), NOW - 5_000)
        .unwrap();
    for _ in 0..10 {
        fra.local_success(&orch(1), Pipeline::Llm, "m", 100, NOW)
            .unwrap();
        lax.local_success(&orch(1), Pipeline::Llm, "m", 300, NOW)
            .unwrap();
    }
    let mut newer_info = info(1);
    newer_info.transcoder = "https://newer".into();
    lax.local_info(&orch(1), newer_info, Some(150), NOW)
        .unwrap();
    let policy = EjectionPolicy::default();
    let until = lax
        .local_failure(
            &orch(1),
            Pipeline::Llm,
            "m",
            ErrorClass::Connect,
            &policy,
            NOW,
        )
        .unwrap();
    assert_eq!(until, Some(NOW + 1_000));
    fra.merge_view(&lax, NOW);

    let snap = fra.snapshot(NOW);
    let s = snap.orchestrator(&orch(1)).unwrap();
    assert_eq!(
        s.info.as_ref().unwrap().transcoder,
        "https://newer",
        "freshest info wins"
    );
    assert_eq!(
        s.ejected_until_ms,
        NOW + 1_000,
        "lax's ejection applies in fra"
    );
    assert_eq!(s.ejected_by, Some(node("lax-1")));
    assert_eq!(s.observers.len(), 2);
    assert_eq!(s.home_region, Some(region("fra")));
    let fra_health = s
        .regions
        .iter()
        .find(|h| h.region == region("fra"))
        .unwrap();
    let m = &fra_health.models[0];
    assert!((m.latency_ewma_ms - 100.0).abs() < 1e-9);
    assert!((m.successes - 10.0).abs() < 1e-9);
    assert_eq!(m.p50_ms, Some(100));
    let offers = snap.offers(Pipeline::Llm, "m");
    assert_eq!(offers.len(), 1);
    let fra_idx = snap.region_index(&region("fra")).unwrap();
    let lax_idx = snap.region_index(&region("lax")).unwrap();
    assert!((offers[0].by_region[fra_idx].latency_ms - 100.0).abs() < 1e-9);
    assert!((offers[0].by_region[lax_idx].latency_ms - 300.0).abs() < 1e-9);
    assert!((offers[0].failures - 1.0).abs() < 1e-9);
    assert!(snap.offers(Pipeline::Llm, "other").is_empty());
    assert!(snap.offers(Pipeline::TextToImage, "m").is_empty());
}

#[test]
fn hostile_ejection_is_capped() {
    let mut v = view("fra-1", "fra");
    let mut r = ObservationRecord::new(orch(1), node("evil"), region("fra"));
    r.version = Hlc {
        wall_ms: NOW,
        counter: 0,
        node: 3,
    };
    r.ejected_until_ms = u64::MAX;
    v.merge(r, NOW).unwrap();
    let snap = v.snapshot(NOW);
    assert_eq!(
        snap.orchestrators()[0].ejected_until_ms,
        NOW + MAX_HONORED_EJECTION_MS
    );
}

/// Which of `fra-1`, `fra-2` and `lax-1` (each having probed orchestrator 1)
/// treat it as ejected after `fra-1` failed once on it with `class` (enough
/// to eject an unreachable one) and the others merged its record.
fn ejected_after_one_fra_failure(class: ErrorClass) -> [bool; 3] {
    let mut views = [
        view("fra-1", "fra"),
        view("fra-2", "fra"),
        view("lax-1", "lax"),
    ];
    for v in &mut views[1..] {
        v.local_probe(&orch(1), 5, NOW).unwrap();
    }
    let policy = crate::route::EjectionPolicy::default();
    views[0]
        .local_failure(&orch(1), Pipeline::Llm, "m", class, &policy, NOW)
        .unwrap();
    let record = views[0].local_record(&orch(1)).unwrap().clone();
    assert!(record.is_ejected(NOW + 1), "{class:?} ejects at once");
    for v in &mut views[1..] {
        v.merge(record.clone(), NOW).unwrap();
    }
    views.map(|v| v.snapshot(NOW + 1).orchestrators()[0].ejected_until_ms > NOW + 1)
}

#[test]
fn timeouts_eject_in_their_region_only_refusal_everywhere() {
    // A connect timeout from fra may be a cut fra–lax path: lax keeps its
    // orchestrator, fra's other nodes stop using it.
    assert_eq!(
        ejected_after_one_fra_failure(ErrorClass::ConnectTimeout),
        [true, true, false]
    );
    // So may no answer in time: a slow or lossy path from fra.
    assert_eq!(
        ejected_after_one_fra_failure(ErrorClass::Timeout),
        [true, true, false]
    );
    // Connection refused: the process is gone, for every region.
    assert_eq!(
        ejected_after_one_fra_failure(ErrorClass::Connect),
        [true, true, true]
    );
}

#[test]
fn blocklist_set_anywhere_applies_everywhere_and_add_wins() {
    let mut a = view("fra-1", "fra");
    let mut b = view("lax-1", "lax");
    a.block(orch(1)).unwrap();
    assert!(a.take_blocklist_dirty());
    let bytes = a.encode_blocklist().unwrap();
    b.merge_blocklist(View::decode_blocklist(&bytes).unwrap())
        .unwrap();
    assert!(b.is_blocked(&orch(1)));
    assert!(b.snapshot(NOW).is_blocked(&orch(1)));

    // Concurrent: b unblocks, a blocks again (new add): add wins.
    b.unblock(&orch(1));
    a.unblock(&orch(1));
    a.block(orch(1)).unwrap();
    let (a_state, b_state) = (a.blocklist().clone(), b.blocklist().clone());
    a.merge_blocklist(b_state).unwrap();
    b.merge_blocklist(a_state).unwrap();
    assert_eq!(a.blocked(), vec![orch(1)]);
    assert_eq!(b.blocked(), vec![orch(1)]);

    assert!(View::decode_blocklist(&[]).is_err());
    assert!(View::decode_blocklist(&[7]).is_err());
}

// ---- property tests: CRDT laws and convergence ----

const OBSERVERS: [(&str, &str); 4] = [
    ("o-fra-1", "fra"),
    ("o-fra-2", "fra"),
    ("o-lax-1", "lax"),
    ("o-sin-1", "sin"),
];

fn arb_record() -> impl Strategy<Value = ObservationRecord> {
    (
        0..4usize,
        0..OBSERVERS.len(),
        0..20u64,
        0..3u32,
        0..4u32,
        0..3u32,
        any::<bool>(),
        1..5_000u32,
    )
        .prop_map(
            |(o, w, wall, counter, in_flight, successes, with_info, latency)| {
                let (name, region_name) = OBSERVERS[w];
                let mut r = ObservationRecord::new(orch(o), node(name), region(region_name));
                r.version = Hlc {
                    wall_ms: NOW - 1_000 + wall,
                    counter,
                    node: w as u64,
                };
                r.in_flight = in_flight;
                for _ in 0..successes {
                    r.record_success(Pipeline::Llm, "m", latency, NOW - 500);
                }
                if with_info {
                    r.record_info(info(o), NOW - 1_000 + wall);
                }
                if in_flight == 3 {
                    r.eject(NOW - 100, 1_000, 60_000);
                }
                r
            },
        )
}

fn replica(i: usize) -> View {
    view(&format!("replica-{i}"), "fra")
}

fn merged(records: &[ObservationRecord], i: usize) -> View {
    let mut v = replica(i);
    for r in records {
        v.merge(r.clone(), NOW).unwrap();
    }
    v
}

proptest! {
    #[test]
    fn merge_is_commutative(records in proptest::collection::vec(arb_record(), 0..20)) {
        let forward = merged(&records, 0);
        let reversed: Vec<_> = records.iter().rev().cloned().collect();
        let backward = merged(&reversed, 1);
        prop_assert_eq!(state(&forward), state(&backward));
        prop_assert_eq!(forward.snapshot(NOW), backward.snapshot(NOW));
    }

    #[test]
    fn merge_is_associative_and_idempotent(
        a in proptest::collection::vec(arb_record(), 0..10),
        b in proptest::collection::vec(arb_record(), 0..10),
        c in proptest::collection::vec(arb_record(), 0..10),
    ) {
        let (va, vb, vc) = (merged(&a, 0), merged(&b, 1), merged(&c, 2));
        // (a ⊔ b) ⊔ c
        let mut left = va.clone();
        left.merge_view(&vb, NOW);
        left.merge_view(&vc, NOW);
        // a ⊔ (b ⊔ c)
        let mut bc = vb.clone();
        bc.merge_view(&vc, NOW);
        let mut right = va.clone();
        right.merge_view(&bc, NOW);
        prop_assert_eq!(state(&left), state(&right));
        // a ⊔ a = a
        let mut twice = va.clone();
        prop_assert_eq!(twice.merge_view(&va, NOW), 0);
        prop_assert_eq!(state(&twice), state(&va));
    }

    #[test]
    fn replicas_converge_despite_loss_duplication_and_reordering(
        records in proptest::collection::vec(arb_record(), 1..30),
        deliveries in proptest::collection::vec((0..3usize, 0..30usize), 0..120),
    ) {
        let mut replicas: Vec<View> = (0..3).map(replica).collect();
        // Each record originates at one replica; the others may get it any
        // number of times (0 = lost), in any order.
        for (i, r) in records.iter().enumerate() {
            replicas[i % 3].merge(r.clone(), NOW).unwrap();
        }
        for (to, which) in deliveries {
            if let Some(r) = records.get(which) {
                replicas[to].merge(r.clone(), NOW).unwrap();
            }
        }
        // Final full exchange.
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    let other = replicas[j].clone();
                    replicas[i].merge_view(&other, NOW);
                }
            }
        }
        let expected = merged(&records, 9);
        for v in &replicas {
            prop_assert_eq!(state(v), state(&expected));
            prop_assert_eq!(v.snapshot(NOW), expected.snapshot(NOW));
            let encoded: Vec<Vec<u8>> = v.records().map(|r| r.encode().unwrap()).collect();
            let want: Vec<Vec<u8>> = expected.records().map(|r| r.encode().unwrap()).collect();
            prop_assert_eq!(encoded, want);
        }
    }

    #[test]
    fn blocklist_converges(
        ops in proptest::collection::vec((0..3usize, 0..4usize, any::<bool>(), proptest::option::of(0..3usize)), 0..40),
    ) {
        let mut replicas: Vec<View> = (0..3).map(replica).collect();
        for (at, o, block, gossip_to) in ops {
            if block {
                replicas[at].block(orch(o)).unwrap();
            } else {
                replicas[at].unblock(&orch(o));
            }
            if let Some(to) = gossip_to {
                let state = replicas[at].blocklist().clone();
                replicas[to].merge_blocklist(state).unwrap();
            }
        }
        for _ in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let bytes = replicas[j].encode_blocklist().unwrap();
                    let state = View::decode_blocklist(&bytes).unwrap();
                    replicas[i].merge_blocklist(state).unwrap();
                }
            }
        }
        prop_assert_eq!(replicas[0].blocked(), replicas[1].blocked());
        prop_assert_eq!(replicas[1].blocked(), replicas[2].blocked());
        prop_assert_eq!(replicas[0].blocklist(), replicas[2].blocklist());
    }

    #[test]
    fn blocklist_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = vec![BLOCKLIST_FORMAT_VERSION];
        framed.extend_from_slice(&bytes);
        if let Ok(list) = View::decode_blocklist(&framed) {
            let _ = replica(0).merge_blocklist(list);
        }
    }
}

/// The view reuses unchanged orchestrators' summaries between snapshots;
/// every change (local write, merge, expiry, blocklist, new region) must
/// still show, exactly as a snapshot built from scratch at that time.
#[test]
fn cached_snapshots_equal_fresh_ones_after_every_kind_of_change() {
    let mut v = view("fra-1", "fra");
    let fresh = |v: &View, now: u64| {
        ViewSnapshot::from_records(now, Some(v.local()), v.records(), v.blocked())
    };
    for i in 0..4 {
        v.local_info(&orch(i), info(i), Some(10), NOW).unwrap();
    }
    assert_eq!(v.snapshot(NOW), fresh(&v, NOW));

    // A local outcome on one orchestrator.
    v.local_success(&orch(2), Pipeline::Llm, "m", 250, NOW)
        .unwrap();
    let snap = v.snapshot(NOW);
    assert_eq!(snap, fresh(&v, NOW));
    assert!(snap.offers(Pipeline::Llm, "m")[2].by_region[0].samples > 0.0);

    // A peer's record from a new region (every summary's region list grows).
    let mut peer = view("lax-1", "lax");
    peer.local_info(&orch(1), info(1), Some(90), NOW).unwrap();
    peer.local_in_flight(&orch(1), 3, NOW).unwrap();
    v.merge(peer.local_record(&orch(1)).unwrap().clone(), NOW)
        .unwrap();
    let snap = v.snapshot(NOW);
    assert_eq!(snap, fresh(&v, NOW));
    assert_eq!(snap.regions().len(), 2);
    assert_eq!(snap.orchestrators()[1].in_flight_remote, 3);

    // The blocklist.
    v.block(orch(3)).unwrap();
    assert!(v.snapshot(NOW).is_blocked(&orch(3)));
    assert_eq!(v.snapshot(NOW), fresh(&v, NOW));

    // Expiry removes the peer's record (and its region).
    let later = NOW + 60_000;
    assert_eq!(v.expire(later, 30_000), 1);
    let snap = v.snapshot(later);
    assert_eq!(snap, fresh(&v, later));
    assert_eq!(snap.regions().len(), 1);
    assert_eq!(snap.orchestrators()[1].in_flight_remote, 0);

    // Unchanged summaries are reused for at most SUMMARY_REUSE_MS: after
    // that the decayed counts are those of a fresh build again.
    let much_later = later + SUMMARY_REUSE_MS;
    assert_eq!(v.snapshot(much_later), fresh(&v, much_later));
}
