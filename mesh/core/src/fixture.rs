//! Small constructors for simulations, tests and benchmarks: an
//! [`OrchestratorInfo`] serving one model, as an emulated orchestrator would
//! describe itself.

use crate::capability::{Capabilities, CapabilitySet, ModelConstraint};
use crate::id::OrchestratorId;
use crate::orchestrator::{CapabilityPrice, GpuInfo, OrchestratorInfo};
use crate::pipeline::Pipeline;
use crate::pricing::WeiPrice;

/// What one emulated orchestrator offers for one (pipeline, model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// Loaded.
    pub warm: bool,
    /// Concurrent capacity.
    pub capacity: u32,
    /// Price per unit, if any.
    pub price: Option<WeiPrice>,
    /// GPU marketing name, if any.
    pub gpu: Option<String>,
}

impl OfferSpec {
    /// A warm offer with capacity 4, no price, no GPU.
    pub fn warm(pipeline: Pipeline, model_id: impl Into<String>) -> Self {
        Self {
            pipeline,
            model_id: model_id.into(),
            warm: true,
            capacity: 4,
            price: None,
            gpu: None,
        }
    }
}

/// The self-description of an orchestrator with the given offers (and the
/// default capabilities every go-livepeer node has).
pub fn orchestrator_info(id: &OrchestratorId, offers: &[OfferSpec]) -> OrchestratorInfo {
    let mut capabilities = Capabilities {
        bitstring: CapabilitySet::defaults(),
        ..Capabilities::default()
    };
    let mut prices = Vec::new();
    let mut hardware = Vec::new();
    for offer in offers {
        let capability = offer.pipeline.capability();
        capabilities.bitstring.insert(capability);
        *capabilities.capacities.entry(capability).or_default() += offer.capacity;
        capabilities.models.entry(capability).or_default().insert(
            offer.model_id.clone(),
            ModelConstraint {
                warm: offer.warm,
                capacity: offer.capacity,
                ..ModelConstraint::default()
            },
        );
        if let Some(price) = offer.price {
            prices.push(CapabilityPrice {
                capability,
                model_id: offer.model_id.clone(),
                price,
            });
        }
        if let Some(gpu) = &offer.gpu {
            hardware.push(GpuInfo {
                pipeline: offer.pipeline.as_str().to_owned(),
                model_id: offer.model_id.clone(),
                gpu_id: "0".to_owned(),
                name: gpu.clone(),
                major: 8,
                minor: 9,
                memory_free_bytes: 20 << 30,
                memory_total_bytes: 24 << 30,
            });
        }
    }
    OrchestratorInfo {
        id: id.clone(),
        transcoder: id.as_str().to_owned(),
        capabilities,
        prices,
        hardware,
    }
}
