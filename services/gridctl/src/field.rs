//! A grid worker's questions in the street: `gridctl similar` (open cases
//! near a point, before filing) and `gridctl my-cases` (their world, by
//! change cursor), both from the query service.

use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as api;
use serde_json::json;

use crate::client::Connection;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Before filing: open cases of the same or a related category near a
    /// point in your territory, nearest first (then `gridctl report` one).
    Similar {
        #[arg(long, allow_negative_numbers = true)]
        latitude: f64,
        #[arg(long, allow_negative_numbers = true)]
        longitude: f64,
        /// 4-digit category code of what you are about to file.
        #[arg(long)]
        category: String,
        /// Metres (1-1000).
        #[arg(long, default_value_t = 50)]
        radius: u32,
        /// Filed in the last this many days (1-90).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Your filings and the open cases of your grids; with --cursor only
    /// what changed since (prints the next cursor last).
    MyCases {
        #[arg(long, default_value = "")]
        cursor: String,
    },
}

fn state(value: i32) -> String {
    common::CaseState::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("CASE_STATE_").to_owned())
        .unwrap_or_default()
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let mut query = connection.query().await?;
    match command {
        Command::Similar { latitude, longitude, category, radius, days } => {
            let request = api::FindSimilarCasesRequest {
                location: Some(common::Location { latitude, longitude, address: String::new() }),
                category_code: category,
                radius_m: radius,
                days,
                limit: 0,
            };
            let found =
                query.find_similar_cases(connection.request(request)?).await.map_err(output::refusal)?.into_inner();
            for case in &found.cases {
                if json {
                    let line = json!({
                        "case_id": case.case_id, "state": state(case.state), "category": case.category_code,
                        "same_category": case.same_category, "distance_m": case.distance_m,
                        "reports": case.reports, "photo_sha256": case.photo_sha256, "description": case.description,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{:>6.1} m  {}  {:<12} {}  {} report(s)  {}",
                        case.distance_m,
                        case.case_id,
                        state(case.state),
                        case.category_code,
                        case.reports,
                        case.description
                    );
                }
            }
            if !json && found.cases.is_empty() {
                println!("nothing similar nearby: file it");
            }
        }
        Command::MyCases { mut cursor } => loop {
            let page = query
                .list_my_cases(connection.request(api::ListMyCasesRequest { cursor: cursor.clone(), page_size: 0 })?)
                .await
                .map_err(output::refusal)?
                .into_inner();
            for case in &page.cases {
                if json {
                    let line = json!({
                        "case_id": case.case_id, "state": state(case.state), "open": case.open, "mine": case.mine,
                        "grid": case.grid_code, "category": case.category_code, "reports": case.reports,
                        "photo_sha256": case.photo_sha256, "version": case.version,
                    });
                    println!("{line}");
                } else {
                    println!(
                        "{}  {:<12} {} {}{}",
                        case.case_id,
                        state(case.state),
                        case.category_code,
                        if case.mine { "mine " } else { "" },
                        case.description
                    );
                }
            }
            cursor = page.cursor;
            if !page.more {
                if json {
                    println!("{}", json!({ "cursor": cursor }));
                } else {
                    println!("cursor {cursor}");
                }
                break;
            }
        },
    }
    Ok(())
}
