use std::process::ExitCode;

use clap::Parser;
use gridcase_intake::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    gridcase_runtime::telemetry::init(config.log_format, "info");
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gridcase-intake failed");
            eprintln!("gridcase-intake: {error:#}");
            ExitCode::FAILURE
        }
    }
}
