//! The node crate's integration tests: config files, the demo, tenants and
//! offering publication.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p node -E 'test(/^MODULE::/)'`.

mod config;
mod demo;
mod offering_publish;
mod tenants_config;
