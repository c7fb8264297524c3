//! The livepeer crate's integration tests: wire vectors, hostile input and the
//! orchestrator client against a local peer.
//!
//! One test binary for the crate: each file beside this one is a module,
//! declared below (why: ARCHITECTURE.md, Invariants). One file's tests:
//! `cargo nextest run -p livepeer -E 'test(/^MODULE::/)'`.

mod hostile_input;
mod orchestrator_client;
mod wire_vectors;
