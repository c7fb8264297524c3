//! # simulations
//!
//! Test peers and simulations for gatemesh.
//!
//! - [`emulator`]: an orchestrator emulator that speaks the real Livepeer
//!   orchestrator protocol (gRPC `GetOrchestrator` + HTTP AI routes on one TLS
//!   port) over real sockets, with injectable latency, errors, capacity limits,
//!   crashes and restarts. The `gatemesh-emulator` binary runs fleets of them
//!   from a TOML file or flags.
//!
//! A deterministic, seeded, virtual-time simulator of regions, nodes and
//! orchestrators over `mesh-core` lives beside it (`sim`).
#![warn(missing_docs)]

pub mod emulator;
pub mod sim;
