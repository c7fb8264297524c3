//! # livepeer
//!
//! The Livepeer gateway ⇄ orchestrator wire protocol, as gatemesh speaks it
//! (reference: `shared/reference/livepeer-protocol.md` §1–§3): the protobuf
//! messages of go-livepeer's `net` package, conversions to `mesh-core`'s
//! domain types, segment credentials and payments, and the async client
//! that calls `GetOrchestrator`, submits batch AI jobs and downloads results.
//!
//! ## Layout
//! - [`proto`]: messages and the tonic client/server generated from
//!   `proto/lp_rpc.proto` (our own file, same package, names and numbers).
//! - [`convert`]: wire ⇄ `mesh-core` (capabilities, `OrchestratorInfo`),
//!   bounded against hostile input.
//! - [`credentials`]: job capabilities, `SegData`, the `GetOrchestrator`
//!   request, the [`PaymentSource`] trait and its [`Offchain`] implementation.
//! - [`session`]: one orchestrator session and its refresh rule.
//! - [`client`]: [`OrchestratorClient`], one pooled hyper client for gRPC
//!   (TLS h2 or h2c) and HTTP.
//! - [`tls`]: the rustls (ring) config that accepts orchestrators'
//!   self-signed certificates, as go-livepeer does.
//! - [`multipart`], [`media`]: request bodies and `data:` URIs.
//! - [`error`]: [`OrchestratorError`] and its §2.5 classification.
//!
//! ## What this crate is not
//! It does not pick orchestrators, retry, suspend or stream to clients: the
//! node does, driven by [`ErrorClass`]. It has no on-chain payments yet.

pub mod client;
pub mod convert;
pub mod credentials;
pub mod error;
pub mod media;
pub mod multipart;
pub mod session;
pub mod tls;

pub mod proto {
    //! Generated from `proto/lp_rpc.proto` (package `net`).
    #![allow(
        missing_docs,
        missing_debug_implementations,
        clippy::all,
        unreachable_pub
    )]
    tonic::include_proto!("net");
}

pub use client::{AiResponse, ClientOptions, OrchestratorClient};
pub use credentials::{GatewayIdentity, Offchain, PaymentHeaders, PaymentSource, job_capabilities};
pub use error::{ErrorClass, OrchestratorError, PaymentError};
pub use session::Session;
