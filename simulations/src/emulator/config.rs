//! What one emulated orchestrator offers and how it behaves: models, GPU,
//! latency, error rate, prices, per-region delays. Deserialisable from TOML
//! (see `simulations/emulator.example.toml`); unknown keys are rejected.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use mesh_core::Pipeline;
use serde::{Deserialize, Serialize};

/// The go-livepeer version an emulated orchestrator reports in `Capabilities.version`.
pub const DEFAULT_VERSION: &str = "0.9.1";
/// The ai-runner version reported per model.
pub const DEFAULT_RUNNER_VERSION: &str = "0.14.1";
/// The GPU name reported in `hardware` when the spec names none.
pub const DEFAULT_GPU_NAME: &str = "NVIDIA GeForce RTX 4090";
/// Result objects kept per orchestrator before the oldest is evicted.
pub const DEFAULT_RESULT_STORE_ENTRIES: usize = 1024;

/// One emulated orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorSpec {
    /// A label for logs and the CLI output.
    pub name: String,
    /// Where to listen; port 0 picks a free port (read it back with `address()`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Host name or IP put in the service URL and the certificate SAN.
    /// Default: the listen IP (`127.0.0.1` when listening on an unspecified address).
    #[serde(default)]
    pub host: Option<String>,
    /// Serve plaintext h2c/HTTP/1.1 (`http://` service URI, go-livepeer v0.9 `-httpAddr http://…`).
    #[serde(default)]
    pub plaintext: bool,
    /// GPU name in `hardware.gpu_info["0"].name`.
    #[serde(default = "default_gpu_name")]
    pub gpu_name: String,
    /// `Capabilities.version`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The models served.
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// Processing time per job.
    #[serde(default)]
    pub latency: LatencySpec,
    /// Share of jobs (0.0–1.0) that fail with an injected 500.
    #[serde(default)]
    pub error_rate: f64,
    /// Seed of the rng behind jitter and error injection.
    #[serde(default)]
    pub seed: u64,
    /// Price of every model without its own price; `None` = free (offchain).
    #[serde(default)]
    pub price: Option<PriceSpec>,
    /// Delay between LLM stream chunks, milliseconds.
    #[serde(default = "default_inter_token_delay_ms")]
    pub inter_token_delay_ms: u64,
    /// Extra delay per request by the caller's source IP, milliseconds
    /// (the multi-region lab puts regions on distinct 127.0.0.x addresses).
    #[serde(default)]
    pub region_latency_ms: BTreeMap<IpAddr, u64>,
    /// Bound of the result object store (oldest evicted first).
    #[serde(default = "default_result_store_entries")]
    pub result_store_entries: usize,
}

/// One (pipeline, model) the orchestrator serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The pipeline (`text-to-image`, `llm`, …).
    pub pipeline: Pipeline,
    /// The model id; default: go-livepeer's default model of the pipeline.
    #[serde(default)]
    pub model_id: Option<String>,
    /// Whether the model is loaded (advertised as `warm`).
    #[serde(default = "default_true")]
    pub warm: bool,
    /// Concurrent jobs; one more gets 503 `insufficient capacity`.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Price of this model, overriding the orchestrator's `price`.
    #[serde(default)]
    pub price: Option<PriceSpec>,
}

/// A wire price: `price_per_unit / pixels_per_unit` wei per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Numerator, wei.
    pub price_per_unit: i64,
    /// Denominator, units (must be ≥ 1).
    #[serde(default = "default_pixels_per_unit")]
    pub pixels_per_unit: i64,
}

/// Processing time of one job (time to first token for LLM streams).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencySpec {
    /// `base_ms` plus a uniform draw in `[0, jitter_ms]`.
    Uniform {
        /// Fixed part, milliseconds.
        base_ms: u64,
        /// Width of the uniform jitter, milliseconds.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Log-normal with the given median and log-space standard deviation.
    LogNormal {
        /// Median, milliseconds.
        median_ms: f64,
        /// Standard deviation of `ln(latency)`.
        sigma: f64,
    },
}

