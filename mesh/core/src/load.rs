//! Jobs in flight, announced directly to peers.
//!
//! Routing needs to know how busy an orchestrator is *now*: in a region the
//! fastest orchestrators' slots turn over every few tens of milliseconds,
//! faster than observation records travel (they are coalesced and gossiped,
//! ~100 ms). So each node keeps a [`LoadLedger`] of its own jobs in flight
//! and, whenever a count changes, sends the changed counts straight to every
//! peer as a small [`LoadAnnouncement`] (absolute counts, not deltas, so a
//! lost or reordered announcement is repaired by the next one). Every
//! [`LoadLedger::refresh_interval_ms`] a node with work in flight re-sends
//! its whole table. Receivers keep a [`LoadBoard`] per peer and drop a peer
//! that has gone quiet for [`LoadBoard::max_silence_ms`] while it had jobs
//! in flight, or that left the cluster.
//!
//! A node routes with its own exact counts plus the board's totals
//! (`LocalState::in_flight` with `in_flight_includes_peers`), instead of
//! the gossiped counts in the snapshot.
//!
//! Everything here is bounded: announcements and per-peer tables hold at
//! most [`MAX_LOAD_ENTRIES`] orchestrators, the board at most
//! [`MAX_LOAD_PEERS`] peers.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::id::{NodeId, OrchestratorId};

/// Format byte in front of an encoded announcement.
pub const LOAD_FORMAT_VERSION: u8 = 1;

/// Most orchestrators in one announcement or one peer's table: a node never
/// runs jobs on more orchestrators than its view holds.
pub const MAX_LOAD_ENTRIES: usize = crate::view::MAX_ORCHESTRATORS;

/// Most peers on a board (a cluster is a few dozen nodes; this only stops a
/// flood of identities from growing memory).
pub const MAX_LOAD_PEERS: usize = 1_024;

/// Largest encoded announcement: [`MAX_LOAD_ENTRIES`] entries of an id of at
/// most 256 bytes (plus its length) and a count, with room to spare
/// (1,024 × 264 B ≈ 270 KB). It bounds what a peer can make a node buffer
/// per stream.
pub const MAX_LOAD_ANNOUNCEMENT_BYTES: usize = 300 * 1_024;

/// A node's jobs in flight on some orchestrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadAnnouncement {
    /// The sender's generation: a restarted node starts a new table.
    pub generation: u64,
    /// Increases with every announcement within a generation.
    pub seq: u64,
    /// The whole table: orchestrators not listed have nothing in flight.
    pub complete: bool,
    /// Absolute counts (0 = nothing in flight any more).
    pub counts: Vec<(OrchestratorId, u32)>,
}

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// No bytes.
    #[error("empty load announcement")]
    Empty,
    /// A format this build does not speak.
    #[error("unknown load announcement format {0}")]
    UnknownVersion(u8),
    /// Over [`MAX_LOAD_ANNOUNCEMENT_BYTES`].
    #[error("load announcement of {0} bytes is too large")]
    TooLarge(usize),
    /// Not a valid announcement.
    #[error("malformed load announcement: {0}")]
    Codec(String),
    /// Bytes after the announcement.
    #[error("{0} trailing bytes after the load announcement")]
    TrailingBytes(usize),
    /// More than [`MAX_LOAD_ENTRIES`] orchestrators.
    #[error("load announcement lists {0} orchestrators (limit {MAX_LOAD_ENTRIES})")]
    TooManyEntries(usize),
    /// The board already holds [`MAX_LOAD_PEERS`] peers.
    #[error("load board is full ({MAX_LOAD_PEERS} peers)")]
    TooManyPeers,
}

