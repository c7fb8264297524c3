//! Black-box end-to-end tests: gateway nodes and emulated orchestrators on
//! loopback.
//!
//! Each file beside this one is a module of one test binary, declared below
//! (the crate sets `autotests = false`). One binary per crate, not per file:
//! every test binary links the whole stack, about 100 MB each in a debug build,
//! and forty of them filled CI's disk. nextest still runs every test in its
//! own process, so tests share no state. Run one file's tests with a filter:
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
