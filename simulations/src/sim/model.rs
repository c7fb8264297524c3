//! The simulated world's static description: virtual time, regions and their
//! round-trip times, gateway nodes, orchestrators, the workload and the
//! knobs of view propagation and retries. Everything here is plain data,
//! generated from a seed by [`SimConfig::generate`].

use std::fmt;

use serde::Serialize;

use super::rng::SimRng;

/// A virtual instant: microseconds since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct SimTime(pub u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: Self = Self(0);

    /// An instant `ms` milliseconds after the start.
    pub fn from_ms(ms: f64) -> Self {
        Self(us(ms))
    }

    /// This instant plus `delta_us` microseconds.
    pub fn plus_us(self, delta_us: u64) -> Self {
        Self(self.0.saturating_add(delta_us))
    }

    /// Microseconds since `earlier` (zero if `earlier` is later).
    pub fn since_us(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Milliseconds since the start.
    pub fn as_ms(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0 as f64 / 1e6)
    }
}

/// Milliseconds (fractional) to whole microseconds.
pub fn us(ms: f64) -> u64 {
    if ms <= 0.0 {
        0
    } else {
        (ms * 1000.0).round() as u64
    }
}

/// Index of a region in [`Topology::regions`].
pub type RegionIdx = usize;
/// Index of a gateway node in [`Topology::nodes`].
pub type NodeIdx = usize;
/// Index of an orchestrator in [`Topology::orchestrators`].
pub type OrchIdx = usize;

/// One region.
#[derive(Debug, Clone, Serialize)]
pub struct RegionSpec {
    /// Its name (`fra`, `lax`, `sin`).
    pub name: String,
}

/// One gateway node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    /// Its node id, e.g. `fra-1`.
    pub name: String,
    /// Where it runs.
    pub region: RegionIdx,
}

/// One orchestrator and its ground-truth behaviour (before faults).
#[derive(Debug, Clone, Serialize)]
pub struct OrchSpec {
    /// A short name, e.g. `o07-fra`; the service URI is derived from it.
    pub name: String,
    /// Where it runs.
    pub region: RegionIdx,
    /// GPU marketing name (sets the speed class).
    pub gpu: &'static str,
    /// Median service time of one job, in milliseconds.
    pub service_median_ms: f64,
    /// Concurrent jobs it accepts; one more is refused with "insufficient capacity".
    pub capacity: u32,
    /// Advertised price, wei per unit (pixel).
    pub price_wei_per_unit: i64,
    /// Extra round trip between this orchestrator and nodes of its own region.
    pub local_rtt_ms: f64,
}

/// Regions, nodes, orchestrators and the network between them.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// The regions.
    pub regions: Vec<RegionSpec>,
    /// Round-trip time between regions in ms; the diagonal is unused
    /// (in-region RTT comes from [`OrchSpec::local_rtt_ms`] and
    /// [`Topology::node_rtt_ms`]).
    pub region_rtt_ms: Vec<Vec<f64>>,
    /// Round-trip time between two nodes of one region, in ms.
    pub node_rtt_ms: f64,
    /// The gateway nodes.
    pub nodes: Vec<NodeSpec>,
    /// The orchestrators.
    pub orchestrators: Vec<OrchSpec>,
}

impl Topology {
    /// Round trip from `node` to `orch` in ms (no faults).
    pub fn rtt_ms(&self, node: NodeIdx, orch: OrchIdx) -> f64 {
        let o = &self.orchestrators[orch];
        let nr = self.nodes[node].region;
        if nr == o.region {
            o.local_rtt_ms
        } else {
            self.region_rtt_ms[nr][o.region]
        }
    }

    /// Round trip between two nodes in ms.
    pub fn node_to_node_rtt_ms(&self, a: NodeIdx, b: NodeIdx) -> f64 {
        let (ra, rb) = (self.nodes[a].region, self.nodes[b].region);
        if ra == rb {
            self.node_rtt_ms
        } else {
            self.region_rtt_ms[ra][rb]
        }
    }

    /// Nodes of one region.
    pub fn nodes_in(&self, region: RegionIdx) -> impl Iterator<Item = NodeIdx> + '_ {
        (0..self.nodes.len()).filter(move |&n| self.nodes[n].region == region)
    }

    /// Orchestrators of one region.
    pub fn orchestrators_in(&self, region: RegionIdx) -> impl Iterator<Item = OrchIdx> + '_ {
        (0..self.orchestrators.len()).filter(move |&o| self.orchestrators[o].region == region)
    }
}

