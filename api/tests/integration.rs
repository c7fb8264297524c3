//! The api crate's integration tests: the public and admin routers driven with
//! fake ports, and the dashboard rendered by headless Chromium.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p api -E 'test(/^MODULE::/)'`.

mod admin_api;
mod admin_common;
mod dashboard_browser;
mod metrics_doc;
mod public_api;
mod random_bodies;
mod tenant_admission;
