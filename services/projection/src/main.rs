use std::process::ExitCode;

use clap::Parser;
use gridcase_projection::Cli;

/// mimalloc: glibc's malloc cost a third of the CPU under load (see ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = gridcase_process::telemetry::init(cli.config.common.log_format, "info", "gridcase-projection");
    let code = gridcase_process::exit_code("gridcase-projection", gridcase_projection::service::run(cli).await);
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
