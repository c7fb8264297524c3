//! `gatemesh demo`: the embedded default. Starts emulated orchestrators (the
//! `gatemesh-emulator` binary, a separate process speaking the real Livepeer
//! protocol) and a gateway on loopback, waits until the gateway is ready, and
//! prints the HTTPS URL, an API key and a working `curl` line.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Node;
use crate::config::NodeConfig;

/// How long the demo waits for emulators and the gateway to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `gatemesh demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many emulated orchestrators to start.
    #[arg(long, default_value_t = 3)]
    pub orchestrators: usize,
    /// The emulator binary (default: `gatemesh-emulator` next to this binary).
    #[arg(long)]
    pub emulator: Option<PathBuf>,
    /// Public HTTPS listen address of the gateway.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
}

/// Runs the demo until `shutdown` completes.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let emulator_path = match &args.emulator {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot locate the gatemesh binary")?
            .with_file_name("gatemesh-emulator"),
    };
    let (mut emulator, urls) = start_emulators(&emulator_path, args.orchestrators).await?;

    let api_key = format!("demo-{:032x}", rand::random::<u128>());
    let config = NodeConfig::parse(&demo_config(&args, &urls, &api_key))?;
    let node = Node::start(config).await?;
    let url = node.public_url();

    let ready = tokio::time::timeout(STARTUP_TIMEOUT, async {
        while node
            .registry()
            .capable(
                mesh_core::Pipeline::TextToImage,
                mesh_core::Pipeline::TextToImage.default_model_id(),
            )
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if ready.is_err() {
        let _ = emulator.kill().await;
        bail!("the gateway saw no orchestrator within {STARTUP_TIMEOUT:?}");
    }

    println!("gatemesh demo is up.");
    println!();
    println!("  gateway (HTTPS, self-signed): {url}");
    println!("  API key:                      {api_key}");
    println!("  orchestrators (emulated):     {}", urls.join(", "));
    println!();
    println!("Try it:");
    println!(
        "  curl -sk {url}/text-to-image -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' -d '{{\"prompt\":\"a lighthouse at dusk\"}}'"
    );
    println!("  curl -sk {url}/readyz");
    println!();
    println!(
        "Image URLs in the answer are served by the gateway (curl -sk URL -o out.png). Ctrl-C stops everything."
    );

    shutdown.await;
    let result = node.shutdown().await;
    let _ = emulator.kill().await;
    result.map_err(Into::into)
}

fn demo_config(args: &DemoArgs, urls: &[String], api_key: &str) -> String {
    let orchestrators = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[node]
name = "demo-1"
region = "local"

[http]
listen_addr = "{listen}"
shutdown_grace_ms = 5000

[[keys]]
key = "{api_key}"
tenant = "demo"

[discovery]
orchestrators = [{orchestrators}]
info_refresh_ms = 2000
"#,
        listen = args.listen,
    )
}

/// Starts the emulator process and reads the orchestrator URLs it prints.
async fn start_emulators(path: &PathBuf, count: usize) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = Command::new(path)
        .args(["--count", &count.to_string(), "--listen", "127.0.0.1:0"])
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
