//! Multi-node tests on loopback: membership, records, failure detection,
//! restarts, forwarding, hostile peers and DNS seeds.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mesh::endpoint::{ConnectionHandler, EndpointTiming, MeshEndpoint};
use mesh::frame::{self, Frame, RemoteFailure};
use mesh::{
    ForwardError, HandlerError, MemberState, Mesh, MeshConfig, MeshHandle, NodeIdentity,
    PeerIdentity, RequestId,
};
use mesh_core::NodeId;
use tokio::time::Instant;

use crate::common::{CONVERGE, Ca, loopback};

fn config(listen: SocketAddr, seeds: &[SocketAddr]) -> MeshConfig {
    MeshConfig {
        listen_addr: listen,
        seeds: seeds.iter().map(ToString::to_string).collect(),
        api_url: "https://127.0.0.1:8443".into(),
        ..MeshConfig::default()
    }
}

async fn start(ca: &Ca, node: &str, region: &str, seeds: &[SocketAddr]) -> MeshHandle {
    start_with(ca.identity(node, region), config(loopback(), seeds)).await
}

async fn start_with(identity: NodeIdentity, config: MeshConfig) -> MeshHandle {
    Mesh::start(config, identity, std::future::pending())
        .await
        .unwrap()
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns the
/// time it took.
async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

async fn wait_for_async<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn state_of(handle: &MeshHandle, node: &str) -> Option<MemberState> {
    handle
        .members()
        .into_iter()
        .find(|m| m.node.as_str() == node)
        .map(|m| m.state)
}

fn all_alive(handle: &MeshHandle, nodes: &[&str]) -> bool {
    nodes
        .iter()
        .all(|n| state_of(handle, n) == Some(MemberState::Alive))
}

async fn three_nodes(ca: &Ca) -> [MeshHandle; 3] {
    let a = start(ca, "a", "fra", &[]).await;
    let b = start(ca, "b", "lax", &[a.local_addr()]).await;
    let c = start(ca, "c", "sin", &[a.local_addr()]).await;
    let nodes = [a, b, c];
    for node in &nodes {
        wait_for("three alive members", CONVERGE, || {
            all_alive(node, &["a", "b", "c"])
        })
        .await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_other_with_regions_and_share_records() {
    let ca = Ca::new();
    let started = Instant::now();
    let [a, b, c] = three_nodes(&ca).await;
    eprintln!("3-node convergence: {:?}", started.elapsed());
    let members = a.members();
    assert_eq!(members.len(), 3);
    let regions: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m.node.to_string(),
                m.region.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert!(
        regions.contains(&("c".into(), Some("sin".into()))),
        "{regions:?}"
    );
    let b_seen_by_a = members.iter().find(|m| m.node.as_str() == "b").unwrap();
    assert_eq!(b_seen_by_a.mesh_addr, b.advertise_addr());
    assert_eq!(b_seen_by_a.generation, b.generation());
    assert_eq!(
        b_seen_by_a.api_url.as_deref(),
        Some("https://127.0.0.1:8443")
    );

    // Records: measure push propagation over several writes.
    let mut delays = Vec::new();
    for i in 0..20u32 {
        let value = format!("obs-{i}").into_bytes();
        let published = Instant::now();
        b.publish_record("obs/orch-1", &value).await.unwrap();
        for other in [&a, &c] {
            wait_for("record on peer", CONVERGE, || {
                other
                    .records()
                    .iter()
                    .any(|r| r.origin.as_str() == "b" && r.key == "obs/orch-1" && r.value == value)
            })
            .await;
        }
        delays.push(published.elapsed());
    }
    delays.sort();
    eprintln!(
        "record propagation to both peers: p50 {:?}, max {:?}",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );

    // Subscribers see changes as they are accepted.
    let mut events = c.subscribe_records();
    a.publish_record("cluster/blocklist", b"v1").await.unwrap();
    let event = tokio::time::timeout(CONVERGE, async {
        loop {
            let event = events.recv().await.unwrap();
            if event.origin.as_str() == "a" {
                return event;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(event.key, "cluster/blocklist");

    // The routing digest is a member key, and a change is gossiped at once.
    a.set_routing_config("0123456789abcdef").await;
    wait_for("routing digest on b and c", CONVERGE, || {
        [&b, &c].iter().all(|n| {
            n.members().iter().any(|m| {
                m.node.as_str() == "a" && m.routing_config.as_deref() == Some("0123456789abcdef")
            })
        })
    })
    .await;

    for node in [a, b, c] {
        node.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_keys_travel_with_the_gossip_rounds() {
    // The load key has no out-of-turn exchange: the rounds carry it. A
    // short round keeps the test short; the default is 10 s.
    let ca = Ca::new();
    let fast = |seeds: &[SocketAddr]| MeshConfig {
        gossip_interval_ms: 200,
        ..config(loopback(), seeds)
    };
    let a = start_with(ca.identity("a", "fra"), fast(&[])).await;
    let b = start_with(ca.identity("b", "lax"), fast(&[a.local_addr()])).await;
    for node in [&a, &b] {
        wait_for("a and b alive", CONVERGE, || all_alive(node, &["a", "b"])).await;
    }
    a.set_load(7).await;
    wait_for("load on b", CONVERGE, || {
        b.members()
            .iter()
            .any(|m| m.node.as_str() == "a" && m.load == Some(7))
    })
    .await;
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_through_gossip_alone() {
    // A node that joins after the record was pushed only gets it by gossip.
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    a.publish_record("obs/early", b"before-b").await.unwrap();
    let b = start(&ca, "b", "fra", &[a.local_addr()]).await;
    wait_for("gossiped record", CONVERGE, || {
        b.records()
            .iter()
            .any(|r| r.origin.as_str() == "a" && r.value.as_ref() == b"before-b")
    })
    .await;
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_is_marked_dead_within_3_s() {
    let ca = Ca::new();
    let [a, b, mut c] = three_nodes(&ca).await;
    let identity = ca.identity("c", "sin");
    let mut trials = Vec::new();
    for trial in 0..3 {
        if trial > 0 {
            c = start_with(identity.clone(), config(loopback(), &[a.local_addr()])).await;
            for node in [&a, &b] {
                wait_for("c alive again", CONVERGE, || all_alive(node, &["c"])).await;
            }
        }
        c.abort();
        let detected = wait_for("c dead on a and b", Duration::from_secs(3), || {
            [&a, &b]
                .iter()
                .all(|n| state_of(n, "c") == Some(MemberState::Dead))
        })
        .await;
        trials.push(detected);
        assert!(all_alive(&a, &["a", "b"]) && all_alive(&b, &["a", "b"]));
    }
    eprintln!("crash detected by all peers after {trials:?}");
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_node_is_listed_as_left_at_once() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let b = start(&ca, "b", "fra", &[a.local_addr()]).await;
    wait_for("a sees b", CONVERGE, || all_alive(&a, &["b"])).await;
    b.leave().await;
    assert!(
        b.publish_record("k", b"v").await.is_err(),
        "no writes after leave"
    );
    let took = wait_for("b left", Duration::from_secs(1), || {
        state_of(&a, "b") == Some(MemberState::Left)
    })
    .await;
    eprintln!("departure seen after {took:?}");
    a.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_rejoins_as_one_alive_entry() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let identity = ca.identity("b", "lax");
    let mut b = start_with(identity.clone(), config(loopback(), &[a.local_addr()])).await;
    wait_for("a sees b", CONVERGE, || all_alive(&a, &["b"])).await;
    for cycle in 0..3 {
        let addr = b.local_addr();
        let old_generation = b.generation();
        b.abort();
        drop(b);
        // Same address as before, as a restarted process would use; the old
        // socket may take a moment to be released.
        let restarted = loop_bind(&identity, addr, a.local_addr()).await;
        b = restarted;
        assert!(b.generation() > old_generation);
        let generation = b.generation();
        let took = wait_for("one alive b with the new generation", CONVERGE, || {
            let entries: Vec<_> = a
                .members()
                .into_iter()
                .filter(|m| m.node.as_str() == "b")
                .collect();
            entries.len() == 1
                && entries[0].state == MemberState::Alive
                && entries[0].generation == generation
        })
        .await;
        eprintln!("cycle {cycle}: restarted b alive on a after {took:?}");
        wait_for("b sees a", CONVERGE, || all_alive(&b, &["a"])).await;
    }
    assert_eq!(a.members().len(), 2);
    a.abort();
    b.abort();
}

async fn loop_bind(identity: &NodeIdentity, addr: SocketAddr, seed: SocketAddr) -> MeshHandle {
    let started = Instant::now();
    loop {
        match Mesh::start(
            config(addr, &[seed]),
            identity.clone(),
            std::future::pending(),
        )
        .await
        {
            Ok(handle) => return handle,
            Err(error) => {
                assert!(
                    started.elapsed() < CONVERGE,
                    "cannot rebind {addr}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_streams_chunks_and_runs_each_request_once() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let b = start(&ca, "b", "lax", &[a.local_addr()]).await;
    wait_for("a and b see each other", CONVERGE, || {
        all_alive(&a, &["b"]) && all_alive(&b, &["a"])
    })
    .await;
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = runs.clone();
    b.set_forward_handler(move |request| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(request.origin.node.as_str(), "a");
        if request.body.as_ref() == b"fail" {
            let items = vec![
                Ok(Bytes::from_static(b"partial")),
                Err(HandlerError("model exploded".into())),
            ];
            return Box::pin(futures_util::stream::iter(items));
        }
        let body = request.body.clone();
        Box::pin(futures_util::stream::iter(0..5).then(move |i| {
            let body = body.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(Bytes::from(format!(
                    "data: {} #{i}\n\n",
                    String::from_utf8_lossy(&body)
                )))
            }
        }))
    });

    let peer = NodeId::new("b").unwrap();
    let id = RequestId::random();
    let response = a
        .forward(&peer, id, Bytes::from_static(b"hi"), Duration::from_secs(5))
        .await
        .unwrap();
    let chunks: Vec<_> = response.collect().await;
    assert_eq!(chunks.len(), 5);
    for (i, chunk) in chunks.into_iter().enumerate() {
        assert_eq!(chunk.unwrap(), Bytes::from(format!("data: hi #{i}\n\n")));
    }

    // A retry with the same id is refused, not run again.
    let again = a
        .forward(&peer, id, Bytes::from_static(b"hi"), Duration::from_secs(5))
        .await;
    assert!(matches!(
        again,
        Err(ForwardError::Remote {
            kind: RemoteFailure::Duplicate,
            ..
        })
    ));
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Handler errors arrive after the chunks sent before them.
    let failing = a
        .forward(
            &peer,
            RequestId::random(),
            Bytes::from_static(b"fail"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let items: Vec<_> = failing.collect().await;
    assert_eq!(items[0].as_ref().unwrap(), &Bytes::from_static(b"partial"));
    assert!(matches!(
        items[1],
        Err(ForwardError::Remote {
            kind: RemoteFailure::Handler,
            ..
        })
    ));

    // Unknown peers and a peer without a handler.
    let nobody = NodeId::new("nobody").unwrap();
    let unknown = a
        .forward(
            &nobody,
            RequestId::random(),
            Bytes::new(),
            Duration::from_secs(1),
        )
        .await;
    assert!(matches!(unknown, Err(ForwardError::UnknownPeer(_))));
    let to_a = b
        .forward(
            &NodeId::new("a").unwrap(),
            RequestId::random(),
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(
        to_a,
        Err(ForwardError::Remote {
            kind: RemoteFailure::NoHandler,
            ..
        })
    ));
    a.abort();
    b.abort();
}

struct Ignore;

impl ConnectionHandler for Ignore {
    fn on_connection(&self, _connection: quinn::Connection, _peer: PeerIdentity) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_foreign_ca_cannot_join_or_write() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let b = start(&ca, "b", "fra", &[a.local_addr()]).await;
    wait_for("a sees b", CONVERGE, || all_alive(&a, &["b"])).await;

    let foreign = Ca::new();
    let intruder = start(
        &foreign,
        "intruder",
        "fra",
        &[a.local_addr(), b.local_addr()],
    )
    .await;
    intruder
        .publish_record("obs/orch-1", b"lies")
        .await
        .unwrap();

    // The TLS 1.3 gotcha: the dial may succeed; the refusal shows on first use.
    let raw = MeshEndpoint::bind(
        loopback(),
        &foreign.identity("raw", "fra"),
        EndpointTiming::default(),
    )
    .unwrap();
    raw.start(std::sync::Arc::new(Ignore));
    let round_trip = async {
        let connection = raw
            .connection(a.local_addr())
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let request = Frame::ForwardRequest {
            request_id: 1,
            deadline_ms: 1000,
            body: Vec::new(),
        };
        frame::write_frame(&mut send, &request)
            .await
            .map_err(|e| e.to_string())?;
        frame::read_frame(&mut recv, frame::MAX_FRAME_BYTES)
            .await
            .map_err(|e| e.to_string())
    };
    let outcome = tokio::time::timeout(CONVERGE, round_trip).await.unwrap();
    assert!(outcome.is_err(), "foreign CA got an answer: {outcome:?}");

    // Give gossip and push ample rounds (20 × 100 ms) to leak, then check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in [&a, &b] {
        assert!(state_of(node, "intruder").is_none(), "{:?}", node.members());
        assert!(
            node.records()
                .iter()
                .all(|r| r.origin.as_str() != "intruder")
        );
    }
    assert_eq!(intruder.members().len(), 1, "the intruder learnt nothing");
    assert!(a.stats().records_accepted_total == 0);
    raw.close();
    for node in [a, b, intruder] {
        node.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_streams_closes_only_that_stream() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let raw = MeshEndpoint::bind(
        loopback(),
        &ca.identity("raw", "fra"),
        EndpointTiming::default(),
    )
    .unwrap();
    raw.start(std::sync::Arc::new(Ignore));
    let connection = raw.connection(a.local_addr()).await.unwrap();

    let garbage: [&[u8]; 4] = [
        b"\x00\x00\x00\x05\x01\xff\xff\xff\xff", // bad postcard body
        b"\xff\xff\xff\xff",                     // oversized length
        b"\x00\x00\x00\x03\x09\x00\x00",         // unknown wire version
        b"\x00\x00\x00\x10\x01",                 // truncated frame
    ];
    for bytes in garbage {
        let mut uni = connection.open_uni().await.unwrap();
        uni.write_all(bytes).await.unwrap();
        uni.finish().unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        // The bi stream is refused: reset or closed without a response.
        let answer = frame::read_frame(&mut recv, frame::MAX_FRAME_BYTES).await;
        assert!(!matches!(answer, Ok(Some(_))), "{answer:?}");
    }
    // A well-formed gossip frame with a garbage chitchat payload.
    let mut uni = connection.open_uni().await.unwrap();
    let bad_gossip = frame::encode(&Frame::Gossip {
        message: b"junk".to_vec(),
    })
    .unwrap();
    uni.write_all(&bad_gossip).await.unwrap();
    uni.finish().unwrap();

    wait_for("rejections counted", CONVERGE, || {
        a.stats().frames_rejected_total >= 9
    })
    .await;
    // The same connection and the node still work.
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    frame::write_frame(
        &mut send,
        &Frame::ForwardRequest {
            request_id: 42,
            deadline_ms: 1000,
            body: Vec::new(),
        },
    )
    .await
    .unwrap();
    let reply = frame::read_frame(&mut recv, frame::MAX_FRAME_BYTES)
        .await
        .unwrap();
    assert!(matches!(
        reply,
        Some(Frame::ResponseError {
            kind: RemoteFailure::NoHandler,
            ..
        })
    ));
    let b = start(&ca, "b", "fra", &[a.local_addr()]).await;
    wait_for_async("a and b see each other", CONVERGE, || {
        let ok = all_alive(&a, &["b"]) && all_alive(&b, &["a"]);
        async move { ok }
    })
    .await;
    raw.close();
    a.abort();
    b.abort();
}

mod dns {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::str::FromStr;

    use mesh::seeds::SeedResolver;
    use mesh_core::{NodeId, RegionId};

    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, SRV};
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    use tokio::net::UdpSocket;

    use super::*;

    /// A tiny authoritative server: SRV `_gossip._udp.gw.test.` → one target
    /// per port (with its A record in the additional section), and A for
    /// `gw.test.` → 127.0.0.1.
    async fn fake_dns(ports: Vec<u16>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut response = Message::response(query.metadata.id, OpCode::Query);
                response.metadata.authoritative = true;
                for q in &query.queries {
                    response.add_query(q.clone());
                    let name = q.name().to_ascii();
                    match (q.query_type(), name.as_str()) {
                        (RecordType::SRV, "_gossip._udp.gw.test.") => {
                            for (i, port) in ports.iter().enumerate() {
                                let target = Name::from_str(&format!("n{i}.gw.test.")).unwrap();
                                let srv = SRV::new(0, 0, *port, target.clone());
                                response.add_answer(Record::from_rdata(
                                    q.name().clone(),
                                    5,
                                    RData::SRV(srv),
                                ));
                                response.add_additional(Record::from_rdata(
                                    target,
                                    5,
                                    RData::A(A(Ipv4Addr::LOCALHOST)),
                                ));
                            }
                        }
                        (RecordType::A, "gw.test.") => {
                            response.add_answer(Record::from_rdata(
                                q.name().clone(),
                                5,
                                RData::A(A(Ipv4Addr::LOCALHOST)),
                            ));
                        }
                        _ => {}
                    }
                }
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        (addr, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resolver_follows_srv_then_a_records() {
        let (dns, task) = fake_dns(vec![7001, 7002]).await;
        let resolver = SeedResolver::with_nameserver(dns).unwrap();
        let addrs = resolver.resolve("gw.test", 7946).await;
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        ];
        assert_eq!(addrs, expected);
        assert!(resolver.resolve("missing.test:9", 7946).await.is_empty());
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_started_in_any_order_find_each_other_through_dns() {
        // Reserve a port for `a`, which starts *after* `b` looked it up.
        let a_addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (dns, task) = fake_dns(vec![a_addr.port()]).await;
        let ca = Ca::new();
        let mut b_config = config(loopback(), &[]);
        b_config.dns_seeds = vec!["gw.test".into()];
        b_config.dns_nameserver = Some(dns);
        let b = start_with(ca.identity("b", "lax"), b_config).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = start_with(ca.identity("a", "fra"), config(a_addr, &[])).await;
        let took = wait_for("b and a see each other", CONVERGE, || {
            all_alive(&a, &["b"]) && all_alive(&b, &["a"])
        })
        .await;
        eprintln!("joined through DNS {took:?} after a started");
        let region = RegionId::new("fra").unwrap();
        let a_on_b = b
            .members()
            .into_iter()
            .find(|m| m.node == NodeId::new("a").unwrap());
        assert_eq!(a_on_b.and_then(|m| m.region), Some(region));
        a.abort();
        b.abort();
        task.abort();
    }
}

/// Runs a node on its own single-threaded runtime, so a blocking sleep on
/// that runtime freezes the whole node (endpoint, gossip, timers) the way a
/// stop-the-world pause or SIGSTOP would.
struct IsolatedNode {
    runtime: tokio::runtime::Handle,
    handle: MeshHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IsolatedNode {
    fn start(identity: NodeIdentity, config: MeshConfig) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let handle = start_with(identity, config).await;
                ready_tx
                    .send((tokio::runtime::Handle::current(), handle.clone()))
                    .unwrap();
                let _ = stop_rx.await;
                handle.abort();
            });
        });
        let (runtime, handle) = ready_rx.recv().unwrap();
        Self {
            runtime,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn freeze(&self, pause: Duration) {
        self.runtime.spawn(async move { std::thread::sleep(pause) });
    }
}

impl Drop for IsolatedNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_pauses_cause_no_false_dead_verdicts() {
    let ca = Ca::new();
    let a = start(&ca, "a", "fra", &[]).await;
    let b = start(&ca, "b", "lax", &[a.local_addr()]).await;
    let c = IsolatedNode::start(
        ca.identity("c", "sin"),
        config(loopback(), &[a.local_addr()]),
    );
    for node in [&a, &b] {
        wait_for("all alive", CONVERGE, || all_alive(node, &["a", "b", "c"])).await;
    }
    for pause in 0..3 {
        c.freeze(Duration::from_secs(1));
        let watch_until = Instant::now() + Duration::from_millis(2500);
        let mut suspected = false;
        while Instant::now() < watch_until {
            for node in [&a, &b] {
                let state = state_of(node, "c");
                assert_ne!(
                    state,
                    Some(MemberState::Dead),
                    "false dead in pause {pause}"
                );
                suspected |= state == Some(MemberState::Suspect);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(suspected, "a 1 s silence should at least raise suspicion");
        assert!(all_alive(&a, &["c"]) && all_alive(&b, &["c"]));
    }
    assert_eq!(c.handle.members().len(), 3);
    drop(c);
    a.abort();
    b.abort();
}
