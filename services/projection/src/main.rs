use std::process::ExitCode;

use clap::Parser;
use gridcase_projection::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    gridcase_runtime::telemetry::init(cli.config.common.log_format, "info");
    gridcase_runtime::exit_code("gridcase-projection", gridcase_projection::service::run(cli).await)
}
