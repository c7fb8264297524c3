//! [`Mesh::start`] wires the endpoint, chitchat, the poller, the pusher, the
//! heartbeat sender and the DNS seed loop together and returns a
//! [`MeshHandle`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chitchat::{Chitchat, ChitchatHandle, ChitchatId, ChitchatMessage, spawn_chitchat};
use mesh_core::{NodeId, RegionId};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::certs::{NodeIdentity, PeerIdentity};
use crate::config::{ConfigError, DEFAULT_MESH_PORT, MeshConfig};
use crate::endpoint::MeshEndpoint;
use crate::endpoint::{ConnectionHandler, EndpointError, EndpointTiming, LinkFilter, LinkGate};
use crate::fanout;
use crate::forward::{self, ForwardError, ForwardRequest, ForwardResponse, RecentIds, RequestId};
use crate::forward::{ForwardHandler, ResponseStream, ServeContext};
use crate::frame::{self, Frame, MAX_FRAME_BYTES, PushedRecord};
use crate::load::{self, AnnounceError, LoadMessage, MAX_LOAD_ANNOUNCEMENT_BYTES};
use crate::membership::KEY_MESH_ADDR;
use crate::membership::{self, Member, MemberState, MemberTracker, NodeView, QuicTransport};
use crate::membership::{KEY_ADMIN_URL, KEY_API_URL, KEY_HEARTBEATS, KEY_LEAVING, KEY_LOAD};
use crate::membership::{KEY_REGION, KEY_ROUTING_CONFIG, KEY_VERSION, MEMBER_KEYS};
use crate::replication::RecordStore;
use crate::replication::{self, MAX_RECORD_BYTES, RECORD_KEY_PREFIX, Record, RecordError};
use crate::seeds::{self, SeedError, SeedResolver};
use crate::stats::{MeshStats, Stats};

/// How often the member list and gossiped records are re-read from chitchat.
/// 50 ms adds at most that to gossip-path propagation, and one poll copies
/// only node states whose version moved.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Record updates waiting to be pushed. Pushing is an optimisation (gossip
/// delivers too), so overflow is dropped and counted.
const PUSH_QUEUE: usize = 1024;

/// Values per push frame, in bytes: keeps a frame under
/// [`MAX_GOSSIP_FRAME_BYTES`](crate::frame::MAX_GOSSIP_FRAME_BYTES), which receivers enforce on uni streams.
const PUSH_BATCH_BYTES: usize = 48 * 1024;

/// Push sends in flight at once (all peers together); beyond it, drop.
const MAX_INFLIGHT_PUSHES: usize = 256;

/// How long a peer may take to send the first frame of a stream it opened.
const STREAM_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `leave()` waits for the departure notices to go out.
const LEAVE_NOTICE_TIMEOUT: Duration = Duration::from_millis(500);

/// Heartbeat sends in flight at once (all peers together); beyond it, a
/// heartbeat is dropped and counted as a dropped gossip send. 256 is many
/// rounds to peers whose handshakes hang; the next round repairs a drop.
const MAX_INFLIGHT_HEARTBEATS: usize = 256;

/// Dead peers get a heartbeat only every this many rounds: enough for a
/// peer that comes back (or heals from a partition) to hear us within
/// ~1.2 s, without a dial every 300 ms to an address nobody answers.
const DEAD_PEER_HEARTBEAT_EVERY: u64 = 4;

/// Exchanges asked of chitchat out of turn (a heartbeat from an incarnation
/// gossip has not brought yet, a member that became reachable), waiting to
/// be started. A full queue drops: the next heartbeat asks again, and the
/// rounds carry the rest.
const GOSSIP_REQUEST_QUEUE: usize = 64;

/// Out-of-turn exchanges with one address at most this often: a member
/// sending heartbeats under generations nobody lists cannot make us gossip
/// faster than this.
const GOSSIP_REQUEST_MIN_GAP: Duration = Duration::from_millis(500);

/// Addresses whose last out-of-turn exchange is remembered (for the gap).
const MAX_GOSSIP_REQUEST_ADDRS: usize = 1024;

/// How often seeds (static and DNS) are tried while this node has no
/// reachable peer.
const SEED_RETRY_WHILE_ALONE: Duration = Duration::from_secs(1);