/// Client load.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// Job arrivals per second, cluster-wide (Poisson).
    pub jobs_per_s: f64,
    /// Length of the run in simulated seconds.
    pub duration_s: f64,
    /// Metrics ignore jobs that arrive before this many seconds (warm-up).
    pub warmup_s: f64,
    /// The gateway's price cap, wei per unit.
    pub price_cap_wei_per_unit: i64,
    /// Log-space standard deviation of one job's service time.
    pub service_sigma: f64,
}

/// How observations travel between nodes (the gossip model).
#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    /// A node publishes its changed records this many ms after the first
    /// change since its last publication, as the node does
    /// (`PUBLISH_COALESCE`: wait for a change, sleep 50 ms, publish what
    /// changed meanwhile). Also the period of the node's housekeeping and
    /// of the repair of a lost delivery.
    pub publish_coalesce_ms: f64,
    /// Median extra delay of one delivery, on top of the one-way network delay.
    pub delay_median_ms: f64,
    /// Log-space standard deviation of that delay.
    pub delay_sigma: f64,
    /// Chance that one delivery is lost; repaired `publish_coalesce_ms`
    /// later (in the node, chitchat's anti-entropy repairs a lost push
    /// within ~200 ms).
    pub loss: f64,
    /// Median extra delay of a direct message (a load announcement sent at
    /// once on its own stream, not coalesced with others), on top of the one-way
    /// network delay.
    pub direct_median_ms: f64,
    /// Log-space standard deviation of that delay.
    pub direct_sigma: f64,
}

/// Median extra delay of a record delivery (see [`Propagation`]): the node
/// coalesces changed records for 50 ms after the first change
/// ([`Propagation::publish_coalesce_ms`]) and then pushes them to every peer on their own streams (`mesh` direct push;
/// chitchat gossip is only the backstop). Calibrated against the mesh on
/// loopback (`tests/tests/cluster_measure.rs`, 9 in-process nodes, debug
/// build, 200 writes, polled every 5 ms): visible on all other nodes after
/// p50 57 ms, p99 64 ms, of which 50 ms is the coalescing wait of an idle
/// node; so the push itself takes ~4.5 ms at the median and ~14 ms at p99.
pub const RECORD_PUSH_MEDIAN_MS: f64 = 4.5;
/// Its log-space spread: p99 = 4.5 ms × e^(2.33 × 0.5) ≈ 14 ms.
pub const RECORD_PUSH_SIGMA: f64 = 0.5;

/// Median extra delay of a load announcement (see [`Propagation`]),
/// calibrated against the mesh on loopback (`mesh/tests/load.rs`, debug
/// build, 3 nodes, 2,000 announcements 1 ms apart, machine load ~3 on 2
/// cores): p50 0.27–0.29 ms, p99 1.9–2.9 ms over three runs.
pub const DIRECT_MEDIAN_MS: f64 = 0.3;
/// Its log-space spread: p99 = 0.3 ms × e^(2.33 × 0.8) ≈ 1.9 ms.
pub const DIRECT_SIGMA: f64 = 0.8;

/// Retries and failover, identical for every policy.
#[derive(Debug, Clone, Serialize)]
pub struct RetryRules {
    /// New attempts start only within this window after the job arrived
    /// (go-livepeer `-aiProcessingRetryTimeout`, 2 s).
    pub retry_window_ms: f64,
    /// At most this many attempts per job (go-livepeer `maxTries`, 20).
    pub max_attempts: u32,
    /// Wait before asking the policy again when it had nothing to offer.
    pub backoff_ms: f64,
    /// A call to an unreachable (partitioned) orchestrator fails after this.
    pub connect_timeout_ms: f64,
    /// `GetOrchestrator` replies are awaited at most this long (discovery wait).
    pub discovery_wait_ms: f64,
    /// Processing time of one `GetOrchestrator` call on the orchestrator.
    pub info_processing_ms: f64,
}

/// Everything one run needs besides the scenario's faults.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// The world.
    pub topology: Topology,
    /// The clients.
    pub workload: Workload,
    /// The gossip model.
    pub propagation: Propagation,
    /// Retries.
    pub retry: RetryRules,
}

