use std::path::{Path, PathBuf};
use std::sync::Arc;

use gridcase_calendar::{Calendar, YearTable};
use gridcase_domain::{CategoryCode, GridCode};
use jiff::{SignedDuration, Timestamp};

use super::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped() -> Policy {
    Policy::load(&root().join("deploy/policy/policy.toml")).expect("shipped policy loads")
}

fn calendar() -> Calendar {
    Calendar::new(Arc::new(YearTable::load_dir(&root().join("deploy/calendar")).unwrap()), Default::default())
}

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

fn category(code: &str) -> CategoryCode {
    CategoryCode::parse(code).unwrap()
}

fn grid(code: &str) -> GridCode {
    GridCode::parse(code).unwrap()
}

#[test]
fn the_shipped_policy_has_the_defaults_of_the_brief() {
    let policy = shipped();
    assert_eq!(policy.version, "demo-2026.1");
    let limits = |tier| policy.limits(tier, None);
    assert_eq!(limits(Tier::Critical).acknowledge, Limit::Calendar(SignedDuration::from_mins(30)));
    assert_eq!(limits(Tier::Critical).resolve, Limit::Calendar(SignedDuration::from_hours(6)));
    assert_eq!(limits(Tier::Urgent).acknowledge, Limit::WorkingHours(1));
    assert_eq!(limits(Tier::Urgent).resolve, Limit::WorkingHours(4));
    assert_eq!(limits(Tier::Normal).acknowledge, Limit::WorkingDays(1));
    assert_eq!(limits(Tier::Normal).resolve, Limit::WorkingDays(5));
    assert_eq!(limits(Tier::Complex).resolve, Limit::WorkingDays(15));
    assert_eq!(policy.thresholds, Thresholds { warning_percent: 70, yellow_card_percent: 100, red_card_percent: 200 });
    assert_eq!(policy.escalation, Escalation { yellow_card: Level::County, red_card: Level::County });
}

#[test]
fn the_most_specific_route_wins() {
    let policy = shipped();
    let unit = |code: &str, at: &str| policy.route(&category(code), &grid(at)).map(|r| r.unit.to_string());
    // Major 02 everywhere in the county, exact 0204 inside 城关街道.
    assert_eq!(unit("0201", "990101001001001").as_deref(), Some("unit.utilities.990101"));
    assert_eq!(unit("0204", "990101001001001").as_deref(), Some("unit.property.990101001"));
    assert_eq!(unit("0204", "990101101001001").as_deref(), Some("unit.utilities.990101"));
    // Exact category beats the major at the same region.
    let manhole = policy.route(&category("0202"), &grid("990101201001001")).unwrap();
    assert_eq!(manhole.tier, Some(Tier::Critical));
    // Longer region prefix beats a shorter one.
    assert_eq!(unit("0301", "990101101002001").as_deref(), Some("unit.mediation.990101101"));
    // Nothing routes suggestions; and another county has no rules at all.
    assert_eq!(unit("0901", "990101001001001"), None);
    assert_eq!(unit("0101", "110101001001001"), None);
    assert!(policy.registers_by_hand(&category("0302")));
    assert!(!policy.registers_by_hand(&category("0301")));
}

#[test]
fn route_overrides_replace_only_what_they_name() {
    let policy = shipped();
    let missing_person = policy.route(&category("0802"), &grid("990101001001001")).unwrap();
    let limits = policy.limits(Tier::Critical, Some(missing_person));
    assert_eq!(limits.acknowledge, Limit::Calendar(SignedDuration::from_mins(15)));
    assert_eq!(limits.resolve, Limit::Calendar(SignedDuration::from_hours(6)));
    assert_eq!(policy.hours_of(&missing_person.unit), &gridcase_calendar::WorkingHours::around_the_clock());
}