impl Default for LatencySpec {
    fn default() -> Self {
        Self::Uniform {
            base_ms: 0,
            jitter_ms: 0,
        }
    }
}

impl LatencySpec {
    /// A fixed latency.
    pub fn fixed_ms(ms: u64) -> Self {
        Self::Uniform {
            base_ms: ms,
            jitter_ms: 0,
        }
    }
}

impl ModelSpec {
    /// A warm model with the pipeline's default model id and capacity 1.
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            model_id: None,
            warm: true,
            capacity: 1,
            price: None,
        }
    }

    /// Same, with an explicit model id.
    pub fn with_model(pipeline: Pipeline, model_id: impl Into<String>) -> Self {
        Self {
            model_id: Some(model_id.into()),
            ..Self::new(pipeline)
        }
    }

    /// Sets the capacity.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// The model id, defaulted.
    pub fn model_id(&self) -> &str {
        self.model_id
            .as_deref()
            .unwrap_or(self.pipeline.default_model_id())
    }
}

impl OrchestratorSpec {
    /// An orchestrator named `name` on `127.0.0.1:0` serving `models`, no
    /// latency, no errors, free.
    pub fn new(name: impl Into<String>, models: Vec<ModelSpec>) -> Self {
        Self {
            name: name.into(),
            listen: default_listen(),
            host: None,
            plaintext: false,
            gpu_name: default_gpu_name(),
            version: default_version(),
            models,
            latency: LatencySpec::default(),
            error_rate: 0.0,
            seed: 0,
            price: None,
            inter_token_delay_ms: default_inter_token_delay_ms(),
            region_latency_ms: BTreeMap::new(),
            result_store_entries: default_result_store_entries(),
        }
    }