impl LoadAnnouncement {
    /// Encodes with a leading format byte.
    pub fn encode(&self) -> Result<Vec<u8>, LoadError> {
        if self.counts.len() > MAX_LOAD_ENTRIES {
            return Err(LoadError::TooManyEntries(self.counts.len()));
        }
        let mut out = vec![LOAD_FORMAT_VERSION];
        out = postcard::to_extend(self, out).map_err(|e| LoadError::Codec(e.to_string()))?;
        if out.len() > MAX_LOAD_ANNOUNCEMENT_BYTES {
            return Err(LoadError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decodes an announcement from a peer. Any input yields an
    /// announcement or an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, LoadError> {
        if bytes.len() > MAX_LOAD_ANNOUNCEMENT_BYTES {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        let (&format, body) = bytes.split_first().ok_or(LoadError::Empty)?;
        if format != LOAD_FORMAT_VERSION {
            return Err(LoadError::UnknownVersion(format));
        }
        let (announcement, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|e| LoadError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(LoadError::TrailingBytes(rest.len()));
        }
        if announcement.counts.len() > MAX_LOAD_ENTRIES {
            return Err(LoadError::TooManyEntries(announcement.counts.len()));
        }
        Ok(announcement)
    }
}

/// The sending side: this node's counts and what changed since the last
/// announcement.
#[derive(Debug, Clone)]
pub struct LoadLedger {
    generation: u64,
    seq: u64,
    counts: HashMap<OrchestratorId, u32>,
    changed: BTreeSet<OrchestratorId>,
    refresh_interval_ms: u64,
    last_complete_ms: u64,
    /// Something changed or was in flight since the last complete table.
    active_since_complete: bool,
}

impl LoadLedger {
    /// Re-send the whole table this often while jobs are in flight: bounds
    /// how long a lost announcement leaves a peer wrong.
    pub const DEFAULT_REFRESH_INTERVAL_MS: u64 = 1_000;

    /// An empty ledger for this node's `generation`.
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            seq: 0,
            counts: HashMap::new(),
            changed: BTreeSet::new(),
            refresh_interval_ms: Self::DEFAULT_REFRESH_INTERVAL_MS,
            last_complete_ms: 0,
            active_since_complete: false,
        }
    }

    /// How often a busy node re-sends its whole table.
    pub fn refresh_interval_ms(&self) -> u64 {
        self.refresh_interval_ms
    }

    /// This node now has `in_flight` jobs on `orchestrator`.
    pub fn set(&mut self, orchestrator: &OrchestratorId, in_flight: u32) {
        let old = if in_flight == 0 {
            self.counts.remove(orchestrator).unwrap_or(0)
        } else {
            let entries = self.counts.len();
            match self.counts.entry(orchestrator.clone()) {
                Entry::Occupied(mut e) => std::mem::replace(e.get_mut(), in_flight),
                Entry::Vacant(e) => {
                    if entries >= MAX_LOAD_ENTRIES {
                        // Cannot happen with a bounded view; announcing a
                        // partial table is better than growing without bound.
                        return;
                    }
                    e.insert(in_flight);
                    0
                }
            }
        };
        if old != in_flight && self.changed.len() < MAX_LOAD_ENTRIES {
            self.changed.insert(orchestrator.clone());
            self.active_since_complete = true;
        }
    }

    /// This node's count on `orchestrator`.
    pub fn get(&self, orchestrator: &OrchestratorId) -> u32 {
        self.counts.get(orchestrator).copied().unwrap_or(0)
    }

    /// Whether counts changed since the last announcement.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// What to send now, if anything: the whole table when a refresh is
    /// due (every [`Self::refresh_interval_ms`] while jobs were in flight),
    /// else the changed counts.
    pub fn announcement(&mut self, now_ms: u64) -> Option<LoadAnnouncement> {
        let refresh_due = now_ms.saturating_sub(self.last_complete_ms) >= self.refresh_interval_ms
            && (self.active_since_complete || !self.counts.is_empty());
        if refresh_due {
            self.seq += 1;
            self.changed.clear();
            self.last_complete_ms = now_ms;
            self.active_since_complete = !self.counts.is_empty();
            let mut counts: Vec<(OrchestratorId, u32)> =
                self.counts.iter().map(|(o, &n)| (o.clone(), n)).collect();
            counts.sort_unstable();
            return Some(LoadAnnouncement {
                generation: self.generation,
                seq: self.seq,
                complete: true,
                counts,
            });
        }
        if self.changed.is_empty() {
            return None;
        }
        self.seq += 1;
        let counts = std::mem::take(&mut self.changed)
            .into_iter()
            .map(|o| {
                let n = self.get(&o);
                (o, n)
            })
            .collect();
        Some(LoadAnnouncement {
            generation: self.generation,
            seq: self.seq,
            complete: false,
            counts,
        })
    }
}

#[derive(Debug, Clone)]
struct PeerLoad {
    generation: u64,
    /// Per orchestrator: the count and the announcement it came from.
    counts: HashMap<OrchestratorId, (u32, u64)>,
    heard_ms: u64,
}

/// What [`LoadBoard::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadApplied {
    /// Counts were updated.
    Updated,
    /// From an older generation of the peer: ignored.
    Stale,
}

