//! The Livepeer capability model: ids 0–37, the bitstring, per-model
//! constraints, and the compatibility rules a gateway checks before it sends a
//! job (protocol §1.6, go-livepeer `core/capabilities.go` `CompatibleWith`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pipeline::Pipeline;

/// A Livepeer capability id (0–37 today; the bitstring grows as ids are added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CapabilityId(pub u32);

impl CapabilityId {
    /// The largest capability id this build knows (37, BYOC price listing).
    pub const MAX_KNOWN: Self = Self(37);
    /// Bring-your-own-container capability (price listing only).
    pub const BYOC: Self = Self(37);
}

/// The capabilities every go-livepeer node advertises and every job carries:
/// {0–12, 14, 26} (H264 … AuthToken, MPEG7VideoSignature, SegmentSlicing).
pub const DEFAULT_CAPABILITY_IDS: [u32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26];

/// A set of capabilities as the wire bitstring: capability `c` is bit `c % 64`
/// of word `c / 64`, least significant bit first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapabilitySet {
    words: Vec<u64>,
}

/// Upper bound on bitstring words accepted from a peer: 64 words = 4,096
/// capabilities, far beyond the 38 defined, so hostile input cannot make us
/// allocate without bound.
pub const MAX_BITSTRING_WORDS: usize = 64;

impl CapabilitySet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default set {0–12, 14, 26}; `words()[0] == 0x4005FFF`.
    pub fn defaults() -> Self {
        let mut set = Self::new();
        for id in DEFAULT_CAPABILITY_IDS {
            set.insert(CapabilityId(id));
        }
        set
    }

    /// What go-livepeer's AI gateway asks for: the defaults plus the pipeline bit.
    pub fn for_pipeline(pipeline: Pipeline) -> Self {
        let mut set = Self::defaults();
        set.insert(pipeline.capability());
        set
    }

    /// A set from wire words, truncated to [`MAX_BITSTRING_WORDS`] and with
    /// trailing zero words dropped so equal sets compare equal.
    pub fn from_words(words: &[u64]) -> Self {
        let mut words = words[..words.len().min(MAX_BITSTRING_WORDS)].to_vec();
        while words.last() == Some(&0) {
            words.pop();
        }
        Self { words }
    }

    /// The wire words.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Adds one capability. Ids beyond the word bound are ignored.
    pub fn insert(&mut self, id: CapabilityId) {
        let word = (id.0 / 64) as usize;
        if word >= MAX_BITSTRING_WORDS {
            return;
        }
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (id.0 % 64);
    }

    /// Whether the capability is in the set.
    pub fn contains(&self, id: CapabilityId) -> bool {
        let word = (id.0 / 64) as usize;
        self.words
            .get(word)
            .is_some_and(|w| w & (1 << (id.0 % 64)) != 0)
    }

    /// Whether every capability of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.words.iter().enumerate().all(|(i, &word)| {
            let theirs = other.words.get(i).copied().unwrap_or(0);
            word & theirs == word
        })
    }

    /// The ids in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = CapabilityId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            (0..64u32)
                .filter(move |bit| word & (1 << bit) != 0)
                .map(move |bit| CapabilityId(i as u32 * 64 + bit))
        })
    }
}

/// What an orchestrator says about one model of one capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConstraint {
    /// The model is loaded and ready.
    pub warm: bool,
    /// How many concurrent jobs it can run (idle containers for live video).
    pub capacity: u32,
    /// ai-runner version serving the model.
    pub runner_version: String,
    /// Containers in use (live video; v0.8.6+).
    pub capacity_in_use: u32,
}

/// A full capability description: what an orchestrator offers, or what a job
/// requires (the same message travels both ways on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Capabilities offered (orchestrator) or required (job).
    pub bitstring: CapabilitySet,
    /// Capabilities the orchestrator requires every job to have.
    pub mandatories: CapabilitySet,
    /// go-livepeer version of the sender.
    pub version: String,
    /// Minimum orchestrator version a job accepts (empty: any).
    pub min_version: String,
    /// Capacity per capability.
    pub capacities: BTreeMap<CapabilityId, u32>,
    /// Per capability, per model id: the model's constraint.
    pub models: BTreeMap<CapabilityId, BTreeMap<String, ModelConstraint>>,
}

