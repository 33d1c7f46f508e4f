use std::process::ExitCode;

use clap::Parser;
use gridcase_open311::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = gridcase_process::telemetry::init(config.log_format, "info", "gridcase-open311");
    let code = gridcase_process::exit_code("gridcase-open311", run(config).await);
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
