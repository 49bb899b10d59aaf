//! `loadtest`: the simulator's command-line front end.
//!
//! One subcommand per use; each lives in its own file and exposes an `Args`
//! struct (clap) and an async `run`. Add a subcommand by adding a variant to
//! [`Command`] and a file next to this one. `main` is a short script:
//! logging, parse, run, exit code.

mod demo;
mod ops;
mod pipeline;
mod sim_cmd;
mod sync_bench;
mod worker_bench;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Discord gateway + REST simulator and load scenarios for arrakis.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Discord simulator standalone, with background load and HTTP
    /// control endpoints (point any bot at the printed API base).
    Sim(sim_cmd::Args),
    /// The whole pipeline with live figures: the simulators, the real
    /// `arrakis ingest`, `proxy` and two `work` processes, RabbitMQ, Redis
    /// and Postgres, under a steady load with interactions.
    Demo(demo::Args),
    /// Events/s one `arrakis work` process sustains, for a no-op handler or
    /// a Postgres-writing one, from a pre-filled queue.
    WorkerBench(worker_bench::Args),
    /// How long the eligibility sync of one community takes (10,000
    /// holders on the chain simulator by default), cold and steady.
    SyncBench(sync_bench::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim_cmd::run(args).await.map_err(|e| e.to_string()),
        Command::Demo(args) => demo::run(args).await.map_err(|e| e.to_string()),
        Command::WorkerBench(args) => worker_bench::run(args).await.map_err(|e| e.to_string()),
        Command::SyncBench(args) => sync_bench::run(args).await.map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
