//! `gatemesh`: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use node::config::LogFormat;

/// mimalloc rather than glibc malloc: allocation was ~13 % of the CPU a job
/// costs on the gateway hop (see README, "Measuring against the peers").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A multi-region Livepeer AI gateway.
#[derive(Debug, Parser)]
#[command(name = "gatemesh", version)]
struct Cli {
    /// Log format (overrides the config's `log.format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node from a configuration file.
    Run {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Parse and validate a configuration file, then exit.
    CheckConfig {
        /// The TOML configuration.
        config: PathBuf,
    },
    /// Start a local multi-region lab (emulated orchestrators, 3 regions ×
    /// 2 gateway nodes in one mesh) on loopback, and print where to look.
    Demo(node::demo::DemoArgs),
    /// Cluster certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The signed marketplace listing: operator key, show, publish.
    #[command(subcommand)]
    Offering(node::offering::cli::OfferingCommand),
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create the cluster CA (DIR/ca.pem, DIR/ca.key); refuses to overwrite one.
    Init {
        /// Directory for the CA files.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a node certificate signed by the cluster CA in DIR
    /// (DIR/NODE.pem, DIR/NODE.key).
    Issue {
        /// Directory holding the CA; the node files are written there too
        /// unless --out is given.
        #[arg(long)]
        dir: PathBuf,
        /// Node name (unique in the cluster).
        #[arg(long)]
        node: mesh_core::NodeId,
        /// The node's region.
        #[arg(long)]
        region: mesh_core::RegionId,
        /// Where to write the node files.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gatemesh: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::CheckConfig { config } => match node::NodeConfig::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("gatemesh: {error}");
                ExitCode::from(64)
            }
        },
        Command::Run { config } => {
            let config = match node::NodeConfig::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("gatemesh: {error}");
                    return ExitCode::from(64);
                }
            };
            let _log = node::telemetry::init(
                cli.log_format.unwrap_or(config.log.format),
                &config.log.filter,
            );
            match runtime.block_on(node::run(config, node::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("gatemesh: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs(CertsCommand::Init { dir }) => match mesh::certs::init_ca(&dir) {
            Ok(files) => {
                println!("cluster CA written: {files:?}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("gatemesh certs init: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Certs(CertsCommand::Issue {
            dir,
            node,
            region,
            out,
        }) => {
            let out = out.unwrap_or_else(|| dir.clone());
            match mesh::certs::issue_node(&dir, &out, &node, &region) {
                Ok(files) => {
                    println!("node certificate written: {files:?}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("gatemesh certs issue: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Offering(command) => {
            let _log = node::telemetry::init(cli.log_format.unwrap_or_default(), "warn,node=info");
            match runtime.block_on(node::offering::cli::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("gatemesh offering: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo(args) => {
            let _log = node::telemetry::init(
                cli.log_format.unwrap_or_default(),
                "warn,node=info,api=info",
            );
            match runtime.block_on(node::demo::run(args, node::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("gatemesh demo: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
