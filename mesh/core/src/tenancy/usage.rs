//! Cluster-wide per-tenant usage and the admission decision.
//!
//! ## State
//! Every node counts, per tenant, what it admitted itself: requests per
//! minute (admitted and demanded, i.e. admitted + rejected), spend per UTC
//! day and per UTC month in nano-USD, and jobs in flight. It publishes only
//! its own counts ([`UsageBook::encode_local`], one [`UsageRecord`] per
//! node); every node keeps every node's counts. A window's count of one node
//! only grows, so the per-window map node → count is a G-counter and merges
//! by max per node (an echo of our own record after a restart restores our
//! counts the same way). Windows are keyed by index (minute, day, month
//! since the epoch) so nodes agree on them through their clocks alone; only
//! the current and previous minute, the current day and the current month
//! are kept, so the state per tenant is bounded by the node count.
//! Jobs in flight are a gauge, not a counter: the newest record of a node
//! (by its HLC) replaces that node's value.
//!
//! ## Requests per minute: reserves, a shared pool and the overshoot bound
//! A fixed window (the UTC minute). With limit `L` and the tenant's pool
//! share `p` % (`rate_pool_percent`), `R = L − ⌈L·p/100⌉` requests are
//! *reserved*: node `j` gets `q_j = ⌊R · d_j / Σd⌋` where `d_j` is the
//! tenant's demand at node `j` in the previous minute, or, when there was
//! none, `q_j = ⌊R / N⌋` for each of the `N` nodes of the cluster. A node `i`
//! that has admitted `c_i` requests this minute admits one more if
//!
//! - `c_i < q_i` (its own reserve), or
//! - `c_i + Σ_{j≠i} max(c_j, q_j) < L`, where `c_j` is the count of node `j`
//!   as last received: others are assumed to use at least their reserve.
//!
//! Hence at the end of the minute `c_i ≤ L − Σ_{j≠i} q_j` for every node,
//! whatever the propagation delay, and summing over the nodes that admitted
//! anything (at most `N`), the total admitted is at most
//!
//! ```text
//! L + (N − 1) · (L − Σ_j q_j)
//! ```
//!
//! when nodes agree on the reserves (same `N`, same previous-minute demand,
//! i.e. from the propagation delay after the minute starts, with stable
//! membership). With equal reserves that is `L + (N − 1)·(L − N·⌊R/N⌋)`:
//! for `L = 60`, `p = 20`, `N = 6` the bound is 60 + 5 · 12 = 120, and with
//! fresh counts (the usual case) far fewer get through. [`UsageBook::overshoot_bound`]
//! computes the bound for the current state. A tenant that used one node
//! only in the previous minute gets the whole reserve there, so it is not
//! held to `L / N`; one that moves or starts cold gets `q + (L − Σq)` at a
//! node until the next minute. Being a fixed window, a client can get `L`
//! at the end of one minute and `L` more at the start of the next.
//!
//! ## Concurrent jobs
//! Held on each node exactly (a node never runs more than the limit) and
//! across the cluster best-effort: own in-flight + others' last published
//! in-flight must stay under the limit; jobs started elsewhere in the last
//! propagation delay are not seen yet (at most `N × limit` in the worst case).
//!
//! ## Spend per day and month
//! Admit while the cluster's spend in the window is below the limit. The
//! cost of a job is known only when it completes, so the spend can exceed the
//! limit by the cost of the jobs in flight when it is reached plus those
//! admitted on other nodes during the propagation delay.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::window::{
    day_end_ms, day_index, minute_end_ms, minute_index, month_end_ms, month_index,
};
use crate::hlc::{DEFAULT_MAX_DRIFT_MS, Hlc, HlcClock};
use crate::id::NodeId;

/// Most tenants with limits: each costs ~120 bytes in every node's usage
/// record, which must stay under the mesh's 16 KiB record size.
pub const MAX_TENANTS: usize = 100;
/// Longest tenant name (ASCII).
pub const MAX_TENANT_NAME_LEN: usize = 64;
/// Most nodes tracked per tenant (`view::MAX_OBSERVERS`).
pub const MAX_NODES: usize = crate::view::MAX_OBSERVERS;
/// Largest encoded usage record we produce or accept (the mesh's limit).
pub const MAX_USAGE_RECORD_BYTES: usize = crate::view::MAX_RECORD_BYTES;
/// Format byte in front of an encoded usage record.
pub const USAGE_FORMAT_VERSION: u8 = 1;
/// A peer's in-flight count older than this is ignored: nodes re-publish
/// theirs while it is non-zero (every few seconds), so only a crashed node's
/// value gets this old.
pub const IN_FLIGHT_MAX_AGE_MS: u64 = 15_000;
/// Retry-After for the concurrency limit: a job slot frees when a job ends.
pub const CONCURRENCY_RETRY_AFTER_MS: u64 = 1_000;

