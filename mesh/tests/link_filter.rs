//! The fault-injection hook `MeshHandle::set_link_filter`: a filter on ONE
//! node cuts both directions (gossip, pushes, forwards), both sides see each
//! other dead, and clearing it heals the link.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use mesh::{LinkFilter, MemberState, Mesh, MeshConfig, MeshHandle, NodeIdentity, RequestId, certs};
use mesh_core::{NodeId, RegionId};
use tokio::time::Instant;

/// Bound for anything that converges on loopback.
const CONVERGE: Duration = Duration::from_secs(5);

fn identity(dir: &Path, node: &str, region: &str) -> NodeIdentity {
    let node = NodeId::new(node).unwrap();
    let region = RegionId::new(region).unwrap();
    certs::issue_node(dir, dir, &node, &region).unwrap();
    NodeIdentity::load_issued(dir, &node, dir).unwrap()
}

async fn start(dir: &Path, node: &str, seeds: &[std::net::SocketAddr]) -> MeshHandle {
    let config = MeshConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        seeds: seeds.iter().map(ToString::to_string).collect(),
        ..MeshConfig::default()
    };
    Mesh::start(config, identity(dir, node, "fra"), std::future::pending())
        .await
        .unwrap()
}

fn state_of(handle: &MeshHandle, node: &str) -> Option<MemberState> {
    handle
        .members()
        .into_iter()
        .find(|m| m.node.as_str() == node)
        .map(|m| m.state)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < CONVERGE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

fn has_record(handle: &MeshHandle, origin: &str, key: &str, value: &[u8]) -> bool {
    handle
        .records()
        .iter()
        .any(|r| r.origin.as_str() == origin && r.key == key && r.value.as_ref() == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_one_node_cuts_the_link_both_ways_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    certs::init_ca(dir.path()).unwrap();
    let a = start(dir.path(), "a", &[]).await;
    let b = start(dir.path(), "b", &[a.local_addr()]).await;
    a.set_forward_handler(|_request| Box::pin(stream::iter(vec![Ok(Bytes::from_static(b"pong"))])));
    wait_for("a and b alive to each other", || {
        state_of(&a, "b") == Some(MemberState::Alive)
            && state_of(&b, "a") == Some(MemberState::Alive)
    })
    .await;
    a.publish_record("before", b"1").await.unwrap();
    wait_for("b has a's first record", || {
        has_record(&b, "a", "before", b"1")
    })
    .await;

    let cut = NodeId::new("b").unwrap();
    let filter: LinkFilter = Arc::new(move |peer: &NodeId| peer != &cut);
    a.set_link_filter(Some(filter));
    a.publish_record("during", b"2").await.unwrap();
    let forward = b
        .forward(
            &NodeId::new("a").unwrap(),
            RequestId::random(),
            Bytes::from_static(b"ping"),
            Duration::from_secs(2),
        )
        .await;
    assert!(forward.is_err(), "a forward crossed the cut link");

    let took = wait_for("both sides to see the other dead", || {
        state_of(&a, "b") == Some(MemberState::Dead) && state_of(&b, "a") == Some(MemberState::Dead)
    })
    .await;
    eprintln!("both sides saw the other dead {took:?} after the cut");
    assert!(
        !has_record(&b, "a", "during", b"2"),
        "a record written during the cut reached the other side"
    );
    assert!(a.stats().frames_rejected_total == 0 && b.stats().frames_rejected_total == 0);

    a.set_link_filter(None);
    let took = wait_for("the link to heal", || {
        state_of(&a, "b") == Some(MemberState::Alive)
            && state_of(&b, "a") == Some(MemberState::Alive)
            && has_record(&b, "a", "during", b"2")
    })
    .await;
    eprintln!("healed and caught up {took:?} after clearing the filter");
    a.abort();
    b.abort();
}
