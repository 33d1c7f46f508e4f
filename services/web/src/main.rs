use std::process::ExitCode;

use clap::Parser;
use gridcase_web::{Config, run};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = gridcase_process::telemetry::init(config.log_format, "info", "gridcase-web");
    let code = gridcase_process::exit_code("gridcase-web", run(config).await);
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
