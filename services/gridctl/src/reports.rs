//! Reports from the read models (QueryService).

use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as api;
use serde_json::json;

use crate::client::Connection;
use crate::output;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Period {
    Day,
    Month,
    Total,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the open cases past a deadline now, by township and handling unit.
    Overdue {
        /// Region-code prefix: a county (990101) or a township (990101001) inside your territory. Default: your whole territory.
        #[arg(long, default_value = "")]
        region: String,
    },
    /// The measures (考核) of organisations over a period: filed, due, closed, on-time rate, …
    Ledger {
        /// township, village, grid, unit or worker.
        #[arg(long, default_value = "township")]
        kind: String,
        /// One organisation (e.g. 990101001), or all of that kind.
        #[arg(long, default_value = "")]
        org: String,
        /// First day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD.
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value = "total")]
        period: Period,
    },
}

fn hours(seconds: i64) -> String {
    format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let mut query = connection.query().await?;
    match command {
        Command::Overdue { region } => {
            let report = query
                .overdue_report(connection.request(api::OverdueReportRequest { region_prefix: region })?)
                .await
                .map_err(output::refusal)?
                .into_inner();
            let clock = |v: i32| {
                common::Clock::try_from(v)
                    .map(|c| c.as_str_name().trim_start_matches("CLOCK_").to_owned())
                    .unwrap_or_default()
            };
            let level = |v: i32| {
                common::Supervision::try_from(v)
                    .map(|s| s.as_str_name().trim_start_matches("SUPERVISION_").to_owned())
                    .unwrap_or_default()
            };
            if json {
                let groups: Vec<_> = report
                    .groups
                    .iter()
                    .map(|g| {
                        json!({
                            "township": g.township,
                            "unit": g.unit,
                            "items": g.items.iter().map(|i| json!({
                                "case_id": i.case_id, "clock": clock(i.clock), "overdue_seconds": i.overdue_seconds,
                                "unit_of_time": i.unit_of_time, "supervision": level(i.supervision), "grid": i.grid_code,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "total": report.total, "groups": groups }))?);
                return Ok(());
            }
            println!("{} overdue clock(s) on open cases", report.total);
            for group in &report.groups {
                let unit = if group.unit.is_empty() { "(not dispatched)" } else { &group.unit };
                println!("\ntownship {}  unit {}", group.township, unit);
                for item in &group.items {
                    println!(
                        "  {}  {:<12} overdue {:>9} ({})  supervision {}",
                        item.case_id,
                        clock(item.clock),
                        hours(item.overdue_seconds),
                        item.unit_of_time,
                        level(item.supervision)
                    );
                }
            }
        }
        Command::Ledger { kind, org, from, to, period } => {
            let period = match period {
                Period::Day => api::Period::Day,
                Period::Month => api::Period::Month,
                Period::Total => api::Period::Total,
            };
            let request = api::LedgerRequest { org_kind: kind, org, from_day: from, to_day: to, period: period as i32 };
            let rows = query.ledger(connection.request(request)?).await.map_err(output::refusal)?.into_inner().rows;
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|r| json!({
                        "org_kind": r.org_kind, "org": r.org, "period": r.period, "filed": r.filed, "registered": r.registered,
                        "due": r.due, "closed": r.closed, "closed_on_time": r.closed_on_time, "closure_rate": r.closure_rate,
                        "on_time_closure_rate": r.on_time_closure_rate, "rework_rate": r.rework_rate,
                        "extension_rate": r.extension_rate, "accurate_dispatch_rate": r.accurate_dispatch_rate,
                        "overdue_open": r.overdue_open,
                    }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<16} {:<10} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>8}",
                "org", "period", "filed", "due", "closed", "on time", "closure%", "on-time%", "overdue"
            );
            for r in rows {
                println!(
                    "{:<16} {:<10} {:>6} {:>6} {:>6} {:>8} {:>8.1}% {:>8.1}% {:>8}",
                    r.org,
                    r.period,
                    r.filed,
                    r.due,
                    r.closed,
                    r.closed_on_time,
                    r.closure_rate * 100.0,
                    r.on_time_closure_rate * 100.0,
                    r.overdue_open
                );
            }
        }
    }
    Ok(())
}
