//! Named scenarios: a generated world plus a schedule of faults.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::model::{NodeIdx, OrchIdx, RegionIdx, SimConfig, SimTime, Size};

/// One fault or recovery at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum FaultAction {
    /// The orchestrator process dies: connections are refused, running jobs break.
    OrchDown(OrchIdx),
    /// It comes back (empty: no jobs running).
    OrchUp(OrchIdx),
    /// Its service times are multiplied by this factor from now on.
    OrchSlowdown(OrchIdx, f64),
    /// It advertises a new price (wei per unit) from now on.
    OrchPrice(OrchIdx, i64),
    /// Nothing passes between the two regions (gossip, jobs, discovery).
    Partition(RegionIdx, RegionIdx),
    /// The partition between the two regions ends.
    Heal(RegionIdx, RegionIdx),
    /// A gateway node crashes: its running client requests fail.
    NodeCrash(NodeIdx),
    /// It restarts with empty memory.
    NodeRestart(NodeIdx),
}

/// A fault at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fault {
    /// When.
    pub at: SimTime,
    /// What.
    pub action: FaultAction,
}

/// The scenarios, each runnable by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Scenario {
    /// No fault.
    Steady,
    /// The busiest-looking orchestrator (fastest in `fra`) crashes for good.
    OrchestratorCrash,
    /// That orchestrator becomes 10× slower.
    SlowOrchestrator,
    /// Every orchestrator of `fra` goes down, then comes back.
    RegionDown,
    /// `fra` and `lax` are partitioned, then healed.
    Partition,
    /// Gateway node `fra-1` crashes, then restarts empty.
    GatewayCrash,
    /// The fastest `fra` orchestrator flaps: 2 s up, 1 s down.
    Flapping,
    /// The fastest `fra` orchestrator raises its price to twice the cap.
    PriceAboveCap,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Self; 8] = [
        Self::Steady,
        Self::OrchestratorCrash,
        Self::SlowOrchestrator,
        Self::RegionDown,
        Self::Partition,
        Self::GatewayCrash,
        Self::Flapping,
        Self::PriceAboveCap,
    ];

    /// The CLI name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::OrchestratorCrash => "orchestrator-crash",
            Self::SlowOrchestrator => "slow-orchestrator",
            Self::RegionDown => "region-down",
            Self::Partition => "partition",
            Self::GatewayCrash => "gateway-crash",
            Self::Flapping => "flapping",
            Self::PriceAboveCap => "price-above-cap",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of [`Scenario::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario {0:?}; known: steady, orchestrator-crash, slow-orchestrator, region-down, partition, gateway-crash, flapping, price-above-cap"
)]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// A scenario made concrete for one seed and size.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Which scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// The size it was generated at.
    pub size: Size,
    /// The world.
    pub config: SimConfig,
    /// Faults, in time order.
    pub faults: Vec<Fault>,
    /// When the fault starts (metrics compare before/after).
    pub fault_at: SimTime,
    /// When it ends, for faults that end.
    pub recover_at: Option<SimTime>,
    /// The orchestrator the fault is about, if one.
    pub target: Option<OrchIdx>,
    /// The region the fault is about, if one.
    pub region: Option<RegionIdx>,
}

impl Plan {
    /// Build `scenario` at `size` for `seed`.
    pub fn new(scenario: Scenario, size: Size, seed: u64) -> Self {
        let config = SimConfig::generate(size, seed);
        let duration = size.duration_s;
        let fault_at = SimTime::from_ms(duration * 1000.0 / 3.0);
        let recover_at = SimTime::from_ms(duration * 1000.0 * 0.6);
        // The fastest orchestrator of region 0: the one routing likes most.
        let fastest_fra = config
            .topology
            .orchestrators_in(0)
            .min_by(|&a, &b| {
                let (oa, ob) = (
                    &config.topology.orchestrators[a],
                    &config.topology.orchestrators[b],
                );
                oa.service_median_ms
                    .total_cmp(&ob.service_median_ms)
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        let cap = config.workload.price_cap_wei_per_unit;
        let mut plan = Self {
            scenario,
            seed,
            size,
            faults: Vec::new(),
            fault_at,
            recover_at: None,
            target: None,
            region: None,
            config,
        };
        let at = |t: SimTime, action| Fault { at: t, action };
        match scenario {
            Scenario::Steady => {}
            Scenario::OrchestratorCrash => {
                plan.target = Some(fastest_fra);
                plan.faults
                    .push(at(fault_at, FaultAction::OrchDown(fastest_fra)));
            }
            Scenario::SlowOrchestrator => {
                plan.target = Some(fastest_fra);
                plan.faults
                    .push(at(fault_at, FaultAction::OrchSlowdown(fastest_fra, 10.0)));
            }
            Scenario::RegionDown => {
                plan.region = Some(0);
                plan.recover_at = Some(recover_at);
                let fra: Vec<OrchIdx> = plan.config.topology.orchestrators_in(0).collect();
                for &o in &fra {
                    plan.faults.push(at(fault_at, FaultAction::OrchDown(o)));
                }
                for &o in &fra {
                    plan.faults.push(at(recover_at, FaultAction::OrchUp(o)));
                }
            }
            Scenario::Partition => {
                plan.region = Some(0);
                plan.recover_at = Some(recover_at);
                plan.faults.push(at(fault_at, FaultAction::Partition(0, 1)));
                plan.faults.push(at(recover_at, FaultAction::Heal(0, 1)));
            }
            Scenario::GatewayCrash => {
                plan.region = Some(0);
                plan.recover_at = Some(recover_at);
                plan.faults.push(at(fault_at, FaultAction::NodeCrash(0)));
                plan.faults
                    .push(at(recover_at, FaultAction::NodeRestart(0)));
            }
            Scenario::Flapping => {
                plan.target = Some(fastest_fra);
                plan.recover_at = Some(recover_at);
                let mut t = fault_at;
                while t < recover_at {
                    plan.faults.push(at(t, FaultAction::OrchDown(fastest_fra)));
                    t = t.plus_us(1_000_000);
                    plan.faults.push(at(t, FaultAction::OrchUp(fastest_fra)));
                    t = t.plus_us(2_000_000);
                }
            }
            Scenario::PriceAboveCap => {
                plan.target = Some(fastest_fra);
                plan.faults
                    .push(at(fault_at, FaultAction::OrchPrice(fastest_fra, 2 * cap)));
            }
        }
        plan
    }
}
