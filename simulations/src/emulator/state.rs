//! State shared by the gRPC and HTTP halves of one emulated orchestrator:
//! run-time settings, the auth secret of the current incarnation, capacity
//! accounting, the result store and counters.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mesh_core::Pipeline;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::auth::AuthSecret;
use super::config::{LatencySpec, ModelSpec, OrchestratorSpec, PriceSpec};
use super::store::{ResultStore, StoredObject};

/// Longest latency a distribution may draw, so a wild log-normal tail cannot
/// park a job for hours.
const MAX_JOB_LATENCY: Duration = Duration::from_secs(600);

/// What can change at run time through the control API.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) models: Vec<ModelSpec>,
    pub(crate) latency: LatencySpec,
    pub(crate) error_rate: f64,
    pub(crate) price: Option<PriceSpec>,
    pub(crate) inter_token_delay: Duration,
    pub(crate) region_latency_ms: BTreeMap<IpAddr, u64>,
    /// Answer every job 200 with a body that is not JSON (a broken runner
    /// behind a healthy orchestrator).
    pub(crate) broken_answers: bool,
}

/// Counters of one emulated orchestrator, cumulative across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// `GetOrchestrator` calls answered.
    pub get_orchestrator_calls: u64,
    /// Jobs answered 200 (live-video-to-video starts included).
    pub jobs_served: u64,
    /// Jobs answered with any error status (the sum of the fields below).
    pub jobs_rejected: u64,
    /// 402: undecodable `Livepeer-Payment`.
    pub rejected_payment: u64,
    /// 403: bad `Livepeer-Segment` (token, capabilities).
    pub rejected_credentials: u64,
    /// 400: bad body.
    pub rejected_bad_request: u64,
    /// 503: `insufficient capacity` (or model not served).
    pub rejected_capacity: u64,
    /// 500: runner rejections and injected errors.
    pub failed: u64,
    /// Jobs holding capacity right now.
    pub in_flight: u64,
    /// Completed `restart()` calls.
    pub restarts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) get_orchestrator_calls: AtomicU64,
    pub(crate) jobs_served: AtomicU64,
    pub(crate) rejected_payment: AtomicU64,
    pub(crate) rejected_credentials: AtomicU64,
    pub(crate) rejected_bad_request: AtomicU64,
    pub(crate) rejected_capacity: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything the request handlers of one orchestrator share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) gpu_name: String,
    /// `https://host:port` (or `http://` in plaintext mode), no trailing slash.
    pub(crate) base_url: String,
    settings: Mutex<Settings>,
    rng: Mutex<StdRng>,
    secret: RwLock<AuthSecret>,
    inflight: Mutex<HashMap<(Pipeline, String), u32>>,
    store: Mutex<ResultStore>,
    pub(crate) counters: Counters,
}

/// Capacity reserved for one job; released on drop.
#[derive(Debug)]
pub(crate) struct CapacityGuard {
    shared: Arc<Shared>,
    key: (Pipeline, String),
}

impl Drop for CapacityGuard {
    fn drop(&mut self) {
        let mut inflight = lock(&self.shared.inflight);
        if let Some(count) = inflight.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inflight.remove(&self.key);
            }
        }
    }
}

/// Why capacity could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoCapacity {
    /// The model is not served here.
    NotServed,
    /// Every slot is taken.
    Full,
}