/// A tenant's limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Requests admitted per UTC minute, cluster-wide.
    pub requests_per_minute: Option<u32>,
    /// Jobs running at once.
    pub max_concurrent_jobs: Option<u32>,
    /// Spend per UTC day, nano-USD, cluster-wide.
    pub spend_per_day_nano_usd: Option<u64>,
    /// Spend per UTC month, nano-USD, cluster-wide.
    pub spend_per_month_nano_usd: Option<u64>,
    /// Share of `requests_per_minute` (0–100 %) not reserved per node but
    /// shared; the overshoot bound grows with it (see the module docs).
    pub rate_pool_percent: u8,
}

/// Which limit rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// `requests_per_minute`.
    RequestsPerMinute,
    /// `max_concurrent_jobs`.
    ConcurrentJobs,
    /// `spend_per_day_usd`.
    SpendPerDay,
    /// `spend_per_month_usd`.
    SpendPerMonth,
}

impl LimitKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::RequestsPerMinute,
        Self::ConcurrentJobs,
        Self::SpendPerDay,
        Self::SpendPerMonth,
    ];

    /// The name in error bodies and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequestsPerMinute => "requests_per_minute",
            Self::ConcurrentJobs => "concurrent_jobs",
            Self::SpendPerDay => "spend_per_day",
            Self::SpendPerMonth => "spend_per_month",
        }
    }
}

/// A request over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Which limit.
    pub limit: LimitKind,
    /// Milliseconds until the window frees (the next minute, day or month;
    /// for concurrency a fixed second).
    pub retry_after_ms: u64,
}

/// Outcome of [`UsageBook::admit`].
pub type Decision = Result<(), Rejection>;

/// A usage record that cannot be encoded or merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Too large to publish or accept.
    #[error("usage record of {0} bytes is too large")]
    TooLarge(usize),
    /// Empty input.
    #[error("empty usage record")]
    Empty,
    /// Unknown format byte.
    #[error("unknown usage record format {0}")]
    UnknownVersion(u8),
    /// Postcard failed.
    #[error("usage record codec: {0}")]
    Codec(String),
    /// Bytes after the record.
    #[error("{0} trailing bytes after the usage record")]
    TrailingBytes(usize),
    /// The HLC is too far ahead of our clock.
    #[error(transparent)]
    Clock(#[from] crate::hlc::HlcError),
}

/// Requests of one node in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// Minute index.
    pub index: u64,
    /// Requests admitted.
    pub admitted: u32,
    /// Requests seen (admitted + rejected).
    pub demand: u32,
}

/// Spend of one node in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendCount {
    /// Day or month index.
    pub index: u64,
    /// Nano-USD charged.
    pub spent_nano_usd: u64,
}

/// One node's counts for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// At most the current and the previous minute, oldest first.
    pub minutes: Vec<MinuteCount>,
    /// The current day.
    pub day: SpendCount,
    /// The current month.
    pub month: SpendCount,
    /// Jobs running now (a gauge).
    pub in_flight: u32,
}

impl NodeUsage {
    fn minute(&self, index: u64) -> MinuteCount {
        self.minutes
            .iter()
            .find(|m| m.index == index)
            .copied()
            .unwrap_or(MinuteCount {
                index,
                ..MinuteCount::default()
            })
    }

    fn minute_mut(&mut self, index: u64) -> &mut MinuteCount {
        self.minutes.retain(|m| m.index + 1 >= index);
        if let Some(pos) = self.minutes.iter().position(|m| m.index == index) {
            return &mut self.minutes[pos];
        }
        self.minutes.push(MinuteCount {
            index,
            ..MinuteCount::default()
        });
        self.minutes.sort_by_key(|m| m.index);
        let pos = self
            .minutes
            .iter()
            .position(|m| m.index == index)
            .unwrap_or(0);
        &mut self.minutes[pos]
    }

