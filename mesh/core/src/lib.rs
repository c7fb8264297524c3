//! # mesh-core
//!
//! The deterministic heart of gatemesh: plain data and pure functions, with
//! time and randomness passed in by the caller. Nothing here opens a socket,
//! spawns a task or reads a clock; CI checks that this crate has no tokio,
//! quinn, hyper or axum in its dependency tree.
//!
//! ## Layout
//! - [`id`]: typed identifiers (`RegionId`, `NodeId`, `OrchestratorId`).
//! - [`pipeline`]: the AI pipelines, their capability ids, default models and
//!   price units.
//! - [`capability`]: the Livepeer capability bitstring, per-model constraints
//!   and go-livepeer's compatibility rules.
//! - [`pricing`]: wei prices as exact rationals.
//! - [`billing`]: what applications are charged: rate cards in four units,
//!   quotes in nano-USD, usage records.
//! - [`orchestrator`]: what `GetOrchestrator` told us about one orchestrator.
//! - [`job`]: a validated job, its attribution and its typed errors.
//! - [`load`]: jobs in flight announced directly to peers (`LoadLedger`
//!   sends, `LoadBoard` receives), fresher than the gossiped view.
//! - [`perf`]: bounded, mergeable latency/outcome summaries of live traffic
//!   (the offering's benchmarks).
//! - [`fixture`]: `OrchestratorInfo` builders for simulations, tests, benches.
//! - [`hlc`]: hybrid logical clock; versions of records and CRDT markers.
//! - [`view`]: per-observer observation records (single writer, highest
//!   version wins), the cluster-wide blocklist (`crdts::Orswot`), and
//!   [`ViewSnapshot`], the per-orchestrator aggregate that routing reads.
//! - [`tenancy`]: nano-USD money, time windows, cluster-wide per-tenant
//!   usage counters and the admission decision, the runtime API-key CRDT.
//! - [`route`]: `pick`, the pure routing function (filter, score, two random
//!   choices, exploration, failover plan), and outlier ejection.
//!
//! ## What this crate is not
//! It does not speak protobuf (the `livepeer` crate converts wire messages to
//! these types) and it does not know HTTP.
#![warn(missing_docs)]

pub mod billing;
pub mod capability;
pub mod fixture;
pub mod hlc;
pub mod id;
pub mod job;
pub mod load;
pub mod orchestrator;
pub mod perf;
pub mod pipeline;
pub mod pricing;
pub mod route;
pub mod tenancy;
pub mod view;

pub use capability::{Capabilities, CapabilityId, CapabilitySet, Incompatibility, ModelConstraint};
pub use hlc::{Hlc, HlcClock, HlcError};
pub use id::{NodeId, OrchestratorId, RegionId};
pub use job::{Attribution, Fault, FormPart, JobBody, JobError, JobSpec};
pub use orchestrator::{CapabilityPrice, GpuInfo, OrchestratorInfo};
pub use pipeline::{BodyKind, Pipeline, PriceUnit};
pub use pricing::WeiPrice;
pub use route::{
    Candidate, EjectionPolicy, JobRequirements, LocalState, PickReason, RouteConfig, RoutePlan,
    Tier, pick, pick_with,
};
pub use view::{
    ErrorClass, MergeOutcome, ObservationRecord, OrchestratorSummary, RecordError, View, ViewError,
    ViewSnapshot,
};
