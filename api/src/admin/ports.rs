//! What the admin API needs from the rest of the node: cluster membership,
//! the merged view, the blocklist and a log of notable events. `node`
//! implements [`ClusterAdmin`] (over `mesh` and the view) and usually uses
//! [`EventRing`](super::EventRing) for [`EventLog`]; tests use fakes.

use std::time::{SystemTime, UNIX_EPOCH};

use mesh_core::{NodeId, OrchestratorId, RegionId, ViewSnapshot};
use serde::Serialize;

use super::AdminError;

/// Cluster state and operator actions.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// This node and every member it knows of.
    fn cluster(&self) -> ClusterReport;

    /// A snapshot of the merged view (the one routing reads).
    fn view(&self) -> ViewSnapshot;

    /// Adds an orchestrator to the cluster-wide blocklist. Blocking an
    /// orchestrator that is already blocked succeeds.
    fn block(&self, orchestrator: OrchestratorId) -> Result<(), AdminError>;

    /// Removes an orchestrator from the blocklist. Unblocking one that is not
    /// blocked succeeds.
    fn unblock(&self, orchestrator: &OrchestratorId) -> Result<(), AdminError>;

    /// The blocklist as of now (sorted). The default reads it from
    /// [`Self::view`]; override it when snapshots lag behind edits.
    fn blocklist(&self) -> Vec<OrchestratorId> {
        self.view().blocked().to_vec()
    }

    /// Unix time in ms. Fakes override it to make ages deterministic.
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Recent notable events, newest last.
pub trait EventLog: Send + Sync + 'static {
    /// At most the log's capacity of the most recent events, oldest first.
    fn recent(&self) -> Vec<Event>;
}

/// Answer of [`ClusterAdmin::cluster`] and body of `GET /admin/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    /// This node.
    pub node: NodeId,
    /// This node's region.
    pub region: RegionId,
    /// Every known member, this node included (`is_self`).
    pub members: Vec<MemberRow>,
}

/// One cluster member as the admin API shows it. `node` converts
/// `mesh::Member` into this (the `api` crate does not link `mesh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// Node name.
    pub node: NodeId,
    /// Its region, if it published a valid one.
    pub region: Option<RegionId>,
    /// Liveness as this node sees it.
    pub state: MemberState,
    /// Milliseconds since its heartbeat last advanced (`None`: never, or self).
    pub last_heard_ms_ago: Option<u64>,
    /// Incarnation: the node's start time, unix ms.
    pub generation: u64,
    /// Its gatemesh version.
    pub version: Option<String>,
    /// Its public API URL.
    pub api_url: Option<String>,
    /// Its admin URL.
    pub admin_url: Option<String>,
    /// In-flight jobs it last reported.
    pub load: Option<u64>,
    /// Digest of its routing configuration (`[[offer]]`, `[pools]`,
    /// `[pricing]`, `[[tenants]]`, `[[rate_cards]]`); `None` before it
    /// published one (or on a version that does not).
    pub routing_config: Option<String>,
    /// Whether this row is the local node.
    pub is_self: bool,
}

/// A member's liveness (mirrors `mesh::MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heartbeats arrive.
    Alive,
    /// Not heard from for a while; still routed to.
    Suspect,
    /// Declared dead by the failure detector.
    Dead,
    /// Announced its departure.
    Left,
}

impl MemberState {
    /// Every state, for metrics that report zero counts too.
    pub const ALL: [Self; 4] = [Self::Alive, Self::Suspect, Self::Dead, Self::Left];

    /// The JSON and metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }
}

/// Something an operator should see on the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened, unix ms.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The node it is about (or that reported it).
    pub node: Option<NodeId>,
    /// The region it is about.
    pub region: Option<RegionId>,
    /// The orchestrator it is about.
    pub orchestrator: Option<OrchestratorId>,
    /// One line for humans.
    pub message: String,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job moved to another orchestrator of this region.
    FailoverInRegion,
    /// A job moved to an orchestrator observed by another region.
    FailoverCrossRegion,
    /// A job was forwarded to a node of another region.
    Forwarded,
    /// An orchestrator was ejected.
    Ejected,
    /// An ejected orchestrator became usable again.
    Recovered,
    /// An orchestrator was put on the blocklist.
    Blocked,
    /// An orchestrator was taken off the blocklist.
    Unblocked,
    /// A node joined (or came back).
    MemberJoined,
    /// A node became suspect.
    MemberSuspect,
    /// A node was declared dead.
    MemberDead,
    /// A node left.
    MemberLeft,
}

impl EventKind {
    /// The JSON value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailoverInRegion => "failover_in_region",
            Self::FailoverCrossRegion => "failover_cross_region",
            Self::Forwarded => "forwarded",
            Self::Ejected => "ejected",
            Self::Recovered => "recovered",
            Self::Blocked => "blocked",
            Self::Unblocked => "unblocked",
            Self::MemberJoined => "member_joined",
            Self::MemberSuspect => "member_suspect",
            Self::MemberDead => "member_dead",
            Self::MemberLeft => "member_left",
        }
    }
}
