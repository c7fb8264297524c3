//! `gatemesh`: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use node::config::LogFormat;

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
    /// Start emulated orchestrators and a gateway on loopback, and print
    /// where to look.
    Demo(node::demo::DemoArgs),
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
            node::telemetry::init(
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
        Command::Demo(args) => {
            node::telemetry::init(
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