    fn spent(window: &SpendCount, index: u64) -> u64 {
        if window.index == index {
            window.spent_nano_usd
        } else {
            0
        }
    }

    /// Merges counts (max per window); drops windows older than `now_ms`'s
    /// retention.
    fn merge_counts(&mut self, other: &Self, now_ms: u64) {
        let current = minute_index(now_ms);
        for remote in &other.minutes {
            if remote.index + 1 < current || remote.index > current + 1 {
                continue;
            }
            let mine = self.minute_mut(remote.index);
            mine.admitted = mine.admitted.max(remote.admitted);
            mine.demand = mine.demand.max(remote.demand);
        }
        self.minutes.retain(|m| m.index + 1 >= current);
        merge_spend(&mut self.day, other.day);
        merge_spend(&mut self.month, other.month);
    }

    fn is_empty(&self, now_ms: u64) -> bool {
        let current = minute_index(now_ms);
        self.in_flight == 0
            && self
                .minutes
                .iter()
                .all(|m| m.index + 1 < current || (m.admitted == 0 && m.demand == 0))
            && Self::spent(&self.day, day_index(now_ms)) == 0
            && Self::spent(&self.month, month_index(now_ms)) == 0
    }
}

fn merge_spend(mine: &mut SpendCount, other: SpendCount) {
    if other.index > mine.index {
        *mine = other;
    } else if other.index == mine.index {
        mine.spent_nano_usd = mine.spent_nano_usd.max(other.spent_nano_usd);
    }
}

/// What one node publishes: its own counts for every tenant with any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When it was written (orders the in-flight gauges).
    pub written: Hlc,
    /// Tenant name → this node's counts.
    pub tenants: Vec<(String, NodeUsage)>,
}

