//! Tenants: money in nano-USD, time windows, cluster-wide usage counters and
//! the admission arithmetic, and the replicated API-key book. Pure: time
//! (`now_ms`, unix milliseconds) and cluster size come in as arguments.
//!
//! - [`money`]: exact decimal USD strings ↔ integer nano-USD (1e-9 USD).
//! - [`window`]: minute, UTC day and UTC month indexes and their ends.
//! - [`usage`]: [`UsageBook`], per-tenant per-window counters, one
//!   G-counter per window (each node's own count, merged by max per node),
//!   and [`UsageBook::admit`], the admission decision with a hard
//!   overshoot bound (see that module's documentation for the formula).
//! - [`keys`]: [`KeyBook`], the runtime API keys as a state-based CRDT (key
//!   hash → tenant, tier, revoked flag, HLC); revocation is permanent and
//!   wins over any concurrent or later re-add of the same hash.

pub mod keys;
pub mod money;
pub mod usage;
pub mod window;

pub use keys::{KeyBook, KeyError, KeyHash, KeyRecord, MAX_RUNTIME_KEYS};
pub use money::{MoneyError, NANO_USD_PER_USD, format_usd, parse_usd_nano};
pub use usage::{
    Decision, LimitKind, MAX_TENANT_NAME_LEN, MAX_TENANTS, Rejection, TenantLimits, UsageBook,
    UsageError, UsageRecord,
};
