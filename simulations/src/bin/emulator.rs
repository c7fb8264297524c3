//! `gatemesh-emulator`: runs emulated Livepeer orchestrators until Ctrl-C or
//! SIGTERM, printing each one's service URL on its own line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use mesh_core::Pipeline;
use simulations::emulator::{
    Fleet, FleetConfig, LatencySpec, ModelSpec, OrchestratorSpec, PriceSpec, replicas,
};

/// Run emulated Livepeer orchestrators (gRPC + HTTP AI routes on one TLS port).
#[derive(Debug, Parser)]
#[command(name = "gatemesh-emulator", version)]
struct Args {
    /// TOML file of `[[orchestrator]]` tables (see simulations/emulator.example.toml).
    #[arg(long, conflicts_with_all = ["count", "pipelines"])]
    config: Option<PathBuf>,
    /// Number of orchestrators to start from the flags below.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Pipelines each orchestrator serves, with their default models.
    #[arg(long, value_delimiter = ',', default_value = "text-to-image,llm")]
    pipelines: Vec<Pipeline>,
    /// Listen address; with port 0 every orchestrator picks a free port,
    /// otherwise orchestrator i listens on port + i.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Concurrent jobs per model.
    #[arg(long, default_value_t = 2)]
    capacity: u32,
    /// Fixed part of the per-job latency, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Uniform jitter added to the per-job latency, milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Share of jobs failing with an injected 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Price per unit in wei (omit for free/offchain).
    #[arg(long)]
    price_per_unit: Option<i64>,
    /// Serve plaintext h2c/HTTP/1.1 instead of TLS.
    #[arg(long)]
    plaintext: bool,
    /// Seed of the first orchestrator (orchestrator i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Args {
    fn specs(&self) -> anyhow::Result<Vec<OrchestratorSpec>> {
        if let Some(path) = &self.config {
            return Ok(FleetConfig::from_file(path)?.specs());
        }
        let models = self
            .pipelines
            .iter()
            .map(|p| ModelSpec::new(*p).capacity(self.capacity))
            .collect();
        let mut template = OrchestratorSpec::new("emulated", models);
        template.listen = self.listen;
        template.plaintext = self.plaintext;
        template.error_rate = self.error_rate;
        template.seed = self.seed;
        template.latency = LatencySpec::Uniform {
            base_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
        };
        template.price = self.price_per_unit.map(|price_per_unit| PriceSpec {
            price_per_unit,
            pixels_per_unit: 1,
        });
        template.validate()?;
        Ok(replicas(&template, self.count))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let fleet = Fleet::start_all(args.specs()?)
        .await
        .context("starting emulated orchestrators")?;
    for url in fleet.urls() {
        println!("{url}");
    }
    shutdown_signal().await?;
    fleet.crash_all().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
