//! One pick over 50 orchestrators (target: p99 ≤ 5 µs in release).
//!
//! The snapshot is what a 3-region × 3-node cluster builds: 50 orchestrators,
//! each observed by all 9 nodes, offering two models of two pipelines with
//! prices and GPUs; the picking node has jobs in flight on 10 of them.
//! Besides criterion's mean, the bench prints p50/p99 of 200,000 individually
//! timed picks.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::fixture::{OfferSpec, orchestrator_info};
use mesh_core::{
    Hlc, JobRequirements, LocalState, NodeId, ObservationRecord, OrchestratorId, Pipeline,
    RegionId, ViewSnapshot, WeiPrice, pick,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_800_000_000_000;
const MODEL: &str = "meta-llama/llama-3.1-8B-Instruct";
const REGIONS: [&str; 3] = ["fra", "lax", "sin"];

fn setup() -> (ViewSnapshot, LocalState, JobRequirements) {
    let mut records = Vec::new();
    for o in 0..50u32 {
        let id = OrchestratorId::parse(&format!("orch-{o:02}.example.net:8935")).unwrap();
        let home = o as usize % 3;
        let offers = [
            OfferSpec {
                price: Some(WeiPrice::new(1_000 + i64::from(o) * 10, 1).unwrap()),
                gpu: Some(
                    if o % 2 == 0 {
                        "NVIDIA GeForce RTX 4090"
                    } else {
                        "NVIDIA A100"
                    }
                    .into(),
                ),
                warm: o % 10 != 0,
                ..OfferSpec::warm(Pipeline::Llm, MODEL)
            },
            OfferSpec::warm(Pipeline::Llm, "mistralai/Mistral-7B-Instruct-v0.3"),
            OfferSpec::warm(Pipeline::TextToImage, "stabilityai/sdxl-turbo"),
        ];
        let info = orchestrator_info(&id, &offers);
        for (r, region) in REGIONS.iter().enumerate() {
            let rtt = if r == home { 5 } else { 80 + 40 * r as u32 };
            for n in 0..3 {
                let observer = NodeId::new(format!("{region}-{n}")).unwrap();
                let mut rec =
                    ObservationRecord::new(id.clone(), observer, RegionId::new(*region).unwrap());
                rec.version = Hlc {
                    wall_ms: NOW - 500,
                    counter: 0,
                    node: (r * 3 + n) as u64,
                };
                rec.record_info(info.clone(), NOW - 60_000);
                rec.record_probe(rtt, NOW - 1_000);
                for k in 0..30 {
                    let latency = 200 + rtt + (o * 13 + k) % 50;
                    rec.record_success(
                        Pipeline::Llm,
                        MODEL,
                        latency,
                        NOW - 30_000 + u64::from(k) * 1_000,
                    );
                }
                rec.record_success(
                    Pipeline::TextToImage,
                    "stabilityai/sdxl-turbo",
                    900,
                    NOW - 2_000,
                );
                rec.set_in_flight(o % 3);
                records.push(rec);
            }
        }
    }
    let blocked = vec![OrchestratorId::parse("orch-07.example.net:8935").unwrap()];
    let snapshot =
        ViewSnapshot::from_records(NOW, Some(&NodeId::new("fra-0").unwrap()), &records, blocked);
    let mut local = LocalState::new(RegionId::new("fra").unwrap(), NOW);
    for o in 0..10 {
        let id = OrchestratorId::parse(&format!("orch-{:02}.example.net:8935", o * 5)).unwrap();
        local.in_flight.insert(id, 1);
    }
    for region in REGIONS {
        let nodes = (0..3)
            .map(|n| NodeId::new(format!("{region}-{n}")).unwrap())
            .collect();
        local
            .nodes_by_region
            .insert(RegionId::new(region).unwrap(), nodes);
    }
    let mut job = JobRequirements::new(Pipeline::Llm, MODEL);
    job.max_price = Some(WeiPrice::new(1_400, 1).unwrap());
    (snapshot, local, job)
}

fn percentiles(snapshot: &ViewSnapshot, local: &LocalState, job: &JobRequirements) {
    let mut rng = StdRng::seed_from_u64(1);
    // PICK_SAMPLES shortens the run (e.g. under valgrind or perf).
    let samples: usize = std::env::var("PICK_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut ns: Vec<u64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            black_box(pick(job, snapshot, local, &mut rng));
            start.elapsed().as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    // The machine is shared: the fastest of many 1,000-pick batches
    // approximates the uncontended cost per pick.
    let best_batch_ns = (0..(samples / 1_000).max(1))
        .map(|_| {
            let start = Instant::now();
            for _ in 0..1_000 {
                black_box(pick(job, snapshot, local, &mut rng));
            }
            start.elapsed().as_nanos() as u64 / 1_000
        })
        .min()
        .unwrap_or(0);
    println!("pick over 50 orchestrators: best 1,000-pick batch {best_batch_ns} ns per pick");
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    println!(
        "pick over 50 orchestrators: p50 {} ns, p99 {} ns, p99.9 {} ns (timer overhead included)",
        at(0.50),
        at(0.99),
        at(0.999)
    );
}

fn bench_pick(c: &mut Criterion) {
    let (snapshot, local, job) = setup();
    let plan = pick(&job, &snapshot, &local, &mut StdRng::seed_from_u64(0));
    assert!(!plan.attempts.is_empty());
    println!("{plan}");
    percentiles(&snapshot, &local, &job);
    let mut rng = StdRng::seed_from_u64(2);
    c.bench_function("pick_50_orchestrators", |b| {
        b.iter(|| {
            pick(
                black_box(&job),
                black_box(&snapshot),
                black_box(&local),
                &mut rng,
            )
        })
    });
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
