//! The mesh crate's integration tests: real QUIC nodes on loopback.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p mesh -E 'test(/^MODULE::/)'`.

mod common;
mod link_filter;
mod load;
mod mesh;
