//! `gatemesh demo`: the embedded default, a local multi-region lab. It
//! creates a cluster CA and node certificates, starts emulated orchestrators
//! (the `gatemesh-emulator` binary, a separate process speaking the real
//! Livepeer protocol) whose latency depends on the calling region, and
//! starts 3 regions × 2 gateway nodes on distinct 127.0.0.x addresses that
//! form one mesh. It prints each region's HTTPS endpoint and admin URL, an
//! API key and a working `curl` line.

use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_core::{NodeId, RegionId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Node;
use crate::config::NodeConfig;

/// How long the demo waits for emulators and gateways to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The lab's regions, in order; region `i` uses addresses 127.0.0.(10·(i+1)+n).
const REGIONS: [&str; 3] = ["fra", "lax", "sin"];
/// Extra latency injected by the emulators for a caller in another region
/// (one-way-ish, per request), so routing has something to prefer.
const CROSS_REGION_DELAY_MS: [[u64; 3]; 3] = [[0, 75, 80], [75, 0, 85], [80, 85, 0]];

/// `gatemesh demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Gateway nodes per region.
    #[arg(long, default_value_t = 2)]
    pub nodes_per_region: usize,
    /// Emulated orchestrators per region.
    #[arg(long, default_value_t = 2)]
    pub orchestrators_per_region: usize,
    /// Public HTTPS port of every node (each node has its own address);
    /// 0 picks free ports.
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Admin port of every node; 0 picks free ports.
    #[arg(long, default_value_t = 9443)]
    pub admin_port: u16,
    /// The emulator binary (default: `gatemesh-emulator` next to this binary).
    #[arg(long)]
    pub emulator: Option<PathBuf>,
    /// Where certificates are written (default: a fresh directory under the
    /// system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One node of the lab.
#[derive(Debug, Clone)]
struct LabNode {
    name: NodeId,
    region: RegionId,
    region_index: usize,
    ip: Ipv4Addr,
}

/// Runs the lab until `shutdown` completes.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if args.nodes_per_region == 0 || args.nodes_per_region > 9 {
        bail!("--nodes-per-region must be between 1 and 9");
    }
    if args.orchestrators_per_region == 0 || args.orchestrators_per_region > 20 {
        bail!("--orchestrators-per-region must be between 1 and 20");
    }
    let lab = lab_nodes(args.nodes_per_region)?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("gatemesh-demo-{:016x}", rand::random::<u64>())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    mesh::certs::init_ca(&dir).context("creating the cluster CA")?;
    for node in &lab {
        mesh::certs::issue_node(&dir, &dir, &node.name, &node.region)
            .with_context(|| format!("issuing the certificate of {}", node.name))?;
    }

    let emulator_path = match &args.emulator {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot locate the gatemesh binary")?
            .with_file_name("gatemesh-emulator"),
    };
    let emulator_config = dir.join("emulator.toml");
    std::fs::write(
        &emulator_config,
        emulator_toml(&lab, args.orchestrators_per_region),
    )?;
    let expected = REGIONS.len() * args.orchestrators_per_region;
    let (mut emulator, urls) = start_emulators(&emulator_path, &emulator_config, expected).await?;

    let api_key = format!("demo-{:032x}", rand::random::<u128>());
    let mut nodes: Vec<Node> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for node in &lab {
        let region_urls: Vec<&String> = urls
            .iter()
            .enumerate()
            .filter(|(i, _)| i / args.orchestrators_per_region == node.region_index)
            .map(|(_, url)| url)
            .collect();
        let text = node_toml(node, &args, &dir, &region_urls, &api_key, seed);
        let config =
            NodeConfig::parse(&text).with_context(|| format!("lab config of {}", node.name))?;
        let started = match Node::start(config).await {
            Ok(started) => started,
            Err(error) => {
                let _ = emulator.kill().await;
                return Err(error).with_context(|| format!("starting {}", node.name));
            }
        };
        if seed.is_none() {
            seed = started
                .cluster()
                .mesh()
                .map(mesh::MeshHandle::advertise_addr);
        }
        nodes.push(started);
    }

    let ready = tokio::time::timeout(STARTUP_TIMEOUT, async {
        while !nodes.iter().all(Node::is_ready) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if ready.is_err() {
        let _ = emulator.kill().await;
        bail!("the gateways saw no orchestrator within {STARTUP_TIMEOUT:?}");
    }

    let first = nodes[0].public_url();
    println!(
        "gatemesh demo is up: {} regions × {} nodes, one mesh.",
        REGIONS.len(),
        args.nodes_per_region
    );
    println!();
    for node in &nodes {
        println!(
            "  {:<4} {:<7} gateway (HTTPS, self-signed): {}   admin: {}",
            node.config().node.region,
            node.config().node.name,
            node.public_url(),
            node.admin_url()
        );
    }
    println!();
    println!("  API key:                      {api_key}");
    println!("  orchestrators (emulated):     {}", urls.join(", "));
    println!("  certificates:                 {}", dir.display());
    println!();
    println!("Try it:");
    println!(
        "  curl -sk {first}/text-to-image -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' -d '{{\"prompt\":\"a lighthouse at dusk\"}}'"
    );
    println!("  curl -s {}/admin/cluster", nodes[0].admin_url());
    println!("  curl -s {}/admin/orchestrators", nodes[0].admin_url());
    println!("  open {}/dashboard", nodes[0].admin_url());
    println!();
    println!(
        "Image URLs in the answer are served by the gateway (curl -sk URL -o out.png). Ctrl-C stops everything."
    );

    shutdown.await;
    let mut result = Ok(());
    for node in nodes {
        if let Err(error) = node.shutdown().await {
            result = Err(error.into());
        }
    }
    let _ = emulator.kill().await;
    // The last line, through the log queue: written before the process exits.
    tracing::info!("demo stopped");
    result
}

fn lab_nodes(per_region: usize) -> anyhow::Result<Vec<LabNode>> {
    let mut lab = Vec::new();
    for (region_index, region) in REGIONS.iter().enumerate() {
        for n in 1..=per_region {
            lab.push(LabNode {
                name: NodeId::new(format!("{region}-{n}"))?,
                region: RegionId::new(*region)?,
                region_index,
                ip: Ipv4Addr::new(127, 0, 0, (10 * (region_index + 1) + n) as u8),
            });
        }
    }
    Ok(lab)
}

/// The emulator fleet: each region's orchestrators serve every batch
/// pipeline; callers from other regions (by source address) wait longer.
fn emulator_toml(lab: &[LabNode], per_region: usize) -> String {
    let mut text = String::new();
    for (region_index, region) in REGIONS.iter().enumerate() {
        let _ = writeln!(
            text,
            "[[orchestrator]]\nname = \"{region}-orch\"\ncount = {per_region}\nlisten = \"127.0.0.1:0\"\ngpu_name = \"NVIDIA GeForce RTX 4090\"\nseed = {}\ninter_token_delay_ms = 30\nlatency = {{ kind = \"uniform\", base_ms = 60, jitter_ms = 30 }}\n",
            region_index + 1
        );
        let _ = writeln!(text, "[orchestrator.region_latency_ms]");
        for node in lab {
            let _ = writeln!(
                text,
                "\"{}\" = {}",
                node.ip, CROSS_REGION_DELAY_MS[region_index][node.region_index]
            );
        }
        for pipeline in mesh_core::Pipeline::BATCH {
            let _ = writeln!(
                text,
                "\n[[orchestrator.models]]\npipeline = \"{pipeline}\"\nwarm = true\ncapacity = 4"
            );
        }
        text.push('\n');
    }
    text
}

fn node_toml(
    node: &LabNode,
    args: &DemoArgs,
    dir: &Path,
    orchestrators: &[&String],
    api_key: &str,
    seed: Option<SocketAddr>,
) -> String {
    let orchestrators = orchestrators
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let seeds = seed.map(|s| format!("\"{s}\"")).unwrap_or_default();
    let ip = IpAddr::V4(node.ip);
    format!(
        r#"
[node]
name = "{name}"
region = "{region}"

[http]
listen_addr = "{ip}:{port}"
shutdown_grace_ms = 5000

[admin]
listen_addr = "{ip}:{admin_port}"

[[keys]]
key = "{api_key}"
tenant = "demo"

[discovery]
orchestrators = [{orchestrators}]
info_refresh_ms = 1000
get_orchestrator_timeout_ms = 1000
source_ip = "{ip}"

[cluster]
ca_cert_path = "{dir}/ca.pem"
node_cert_path = "{dir}/{name}.pem"
node_key_path = "{dir}/{name}.key"

[mesh]
listen_addr = "{ip}:0"
seeds = [{seeds}]
"#,
        name = node.name,
        region = node.region,
        port = args.port,
        admin_port = args.admin_port,
        dir = dir.display(),
    )
}

/// Starts the emulator process and reads the orchestrator URLs it prints.
async fn start_emulators(
    path: &Path,
    config: &Path,
    count: usize,
) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = Command::new(path)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start the orchestrator emulator {} (build it with `cargo build -p simulations --bin gatemesh-emulator`)",
                path.display()
            )
        })?;
    let stdout = child.stdout.take().context("emulator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    let read = tokio::time::timeout(STARTUP_TIMEOUT, async {
        while urls.len() < count {
            let Some(line) = lines.next_line().await? else {
                break;
            };
            if let Some(url) = line
                .split_whitespace()
                .find(|w| w.starts_with("https://") || w.starts_with("http://"))
            {
                urls.push(url.to_owned());
            }
        }
        anyhow::Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) if urls.len() == count => {}
        Ok(Ok(())) => bail!(
            "the emulator exited after printing {} of {count} orchestrator URLs",
            urls.len()
        ),
        Ok(Err(error)) => return Err(error.context("reading the emulator's output")),
        Err(_) => bail!("the emulator printed no URLs within {STARTUP_TIMEOUT:?}"),
    }
    // Keep draining stdout so the emulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, urls))
}
