//! What a gateway learns about one orchestrator from `GetOrchestrator`.

use serde::{Deserialize, Serialize};

use crate::capability::{Capabilities, CapabilityId};
use crate::id::OrchestratorId;
use crate::pipeline::Pipeline;
use crate::pricing::WeiPrice;

/// An orchestrator's self-description, as of one `GetOrchestrator` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrchestratorInfo {
    /// The address we discovered it under.
    pub id: OrchestratorId,
    /// `OrchestratorInfo.transcoder`: the base URL of every HTTP call.
    pub transcoder: String,
    /// Full capability set with per-model warm/cold and capacity.
    pub capabilities: Capabilities,
    /// Prices per (capability, model); empty offchain.
    pub prices: Vec<CapabilityPrice>,
    /// GPUs per (pipeline, model).
    pub hardware: Vec<GpuInfo>,
}

/// One `capabilities_prices` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityPrice {
    /// The capability priced.
    pub capability: CapabilityId,
    /// The model id (or BYOC name); empty for a capability-wide price.
    pub model_id: String,
    /// Wei per unit.
    pub price: WeiPrice,
}

/// One GPU serving a (pipeline, model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Pipeline name as sent by the orchestrator (may be unknown to us).
    pub pipeline: String,
    /// Model id.
    pub model_id: String,
    /// GPU id on the host.
    pub gpu_id: String,
    /// Marketing name, e.g. "NVIDIA GeForce RTX 4090".
    pub name: String,
    /// Compute capability major.
    pub major: u32,
    /// Compute capability minor.
    pub minor: u32,
    /// Free memory in bytes.
    pub memory_free_bytes: i64,
    /// Total memory in bytes.
    pub memory_total_bytes: i64,
}

impl OrchestratorInfo {
    /// Whether the orchestrator lists the model for the pipeline, and if so
    /// whether it is warm.
    pub fn model_state(&self, pipeline: Pipeline, model_id: &str) -> Option<bool> {
        self.capabilities
            .model(pipeline.capability(), model_id)
            .map(|m| m.warm)
    }

    /// The advertised price for (pipeline, model), if any.
    pub fn price_for(&self, pipeline: Pipeline, model_id: &str) -> Option<WeiPrice> {
        let capability = pipeline.capability();
        self.prices
            .iter()
            .find(|p| p.capability == capability && p.model_id == model_id)
            .or_else(|| {
                self.prices
                    .iter()
                    .find(|p| p.capability == capability && p.model_id.is_empty())
            })
            .map(|p| p.price)
    }

    /// GPU names serving (pipeline, model).
    pub fn gpu_names(&self, pipeline: Pipeline, model_id: &str) -> impl Iterator<Item = &str> {
        self.hardware
            .iter()
            .filter(move |g| g.pipeline == pipeline.as_str() && g.model_id == model_id)
            .map(|g| g.name.as_str())
    }
}
