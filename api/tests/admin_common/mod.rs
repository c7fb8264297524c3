//! Fakes shared by the admin tests: a three-region cluster with four
//! orchestrators (one healthy, one ejected, one blocked, one degraded), built
//! from real mesh-core observation records.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::admin::{
    AdminError, ClusterAdmin, ClusterReport, Event, EventKind, EventRing, MemberRow, MemberState,
};
use api::metrics::{
    Direction, FailoverKind, ForwardOutcome, JobOutcome, JobSample, RetryReason, TenantLimit,
};
use api::{AdminState, Metrics};
use mesh_core::fixture::{OfferSpec, orchestrator_info};
use mesh_core::hlc::Hlc;
use mesh_core::{
    ErrorClass, NodeId, ObservationRecord, OrchestratorId, Pipeline, RegionId, ViewSnapshot,
    WeiPrice,
};

pub const NOW_MS: u64 = 1_800_000_000_000;
pub const ORCH_OK: &str = "https://orch-fra-a.example:8935";
pub const ORCH_EJECTED: &str = "https://orch-lax-b.example:8935";
pub const ORCH_BLOCKED: &str = "https://orch-sin-c.example:8935";
pub const ORCH_DEGRADED: &str = "https://orch-fra-d.example:8935";
/// `block` of this one answers "blocklist full".
pub const ORCH_FULL: &str = "https://full.example:8935";
pub const IMAGE_MODEL: &str = "stabilityai/sdxl-turbo";
pub const LLM_MODEL: &str = "meta-llama/llama-3.1-8B-Instruct";
pub const REGIONS: [&str; 3] = ["fra", "lax", "sin"];
pub const NODES: [&str; 5] = ["fra-1", "fra-2", "lax-1", "lax-2", "sin-1"];

pub fn orch(id: &str) -> OrchestratorId {
    OrchestratorId::parse(id).expect("valid orchestrator id")
}

pub fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

pub fn region(name: &str) -> RegionId {
    RegionId::new(name).expect("valid region")
}

fn record(orchestrator: &str, observer: &str, written_ms_ago: u64) -> ObservationRecord {
    let observer_id = node(observer);
    let mut r = ObservationRecord::new(
        orch(orchestrator),
        observer_id.clone(),
        region(&observer[..3]),
    );
    r.version = Hlc {
        wall_ms: NOW_MS - written_ms_ago,
        counter: 0,
        node: Hlc::node_tag(&observer_id),
    };
    r
}

fn image_offer(warm: bool, gpu: &str) -> OfferSpec {
    OfferSpec {
        pipeline: Pipeline::TextToImage,
        model_id: IMAGE_MODEL.into(),
        warm,
        capacity: 4,
        price: Some(WeiPrice::new(4_768, 1).expect("price")),
        gpu: Some(gpu.into()),
    }
}

fn llm_offer() -> OfferSpec {
    OfferSpec {
        pipeline: Pipeline::Llm,
        model_id: LLM_MODEL.into(),
        warm: true,
        capacity: 8,
        price: Some(WeiPrice::new(90, 1).expect("price")),
        gpu: Some("NVIDIA A100 80GB".into()),
    }
}