/// How big a generated world is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Size {
    /// Gateway nodes per region (3 regions).
    pub nodes_per_region: usize,
    /// Orchestrators, spread round-robin over the regions.
    pub orchestrators: usize,
    /// Run length in seconds.
    pub duration_s: f64,
    /// Cluster-wide job arrivals per second.
    pub jobs_per_s: f64,
}

impl Size {
    /// The design's reference cluster: 3 × 3 nodes, 50 orchestrators, 60 s.
    pub const FULL: Self = Self {
        nodes_per_region: 3,
        orchestrators: 50,
        duration_s: 60.0,
        jobs_per_s: 150.0,
    };
    /// A quick version for debug-build tests.
    pub const SMALL: Self = Self {
        nodes_per_region: 2,
        orchestrators: 18,
        duration_s: 30.0,
        jobs_per_s: 60.0,
    };
}

/// Text-to-image speed classes: (GPU, median ms for one 1024×1024 image).
pub const GPU_CLASSES: [(&str, f64); 5] = [
    ("NVIDIA GeForce RTX 4090", 330.0),
    ("NVIDIA L40S", 420.0),
    ("NVIDIA A100 80GB", 480.0),
    ("NVIDIA GeForce RTX 3090", 620.0),
    ("NVIDIA A10G", 780.0),
];

impl SimConfig {
    /// The default world for `size`, with orchestrator hardware drawn from `seed`.
    pub fn generate(size: Size, seed: u64) -> Self {
        let mut rng = SimRng::new(seed, 0x70_70);
        let regions: Vec<RegionSpec> = ["fra", "lax", "sin"]
            .iter()
            .map(|n| RegionSpec {
                name: (*n).to_owned(),
            })
            .collect();
        // fra-lax 150, fra-sin 160, lax-sin 170 ms.
        let region_rtt_ms = vec![
            vec![0.0, 150.0, 160.0],
            vec![150.0, 0.0, 170.0],
            vec![160.0, 170.0, 0.0],
        ];
        let mut nodes = Vec::new();
        for (r, region) in regions.iter().enumerate() {
            for i in 0..size.nodes_per_region {
                nodes.push(NodeSpec {
                    name: format!("{}-{}", region.name, i + 1),
                    region: r,
                });
            }
        }
        let price_cap_wei_per_unit = 1_000;
        let orchestrators = (0..size.orchestrators)
            .map(|i| {
                let region = i % regions.len();
                let (gpu, median) = GPU_CLASSES[rng.below(GPU_CLASSES.len())];
                OrchSpec {
                    name: format!("o{i:02}-{}", regions[region].name),
                    region,
                    gpu,
                    service_median_ms: median * rng.uniform(0.97, 1.03),
                    capacity: 2 + rng.below(5) as u32,
                    price_wei_per_unit: 300 + rng.below(600) as i64,
                    local_rtt_ms: rng.uniform(1.0, 2.0),
                }
            })
            .collect();
        Self {
            topology: Topology {
                regions,
                region_rtt_ms,
                node_rtt_ms: 1.0,
                nodes,
                orchestrators,
            },
            workload: Workload {
                jobs_per_s: size.jobs_per_s,
                duration_s: size.duration_s,
                warmup_s: 5.0,
                price_cap_wei_per_unit,
                service_sigma: 0.08,
            },
            propagation: Propagation {
                publish_coalesce_ms: 50.0,
                delay_median_ms: RECORD_PUSH_MEDIAN_MS,
                delay_sigma: RECORD_PUSH_SIGMA,
                loss: 0.01,
                direct_median_ms: DIRECT_MEDIAN_MS,
                direct_sigma: DIRECT_SIGMA,
            },
            retry: RetryRules {
                retry_window_ms: 2_000.0,
                max_attempts: 20,
                backoff_ms: 50.0,
                connect_timeout_ms: 2_000.0,
                discovery_wait_ms: 500.0,
                info_processing_ms: 5.0,
            },
        }
    }

    /// Expected service time of a job on `orch` with median `median_ms`:
    /// the mean of the log-normal.
    pub fn mean_service_ms(&self, median_ms: f64) -> f64 {
        let s = self.workload.service_sigma;
        median_ms * (s * s / 2.0).exp()
    }
}
