//! Load announcements on loopback: delivery to every peer with the sender's
//! certificate identity, refusal of hostile frames, and the delivery latency
//! (`announce_load` → subscriber), printed with `--no-capture`.
//!
//! Reproduce the latency figures:
//! `cargo nextest run -p mesh --no-capture -E 'test(/^load::/) & test(latency)'`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mesh::endpoint::{ConnectionHandler, EndpointTiming, MeshEndpoint};
use mesh::frame::{self, Frame, MAX_LOAD_FRAME_BYTES};
use mesh::{LoadMessage, MemberState, Mesh, MeshConfig, MeshHandle, PeerIdentity};
use mesh_core::OrchestratorId;
use mesh_core::load::{LoadAnnouncement, MAX_LOAD_ANNOUNCEMENT_BYTES};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::common::{CONVERGE, Ca, loopback};

/// Announcements in the latency run.
const LATENCY_SAMPLES: u64 = 2_000;
/// Pace of the latency run (a busy node's job-change rate and more).
const LATENCY_PACE: Duration = Duration::from_millis(1);

async fn start(ca: &Ca, node: &str, seeds: &[SocketAddr]) -> MeshHandle {
    let config = MeshConfig {
        listen_addr: loopback(),
        seeds: seeds.iter().map(ToString::to_string).collect(),
        api_url: "https://127.0.0.1:8443".into(),
        ..MeshConfig::default()
    };
    Mesh::start(config, ca.identity(node, "fra"), std::future::pending())
        .await
        .unwrap()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < CONVERGE,
            "timed out after {CONVERGE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn all_alive(handle: &MeshHandle, nodes: &[&str]) -> bool {
    nodes.iter().all(|n| {
        handle
            .members()
            .iter()
            .any(|m| m.node.as_str() == *n && m.state == MemberState::Alive)
    })
}

async fn three_nodes(ca: &Ca) -> [MeshHandle; 3] {
    let a = start(ca, "a", &[]).await;
    let b = start(ca, "b", &[a.local_addr()]).await;
    let c = start(ca, "c", &[a.local_addr()]).await;
    let nodes = [a, b, c];
    for node in &nodes {
        wait_for("three alive members", || all_alive(node, &["a", "b", "c"])).await;
    }
    nodes
}

fn announcement(seq: u64, count: u32) -> Bytes {
    let orchestrator = OrchestratorId::parse("https://o1.example:8935").unwrap();
    let encoded = LoadAnnouncement {
        generation: 1,
        seq,
        complete: false,
        counts: vec![(orchestrator, count)],
    }
    .encode()
    .unwrap();
    Bytes::from(encoded)
}

