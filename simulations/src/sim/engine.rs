//! The discrete-event loop: one run of one policy through one [`Plan`].
//!
//! Events sit in a binary heap ordered by (virtual time, sequence number), so
//! two events at the same instant run in the order they were scheduled and a
//! run depends on nothing but its seed. Randomness comes from separate
//! streams (arrivals, service times, gossip, the policy) so that every policy
//! sees the same clients, the same faults and, for the same job on the same
//! orchestrator, the same service time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;

use super::metrics::{JobRecord, PickRecord, RunLog};
use super::model::{NodeIdx, OrchIdx, OrchSpec, RegionIdx, SimTime, us};
use super::policy::{
    AttemptReport, FailureKind, PickDecision, PickInput, ProbeReply, ProbeResult, RoutingPolicy,
};
use super::rng::{SimRng, mix64};
use super::scenario::{FaultAction, Plan};

/// Upper bound on events per run, a guard against a policy that loops.
const MAX_EVENTS: u64 = 50_000_000;
/// Propagation samples kept per run (for the calibration figures).
const MAX_PROPAGATION_SAMPLES: usize = 20_000;

type JobIdx = usize;
type AttemptIdx = usize;

enum Event<G> {
    Arrival,
    TryJob(JobIdx),
    /// The attempt's request reaches the orchestrator, which admits it or
    /// answers at once.
    AttemptArrive(AttemptIdx),
    /// The orchestrator finishes the attempt's job and frees its slot; the
    /// answer is on its way back.
    ServiceEnd(AttemptIdx),
    AttemptEnd {
        attempt: AttemptIdx,
        result: Result<(), FailureKind>,
    },
    DiscoveryDone {
        node: NodeIdx,
        epoch: u32,
        results: Vec<ProbeResult>,
    },
    Poll {
        node: NodeIdx,
        epoch: u32,
    },
    ProbeTick {
        node: NodeIdx,
        epoch: u32,
    },
    ProbeDone {
        node: NodeIdx,
        epoch: u32,
        results: Vec<ProbeResult>,
    },
    /// Housekeeping and load refresh, every `publish_coalesce_ms`.
    Housekeeping {
        node: NodeIdx,
        epoch: u32,
    },
    /// The node publishes the records that changed since its first change
    /// after its last publication, `publish_coalesce_ms` ago.
    Publish {
        node: NodeIdx,
        epoch: u32,
    },
    Deliver {
        to: NodeIdx,
        epoch: u32,
        msg: Rc<G>,
    },
    Fault(usize),
}

struct Scheduled<G> {
    at: SimTime,
    seq: u64,
    event: Event<G>,
}

impl<G> PartialEq for Scheduled<G> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<G> Eq for Scheduled<G> {}
impl<G> PartialOrd for Scheduled<G> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<G> Ord for Scheduled<G> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Pairs of regions between which nothing passes.
#[derive(Debug, Default)]
struct Partitions(Vec<(RegionIdx, RegionIdx)>);

impl Partitions {
    fn cut(&self, a: RegionIdx, b: RegionIdx) -> bool {
        self.0
            .iter()
            .any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
    }

    fn cut_off(&mut self, a: RegionIdx, b: RegionIdx) {
        if !self.cut(a, b) {
            self.0.push((a, b));
        }
    }

    fn heal(&mut self, a: RegionIdx, b: RegionIdx) {
        self.0
            .retain(|&(x, y)| (x, y) != (a, b) && (x, y) != (b, a));
    }

    /// Per region (of `regions`), whether `from` can reach it now.
    fn reachable_from(&self, from: RegionIdx, regions: usize) -> Vec<bool> {
        (0..regions).map(|to| !self.cut(from, to)).collect()
    }
}

#[derive(Debug)]
struct OrchState {
    up: bool,
    slowdown: f64,
    price_wei_per_unit: i64,
    in_service: u32,
    holding: Vec<AttemptIdx>,
}

struct NodeState {
    up: bool,
    epoch: u32,
    /// When the first change since the last publication happened (a
    /// publication is then scheduled `publish_coalesce_ms` later).
    first_change: Option<SimTime>,
    inflight: Vec<u32>,
    discovering: bool,
    waiting: Vec<JobIdx>,
}

struct Job {
    arrival: SimTime,
    /// The node the client called; the answer goes back through it.
    node: NodeIdx,
    /// The node running the job: `node`, or the node it was forwarded to.
    handler: NodeIdx,
    /// One-way delay between `node` and `handler`, ms (0 unless forwarded).
    hop_ms: f64,
    tried: Vec<OrchIdx>,
    done: bool,
}

struct Attempt {
    job: JobIdx,
    orch: OrchIdx,
    node: NodeIdx,
    epoch: u32,
    started: SimTime,
    /// The job's attempt number (0 = first), for common random numbers.
    number: u64,
    resolved: bool,
    holding: bool,
}

/// Ground truth as a node could at best know it, for the late-truth bound
/// ([`super::bound::LateTruthPolicy`]) and nothing else: whether each
/// orchestrator could admit a job (up, with a free slot) as it was a one-way
/// delay from the picking node ago, which is the freshest any message from
/// the orchestrator could be. Its speed, price and reachability are as they
/// are now (only faults change them). The engine builds it only for a
/// policy whose [`RoutingPolicy::sees_truth`] says so; gatemesh and the
/// baselines never see it.
pub struct LateTruth<'a> {
    now: SimTime,
    availability: &'a [Vec<(u64, bool)>],
    /// The picking node's round trip to each orchestrator, ms.
    rtt_ms: &'a [f64],
    mean_service_ms: &'a [f64],
    orchs: &'a [OrchState],
    specs: &'a [OrchSpec],
    /// Per region, whether the picking node can reach it now.
    reachable: Vec<bool>,
    /// The picking node's region.
    region: RegionIdx,
    price_cap_wei_per_unit: i64,
}

impl std::fmt::Debug for LateTruth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateTruth")
            .field("now", &self.now)
            .field("orchestrators", &self.orchs.len())
            .finish_non_exhaustive()
    }
}

