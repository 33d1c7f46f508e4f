use std::process::ExitCode;

use clap::Parser;
use gridcase_dispatcher::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    gridcase_runtime::telemetry::init(config.log_format, "info");
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gridcase-dispatcher failed");
            eprintln!("gridcase-dispatcher: {error:#}");
            ExitCode::FAILURE
        }
    }
}