async fn next_from(events: &mut broadcast::Receiver<LoadMessage>, from: &str) -> LoadMessage {
    tokio::time::timeout(CONVERGE, async {
        loop {
            let message = events.recv().await.unwrap();
            if message.from.as_str() == from {
                return message;
            }
        }
    })
    .await
    .expect("a load message in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_announcements_reach_every_peer_from_the_authenticated_sender() {
    let ca = Ca::new();
    let [a, b, c] = three_nodes(&ca).await;
    let mut on_b = b.subscribe_load();
    let mut on_c = c.subscribe_load();
    let mut on_a = a.subscribe_load();

    let bytes = announcement(1, 3);
    assert_eq!(a.announce_load(bytes.clone()).unwrap(), 2, "two peers");
    for events in [&mut on_b, &mut on_c] {
        let message = next_from(events, "a").await;
        assert_eq!(message.bytes, bytes);
        let decoded = LoadAnnouncement::decode(&message.bytes).unwrap();
        assert_eq!(decoded.counts[0].1, 3);
    }
    // The sender does not hear itself; b's reply reaches a.
    b.announce_load(announcement(1, 0)).unwrap();
    let message = next_from(&mut on_a, "b").await;
    assert_eq!(message.from.as_str(), "b");
    assert!(matches!(
        on_a.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));

    // A full table larger than the gossip frame limit still travels.
    let big = Bytes::from(vec![1u8; 200 * 1024]);
    a.announce_load(big.clone()).unwrap();
    assert_eq!(next_from(&mut on_b, "a").await.bytes.len(), big.len());
    // Over the announcement limit: refused before anything is sent.
    assert!(matches!(
        a.announce_load(Bytes::from(vec![0u8; MAX_LOAD_ANNOUNCEMENT_BYTES + 1])),
        Err(mesh::AnnounceError::TooLarge { .. })
    ));

    wait_for("send counters", || {
        let stats = a.stats();
        stats.load_sent_total >= 4 && stats.load_bytes_sent_total > big.len() as u64
    })
    .await;
    let stats = b.stats();
    assert!(stats.load_received_total >= 2, "{stats:?}");
    assert!(stats.load_bytes_received_total > big.len() as u64);
    assert_eq!(stats.load_rejected_total, 0);
    for node in [a, b, c] {
        node.abort();
    }
}

struct Ignore;

impl ConnectionHandler for Ignore {
    fn on_connection(&self, _connection: quinn::Connection, _peer: PeerIdentity) {}
}

async fn send_raw(connection: &quinn::Connection, bytes: &[u8]) {
    let mut uni = connection.open_uni().await.unwrap();
    // The receiver may stop the stream before it read everything.
    let _ = uni.write_all(bytes).await;
    let _ = uni.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_load_frames_are_refused_and_the_receiver_keeps_working() {
    let ca = Ca::new();
    let a = start(&ca, "a", &[]).await;
    let mut events = a.subscribe_load();
    let raw = MeshEndpoint::bind(
        loopback(),
        &ca.identity("raw", "fra"),
        EndpointTiming::default(),
    )
    .unwrap();
    raw.start(Arc::new(Ignore));
    let connection = raw.connection(a.local_addr()).await.unwrap();

    // Garbage content in a well-formed frame is delivered as it is (the
    // content is opaque to the mesh), from the certificate's identity, and
    // does not decode.
    let junk = frame::encode(&Frame::Load {
        bytes: b"\x01\xff\xff\xff\xff\xff".to_vec(),
    })
    .unwrap();
    send_raw(&connection, &junk).await;
    let message = next_from(&mut events, "raw").await;
    assert!(LoadAnnouncement::decode(&message.bytes).is_err());

    // An announcement over the limit inside a frame that fits: refused.
    let oversized = frame::encode(&Frame::Load {
        bytes: vec![0u8; MAX_LOAD_ANNOUNCEMENT_BYTES + 1],
    })
    .unwrap();
    assert!(oversized.len() - 4 <= MAX_LOAD_FRAME_BYTES);
    send_raw(&connection, &oversized).await;
    // A frame over the load frame limit: refused from its length prefix.
    let mut too_long = ((MAX_LOAD_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    too_long.extend_from_slice(&[frame::WIRE_VERSION, frame::LOAD_VARIANT_TAG, 0, 0]);
    send_raw(&connection, &too_long).await;
    // A large frame that claims to be gossip: refused after two bytes.
    let mut fake = ((200 * 1024) as u32).to_be_bytes().to_vec();
    fake.extend_from_slice(&[frame::WIRE_VERSION, 0, 1, 2, 3]);
    send_raw(&connection, &fake).await;
    // A Load tag followed by a malformed length.
    send_raw(
        &connection,
        &[
            0,
            0,
            0,
            4,
            frame::WIRE_VERSION,
            frame::LOAD_VARIANT_TAG,
            0xff,
            0xff,
        ],
    )
    .await;

    wait_for("hostile frames refused", || {
        let stats = a.stats();
        stats.load_rejected_total == 1 && stats.frames_rejected_total >= 4
    })
    .await;
    assert_eq!(a.stats().load_received_total, 1, "only the junk one");

    // The node still works: a real peer's announcement arrives.
    let b = start(&ca, "b", &[a.local_addr()]).await;
    wait_for("b alive on a", || all_alive(&a, &["b"])).await;
    wait_for("a alive on b", || all_alive(&b, &["a"])).await;
    b.announce_load(announcement(1, 2)).unwrap();
    let message = next_from(&mut events, "b").await;
    assert_eq!(
        LoadAnnouncement::decode(&message.bytes).unwrap().counts[0].1,
        2
    );
    raw.close();
    a.abort();
    b.abort();
}

/// `q`-quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_announcement_latency_on_loopback() {
    let ca = Ca::new();
    let [a, b, c] = three_nodes(&ca).await;
    let origin = Instant::now();
    let mut receivers = Vec::new();
    for node in [&b, &c] {
        let mut events = node.subscribe_load();
        receivers.push(tokio::spawn(async move {
            // (seq, receive time since `origin`)
            let mut got = Vec::with_capacity(LATENCY_SAMPLES as usize);
            while got.len() < LATENCY_SAMPLES as usize {
                let message = tokio::time::timeout(CONVERGE, events.recv())
                    .await
                    .expect("announcements keep arriving")
                    .expect("no lag at this rate");
                let seq = LoadAnnouncement::decode(&message.bytes).unwrap().seq;
                got.push((seq, origin.elapsed()));
            }
            got
        }));
    }
    let mut sent_at = vec![Duration::ZERO; LATENCY_SAMPLES as usize + 1];
    let mut pace = tokio::time::interval(LATENCY_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 1..=LATENCY_SAMPLES {
        pace.tick().await;
        let bytes = announcement(seq, (seq % 4) as u32);
        sent_at[seq as usize] = origin.elapsed();
        assert_eq!(a.announce_load(bytes).unwrap(), 2);
    }
    let mut all = Vec::new();
    for (receiver, name) in receivers.into_iter().zip(["b", "c"]) {
        let got = receiver.await.unwrap();
        let mut seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), LATENCY_SAMPLES as usize, "every one on {name}");
        let mut delays: Vec<Duration> = got
            .iter()
            .map(|&(seq, at)| at.saturating_sub(sent_at[seq as usize]))
            .collect();
        delays.sort_unstable();
        eprintln!(
            "load announcement a → {name}: n {} p50 {:?} p90 {:?} p99 {:?} max {:?}",
            delays.len(),
            quantile(&delays, 0.5),
            quantile(&delays, 0.9),
            quantile(&delays, 0.99),
            delays[delays.len() - 1],
        );
        all.extend(delays);
    }
    all.sort_unstable();
    eprintln!(
        "load announcement latency on loopback (3 nodes, {LATENCY_SAMPLES} announcements {LATENCY_PACE:?} apart, both peers): p50 {:?} p99 {:?}",
        quantile(&all, 0.5),
        quantile(&all, 0.99),
    );
    assert_eq!(a.stats().load_dropped_total, 0);
    for node in [a, b, c] {
        node.abort();
    }
}