/// A clock started at `from` with `limit` (and `extra` running time on
/// top), on the default hours: its deadline and marks, as the dispatcher
/// computes them.
fn plan(
    policy: &Policy,
    from: Timestamp,
    limit: &Limit,
    extra: SignedDuration,
) -> (gridcase_calendar::Computed<Timestamp>, Marks) {
    let calendar = calendar();
    let planner = Planner::new(policy, &calendar);
    let span = match planner.span_of(limit, None) {
        Span::Calendar(d) => Span::Calendar(d + extra),
        Span::Working(d) => Span::Working(d + extra),
    };
    let due = planner.add(from, span, None);
    let marks = planner.marks(&planner.timing(from, due.value, matches!(span, Span::Working(_)), None));
    (due, marks)
}

#[test]
fn a_normal_case_dispatched_before_the_spring_festival() {
    // Expected instants computed by hand from the 2026 schedule (see the calendar crate's table).
    let policy = shipped();
    let (due, marks) = plan(&policy, bj("2026-02-13 17:00"), &Limit::WorkingDays(5), SignedDuration::ZERO);
    assert_eq!(marks.warning, bj("2026-02-26 11:00"), "70% of 40 working hours");
    assert_eq!(due.value, bj("2026-02-27 17:00"));
    assert_eq!(marks.yellow_card, due.value);
    assert_eq!(marks.red_card, bj("2026-03-05 17:00"), "twice the limit, across the working Saturday 02-28");
    assert!(due.fallback_years.is_empty());
    assert!(due.years.contains(&2026));

    let (extended, _) = plan(&policy, bj("2026-02-13 17:00"), &Limit::WorkingDays(5), SignedDuration::from_hours(16));
    // 16 more working hours after Fri 02-27 17:00: 1 h that Friday, 8 h on the
    // working Saturday 02-28, 7 h on Monday 03-02.
    assert_eq!(extended.value, bj("2026-03-02 17:00"), "2 approved working days on top");
}

#[test]
fn a_critical_clock_runs_through_the_holiday_night() {
    let policy = shipped();
    let thirty_minutes = Limit::Calendar(SignedDuration::from_mins(30));
    let (due, marks) = plan(&policy, bj("2026-02-15 03:00"), &thirty_minutes, SignedDuration::ZERO);
    assert_eq!(marks.warning, bj("2026-02-15 03:21"));
    assert_eq!(due.value, bj("2026-02-15 03:30"));
    assert_eq!(marks.red_card, bj("2026-02-15 04:00"));
    assert!(due.years.is_empty(), "calendar time consults no calendar file");
}

#[test]
fn a_paused_clock_warns_at_its_share_of_running_time() {
    // 5 working days from Mon 03-02 08:00; on hold after 2 working days
    // (Tue 03-03 18:00) until Mon 03-09 08:00, so 3 working days remain.
    let policy = shipped();
    let calendar = calendar();
    let planner = Planner::new(&policy, &calendar);
    let first = planner.timing(bj("2026-03-02 08:00"), bj("2026-03-06 18:00"), true, None);
    assert_eq!(first.allowed, SignedDuration::from_hours(40));
    let left = planner.left_at(&first, bj("2026-03-03 18:00"));
    assert_eq!(left, SignedDuration::from_hours(24), "the hold keeps what was left");
    let due = planner.add(bj("2026-03-09 08:00"), Span::Working(left), None).value;
    assert_eq!(due, bj("2026-03-11 18:00"));
    let resumed = planner.moved(&first, due, Some((bj("2026-03-09 08:00"), left)));
    assert_eq!(
        (resumed.used_before, resumed.allowed),
        (SignedDuration::from_hours(16), SignedDuration::from_hours(40))
    );
    let marks = planner.marks(&resumed);
    // 70% of 40 h = 28 h; 16 h were used before the hold: 12 more working hours.
    assert_eq!(marks.warning, bj("2026-03-10 12:00"));
    assert_eq!(marks.yellow_card, bj("2026-03-11 18:00"), "at the deadline");
}

#[test]
fn a_route_overrides_limits_only_for_its_own_unit() {
    let policy = shipped();
    let (missing, grid) = (category("0802"), grid("990101001001001"));
    let police = policy.route(&missing, &grid).unwrap().unit.clone();
    let other = OrgCode::parse("unit.urban.990101").unwrap();
    let acknowledge = |unit| policy.clock_limit(Clock::Acknowledge, Some(Tier::Critical), &missing, &grid, unit);
    assert_eq!(acknowledge(Some(&police)), Limit::Calendar(SignedDuration::from_mins(15)));
    assert_eq!(acknowledge(None), Limit::Calendar(SignedDuration::from_mins(15)), "before dispatch: the route's");
    assert_eq!(acknowledge(Some(&other)), policy.limits(Tier::Critical, None).acknowledge, "another unit: the tier's");
    assert_eq!(policy.clock_limit(Clock::Register, None, &missing, &grid, None), policy.register);
}

