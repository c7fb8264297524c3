use proptest::prelude::*;

use super::*;

fn key(model: &str) -> PerfKey {
    PerfKey {
        pipeline: Pipeline::TextToImage,
        model_id: model.to_owned(),
    }
}

fn ok(latency_ms: u32) -> JobResult {
    JobResult::Success { latency_ms }
}

#[test]
fn every_latency_lands_in_the_first_bucket_whose_edge_holds_it() {
    for latency in (0..5_000u32).chain([262_143, 262_144, 262_145, u32::MAX]) {
        let bucket = bucket_of(latency);
        if bucket < LATENCY_BUCKETS - 1 {
            assert!(
                bucket_upper_edge_ms(bucket) >= latency,
                "{latency} in {bucket}"
            );
        } else {
            assert!(latency > 262_144, "{latency} overflowed");
        }
        if bucket > 0 {
            assert!(
                bucket_upper_edge_ms(bucket - 1) < latency,
                "{latency} in {bucket}"
            );
        }
    }
    // Resolution: neighbouring edges above 10 ms differ by at most 2^(1/4) + 1 ms.
    for i in 20..LATENCY_BUCKETS - 2 {
        let (a, b) = (bucket_upper_edge_ms(i), bucket_upper_edge_ms(i + 1));
        assert!(f64::from(b) <= f64::from(a) * 1.19 + 1.0, "{a} → {b}");
    }
}

#[test]
fn percentiles_are_the_upper_edge_of_the_bucket_holding_them() {
    let mut table = PerfTable::default();
    for latency in 1..=100 {
        table.record(key("m"), ok(latency));
    }
    table.record(key("m"), JobResult::Failure);
    let (_, stats) = table.pairs().next().expect("one pair");
    assert_eq!(
        (stats.successes, stats.failures, stats.requests()),
        (100, 1, 101)
    );
    assert_eq!(stats.success_rate_ppm(), Some(990_099));
    let p50 = stats.quantile_ms(500).expect("samples");
    let p95 = stats.quantile_ms(950).expect("samples");
    assert!((50..=60).contains(&p50), "p50 {p50}");
    assert!((95..=114).contains(&p95), "p95 {p95}");
    assert_eq!(stats.quantile_ms(0), Some(1));
    assert!(PairStats::default().quantile_ms(500).is_none());
    assert!(PairStats::default().success_rate_ppm().is_none());
}

#[test]
fn the_window_slides_in_slices_and_forgets_old_jobs() {
    let window_ms = 12_000;
    let mut recorder = PerfRecorder::new(window_ms);
    assert_eq!(recorder.slice_ms(), 1_000);
    let t0 = 1_700_000_000_000;
    recorder.record(t0, key("m"), ok(10));
    recorder.record(t0 + 5_000, key("m"), JobResult::Failure);
    let window = recorder.window(t0 + 5_000);
    assert_eq!(window.start_ms, t0 + 5_000 - 11_000);
    assert_eq!(window.end_ms, t0 + 5_000);
    let (_, stats) = window.table.pairs().next().expect("a pair");
    assert_eq!((stats.successes, stats.failures), (1, 1));
    // 12 s later the first job's slice is out of the window, the second is in.
    let later = recorder.window(t0 + 12_000);
    let (_, stats) = later.table.pairs().next().expect("a pair");
    assert_eq!((stats.successes, stats.failures), (0, 1));
    recorder.expire(t0 + 30_000);
    assert!(recorder.window(t0 + 30_000).table.is_empty());
    assert!(recorder.slices.is_empty());
}

#[test]
fn the_ring_never_holds_more_slices_than_the_window() {
    let mut recorder = PerfRecorder::new(60_000);
    for second in 0..1_000u64 {
        recorder.record(second * 1_000, key("m"), ok(5));
        assert!(recorder.slices.len() as u64 <= SLICES_PER_WINDOW);
    }
}

#[test]
fn junk_models_cannot_crowd_out_served_ones() {
    let mut table = PerfTable::default();
    for i in 0..MAX_PAIRS {
        table.record(key(&format!("junk-{i}")), JobResult::Failure);
    }
    table.record(key("junk-extra"), JobResult::Failure);
    assert_eq!(table.overflow, 1);
    table.record(key("real"), ok(20));
    assert_eq!(table.pairs().count(), MAX_PAIRS);
    assert!(
        table
            .pairs()
            .any(|(k, s)| k.model_id == "real" && s.successes == 1)
    );
    table.record(key(&"x".repeat(MAX_MODEL_ID_LEN + 1)), ok(1));
    assert_eq!(table.overflow, 2);
}

#[test]
fn records_round_trip_and_are_trimmed_to_their_budget() {
    let mut recorder = PerfRecorder::new(900_000);
    let now = 1_700_000_000_000;
    for i in 0..MAX_PAIRS {
        for latency in [3, 30, 300, 3_000, 30_000] {
            recorder.record(now, key(&format!("model-{i:02}")), ok(latency + i as u32));
        }
    }
    let window = recorder.window(now);
    let bytes = window.encode(16 * 1024).expect("fits");
    assert_eq!(PerfWindow::decode(&bytes).expect("decodes"), window);
    let small = window.encode(400).expect("trimmed");
    assert!(small.len() <= 400);
    let trimmed = PerfWindow::decode(&small).expect("decodes");
    assert!(trimmed.table.pairs().count() < MAX_PAIRS);
    assert!(trimmed.table.overflow >= 5);
    assert!(PerfWindow::decode(&[9, 9, 9]).is_err());
}

fn results() -> impl Strategy<Value = Vec<(u8, Option<u32>)>> {
    prop::collection::vec((0u8..6, prop::option::of(0u32..400_000)), 0..60)
}

fn window_of(jobs: &[(u8, Option<u32>)], start_ms: u64) -> PerfWindow {
    let mut recorder = PerfRecorder::new(60_000);
    for (i, (model, latency)) in jobs.iter().enumerate() {
        let result = latency.map_or(JobResult::Failure, |latency_ms| JobResult::Success {
            latency_ms,
        });
        recorder.record(start_ms + i as u64, key(&format!("m{model}")), result);
    }
    recorder.window(start_ms + 1_000)
}

proptest! {
    #[test]
    fn merging_is_commutative_associative_and_equals_one_recorder(
        a in results(), b in results(), c in results()
    ) {
        let t = 1_700_000_000_000;
        let (wa, wb, wc) = (window_of(&a, t), window_of(&b, t), window_of(&c, t));
        let mut ab = wa.clone();
        ab.merge(&wb);
        let mut ba = wb.clone();
        ba.merge(&wa);
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&wc);
        let mut bc = wb.clone();
        bc.merge(&wc);
        let mut a_bc = wa.clone();
        a_bc.merge(&bc);
        prop_assert_eq!(&ab_c, &a_bc);
        // Counts equal a single recorder that saw every job.
        let all: Vec<_> = a.iter().chain(&b).chain(&c).copied().collect();
        let one = window_of(&all, t);
        let total = |w: &PerfWindow| w.table.pairs().map(|(_, s)| s.requests()).sum::<u64>();
        prop_assert_eq!(total(&ab_c), total(&one));
        prop_assert_eq!(total(&one), all.len() as u64);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = PerfWindow::decode(&bytes);
    }
}