/// Errors starting the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The DNS resolver could not be built.
    #[error(transparent)]
    Seeds(#[from] SeedError),
    /// chitchat refused to start.
    #[error("gossip: {0}")]
    Gossip(String),
}

/// Entry point of the mesh.
#[derive(Debug)]
pub struct Mesh;

/// A running mesh node. Cheap to clone; the node stops at [`MeshHandle::leave`],
/// [`MeshHandle::abort`], when `shutdown` completes, or when the last clone drops.
#[derive(Clone)]
pub struct MeshHandle {
    inner: Arc<Inner>,
}

struct Inner {
    identity: PeerIdentity,
    generation: u64,
    local_addr: SocketAddr,
    advertise_addr: SocketAddr,
    endpoint: MeshEndpoint,
    chitchat: Arc<ChitchatHandle>,
    shared: Arc<Shared>,
    members_rx: watch::Receiver<Vec<Member>>,
    push_tx: mpsc::Sender<PushedRecord>,
    load_slots: Arc<Semaphore>,
    next_seq: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
}

/// State the connection handler and background tasks share.
struct Shared {
    local: NodeId,
    gossip_inbound: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    /// Addresses to gossip with out of turn (see [`gossip_request_loop`]).
    gossip_requests: mpsc::Sender<SocketAddr>,
    store: Mutex<RecordStore>,
    tracker: Mutex<MemberTracker>,
    forward_handler: RwLock<Option<ForwardHandler>>,
    recent: Mutex<RecentIds>,
    stats: Arc<Stats>,
    /// Load announcements received, to every subscriber.
    load_events: broadcast::Sender<LoadMessage>,
    /// Fault injection: streams from peers it rejects are dropped unread.
    gate: LinkGate,
}