impl LateTruth<'_> {
    /// How many orchestrators there are.
    pub fn orchestrators(&self) -> usize {
        self.orchs.len()
    }

    /// Whether `orch` could admit a job a one-way delay from the picking
    /// node ago.
    pub fn seen_free(&self, orch: OrchIdx) -> bool {
        let seen_at = self.now.0.saturating_sub(us(self.rtt_ms[orch] / 2.0));
        let log = &self.availability[orch];
        match log.partition_point(|&(at, _)| at <= seen_at) {
            0 => false,
            i => log[i - 1].1,
        }
    }

    /// Whether the job may go to `orch` at all: its price is under the cap
    /// and its region is reachable from the picking node.
    pub fn admissible(&self, orch: OrchIdx) -> bool {
        self.orchs[orch].price_wei_per_unit <= self.price_cap_wei_per_unit
            && self.reachable[self.specs[orch].region]
    }

    /// Whether `orch` is in the picking node's region.
    pub fn is_home(&self, orch: OrchIdx) -> bool {
        self.specs[orch].region == self.region
    }

    /// The true expected latency of `orch` from the picking node (round
    /// trip + mean service time), the figure accuracy is judged by.
    pub fn expected_ms(&self, orch: OrchIdx) -> f64 {
        expected_latency_ms(
            self.rtt_ms[orch],
            self.mean_service_ms[orch],
            self.orchs[orch].slowdown,
        )
    }
}

/// The true expected latency of an orchestrator from a node, the figure
/// every pick is judged by: the round trip plus the mean service time.
fn expected_latency_ms(rtt_ms: f64, mean_service_ms: f64, slowdown: f64) -> f64 {
    rtt_ms + mean_service_ms * slowdown
}

/// One run of one policy.
pub struct Engine<'p, P: RoutingPolicy> {
    plan: &'p Plan,
    policy: P,
    now: SimTime,
    seq: u64,
    queue: BinaryHeap<Scheduled<P::Gossip>>,
    orchs: Vec<OrchState>,
    nodes: Vec<NodeState>,
    partitions: Partitions,
    jobs: Vec<Job>,
    attempts: Vec<Attempt>,
    arrival_rng: SimRng,
    gossip_rng: SimRng,
    direct_rng: SimRng,
    policy_rng: SimRng,
    end: SimTime,
    log: RunLog,
    mean_service_ms: Vec<f64>,
    /// Round trip from each node to each orchestrator, ms (no faults).
    rtt_ms: Vec<Vec<f64>>,
    /// Per orchestrator, when it became able or unable to admit a job
    /// (up with a free slot), in time order: the truth behind
    /// [`PickRecord::accurate_on_arrival`].
    availability: Vec<Vec<(u64, bool)>>,
    events: u64,
}