/// Every record of the fixture cluster.
pub fn records() -> Vec<ObservationRecord> {
    let mut out = Vec::new();
    let t2i = Pipeline::TextToImage;

    let info_ok = orchestrator_info(
        &orch(ORCH_OK),
        &[image_offer(true, "NVIDIA GeForce RTX 4090"), llm_offer()],
    );
    for (observer, latency, rtt, age) in [
        ("fra-1", 420, 4, 300),
        ("fra-2", 460, 5, 900),
        ("lax-1", 610, 145, 1_200),
    ] {
        let mut r = record(ORCH_OK, observer, age);
        r.record_info(info_ok.clone(), NOW_MS - 2_000);
        r.record_probe(rtt, NOW_MS - 2_000);
        for i in 0..12 {
            r.record_success(t2i, IMAGE_MODEL, latency + i * 10, NOW_MS - 1_000);
        }
        r.record_success(Pipeline::Llm, LLM_MODEL, 180, NOW_MS - 1_000);
        out.push(r);
    }

    let info_ejected = orchestrator_info(&orch(ORCH_EJECTED), &[llm_offer()]);
    for (observer, age) in [("lax-1", 400), ("lax-2", 700)] {
        let mut r = record(ORCH_EJECTED, observer, age);
        r.record_info(info_ejected.clone(), NOW_MS - 3_000);
        r.record_probe(3, NOW_MS - 3_000);
        r.record_success(Pipeline::Llm, LLM_MODEL, 240, NOW_MS - 5_000);
        if observer == "lax-1" {
            // Refused: an ejection every region honours (a timeout's binds
            // only lax, and the view is fra-1's).
            r.record_failure(Pipeline::Llm, LLM_MODEL, ErrorClass::Connect, NOW_MS - 500);
            r.eject(NOW_MS - 500, 20_000, 60_000);
        }
        out.push(r);
    }

    let info_blocked = orchestrator_info(&orch(ORCH_BLOCKED), &[image_offer(false, "NVIDIA L40S")]);
    let mut r = record(ORCH_BLOCKED, "sin-1", 2_500);
    r.record_info(info_blocked, NOW_MS - 4_000);
    r.record_probe(6, NOW_MS - 4_000);
    out.push(r);

    let info_degraded = orchestrator_info(
        &orch(ORCH_DEGRADED),
        &[image_offer(true, "NVIDIA GeForce RTX 3090")],
    );
    let mut r = record(ORCH_DEGRADED, "fra-1", 600);
    r.record_info(info_degraded, NOW_MS - 2_000);
    r.record_probe(9, NOW_MS - 2_000);
    r.record_success(t2i, IMAGE_MODEL, 1_900, NOW_MS - 3_000);
    for _ in 0..4 {
        r.record_failure(t2i, IMAGE_MODEL, ErrorClass::Server, NOW_MS - 1_500);
    }
    out.push(r);
    out
}

/// The fixture's view snapshot, taken at `NOW_MS`, as `fra-1` sees it.
pub fn snapshot() -> ViewSnapshot {
    let records = records();
    ViewSnapshot::from_records(
        NOW_MS,
        Some(&node("fra-1")),
        records.iter(),
        vec![orch(ORCH_BLOCKED)],
    )
}

fn member(
    name: &str,
    state: MemberState,
    heard: Option<u64>,
    load: u64,
    is_self: bool,
) -> MemberRow {
    MemberRow {
        node: node(name),
        region: Some(region(&name[..3])),
        state,
        last_heard_ms_ago: heard,
        generation: NOW_MS - 3_600_000,
        version: Some("0.1.0".into()),
        api_url: Some(format!("https://{name}.gatemesh.example:8443")),
        admin_url: Some(format!("http://127.0.0.1:9{}", &name[4..])),
        load: Some(load),
        routing_config: Some("5f3a9c0e21b7d4a8".into()),
        is_self,
    }
}

pub fn cluster_report() -> ClusterReport {
    ClusterReport {
        node: node("fra-1"),
        region: region("fra"),
        members: vec![
            member("fra-1", MemberState::Alive, None, 3, true),
            member("fra-2", MemberState::Alive, Some(120), 5, false),
            member("lax-1", MemberState::Alive, Some(210), 2, false),
            member("lax-2", MemberState::Suspect, Some(1_400), 0, false),
            member("sin-1", MemberState::Dead, Some(9_800), 0, false),
        ],
    }
}

/// A `ClusterAdmin` over the fixture that records blocklist calls.
pub struct FakeCluster {
    pub snapshot: ViewSnapshot,
    pub report: ClusterReport,
    pub blocked: Mutex<Vec<OrchestratorId>>,
    pub calls: Mutex<Vec<String>>,
    /// `None`: the real clock.
    pub now_ms: Option<u64>,
}

impl FakeCluster {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            snapshot: snapshot(),
            report: cluster_report(),
            blocked: Mutex::new(vec![orch(ORCH_BLOCKED)]),
            calls: Mutex::new(Vec::new()),
            now_ms: Some(NOW_MS),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

impl ClusterAdmin for FakeCluster {
    fn cluster(&self) -> ClusterReport {
        self.report.clone()
    }

    fn view(&self) -> ViewSnapshot {
        self.snapshot.clone()
    }

