//! The node crate's integration tests: config files, the demo, tenants and
//! offering publication.
//!
//! Each file beside this one is a module of one test binary, declared below
//! (the crate sets `autotests = false`). One binary per crate, not per file:
//! every test binary links the whole stack, about 100 MB each in a debug build,
//! and forty of them filled CI's disk. nextest still runs every test in its
//! own process, so tests share no state. Run one file's tests with a filter:
//! `cargo nextest run -p node -E 'test(/^MODULE::/)'`.

mod config;
mod demo;
mod offering_publish;
mod tenants_config;
