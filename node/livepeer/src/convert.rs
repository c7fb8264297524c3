//! Conversions between the wire messages and `mesh-core`'s domain types.
//!
//! Input from an orchestrator is hostile until converted: every collection is
//! bounded (bitstrings via [`CapabilitySet::from_words`], maps and lists by the
//! constants below), invalid prices are skipped, and nothing here panics.
//! Entries dropped by a bound are dropped deterministically (smallest keys
//! kept), so two nodes converting the same reply agree.

use std::collections::BTreeMap;

use mesh_core::capability::MAX_BITSTRING_WORDS;
use mesh_core::{
    Capabilities, CapabilityId, CapabilityPrice, CapabilitySet, GpuInfo, ModelConstraint,
    OrchestratorId, OrchestratorInfo, WeiPrice,
};

use crate::error::{OrchestratorError, truncate_text};
use crate::proto;
use crate::proto::capabilities::capability_constraints::ModelConstraint as WireModelConstraint;
use crate::proto::capabilities::{CapabilityConstraints, Constraints};

/// Highest capability id + 1 we accept in maps: the same bound as the
/// bitstring (64 words × 64 bits), far above the 38 ids defined.
pub const MAX_CAPABILITY_IDS: u32 = (MAX_BITSTRING_WORDS as u32) * 64;
/// Models kept per capability; real orchestrators list a handful.
pub const MAX_MODELS_PER_CAPABILITY: usize = 64;
/// `capabilities_prices` entries kept (one per capability × model).
pub const MAX_PRICES: usize = 256;
/// GPUs kept across all `hardware` entries.
pub const MAX_GPUS: usize = 64;
/// Longest model id, version or GPU name kept; longer model ids are dropped
/// (they could never match a job), longer free text is cut.
pub const MAX_WIRE_TEXT_BYTES: usize = 256;

/// Wire capabilities to the domain type. Like go-livepeer's
/// `CapabilitiesFromNetCapabilities`, a message without `capacities` (sent by
/// old nodes) gets capacity 1 for every capability in its bitstring.
pub fn capabilities_from_proto(wire: &proto::Capabilities) -> Capabilities {
    let bitstring = CapabilitySet::from_words(&wire.bitstring);
    let mut capacities: BTreeMap<CapabilityId, u32> = wire
        .capacities
        .iter()
        .filter(|(id, _)| **id < MAX_CAPABILITY_IDS)
        .map(|(id, capacity)| (CapabilityId(*id), *capacity))
        .collect();
    if capacities.is_empty() {
        capacities = bitstring.iter().map(|id| (id, 1)).collect();
    }
    let (min_version, models) = match &wire.constraints {
        Some(constraints) => (
            truncate_text(constraints.min_version.clone(), MAX_WIRE_TEXT_BYTES),
            models_from_proto(constraints),
        ),
        None => (String::new(), BTreeMap::new()),
    };
    Capabilities {
        bitstring,
        mandatories: CapabilitySet::from_words(&wire.mandatories),
        version: truncate_text(wire.version.clone(), MAX_WIRE_TEXT_BYTES),
        min_version,
        capacities,
        models,
    }
}

fn models_from_proto(
    constraints: &Constraints,
) -> BTreeMap<CapabilityId, BTreeMap<String, ModelConstraint>> {
    let mut per_capability = BTreeMap::new();
    for (id, capability) in &constraints.per_capability {
        if *id >= MAX_CAPABILITY_IDS {
            continue;
        }
        let mut names: Vec<&String> = capability
            .models
            .keys()
            .filter(|name| name.len() <= MAX_WIRE_TEXT_BYTES)
            .collect();
        names.sort_unstable();
        names.truncate(MAX_MODELS_PER_CAPABILITY);
        let models: BTreeMap<String, ModelConstraint> = names
            .into_iter()
            .filter_map(|name| {
                let wire = capability.models.get(name)?;
                Some((name.clone(), model_from_proto(wire)))
            })
            .collect();
        per_capability.insert(CapabilityId(*id), models);
    }
    per_capability
}

fn model_from_proto(wire: &WireModelConstraint) -> ModelConstraint {
    ModelConstraint {
        warm: wire.warm,
        capacity: wire.capacity,
        runner_version: truncate_text(wire.runner_version.clone(), MAX_WIRE_TEXT_BYTES),
        capacity_in_use: wire.capacity_in_use,
    }
}

