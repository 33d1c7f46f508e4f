//! `gridctl`: gridcase from a terminal. It speaks only the public gRPC APIs
//! (IntakeService, CaseService, QueryService, AuthService, ReferenceService),
//! apart from `deadline`, which computes on the policy and calendar files
//! directly, the operator's `log`, `backup` and `keys`, which go straight to
//! NATS, and `nats-key` and `master-key`, which only make keys.

mod api_key;
mod backup;
mod client;
mod copy;
mod deadline;
mod export;
mod field;
mod keys;
mod lifecycle;
mod log;
mod nats_key;
mod output;
mod reference;
mod reports;
mod reseal;
mod sync;
mod token;
mod upload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gridctl",
    version,
    about = "gridcase from the command line: file cases, move them through their lifecycle, read them back",
    long_about = None
)]
struct Cli {
    #[command(flatten)]
    connection: client::Connection,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// When would a case dispatched at a given moment be due? Uses the same
    /// policy and calendar files as the dispatcher and shows which were used.
    Deadline(deadline::Args),
    #[command(flatten)]
    Lifecycle(lifecycle::Command),
    /// Upload photos or videos in parts, resuming after every broken
    /// connection (a progress bar on a terminal); prints each one's digest
    /// to name in a filing.
    Upload(upload::Upload),
    /// Send a day's filings and notes (JSON lines) in one call and print
    /// each item's outcome; sending the same file again stores nothing new.
    Sync(sync::Sync),
    #[command(flatten)]
    Field(field::Command),
    #[command(flatten)]
    Reports(reports::Command),
    #[command(flatten)]
    Token(token::Command),
    #[command(flatten)]
    Reference(reference::Command),
    #[command(flatten)]
    NatsKey(nats_key::Command),
    #[command(flatten)]
    ApiKey(api_key::Command),
    #[command(flatten)]
    Log(log::Command),
    #[command(flatten)]
    Export(export::Command),
    #[command(flatten)]
    Keys(keys::Command),
    #[command(flatten)]
    Backup(backup::Command),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Deadline(args) => deadline::run(args, cli.json),
        Commands::Lifecycle(command) => lifecycle::run(command, &cli.connection, cli.json).await,
        Commands::Upload(args) => upload::run(args, &cli.connection, cli.json).await,
        Commands::Sync(args) => sync::run(args, &cli.connection, cli.json).await,
        Commands::Field(command) => field::run(command, &cli.connection, cli.json).await,
        Commands::Reports(command) => reports::run(command, &cli.connection, cli.json).await,
        Commands::Token(command) => token::run(command, &cli.connection, cli.json).await,
        Commands::Reference(command) => reference::run(command, &cli.connection, cli.json).await,
        Commands::NatsKey(command) => nats_key::run(command),
        Commands::ApiKey(command) => api_key::run(command),
        Commands::Log(command) => log::run(command, cli.json).await,
        Commands::Export(command) => export::run(command, &cli.connection, cli.json).await,
        Commands::Keys(command) => keys::run(command, cli.json).await,
        Commands::Backup(command) => backup::run(command, cli.json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gridctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
