//! `gridctl export cases`: the case list as CSV or XLSX into a file, with a
//! progress bar on the terminal (rows written of the total the server
//! announces).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use gridcase_proto::query::v1 as api;

use crate::client::Connection;
use crate::output;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Csv,
    Xlsx,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Export data from the read models to a file.
    #[command(subcommand)]
    Export(Export),
}

#[derive(Debug, clap::Subcommand)]
pub enum Export {
    /// The cases of a region (newest first) as CSV or XLSX.
    Cases {
        /// Region-code prefix inside your territory. Default: your whole territory.
        #[arg(long, default_value = "")]
        region: String,
        /// Only cases past a running deadline now.
        #[arg(long)]
        overdue_only: bool,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// The file to write (not overwritten if it exists).
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let Command::Export(Export::Cases { region, overdue_only, format, out }) = command;
    let mut query = connection.query().await?;
    let request = api::ExportCasesRequest {
        filter: Some(api::ListCasesRequest { region_prefix: region, overdue_only, ..Default::default() }),
        format: match format {
            Format::Csv => api::ExportFormat::Csv,
            Format::Xlsx => api::ExportFormat::Xlsx,
        } as i32,
    };
    let mut chunks = query.export_cases(connection.request(request)?).await.map_err(output::refusal)?.into_inner();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&out)
        .with_context(|| format!("creating {} (an existing file is never overwritten)", out.display()))?;
    // Drawn only when stderr is a terminal.
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} ETA {eta}")
            .expect("a valid template"),
    );
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = chunks.message().await.map_err(output::refusal)? {
        if chunk.rows_total > 0 {
            bar.set_length(chunk.rows_total);
        }
        bar.set_position(chunk.rows_done);
        rows = chunk.rows_done;
        bytes += chunk.data.len() as u64;
        file.write_all(&chunk.data).with_context(|| format!("writing {}", out.display()))?;
    }
    file.sync_all()?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::json!({ "file": out, "rows": rows, "bytes": bytes }));
    } else {
        println!("wrote {rows} cases ({bytes} bytes) to {}", out.display());
    }
    Ok(())
}