    fn block(&self, orchestrator: OrchestratorId) -> Result<(), AdminError> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("block {orchestrator}"));
        if orchestrator == orch(ORCH_FULL) {
            return Err(AdminError::BlocklistFull);
        }
        let mut blocked = self.blocked.lock().expect("lock");
        if !blocked.contains(&orchestrator) {
            blocked.push(orchestrator);
            blocked.sort();
        }
        Ok(())
    }

    fn unblock(&self, orchestrator: &OrchestratorId) -> Result<(), AdminError> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("unblock {orchestrator}"));
        self.blocked
            .lock()
            .expect("lock")
            .retain(|o| o != orchestrator);
        Ok(())
    }

    fn blocklist(&self) -> Vec<OrchestratorId> {
        self.blocked.lock().expect("lock").clone()
    }

    fn now_ms(&self) -> u64 {
        match self.now_ms {
            Some(now) => now,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// A few events of every interesting kind.
pub fn events() -> Arc<EventRing> {
    let ring = EventRing::new(64);
    let push = |ago: u64, kind, node_name: Option<&str>, orchestrator: Option<&str>, msg: &str| {
        ring.push(Event {
            at_ms: NOW_MS - ago,
            kind,
            node: node_name.map(node),
            region: node_name.map(|n| region(&n[..3])),
            orchestrator: orchestrator.map(orch),
            message: msg.to_owned(),
        });
    };
    push(
        60_000,
        EventKind::MemberJoined,
        Some("lax-2"),
        None,
        "lax-2 joined",
    );
    push(
        9_800,
        EventKind::MemberDead,
        Some("sin-1"),
        None,
        "sin-1 declared dead",
    );
    push(
        2_000,
        EventKind::Blocked,
        Some("fra-1"),
        Some(ORCH_BLOCKED),
        "blocked by operator",
    );
    push(
        500,
        EventKind::Ejected,
        Some("lax-1"),
        Some(ORCH_EJECTED),
        "ejected after a timeout",
    );
    push(
        450,
        EventKind::FailoverCrossRegion,
        Some("lax-1"),
        Some(ORCH_OK),
        "llm job moved from lax to fra",
    );
    Arc::new(ring)
}

/// One sample of every metric.
pub fn record_every_metric(metrics: &Metrics) {
    metrics.usage().record_batch(2, 600, 0.001);
    metrics.usage().record_durable("acme", "ok", 2_500_000);
    metrics
        .usage()
        .record_append_error(api::metrics::usage::AppendError::QueueFull);
    metrics.usage().record_sink_push(true, 2);
    let fra = region("fra");
    let ok = orch(ORCH_OK);
    metrics.record_job(&JobSample {
        pipeline: Pipeline::TextToImage,
        model: IMAGE_MODEL,
        region: Some(&fra),
        orchestrator: Some(&ok),
        outcome: JobOutcome::Success,
        duration: Duration::from_millis(640),
        first_byte: Some(Duration::from_millis(90)),
        attempts: 2,
    });
    metrics.record_job(&JobSample {
        pipeline: Pipeline::Llm,
        model: LLM_MODEL,
        region: Some(&fra),
        orchestrator: None,
        outcome: JobOutcome::NoOrchestrator,
        duration: Duration::from_millis(3),
        first_byte: None,
        attempts: 0,
    });
    drop(metrics.job_started());
    let _running = std::mem::ManuallyDrop::new(metrics.job_started());
    metrics.record_retry(RetryReason::Capacity);
    metrics.record_failover(FailoverKind::CrossRegion);
    metrics.record_routing_ratio(130.0, 100.0);
    metrics.record_filtered(&mesh_core::route::FilterCounts {
        offered: 3,
        over_price: 1,
        ..Default::default()
    });
    metrics.set_price_feed(Some(3012.45), Some(4.0));
    metrics.record_price_feed_failure();
    metrics.record_ejection(&orch(ORCH_EJECTED));
    metrics.record_orchestrator_failure(&orch(ORCH_DEGRADED), NOW_MS - 1_500);
    metrics.record_gossip_bytes(Direction::Out, 1_200);
    metrics.record_gossip_bytes(Direction::In, 900);
    metrics.record_forward(Direction::Out, ForwardOutcome::Success);
    metrics.record_load_announcements(api::metrics::LoadEvent::Sent, 3);
    metrics.record_load_bytes(Direction::In, 120);
    metrics.record_tenant_request("acme");
    metrics.record_tenant_rejection("acme", TenantLimit::RequestsPerMinute);
    metrics.set_tenant_usage_ratio("acme", TenantLimit::RequestsPerMinute, 0.5);
    metrics.record_config_reload(true);
    metrics.record_http("/text-to-image", 200);
    // A flap: ejected at one refresh, usable at the next.
    let view = snapshot();
    metrics.refresh_from_view(&view, NOW_MS);
    metrics.refresh_from_view(&view, NOW_MS + 60_000);
    metrics.refresh_from_view(&view, NOW_MS);
    metrics.refresh_from_cluster(&cluster_report());
}

pub fn admin_state(cluster: Arc<FakeCluster>, token: Option<&str>) -> AdminState {
    AdminState {
        cluster,
        events: events(),
        metrics: Metrics::new(),
        token: token.map(str::to_owned),
        offer: None,
        usage: None,
    }
}