impl Mesh {
    /// Binds the endpoint, joins the cluster and starts every background
    /// task. When `shutdown` completes the node [leaves](MeshHandle::leave).
    pub async fn start(
        config: MeshConfig,
        identity: NodeIdentity,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<MeshHandle, MeshError> {
        config.validate()?;
        let timing = EndpointTiming {
            keep_alive: Duration::from_millis(config.keep_alive_interval_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        };
        let endpoint = MeshEndpoint::bind(config.listen_addr, &identity, timing)?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| EndpointError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let advertise_addr = config.advertise_addr.unwrap_or(local_addr);
        let generation = next_generation();
        let stats = Arc::new(Stats::default());
        let (gossip_tx, gossip_rx) = mpsc::channel(membership::GOSSIP_INBOUND_QUEUE);
        let (requests_tx, requests_rx) = mpsc::channel(GOSSIP_REQUEST_QUEUE);
        let shared = Arc::new(Shared {
            local: identity.node().clone(),
            gossip_inbound: gossip_tx,
            gossip_requests: requests_tx,
            store: Mutex::new(RecordStore::new()),
            tracker: Mutex::new(MemberTracker::default()),
            forward_handler: RwLock::new(None),
            recent: Mutex::new(RecentIds::default()),
            stats: stats.clone(),
            load_events: broadcast::channel(load::LOAD_EVENT_BUFFER).0,
            gate: endpoint.link_gate(),
        });
        let mut tasks = vec![endpoint.start(Arc::new(shared.clone()))];

        let chitchat_id = ChitchatId::new(identity.node().as_str(), generation, advertise_addr);
        let seeds: Vec<String> = config.seeds.clone();
        let chitchat_config =
            membership::chitchat_config(&config, chitchat_id.clone(), local_addr, seeds);
        let initial_keys = vec![
            (KEY_REGION.to_owned(), identity.region().to_string()),
            (KEY_API_URL.to_owned(), config.api_url.clone()),
            (KEY_ADMIN_URL.to_owned(), config.admin_url.clone()),
            (KEY_MESH_ADDR.to_owned(), advertise_addr.to_string()),
            (KEY_VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            (KEY_LOAD.to_owned(), "0".to_owned()),
            (
                KEY_HEARTBEATS.to_owned(),
                config.heartbeat_interval_ms.to_string(),
            ),
        ];
        let transport = QuicTransport::new(endpoint.clone(), gossip_rx, stats);
        let chitchat = spawn_chitchat(chitchat_config, initial_keys, &transport)
            .await
            .map_err(|e| MeshError::Gossip(e.to_string()))?;
        let chitchat = Arc::new(chitchat);

        let (members_tx, members_rx) = watch::channel(Vec::new());
        tasks.push(tokio::spawn(poll_loop(
            chitchat.chitchat(),
            chitchat_id,
            shared.clone(),
            members_tx,
            membership::Silence {
                suspect_after: Duration::from_millis(config.dead_after_ms / 2),
                dead_after: Duration::from_millis(config.dead_after_ms),
            },
        )));
        tasks.push(tokio::spawn(heartbeat_loop(
            generation,
            endpoint.clone(),
            members_rx.clone(),
            shared.stats.clone(),
            Duration::from_millis(config.heartbeat_interval_ms),
        )));
        tasks.push(tokio::spawn(gossip_request_loop(
            requests_rx,
            Arc::downgrade(&chitchat),
        )));
        let (push_tx, push_rx) = mpsc::channel(PUSH_QUEUE);
        tasks.push(tokio::spawn(push_loop(
            push_rx,
            generation,
            endpoint.clone(),
            members_rx.clone(),
            shared.stats.clone(),
        )));
        if !config.seeds.is_empty() {
            tasks.push(tokio::spawn(static_seed_loop(
                config.seeds.clone(),
                advertise_addr,
                chitchat.clone(),
                members_rx.clone(),
            )));
        }
        if !config.dns_seeds.is_empty() {
            let resolver = match config.dns_nameserver {
                Some(addr) => SeedResolver::with_nameserver(addr)?,
                None => SeedResolver::system()?,
            };
            tasks.push(tokio::spawn(dns_seed_loop(
                resolver,
                config.dns_seeds.clone(),
                Duration::from_millis(config.dns_refresh_interval_ms),
                advertise_addr,
                chitchat.clone(),
                members_rx.clone(),
            )));
        }

        info!(
            node = %identity.node(), region = %identity.region(), generation,
            addr = %advertise_addr, "mesh started"
        );
        let inner = Arc::new(Inner {
            identity: identity.identity().clone(),
            generation,
            local_addr,
            advertise_addr,
            endpoint,
            chitchat,
            shared,
            members_rx,
            push_tx,
            load_slots: Arc::new(Semaphore::new(load::MAX_INFLIGHT_LOAD_SENDS)),
            next_seq: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        tasks.push(tokio::spawn(async move {
            shutdown.await;
            if let Some(inner) = Weak::upgrade(&weak) {
                MeshHandle { inner }.leave().await;
            }
        }));
        *lock(&inner.tasks) = tasks;
        Ok(MeshHandle { inner })
    }
}

impl MeshHandle {
    /// This node's name.
    pub fn node(&self) -> &NodeId {
        &self.inner.identity.node
    }

    /// This node's region.
    pub fn region(&self) -> &RegionId {
        &self.inner.identity.region
    }

    /// This incarnation's generation (start time in ms since the epoch).
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The bound QUIC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address peers dial.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.inner.advertise_addr
    }

    /// Every known node (newest generation per name), this node included.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members_rx.borrow().clone()
    }

    /// A watch on the member list; it changes when membership, states or
    /// published member keys change (not on every heartbeat).
    pub fn subscribe_members(&self) -> watch::Receiver<Vec<Member>> {
        self.inner.members_rx.clone()
    }

    /// Publishes (or replaces) one of this node's records.
    pub async fn publish_record(&self, key: &str, value: &[u8]) -> Result<(), RecordError> {
        replication::validate_key(key)?;
        if value.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: value.len() });
        }
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(RecordError::ShutDown);
        }
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let text = replication::encode_value(self.inner.generation, seq, value);
        let chitchat_key = format!("{RECORD_KEY_PREFIX}{key}");
        self.inner
            .chitchat
            .with_chitchat(|c| c.self_node_state().set(&chitchat_key, &text))
            .await;
        lock(&self.inner.shared.store).accept(Record {
            origin: self.node().clone(),
            generation: self.inner.generation,
            key: key.to_owned(),
            seq,
            value: Bytes::copy_from_slice(value),
        });
        let pushed = PushedRecord {
            key: key.to_owned(),
            seq,
            value: value.to_vec(),
        };
        if self.inner.push_tx.try_send(pushed).is_err() {
            self.inner
                .shared
                .stats
                .push_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Every record known, this node's own included (newest per origin and key).
    pub fn records(&self) -> Vec<Record> {
        lock(&self.inner.shared.store).all()
    }

    /// Every accepted record change from now on, own records included.
    /// A receiver that lags gets `RecvError::Lagged` and should re-read
    /// [`MeshHandle::records`].
    pub fn subscribe_records(&self) -> broadcast::Receiver<Record> {
        lock(&self.inner.shared.store).subscribe()
    }

    /// Publishes this node's in-flight job count.
    pub async fn set_load(&self, in_flight: u64) {
        let value = in_flight.to_string();
        self.inner
            .chitchat
            .with_chitchat(|c| {
                if c.self_node_state().get(KEY_LOAD) != Some(value.as_str()) {
                    c.self_node_state().set(KEY_LOAD, &value);
                }
            })
            .await;
    }

    /// Publishes the digest of this node's routing configuration (opaque to
    /// the mesh; peers see it as [`Member::routing_config`]).
    /// The change starts a gossip exchange with every reachable peer at
    /// once, rather than waiting for the rounds to carry it.
    pub async fn set_routing_config(&self, digest: &str) {
        let changed = self
            .inner
            .chitchat
            .with_chitchat(|c| {
                let changed = c.self_node_state().get(KEY_ROUTING_CONFIG) != Some(digest);
                if changed {
                    c.self_node_state().set(KEY_ROUTING_CONFIG, digest);
                }
                changed
            })
            .await;
        if changed {
            for member in self.members() {
                if !member.is_self && member.state.is_reachable() {
                    self.gossip_with(member.mesh_addr);
                }
            }
        }
    }

    /// Sends a load announcement (opaque bytes, at most
    /// [`MAX_LOAD_ANNOUNCEMENT_BYTES`]) at once to every reachable peer, one
    /// uni stream each. Never waits on the network: the sends run as tasks
    /// (at most [`load::MAX_INFLIGHT_LOAD_SENDS`] at once; beyond that a
    /// send is dropped and counted). Returns how many sends were started.
    pub fn announce_load(&self, bytes: Bytes) -> Result<usize, AnnounceError> {
        if bytes.len() > MAX_LOAD_ANNOUNCEMENT_BYTES {
            return Err(AnnounceError::TooLarge { len: bytes.len() });
        }
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(AnnounceError::ShutDown);
        }
        let encoded = frame::encode(&Frame::Load {
            bytes: bytes.to_vec(),
        })
        .map_err(|e| AnnounceError::Encode(e.to_string()))?;
        let encoded = Bytes::from(encoded);
        let peers: Vec<SocketAddr> = self
            .inner
            .members_rx
            .borrow()
            .iter()
            .filter(|m| !m.is_self && m.state.is_reachable())
            .map(|m| m.mesh_addr)
            .collect();
        Ok(fanout::send_to_peers(
            &self.inner.endpoint,
            &self.inner.load_slots,
            &self.inner.shared.stats,
            &encoded,
            peers,
            &fanout::LOAD,
        ))
    }