/// The receiving side: every peer's announced counts and their sums.
#[derive(Debug, Clone)]
pub struct LoadBoard {
    peers: HashMap<NodeId, PeerLoad>,
    totals: HashMap<OrchestratorId, u32>,
    max_silence_ms: u64,
}

impl Default for LoadBoard {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SILENCE_MS)
    }
}

impl LoadBoard {
    /// A busy peer re-sends its table every second; three missed refreshes
    /// mean it is gone or cut off, and its counts no longer hold.
    pub const DEFAULT_MAX_SILENCE_MS: u64 = 3_000;

    /// An empty board that forgets peers silent for `max_silence_ms`.
    pub fn new(max_silence_ms: u64) -> Self {
        Self {
            peers: HashMap::new(),
            totals: HashMap::new(),
            max_silence_ms,
        }
    }

    /// How long a peer with jobs in flight may stay silent.
    pub fn max_silence_ms(&self) -> u64 {
        self.max_silence_ms
    }

    /// Applies `announcement` from `from` (the authenticated sender).
    pub fn apply(
        &mut self,
        from: &NodeId,
        announcement: &LoadAnnouncement,
        now_ms: u64,
    ) -> Result<LoadApplied, LoadError> {
        if announcement.counts.len() > MAX_LOAD_ENTRIES {
            return Err(LoadError::TooManyEntries(announcement.counts.len()));
        }
        if !self.peers.contains_key(from) && self.peers.len() >= MAX_LOAD_PEERS {
            return Err(LoadError::TooManyPeers);
        }
        let peer = self.peers.entry(from.clone()).or_insert_with(|| PeerLoad {
            generation: announcement.generation,
            counts: HashMap::new(),
            heard_ms: now_ms,
        });
        if announcement.generation < peer.generation {
            return Ok(LoadApplied::Stale);
        }
        if announcement.generation > peer.generation {
            for (orchestrator, (n, _)) in peer.counts.drain() {
                subtract(&mut self.totals, &orchestrator, n);
            }
            peer.generation = announcement.generation;
        }
        peer.heard_ms = now_ms;
        let seq = announcement.seq;
        if announcement.complete {
            // Orchestrators the table no longer lists are idle, unless a
            // later (reordered) announcement already said otherwise.
            let listed: BTreeSet<&OrchestratorId> =
                announcement.counts.iter().map(|(o, _)| o).collect();
            let totals = &mut self.totals;
            peer.counts.retain(|orchestrator, (n, at)| {
                if *at >= seq || listed.contains(orchestrator) {
                    return true;
                }
                subtract(totals, orchestrator, *n);
                false
            });
        }
        for (orchestrator, count) in &announcement.counts {
            let entries = peer.counts.len();
            match peer.counts.entry(orchestrator.clone()) {
                Entry::Occupied(mut e) => {
                    let (n, at) = e.get_mut();
                    if *at < seq {
                        subtract(&mut self.totals, orchestrator, *n);
                        add(&mut self.totals, orchestrator, *count);
                        *n = *count;
                        *at = seq;
                    }
                }
                Entry::Vacant(e) => {
                    if entries < MAX_LOAD_ENTRIES {
                        e.insert((*count, seq));
                        add(&mut self.totals, orchestrator, *count);
                    }
                }
            }
        }
        // Zero entries are kept until a complete table supersedes them (so a
        // reordered older count cannot resurrect); drop them once it has.
        if announcement.complete {
            peer.counts.retain(|_, (n, at)| *n > 0 || *at >= seq);
        }
        Ok(LoadApplied::Updated)
    }

