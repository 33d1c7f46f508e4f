//! `gridctl reference show|validate`: the admin's view of the reference data.

use std::path::PathBuf;

use anyhow::Context as _;
use gridcase_proto::admin::v1 as api;
use gridcase_proto::admin::v1::reference_service_client::ReferenceServiceClient;
use serde_json::json;

use crate::client::Connection;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Reference data (grid registry, taxonomy) for admins.
    #[command(subcommand)]
    Reference(Reference),
}

#[derive(Debug, clap::Subcommand)]
pub enum Reference {
    /// What the intake service runs with: counts and the SHA-256 of each file.
    Show,
    /// Check new files before a rollout (nothing changes): the first error
    /// with its line, or what would be added and removed.
    Validate {
        /// A new regions.csv.
        #[arg(long)]
        regions: Option<PathBuf>,
        /// A new categories.csv.
        #[arg(long)]
        categories: Option<PathBuf>,
    },
}

fn summary_json(s: &api::ReferenceSummary) -> serde_json::Value {
    json!({
        "regions": s.regions, "grids": s.grids, "categories": s.categories,
        "regions_sha256": s.regions_sha256, "categories_sha256": s.categories_sha256,
    })
}

fn print_summary(s: &api::ReferenceSummary) {
    println!("regions     {} ({} grids)   regions.csv    sha256 {}", s.regions, s.grids, s.regions_sha256);
    println!("categories  {}              categories.csv sha256 {}", s.categories, s.categories_sha256);
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let Command::Reference(command) = command;
    let mut client = ReferenceServiceClient::new(connection.channel().await?);
    match command {
        Reference::Show => {
            let summary = client
                .get_reference(connection.request(api::GetReferenceRequest {})?)
                .await
                .map_err(output::refusal)?
                .into_inner();
            if json {
                println!("{}", summary_json(&summary));
            } else {
                print_summary(&summary);
            }
        }
        Reference::Validate { regions, categories } => {
            anyhow::ensure!(regions.is_some() || categories.is_some(), "give --regions, --categories or both");
            let read = |path: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
                path.as_ref()
                    .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            let request =
                api::ValidateReferenceRequest { regions_csv: read(&regions)?, categories_csv: read(&categories)? };
            let changes =
                client.validate_reference(connection.request(request)?).await.map_err(output::refusal)?.into_inner();
            let after = changes.after.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({
                        "after": summary_json(&after),
                        "regions_added": changes.regions_added, "regions_removed": changes.regions_removed,
                        "categories_added": changes.categories_added, "categories_removed": changes.categories_removed,
                    })
                );
            } else {
                println!("valid; after the rollout:");
                print_summary(&after);
                for (what, list) in [
                    ("region added", &changes.regions_added),
                    ("region removed", &changes.regions_removed),
                    ("category added", &changes.categories_added),
                    ("category removed", &changes.categories_removed),
                ] {
                    for code in list {
                        println!("  {what:<17} {code}");
                    }
                }
            }
        }
    }
    Ok(())
}
