//! Membership: chitchat 0.11.2 running over the mesh's QUIC endpoint (member
//! keys and anti-entropy), the failure detector on direct heartbeats
//! (`MemberTracker`), and the member list derived from both.
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
/// Chitchat key: present (the heartbeat interval in ms) on nodes that send
/// direct heartbeats. Before a member's first heartbeat arrives, its
/// gossiped heartbeat counts as a sign of life only if it lacks this key (a
/// node of an older version, mid-upgrade); a node that has it is judged
/// from when it was first listed, so that a relayed gossip heartbeat
/// cannot keep alive a node that died before it heartbeated us.
pub const KEY_HEARTBEATS: &str = "heartbeats";
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
    /// No direct heartbeat for more than half of `dead_after_ms`.
    Suspect,
    /// No direct heartbeat for more than `dead_after_ms` (chitchat's own,
    /// slower detector only decides when its state is collected).
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
    /// When its last direct heartbeat arrived (before the first: when its
    /// gossiped heartbeat last advanced; None for self).
    pub last_heard: Option<Instant>,
    /// Whether this entry is the local node.
    pub is_self: bool,
}

/// Builds the chitchat configuration from the mesh configuration.
///
/// chitchat's failure detector is only a slow backstop here (direct
/// heartbeats decide liveness, see [`MemberTracker`]); it still decides
/// whom chitchat gossips with and when a dead node's state is collected.
/// In chitchat 0.11 "phi" is `elapsed / mean_interval`, the mean smoothed
/// towards `initial_interval` with a prior weight of 5 samples. With a
/// one-sample window, `initial_interval` = the gossip interval and
/// `max_interval` = 3 of them, the mean stays within [5/6, 4/3] of the
/// gossip interval whatever the cluster size, so `phi_threshold =
/// chitchat_dead_after / gossip_interval` declares a node silent in gossip
/// dead after 0.83–1.33 × [`chitchat_dead_after_ms`] (see ALGORITHM.md).
/// chitchat's verdict does not make a member `Dead` (direct heartbeats
/// do); it only steers whom chitchat gossips with.
pub(crate) fn chitchat_config(
    config: &MeshConfig,
    chitchat_id: ChitchatId,
    listen_addr: SocketAddr,
    seeds: Vec<String>,
) -> ChitchatConfig {
    let gossip_interval = Duration::from_millis(config.gossip_interval_ms);
    let phi_threshold = chitchat_dead_after_ms(config) as f64 / config.gossip_interval_ms as f64;
    ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval,
        listen_addr,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            phi_threshold,
            sampling_window_size: 1,
            // Gossiped heartbeats reach us through relays, a round or two
            // apart: a narrower window would drop every sample and never
            // call a node live (chitchat then collects it after the grace
            // period, however well its direct heartbeats arrive).
            max_interval: gossip_interval * CHITCHAT_MAX_SAMPLED_ROUNDS,
            initial_interval: gossip_interval,
            dead_node_grace_period: Duration::from_millis(config.dead_node_grace_period_ms),
        },
        marked_for_deletion_grace_period: Duration::from_millis(config.tombstone_grace_period_ms),
        catchup_callback: None,
        extra_liveness_predicate: Some(Box::new(|state| state.get(KEY_LEAVING).is_none())),
    }
}

/// Longest interval between two gossiped heartbeats that chitchat samples,
/// in gossip rounds.
const CHITCHAT_MAX_SAMPLED_ROUNDS: u32 = 3;

/// Gossip rounds without a new gossiped heartbeat after which chitchat
/// itself declares a node dead. A gossiped heartbeat reaches a node one or
/// two rounds late, through relays, so fewer rounds would call live nodes
/// dead.
const CHITCHAT_DEAD_AFTER_ROUNDS: u64 = 6;

/// Silence in gossip after which chitchat declares a node dead: the longer
/// of `dead_after_ms` and [`CHITCHAT_DEAD_AFTER_ROUNDS`] gossip rounds.
pub(crate) fn chitchat_dead_after_ms(config: &MeshConfig) -> u64 {
    config
        .dead_after_ms
        .max(CHITCHAT_DEAD_AFTER_ROUNDS * config.gossip_interval_ms)
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
}

