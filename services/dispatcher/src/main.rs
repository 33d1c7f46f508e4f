use std::process::ExitCode;

use clap::Parser;
use gridcase_dispatcher::{Config, run};

/// mimalloc: glibc's malloc cost a third of the CPU under load (see ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = gridcase_process::telemetry::init(config.common.log_format, "info", "gridcase-dispatcher");
    let code = gridcase_process::exit_code("gridcase-dispatcher", run(config).await);
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}
