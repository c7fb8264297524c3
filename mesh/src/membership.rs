//! Membership: chitchat 0.11.2 running over the mesh's QUIC endpoint, the
//! failure-detector tuning, and the member list derived from chitchat state.
//!
//! Every chitchat message travels on its own uni stream as a
//! [`Frame::Gossip`]. [`QuicSocket::send`] never waits on the network: it
//! takes a slot from a bounded pool and spawns the send, or drops the message
//! and counts it (gossip is periodic; the next round repairs a drop).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{
    ChitchatConfig, ChitchatId, ChitchatMessage, Deserializable, FailureDetectorConfig,
    Serializable,
};
use mesh_core::{NodeId, RegionId};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::debug;

use crate::config::MeshConfig;
use crate::endpoint::MeshEndpoint;
use crate::frame::{self, Frame};
use crate::stats::Stats;

/// Chitchat key: the node's region.
pub const KEY_REGION: &str = "region";
/// Chitchat key: the node's public API URL.
pub const KEY_API_URL: &str = "api_url";
/// Chitchat key: the node's admin URL.
pub const KEY_ADMIN_URL: &str = "admin_url";
/// Chitchat key: the node's mesh (QUIC) address.
pub const KEY_MESH_ADDR: &str = "mesh_addr";
/// Chitchat key: the gatemesh version the node runs.
pub const KEY_VERSION: &str = "version";
/// Chitchat key: in-flight jobs on the node.
pub const KEY_LOAD: &str = "load";
/// Chitchat key: present once the node announced its departure.
pub const KEY_LEAVING: &str = "leaving";
/// Chitchat key: digest of the configuration that decides how the node
/// routes a job (opaque to the mesh; the node compares its peers' with
/// its own, since a forwarded job runs under the receiver's rules).
pub const KEY_ROUTING_CONFIG: &str = "routing_config";

/// Gossip messages waiting to be sent at once. One round sends ≤ 5 messages
/// (3 live peers, a dead one, a seed) plus replies; 256 is dozens of rounds
/// stuck behind slow handshakes, beyond which dropping is the right call.
const MAX_INFLIGHT_GOSSIP_SENDS: usize = 256;

/// Received gossip messages waiting for chitchat's loop. Chitchat processes
/// a message in microseconds; a full queue means the loop is stalled, and
/// stale gossip is worthless.
pub(crate) const GOSSIP_INBOUND_QUEUE: usize = 1024;

/// The state of a member, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Heartbeats arrive.
    Alive,
    /// Still alive for the failure detector, but not heard from for more
    /// than half of `dead_after_ms`.
    Suspect,
    /// The failure detector declared it dead (or it never became alive).
    Dead,
    /// It announced its departure.
    Left,
}

impl MemberState {
    /// Alive or Suspect: worth sending work to.
    pub fn is_reachable(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }

    /// A fixed label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }
}

/// One cluster member (the newest generation of each node name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub node: NodeId,
    /// Region, if the node published a valid one.
    pub region: Option<RegionId>,
    /// Incarnation: the node's start time in ms since the Unix epoch.
    pub generation: u64,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Where its QUIC endpoint listens.
    pub mesh_addr: SocketAddr,
    /// Its public API URL.
    pub api_url: Option<String>,
    /// Its admin URL.
    pub admin_url: Option<String>,
    /// Its gatemesh version.
    pub version: Option<String>,
    /// In-flight jobs it last reported.
    pub load: Option<u64>,
    /// Digest of its routing configuration, once it published one.
    pub routing_config: Option<String>,
    /// When this node last saw its heartbeat advance (None: never, or self).
    pub last_heard: Option<Instant>,
    /// Whether this entry is the local node.
    pub is_self: bool,
}

/// Builds the chitchat configuration from the mesh configuration.
///
/// Failure detection: chitchat 0.11's "phi" is `elapsed / mean_interval`,
/// where the mean is smoothed towards `initial_interval` with a prior weight
/// of 5 samples. With a one-sample window and `initial_interval =
/// max_interval = gossip_interval`, the mean stays within [5/6, 1] of the
/// gossip interval whatever the cluster size, so `phi_threshold =
/// dead_after / gossip_interval` declares a silent node dead after
/// 0.83–1.0 × `dead_after` (see ALGORITHM.md).
pub(crate) fn chitchat_config(
    config: &MeshConfig,
    chitchat_id: ChitchatId,
    listen_addr: SocketAddr,
    seeds: Vec<String>,
) -> ChitchatConfig {
    let gossip_interval = Duration::from_millis(config.gossip_interval_ms);
    let phi_threshold = config.dead_after_ms as f64 / config.gossip_interval_ms as f64;
    ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval,
        listen_addr,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            phi_threshold,
            sampling_window_size: 1,
            max_interval: gossip_interval,
            initial_interval: gossip_interval,
            dead_node_grace_period: Duration::from_millis(config.dead_node_grace_period_ms),
        },
        marked_for_deletion_grace_period: Duration::from_millis(config.tombstone_grace_period_ms),
        catchup_callback: None,
        extra_liveness_predicate: Some(Box::new(|state| state.get(KEY_LEAVING).is_none())),
    }
}

/// chitchat's [`Transport`] over the mesh endpoint. `open` hands out the one
/// socket built at start-up; the listen address was bound already.
pub(crate) struct QuicTransport {
    socket: std::sync::Mutex<Option<QuicSocket>>,
}