/// Why an orchestrator cannot take a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    /// The orchestrator requires a capability the job does not carry.
    #[error("orchestrator requires capabilities the job lacks")]
    MandatoryMissing,
    /// The job needs a capability the orchestrator does not offer.
    #[error("orchestrator lacks capability {0:?}")]
    CapabilityMissing(CapabilityId),
    /// The orchestrator's version is below the job's minimum (or unknown).
    #[error("orchestrator version {found:?} is below the minimum {minimum:?}")]
    VersionTooOld {
        /// The orchestrator's version.
        found: String,
        /// The job's minimum.
        minimum: String,
    },
    /// The orchestrator does not list the model.
    #[error("orchestrator does not serve model {model:?}")]
    ModelMissing {
        /// The model id.
        model: String,
    },
    /// The job needs the model warm and it is cold there.
    #[error("model {model:?} is cold on the orchestrator")]
    ModelCold {
        /// The model id.
        model: String,
    },
    /// The orchestrator's runner is older than the job requires.
    #[error("runner version {found:?} for model {model:?} is below {minimum:?}")]
    RunnerTooOld {
        /// The model id.
        model: String,
        /// The orchestrator's runner version.
        found: String,
        /// The job's minimum.
        minimum: String,
    },
}

impl Capabilities {
    /// The requirement go-livepeer's AI gateway sends for one job: defaults +
    /// the pipeline bit, `capacities[cap] = 1` (the orchestrator prices over
    /// this map) and the model named in the constraints.
    pub fn for_job(pipeline: Pipeline, model_id: &str, warm: bool) -> Self {
        let capability = pipeline.capability();
        let mut capabilities = Self {
            bitstring: CapabilitySet::for_pipeline(pipeline),
            ..Self::default()
        };
        capabilities.capacities.insert(capability, 1);
        capabilities.models.entry(capability).or_default().insert(
            model_id.to_owned(),
            ModelConstraint {
                warm,
                ..ModelConstraint::default()
            },
        );
        capabilities
    }

    /// The model constraint the orchestrator advertises for (capability, model).
    pub fn model(&self, capability: CapabilityId, model_id: &str) -> Option<&ModelConstraint> {
        self.models.get(&capability)?.get(model_id)
    }