/// How long a member is listed `Suspect` or `Dead` after silence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Silence {
    /// No heartbeat for longer than this: `Suspect`.
    pub(crate) suspect_after: Duration,
    /// No heartbeat for longer than this: `Dead`.
    pub(crate) dead_after: Duration,
}

/// Member-list bookkeeping that lives across polls: the failure detector.
///
/// A member's liveness is the silence since its last *direct* heartbeat
/// ([`Frame::Heartbeat`](crate::frame::Frame::Heartbeat), sent by the
/// member itself every `heartbeat_interval_ms`). Before the first one
/// arrives, the silence counts from when it was first listed (a member
/// that just joined); for a member without [`KEY_HEARTBEATS`] (an older
/// version, during a rolling upgrade) from when its gossiped heartbeat
/// last advanced. Gossiped heartbeats are no evidence otherwise: they
/// arrive through relays, rounds late, and would keep a crashed node alive
/// for several gossip rounds.
#[derive(Default)]
pub(crate) struct MemberTracker {
    /// Per incarnation listed by the last poll: its last gossiped
    /// heartbeat, when that advanced, and when it was first listed.
    heard: HashMap<(NodeId, u64), Heard>,
    /// When each incarnation's last direct heartbeat arrived.
    direct: HashMap<(NodeId, u64), Instant>,
    /// Departures announced directly (node → generation that left).
    left: HashMap<NodeId, u64>,
}

/// What gossip told us of one incarnation's liveness.
#[derive(Clone, Copy)]
struct Heard {
    heartbeat: u64,
    advanced_at: Instant,
    first_listed: Instant,
}

/// Departures remembered at most; older entries are chitchat-GC'd anyway.
const MAX_REMEMBERED_DEPARTURES: usize = 4096;

/// Incarnations whose direct heartbeats are remembered at most. Beyond the
/// listed members, only a few unknown ones (a node gossip has not brought
/// yet) exist at a time; a member inventing generations cannot grow this.
const MAX_HEARTBEAT_SENDERS: usize = 4096;

impl MemberTracker {
    pub(crate) fn record_leave(&mut self, node: NodeId, generation: u64) {
        if self.left.len() >= MAX_REMEMBERED_DEPARTURES && !self.left.contains_key(&node) {
            return;
        }
        let entry = self.left.entry(node).or_insert(generation);
        *entry = (*entry).max(generation);
    }

    /// A direct heartbeat from `node`'s incarnation `generation` arrived.
    /// Returns whether that incarnation is listed (if not, gossip has not
    /// brought it yet, and the caller should gossip with the sender).
    pub(crate) fn record_heartbeat(&mut self, node: NodeId, generation: u64, now: Instant) -> bool {
        let key = (node, generation);
        let known = self.heard.contains_key(&key);
        if known || self.direct.len() < MAX_HEARTBEAT_SENDERS || self.direct.contains_key(&key) {
            self.direct.insert(key, now);
        }
        known
    }

