use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::civil::DateTime;
use proptest::prelude::*;

use super::*;

fn shipped() -> Calendar {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/calendar");
    Calendar::new(Arc::new(YearTable::load_dir(&dir).expect("shipped calendar loads")), WorkingHours::default())
}

/// Beijing civil time "YYYY-MM-DD HH:MM" as an instant.
fn bj(text: &str) -> Timestamp {
    let civil: DateTime = text.replace(' ', "T").parse().unwrap();
    TimeZone::get(TIME_ZONE).unwrap().to_ambiguous_timestamp(civil).compatible().unwrap()
}

fn show(at: Timestamp) -> String {
    at.to_zoned(TimeZone::get(TIME_ZONE).unwrap()).strftime("%Y-%m-%d %H:%M").to_string()
}

/// Expected values computed independently (a minute-by-minute walk over the
/// State Council schedules, outside this crate), not by the code under test.
const CASES: &[(&str, i64, &str, &str)] = &[
    ("2026-03-06 17:00", 480, "2026-03-09 17:00", "1 working day from a normal Friday 17:00"),
    ("2026-03-06 20:00", 480, "2026-03-09 18:00", "1 working day from Friday 20:00"),
    ("2026-02-13 17:00", 480, "2026-02-14 17:00", "Saturday 02-14 is a working day"),
    ("2026-02-13 17:00", 2400, "2026-02-27 17:00", "NORMAL resolve across the Spring Festival"),
    ("2026-02-13 17:00", 7200, "2026-03-12 17:00", "COMPLEX resolve across Spring Festival and Saturday 02-28"),
    ("2026-02-12 10:00", 960, "2026-02-14 10:00", "2 working days into the working Saturday"),
    ("2026-09-18 09:00", 2400, "2026-09-24 09:00", "Sunday 09-20 works, Mid-Autumn after"),
    ("2026-09-30 17:00", 960, "2026-10-09 17:00", "across the National Day week"),
    ("2026-10-09 09:00", 960, "2026-10-12 09:00", "Saturday 10-10 is a working day"),
    ("2026-03-10 11:00", 120, "2026-03-10 15:00", "the lunch break does not count"),
    ("2026-03-06 17:59", 60, "2026-03-09 08:59", "filed 17:59 on a Friday"),
    ("2026-03-10 08:00", 240, "2026-03-10 12:00", "lands exactly on 12:00: that closing time"),
    ("2026-03-10 14:00", 240, "2026-03-10 18:00", "lands exactly on 18:00"),
    ("2026-03-10 06:00", 60, "2026-03-10 09:00", "started before opening"),
    ("2025-12-31 17:00", 960, "2026-01-05 17:00", "year boundary: 2026-01-01..03 off, Sunday 01-04 works"),
    ("2025-01-24 17:00", 480, "2025-01-26 17:00", "2025: Sunday 01-26 works before the Spring Festival"),
    ("2025-09-30 17:00", 480, "2025-10-09 17:00", "2025: National Day and Mid-Autumn, 8 days off"),
];

#[test]
fn deadlines_match_an_independent_calculation_from_the_official_calendar() {
    let calendar = shipped();
    for (start, minutes, expected, why) in CASES {
        let computed = calendar.add_working(bj(start), SignedDuration::from_mins(*minutes));
        assert_eq!(show(computed.value), *expected, "{why}: {start} + {minutes} working minutes");
        assert!(!computed.used_fallback(), "{why}: 2025 and 2026 have files");
        let back = calendar.working_elapsed(bj(start), computed.value).value;
        assert_eq!(back, SignedDuration::from_mins(*minutes), "{why}: elapsed until the deadline");
    }
}

#[test]
fn working_days_and_hours_helpers() {
    let calendar = shipped();
    assert_eq!(show(calendar.add_working_days(bj("2026-03-06 17:00"), 1).value), "2026-03-09 17:00");
    assert_eq!(show(calendar.add_working_hours(bj("2026-03-06 17:00"), 4).value), "2026-03-09 11:00");
    assert_eq!(calendar.add_working(bj("2026-03-07 10:00"), SignedDuration::ZERO).value, bj("2026-03-07 10:00"));
}

