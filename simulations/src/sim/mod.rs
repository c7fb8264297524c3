//! # A deterministic discrete-event simulator of a gatemesh cluster
//!
//! Regions with round-trip times, gateway nodes, orchestrators with
//! latency, capacity, failures, slowdowns, flapping and price changes,
//! clients sending jobs to their nearest region, and gossip of observation
//! records with delay and loss — all in virtual time, driven by one seed.
//! gatemesh runs the real `mesh-core` view and routing ([`gatemesh`]); the
//! baselines ([`baseline`]) run in the same engine with the same retries;
//! so, on request, does the late-truth bound ([`bound`]), a yardstick of
//! routing on perfect knowledge that arrives as late as physics allows.
//!
//! - [`model`]: time, topology, workload, knobs; [`scenario`]: named fault
//!   schedules; [`engine`]: the event loop; [`policy`]: the policy seam;
//!   [`metrics`]: figures; [`report`]: properties, tables, sweeps.
//!
//! Determinism: a `BinaryHeap` ordered by (time, sequence number), seeded
//! [`rng::SimRng`] streams, no wall clock, no threads inside a run, and only
//! ordered collections in anything that reaches the output.

pub mod baseline;
pub mod bound;
pub mod engine;
pub mod gatemesh;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod report;
pub mod rng;
pub mod scenario;

pub use metrics::RunMetrics;
pub use model::{SimConfig, SimTime, Size};
pub use report::{
    PolicyKind, RunOptions, ScenarioReport, SweepReport, replay_command, run_policy, run_scenario,
    run_scenario_with, sweep, sweep_table, sweep_with, table,
};
pub use scenario::{Plan, Scenario};