    /// Builds the member list: the newest generation of each node name.
    pub(crate) fn members(
        &mut self,
        now: Instant,
        self_id: &ChitchatId,
        views: Vec<NodeView>,
        silence: Silence,
    ) -> Vec<Member> {
        let present: HashSet<(NodeId, u64)> = views
            .iter()
            .filter_map(|v| Some((NodeId::new(&*v.id.node_id).ok()?, v.id.generation_id)))
            .collect();
        self.heard.retain(|key, _| present.contains(key));
        // Unlisted senders are kept while they may still be listed soon.
        self.direct.retain(|key, at| {
            present.contains(key) || now.saturating_duration_since(*at) <= silence.dead_after
        });
        let mut newest: BTreeMap<String, Member> = BTreeMap::new();
        for view in &views {
            let Ok(node) = NodeId::new(&*view.id.node_id) else {
                continue;
            };
            let is_self = &view.id == self_id;
            let incarnation = (node.clone(), view.id.generation_id);
            let heard = self.heard.entry(incarnation.clone()).or_insert(Heard {
                heartbeat: view.heartbeat,
                advanced_at: now,
                first_listed: now,
            });
            if heard.heartbeat != view.heartbeat {
                heard.heartbeat = view.heartbeat;
                heard.advanced_at = now;
            }
            let before_first_heartbeat = if view.keys.contains_key(KEY_HEARTBEATS) {
                heard.first_listed
            } else {
                heard.advanced_at
            };
            let last_heard = self
                .direct
                .get(&incarnation)
                .copied()
                .unwrap_or(before_first_heartbeat);
            let silent_for = now.saturating_duration_since(last_heard);
            let left = self
                .left
                .get(&node)
                .is_some_and(|&g| g >= view.id.generation_id)
                || view.keys.contains_key(KEY_LEAVING);
            let state = if is_self {
                MemberState::Alive
            } else if left {
                MemberState::Left
            } else if silent_for > silence.dead_after {
                MemberState::Dead
            } else if silent_for > silence.suspect_after {
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
                last_heard: (!is_self).then_some(last_heard),
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

/// Which out-of-turn gossip exchanges to start: at most one per address
/// per `min_gap`, and at most `max_addresses` addresses remembered (when
/// full and none has aged out, the request is refused: the next heartbeat
/// asks again).
pub(crate) struct OutOfTurn {
    last: HashMap<SocketAddr, Instant>,
    min_gap: Duration,
    max_addresses: usize,
}

impl OutOfTurn {
    pub(crate) fn new(min_gap: Duration, max_addresses: usize) -> Self {
        Self {
            last: HashMap::new(),
            min_gap,
            max_addresses,
        }
    }

    /// Whether to gossip with `addr` now (and if so, remembers it).
    pub(crate) fn admit(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let min_gap = self.min_gap;
        let recent = |at: &Instant| now.saturating_duration_since(*at) < min_gap;
        if self.last.get(&addr).is_some_and(recent) {
            return false;
        }
        if self.last.len() >= self.max_addresses && !self.last.contains_key(&addr) {
            self.last.retain(|_, at| recent(at));
            if self.last.len() >= self.max_addresses {
                return false;
            }
        }
        self.last.insert(addr, now);
        true
    }
}

/// The member keys copied out of chitchat state.
pub(crate) const MEMBER_KEYS: [&str; 9] = [
    KEY_HEARTBEATS,
    KEY_REGION,
    KEY_API_URL,
    KEY_ADMIN_URL,
    KEY_MESH_ADDR,
    KEY_VERSION,
    KEY_LOAD,
    KEY_LEAVING,
    KEY_ROUTING_CONFIG,
];

#[cfg(test)]
mod tests {
    use super::*;

    const SILENCE: Silence = Silence {
        suspect_after: Duration::from_millis(750),
        dead_after: Duration::from_millis(1_500),
    };

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn id(node: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(node.to_owned(), generation, addr(7000 + generation as u16))
    }

    /// A node of this version (it announces heartbeats).
    fn view(node: &str, generation: u64, heartbeat: u64) -> NodeView {
        let mut keys = HashMap::new();
        keys.insert(KEY_HEARTBEATS, "300".to_owned());
        NodeView {
            id: id(node, generation),
            heartbeat,
            keys,
        }
    }

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// `b`'s state as `a` lists it.
    fn state_of_b(tracker: &mut MemberTracker, now: Instant, b_heartbeat: u64) -> MemberState {
        let views = vec![view("a", 1, 1), view("b", 2, b_heartbeat)];
        let members = tracker.members(now, &id("a", 1), views, SILENCE);
        members
            .iter()
            .find(|m| m.node.as_str() == "b")
            .unwrap()
            .state
    }

    #[test]
    fn direct_heartbeats_alone_decide_liveness() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut tracker = MemberTracker::default();
        // Listed before any heartbeat: alive, counting from first sight.
        assert_eq!(state_of_b(&mut tracker, ms(0), 1), MemberState::Alive);
        assert!(tracker.record_heartbeat(node("b"), 2, ms(300)));
        assert_eq!(state_of_b(&mut tracker, ms(1_000), 1), MemberState::Alive);
        assert_eq!(state_of_b(&mut tracker, ms(1_100), 1), MemberState::Suspect);
        // The gossiped heartbeat advances (relayed, rounds late): that is
        // no evidence once direct heartbeats were seen.
        assert_eq!(state_of_b(&mut tracker, ms(1_900), 2), MemberState::Dead);
        // A direct heartbeat brings it back at once.
        tracker.record_heartbeat(node("b"), 2, ms(2_000));
        assert_eq!(state_of_b(&mut tracker, ms(2_050), 2), MemberState::Alive);
        // A heartbeat of another incarnation does not count for this one.
        tracker.record_heartbeat(node("b"), 3, ms(3_400));
        assert_eq!(state_of_b(&mut tracker, ms(3_600), 2), MemberState::Dead);
    }

    #[test]
    fn before_its_first_heartbeat_a_member_lives_from_when_it_was_listed() {
        // It died before it heartbeated us: gossip relaying its heartbeat
        // later must not keep it alive.
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut tracker = MemberTracker::default();
        assert_eq!(state_of_b(&mut tracker, ms(0), 1), MemberState::Alive);
        assert_eq!(state_of_b(&mut tracker, ms(1_400), 2), MemberState::Suspect);
        assert_eq!(state_of_b(&mut tracker, ms(1_600), 3), MemberState::Dead);
    }

    #[test]
    fn an_older_node_without_heartbeats_lives_by_its_gossiped_heartbeat() {
        // A peer that sends none (an older version during a rolling
        // upgrade) stays alive while its gossiped heartbeat advances.
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut tracker = MemberTracker::default();
        let old_b = |heartbeat| NodeView {
            keys: HashMap::new(),
            ..view("b", 2, heartbeat)
        };
        let mut state_at = |at: u64, heartbeat: u64| {
            let views = vec![view("a", 1, 1), old_b(heartbeat)];
            let members = tracker.members(ms(at), &id("a", 1), views, SILENCE);
            members
                .iter()
                .find(|m| m.node.as_str() == "b")
                .unwrap()
                .state
        };
        for (at, heartbeat) in [(0, 1), (1_000, 2), (2_000, 3), (3_000, 4)] {
            assert_eq!(state_at(at, heartbeat), MemberState::Alive);
        }
        assert_eq!(state_at(4_600, 4), MemberState::Dead);
    }

    #[test]
    fn heartbeats_from_unlisted_incarnations_are_reported_and_bounded() {
        let now = Instant::now();
        let mut tracker = MemberTracker::default();
        state_of_b(&mut tracker, now, 1);
        assert!(tracker.record_heartbeat(node("b"), 2, now), "listed");
        assert!(
            !tracker.record_heartbeat(node("c"), 9, now),
            "not listed yet"
        );
        // A member inventing generations cannot grow the table.
        for generation in 0..(MAX_HEARTBEAT_SENDERS as u64 * 2) {
            tracker.record_heartbeat(node("evil"), 1_000 + generation, now);
        }
        assert!(tracker.direct.len() <= MAX_HEARTBEAT_SENDERS);
        // Listed members still count when the table is full.
        assert!(tracker.record_heartbeat(node("b"), 2, now + Duration::from_millis(10)));
        assert_eq!(
            tracker.direct[&(node("b"), 2)],
            now + Duration::from_millis(10)
        );
        // Unlisted senders are forgotten once silent for `dead_after`.
        state_of_b(&mut tracker, now + Duration::from_secs(2), 1);
        assert_eq!(tracker.direct.len(), 1);
    }

    #[test]
    fn out_of_turn_exchanges_are_spaced_and_bounded() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut out_of_turn = OutOfTurn::new(Duration::from_millis(500), 2);
        assert!(out_of_turn.admit(addr(1), ms(0)));
        assert!(!out_of_turn.admit(addr(1), ms(499)));
        assert!(out_of_turn.admit(addr(1), ms(500)));
        assert!(out_of_turn.admit(addr(2), ms(600)));
        // Full, and both are recent: refused.
        assert!(!out_of_turn.admit(addr(3), ms(700)));
        // Once one ages out, there is room.
        assert!(out_of_turn.admit(addr(3), ms(1_001)));
    }
}
