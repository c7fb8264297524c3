//! Black-box end-to-end tests: gateway nodes and emulated orchestrators on
//! loopback.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p tests -E 'test(/^MODULE::/)'`.

mod bad_input;
mod cluster_failover;
mod cluster_load;
mod cluster_measure;
mod cluster_membership;
mod cluster_partition;
mod cluster_restart;
mod cluster_view;
mod failover;
mod offer;
mod offering;
mod ops_crash_parity;
mod ops_dashboard;
mod ops_drain;
mod ops_log_stall;
mod ops_metrics;
mod pipelines;
mod tenants;
mod usage_billing;
mod usage_crash;