#[test]
fn a_year_without_a_file_falls_back_to_monday_to_friday_and_says_so() {
    let calendar = shipped();
    // 2027-01-01 is a Friday; with no 2027 file it counts as a working day.
    let computed = calendar.add_working_days(bj("2026-12-31 17:00"), 2);
    assert_eq!(show(computed.value), "2027-01-04 17:00");
    assert_eq!(computed.fallback_years.iter().copied().collect::<Vec<_>>(), vec![2027]);
    assert!(computed.years.contains(&2026));
    assert_eq!(calendar.day_kind(jiff::civil::date(2027, 1, 1)), DayKind { working: true, fallback: true });
    assert!(calendar.describe(&computed.years, &computed.fallback_years).contains("2027:missing(mon-fri)"));
}

#[test]
fn day_kinds_follow_the_rule_of_the_brief() {
    let calendar = shipped();
    let kind = |y, m, d| calendar.day_kind(jiff::civil::date(y, m, d)).working;
    assert!(kind(2026, 2, 14), "working Saturday");
    assert!(!kind(2026, 2, 16), "Spring Festival Monday");
    assert!(!kind(2026, 3, 7), "ordinary Saturday");
    assert!(kind(2026, 3, 9), "ordinary Monday");
    assert!(!kind(2026, 10, 1), "National Day");
    assert!(kind(2026, 10, 10), "working Saturday");
}

#[test]
fn elapsed_is_working_time_only() {
    let calendar = shipped();
    let elapsed = |a: &str, b: &str| calendar.working_elapsed(bj(a), bj(b)).value;
    assert_eq!(elapsed("2026-03-06 17:00", "2026-03-09 17:00"), SignedDuration::from_hours(8));
    assert_eq!(elapsed("2026-03-10 11:30", "2026-03-10 14:30"), SignedDuration::from_hours(1));
    assert_eq!(elapsed("2026-02-15 00:00", "2026-02-23 23:59"), SignedDuration::ZERO, "the whole Spring Festival");
    assert_eq!(elapsed("2026-03-09 17:00", "2026-03-06 17:00"), SignedDuration::from_hours(-8));
}

#[test]
fn other_working_hours() {
    let around = shipped().with_hours(WorkingHours::around_the_clock());
    // Round-the-clock hours on a Friday night still skip the weekend (the
    // day calendar applies); they only remove the lunch break and evenings.
    assert_eq!(show(around.add_working_hours(bj("2026-03-06 20:00"), 6).value), "2026-03-09 02:00");
}

#[test]
fn year_files_are_validated_with_line_numbers() {
    let path = Path::new("2026.toml");
    let problem = |text: &str| match YearFile::parse(path, text) {
        Err(CalendarError::Invalid { line, problem, .. }) => format!("line {line}: {problem}"),
        other => panic!("expected an error, got {other:?}"),
    };
    let head = "year = 2026\nsource = \"test\"\n";
    assert_eq!(
        problem(&format!("{head}holidays = [\n  \"2026-13-01\",\n]\n")),
        "line 4: \"2026-13-01\" is not a date like 2026-10-01"
    );
    assert_eq!(problem(&format!("{head}holidays = [\"2025-10-01\"]\n")), "line 3: 2025-10-01 is not in 2026");
    assert_eq!(
        problem(&format!("{head}working_weekends = [\"2026-02-13\"]\n")),
        "line 3: 2026-02-13 is a Friday, not a weekend day"
    );
    assert_eq!(
        problem(&format!("{head}holidays = [\"2026-02-14\"]\nworking_weekends = [\"2026-02-14\"]\n")),
        "line 4: 2026-02-14 is listed both as a holiday and a working day"
    );
    assert_eq!(
        problem(&format!("{head}holidays = [\"2026-02-23..2026-02-15\"]\n")),
        "line 3: range \"2026-02-23..2026-02-15\" ends before it starts"
    );
    assert!(problem("year = 2026\nsource = \"x\"\nholiday = []\n").starts_with("line 3: unknown field `holiday`"));
}

