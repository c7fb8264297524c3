//! The api crate's integration tests: the public and operator APIs served over
//! real HTTPS on loopback.
//!
//! Each file beside this one is a module of one test binary, declared below
//! (the crate sets `autotests = false`). One binary per crate, not per file:
//! every test binary links the whole stack, about 100 MB each in a debug build,
//! and forty of them filled CI's disk. nextest still runs every test in its
//! own process, so tests share no state. Run one file's tests with a filter:
//! `cargo nextest run -p api -E 'test(/^MODULE::/)'`.

mod admin_api;
mod admin_common;
mod dashboard_browser;
mod metrics_doc;
mod public_api;
mod random_bodies;
mod tenant_admission;
