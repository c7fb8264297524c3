//! The `GetOrchestrator` reply (protocol §1.5) and the capability
//! conversions between the wire messages and `mesh_core`.

use std::collections::{BTreeMap, HashMap};

use livepeer::proto;
use livepeer::proto::capabilities::capability_constraints::ModelConstraint as WireModel;
use livepeer::proto::capabilities::{CapabilityConstraints, Constraints};
use mesh_core::{Capabilities, CapabilityId, CapabilitySet, ModelConstraint, Pipeline};

use super::config::{DEFAULT_RUNNER_VERSION, PriceSpec};
use super::state::{Settings, Shared, unix_now_s};

/// GPU memory reported in `hardware`, bytes (24 GiB).
const GPU_MEMORY_TOTAL_BYTES: i64 = 24 * 1024 * 1024 * 1024;
/// Upper bound on models per capability read from a peer's message.
const MAX_PEER_MODELS: usize = 256;

/// What the orchestrator offers right now, with live in-use counts.
pub(crate) fn offered_capabilities(shared: &Shared, settings: &Settings) -> Capabilities {
    let mut caps = Capabilities {
        bitstring: CapabilitySet::defaults(),
        version: shared.version.clone(),
        ..Capabilities::default()
    };
    for model in &settings.models {
        let capability = model.pipeline.capability();
        caps.bitstring.insert(capability);
        *caps.capacities.entry(capability).or_insert(0) += model.capacity;
        let in_use = shared.in_use(model.pipeline, model.model_id());
        // go-livepeer reports idle containers as `capacity` for live video.
        let capacity = if model.pipeline == Pipeline::LiveVideoToVideo {
            model.capacity.saturating_sub(in_use)
        } else {
            model.capacity
        };
        caps.models.entry(capability).or_default().insert(
            model.model_id().to_owned(),
            ModelConstraint {
                warm: model.warm,
                capacity,
                runner_version: DEFAULT_RUNNER_VERSION.to_owned(),
                capacity_in_use: in_use,
            },
        );
    }
    caps
}

/// `mesh_core` capabilities to the wire message.
pub(crate) fn caps_to_proto(caps: &Capabilities) -> proto::Capabilities {
    let per_capability = caps
        .models
        .iter()
        .map(|(capability, models)| {
            let models = models
                .iter()
                .map(|(id, m)| {
                    let wire = WireModel {
                        warm: m.warm,
                        capacity: m.capacity,
                        runner_version: m.runner_version.clone(),
                        capacity_in_use: m.capacity_in_use,
                    };
                    (id.clone(), wire)
                })
                .collect();
            (capability.0, CapabilityConstraints { models })
        })
        .collect();
    proto::Capabilities {
        bitstring: caps.bitstring.words().to_vec(),
        mandatories: caps.mandatories.words().to_vec(),
        capacities: caps.capacities.iter().map(|(c, n)| (c.0, *n)).collect(),
        version: caps.version.clone(),
        constraints: Some(Constraints {
            min_version: caps.min_version.clone(),
            per_capability,
        }),
    }
}

/// The wire message to `mesh_core` capabilities (bounded: hostile maps are cut).
pub(crate) fn caps_from_proto(wire: &proto::Capabilities) -> Capabilities {
    let mut models: BTreeMap<CapabilityId, BTreeMap<String, ModelConstraint>> = BTreeMap::new();
    let mut min_version = String::new();
    if let Some(constraints) = &wire.constraints {
        min_version = constraints.min_version.clone();
        for (capability, per) in constraints.per_capability.iter().take(MAX_PEER_MODELS) {
            let entry = models.entry(CapabilityId(*capability)).or_default();
            for (id, m) in per.models.iter().take(MAX_PEER_MODELS) {
                entry.insert(
                    id.clone(),
                    ModelConstraint {
                        warm: m.warm,
                        capacity: m.capacity,
                        runner_version: m.runner_version.clone(),
                        capacity_in_use: m.capacity_in_use,
                    },
                );
            }
        }
    }
    Capabilities {
        bitstring: CapabilitySet::from_words(&wire.bitstring),
        mandatories: CapabilitySet::from_words(&wire.mandatories),
        version: wire.version.clone(),
        min_version,
        capacities: wire
            .capacities
            .iter()
            .take(MAX_PEER_MODELS)
            .map(|(c, n)| (CapabilityId(*c), *n))
            .collect(),
        models,
    }
}

fn model_price(settings: &Settings, pipeline: Pipeline, model_id: &str) -> Option<PriceSpec> {
    settings
        .models
        .iter()
        .find(|m| m.pipeline == pipeline && m.model_id() == model_id)
        .and_then(|m| m.price)
        .or(settings.price)
}