/// Domain capabilities to the wire message. `constraints` is always present,
/// as go-livepeer's `ToNetCapabilities` always sets it.
pub fn capabilities_to_proto(capabilities: &Capabilities) -> proto::Capabilities {
    let per_capability = capabilities
        .models
        .iter()
        .map(|(id, models)| {
            let models = models
                .iter()
                .map(|(name, model)| {
                    let wire = WireModelConstraint {
                        warm: model.warm,
                        capacity: model.capacity,
                        runner_version: model.runner_version.clone(),
                        capacity_in_use: model.capacity_in_use,
                    };
                    (name.clone(), wire)
                })
                .collect();
            (id.0, CapabilityConstraints { models })
        })
        .collect();
    proto::Capabilities {
        bitstring: capabilities.bitstring.words().to_vec(),
        mandatories: capabilities.mandatories.words().to_vec(),
        capacities: capabilities
            .capacities
            .iter()
            .map(|(id, capacity)| (id.0, *capacity))
            .collect(),
        version: capabilities.version.clone(),
        constraints: Some(Constraints {
            min_version: capabilities.min_version.clone(),
            per_capability,
        }),
    }
}

/// A wire price, or `None` when it cannot be a price (zero or negative
/// denominator, negative numerator).
pub fn price_from_proto(wire: &proto::PriceInfo) -> Option<WeiPrice> {
    WeiPrice::new(wire.price_per_unit, wire.pixels_per_unit).ok()
}

/// A `GetOrchestrator` reply to the domain type. Fails only when the reply
/// has no usable `transcoder` URL (every HTTP call goes there); bad prices
/// and oversized lists are dropped, not fatal.
pub fn orchestrator_info_from_proto(
    id: OrchestratorId,
    wire: &proto::OrchestratorInfo,
) -> Result<OrchestratorInfo, OrchestratorError> {
    let transcoder = normalize_transcoder(&wire.transcoder)?;
    let capabilities = wire
        .capabilities
        .as_ref()
        .map(capabilities_from_proto)
        .unwrap_or_default();
    let prices = wire
        .capabilities_prices
        .iter()
        .filter(|price| price.constraint.len() <= MAX_WIRE_TEXT_BYTES)
        .filter_map(|price| {
            Some(CapabilityPrice {
                capability: CapabilityId(price.capability),
                model_id: price.constraint.clone(),
                price: price_from_proto(price)?,
            })
        })
        .take(MAX_PRICES)
        .collect();
    Ok(OrchestratorInfo {
        id,
        transcoder,
        capabilities,
        prices,
        hardware: gpus_from_proto(&wire.hardware),
    })
}

fn gpus_from_proto(hardware: &[proto::HardwareInformation]) -> Vec<GpuInfo> {
    let mut gpus = Vec::new();
    for entry in hardware {
        let mut keys: Vec<&String> = entry.gpu_info.keys().collect();
        keys.sort_unstable();
        for key in keys {
            if gpus.len() >= MAX_GPUS {
                return gpus;
            }
            let Some(gpu) = entry.gpu_info.get(key) else {
                continue;
            };
            let gpu_id = if gpu.id.is_empty() { key } else { &gpu.id };
            gpus.push(GpuInfo {
                pipeline: truncate_text(entry.pipeline.clone(), MAX_WIRE_TEXT_BYTES),
                model_id: truncate_text(entry.model_id.clone(), MAX_WIRE_TEXT_BYTES),
                gpu_id: truncate_text(gpu_id.clone(), MAX_WIRE_TEXT_BYTES),
                name: truncate_text(gpu.name.clone(), MAX_WIRE_TEXT_BYTES),
                major: gpu.major,
                minor: gpu.minor,
                memory_free_bytes: gpu.memory_free,
                memory_total_bytes: gpu.memory_total,
            });
        }
    }
    gpus
}

