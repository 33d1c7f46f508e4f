//! `gridctl`: gridcase from a terminal.

mod deadline;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gridctl", version, about = "gridcase from the command line", long_about = None)]
struct Cli {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Deadline(args) => deadline::run(args, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gridctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
