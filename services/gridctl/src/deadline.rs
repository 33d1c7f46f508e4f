use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use gridcase_calendar::{Calendar, Computed, TIME_ZONE, YearTable};
use gridcase_domain::{CategoryCode, Clock, GridCode, OrgCode, Tier};
use gridcase_policy::{Limit, Planner, Policy};
use jiff::Timestamp;

#[derive(clap::Args)]
pub struct Args {
    /// The case's tier: CRITICAL, URGENT, NORMAL or COMPLEX.
    #[arg(long, value_parser = parse_tier)]
    tier: Tier,

    /// When the clock starts (dispatch time), RFC 3339 with an offset, e.g. 2026-02-13T17:00+08:00.
    #[arg(long, value_parser = parse_instant)]
    from: Timestamp,

    /// Handling unit whose working hours apply (default: the policy's default hours).
    #[arg(long)]
    unit: Option<String>,

    /// Category code, to apply its route's overrides (needs --grid).
    #[arg(long, requires = "grid")]
    category: Option<String>,

    /// Grid code, to find the route (needs --category).
    #[arg(long, requires = "category")]
    grid: Option<String>,

    /// Extra working days granted (approved extensions).
    #[arg(long, default_value_t = 0)]
    extension_days: u32,

    /// Dispatch policy file.
    #[arg(long, env = "GRIDCASE_POLICY", default_value = "deploy/policy/policy.toml")]
    policy: PathBuf,

    /// Directory of working-calendar year files.
    #[arg(long, env = "GRIDCASE_CALENDAR_DIR", default_value = "deploy/calendar")]
    calendar_dir: PathBuf,
}

fn parse_tier(text: &str) -> Result<Tier, String> {
    Tier::parse(text).ok_or_else(|| format!("{text:?} is not CRITICAL, URGENT, NORMAL or COMPLEX"))
}

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| format!("{text:?} is not an instant like 2026-02-13T17:00+08:00: {e}"))
}

#[derive(serde::Serialize)]
struct ClockReport {
    clock: &'static str,
    limit: String,
    warning: String,
    due: String,
    red_card: String,
}

#[derive(serde::Serialize)]
struct Report {
    tier: &'static str,
    from: String,
    policy: String,
    unit: Option<String>,
    clocks: Vec<ClockReport>,
    calendar_files: Vec<String>,
    missing_years: Vec<i16>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(&args.policy)?;
    let years = YearTable::load_dir(&args.calendar_dir)?;
    let case = match (&args.category, &args.grid) {
        (Some(category), Some(grid)) => Some((
            CategoryCode::parse(category).with_context(|| format!("--category {category}"))?,
            GridCode::parse(grid).with_context(|| format!("--grid {grid}"))?,
        )),
        _ => None,
    };
    let unit = match &args.unit {
        Some(unit) => Some(OrgCode::parse(unit).with_context(|| format!("--unit {unit}"))?),
        None => case.as_ref().and_then(|(category, grid)| policy.route(category, grid)).map(|r| r.unit.clone()),
    };
    // The route whose overrides apply: the case's, if it sends the case to this unit.
    let route = case.as_ref().and_then(|(category, grid)| policy.route_for(category, grid, unit.as_ref()));
    // Exactly what the dispatcher does: the rulebook's limit for each clock
    // (route overrides for the route's own unit), on the unit's hours (the
    // verify clock on the default hours), marks at the policy's percentages.
    let calendar = Calendar::new(Arc::new(years), policy.default_hours.clone());
    let planner = Planner::new(&policy, &calendar);
    let tz = jiff::tz::TimeZone::get(TIME_ZONE)?;
    // JSON carries RFC 3339 with the offset; the table is Beijing time, named in its heading.
    let format = if json { "%Y-%m-%dT%H:%M:%S%:z" } else { "%Y-%m-%d %H:%M %a" };
    let show = |at: Timestamp| at.to_zoned(tz.clone()).strftime(format).to_string();
    let extra_days = args.extension_days;

    let mut used = std::collections::BTreeSet::new();
    let mut missing = std::collections::BTreeSet::new();
    let mut clocks = Vec::new();
    for (clock, name) in [(Clock::Acknowledge, "acknowledge"), (Clock::Resolve, "resolve"), (Clock::Verify, "verify")] {
        let limit = policy.limit_of(clock, Some(args.tier), route);
        let hours_of = Policy::clock_hours(clock, unit.as_ref());
        let mut due = planner.add(args.from, planner.span_of(&limit, hours_of), hours_of);
        if clock == Clock::Resolve && extra_days > 0 {
            // Approved extensions move the deadline by working days, as the dispatcher re-arms it.
            let extension = planner.span_of(&Limit::WorkingDays(extra_days), hours_of);
            let moved = planner.add(due.value, extension, hours_of);
            due = Computed {
                value: moved.value,
                years: due.years.union(&moved.years).copied().collect(),
                fallback_years: due.fallback_years.union(&moved.fallback_years).copied().collect(),
            };
        }
        let terms = Policy::terms(clock, &limit, unit.as_ref());
        let marks = planner.marks(&planner.timing(args.from, due.value, terms.working, terms.hours_of));
        used.extend(due.years.iter().copied());
        missing.extend(due.fallback_years.iter().copied());
        clocks.push(ClockReport {
            clock: name,
            limit: if clock == Clock::Resolve && extra_days > 0 {
                format!("{limit} + {extra_days} working days")
            } else {
                limit.to_string()
            },
            warning: show(marks.warning),
            due: show(due.value),
            red_card: show(marks.red_card),
        });
    }
    let calendar_files: Vec<String> = used
        .iter()
        .filter_map(|year| calendar.years().year(*year))
        .map(|file| format!("{} ({}, sha256 {})", file.year, file.path.display(), file.digest))
        .collect();
    let report = Report {
        tier: args.tier.as_str(),
        from: show(args.from),
        policy: policy.stamp(),
        unit: unit.map(|u| u.to_string()),
        clocks,
        calendar_files,
        missing_years: missing.into_iter().collect(),
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("Tier {} from {} ({TIME_ZONE}), policy {}", report.tier, report.from, report.policy);
    if let Some(unit) = &report.unit {
        println!("Working hours of {unit}");
    }
    println!();
    println!("{:<12} {:<28} {:<22} {:<22} {:<22}", "clock", "limit", "warning", "due", "red card");
    for clock in &report.clocks {
        println!(
            "{:<12} {:<28} {:<22} {:<22} {:<22}",
            clock.clock, clock.limit, clock.warning, clock.due, clock.red_card
        );
    }
    println!("\nThe verify clock starts when the case is resolved; shown here from the same instant.");
    if report.calendar_files.is_empty() {
        println!("Calendar files used: none (calendar time only)");
    } else {
        println!("Calendar files used: {}", report.calendar_files.join("; "));
    }
    if !report.missing_years.is_empty() {
        println!(
            "WARNING: no calendar file for {:?}: those days were counted Monday-Friday. Add deploy/calendar/<year>.toml.",
            report.missing_years
        );
    }
    Ok(())
}