#[test]
fn limits_parse() {
    assert_eq!(Limit::parse("30 minutes"), Ok(Limit::Calendar(SignedDuration::from_mins(30))));
    assert_eq!(Limit::parse("1 hour"), Ok(Limit::Calendar(SignedDuration::from_hours(1))));
    assert_eq!(Limit::parse("2 days"), Ok(Limit::Calendar(SignedDuration::from_hours(48))));
    assert_eq!(Limit::parse("1 working hour"), Ok(Limit::WorkingHours(1)));
    assert_eq!(Limit::parse("15 working days"), Ok(Limit::WorkingDays(15)));
    for bad in ["", "5", "five working days", "0 working days", "5 workdays", "-1 hours"] {
        assert!(Limit::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_malformed_policy_names_the_line_and_the_problem() {
    let good = std::fs::read_to_string(root().join("deploy/policy/policy.toml")).unwrap();
    let problem = |text: &str| match Policy::parse(Path::new("policy.toml"), text) {
        Err(PolicyError::Invalid { line, problem, .. }) => format!("line {line}: {problem}"),
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("a bad policy was accepted"),
    };
    let line_of = |needle: &str| good.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let text = good.replace("resolve = \"5 working days\"", "resolve = \"5 workdays\"");
    assert_eq!(
        problem(&text),
        format!(
            "line {}: \"5 workdays\" is not a limit like \"30 minutes\", \"6 hours\", \"2 days\", \"4 working hours\" or \"5 working days\" (1 to 99999 of them)",
            line_of("resolve = \"5 working days\"")
        )
    );

    let text = good.replace("tier = \"CRITICAL\"\nacknowledge", "tier = \"SOON\"\nacknowledge");
    assert!(
        problem(&text).ends_with("\"SOON\" is not a tier: CRITICAL, URGENT, NORMAL or COMPLEX"),
        "{}",
        problem(&text)
    );

    let text = good.replace("[tiers.COMPLEX]", "[tiers.LATER]");
    assert!(problem(&text).contains("\"LATER\" is not a tier"));

    let text = format!("{good}\n[[routes]]\ncategory = \"01\"\nregion = \"990101\"\nunit = \"unit.other\"\n");
    let first = line_of("category = \"01\"") - 1;
    assert!(
        problem(&text).ends_with(&format!("covers the same category and region as the route on line {first}")),
        "{}",
        problem(&text)
    );

    let text = good.replace("warning_percent = 70", "warning_percent = 170");
    assert!(problem(&text).contains("0 < warning_percent < yellow_card_percent <= red_card_percent"));

    let text =
        good.replace("default = [\"08:00-12:00\", \"14:00-18:00\"]", "default = [\"08:00-12:00\", \"11:00-18:00\"]");
    assert_eq!(
        problem(&text),
        format!("line {}: periods must be in order and must not overlap: \"11:00-18:00\"", line_of("default = ["))
    );

    let text = good.replace("version = \"demo-2026.1\"", "version = \"demo\"\nsurprise = 1");
    assert!(
        problem(&text).starts_with(&format!("line {}: unknown field `surprise`", line_of("version =") + 1)),
        "{}",
        problem(&text)
    );

    let text = good.replace("red_card = \"county\"", "red_card = \"city\"");
    assert_eq!(
        problem(&text),
        format!("line {}: \"city\" is not a level: township or county", line_of("red_card = \"county\""))
    );

    let text = good.replace("category = \"0801\"", "category = \"8\"");
    assert!(problem(&text).contains("must be a 2-digit major or a 4-digit code"));
}

#[test]
fn a_retention_of_contact_details_is_read_and_checked() {
    let good = std::fs::read_to_string(root().join("deploy/policy/policy.toml")).unwrap();
    assert_eq!(Policy::parse(Path::new("p.toml"), &good).unwrap().retention, None);
    let with = |days: &str| format!("{good}\n[retention]\ncontact_days = {days}\n");
    let policy = Policy::parse(Path::new("p.toml"), &with("180")).unwrap();
    assert_eq!(policy.retention, Some(Retention { contact_days: 180 }));
    let last_line = with("0").lines().count();
    for days in ["0", "3651", "-5"] {
        match Policy::parse(Path::new("p.toml"), &with(days)) {
            Err(PolicyError::Invalid { line, problem, .. }) => {
                assert_eq!(line, last_line, "{problem}");
                assert!(problem.contains("contact_days must be 1-3650 days"), "{problem}");
            }
            other => panic!("{days}: {other:?}"),
        }
    }
}

#[test]
fn limits_and_thresholds_are_bounded_so_deadline_arithmetic_cannot_overflow() {
    assert!(Limit::parse("99999 working days").is_ok());
    for text in ["100000 days", "4000000000 working days", "0 hours"] {
        assert!(Limit::parse(text).is_err(), "{text}");
    }
    let good = std::fs::read_to_string(root().join("deploy/policy/policy.toml")).unwrap();
    let huge = good.replace("red_card_percent = 200", "red_card_percent = 4000000000");
    assert_ne!(huge, good, "the shipped policy sets red_card_percent = 200");
    assert!(Policy::parse(Path::new("p.toml"), &huge).is_err());
}

#[test]
fn the_units_offered_for_a_case_start_with_its_route_and_stay_in_its_region() {
    let policy = shipped();
    let units: Vec<String> =
        policy.units_for(&category("0204"), &grid("990101001001001")).iter().map(|u| u.to_string()).collect();
    assert_eq!(units[0], "unit.property.990101001", "the route for leaking roofs in town comes first");
    assert!(units.contains(&"unit.utilities.990101".to_owned()) && units.contains(&"unit.urban.990101".to_owned()));
    let mut unique = units.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), units.len(), "each unit once: {units:?}");
    // The town's property company is routed to only in its own township.
    let elsewhere: Vec<String> =
        policy.units_for(&category("0204"), &grid("990101101001001")).iter().map(|u| u.to_string()).collect();
    assert!(!elsewhere.contains(&"unit.property.990101001".to_owned()), "{elsewhere:?}");
}

#[test]
fn residents_reply_limits_are_read_per_kind_and_default_when_left_out() {
    use gridcase_domain::RequestKind;
    let shipped =
        super::Policy::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy/policy.toml"))
            .unwrap();
    assert_eq!(shipped.residents, super::Residents::default(), "the shipped file says the defaults");
    let base = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy/policy.toml"),
    )
    .unwrap();
    let without: String = base.split("[residents]").next().unwrap().to_owned()
        + "[working_hours]"
        + base.split("[working_hours]").nth(1).unwrap();
    let policy = super::Policy::parse(std::path::Path::new("p.toml"), &without).unwrap();
    assert_eq!(policy.residents.limit(Clock::Reply, Some(RequestKind::Complaint)), Some(Limit::WorkingDays(13)));
    assert_eq!(policy.residents.limit(Clock::Callback, None), Some(Limit::WorkingDays(5)));
    assert_eq!(policy.residents.limit(Clock::Resolve, None), None);
    let changed = base.replace("COMPLAINT = \"13 working days\"", "COMPLAINT = \"10 working days\"");
    let policy = super::Policy::parse(std::path::Path::new("p.toml"), &changed).unwrap();
    assert_eq!(policy.residents.limit(Clock::Reply, Some(RequestKind::Complaint)), Some(Limit::WorkingDays(10)));
    let bad = base.replace("PRAISE = ", "THANKS = ");
    let error = super::Policy::parse(std::path::Path::new("p.toml"), &bad).unwrap_err().to_string();
    assert!(error.contains("\"THANKS\" is not a kind of request"), "{error}");
    let line = base.lines().position(|l| l.starts_with("PRAISE")).unwrap() + 1;
    assert!(error.contains(&format!("line {line}")), "{error}");
}
