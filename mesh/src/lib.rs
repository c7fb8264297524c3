//! # mesh
//!
//! The I/O around `mesh-core`: how gatemesh nodes in several regions find
//! each other, agree on who is alive, share their records, and hand jobs to
//! one another — all over one QUIC endpoint per node with mutual TLS.
//!
//! ## Layout
//! - [`certs`]: the cluster CA, node certificates (`gatemesh certs …`), and
//!   reading a peer's node id and region from its certificate.
//! - [`endpoint`]: the single quinn endpoint (both directions), mTLS against
//!   the cluster CA, one cached connection per peer address.
//! - [`frame`]: versioned, length-prefixed, bounded postcard frames.
//! - [`membership`]: chitchat 0.11.2 over QUIC (anti-entropy every 10 s),
//!   the failure detector on direct heartbeats, the member list.
//! - [`seeds`]: DNS seeds (SRV, then A/AAAA) with hickory.
//! - [`replication`]: per-node records, pushed directly and gossiped.
//! - [`forward`]: request/streamed-response to a named peer, at most once
//!   per request id.
//! - [`load`]: load announcements (jobs in flight), sent at once to every
//!   peer ([`MeshHandle::announce_load`], [`MeshHandle::subscribe_load`]).
//! - [`Mesh::start`] / [`MeshHandle`]: everything wired together.
//! - Fault injection for tests and the local lab:
//!   [`MeshHandle::set_link_filter`] cuts this node off from chosen peers
//!   (a partition without touching the OS).
//!
//! `mesh/ALGORITHM.md` explains gossip, failure detection, generations,
//! tombstone GC, direct push, load announcements and forwarding, with the
//! tuned numbers.
//!
//! ## What this crate is not
//! It does not know what records mean (observations and their merge live in
//! `mesh-core`) nor what forwarded bytes are (jobs live in `node`).

pub mod certs;
pub mod config;
pub mod endpoint;
mod fanout;
pub mod forward;
pub mod frame;
mod handle;
pub mod load;
pub mod membership;
pub mod replication;
pub mod seeds;
mod stats;

pub use certs::{CertError, NodeIdentity, PeerIdentity};
pub use config::{ConfigError, MeshConfig};
pub use endpoint::LinkFilter;
pub use forward::{
    ForwardError, ForwardHandler, ForwardRequest, ForwardResponse, HandlerError, RequestId,
    ResponseStream,
};
pub use handle::{Mesh, MeshError, MeshHandle};
pub use load::{AnnounceError, LoadMessage};
pub use membership::{Member, MemberState};
pub use replication::{Record, RecordError};
pub use stats::MeshStats;
