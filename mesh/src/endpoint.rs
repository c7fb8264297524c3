//! The node's single QUIC endpoint: mutual TLS against the cluster CA, one
//! cached connection per peer address, and an accept loop that hands every
//! connection (incoming or dialled) to one [`ConnectionHandler`].
//!
//! One endpoint serves both directions, so a peer's `remote_address()` is its
//! mesh address and chitchat's "reply to the sender" works unchanged.
//!
//! **Fault injection** (tests and the local lab only): a [`LinkFilter`]
//! installed with [`MeshEndpoint::set_link_filter`] (or
//! `MeshHandle::set_link_filter`) cuts this node off from every peer it
//! rejects, in both directions: dials and cached connections to such a peer
//! fail, its incoming connections are closed after the handshake, and streams
//! it opened on an older connection are dropped unread. That emulates a
//! network partition without touching the OS. Production code never sets one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use mesh_core::NodeId;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::server::WebPkiClientVerifier;
use tracing::{debug, warn};

use crate::certs::{MESH_SERVER_NAME, NodeIdentity, PeerIdentity, peer_identity_from_der};

/// ALPN of the mesh protocol.
pub const ALPN: &[u8] = b"gatemesh/1";

/// How long a dial may take before we give up on it. A WAN handshake is one
/// or two round trips (≤ 600 ms intercontinental); anything slower is a dead
/// or unreachable peer, and a pending dial holds a send slot.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Concurrent streams a peer may open towards us, per connection and
/// direction. Gossip uses one uni stream per message (≈30/s per peer at a
/// 100 ms interval) and every forwarded job one bi stream; quinn's default of
/// 100 would make `open_*` wait under load.
const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Fault injection: returns whether this node may exchange traffic with the
/// peer node. See the module docs; for tests and the local lab only.
pub type LinkFilter = Arc<dyn Fn(&NodeId) -> bool + Send + Sync>;

/// The installed [`LinkFilter`], shared by the endpoint and the stream
/// handlers. Cheap to clone; no filter means every peer is allowed.
#[derive(Clone, Default)]
pub(crate) struct LinkGate {
    filter: Arc<RwLock<Option<LinkFilter>>>,
}

impl LinkGate {
    /// Whether traffic with `node` is allowed.
    pub(crate) fn allows(&self, node: &NodeId) -> bool {
        match self
            .filter
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            Some(filter) => filter(node),
            None => true,
        }
    }

    /// Whether a filter is installed (the common case, none, costs nothing).
    fn is_set(&self) -> bool {
        self.filter
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    fn set(&self, filter: Option<LinkFilter>) {
        *self
            .filter
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = filter;
    }
}

impl std::fmt::Debug for LinkGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkGate")
            .field("set", &self.is_set())
            .finish()
    }
}

/// Transport timing, from [`crate::MeshConfig`].
#[derive(Debug, Clone, Copy)]
pub struct EndpointTiming {
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// QUIC idle timeout: a connection silent this long is dead.
    pub idle_timeout: Duration,
}

impl Default for EndpointTiming {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors binding the endpoint or reaching a peer.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS configuration failed (bad key, bad CA).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The dial could not start (e.g. endpoint closed).
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The peer address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The handshake failed or the connection broke.
    #[error("connection to {addr}: {source}")]
    Connection {
        /// The peer address.
        addr: SocketAddr,
        /// The QUIC error.
        source: quinn::ConnectionError,
    },
    /// Opening or writing a stream failed.
    #[error("stream to {addr}: {reason}")]
    Stream {
        /// The peer address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The handshake did not finish within the connect timeout.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// The link filter (fault injection) cuts this node off from the peer.
    #[error("link to {node} at {addr} is cut by the link filter")]
    Filtered {
        /// The peer address.
        addr: SocketAddr,
        /// The peer node.
        node: NodeId,
    },
    /// The peer's certificate has no gatemesh identity.
    #[error("peer {addr} has no usable identity: {reason}")]
    Identity {
        /// The peer address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Receives every established connection, incoming or dialled, once.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Called once per connection, after the handshake and identity check.
    /// Must not block: spawn the stream loops.
    fn on_connection(&self, connection: quinn::Connection, peer: PeerIdentity);
}

/// The node's QUIC endpoint. Cheap to clone.
#[derive(Clone)]
pub struct MeshEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    connections: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    handler: OnceLock<Arc<dyn ConnectionHandler>>,
    gate: LinkGate,
}

impl MeshEndpoint {
    /// Binds the endpoint on `addr` with this node's identity. Nothing is
    /// accepted until [`MeshEndpoint::start`] is called.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        timing: EndpointTiming,
    ) -> Result<Self, EndpointError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_error = |e: &dyn std::fmt::Display| EndpointError::Tls(e.to_string());