    /// The host put in URLs and the certificate.
    pub fn effective_host(&self) -> String {
        if let Some(host) = &self.host {
            return host.clone();
        }
        let ip = if self.listen.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.listen.ip()
        };
        ip.to_string()
    }

    /// Checks values a TOML file could get wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ConfigError::Invalid(format!(
                "{}: error_rate {} is outside 0.0–1.0",
                self.name, self.error_rate
            )));
        }
        let prices = self.models.iter().filter_map(|m| m.price).chain(self.price);
        for price in prices {
            if price.pixels_per_unit <= 0 || price.price_per_unit < 0 {
                return Err(ConfigError::Invalid(format!(
                    "{}: price {}/{} is not a price",
                    self.name, price.price_per_unit, price.pixels_per_unit
                )));
            }
        }
        if let LatencySpec::LogNormal { median_ms, sigma } = self.latency
            && (!median_ms.is_finite() || median_ms < 0.0 || !sigma.is_finite() || sigma < 0.0)
        {
            return Err(ConfigError::Invalid(format!(
                "{}: log-normal latency needs a non-negative median and sigma",
                self.name
            )));
        }
        if self.result_store_entries == 0 {
            return Err(ConfigError::Invalid(format!(
                "{}: result_store_entries must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

/// A TOML file of orchestrators: `[[orchestrator]]` tables, each an
/// [`OrchestratorSpec`] plus an optional `count` (replicas named `<name>-<i>`,
/// seeds `seed + i`, ports `port + i` unless the port is 0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetConfig {
    /// The orchestrator entries, in file order.
    pub orchestrators: Vec<FleetEntry>,
}

/// One `[[orchestrator]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEntry {
    /// How many replicas of this spec to start.
    pub count: usize,
    /// The spec.
    pub spec: OrchestratorSpec,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not match the schema.
    #[error("parsing emulator config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid emulator config: {0}")]
    Invalid(String),
}

impl FleetConfig {
    /// Parses TOML text; unknown keys are rejected.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            orchestrator: Vec<toml::Table>,
        }
        let file: File = toml::from_str(text)?;
        let mut orchestrators = Vec::with_capacity(file.orchestrator.len());
        for mut table in file.orchestrator {
            let count = match table.remove("count") {
                None => 1,
                Some(toml::Value::Integer(n)) if (1..=10_000).contains(&n) => n as usize,
                Some(other) => {
                    return Err(ConfigError::Invalid(format!(
                        "count must be an integer in 1..=10000, got {other}"
                    )));
                }
            };
            let spec: OrchestratorSpec = toml::Value::Table(table).try_into()?;
            spec.validate()?;
            orchestrators.push(FleetEntry { count, spec });
        }
        Ok(Self { orchestrators })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Every replica's spec, expanded.
    pub fn specs(&self) -> Vec<OrchestratorSpec> {
        self.orchestrators
            .iter()
            .flat_map(|entry| replicas(&entry.spec, entry.count))
            .collect()
    }
}

/// `count` copies of `template`: names `<name>-<i>`, seeds `seed + i`, and
/// ports `port + i` unless the port is 0. A count of 1 keeps the spec as is.
pub fn replicas(template: &OrchestratorSpec, count: usize) -> Vec<OrchestratorSpec> {
    if count == 1 {
        return vec![template.clone()];
    }
    (0..count)
        .map(|i| {
            let mut spec = template.clone();
            spec.name = format!("{}-{i}", template.name);
            spec.seed = template.seed.wrapping_add(i as u64);
            if template.listen.port() != 0 {
                let port = template.listen.port().saturating_add(i as u16);
                spec.listen.set_port(port);
            }
            spec
        })
        .collect()
}

fn default_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}
fn default_gpu_name() -> String {
    DEFAULT_GPU_NAME.to_owned()
}
fn default_version() -> String {
    DEFAULT_VERSION.to_owned()
}
fn default_true() -> bool {
    true
}
fn default_capacity() -> u32 {
    1
}
fn default_pixels_per_unit() -> i64 {
    1
}
fn default_inter_token_delay_ms() -> u64 {
    20
}
fn default_result_store_entries() -> usize {
    DEFAULT_RESULT_STORE_ENTRIES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_count_parses() {
        let text = r#"
            [[orchestrator]]
            name = "orch"
            count = 3
            listen = "127.0.0.1:0"
            error_rate = 0.1
            latency = { kind = "uniform", base_ms = 50, jitter_ms = 10 }
            region_latency_ms = { "127.0.0.2" = 40 }
            [[orchestrator.models]]
            pipeline = "text-to-image"
            capacity = 2
        "#;
        let config = FleetConfig::from_toml(text).expect("parses");
        let specs = config.specs();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[2].name, "orch-2");
        assert_eq!(specs[2].seed, 2);
        assert_eq!(specs[0].models[0].model_id(), "stabilityai/sdxl-turbo");
        assert_eq!(specs[0].models[0].capacity, 2);
        assert_eq!(
            specs[0]
                .region_latency_ms
                .get(&"127.0.0.2".parse::<IpAddr>().unwrap()),
            Some(&40)
        );
    }

    #[test]
    fn example_file_parses() {
        let config = FleetConfig::from_toml(include_str!("../../emulator.example.toml"))
            .expect("the example config is valid");
        let specs = config.specs();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[1].name, "fra-orch-1");
        assert_eq!(specs[2].models[1].pipeline, Pipeline::LiveVideoToVideo);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let unknown = "[[orchestrator]]\nname = \"a\"\nbogus = 1\n";
        assert!(FleetConfig::from_toml(unknown).is_err());
        let unknown_model_key = "[[orchestrator]]\nname = \"a\"\n[[orchestrator.models]]\npipeline = \"llm\"\nwarmth = 1\n";
        assert!(FleetConfig::from_toml(unknown_model_key).is_err());
        let bad_count = "[[orchestrator]]\nname = \"a\"\ncount = 0\n";
        assert!(FleetConfig::from_toml(bad_count).is_err());
        let bad_rate = "[[orchestrator]]\nname = \"a\"\nerror_rate = 1.5\n";
        assert!(matches!(
            FleetConfig::from_toml(bad_rate),
            Err(ConfigError::Invalid(_))
        ));
    }
}
