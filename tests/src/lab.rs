//! A multi-region lab for the cluster tests: a cluster CA and node
//! certificates in a temp dir, emulated orchestrators per region (callers
//! from other regions, told apart by source address, wait
//! `cross_region_delay_ms` longer), and gateway nodes on distinct 127.0.0.x
//! addresses that form one mesh. Nodes run in this process ([`Lab`]) or as
//! real `gatemesh run` processes ([`ProcessNode`]).
//!
//! Addresses follow the demo: region `r` (0-based), node `n` (1-based) is
//! `127.0.0.(10·(r+1)+n)`, named `<region>-<n>`. Every listener binds port 0
//! (a process's mesh port may be chosen up front with [`free_udp_port`]).
//!
//! Waits poll a condition on a short interval under a deadline
//! ([`poll_until`]) and report how long they took, so tests can print
//! measured figures.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use mesh::{MemberState, MeshHandle};
use mesh_core::hlc::Hlc;
use mesh_core::{NodeId, RegionId};
use node::{Node, NodeConfig};
use simulations::emulator::{EmulatedOrchestrator, Fleet, LatencySpec};
use tokio::time::Instant;

use crate::{API_KEY, all_pipelines_spec, https_client, init_tracing, install_crypto_provider};

/// The lab's default regions (as in `gatemesh demo`).
pub const REGIONS: [&str; 3] = ["fra", "lax", "sin"];
/// Poll interval of lab waits: short, so measured times are precise.
pub const LAB_POLL: Duration = Duration::from_millis(5);
/// How long a lab waits for start-up conditions (readiness, discovery).
pub const LAB_DEADLINE: Duration = Duration::from_secs(20);

/// What a lab is made of.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Region names, in order.
    pub regions: Vec<String>,
    /// Gateway nodes per region (1–9).
    pub nodes_per_region: usize,
    /// Emulated orchestrators per region (0 = none).
    pub orchestrators_per_region: usize,
    /// Extra delay an orchestrator adds for callers of another region, ms.
    pub cross_region_delay_ms: u64,
    /// Processing time of every job, ms.
    pub orchestrator_latency_ms: u64,
    /// `discovery.info_refresh_ms` of every node.
    pub info_refresh_ms: u64,
    /// `discovery.get_orchestrator_timeout_ms` of every node.
    pub get_orchestrator_timeout_ms: u64,
    /// `api.request_deadline_ms` of every node.
    pub request_deadline_ms: u64,
    /// Nodes (by name) the lab does not start in this process: the test runs
    /// them itself, e.g. as [`ProcessNode`]s.
    pub external: Vec<String>,
    /// Extra TOML lines: (region or node name, `None` for all; section;
    /// line).
    pub extra: Vec<(Option<String>, String, String)>,
}