    /// Forgets `node` (it left or was declared dead).
    pub fn forget(&mut self, node: &NodeId) {
        if let Some(peer) = self.peers.remove(node) {
            for (orchestrator, (n, _)) in peer.counts {
                subtract(&mut self.totals, &orchestrator, n);
            }
        }
    }

    /// Forgets every peer not in `alive`.
    pub fn retain_peers(&mut self, alive: impl Fn(&NodeId) -> bool) {
        let gone: Vec<NodeId> = self.peers.keys().filter(|n| !alive(n)).cloned().collect();
        for node in gone {
            self.forget(&node);
        }
    }

    /// Forgets peers that announced jobs in flight but have been silent for
    /// longer than [`Self::max_silence_ms`]; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let limit = self.max_silence_ms;
        let gone: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                now_ms.saturating_sub(p.heard_ms) > limit && p.counts.values().any(|(n, _)| *n > 0)
            })
            .map(|(node, _)| node.clone())
            .collect();
        let count = gone.len();
        for node in gone {
            self.forget(&node);
        }
        count
    }

    /// Peers' jobs in flight on `orchestrator`.
    pub fn in_flight(&self, orchestrator: &OrchestratorId) -> u32 {
        self.totals.get(orchestrator).copied().unwrap_or(0)
    }

    /// Peers' jobs in flight per orchestrator (only non-zero ones).
    pub fn totals(&self) -> impl Iterator<Item = (&OrchestratorId, u32)> {
        self.totals.iter().map(|(o, &n)| (o, n))
    }

    /// Adds the peers' jobs in flight to `in_flight` (this node's own
    /// counts), giving what `LocalState::in_flight` holds when
    /// `in_flight_includes_peers` is set.
    pub fn add_to(&self, in_flight: &mut HashMap<OrchestratorId, u32>) {
        for (orchestrator, &n) in &self.totals {
            let count = in_flight.entry(orchestrator.clone()).or_default();
            *count = count.saturating_add(n);
        }
    }

    /// `node`'s announced count on `orchestrator`.
    pub fn peer_in_flight(&self, node: &NodeId, orchestrator: &OrchestratorId) -> u32 {
        self.peers
            .get(node)
            .and_then(|p| p.counts.get(orchestrator))
            .map_or(0, |(n, _)| *n)
    }

    /// Peers on the board.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

fn add(totals: &mut HashMap<OrchestratorId, u32>, orchestrator: &OrchestratorId, n: u32) {
    if n == 0 {
        return;
    }
    match totals.get_mut(orchestrator) {
        Some(total) => *total = total.saturating_add(n),
        None => {
            totals.insert(orchestrator.clone(), n);
        }
    }
}

fn subtract(totals: &mut HashMap<OrchestratorId, u32>, orchestrator: &OrchestratorId, n: u32) {
    if n == 0 {
        return;
    }
    if let Some(total) = totals.get_mut(orchestrator) {
        *total = total.saturating_sub(n);
        if *total == 0 {
            totals.remove(orchestrator);
        }
    }
}

#[cfg(test)]
mod tests;