/// Locks a std mutex, ignoring poisoning (the data stays consistent: every
/// critical section is a few assignments).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Shared {
    pub(crate) fn new(spec: &OrchestratorSpec, base_url: String) -> Self {
        Self {
            name: spec.name.clone(),
            version: spec.version.clone(),
            gpu_name: spec.gpu_name.clone(),
            base_url,
            settings: Mutex::new(Settings {
                models: spec.models.clone(),
                latency: spec.latency,
                error_rate: spec.error_rate.clamp(0.0, 1.0),
                price: spec.price,
                inter_token_delay: Duration::from_millis(spec.inter_token_delay_ms),
                region_latency_ms: spec.region_latency_ms.clone(),
                broken_answers: false,
            }),
            rng: Mutex::new(StdRng::seed_from_u64(spec.seed)),
            secret: RwLock::new(AuthSecret::random()),
            inflight: Mutex::new(HashMap::new()),
            store: Mutex::new(ResultStore::new(spec.result_store_entries)),
            counters: Counters::default(),
        }
    }

    pub(crate) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub(crate) fn update_settings(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut lock(&self.settings));
    }

    pub(crate) fn secret(&self) -> AuthSecret {
        self.secret
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new incarnation: new secret, empty store.
    pub(crate) fn reset_for_restart(&self) {
        *self.secret.write().unwrap_or_else(PoisonError::into_inner) = AuthSecret::random();
        lock(&self.store).clear();
    }

    /// Jobs in flight per (pipeline, model).
    pub(crate) fn in_use(&self, pipeline: Pipeline, model_id: &str) -> u32 {
        lock(&self.inflight)
            .get(&(pipeline, model_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn try_reserve(
        self: &Arc<Self>,
        pipeline: Pipeline,
        model_id: &str,
    ) -> Result<CapacityGuard, NoCapacity> {
        let capacity = {
            let settings = lock(&self.settings);
            settings
                .models
                .iter()
                .filter(|m| m.pipeline == pipeline && m.model_id() == model_id)
                .map(|m| m.capacity)
                .max()
                .ok_or(NoCapacity::NotServed)?
        };
        let key = (pipeline, model_id.to_owned());
        let mut inflight = lock(&self.inflight);
        let count = inflight.entry(key.clone()).or_insert(0);
        if *count >= capacity {
            if *count == 0 {
                inflight.remove(&key);
            }
            return Err(NoCapacity::Full);
        }
        *count += 1;
        drop(inflight);
        Ok(CapacityGuard {
            shared: Arc::clone(self),
            key,
        })
    }

    /// Draws one job's processing time.
    pub(crate) fn job_latency(&self) -> Duration {
        let latency = lock(&self.settings).latency;
        let mut rng = lock(&self.rng);
        let ms = match latency {
            LatencySpec::Uniform { base_ms, jitter_ms } => {
                let jitter = if jitter_ms == 0 {
                    0
                } else {
                    rng.random_range(0..=jitter_ms)
                };
                base_ms.saturating_add(jitter) as f64
            }
            LatencySpec::LogNormal { median_ms, sigma } => {
                // Box–Muller: u1 in (0, 1] keeps ln finite.
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median_ms * (sigma * z).exp()
            }
        };
        Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(MAX_JOB_LATENCY.as_secs_f64()))
    }

    /// Whether jobs are answered 200 with a body that is not JSON.
    pub(crate) fn broken_answers(&self) -> bool {
        lock(&self.settings).broken_answers
    }

    /// Whether this job fails with an injected error.
    pub(crate) fn inject_error(&self) -> bool {
        let rate = lock(&self.settings).error_rate;
        if rate <= 0.0 {
            return false;
        }
        lock(&self.rng).random_bool(rate.min(1.0))
    }

    /// Extra delay for callers from `ip` (per-region table).
    pub(crate) fn region_delay(&self, ip: IpAddr) -> Duration {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        lock(&self.settings)
            .region_latency_ms
            .get(&ip)
            .map_or(Duration::ZERO, |ms| Duration::from_millis(*ms))
    }

    pub(crate) fn inter_token_delay(&self) -> Duration {
        lock(&self.settings).inter_token_delay
    }

    /// A random lowercase hex string of `bytes` random bytes.
    pub(crate) fn random_hex(&self, bytes: usize) -> String {
        let mut rng = rand::rng();
        (0..bytes)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect()
    }

    pub(crate) fn random_u64(&self) -> u64 {
        lock(&self.rng).random()
    }

    pub(crate) fn store_put(&self, path: String, content_type: &'static str, data: Bytes) {
        lock(&self.store).put(tokio::time::Instant::now(), path, content_type, data);
    }

    pub(crate) fn store_get(&self, path: &str) -> Option<StoredObject> {
        lock(&self.store).get(tokio::time::Instant::now(), path)
    }

    pub(crate) fn stats(&self) -> EmulatorStats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let in_flight = lock(&self.inflight).values().map(|v| u64::from(*v)).sum();
        let rejected_payment = get(&c.rejected_payment);
        let rejected_credentials = get(&c.rejected_credentials);
        let rejected_bad_request = get(&c.rejected_bad_request);
        let rejected_capacity = get(&c.rejected_capacity);
        let failed = get(&c.failed);
        EmulatorStats {
            get_orchestrator_calls: get(&c.get_orchestrator_calls),
            jobs_served: get(&c.jobs_served),
            jobs_rejected: rejected_payment
                + rejected_credentials
                + rejected_bad_request
                + rejected_capacity
                + failed,
            rejected_payment,
            rejected_credentials,
            rejected_bad_request,
            rejected_capacity,
            failed,
            in_flight,
            restarts: get(&c.restarts),
        }
    }
}