impl LabSpec {
    /// `regions` × `nodes_per_region` nodes, `orchestrators_per_region`
    /// orchestrators per region, quick discovery, no cross-region delay.
    pub fn new(regions: &[&str], nodes_per_region: usize, orchestrators_per_region: usize) -> Self {
        Self {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            nodes_per_region,
            orchestrators_per_region,
            cross_region_delay_ms: 0,
            orchestrator_latency_ms: 5,
            info_refresh_ms: 250,
            get_orchestrator_timeout_ms: 1000,
            request_deadline_ms: 20_000,
            external: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The default lab: fra/lax/sin × 2 nodes × 2 orchestrators.
    pub fn three_regions() -> Self {
        Self::new(&REGIONS, 2, 2)
    }

    /// Adds `line` to `[section]` of the nodes of `region`, or of the node
    /// so named (`None`: all).
    /// Section `tables` is the end of the file, where a line may open
    /// tables of its own (`[[keys]]`, `[pools]`). In any line,
    /// `@orchestrator:R:I@` becomes the URL of region R's I-th orchestrator.
    pub fn line(mut self, region: Option<&str>, section: &str, line: &str) -> Self {
        self.extra.push((
            region.map(str::to_owned),
            section.to_owned(),
            line.to_owned(),
        ));
        self
    }

    /// The lab's nodes, in start order.
    pub fn members(&self) -> anyhow::Result<Vec<LabMember>> {
        ensure!(
            (1..=9).contains(&self.nodes_per_region),
            "1–9 nodes per region"
        );
        ensure!(self.regions.len() <= 24, "at most 24 regions");
        let mut members = Vec::new();
        for (region_index, region) in self.regions.iter().enumerate() {
            for n in 1..=self.nodes_per_region {
                members.push(LabMember {
                    name: NodeId::new(format!("{region}-{n}"))?,
                    region: RegionId::new(region.as_str())?,
                    region_index,
                    ip: Ipv4Addr::new(127, 0, 0, (10 * (region_index + 1) + n) as u8),
                });
            }
        }
        Ok(members)
    }
}

/// One node of the lab (whether it runs or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabMember {
    /// `<region>-<n>`.
    pub name: NodeId,
    /// Its region.
    pub region: RegionId,
    /// Index of the region in [`LabSpec::regions`].
    pub region_index: usize,
    /// Its loopback address (every listener and the orchestrator client's
    /// source address).
    pub ip: Ipv4Addr,
}

/// A running lab. Stop it with [`Lab::shutdown`]; dropping it stops the
/// orchestrators and aborts the nodes' tasks less gracefully.
pub struct Lab {
    dir: tempfile::TempDir,
    spec: LabSpec,
    members: Vec<LabMember>,
    nodes: Vec<Option<Node>>,
    fleet: Fleet,
    client: reqwest::Client,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("dir", &self.dir.path())
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl Lab {
    /// Creates the CA and certificates, starts the orchestrators and every
    /// node not listed in [`LabSpec::external`] (each seeded with the mesh
    /// addresses of the nodes started before it). Returns once all are bound;
    /// membership converges afterwards (see [`Lab::wait_all_alive`]).
    pub async fn start(spec: LabSpec) -> anyhow::Result<Self> {
        install_crypto_provider();
        init_tracing();
        let members = spec.members()?;
        let dir = tempfile::tempdir().context("lab temp dir")?;
        mesh::certs::init_ca(dir.path()).context("creating the cluster CA")?;
        for member in &members {
            mesh::certs::issue_node(dir.path(), dir.path(), &member.name, &member.region)
                .with_context(|| format!("issuing the certificate of {}", member.name))?;
        }
        let mut specs = Vec::new();
        for (region_index, region) in spec.regions.iter().enumerate() {
            for i in 0..spec.orchestrators_per_region {
                let mut orch = all_pipelines_spec(&format!("{region}-orch-{i}"), 4);
                orch.latency = LatencySpec::fixed_ms(spec.orchestrator_latency_ms);
                orch.inter_token_delay_ms = 20;
                orch.region_latency_ms =
                    delay_table(&members, region_index, spec.cross_region_delay_ms);
                specs.push(orch);
            }
        }
        let fleet = Fleet::start_all(specs)
            .await
            .context("the emulated orchestrators must start")?;
        let mut lab = Self {
            nodes: members.iter().map(|_| None).collect(),
            members,
            dir,
            spec,
            fleet,
            client: https_client(),
        };
        for i in 0..lab.members.len() {
            if !lab.is_external(i) {
                lab.start_node(i).await?;
            }
        }
        Ok(lab)
    }

    /// The lab's spec.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// Every node of the lab, running or not, in start order.
    pub fn members(&self) -> &[LabMember] {
        &self.members
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name.as_str() == name)
    }

    /// Whether node `i` is left to the test (see [`LabSpec::external`]).
    pub fn is_external(&self, i: usize) -> bool {
        self.spec
            .external
            .iter()
            .any(|n| n == self.members[i].name.as_str())
    }

    /// Where the CA and certificates are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`, which must be running in this process.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("lab node {} is not running", self.members[i].name))
    }

    /// Node `i`'s mesh handle.
    pub fn mesh(&self, i: usize) -> &MeshHandle {
        self.node(i)
            .cluster()
            .mesh()
            .expect("lab nodes always run in a cluster")
    }