/// go-livepeer's `priceInfo` for a request carrying capabilities: the sum of
/// the prices of every requested (capability in `capacities`, model in the
/// constraints) pair; `None` when that sum is 0.
pub(crate) fn requested_price(
    settings: &Settings,
    requested: &proto::Capabilities,
) -> Option<proto::PriceInfo> {
    let per_capability = &requested.constraints.as_ref()?.per_capability;
    let mut sum = Rational::ZERO;
    for capability in requested.capacities.keys() {
        let Some(pipeline) = Pipeline::from_capability(CapabilityId(*capability)) else {
            continue;
        };
        let Some(constraints) = per_capability.get(capability) else {
            continue;
        };
        for model_id in constraints.models.keys() {
            if let Some(price) = model_price(settings, pipeline, model_id) {
                sum = sum.add(Rational::new(price.price_per_unit, price.pixels_per_unit));
            }
        }
    }
    (sum.numerator > 0).then(|| sum.to_wire(0, String::new()))
}

/// Builds the full reply to one `GetOrchestrator` request.
pub(crate) fn orchestrator_info(
    shared: &Shared,
    request: &proto::OrchestratorRequest,
) -> proto::OrchestratorInfo {
    let settings = shared.settings();
    let offered = offered_capabilities(shared, &settings);
    let session_id = shared.random_hex(8);
    let mut info = proto::OrchestratorInfo {
        transcoder: shared.base_url.clone(),
        address: vec![0; 20],
        capabilities: Some(caps_to_proto(&offered)),
        auth_token: Some(shared.secret().issue(session_id, unix_now_s())),
        ..proto::OrchestratorInfo::default()
    };
    match &request.capabilities {
        Some(requested) => info.price_info = requested_price(&settings, requested),
        None => {
            info.hardware = hardware(shared, &settings);
            info.capabilities_prices = settings
                .models
                .iter()
                .filter_map(|m| {
                    let price = model_price(&settings, m.pipeline, m.model_id())?;
                    Some(
                        Rational::new(price.price_per_unit, price.pixels_per_unit)
                            .to_wire(m.pipeline.capability().0, m.model_id().to_owned()),
                    )
                })
                .collect();
        }
    }
    info
}

fn hardware(shared: &Shared, settings: &Settings) -> Vec<proto::HardwareInformation> {
    settings
        .models
        .iter()
        .map(|m| {
            let gpu = proto::GpuComputeInfo {
                id: "GPU-0".to_owned(),
                name: shared.gpu_name.clone(),
                major: 8,
                minor: 9,
                memory_free: GPU_MEMORY_TOTAL_BYTES / 2,
                memory_total: GPU_MEMORY_TOTAL_BYTES,
            };
            proto::HardwareInformation {
                pipeline: m.pipeline.as_str().to_owned(),
                model_id: m.model_id().to_owned(),
                gpu_info: HashMap::from([("0".to_owned(), gpu)]),
            }
        })
        .collect()
}

/// An exact non-negative rational for summing prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rational {
    numerator: i128,
    denominator: i128,
}

impl Rational {
    const ZERO: Self = Self {
        numerator: 0,
        denominator: 1,
    };

    fn new(numerator: i64, denominator: i64) -> Self {
        Self {
            numerator: i128::from(numerator.max(0)),
            denominator: i128::from(denominator.max(1)),
        }
        .reduced()
    }

    fn add(self, other: Self) -> Self {
        Self {
            numerator: self
                .numerator
                .saturating_mul(other.denominator)
                .saturating_add(other.numerator.saturating_mul(self.denominator)),
            denominator: self.denominator.saturating_mul(other.denominator),
        }
        .reduced()
    }

    fn reduced(self) -> Self {
        let g = gcd(self.numerator, self.denominator).max(1);
        Self {
            numerator: self.numerator / g,
            denominator: self.denominator / g,
        }
    }

    fn to_wire(self, capability: u32, constraint: String) -> proto::PriceInfo {
        proto::PriceInfo {
            price_per_unit: i64::try_from(self.numerator).unwrap_or(i64::MAX),
            pixels_per_unit: i64::try_from(self.denominator).unwrap_or(i64::MAX),
            capability,
            constraint,
        }
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rationals_sum_exactly() {
        let sum = Rational::new(1, 2).add(Rational::new(1, 3));
        assert_eq!(sum, Rational::new(5, 6));
        assert_eq!(Rational::new(4, 8), Rational::new(1, 2));
    }

    #[test]
    fn caps_round_trip_through_the_wire() {
        let job = Capabilities::for_job(Pipeline::TextToImage, "m", true);
        assert_eq!(caps_from_proto(&caps_to_proto(&job)), job);
    }
}