impl QuicTransport {
    pub(crate) fn new(
        endpoint: MeshEndpoint,
        inbound: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            socket: std::sync::Mutex::new(Some(QuicSocket {
                endpoint,
                inbound,
                send_slots: Arc::new(Semaphore::new(MAX_INFLIGHT_GOSSIP_SENDS)),
                stats,
            })),
        }
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match socket {
            Some(socket) => Ok(Box::new(socket)),
            None => anyhow::bail!("the mesh gossip socket is already open"),
        }
    }
}

pub(crate) struct QuicSocket {
    endpoint: MeshEndpoint,
    inbound: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    send_slots: Arc<Semaphore>,
    stats: Arc<Stats>,
}

#[async_trait]
impl Socket for QuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let Ok(slot) = self.send_slots.clone().try_acquire_owned() else {
            self.stats
                .gossip_send_dropped
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let bytes = frame::encode(&Frame::Gossip {
            message: msg.serialize_to_vec(),
        })?;
        let endpoint = self.endpoint.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match endpoint.send_uni(to, &bytes).await {
                Ok(()) => {
                    stats
                        .gossip_bytes_sent
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    stats.gossip_sent.fetch_add(1, Ordering::Relaxed)
                }
                Err(error) => {
                    debug!(peer = %to, %error, "gossip send failed");
                    stats.gossip_send_failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        self.inbound
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("mesh endpoint closed"))
    }
}

/// Decodes a gossip payload received from `from` and queues it for chitchat.
pub(crate) fn deliver_gossip(
    inbound: &mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    stats: &Stats,
    from: SocketAddr,
    message: &[u8],
) -> Result<(), String> {
    let message = ChitchatMessage::deserialize(&mut &message[..]).map_err(|e| e.to_string())?;
    if inbound.try_send((from, message)).is_err() {
        stats.gossip_recv_dropped.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// What the poller copies out of one chitchat node state under the lock.
pub(crate) struct NodeView {
    pub(crate) id: ChitchatId,
    pub(crate) heartbeat: u64,
    pub(crate) keys: HashMap<&'static str, String>,
    pub(crate) live: bool,
}

/// Member-list bookkeeping that lives across polls.
#[derive(Default)]
pub(crate) struct MemberTracker {
    /// Last heartbeat seen per incarnation and when it advanced.
    heard: HashMap<ChitchatId, (u64, Instant)>,
    /// Departures announced directly (node → generation that left).
    left: HashMap<NodeId, u64>,
}

/// Departures remembered at most; older entries are chitchat-GC'd anyway.
const MAX_REMEMBERED_DEPARTURES: usize = 4096;

impl MemberTracker {
    pub(crate) fn record_leave(&mut self, node: NodeId, generation: u64) {
        if self.left.len() >= MAX_REMEMBERED_DEPARTURES && !self.left.contains_key(&node) {
            return;
        }
        let entry = self.left.entry(node).or_insert(generation);
        *entry = (*entry).max(generation);
    }

    /// Builds the member list: the newest generation of each node name.
    pub(crate) fn members(
        &mut self,
        now: Instant,
        self_id: &ChitchatId,
        views: Vec<NodeView>,
        suspect_after: Duration,
    ) -> Vec<Member> {
        let present: HashSet<&ChitchatId> = views.iter().map(|v| &v.id).collect();
        self.heard.retain(|id, _| present.contains(id));
        let mut newest: BTreeMap<String, Member> = BTreeMap::new();
        for view in &views {
            let Ok(node) = NodeId::new(&*view.id.node_id) else {
                continue;
            };
            let is_self = &view.id == self_id;
            let heard = self
                .heard
                .entry(view.id.clone())
                .or_insert((view.heartbeat, now));
            if heard.0 != view.heartbeat {
                *heard = (view.heartbeat, now);
            }
            let last_heard = (!is_self).then_some(heard.1);
            let left = self
                .left
                .get(&node)
                .is_some_and(|&g| g >= view.id.generation_id)
                || view.keys.contains_key(KEY_LEAVING);
            let state = if is_self {
                MemberState::Alive
            } else if left {
                MemberState::Left
            } else if !view.live {
                MemberState::Dead
            } else if now.saturating_duration_since(heard.1) > suspect_after {
                MemberState::Suspect
            } else {
                MemberState::Alive
            };
            let key = |k: &str| view.keys.get(k).cloned();
            let member = Member {
                region: key(KEY_REGION).and_then(|r| RegionId::new(r).ok()),
                generation: view.id.generation_id,
                state,
                mesh_addr: view.id.gossip_advertise_addr,
                api_url: key(KEY_API_URL).filter(|u| !u.is_empty()),
                admin_url: key(KEY_ADMIN_URL).filter(|u| !u.is_empty()),
                version: key(KEY_VERSION),
                load: key(KEY_LOAD).and_then(|l| l.parse().ok()),
                routing_config: key(KEY_ROUTING_CONFIG).filter(|d| !d.is_empty()),
                last_heard,
                is_self,
                node,
            };
            match newest.get(member.node.as_str()) {
                Some(existing) if existing.generation >= member.generation => {}
                _ => {
                    newest.insert(member.node.as_str().to_owned(), member);
                }
            }
        }
        newest.into_values().collect()
    }
}

/// The member keys copied out of chitchat state.
pub(crate) const MEMBER_KEYS: [&str; 8] = [
    KEY_REGION,
    KEY_API_URL,
    KEY_ADMIN_URL,
    KEY_MESH_ADDR,
    KEY_VERSION,
    KEY_LOAD,
    KEY_LEAVING,
    KEY_ROUTING_CONFIG,
];