    /// Whether node `i` runs in this process.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Indexes of the nodes running in this process.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect()
    }

    /// The orchestrators of region `region_index`.
    pub fn orchestrators(&self, region_index: usize) -> &[EmulatedOrchestrator] {
        let k = self.spec.orchestrators_per_region;
        &self.fleet.orchestrators()[region_index * k..(region_index + 1) * k]
    }

    /// Every orchestrator's URL with its region index.
    pub fn orchestrator_urls(&self) -> Vec<(usize, String)> {
        (0..self.spec.regions.len())
            .flat_map(|r| {
                self.orchestrators(r)
                    .iter()
                    .map(move |o| (r, o.url().to_owned()))
            })
            .collect()
    }

    /// The per-caller delay table an orchestrator of `region_index` uses:
    /// `other_ms` for nodes of other regions, 0 for its own.
    pub fn delay_table(&self, region_index: usize, other_ms: u64) -> BTreeMap<IpAddr, u64> {
        delay_table(&self.members, region_index, other_ms)
    }

    /// Mesh addresses of the running in-process nodes except `except`.
    pub fn seeds(&self, except: Option<usize>) -> Vec<SocketAddr> {
        self.running()
            .into_iter()
            .filter(|&i| Some(i) != except)
            .map(|i| self.mesh(i).advertise_addr())
            .collect()
    }

    /// The TOML of node `i` with these seeds and mesh port (0: any).
    pub fn node_toml(&self, i: usize, seeds: &[SocketAddr], mesh_port: u16) -> String {
        self.render_toml(&self.members[i], self.dir.path(), seeds, mesh_port)
    }

    /// Writes node `i`'s TOML (for a process) and returns its path.
    pub fn write_config(
        &self,
        i: usize,
        seeds: &[SocketAddr],
        mesh_port: u16,
    ) -> anyhow::Result<PathBuf> {
        let path = self
            .dir
            .path()
            .join(format!("{}.toml", self.members[i].name));
        let text = format!(
            "{}\n[log]\nfilter = \"warn\"\n",
            self.node_toml(i, seeds, mesh_port)
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    fn render_toml(
        &self,
        member: &LabMember,
        cert_dir: &Path,
        seeds: &[SocketAddr],
        mesh_port: u16,
    ) -> String {
        let region = member.region_index;
        let orchestrators = if self.spec.orchestrators_per_region == 0 {
            String::new()
        } else {
            self.orchestrators(region)
                .iter()
                .map(|o| format!("{:?}", o.url()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let seeds = seeds
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let extra = |section: &str| {
            let mut text = String::new();
            for (r, s, line) in &self.spec.extra {
                if s == section
                    && r.as_ref()
                        .is_none_or(|r| r == member.region.as_str() || r == member.name.as_str())
                {
                    let _ = writeln!(text, "{line}");
                }
            }
            for (r, orchestrators) in
                (0..self.spec.regions.len()).map(|r| (r, self.orchestrators(r)))
            {
                for (i, orchestrator) in orchestrators.iter().enumerate() {
                    text = text.replace(&format!("@orchestrator:{r}:{i}@"), orchestrator.url());
                }
            }
            text
        };
        format!(
            r#"
[node]
name = "{name}"
region = "{region_name}"

[http]
listen_addr = "{ip}:0"
shutdown_grace_ms = 500

[admin]
listen_addr = "{ip}:0"

[api]
request_deadline_ms = {deadline}
{api}
[[keys]]
key = "{API_KEY}"
tenant = "lab"

[discovery]
orchestrators = [{orchestrators}]
info_refresh_ms = {refresh}
get_orchestrator_timeout_ms = {rpc_timeout}
source_ip = "{ip}"
{discovery}
[jobs]
{jobs}
[cluster]
ca_cert_path = "{dir}/ca.pem"
node_cert_path = "{dir}/{name}.pem"
node_key_path = "{dir}/{name}.key"

[mesh]
listen_addr = "{ip}:{mesh_port}"
seeds = [{seeds}]
{mesh}
{tables}
"#,
            name = member.name,
            region_name = member.region,
            ip = member.ip,
            deadline = self.spec.request_deadline_ms,
            api = extra("api"),
            refresh = self.spec.info_refresh_ms,
            rpc_timeout = self.spec.get_orchestrator_timeout_ms,
            discovery = extra("discovery"),
            jobs = extra("jobs"),
            mesh = extra("mesh"),
            tables = extra("tables"),
            dir = cert_dir.display(),
        )
    }

    /// Starts node `i` in this process, seeded with every running node.
    pub async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        ensure!(!self.is_running(i), "{} runs already", self.members[i].name);
        let seeds = self.seeds(Some(i));
        let text = self.node_toml(i, &seeds, 0);
        let config = NodeConfig::parse(&text)
            .with_context(|| format!("lab config of {}:\n{text}", self.members[i].name))?;
        let node = Node::start(config)
            .await
            .with_context(|| format!("starting {}", self.members[i].name))?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Crashes node `i` as `kill -9` would, for its peers: the mesh stops
    /// without a departure notice; then the HTTP side is stopped too.
    pub async fn crash_node(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            if let Some(mesh) = node.cluster().mesh() {
                mesh.abort();
            }
            // The mesh is stopped already, so this leaves no notice behind.
            let _ = node.shutdown().await;
        }
    }

    /// Stops node `i` gracefully (drain, then a departure notice).
    pub async fn stop_node(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown()
                .await
                .with_context(|| format!("stopping {}", self.members[i].name))?;
        }
        Ok(())
    }

    /// Starts a node that holds a certificate from ANOTHER cluster CA, with
    /// the lab's name scheme (`name` in `region`, on `ip`) and every running
    /// node as seed. Returns it with the directory of its CA.
    pub async fn start_foreign(
        &self,
        name: &str,
        region: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<(tempfile::TempDir, Node)> {
        let dir = tempfile::tempdir().context("foreign CA dir")?;
        mesh::certs::init_ca(dir.path()).context("creating the foreign CA")?;
        let member = LabMember {
            name: NodeId::new(name)?,
            region: RegionId::new(region)?,
            region_index: 0,
            ip,
        };
        mesh::certs::issue_node(dir.path(), dir.path(), &member.name, &member.region)?;
        let text = self.render_toml(&member, dir.path(), &self.seeds(None), 0);
        let node = Node::start(NodeConfig::parse(&text)?)
            .await
            .context("starting the foreign node")?;
        Ok((dir, node))
    }

    /// Whether every running in-process node lists every node in `expected`
    /// as alive with its region (and lists nothing else alive).
    pub fn all_alive(&self, expected: &[usize]) -> bool {
        self.running()
            .into_iter()
            .all(|observer| self.sees_exactly_alive(self.node(observer), expected))
    }

    /// Whether `observer` lists exactly `expected` as alive, with regions.
    pub fn sees_exactly_alive(&self, observer: &Node, expected: &[usize]) -> bool {
        let members = observer.cluster().members();
        let alive: BTreeSet<(String, Option<String>)> = members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| {
                (
                    m.node.as_str().to_owned(),
                    m.region.as_ref().map(|r| r.as_str().to_owned()),
                )
            })
            .collect();
        let wanted: BTreeSet<(String, Option<String>)> = expected
            .iter()
            .map(|&i| {
                let m = &self.members[i];
                (
                    m.name.as_str().to_owned(),
                    Some(m.region.as_str().to_owned()),
                )
            })
            .collect();
        alive == wanted
    }

    /// Waits until every running node lists all of `expected` alive.
    pub async fn wait_all_alive(
        &self,
        expected: &[usize],
        deadline: Duration,
    ) -> anyhow::Result<Duration> {
        poll_until("every node to list every node alive", deadline, || {
            self.all_alive(expected)
        })
        .await
        .with_context(|| self.membership_report())
    }

    /// Waits until every running node is ready (fresh discovery).
    pub async fn wait_ready(&self) -> anyhow::Result<Duration> {
        poll_until("every node to be ready", LAB_DEADLINE, || {
            self.running().into_iter().all(|i| self.node(i).is_ready())
        })
        .await
    }

    /// Every running node's member list, for failure messages.
    pub fn membership_report(&self) -> String {
        let mut text = String::new();
        for i in self.running() {
            let _ = write!(text, "\n{}:", self.members[i].name);
            for m in self.node(i).cluster().members() {
                let _ = write!(
                    text,
                    " {}@{}[{:?}/{}]",
                    m.node,
                    m.region.as_ref().map_or("?", |r| r.as_str()),
                    m.state,
                    m.generation
                );
            }
        }
        text
    }

    /// The HTTPS client (accepts the nodes' self-signed certificates).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `POST <node i>/<path>` with a JSON body and the API key.
    pub fn post_json(
        &self,
        i: usize,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.node(i).public_url()))
            .bearer_auth(API_KEY)
            .json(body)
    }

    /// Stops every node (in parallel, the mesh leaving gracefully) and the
    /// orchestrators.
    pub async fn shutdown(mut self) {
        let nodes: Vec<Node> = self.nodes.iter_mut().filter_map(Option::take).collect();
        let results = futures_util::future::join_all(nodes.into_iter().map(Node::shutdown)).await;
        for result in results {
            if let Err(error) = result {
                eprintln!("a lab node did not stop cleanly: {error}");
            }
        }
        for orchestrator in self.fleet.orchestrators() {
            orchestrator.crash().await;
        }
    }
}

