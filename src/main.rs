//! `arrakis`: one binary, one subcommand per role (ARCHITECTURE.md §3.1).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Discord gateway proxy for Arrakis.
#[derive(Debug, Parser)]
#[command(name = "arrakis", version, about)]
struct Cli {
    /// Log lines: `json` (one object per line, for production), `pretty`
    /// (readable lines) or `auto` (json unless stderr is a terminal).
    /// `RUST_LOG` filters.
    #[arg(
        long,
        global = true,
        env = "ARRAKIS_LOG_FORMAT",
        value_name = "ARRAKIS_LOG_FORMAT",
        default_value = "pretty"
    )]
    log_format: arrakis::logging::LogFormat,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Gateway ingestor: Discord gateway shards → RabbitMQ, with confirms.
    Ingest(Box<arrakis::ingest::IngestArgs>),
    /// REST proxy: holds the bot token, shares Discord's rate limits
    /// between replicas through Redis.
    Proxy(Box<arrakis::proxy::ProxyArgs>),
    /// Worker: consumes the work queues and runs the bot's logic with
    /// Redis, Postgres, the chain and the REST proxy.
    Work(Box<arrakis::work::WorkArgs>),
    /// Database migrations: creates the schema, RLS policies and the
    /// tenant role the workers switch to.
    Migrate(Box<arrakis::worker::db::migrate::MigrateArgs>),
    /// Registers the Sietch slash commands with Discord (bulk overwrite
    /// of the global commands through the REST proxy; idempotent).
    RegisterCommands(Box<arrakis::register::RegisterArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    arrakis::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("arrakis: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.role {
        Role::Ingest(args) => runtime
            .block_on(arrakis::ingest::run(*args))
            .map_err(|e| e.to_string()),
        Role::Proxy(args) => runtime
            .block_on(arrakis::proxy::run(*args))
            .map_err(|e| e.to_string()),
        Role::Work(args) => runtime
            .block_on(arrakis::work::run(*args))
            .map_err(|e| e.to_string()),
        Role::Migrate(args) => runtime
            .block_on(arrakis::worker::db::migrate::run(*args))
            .map_err(|e| e.to_string()),
        Role::RegisterCommands(args) => runtime
            .block_on(arrakis::register::run(*args))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