    /// Every load announcement peers send from now on. A receiver that
    /// lags more than [`load::LOAD_EVENT_BUFFER`] messages gets
    /// `RecvError::Lagged` (the lost counts are repaired by each peer's
    /// next announcement or refresh).
    pub fn subscribe_load(&self) -> broadcast::Receiver<LoadMessage> {
        self.inner.shared.load_events.subscribe()
    }

    /// Sends `body` to `peer` and streams its response back. Reuse the same
    /// `request_id` when retrying: the peer runs each id at most once.
    pub async fn forward(
        &self,
        peer: &NodeId,
        request_id: RequestId,
        body: Bytes,
        timeout: Duration,
    ) -> Result<ForwardResponse, ForwardError> {
        let addr = self
            .members()
            .into_iter()
            .find(|m| &m.node == peer && !m.is_self && m.state.is_reachable())
            .map(|m| m.mesh_addr)
            .ok_or_else(|| ForwardError::UnknownPeer(peer.clone()))?;
        forward::forward(&self.inner.endpoint, addr, peer, request_id, body, timeout).await
    }

    /// Registers the handler that runs requests forwarded to this node.
    pub fn set_forward_handler(
        &self,
        handler: impl Fn(ForwardRequest) -> ResponseStream + Send + Sync + 'static,
    ) {
        let handler: ForwardHandler = Arc::new(handler);
        *self
            .inner
            .shared
            .forward_handler
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handler);
    }

    /// **Fault injection for tests and the local lab** (never set in
    /// production): while a filter is installed this node exchanges nothing
    /// with the peers it rejects: no gossip, pushes, departure notices or
    /// forwards in either direction (dials and cached connections are
    /// refused, incoming connections and streams dropped). Both sides then
    /// see each other go dead, as in a network partition. `None` heals: the
    /// next gossip round reconnects. To cut a group off symmetrically, set a
    /// filter on every node of both sides.
    pub fn set_link_filter(&self, filter: Option<LinkFilter>) {
        info!(node = %self.node(), set = filter.is_some(), "link filter changed (fault injection)");
        self.inner.endpoint.set_link_filter(filter);
    }

    /// Mesh counters.
    pub fn stats(&self) -> MeshStats {
        self.inner.shared.stats.snapshot()
    }

    /// Asks chitchat to gossip with `addr` now (e.g. a seed learnt late).
    pub fn gossip_with(&self, addr: SocketAddr) {
        if let Err(error) = self.inner.chitchat.gossip(addr) {
            debug!(%error, "gossip request after shutdown");
        }
    }

    /// Announces the departure (a `leaving` key and a direct notice to every
    /// reachable peer, who then list this node as `Left`), then stops.
    pub async fn leave(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner
            .chitchat
            .with_chitchat(|c| c.self_node_state().set(KEY_LEAVING, "1"))
            .await;
        let notice = frame::encode(&Frame::Leave {
            generation: self.inner.generation,
        });
        if let Ok(notice) = notice {
            let sends = self
                .members()
                .into_iter()
                // Every known peer, even one not yet (or no longer) seen
                // alive: a notice to a dead peer just times out.
                .filter(|m| !m.is_self && m.state != MemberState::Left)
                .map(|m| {
                    let endpoint = self.inner.endpoint.clone();
                    let notice = notice.clone();
                    async move { endpoint.send_uni_acked(m.mesh_addr, &notice).await }
                });
            let all = futures_util::future::join_all(sends);
            let _ = tokio::time::timeout(LEAVE_NOTICE_TIMEOUT, all).await;
        }
        info!(node = %self.node(), "left the mesh");
        self.inner.stop();
    }

    /// Stops at once without telling anyone, as a crash would (for tests
    /// and fatal errors). Peers detect it through missing heartbeats.
    pub fn abort(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.stop();
    }
}