fn delay_table(members: &[LabMember], region_index: usize, other_ms: u64) -> BTreeMap<IpAddr, u64> {
    members
        .iter()
        .map(|m| {
            let delay = if m.region_index == region_index {
                0
            } else {
                other_ms
            };
            (IpAddr::V4(m.ip), delay)
        })
        .collect()
}

/// Polls `check` every [`LAB_POLL`] until it holds; returns how long that
/// took, or fails with `what` after `deadline`.
pub async fn poll_until(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(LAB_POLL).await;
    }
}

/// Unix time in ms (the clock observation versions are stamped with).
pub fn unix_ms() -> u64 {
    node::cluster::unix_ms()
}

/// What the cluster view of one node says, reduced to what must be equal
/// on every node once gossip has converged: per orchestrator, each
/// observer's record version; and the blocklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDigest {
    /// Orchestrator id → observer → version of its record.
    pub versions: BTreeMap<String, BTreeMap<String, Hlc>>,
    /// Blocked orchestrator ids, sorted.
    pub blocked: Vec<String>,
}

impl ViewDigest {
    /// The digest of `node`'s current snapshot.
    pub fn of(node: &Node) -> Self {
        let snapshot = node.cluster().snapshot();
        let versions = snapshot
            .orchestrators()
            .iter()
            .map(|o| {
                let observers = o
                    .observers
                    .iter()
                    .map(|f| (f.observer.as_str().to_owned(), f.version))
                    .collect();
                (o.id.as_str().to_owned(), observers)
            })
            .collect();
        let mut blocked: Vec<String> = node
            .cluster()
            .blocked()
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect();
        blocked.sort();
        Self { versions, blocked }
    }

