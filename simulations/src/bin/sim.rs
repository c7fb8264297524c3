//! `gatemesh-sim`: run the deterministic cluster simulator.
//!
//! ```text
//! gatemesh-sim run SCENARIO --seed N [--json] [--small] [--late-truth]
//! gatemesh-sim sweep SCENARIO --seeds N [--threads 2] [--json] [--small] [--late-truth]
//! gatemesh-sim list
//! ```
//! `SCENARIO` may be `all`. The same arguments print byte-identical output.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use simulations::sim::{
    RunOptions, Scenario, Size, run_scenario_with, sweep_table, sweep_with, table,
};

#[derive(Debug, Parser)]
#[command(
    name = "gatemesh-sim",
    about = "Deterministic discrete-event simulation of a gatemesh cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario for one seed: gatemesh vs the baselines.
    Run {
        /// Scenario name, or `all`.
        scenario: String,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The small (test-sized) world instead of the full one.
        #[arg(long)]
        small: bool,
        /// Also run the late-truth bound: routing on every orchestrator's
        /// exact state a one-way delay late (a yardstick, not a gateway).
        #[arg(long)]
        late_truth: bool,
    },
    /// Run seeds 0..N of a scenario and aggregate.
    Sweep {
        /// Scenario name, or `all`.
        scenario: String,
        /// How many seeds.
        #[arg(long)]
        seeds: u64,
        /// Worker threads (output does not depend on it).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The small (test-sized) world.
        #[arg(long)]
        small: bool,
        /// Also run the late-truth bound: routing on every orchestrator's
        /// exact state a one-way delay late (a yardstick, not a gateway).
        #[arg(long)]
        late_truth: bool,
    },
    /// List the scenarios.
    List,
}

fn scenarios(name: &str) -> anyhow::Result<Vec<Scenario>> {
    if name == "all" {
        return Ok(Scenario::ALL.to_vec());
    }
    Ok(vec![name.parse::<Scenario>()?])
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("gatemesh-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every property held.
fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let mut all_held = true;
    match cli.command {
        Command::List => {
            for s in Scenario::ALL {
                println!("{s}");
            }
        }
        Command::Run {
            scenario,
            seed,
            json,
            small,
            late_truth,
        } => {
            let size = if small { Size::SMALL } else { Size::FULL };
            let options = RunOptions { late_truth };
            let mut reports = Vec::new();
            for s in scenarios(&scenario)? {
                let report = run_scenario_with(s, size, seed, options);
                all_held &= report.violations.is_empty();
                if !json {
                    println!("{}", table(&report));
                }
                reports.push(report);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).context("encoding JSON")?
                );
            }
        }
        Command::Sweep {
            scenario,
            seeds,
            threads,
            json,
            small,
            late_truth,
        } => {
            let size = if small { Size::SMALL } else { Size::FULL };
            let options = RunOptions { late_truth };
            let mut reports = Vec::new();
            for s in scenarios(&scenario)? {
                let report = sweep_with(s, size, seeds, threads, options);
                all_held &= report.failing.is_empty();
                if !json {
                    println!("{}", sweep_table(&report));
                }
                reports.push(report);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).context("encoding JSON")?
                );
            }
        }
    }
    Ok(all_held)
}