impl std::fmt::Debug for MeshHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshHandle")
            .field("node", &self.inner.identity.node)
            .field("generation", &self.inner.generation)
            .field("addr", &self.inner.advertise_addr)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn stop(&self) {
        let _ = self.chitchat.initiate_shutdown();
        self.chitchat.abort();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        self.endpoint.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The handler installed on the endpoint (needs an `Arc` to spawn).
impl ConnectionHandler for Arc<Shared> {
    fn on_connection(&self, connection: quinn::Connection, peer: PeerIdentity) {
        let shared = self.clone();
        let uni_conn = connection.clone();
        let uni_peer = peer.clone();
        tokio::spawn(async move {
            while let Ok(recv) = uni_conn.accept_uni().await {
                let shared = shared.clone();
                let from = uni_conn.remote_address();
                let peer = uni_peer.clone();
                tokio::spawn(async move { shared.serve_uni(from, peer, recv).await });
            }
        });
        let shared = self.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = connection.accept_bi().await {
                let shared = shared.clone();
                let peer = peer.clone();
                tokio::spawn(async move { shared.serve_bi(peer, send, recv).await });
            }
        });
    }
}

impl Shared {
    async fn serve_uni(&self, from: SocketAddr, peer: PeerIdentity, mut recv: quinn::RecvStream) {
        if !self.gate.allows(&peer.node) {
            let _ = recv.stop(2u32.into());
            return;
        }
        let mut counted = frame::CountingReader::new(&mut recv);
        let read = frame::read_uni_frame(&mut counted);
        let frame = tokio::time::timeout(STREAM_FIRST_FRAME_TIMEOUT, read).await;
        let bytes = counted.bytes_read();
        let frame = match frame {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => return self.reject(&mut recv, &peer, &error.to_string()),
            Err(_) => return self.reject(&mut recv, &peer, "no frame in time"),
        };
        let counter = match &frame {
            Frame::Push { .. } => &self.stats.push_bytes_received,
            Frame::Load { .. } => &self.stats.load_bytes_received,
            _ => &self.stats.gossip_bytes_received,
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
        match frame {
            Frame::Gossip { message } => {
                let delivered =
                    membership::deliver_gossip(&self.gossip_inbound, &self.stats, from, &message);
                if let Err(error) = delivered {
                    self.reject(&mut recv, &peer, &error);
                }
            }
            Frame::Push {
                generation,
                records,
            } => self.accept_push(&peer, generation, records),
            Frame::Leave { generation } => {
                info!(peer = %peer.node, generation, "peer announced departure");
                lock(&self.tracker).record_leave(peer.node, generation);
            }
            Frame::Heartbeat { generation } => {
                let known =
                    lock(&self.tracker).record_heartbeat(peer.node, generation, Instant::now());
                if !known {
                    // Gossip has not brought this incarnation yet: ask it
                    // directly rather than wait for the rounds.
                    let _ = self.gossip_requests.try_send(from);
                }
            }
            Frame::Load { bytes } => {
                if bytes.len() > MAX_LOAD_ANNOUNCEMENT_BYTES {
                    self.stats.load_rejected.fetch_add(1, Ordering::Relaxed);
                    let reason = format!("load announcement of {} bytes", bytes.len());
                    return self.reject(&mut recv, &peer, &reason);
                }
                self.stats.load_received.fetch_add(1, Ordering::Relaxed);
                // The sender is the authenticated peer; no subscriber is fine.
                let _ = self.load_events.send(LoadMessage {
                    from: peer.node,
                    bytes: Bytes::from(bytes),
                });
            }
            other => {
                let reason = format!("unexpected {} on a uni stream", forward::frame_name(&other));
                self.reject(&mut recv, &peer, &reason);
            }
        }
    }

    fn accept_push(&self, peer: &PeerIdentity, generation: u64, records: Vec<PushedRecord>) {
        let mut store = lock(&self.store);
        for pushed in records {
            if replication::validate_key(&pushed.key).is_err()
                || pushed.value.len() > MAX_RECORD_BYTES
            {
                self.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The origin is the authenticated sender, never a claimed field.
            let accepted = store.accept(Record {
                origin: peer.node.clone(),
                generation,
                key: pushed.key,
                seq: pushed.seq,
                value: Bytes::from(pushed.value),
            });
            if accepted {
                self.stats.records_accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn serve_bi(
        &self,
        peer: PeerIdentity,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        if !self.gate.allows(&peer.node) {
            let _ = recv.stop(2u32.into());
            let _ = send.reset(2u32.into());
            return;
        }
        let read = frame::read_frame(&mut recv, MAX_FRAME_BYTES);
        let request = match tokio::time::timeout(STREAM_FIRST_FRAME_TIMEOUT, read).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                let _ = send.reset(1u32.into());
                return self.reject(&mut recv, &peer, &error.to_string());
            }
            Err(_) => {
                let _ = send.reset(1u32.into());
                return self.reject(&mut recv, &peer, "no frame in time");
            }
        };
        let handler = self
            .forward_handler
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let context = ServeContext {
            handler,
            recent: &self.recent,
        };
        match forward::serve(context, peer.clone(), send, request).await {
            Ok(true) => {
                self.stats.forwards_served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                self.stats
                    .forwards_duplicate
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => debug!(peer = %peer.node, %error, "forwarded request ended early"),
        }
    }

    /// Closes one stream after a bad frame; the connection and node go on.
    fn reject(&self, recv: &mut quinn::RecvStream, peer: &PeerIdentity, reason: &str) {
        self.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
        warn!(peer = %peer.node, reason, "rejected a stream");
        let _ = recv.stop(1u32.into());
    }
}

/// Re-reads chitchat state: member list, and records that changed.
async fn poll_loop(
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    self_id: ChitchatId,
    shared: Arc<Shared>,
    members_tx: watch::Sender<Vec<Member>>,
    silence: membership::Silence,
) {
    let mut seen_versions: HashMap<ChitchatId, u64> = HashMap::new();
    let mut known_origins: HashSet<NodeId> = HashSet::new();
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut views = Vec::new();
        let mut updates = Vec::new();
        {
            let chitchat = chitchat.lock().await;
            for (id, state) in chitchat.node_states() {
                let keys = MEMBER_KEYS
                    .iter()
                    .filter_map(|&k| state.get(k).map(|v| (k, v.to_owned())))
                    .collect();
                views.push(NodeView {
                    id: id.clone(),
                    heartbeat: u64::from(state.heartbeat()),
                    keys,
                });
                if id == &self_id {
                    continue;
                }
                let seen = seen_versions.get(id).copied().unwrap_or(0);
                if state.max_version() <= seen {
                    continue;
                }
                for (key, value) in state.key_values_including_deleted() {
                    if value.version > seen
                        && !value.is_deleted()
                        && let Some(record_key) = key.strip_prefix(RECORD_KEY_PREFIX)
                    {
                        updates.push((
                            id.node_id.clone(),
                            record_key.to_owned(),
                            value.value.clone(),
                        ));
                    }
                }
                seen_versions.insert(id.clone(), state.max_version());
            }
        }
        seen_versions.retain(|id, _| views.iter().any(|v| &v.id == id));

        let present: HashSet<NodeId> = views
            .iter()
            .filter_map(|v| NodeId::new(&*v.id.node_id).ok())
            .collect();
        {
            let mut store = lock(&shared.store);
            for (node, key, text) in updates {
                let Ok(origin) = NodeId::new(&*node) else {
                    continue;
                };
                match replication::decode_value(origin, &key, &text) {
                    Some(record) => {
                        if store.accept(record) {
                            shared
                                .stats
                                .records_accepted
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => debug!(origin = %node, key, "undecodable gossiped record"),
                }
            }
            // Forget the records of nodes chitchat garbage-collected.
            let gone: HashSet<&NodeId> = known_origins.difference(&present).collect();
            if !gone.is_empty() {
                store.retain_origins(|origin| !gone.contains(origin) || origin == &shared.local);
            }
        }
        known_origins = present;

        let members = lock(&shared.tracker).members(Instant::now(), &self_id, views, silence);
        // A member that became reachable (joined, or came back from a crash
        // or a partition) missed what changed meanwhile: exchange state with
        // it now rather than at the next rounds.
        {
            let before = members_tx.borrow();
            for member in &members {
                let was_reachable = before.iter().any(|m| {
                    m.node == member.node
                        && m.generation == member.generation
                        && m.state.is_reachable()
                });
                if !member.is_self && member.state.is_reachable() && !was_reachable {
                    let _ = shared.gossip_requests.try_send(member.mesh_addr);
                }
            }
        }
        members_tx.send_if_modified(|current| {
            let differs = current.len() != members.len()
                || current.iter().zip(&members).any(|(a, b)| {
                    (
                        a.state,
                        a.generation,
                        &a.region,
                        a.load,
                        &a.api_url,
                        &a.version,
                    ) != (
                        b.state,
                        b.generation,
                        &b.region,
                        b.load,
                        &b.api_url,
                        &b.version,
                    ) || (&a.node, &a.admin_url, a.mesh_addr)
                        != (&b.node, &b.admin_url, b.mesh_addr)
                });
            *current = members;
            differs
        });
    }
}

/// Sends batches of this node's changed records to every reachable peer.
async fn push_loop(
    mut queue: mpsc::Receiver<PushedRecord>,
    generation: u64,
    endpoint: MeshEndpoint,
    members: watch::Receiver<Vec<Member>>,
    stats: Arc<Stats>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INFLIGHT_PUSHES));
    while let Some(first) = queue.recv().await {
        let mut bytes = first.value.len();
        let mut batch: HashMap<String, PushedRecord> = HashMap::new();
        batch.insert(first.key.clone(), first);
        while bytes < PUSH_BATCH_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            bytes += next.value.len();
            batch.insert(next.key.clone(), next);
        }
        let frame = Frame::Push {
            generation,
            records: batch.into_values().collect(),
        };
        let Ok(encoded) = frame::encode(&frame) else {
            continue;
        };
        let encoded = Bytes::from(encoded);
        let peers: Vec<SocketAddr> = members
            .borrow()
            .iter()
            .filter(|m| !m.is_self && m.state.is_reachable())
            .map(|m| m.mesh_addr)
            .collect();
        fanout::send_to_peers(&endpoint, &slots, &stats, &encoded, peers, &fanout::PUSH);
    }
}

/// Sends this node's heartbeat to every known peer each `interval` (to dead
/// ones every [`DEAD_PEER_HEARTBEAT_EVERY`] rounds; not to those that left).
/// Each goes on its own uni stream and never waits on the network here.
async fn heartbeat_loop(
    generation: u64,
    endpoint: MeshEndpoint,
    members: watch::Receiver<Vec<Member>>,
    stats: Arc<Stats>,
    interval: Duration,
) {
    let Ok(encoded) = frame::encode(&Frame::Heartbeat { generation }) else {
        return;
    };
    let encoded = Bytes::from(encoded);
    let slots = Arc::new(Semaphore::new(MAX_INFLIGHT_HEARTBEATS));
    let mut ticker = tokio::time::interval(interval);
    // After a pause, beat at once (the gap must stay short), then keep time.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        ticker.tick().await;
        let peers: Vec<SocketAddr> = members
            .borrow()
            .iter()
            .filter(|m| !m.is_self && m.state != MemberState::Left)
            .filter(|m| m.state.is_reachable() || round % DEAD_PEER_HEARTBEAT_EVERY == 0)
            .map(|m| m.mesh_addr)
            .collect();
        fanout::send_to_peers(
            &endpoint,
            &slots,
            &stats,
            &encoded,
            peers,
            &fanout::HEARTBEAT,
        );
    }
}

/// Starts the gossip exchanges asked for out of turn, as
/// [`membership::OutOfTurn`] admits them. Ends with chitchat.
async fn gossip_request_loop(
    mut requests: mpsc::Receiver<SocketAddr>,
    chitchat: Weak<ChitchatHandle>,
) {
    let mut admitted = membership::OutOfTurn::new(GOSSIP_REQUEST_MIN_GAP, MAX_GOSSIP_REQUEST_ADDRS);
    while let Some(addr) = requests.recv().await {
        if !admitted.admit(addr, Instant::now()) {
            continue;
        }
        let Some(chitchat) = chitchat.upgrade() else {
            return;
        };
        if chitchat.gossip(addr).is_err() {
            return;
        }
    }
}

/// Resolves the DNS seeds and asks chitchat to gossip with each address.
async fn dns_seed_loop(
    resolver: SeedResolver,
    names: Vec<String>,
    refresh: Duration,
    self_addr: SocketAddr,
    chitchat: Arc<ChitchatHandle>,
    members: watch::Receiver<Vec<Member>>,
) {
    loop {
        for name in &names {
            for addr in resolver.resolve(name, DEFAULT_MESH_PORT).await {
                if addr != self_addr && !seeds::is_unusable(&addr) {
                    let _ = chitchat.gossip(addr);
                }
            }
        }
        tokio::time::sleep(if alone(&members) {
            SEED_RETRY_WHILE_ALONE
        } else {
            refresh
        })
        .await;
    }
}

/// Whether this node lists no reachable peer (at start, or cut off).
fn alone(members: &watch::Receiver<Vec<Member>>) -> bool {
    !members
        .borrow()
        .iter()
        .any(|m| !m.is_self && m.state.is_reachable())
}

/// While this node has no reachable peer (at start, or cut off), asks
/// chitchat every second to gossip with each static seed. chitchat's own
/// rounds reach seeds too, but only every `gossip_interval_ms` (and its
/// first round may come before it resolved them): joining must not wait.
async fn static_seed_loop(
    seeds: Vec<String>,
    self_addr: SocketAddr,
    chitchat: Arc<ChitchatHandle>,
    members: watch::Receiver<Vec<Member>>,
) {
    loop {
        if alone(&members) {
            for seed in &seeds {
                let Ok(addrs) = tokio::net::lookup_host(seed.as_str()).await else {
                    debug!(seed, "static seed does not resolve");
                    continue;
                };
                for addr in addrs {
                    if addr != self_addr && !seeds::is_unusable(&addr) {
                        let _ = chitchat.gossip(addr);
                    }
                }
            }
        }
        tokio::time::sleep(SEED_RETRY_WHILE_ALONE).await;
    }
}

/// A generation strictly greater than any this process handed out before,
/// and normally the start time in ms (so it grows across restarts too).
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = now_ms.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