    /// Number of (orchestrator, observer) records.
    pub fn records(&self) -> usize {
        self.versions.values().map(BTreeMap::len).sum()
    }
}

/// A free UDP port on `ip` at the time of the call (for a process's mesh
/// port, which must be known before it starts to serve as a seed). Each lab
/// node has its own address, so a clash is unlikely.
pub fn free_udp_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind((ip, 0)).context("binding a probe UDP socket")?;
    Ok(socket.local_addr()?.port())
}

/// The `gatemesh` binary of the same build as this test
/// (`target/<profile>/gatemesh`). A workspace test build (`scripts/test`,
/// `cargo nextest run --workspace`) builds it, because node's integration
/// tests need it; a narrower run needs `cargo build -p node --bin gatemesh`
/// first. Fails with that hint when it is missing.
pub fn gatemesh_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/<test> → target/<profile>/gatemesh
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not under target/<profile>/deps")?;
    let binary = profile_dir.join("gatemesh");
    ensure!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build -p node --bin gatemesh` (same CARGO_TARGET_DIR and profile as the tests)",
        binary.display()
    );
    Ok(binary)
}

/// A real `gatemesh run` process. Dropping it kills it (SIGKILL).
#[derive(Debug)]
pub struct ProcessNode {
    child: std::process::Child,
    log_path: PathBuf,
}

impl ProcessNode {
    /// Starts `binary run --config config`, logging to `log_path`.
    pub fn spawn(binary: &Path, config: &Path, log_path: PathBuf) -> anyhow::Result<Self> {
        let log = std::fs::File::create(&log_path).context("process log file")?;
        let child = std::process::Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Self { child, log_path })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9`, then reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if self.exited().is_none() {
            self.child.kill().context("SIGKILL")?;
        }
        self.child.wait().context("reaping the killed process")?;
        Ok(())
    }

    /// Resident set size (`VmRSS` of `/proc/<pid>/status`), KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading /proc/<pid>/status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS line")
    }

    /// The last `lines` lines of its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