impl<P: RoutingPolicy> std::fmt::Debug for Engine<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policy", &self.policy.name())
            .field("now", &self.now)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<'p, P: RoutingPolicy> Engine<'p, P> {
    /// A fresh run of `policy` through `plan`.
    pub fn new(plan: &'p Plan, policy: P) -> Self {
        let topo = &plan.config.topology;
        let seed = plan.seed;
        let orchs = topo
            .orchestrators
            .iter()
            .map(|o| OrchState {
                up: true,
                slowdown: 1.0,
                price_wei_per_unit: o.price_wei_per_unit,
                in_service: 0,
                holding: Vec::new(),
            })
            .collect();
        let nodes = topo
            .nodes
            .iter()
            .map(|_| NodeState {
                up: true,
                epoch: 0,
                first_change: None,
                inflight: vec![0; topo.orchestrators.len()],
                discovering: false,
                waiting: Vec::new(),
            })
            .collect();
        let mean_service_ms = topo
            .orchestrators
            .iter()
            .map(|o| plan.config.mean_service_ms(o.service_median_ms))
            .collect();
        Self {
            plan,
            policy,
            now: SimTime::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            orchs,
            nodes,
            partitions: Partitions::default(),
            jobs: Vec::new(),
            attempts: Vec::new(),
            arrival_rng: SimRng::new(seed, 1),
            gossip_rng: SimRng::new(seed, 2),
            direct_rng: SimRng::new(seed, 4),
            policy_rng: SimRng::new(seed, 3),
            end: SimTime::from_ms(plan.config.workload.duration_s * 1000.0),
            log: RunLog::default(),
            mean_service_ms,
            rtt_ms: (0..topo.nodes.len())
                .map(|n| {
                    (0..topo.orchestrators.len())
                        .map(|o| topo.rtt_ms(n, o))
                        .collect()
                })
                .collect(),
            availability: vec![vec![(0, true)]; topo.orchestrators.len()],
            events: 0,
        }
    }

    fn schedule(&mut self, at: SimTime, event: Event<P::Gossip>) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// Run to the end of the scenario (plus time for running jobs to finish)
    /// and return the log.
    pub fn run(mut self) -> (RunLog, P) {
        let node_count = self.nodes.len();
        self.schedule_next_arrival();
        for i in 0..self.plan.faults.len() {
            self.schedule(self.plan.faults[i].at, Event::Fault(i));
        }
        for node in 0..node_count {
            self.start_node_timers(node);
        }
        // Jobs that arrive before `end` may finish after it.
        let hard_end = self.end.plus_us(us(30_000.0));
        while let Some(Scheduled { at, event, .. }) = self.queue.pop() {
            if at > hard_end || self.events >= MAX_EVENTS {
                break;
            }
            self.now = at;
            self.events += 1;
            self.handle(event);
        }
        self.log.events = self.events;
        self.score_on_arrival();
        (self.log, self.policy)
    }

    fn start_node_timers(&mut self, node: NodeIdx) {
        let n = self.nodes.len() as f64;
        let epoch = self.nodes[node].epoch;
        if self.policy.gossips() {
            let offset = self.plan.config.propagation.publish_coalesce_ms * node as f64 / n;
            self.schedule(
                self.now.plus_us(us(offset)),
                Event::Housekeeping { node, epoch },
            );
        }
        if let Some(interval_ms) = self.policy.poll_interval_ms() {
            let offset = interval_ms * node as f64 / n;
            self.schedule(self.now.plus_us(us(offset)), Event::Poll { node, epoch });
        }
        if let Some(interval_ms) = self.policy.probe_interval_ms() {
            let offset = interval_ms * (node as f64 + 0.5) / n;
            self.schedule(
                self.now.plus_us(us(offset)),
                Event::ProbeTick { node, epoch },
            );
        }
    }

    fn handle(&mut self, event: Event<P::Gossip>) {
        match event {
            Event::Arrival => self.on_arrival(),
            Event::TryJob(job) => self.try_job(job),
            Event::AttemptArrive(attempt) => self.on_attempt_arrive(attempt),
            Event::ServiceEnd(attempt) => self.on_service_end(attempt),
            Event::AttemptEnd { attempt, result } => self.on_attempt_end(attempt, result),
            Event::DiscoveryDone {
                node,
                epoch,
                results,
            } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    self.policy.on_discovery(node, self.now, &results);
                    self.note_changes(node);
                    self.nodes[node].discovering = false;
                    for job in std::mem::take(&mut self.nodes[node].waiting) {
                        self.schedule(self.now, Event::TryJob(job));
                    }
                }
            }
            Event::Poll { node, epoch } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch && self.now < self.end {
                    self.start_discovery(node);
                    if let Some(interval_ms) = self.policy.poll_interval_ms() {
                        self.schedule(
                            self.now.plus_us(us(interval_ms)),
                            Event::Poll { node, epoch },
                        );
                    }
                }
            }
            Event::ProbeTick { node, epoch } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch && self.now < self.end {
                    let targets = self.policy.probe_targets(node, self.now);
                    if !targets.is_empty() {
                        let (wait_ms, results) = self.probe(node, targets.into_iter());
                        self.schedule(
                            self.now.plus_us(us(wait_ms)),
                            Event::ProbeDone {
                                node,
                                epoch,
                                results,
                            },
                        );
                    }
                    if let Some(interval_ms) = self.policy.probe_interval_ms() {
                        self.schedule(
                            self.now.plus_us(us(interval_ms)),
                            Event::ProbeTick { node, epoch },
                        );
                    }
                }
            }
            Event::ProbeDone {
                node,
                epoch,
                results,
            } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    self.policy.on_discovery(node, self.now, &results);
                    self.note_changes(node);
                }
            }
            Event::Housekeeping { node, epoch } => self.on_housekeeping(node, epoch),
            Event::Publish { node, epoch } => self.on_publish(node, epoch),
            Event::Deliver { to, epoch, msg } => {
                if self.nodes[to].up && self.nodes[to].epoch == epoch {
                    self.policy.on_gossip(to, self.now, &msg);
                }
            }
            Event::Fault(i) => self.apply_fault(self.plan.faults[i].action),
        }
    }

    // ---- clients -------------------------------------------------------

    fn schedule_next_arrival(&mut self) {
        let gap_ms = self
            .arrival_rng
            .exponential(1000.0 / self.plan.config.workload.jobs_per_s);
        let at = self.now.plus_us(us(gap_ms).max(1));
        if at < self.end {
            self.schedule(at, Event::Arrival);
        }
    }

    fn on_arrival(&mut self) {
        let topo = &self.plan.config.topology;
        let region = self.arrival_rng.below(topo.regions.len());
        let pick = self.arrival_rng.unit();
        self.schedule_next_arrival();
        // The client's load balancer sends it to a live node of its region,
        // or of the nearest region with one.
        let Some(live) = self.regions_by_distance(region).into_iter().find_map(|r| {
            let live: Vec<NodeIdx> = topo.nodes_in(r).filter(|&n| self.nodes[n].up).collect();
            (!live.is_empty()).then_some(live)
        }) else {
            return;
        };
        let node = live[((pick * live.len() as f64) as usize).min(live.len() - 1)];
        let job = self.jobs.len();
        self.jobs.push(Job {
            arrival: self.now,
            node,
            handler: node,
            hop_ms: 0.0,
            tried: Vec::new(),
            done: false,
        });
        self.try_job(job);
    }

    fn finish_job(&mut self, job: JobIdx, served_by: Option<OrchIdx>) {
        let j = &mut self.jobs[job];
        if j.done {
            return;
        }
        j.done = true;
        let region = self.plan.config.topology.nodes[j.node].region;
        self.log.jobs.push(JobRecord {
            arrival_us: j.arrival.0,
            // A forwarded job's answer (or failure) goes back through the
            // client's node.
            end_us: self.now.0 + us(j.hop_ms),
            region: region as u8,
            served_by: served_by.map(|o| o as u16),
            attempts: j.tried.len() as u16,
            forwarded: j.handler != j.node,
        });
    }

    // ---- attempts ------------------------------------------------------

    fn try_job(&mut self, job: JobIdx) {
        let (node, arrival, done, attempts) = {
            let j = &self.jobs[job];
            (j.handler, j.arrival, j.done, j.tried.len() as u32)
        };
        if done || !self.nodes[node].up {
            return;
        }
        if self.forward_if_due(job) {
            return;
        }
        let retry = &self.plan.config.retry;
        if self.now.since_us(arrival) > us(retry.retry_window_ms) || attempts >= retry.max_attempts
        {
            self.finish_job(job, None);
            return;
        }
        let decision = {
            let truth = self.policy.sees_truth().then(|| {
                let topo = &self.plan.config.topology;
                LateTruth {
                    now: self.now,
                    availability: &self.availability,
                    rtt_ms: &self.rtt_ms[node],
                    mean_service_ms: &self.mean_service_ms,
                    orchs: &self.orchs,
                    specs: &topo.orchestrators,
                    reachable: self
                        .partitions
                        .reachable_from(topo.nodes[node].region, topo.regions.len()),
                    region: topo.nodes[node].region,
                    price_cap_wei_per_unit: self.plan.config.workload.price_cap_wei_per_unit,
                }
            });
            let input = PickInput {
                now: self.now,
                node,
                tried: &self.jobs[job].tried,
                inflight: &self.nodes[node].inflight,
                truth,
            };
            self.policy.pick(&input, &mut self.policy_rng)
        };
        match decision {
            PickDecision::Send(orch) if orch < self.orchs.len() => {
                self.send_attempt(job, node, orch);
                self.send_direct(node);
            }
            PickDecision::Send(_) | PickDecision::Wait => {
                let at = self.now.plus_us(us(self.plan.config.retry.backoff_ms));
                self.schedule(at, Event::TryJob(job));
            }
            PickDecision::Discover => {
                self.nodes[node].waiting.push(job);
                self.start_discovery(node);
            }
        }
    }

    /// Gatemesh's last resort: after the policy's number of failed attempts
    /// on the client's node, the job goes to a live, reachable node of the
    /// nearest other region (the node's `Forwarding::targets` prefers the
    /// region with the best evidence; nearest stands in for it), once. That
    /// node goes on with the job's attempts, under the same retry window
    /// and attempt cap, excluding what was tried (the orchestrators that
    /// refused are ejected there too by then).
    fn forward_if_due(&mut self, job: JobIdx) -> bool {
        let j = &self.jobs[job];
        if j.handler != j.node
            || self
                .policy
                .forward_after_attempts()
                .is_none_or(|after| j.tried.len() < after)
        {
            return false;
        }
        let topo = &self.plan.config.topology;
        let from = j.node;
        let others = self.regions_by_distance(topo.nodes[from].region);
        let Some(to) = others[1..].iter().find_map(|&r| {
            let live: Vec<NodeIdx> = topo
                .nodes_in(r)
                .filter(|&n| self.reaches(from, n))
                .collect();
            (!live.is_empty()).then(|| live[job % live.len()])
        }) else {
            return false;
        };
        let hop_ms = topo.node_to_node_rtt_ms(from, to) / 2.0;
        let j = &mut self.jobs[job];
        j.handler = to;
        j.hop_ms = hop_ms;
        self.schedule(self.now.plus_us(us(hop_ms)), Event::TryJob(job));
        true
    }

    /// Every region, `region` first, then the others by round trip from it
    /// (ties by index).
    fn regions_by_distance(&self, region: RegionIdx) -> Vec<RegionIdx> {
        let topo = &self.plan.config.topology;
        let distance = |r: RegionIdx| {
            if r == region {
                0.0
            } else {
                topo.region_rtt_ms[region][r]
            }
        };
        let mut regions: Vec<RegionIdx> = (0..topo.regions.len()).collect();
        regions.sort_by(|&a, &b| distance(a).total_cmp(&distance(b)).then(a.cmp(&b)));
        regions
    }

    /// Whether a message from `node` can reach `peer` now (another node,
    /// up, not cut off by a partition).
    fn reaches(&self, node: NodeIdx, peer: NodeIdx) -> bool {
        let nodes = &self.plan.config.topology.nodes;
        peer != node
            && self.nodes[peer].up
            && !self.partitioned(nodes[node].region, nodes[peer].region)
    }

    fn partitioned(&self, a: RegionIdx, b: RegionIdx) -> bool {
        self.partitions.cut(a, b)
    }

    /// Whether `orch` could take a job from `node` right now, and its true
    /// expected latency (round trip + mean service time) in ms.
    /// `reachable`: per region, whether `node` can reach it now.
    fn truth(&self, node: NodeIdx, orch: OrchIdx, reachable: &[bool]) -> (bool, f64) {
        let spec = &self.plan.config.topology.orchestrators[orch];
        let o = &self.orchs[orch];
        let available = o.up
            && o.in_service < spec.capacity
            && o.price_wei_per_unit <= self.plan.config.workload.price_cap_wei_per_unit
            && reachable[spec.region];
        (
            available,
            expected_latency_ms(
                self.rtt_ms[node][orch],
                self.mean_service_ms[orch],
                o.slowdown,
            ),
        )
    }

    /// Logs whether `orch` can admit a job now, if that changed.
    fn note_availability(&mut self, orch: OrchIdx) {
        let o = &self.orchs[orch];
        let available =
            o.up && o.in_service < self.plan.config.topology.orchestrators[orch].capacity;
        let log = &mut self.availability[orch];
        match log.last_mut() {
            Some(last) if last.0 == self.now.0 => last.1 = available,
            Some(last) if last.1 == available => {}
            _ => log.push((self.now.0, available)),
        }
    }

    /// After the run: each pick's accuracy judged where it matters, at the
    /// orchestrator when the request would get there. An orchestrator is
    /// available to a pick if it would have admitted a job arriving one
    /// way from the picking node later; price, partitions and slowdowns
    /// are as they were at the pick.
    fn score_on_arrival(&mut self) {
        let topo = &self.plan.config.topology;
        let cap = self.plan.config.workload.price_cap_wei_per_unit;
        let (regions, orchs) = (topo.regions.len(), topo.orchestrators.len());
        let mut price: Vec<i64> = topo
            .orchestrators
            .iter()
            .map(|o| o.price_wei_per_unit)
            .collect();
        let mut slowdown = vec![1.0; orchs];
        let mut partitions = Partitions::default();
        let mut next_fault = 0;
        // Picks are in time order, so for one (region, orchestrator) the
        // arrival instants are too: one cursor each into the availability
        // log replaces a search per pick.
        let mut cursors = vec![0usize; regions * orchs];
        let mut scored = Vec::with_capacity(self.log.picks.len());
        for pick in &self.log.picks {
            while let Some(fault) = self.plan.faults.get(next_fault)
                && fault.at.0 <= pick.at_us
            {
                match fault.action {
                    FaultAction::OrchSlowdown(o, factor) => slowdown[o] = factor,
                    FaultAction::OrchPrice(o, p) => price[o] = p,
                    FaultAction::Partition(a, b) => partitions.cut_off(a, b),
                    FaultAction::Heal(a, b) => partitions.heal(a, b),
                    _ => {}
                }
                next_fault += 1;
            }
            let node = pick.node as usize;
            let region = topo.nodes[node].region;
            let reachable = partitions.reachable_from(region, regions);
            let mut best = f64::INFINITY;
            let mut chosen = (false, 0.0);
            for o in 0..orchs {
                let rtt_ms = self.rtt_ms[node][o];
                let log = &self.availability[o];
                let cursor = &mut cursors[region * orchs + o];
                let arrival_us = pick.at_us + us(rtt_ms / 2.0);
                while *cursor < log.len() && log[*cursor].0 < arrival_us {
                    *cursor += 1;
                }
                let available = reachable[topo.orchestrators[o].region]
                    && price[o] <= cap
                    && *cursor > 0
                    && log[*cursor - 1].1;
                let expected = expected_latency_ms(rtt_ms, self.mean_service_ms[o], slowdown[o]);
                if available {
                    best = best.min(expected);
                }
                if o == pick.orch as usize {
                    chosen = (available, expected);
                }
            }
            scored.push(
                best.is_finite()
                    .then_some(chosen.0 && chosen.1 <= best * 1.1),
            );
        }
        for (pick, accurate) in self.log.picks.iter_mut().zip(scored) {
            pick.accurate_on_arrival = accurate;
        }
    }

    /// Judges a pick by the job's client node (`origin`): its true expected
    /// latency through the node that sends it (`handler`, `hop_ms` away)
    /// against the best orchestrator the client's node could have used.
    fn record_pick(&mut self, handler: NodeIdx, orch: OrchIdx, origin: NodeIdx, hop_ms: f64) {
        let topo = &self.plan.config.topology;
        let region = topo.nodes[origin].region;
        let reachable = self.partitions.reachable_from(region, topo.regions.len());
        let mut best = f64::INFINITY;
        let mut chosen = (false, 0.0);
        for o in 0..self.orchs.len() {
            let (available, expected) = self.truth(origin, o, &reachable);
            if available {
                best = best.min(expected);
            }
            if o == orch {
                let through_handler =
                    expected - self.rtt_ms[origin][o] + self.rtt_ms[handler][o] + 2.0 * hop_ms;
                chosen = (available, through_handler);
            }
        }
        let accurate = best
            .is_finite()
            .then_some(chosen.0 && chosen.1 <= best * 1.1);
        let o = &self.orchs[orch];
        self.log.picks.push(PickRecord {
            at_us: self.now.0,
            node: handler as u16,
            orch: orch as u16,
            accurate,
            accurate_on_arrival: None,
            over_cap: o.price_wei_per_unit > self.plan.config.workload.price_cap_wei_per_unit,
        });
    }

    fn send_attempt(&mut self, job: JobIdx, node: NodeIdx, orch: OrchIdx) {
        let (origin, hop_ms) = (self.jobs[job].node, self.jobs[job].hop_ms);
        self.record_pick(node, orch, origin, hop_ms);
        let topo = &self.plan.config.topology;
        let rtt_ms = self.rtt_ms[node][orch];
        let attempt = self.attempts.len();
        let number = self.jobs[job].tried.len() as u64;
        self.jobs[job].tried.push(orch);
        self.nodes[node].inflight[orch] += 1;
        self.attempts.push(Attempt {
            job,
            orch,
            node,
            epoch: self.nodes[node].epoch,
            started: self.now,
            number,
            resolved: false,
            holding: false,
        });
        if self.partitioned(topo.nodes[node].region, topo.orchestrators[orch].region) {
            let at = self
                .now
                .plus_us(us(self.plan.config.retry.connect_timeout_ms));
            self.schedule(
                at,
                Event::AttemptEnd {
                    attempt,
                    result: Err(FailureKind::Timeout),
                },
            );
        } else {
            // The orchestrator decides when the request gets there: a slot
            // free now may be taken by then, one full now may be free.
            self.schedule(
                self.now.plus_us(us(rtt_ms / 2.0)),
                Event::AttemptArrive(attempt),
            );
        }
    }

    fn on_attempt_arrive(&mut self, attempt: AttemptIdx) {
        let Attempt {
            job,
            orch,
            node,
            number,
            ..
        } = self.attempts[attempt];
        let topo = &self.plan.config.topology;
        let one_way_ms = self.rtt_ms[node][orch] / 2.0;
        let back = |extra_ms: f64| self.now.plus_us(us(one_way_ms + extra_ms));
        if !self.orchs[orch].up {
            let at = back(0.0);
            let result = Err(FailureKind::Refused);
            self.schedule(at, Event::AttemptEnd { attempt, result });
        } else if self.orchs[orch].in_service >= topo.orchestrators[orch].capacity {
            let at = back(1.0);
            let result = Err(FailureKind::Capacity);
            self.schedule(at, Event::AttemptEnd { attempt, result });
        } else {
            // Common random numbers: the same job's n-th attempt gets the
            // same deviate under every policy.
            let mut rng = SimRng::new(self.plan.seed, mix64(job as u64) ^ number);
            let median = topo.orchestrators[orch].service_median_ms * self.orchs[orch].slowdown;
            let service_ms = rng.lognormal(median, self.plan.config.workload.service_sigma);
            let o = &mut self.orchs[orch];
            o.in_service += 1;
            o.holding.push(attempt);
            self.attempts[attempt].holding = true;
            self.note_availability(orch);
            self.schedule(self.now.plus_us(us(service_ms)), Event::ServiceEnd(attempt));
        }
    }

    fn on_service_end(&mut self, attempt: AttemptIdx) {
        // A job broken by a crash no longer holds its slot; its reset is
        // already on its way.
        if !self.attempts[attempt].holding {
            return;
        }
        self.release_slot(attempt);
        let a = &self.attempts[attempt];
        let one_way_ms = self.rtt_ms[a.node][a.orch] / 2.0;
        self.schedule(
            self.now.plus_us(us(one_way_ms)),
            Event::AttemptEnd {
                attempt,
                result: Ok(()),
            },
        );
    }

    fn release_slot(&mut self, attempt: AttemptIdx) {
        let a = &mut self.attempts[attempt];
        if a.holding {
            a.holding = false;
            let o = &mut self.orchs[a.orch];
            o.in_service = o.in_service.saturating_sub(1);
            if let Some(pos) = o.holding.iter().position(|&h| h == attempt) {
                o.holding.swap_remove(pos);
            }
            let orch = a.orch;
            self.note_availability(orch);
        }
    }

    fn on_attempt_end(&mut self, attempt: AttemptIdx, result: Result<(), FailureKind>) {
        if self.attempts[attempt].resolved {
            return;
        }
        self.attempts[attempt].resolved = true;
        self.release_slot(attempt);
        let Attempt {
            job,
            orch,
            node,
            epoch,
            started,
            ..
        } = self.attempts[attempt];
        if !self.nodes[node].up || self.nodes[node].epoch != epoch {
            return;
        }
        let inflight = &mut self.nodes[node].inflight[orch];
        *inflight = inflight.saturating_sub(1);
        let report = AttemptReport {
            orch,
            started,
            latency_ms: self.now.since_us(started) as f64 / 1000.0,
            result,
        };
        self.policy.on_attempt_end(node, self.now, &report);
        self.note_changes(node);
        self.send_direct(node);
        match result {
            Ok(()) => self.finish_job(job, Some(orch)),
            Err(_) => self.try_job(job),
        }
    }

    // ---- discovery -----------------------------------------------------

    fn start_discovery(&mut self, node: NodeIdx) {
        if self.nodes[node].discovering {
            return;
        }
        self.nodes[node].discovering = true;
        let (wait_ms, results) = self.probe(node, 0..self.orchs.len());
        let epoch = self.nodes[node].epoch;
        self.schedule(
            self.now.plus_us(us(wait_ms)),
            Event::DiscoveryDone {
                node,
                epoch,
                results,
            },
        );
    }

    /// `GetOrchestrator` from `node` to `orchs`: the replies, and how long
    /// the node waits for them (ms).
    fn probe(
        &self,
        node: NodeIdx,
        orchs: impl Iterator<Item = OrchIdx>,
    ) -> (f64, Vec<ProbeResult>) {
        let topo = &self.plan.config.topology;
        let retry = &self.plan.config.retry;
        let node_region = topo.nodes[node].region;
        let mut wait_ms: f64 = 0.0;
        let results: Vec<ProbeResult> = orchs
            .map(|orch| {
                let rtt_ms = topo.rtt_ms(node, orch) + retry.info_processing_ms;
                let o = &self.orchs[orch];
                let reply = if self.partitioned(node_region, topo.orchestrators[orch].region) {
                    wait_ms = retry.discovery_wait_ms;
                    Err(FailureKind::Timeout)
                } else if !o.up {
                    wait_ms = wait_ms.max(rtt_ms);
                    Err(FailureKind::Refused)
                } else {
                    wait_ms = wait_ms.max(rtt_ms);
                    Ok(ProbeReply {
                        rtt_ms,
                        price_wei_per_unit: o.price_wei_per_unit,
                        capacity: topo.orchestrators[orch].capacity,
                        capacity_in_use: o.in_service,
                    })
                };
                ProbeResult { orch, reply }
            })
            .collect();
        (wait_ms.min(retry.discovery_wait_ms), results)
    }

    // ---- gossip --------------------------------------------------------

    fn on_housekeeping(&mut self, node: NodeIdx, epoch: u32) {
        if !self.nodes[node].up || self.nodes[node].epoch != epoch || self.now >= self.end {
            return;
        }
        let prop = &self.plan.config.propagation;
        let interval_us = us(prop.publish_coalesce_ms);
        self.schedule(
            self.now.plus_us(interval_us),
            Event::Housekeeping { node, epoch },
        );
        self.send_direct(node);
        self.policy.tick(node, self.now);
        self.note_changes(node);
    }

    /// After something may have changed `node`'s records: the first change
    /// since its last publication schedules the next one, as the node's
    /// publish loop does (wake on a change, sleep `publish_coalesce_ms`,
    /// publish).
    fn note_changes(&mut self, node: NodeIdx) {
        if self.nodes[node].first_change.is_some()
            || !self.policy.gossips()
            || !self.policy.has_changes(node)
        {
            return;
        }
        self.nodes[node].first_change = Some(self.now);
        let epoch = self.nodes[node].epoch;
        let at = self
            .now
            .plus_us(us(self.plan.config.propagation.publish_coalesce_ms));
        self.schedule(at, Event::Publish { node, epoch });
    }

    fn on_publish(&mut self, node: NodeIdx, epoch: u32) {
        if !self.nodes[node].up || self.nodes[node].epoch != epoch {
            return;
        }
        let Some(first_change) = self.nodes[node].first_change.take() else {
            return;
        };
        let Some(msg) = self.policy.publish(node, self.now) else {
            return;
        };
        let prop = &self.plan.config.propagation;
        let topo = &self.plan.config.topology;
        for peer in 0..self.nodes.len() {
            if !self.reaches(node, peer) {
                continue;
            }
            let mut delay_ms = topo.node_to_node_rtt_ms(node, peer) / 2.0
                + self
                    .gossip_rng
                    .lognormal(prop.delay_median_ms, prop.delay_sigma);
            while self.gossip_rng.chance(prop.loss) {
                delay_ms += prop.publish_coalesce_ms;
            }
            if self.log.propagation_ms.len() < MAX_PROPAGATION_SAMPLES {
                // Loopback-equivalent propagation (the calibration's set-up:
                // one write on an otherwise idle node): from the first change
                // of this publication to its arrival, without the one-way
                // network delay between regions.
                let wait_ms = self.now.since_us(first_change) as f64 / 1000.0;
                let network_ms = topo.node_to_node_rtt_ms(node, peer) / 2.0;
                self.log
                    .propagation_ms
                    .push((wait_ms + delay_ms - network_ms) as f32);
            }
            self.deliver(peer, delay_ms, &msg);
        }
    }

    /// Schedules `msg` to reach `peer` after `delay_ms`, unless `peer`
    /// restarts meanwhile.
    fn deliver(&mut self, peer: NodeIdx, delay_ms: f64, msg: &Rc<P::Gossip>) {
        let epoch = self.nodes[peer].epoch;
        self.schedule(
            self.now.plus_us(us(delay_ms)),
            Event::Deliver {
                to: peer,
                epoch,
                msg: Rc::clone(msg),
            },
        );
    }

    /// Delivers `node`'s direct message, if it has one, to every live peer
    /// it can reach: one-way network delay plus a small log-normal delay, no
    /// loss (a stream is retransmitted; a partition or a crash drops it).
    fn send_direct(&mut self, node: NodeIdx) {
        if !self.policy.gossips() {
            return;
        }
        let Some(msg) = self.policy.direct_message(node, self.now) else {
            return;
        };
        let prop = &self.plan.config.propagation;
        let topo = &self.plan.config.topology;
        for peer in 0..self.nodes.len() {
            if !self.reaches(node, peer) {
                continue;
            }
            let delay_ms = topo.node_to_node_rtt_ms(node, peer) / 2.0
                + self
                    .direct_rng
                    .lognormal(prop.direct_median_ms, prop.direct_sigma);
            self.deliver(peer, delay_ms, &msg);
        }
    }

    // ---- faults --------------------------------------------------------

    fn apply_fault(&mut self, action: FaultAction) {
        match action {
            FaultAction::OrchDown(orch) => {
                self.orchs[orch].up = false;
                let broken = std::mem::take(&mut self.orchs[orch].holding);
                self.orchs[orch].in_service = 0;
                self.note_availability(orch);
                for attempt in broken {
                    self.attempts[attempt].holding = false;
                    let rtt_ms = self
                        .plan
                        .config
                        .topology
                        .rtt_ms(self.attempts[attempt].node, orch);
                    let at = self.now.plus_us(us(rtt_ms / 2.0));
                    self.schedule(
                        at,
                        Event::AttemptEnd {
                            attempt,
                            result: Err(FailureKind::Reset),
                        },
                    );
                }
            }
            FaultAction::OrchUp(orch) => {
                self.orchs[orch].up = true;
                self.note_availability(orch);
            }
            FaultAction::OrchSlowdown(orch, factor) => self.orchs[orch].slowdown = factor,
            FaultAction::OrchPrice(orch, price) => self.orchs[orch].price_wei_per_unit = price,
            FaultAction::Partition(a, b) => self.partitions.cut_off(a, b),
            FaultAction::Heal(a, b) => self.partitions.heal(a, b),
            FaultAction::NodeCrash(node) => {
                let n = &mut self.nodes[node];
                n.up = false;
                n.epoch += 1;
                n.first_change = None;
                n.discovering = false;
                n.waiting.clear();
                n.inflight.iter_mut().for_each(|c| *c = 0);
                let open: Vec<JobIdx> = (0..self.jobs.len())
                    .filter(|&j| {
                        let j = &self.jobs[j];
                        !j.done && (j.node == node || j.handler == node)
                    })
                    .collect();
                for job in open {
                    self.finish_job(job, None);
                }
            }
            FaultAction::NodeRestart(node) => {
                self.nodes[node].up = true;
                self.nodes[node].epoch += 1;
                self.nodes[node].first_change = None;
                self.policy.on_node_restart(node, self.now);
                self.start_node_timers(node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sim::model::Size;
    use crate::sim::scenario::{Fault, Scenario};

    /// Every node sends every attempt to orchestrator 0 and remembers how
    /// each ended, by (node, send time).
    #[derive(Default)]
    struct AlwaysFirst {
        outcomes: BTreeMap<(NodeIdx, u64), Result<(), FailureKind>>,
    }

    impl RoutingPolicy for AlwaysFirst {
        type Gossip = ();
        fn name(&self) -> &'static str {
            "always-first"
        }
        fn pick(&mut self, _: &PickInput<'_>, _: &mut SimRng) -> PickDecision {
            PickDecision::Send(0)
        }
        fn on_attempt_end(&mut self, node: NodeIdx, _: SimTime, report: &AttemptReport) {
            self.outcomes
                .insert((node, report.started.0), report.result);
        }
        fn on_discovery(&mut self, _: NodeIdx, _: SimTime, _: &[ProbeResult]) {}
        fn on_node_restart(&mut self, _: NodeIdx, _: SimTime) {}
    }

    /// Every attempt end is a change of the node's records; publications
    /// carry the change times.
    #[derive(Default)]
    struct Publisher {
        pending: BTreeMap<NodeIdx, Vec<u64>>,
        changes: usize,
        published: Vec<(NodeIdx, u64, Vec<u64>)>,
        received: usize,
    }

    impl RoutingPolicy for Publisher {
        type Gossip = Vec<u64>;
        fn name(&self) -> &'static str {
            "publisher"
        }
        fn pick(&mut self, _: &PickInput<'_>, _: &mut SimRng) -> PickDecision {
            PickDecision::Send(0)
        }
        fn on_attempt_end(&mut self, node: NodeIdx, now: SimTime, _: &AttemptReport) {
            self.pending.entry(node).or_default().push(now.0);
            self.changes += 1;
        }
        fn on_discovery(&mut self, _: NodeIdx, _: SimTime, _: &[ProbeResult]) {}
        fn on_node_restart(&mut self, _: NodeIdx, _: SimTime) {}
        fn gossips(&self) -> bool {
            true
        }
        fn has_changes(&self, node: NodeIdx) -> bool {
            self.pending.get(&node).is_some_and(|p| !p.is_empty())
        }
        fn publish(&mut self, node: NodeIdx, now: SimTime) -> Option<Rc<Vec<u64>>> {
            let changes = self.pending.remove(&node)?;
            self.published.push((node, now.0, changes.clone()));
            Some(Rc::new(changes))
        }
        fn on_gossip(&mut self, _: NodeIdx, _: SimTime, _: &Vec<u64>) {
            self.received += 1;
        }
    }

    /// As the node's publish loop: the first change after a publication
    /// schedules the next one `publish_coalesce_ms` later, and it carries
    /// every change made by then, each change exactly once.
    #[test]
    fn records_are_published_a_coalescing_wait_after_the_first_change() {
        let size = Size {
            nodes_per_region: 1,
            orchestrators: 1,
            duration_s: 5.0,
            jobs_per_s: 30.0,
        };
        let plan = Plan::new(Scenario::Steady, size, 3);
        let wait_us = us(plan.config.propagation.publish_coalesce_ms);
        let (_, policy) = Engine::new(&plan, Publisher::default()).run();
        let mut last_by_node: BTreeMap<NodeIdx, u64> = BTreeMap::new();
        let mut published = 0;
        let mut batched = 0;
        for (node, at, changes) in &policy.published {
            assert_eq!(
                *at - changes[0],
                wait_us,
                "node {node} at {at}: {changes:?}"
            );
            let previous = last_by_node.insert(*node, *at).unwrap_or(0);
            assert!(
                changes.iter().all(|&c| c > previous && c <= *at),
                "node {node}: {changes:?} between {previous} and {at}"
            );
            published += changes.len();
            batched += usize::from(changes.len() > 1);
        }
        let unpublished: usize = policy.pending.values().map(Vec::len).sum();
        assert_eq!(published + unpublished, policy.changes);
        assert!(published > 100, "{published} changes published");
        assert!(batched > 0, "changes within one wait share a publication");
        assert!(
            policy.received >= policy.published.len(),
            "peers receive them"
        );
    }

    /// Tries the orchestrators of the picking node's own region in order,
    /// then nothing; optionally forwards after `forward_after` failures.
    struct HomeOnly {
        regions: Vec<RegionIdx>,
        node_regions: Vec<RegionIdx>,
        forward_after: Option<usize>,
        /// (client's region, serving orchestrator's region) of each success.
        served: Vec<(RegionIdx, RegionIdx)>,
        picks_by_node: BTreeMap<NodeIdx, usize>,
    }

    impl RoutingPolicy for HomeOnly {
        type Gossip = ();
        fn name(&self) -> &'static str {
            "home-only"
        }
        fn pick(&mut self, input: &PickInput<'_>, _: &mut SimRng) -> PickDecision {
            *self.picks_by_node.entry(input.node).or_default() += 1;
            let here = self.node_regions[input.node];
            (0..self.regions.len())
                .find(|&o| self.regions[o] == here && !input.tried.contains(&o))
                .map_or(PickDecision::Wait, PickDecision::Send)
        }
        fn on_attempt_end(&mut self, node: NodeIdx, _: SimTime, report: &AttemptReport) {
            if report.result.is_ok() {
                self.served
                    .push((self.node_regions[node], self.regions[report.orch]));
            }
        }
        fn on_discovery(&mut self, _: NodeIdx, _: SimTime, _: &[ProbeResult]) {}
        fn on_node_restart(&mut self, _: NodeIdx, _: SimTime) {}
        fn forward_after_attempts(&self) -> Option<usize> {
            self.forward_after
        }
    }

    /// Every `fra` orchestrator is down from the start. A policy that
    /// forwards hands each `fra` job to a node of the nearest region after
    /// its failed attempts there, which serves it; one that does not fails
    /// every `fra` job.
    #[test]
    fn a_job_is_forwarded_after_the_policys_failed_attempts() {
        let size = Size {
            nodes_per_region: 1,
            orchestrators: 6,
            duration_s: 10.0,
            jobs_per_s: 6.0,
        };
        let mut plan = Plan::new(Scenario::Steady, size, 9);
        let topo = &plan.config.topology;
        let fra: Vec<OrchIdx> = topo.orchestrators_in(0).collect();
        assert_eq!(fra.len(), 2);
        plan.faults = fra
            .iter()
            .map(|&o| Fault {
                at: SimTime::ZERO,
                action: FaultAction::OrchDown(o),
            })
            .collect();
        let policy = |forward_after| HomeOnly {
            regions: topo.orchestrators.iter().map(|o| o.region).collect(),
            node_regions: topo.nodes.iter().map(|n| n.region).collect(),
            forward_after,
            served: Vec::new(),
            picks_by_node: BTreeMap::new(),
        };
        let (log, forwarding) = Engine::new(&plan, policy(Some(2))).run();
        let fra_jobs: Vec<&JobRecord> = log.jobs.iter().filter(|j| j.region == 0).collect();
        assert!(fra_jobs.len() > 20, "{} fra jobs", fra_jobs.len());
        for job in &fra_jobs {
            assert!(job.forwarded, "{job:?}");
            let served_by = job.served_by.expect("served after forwarding");
            assert_ne!(topo.orchestrators[served_by as usize].region, 0);
            // Two refusals at home, the trip to lax and back (150 ms), the
            // job there: more than a round trip between the regions.
            assert!(job.end_us - job.arrival_us > 150_000, "{job:?}");
        }
        let nearest = if topo.region_rtt_ms[0][1] <= topo.region_rtt_ms[0][2] {
            1
        } else {
            2
        };
        assert!(forwarding.served.iter().filter(|s| s.0 == 0).count() == 0);
        assert!(
            forwarding.served.iter().any(|s| s.1 == nearest),
            "forwarded jobs run in the nearest region"
        );
        assert!(
            log.jobs
                .iter()
                .filter(|j| j.region != 0)
                .all(|j| !j.forwarded)
        );

        let (log, _) = Engine::new(&plan, policy(None)).run();
        let fra_jobs: Vec<&JobRecord> = log.jobs.iter().filter(|j| j.region == 0).collect();
        assert!(
            fra_jobs
                .iter()
                .all(|j| !j.forwarded && j.served_by.is_none()),
            "without forwarding every fra job fails"
        );
    }

    /// One small orchestrator in `fra`, busy most of the time, called from
    /// all three regions: a request 75–80 ms on its way finds the slots as
    /// they are when it gets there, and the judgement at arrival agrees
    /// with what the orchestrator did.
    #[test]
    fn an_orchestrator_admits_what_finds_a_free_slot_on_arrival() {
        let size = Size {
            nodes_per_region: 1,
            orchestrators: 1,
            duration_s: 10.0,
            jobs_per_s: 12.0,
        };
        let mut plan = Plan::new(Scenario::Steady, size, 5);
        plan.config.topology.orchestrators[0].capacity = 2;
        let (log, policy) = Engine::new(&plan, AlwaysFirst::default()).run();
        let mut admitted = 0;
        let mut refused = 0;
        let mut remote_refused_though_free_at_send = 0;
        for pick in &log.picks {
            let outcome = policy.outcomes[&(pick.node as usize, pick.at_us)];
            match outcome {
                Ok(()) => {
                    admitted += 1;
                    assert_eq!(pick.accurate_on_arrival, Some(true), "{pick:?}");
                }
                Err(FailureKind::Capacity) => {
                    refused += 1;
                    assert_eq!(pick.accurate_on_arrival, None, "{pick:?}");
                    if pick.node != 0 && pick.accurate == Some(true) {
                        remote_refused_though_free_at_send += 1;
                    }
                }
                Err(other) => panic!("unexpected {other:?} for {pick:?}"),
            }
        }
        assert!(
            admitted > 50 && refused > 50,
            "{admitted} admitted, {refused} refused"
        );
        assert!(
            remote_refused_though_free_at_send > 0,
            "a slot free when a remote node sent must sometimes be gone when the request arrives"
        );
    }

    #[test]
    fn late_truth_shows_each_orchestrator_as_it_was_a_one_way_delay_ago() {
        // Orchestrator 0 is 4 ms round trip away, orchestrator 1 is 150 ms;
        // both fill at 100 ms and free again at 300 ms.
        let availability = vec![
            vec![(0, true), (100_000, false), (300_000, true)],
            vec![(0, true), (100_000, false), (300_000, true)],
        ];
        let orchs: Vec<OrchState> = [10, 1_000]
            .into_iter()
            .map(|price| OrchState {
                up: true,
                slowdown: 1.0,
                price_wei_per_unit: price,
                in_service: 0,
                holding: Vec::new(),
            })
            .collect();
        let specs: Vec<OrchSpec> = [0, 1]
            .into_iter()
            .map(|region| OrchSpec {
                name: format!("o{region}"),
                region,
                gpu: "NVIDIA A100",
                service_median_ms: 200.0,
                capacity: 1,
                price_wei_per_unit: 10,
                local_rtt_ms: 2.0,
            })
            .collect();
        let truth = |now_ms: u64| LateTruth {
            now: SimTime::from_ms(now_ms as f64),
            availability: &availability,
            rtt_ms: &[4.0, 150.0],
            mean_service_ms: &[300.0, 200.0],
            orchs: &orchs,
            specs: &specs,
            reachable: vec![true, true],
            region: 0,
            price_cap_wei_per_unit: 500,
        };
        let seen = |now_ms| {
            let t = truth(now_ms);
            (t.seen_free(0), t.seen_free(1))
        };
        assert_eq!(seen(50), (true, true));
        // 2 ms after the change here, 75 ms there.
        assert_eq!(seen(101), (true, true));
        assert_eq!(seen(102), (false, true));
        assert_eq!(seen(174), (false, true));
        assert_eq!(seen(175), (false, false));
        assert_eq!(seen(302), (true, false));
        assert_eq!(seen(375), (true, true));
        let t = truth(0);
        assert_eq!(t.orchestrators(), 2);
        assert!(t.is_home(0) && !t.is_home(1));
        assert_eq!(t.expected_ms(0), 304.0);
        assert_eq!(t.expected_ms(1), 350.0);
        assert!(t.admissible(0));
        assert!(!t.admissible(1), "over the price cap");
    }
}
