//! The simulations crate's integration tests: the orchestrator emulator and the
//! scenarios.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p simulations -E 'test(/^MODULE::/)'`.

mod emulator;
mod sim_scenarios;