        let verifier =
            WebPkiClientVerifier::builder_with_provider(identity.ca_roots(), provider.clone())
                .build()
                .map_err(|e| tls_error(&e))?;
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain(), identity.key())
            .map_err(|e| tls_error(&e))?;
        server_tls.alpn_protocols = vec![ALPN.to_vec()];

        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(&e))?
            .with_root_certificates(identity.ca_roots())
            .with_client_auth_cert(identity.chain(), identity.key())
            .map_err(|e| tls_error(&e))?;
        client_tls.alpn_protocols = vec![ALPN.to_vec()];

        let transport = Arc::new(transport_config(timing)?);
        let server_crypto = QuicServerConfig::try_from(server_tls).map_err(|e| tls_error(&e))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport.clone());
        let client_crypto = QuicClientConfig::try_from(client_tls).map_err(|e| tls_error(&e))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);

        let endpoint = quinn::Endpoint::server(server_config, addr)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                client_config,
                connections: Mutex::new(HashMap::new()),
                handler: OnceLock::new(),
                gate: LinkGate::default(),
            }),
        })
    }

    /// Installs the connection handler and spawns the accept loop. Returns
    /// the accept loop's task.
    pub fn start(&self, handler: Arc<dyn ConnectionHandler>) -> tokio::task::JoinHandle<()> {
        let _ = self.inner.handler.set(handler);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(incoming) = this.inner.endpoint.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    match incoming.await {
                        Ok(connection) => {
                            if let Err(error) = this.adopt(connection, true) {
                                debug!(peer = %remote, %error, "rejected incoming connection");
                            }
                        }
                        Err(error) => {
                            debug!(peer = %remote, %error, "incoming handshake failed");
                        }
                    }
                });
            }
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Fault injection (tests and the local lab): from now on, exchange no
    /// traffic with peers `filter` rejects; `None` heals every link. Cached
    /// connections to rejected peers are closed at once.
    pub fn set_link_filter(&self, filter: Option<LinkFilter>) {
        self.inner.gate.set(filter);
        let cut: Vec<quinn::Connection> = lock(&self.inner.connections)
            .values()
            .filter(|c| {
                peer_identity(c)
                    .map(|peer| !self.inner.gate.allows(&peer.node))
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        for connection in cut {
            self.forget(&connection);
            connection.close(2u32.into(), b"link filtered");
        }
    }

    /// The gate the stream handlers consult.
    pub(crate) fn link_gate(&self) -> LinkGate {
        self.inner.gate.clone()
    }

    /// Refuses (and closes) `connection` if the link filter rejects its peer.
    fn check_gate(&self, connection: &quinn::Connection) -> Result<(), EndpointError> {
        if !self.inner.gate.is_set() {
            return Ok(());
        }
        let addr = connection.remote_address();
        match peer_identity(connection) {
            Ok(peer) if !self.inner.gate.allows(&peer.node) => {
                self.forget(connection);
                connection.close(2u32.into(), b"link filtered");
                Err(EndpointError::Filtered {
                    addr,
                    node: peer.node,
                })
            }
            _ => Ok(()),
        }
    }

    /// Returns the cached connection to `addr`, or dials one.
    pub async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, EndpointError> {
        if let Some(connection) = self.cached(addr) {
            self.check_gate(&connection)?;
            return Ok(connection);
        }
        let connecting = self
            .inner
            .endpoint
            .connect_with(self.inner.client_config.clone(), addr, MESH_SERVER_NAME)
            .map_err(|e| EndpointError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| EndpointError::Timeout(addr))?
            .map_err(|source| EndpointError::Connection { addr, source })?;
        // Another task may have connected meanwhile; keep theirs.
        if let Some(existing) = self.cached(addr) {
            connection.close(0u32.into(), b"duplicate");
            self.check_gate(&existing)?;
            return Ok(existing);
        }
        self.adopt(connection.clone(), false)?;
        Ok(connection)
    }

    /// Sends `bytes` on a fresh uni stream to `addr` (dialling if needed).
    /// On failure the connection is dropped from the cache.
    pub async fn send_uni(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), EndpointError> {
        self.send_uni_inner(addr, bytes, false).await
    }

    /// Like [`MeshEndpoint::send_uni`], but returns only once the peer
    /// acknowledged the data (use before closing the endpoint).
    pub async fn send_uni_acked(
        &self,
        addr: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), EndpointError> {
        self.send_uni_inner(addr, bytes, true).await
    }

    async fn send_uni_inner(
        &self,
        addr: SocketAddr,
        bytes: &[u8],
        wait_for_ack: bool,
    ) -> Result<(), EndpointError> {
        let connection = self.connection(addr).await?;
        let result = async {
            let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
            stream.write_all(bytes).await.map_err(|e| e.to_string())?;
            stream.finish().map_err(|e| e.to_string())?;
            if wait_for_ack {
                stream.stopped().await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }
        .await;
        result.map_err(|reason| {
            self.forget(&connection);
            EndpointError::Stream { addr, reason }
        })
    }

    /// Drops `connection` from the cache (after an error on it).
    pub fn forget(&self, connection: &quinn::Connection) {
        let addr = connection.remote_address();
        let mut map = lock(&self.inner.connections);
        if map
            .get(&addr)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            map.remove(&addr);
        }
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        lock(&self.inner.connections).clear();
        self.inner.endpoint.close(0u32.into(), b"shutdown");
    }

    fn cached(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let mut map = lock(&self.inner.connections);
        match map.get(&addr) {
            Some(c) if c.close_reason().is_none() => Some(c.clone()),
            Some(_) => {
                map.remove(&addr);
                None
            }
            None => None,
        }
    }

    /// Checks the peer identity, caches the connection (unless a healthy one
    /// to the same address exists) and hands it to the handler.
    fn adopt(&self, connection: quinn::Connection, incoming: bool) -> Result<(), EndpointError> {
        let addr = connection.remote_address();
        let peer = match peer_identity(&connection) {
            Ok(peer) => peer,
            Err(reason) => {
                connection.close(1u32.into(), b"no identity");
                return Err(EndpointError::Identity { addr, reason });
            }
        };
        if !self.inner.gate.allows(&peer.node) {
            connection.close(2u32.into(), b"link filtered");
            return Err(EndpointError::Filtered {
                addr,
                node: peer.node,
            });
        }
        {
            let mut map = lock(&self.inner.connections);
            let healthy = map.get(&addr).is_some_and(|c| c.close_reason().is_none());
            if !healthy {
                map.insert(addr, connection.clone());
            }
        }
        debug!(peer = %addr, node = %peer.node, incoming, "mesh connection established");
        match self.inner.handler.get() {
            Some(handler) => handler.on_connection(connection, peer),
            None => warn!(peer = %addr, "connection before the endpoint was started"),
        }
        Ok(())
    }
}

impl std::fmt::Debug for MeshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEndpoint")
            .field("local_addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// The verified identity of the peer on `connection`.
pub fn peer_identity(connection: &quinn::Connection) -> Result<PeerIdentity, String> {
    let certs = connection
        .peer_identity()
        .ok_or_else(|| "no peer certificate".to_owned())?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| "unexpected peer identity type".to_owned())?;
    let leaf = certs
        .first()
        .ok_or_else(|| "empty certificate chain".to_owned())?;
    peer_identity_from_der(leaf).map_err(|e| e.to_string())
}

fn transport_config(timing: EndpointTiming) -> Result<quinn::TransportConfig, EndpointError> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(timing.keep_alive))
        .max_idle_timeout(Some(
            timing
                .idle_timeout
                .try_into()
                .map_err(|_| EndpointError::Tls("idle timeout out of range".into()))?,
        ))
        .max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into())
        .max_concurrent_uni_streams(MAX_CONCURRENT_STREAMS.into())
        .datagram_receive_buffer_size(None);
    Ok(transport)
}

/// Locks a std mutex, recovering from poisoning (the maps stay consistent:
/// every critical section is a single insert/remove).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_gate_allows_everyone_until_a_filter_is_set() {
        let gate = LinkGate::default();
        let a = NodeId::new("a").unwrap();
        let b = NodeId::new("b").unwrap();
        assert!(!gate.is_set());
        assert!(gate.allows(&a) && gate.allows(&b));
        let cut = b.clone();
        gate.set(Some(Arc::new(move |node: &NodeId| node != &cut)));
        assert!(gate.is_set());
        assert!(gate.allows(&a));
        assert!(!gate.allows(&b));
        // Clones share the filter (the endpoint and the stream handlers).
        let shared = gate.clone();
        gate.set(None);
        assert!(shared.allows(&b));
    }
}