#[test]
fn working_hours_are_validated() {
    assert_eq!(WorkingHours::parse(&["08:00-12:00", "14:00-18:00"]).unwrap(), WorkingHours::default());
    assert_eq!(WorkingHours::parse(&["00:00-24:00"]).unwrap().day_length(), SignedDuration::from_hours(24));
    assert!(matches!(WorkingHours::parse(&["8-12"]), Err(HoursError::Malformed(_))));
    // Hours whose minutes overflow are refused (a panic before; found by fuzzing).
    assert!(matches!(WorkingHours::parse(&["00:00-2174:00"]), Err(HoursError::Malformed(_))));
    assert!(matches!(WorkingHours::parse(&["65535:59-08:00"]), Err(HoursError::Malformed(_))));
    assert!(matches!(WorkingHours::parse(&["12:00-08:00"]), Err(HoursError::Empty(_))));
    assert!(matches!(WorkingHours::parse(&["08:00-12:00", "11:00-13:00"]), Err(HoursError::Overlap(_))));
    assert!(matches!(WorkingHours::parse::<&str>(&[]), Err(HoursError::None)));
}

// ---- properties ---------------------------------------------------------

/// A brute-force oracle: walk minute by minute and count working minutes.
fn oracle_add(calendar: &Calendar, start: Timestamp, minutes: i64) -> Timestamp {
    let tz = TimeZone::get(TIME_ZONE).unwrap();
    let mut t = start.to_zoned(tz.clone()).datetime();
    let mut left = minutes;
    let opening = |t: DateTime| {
        let m = t.hour() as i64 * 60 + t.minute() as i64;
        calendar.day_kind(t.date()).working && ((480..720).contains(&m) || (840..1080).contains(&m))
    };
    while left > 0 {
        if opening(t) {
            left -= 1;
        }
        t += SignedDuration::from_mins(1);
    }
    tz.to_ambiguous_timestamp(t).compatible().unwrap()
}

fn instant_2025_2027() -> impl Strategy<Value = Timestamp> {
    // Whole minutes between 2025-01-01 and 2027-06-30.
    let start = bj("2025-01-01 00:00").as_second();
    let end = bj("2027-06-30 00:00").as_second();
    (start / 60..end / 60).prop_map(|minute| Timestamp::from_second(minute * 60).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_the_minute_by_minute_oracle(start in instant_2025_2027(), minutes in 1i64..(3 * 480)) {
        let calendar = shipped();
        prop_assert_eq!(calendar.add_working(start, SignedDuration::from_mins(minutes)).value, oracle_add(&calendar, start, minutes));
    }

    #[test]
    fn adding_is_monotonic(start in instant_2025_2027(), a in 0i64..20_000, b in 0i64..20_000) {
        let calendar = shipped();
        let (small, large) = if a <= b { (a, b) } else { (b, a) };
        let add = |m| calendar.add_working(start, SignedDuration::from_mins(m)).value;
        prop_assert!(add(small) <= add(large));
        prop_assert!(add(small) >= start);
    }

    #[test]
    fn adding_a_then_b_equals_adding_a_plus_b(start in instant_2025_2027(), a in 0i64..10_000, b in 0i64..10_000) {
        let calendar = shipped();
        let add = |from, m| calendar.add_working(from, SignedDuration::from_mins(m)).value;
        prop_assert_eq!(add(add(start, a), b), add(start, a + b));
    }

    #[test]
    fn working_time_until_the_deadline_is_what_was_added(start in instant_2025_2027(), minutes in 0i64..20_000) {
        let calendar = shipped();
        let amount = SignedDuration::from_mins(minutes);
        let due = calendar.add_working(start, amount).value;
        prop_assert_eq!(calendar.working_elapsed(start, due).value, amount);
    }
}

#[test]
fn the_end_of_a_day_is_the_next_midnight_in_beijing() {
    let calendar = shipped();
    for (at, end) in [
        ("2026-03-06 00:00", "2026-03-07 00:00"),
        ("2026-03-06 23:59", "2026-03-07 00:00"),
        ("2026-12-31 08:00", "2027-01-01 00:00"),
    ] {
        assert_eq!(show(calendar.end_of_day(bj(at))), end, "end of the day of {at}");
    }
    // 16:30 UTC is already the next day in Beijing (UTC+8).
    let late_utc: Timestamp = "2026-03-06T16:30:00Z".parse().unwrap();
    assert_eq!(show(calendar.end_of_day(late_utc)), "2026-03-08 00:00");
}