    /// go-livepeer's `CompatibleWith`: can an orchestrator advertising `self`
    /// serve a job requiring `job`?
    pub fn accepts(&self, job: &Self) -> Result<(), Incompatibility> {
        if !self.mandatories.is_subset_of(&job.bitstring) {
            return Err(Incompatibility::MandatoryMissing);
        }
        if let Some(missing) = job.bitstring.iter().find(|c| !self.bitstring.contains(*c)) {
            return Err(Incompatibility::CapabilityMissing(missing));
        }
        if !job.min_version.is_empty()
            && compare_versions(&self.version, &job.min_version) != Some(Ordering::Greater)
            && compare_versions(&self.version, &job.min_version) != Some(Ordering::Equal)
        {
            return Err(Incompatibility::VersionTooOld {
                found: self.version.clone(),
                minimum: job.min_version.clone(),
            });
        }
        for (capability, models) in &job.models {
            for (model, wanted) in models {
                let offered = self.model(*capability, model).ok_or_else(|| {
                    Incompatibility::ModelMissing {
                        model: model.clone(),
                    }
                })?;
                if wanted.warm && !offered.warm {
                    return Err(Incompatibility::ModelCold {
                        model: model.clone(),
                    });
                }
                if !wanted.runner_version.is_empty()
                    && !matches!(
                        compare_versions(&offered.runner_version, &wanted.runner_version),
                        Some(Ordering::Greater | Ordering::Equal)
                    )
                {
                    return Err(Incompatibility::RunnerTooOld {
                        model: model.clone(),
                        found: offered.runner_version.clone(),
                        minimum: wanted.runner_version.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Compares two semantic versions, ignoring a leading `v` and any prerelease
/// or build suffix. `None` when either side does not parse (an empty or
/// "undefined" version fails every minimum, as in go-livepeer).
pub fn compare_versions(found: &str, minimum: &str) -> Option<Ordering> {
    Some(parse_version(found)?.cmp(&parse_version(minimum)?))
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim().trim_start_matches('v');
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    let patch = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_job_bitstrings_match_the_protocol() {
        assert_eq!(CapabilitySet::defaults().words(), &[0x4005FFF]);
        assert_eq!(
            CapabilitySet::for_pipeline(Pipeline::TextToImage).words(),
            &[0xC005FFF]
        );
        assert_eq!(
            CapabilitySet::for_pipeline(Pipeline::LiveVideoToVideo).words(),
            &[0x8_0400_5FFF]
        );
    }

    #[test]
    fn from_words_bounds_hostile_input() {
        let set = CapabilitySet::from_words(&[u64::MAX; 10_000]);
        assert_eq!(set.words().len(), MAX_BITSTRING_WORDS);
        assert_eq!(CapabilitySet::from_words(&[5, 0, 0]).words(), &[5]);
    }

    fn orchestrator(warm: bool) -> Capabilities {
        let mut caps = Capabilities {
            bitstring: CapabilitySet::for_pipeline(Pipeline::TextToImage),
            version: "0.9.1".into(),
            ..Capabilities::default()
        };
        caps.models.entry(CapabilityId(27)).or_default().insert(
            "m".into(),
            ModelConstraint {
                warm,
                capacity: 2,
                runner_version: "0.14.1".into(),
                capacity_in_use: 0,
            },
        );
        caps
    }

    #[test]
    fn compatibility_rules() {
        let job = Capabilities::for_job(Pipeline::TextToImage, "m", false);
        assert_eq!(orchestrator(false).accepts(&job), Ok(()));

        let warm_job = Capabilities::for_job(Pipeline::TextToImage, "m", true);
        assert!(matches!(
            orchestrator(false).accepts(&warm_job),
            Err(Incompatibility::ModelCold { .. })
        ));

        let other_model = Capabilities::for_job(Pipeline::TextToImage, "x", false);
        assert!(matches!(
            orchestrator(true).accepts(&other_model),
            Err(Incompatibility::ModelMissing { .. })
        ));

        let llm = Capabilities::for_job(Pipeline::Llm, "m", false);
        assert_eq!(
            orchestrator(true).accepts(&llm),
            Err(Incompatibility::CapabilityMissing(CapabilityId(33)))
        );

        let mut newer = job.clone();
        newer.min_version = "0.9.2".into();
        assert!(matches!(
            orchestrator(true).accepts(&newer),
            Err(Incompatibility::VersionTooOld { .. })
        ));
        newer.min_version = "0.9.1-rc1".into();
        assert_eq!(orchestrator(true).accepts(&newer), Ok(()));

        let mut mandatory = orchestrator(true);
        mandatory.mandatories.insert(CapabilityId(35));
        assert_eq!(
            mandatory.accepts(&job),
            Err(Incompatibility::MandatoryMissing)
        );

        let mut runner = job.clone();
        runner
            .models
            .get_mut(&CapabilityId(27))
            .unwrap()
            .get_mut("m")
            .unwrap()
            .runner_version = "0.15.0".into();
        assert!(matches!(
            orchestrator(true).accepts(&runner),
            Err(Incompatibility::RunnerTooOld { .. })
        ));
    }

    #[test]
    fn undefined_version_fails_a_minimum() {
        assert_eq!(compare_versions("undefined", "0.1.0"), None);
        assert_eq!(compare_versions("", "0.1.0"), None);
        assert_eq!(
            compare_versions("v0.10.0", "0.9.9"),
            Some(Ordering::Greater)
        );
    }
}