impl UsageRecord {
    /// `[USAGE_FORMAT_VERSION] ++ postcard(record)`, at most
    /// [`MAX_USAGE_RECORD_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, UsageError> {
        let mut out = vec![USAGE_FORMAT_VERSION];
        let body = postcard::to_allocvec(self).map_err(|e| UsageError::Codec(e.to_string()))?;
        out.extend_from_slice(&body);
        if out.len() > MAX_USAGE_RECORD_BYTES {
            return Err(UsageError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decodes a peer's record (bounded; never panics).
    pub fn decode(bytes: &[u8]) -> Result<Self, UsageError> {
        if bytes.len() > MAX_USAGE_RECORD_BYTES {
            return Err(UsageError::TooLarge(bytes.len()));
        }
        let (&format, body) = bytes.split_first().ok_or(UsageError::Empty)?;
        if format != USAGE_FORMAT_VERSION {
            return Err(UsageError::UnknownVersion(format));
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|e| UsageError::Codec(e.to_string()))?;
        if !rest.is_empty() {
            return Err(UsageError::TrailingBytes(rest.len()));
        }
        Ok(record)
    }
}

/// A node's counts for a tenant with the HLC of the record they came from.
#[derive(Debug, Clone, Default)]
struct NodeEntry {
    usage: NodeUsage,
    written: Hlc,
}

/// Every node's usage of the tracked tenants, and the admission decision.
#[derive(Debug, Clone)]
pub struct UsageBook {
    local: NodeId,
    clock: HlcClock,
    tracked: BTreeSet<String>,
    tenants: BTreeMap<String, BTreeMap<NodeId, NodeEntry>>,
    dirty: bool,
}

impl UsageBook {
    /// An empty book for node `local`.
    pub fn new(local: NodeId) -> Self {
        Self {
            clock: HlcClock::new(&local, DEFAULT_MAX_DRIFT_MS),
            local,
            tracked: BTreeSet::new(),
            tenants: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Sets the tenants with limits (at most [`MAX_TENANTS`]; the rest are
    /// ignored); counts of tenants no longer tracked are dropped.
    pub fn set_tracked<'a>(&mut self, tenants: impl IntoIterator<Item = &'a str>) {
        self.tracked = tenants
            .into_iter()
            .filter(|t| t.len() <= MAX_TENANT_NAME_LEN)
            .take(MAX_TENANTS)
            .map(str::to_owned)
            .collect();
        let tracked = &self.tracked;
        self.tenants.retain(|t, _| tracked.contains(t));
    }

    /// Whether `tenant` is tracked.
    pub fn is_tracked(&self, tenant: &str) -> bool {
        self.tracked.contains(tenant)
    }

    /// Decides one request of `tenant` under `limits` at `now_ms`, with
    /// `nodes` nodes in the cluster (this one included). Counts the demand
    /// either way; an admitted request also counts one job in flight, which
    /// [`Self::release`] ends. Untracked tenants are always admitted.
    pub fn admit(
        &mut self,
        tenant: &str,
        limits: &TenantLimits,
        nodes: usize,
        now_ms: u64,
    ) -> Decision {
        if !self.tracked.contains(tenant) {
            return Ok(());
        }
        let minute = minute_index(now_ms);
        let local = self.local.clone();
        let nodes = nodes.clamp(1, MAX_NODES);
        self.dirty = true;
        let decision = {
            let entries = self.tenants.entry(tenant.to_owned()).or_default();
            let own = entries.entry(local.clone()).or_default();
            let count = own.usage.minute_mut(minute);
            count.demand = count.demand.saturating_add(1);
            check(entries, &local, limits, nodes, now_ms)
        };
        if decision.is_ok()
            && let Some(own) = self
                .tenants
                .get_mut(tenant)
                .and_then(|entries| entries.get_mut(&local))
        {
            let count = own.usage.minute_mut(minute);
            count.admitted = count.admitted.saturating_add(1);
            own.usage.in_flight = own.usage.in_flight.saturating_add(1);
        }
        decision
    }

    /// A job admitted by [`Self::admit`] ended.
    pub fn release(&mut self, tenant: &str) {
        if let Some(own) = self
            .tenants
            .get_mut(tenant)
            .and_then(|entries| entries.get_mut(&self.local))
        {
            own.usage.in_flight = own.usage.in_flight.saturating_sub(1);
            self.dirty = true;
        }
    }

    /// Adds a completed job's charge to this node's day and month spend.
    pub fn record_spend(&mut self, tenant: &str, amount_nano_usd: u64, now_ms: u64) {
        if !self.tracked.contains(tenant) || amount_nano_usd == 0 {
            return;
        }
        let (day, month) = (day_index(now_ms), month_index(now_ms));
        let own = self
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .entry(self.local.clone())
            .or_default();
        for (window, index) in [(&mut own.usage.day, day), (&mut own.usage.month, month)] {
            if window.index != index {
                *window = SpendCount {
                    index,
                    spent_nano_usd: 0,
                };
            }
            window.spent_nano_usd = window.spent_nano_usd.saturating_add(amount_nano_usd);
        }
        self.dirty = true;
    }

    /// Cluster-wide use of each limit of `tenant` that is set:
    /// (kind, used, limit). Spend in nano-USD.
    pub fn usage(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        now_ms: u64,
    ) -> Vec<(LimitKind, u64, u64)> {
        let empty = BTreeMap::new();
        let entries = self.tenants.get(tenant).unwrap_or(&empty);
        let totals = Totals::of(entries, &self.local, now_ms);
        let mut out = Vec::new();
        if let Some(limit) = limits.requests_per_minute {
            out.push((
                LimitKind::RequestsPerMinute,
                totals.admitted,
                u64::from(limit),
            ));
        }
        if let Some(limit) = limits.max_concurrent_jobs {
            out.push((
                LimitKind::ConcurrentJobs,
                totals.in_flight,
                u64::from(limit),
            ));
        }
        if let Some(limit) = limits.spend_per_day_nano_usd {
            out.push((LimitKind::SpendPerDay, totals.day_spent, limit));
        }
        if let Some(limit) = limits.spend_per_month_nano_usd {
            out.push((LimitKind::SpendPerMonth, totals.month_spent, limit));
        }
        out
    }

    /// The most requests over `requests_per_minute` the cluster can admit in
    /// the current minute with the reserves as this node computes them:
    /// `(N − 1) · (L − Σ q_j)` (see the module docs). `None` without a limit.
    pub fn overshoot_bound(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        nodes: usize,
        now_ms: u64,
    ) -> Option<u64> {
        let limit = u64::from(limits.requests_per_minute?);
        let nodes = nodes.clamp(1, MAX_NODES) as u64;
        let empty = BTreeMap::new();
        let entries = self.tenants.get(tenant).unwrap_or(&empty);
        let reserves = Reserves::of(entries, limit, limits.rate_pool_percent, nodes, now_ms);
        let reserved = match &reserves {
            Reserves::Equal(q) => q * nodes,
            Reserves::Weighted(q) => q.values().sum(),
        };
        Some((nodes - 1) * limit.saturating_sub(reserved))
    }

    /// This node's own counts as a record to publish (tenants with nothing
    /// in the retained windows are left out). Ticks the clock.
    pub fn encode_local(&mut self, now_ms: u64) -> Result<Vec<u8>, UsageError> {
        let tenants = self
            .tenants
            .iter()
            .filter_map(|(tenant, entries)| {
                let own = entries.get(&self.local)?;
                (!own.usage.is_empty(now_ms)).then(|| (tenant.clone(), own.usage.clone()))
            })
            .collect();
        UsageRecord {
            written: self.clock.tick(now_ms),
            tenants,
        }
        .encode()
    }

    /// Whether this node has jobs in flight (its record should then be
    /// re-published periodically so peers don't age the gauge out).
    pub fn has_in_flight(&self) -> bool {
        self.tenants.values().any(|entries| {
            entries
                .get(&self.local)
                .is_some_and(|own| own.usage.in_flight > 0)
        })
    }

    /// Marks the local counts for re-publication.
    pub fn set_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether local counts changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Merges `origin`'s record (our own echo included: it restores counts
    /// after a restart, but never our in-flight gauge).
    pub fn merge(
        &mut self,
        origin: &NodeId,
        record: UsageRecord,
        now_ms: u64,
    ) -> Result<(), UsageError> {
        self.clock.observe(record.written, now_ms)?;
        let is_local = *origin == self.local;
        let mut present = BTreeSet::new();
        for (tenant, usage) in record.tenants {
            if !self.tracked.contains(&tenant) {
                continue;
            }
            let entries = self.tenants.entry(tenant.clone()).or_default();
            if !entries.contains_key(origin) && entries.len() >= MAX_NODES {
                continue;
            }
            let entry = entries.entry(origin.clone()).or_default();
            entry.usage.merge_counts(&usage, now_ms);
            if !is_local && record.written > entry.written {
                entry.usage.in_flight = usage.in_flight;
                entry.written = record.written;
            }
            present.insert(tenant);
        }
        if !is_local {
            // The record is the origin's whole state: tenants it left out
            // have nothing in flight there.
            for (tenant, entries) in &mut self.tenants {
                if present.contains(tenant) {
                    continue;
                }
                if let Some(entry) = entries.get_mut(origin)
                    && record.written > entry.written
                {
                    entry.usage.in_flight = 0;
                    entry.written = record.written;
                }
            }
        }
        Ok(())
    }

    /// Drops windows that ended and nodes with nothing left (call every few
    /// seconds).
    pub fn expire(&mut self, now_ms: u64) {
        let local = self.local.clone();
        for entries in self.tenants.values_mut() {
            for (node, entry) in entries.iter_mut() {
                let current = minute_index(now_ms);
                entry.usage.minutes.retain(|m| m.index + 1 >= current);
                if *node != local
                    && now_ms.saturating_sub(entry.written.wall_ms) > IN_FLIGHT_MAX_AGE_MS
                {
                    entry.usage.in_flight = 0;
                }
            }
            entries.retain(|node, entry| *node == local || !entry.usage.is_empty(now_ms));
        }
    }
}

/// Cluster totals of one tenant in the current windows.
#[derive(Debug, Default)]
struct Totals {
    admitted: u64,
    in_flight: u64,
    day_spent: u64,
    month_spent: u64,
}

impl Totals {
    fn of(entries: &BTreeMap<NodeId, NodeEntry>, local: &NodeId, now_ms: u64) -> Self {
        let (minute, day, month) = (minute_index(now_ms), day_index(now_ms), month_index(now_ms));
        let mut totals = Self::default();
        for (node, entry) in entries {
            let usage = &entry.usage;
            totals.admitted += u64::from(usage.minute(minute).admitted);
            if node == local || now_ms.saturating_sub(entry.written.wall_ms) <= IN_FLIGHT_MAX_AGE_MS
            {
                totals.in_flight += u64::from(usage.in_flight);
            }
            totals.day_spent = totals
                .day_spent
                .saturating_add(NodeUsage::spent(&usage.day, day));
            totals.month_spent = totals
                .month_spent
                .saturating_add(NodeUsage::spent(&usage.month, month));
        }
        totals
    }
}

/// The per-node reserves of requests per minute.
#[derive(Debug)]
enum Reserves {
    /// No demand in the previous minute: `q` for each of the `N` nodes.
    Equal(u64),
    /// By previous-minute demand; nodes not listed have none.
    Weighted(BTreeMap<NodeId, u64>),
}

impl Reserves {
    fn of(
        entries: &BTreeMap<NodeId, NodeEntry>,
        limit: u64,
        pool_percent: u8,
        nodes: u64,
        now_ms: u64,
    ) -> Self {
        let pool = (limit * u64::from(pool_percent.min(100))).div_ceil(100);
        let reserved = limit - pool.min(limit);
        let previous = minute_index(now_ms).saturating_sub(1);
        let demand: BTreeMap<&NodeId, u64> = entries
            .iter()
            .map(|(node, e)| (node, u64::from(e.usage.minute(previous).demand)))
            .filter(|(_, d)| *d > 0)
            .collect();
        let total: u64 = demand.values().sum();
        if total == 0 {
            return Self::Equal(reserved / nodes.max(1));
        }
        Self::Weighted(
            demand
                .into_iter()
                .map(|(node, d)| {
                    let share = u128::from(reserved) * u128::from(d) / u128::from(total);
                    (node.clone(), u64::try_from(share).unwrap_or(u64::MAX))
                })
                .collect(),
        )
    }

    fn of_node(&self, node: &NodeId) -> u64 {
        match self {
            Self::Equal(q) => *q,
            Self::Weighted(q) => q.get(node).copied().unwrap_or(0),
        }
    }
}

/// The admission rules, in order: requests per minute, concurrency, daily
/// and monthly spend.
fn check(
    entries: &BTreeMap<NodeId, NodeEntry>,
    local: &NodeId,
    limits: &TenantLimits,
    nodes: usize,
    now_ms: u64,
) -> Decision {
    let minute = minute_index(now_ms);
    let totals = Totals::of(entries, local, now_ms);
    let own = entries.get(local).map(|e| &e.usage);
    if let Some(limit) = limits.requests_per_minute {
        let limit = u64::from(limit);
        let nodes = nodes as u64;
        let reserves = Reserves::of(entries, limit, limits.rate_pool_percent, nodes, now_ms);
        let mine = own.map_or(0, |u| u64::from(u.minute(minute).admitted));
        let mut others = 0u64;
        let mut others_seen = 0u64;
        for (node, entry) in entries {
            if node == local {
                continue;
            }
            let count = u64::from(entry.usage.minute(minute).admitted);
            if count > 0 || matches!(reserves, Reserves::Weighted(_)) {
                others += count.max(reserves.of_node(node));
                others_seen += 1;
            }
        }
        others += match &reserves {
            // Nodes not heard from this minute may still use their reserve.
            Reserves::Equal(q) => nodes.saturating_sub(1).saturating_sub(others_seen) * q,
            // Every node with a reserve has an entry (the reserve comes from
            // its counts), so all were summed above.
            Reserves::Weighted(_) => 0,
        };
        let within_reserve = mine < reserves.of_node(local);
        if !within_reserve && mine + others >= limit {
            return Err(Rejection {
                limit: LimitKind::RequestsPerMinute,
                retry_after_ms: minute_end_ms(minute).saturating_sub(now_ms),
            });
        }
    }
    if let Some(limit) = limits.max_concurrent_jobs {
        let limit = u64::from(limit);
        let mine = own.map_or(0, |u| u64::from(u.in_flight));
        if mine >= limit || totals.in_flight >= limit {
            return Err(Rejection {
                limit: LimitKind::ConcurrentJobs,
                retry_after_ms: CONCURRENCY_RETRY_AFTER_MS,
            });
        }
    }
    if let Some(limit) = limits.spend_per_day_nano_usd
        && totals.day_spent >= limit
    {
        return Err(Rejection {
            limit: LimitKind::SpendPerDay,
            retry_after_ms: day_end_ms(day_index(now_ms)).saturating_sub(now_ms),
        });
    }
    if let Some(limit) = limits.spend_per_month_nano_usd
        && totals.month_spent >= limit
    {
        return Err(Rejection {
            limit: LimitKind::SpendPerMonth,
            retry_after_ms: month_end_ms(month_index(now_ms)).saturating_sub(now_ms),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