/// Checks a transcoder URL (`http(s)://authority[/path]`) and trims trailing
/// slashes so `format!("{transcoder}/{pipeline}")` is well formed.
pub fn normalize_transcoder(raw: &str) -> Result<String, OrchestratorError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let invalid = |reason: &str| OrchestratorError::InvalidUrl {
        url: truncate_text(raw.to_owned(), MAX_WIRE_TEXT_BYTES),
        reason: format!("transcoder {reason}"),
    };
    if trimmed.is_empty() {
        return Err(invalid("is empty"));
    }
    if trimmed.len() > 2 * MAX_WIRE_TEXT_BYTES {
        return Err(invalid("is too long"));
    }
    let uri: http::Uri = trimmed.parse().map_err(|_| invalid("is not a URL"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(trimmed.to_owned()),
        _ => Err(invalid("must be an http(s) URL without a query")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use mesh_core::Pipeline;

    use super::*;

    fn orchestrator_capabilities() -> Capabilities {
        let mut capabilities = Capabilities::for_job(Pipeline::TextToImage, "m", true);
        capabilities.version = "0.9.1".into();
        capabilities.min_version = "0.8.0".into();
        capabilities.mandatories.insert(CapabilityId(3));
        capabilities.capacities.insert(CapabilityId(33), 4);
        capabilities
            .models
            .entry(CapabilityId(33))
            .or_default()
            .insert(
                "llama".into(),
                ModelConstraint {
                    warm: false,
                    capacity: 2,
                    runner_version: "0.14.1".into(),
                    capacity_in_use: 1,
                },
            );
        capabilities
    }

    #[test]
    fn capabilities_round_trip() {
        let capabilities = orchestrator_capabilities();
        let wire = capabilities_to_proto(&capabilities);
        assert_eq!(wire.bitstring, vec![0xC005FFF]);
        assert_eq!(wire.mandatories, vec![8]);
        assert_eq!(capabilities_from_proto(&wire), capabilities);
    }

    #[test]
    fn missing_capacities_come_from_the_bitstring() {
        let wire = proto::Capabilities {
            bitstring: vec![0b101],
            ..Default::default()
        };
        let capabilities = capabilities_from_proto(&wire);
        assert_eq!(
            capabilities.capacities,
            BTreeMap::from([(CapabilityId(0), 1), (CapabilityId(2), 1)])
        );
        assert!(capabilities.models.is_empty());
    }

    #[test]
    fn hostile_capabilities_are_bounded() {
        let models: HashMap<String, WireModelConstraint> = (0..1000)
            .map(|i| (format!("model-{i:04}"), WireModelConstraint::default()))
            .chain([("x".repeat(10_000), WireModelConstraint::default())])
            .collect();
        let wire = proto::Capabilities {
            bitstring: vec![u64::MAX; 5000],
            capacities: HashMap::from([(u32::MAX, 1), (27, 1)]),
            version: "v".repeat(100_000),
            constraints: Some(Constraints {
                min_version: String::new(),
                per_capability: HashMap::from([
                    (27, CapabilityConstraints { models }),
                    (u32::MAX, CapabilityConstraints::default()),
                ]),
            }),
            ..Default::default()
        };
        let capabilities = capabilities_from_proto(&wire);
        assert_eq!(capabilities.bitstring.words().len(), MAX_BITSTRING_WORDS);
        assert_eq!(capabilities.capacities.len(), 1);
        assert_eq!(capabilities.version.len(), MAX_WIRE_TEXT_BYTES);
        assert_eq!(capabilities.models.len(), 1);
        let kept = &capabilities.models[&CapabilityId(27)];
        assert_eq!(kept.len(), MAX_MODELS_PER_CAPABILITY);
        assert!(kept.contains_key("model-0000"));
    }

    #[test]
    fn orchestrator_info_converts_prices_and_hardware() {
        let id = OrchestratorId::parse("127.0.0.1:8935").unwrap();
        let wire = proto::OrchestratorInfo {
            transcoder: "https://10.0.0.1:8935/".into(),
            capabilities: Some(capabilities_to_proto(&orchestrator_capabilities())),
            capabilities_prices: vec![
                proto::PriceInfo {
                    price_per_unit: 12,
                    pixels_per_unit: 10,
                    capability: 27,
                    constraint: "m".into(),
                },
                proto::PriceInfo {
                    price_per_unit: 1,
                    pixels_per_unit: 0,
                    capability: 33,
                    constraint: "llama".into(),
                },
                proto::PriceInfo {
                    price_per_unit: -1,
                    pixels_per_unit: 1,
                    capability: 33,
                    constraint: "llama".into(),
                },
            ],
            hardware: vec![proto::HardwareInformation {
                pipeline: "text-to-image".into(),
                model_id: "m".into(),
                gpu_info: HashMap::from([(
                    "0".into(),
                    proto::GpuComputeInfo {
                        id: String::new(),
                        name: "NVIDIA GeForce RTX 4090".into(),
                        major: 8,
                        minor: 9,
                        memory_free: 1 << 30,
                        memory_total: 24 << 30,
                    },
                )]),
            }],
            ..Default::default()
        };
        let info = orchestrator_info_from_proto(id.clone(), &wire).unwrap();
        assert_eq!(info.id, id);
        assert_eq!(info.transcoder, "https://10.0.0.1:8935");
        assert_eq!(info.capabilities, orchestrator_capabilities());
        assert_eq!(info.prices.len(), 1, "invalid prices are skipped");
        assert_eq!(
            info.price_for(Pipeline::TextToImage, "m"),
            Some(WeiPrice::new(12, 10).unwrap())
        );
        assert_eq!(info.hardware.len(), 1);
        assert_eq!(info.hardware[0].gpu_id, "0");
        assert_eq!(info.hardware[0].memory_total_bytes, 24 << 30);
        assert_eq!(
            info.gpu_names(Pipeline::TextToImage, "m")
                .collect::<Vec<_>>(),
            vec!["NVIDIA GeForce RTX 4090"]
        );
    }

    #[test]
    fn transcoder_urls_are_checked() {
        assert_eq!(normalize_transcoder("http://h:1//").unwrap(), "http://h:1");
        assert_eq!(
            normalize_transcoder("https://h:1/base").unwrap(),
            "https://h:1/base"
        );
        for bad in ["", "/", "h:1", "ftp://h:1", "https://h:1/?q=1", "not a url"] {
            assert!(normalize_transcoder(bad).is_err(), "{bad}");
        }
    }
}
