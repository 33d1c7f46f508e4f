//! What single events do to a case row and the ledgers.

use gridcase_domain::{
    ActorRole, CaseId, CategoryCode, Command, Deadlines, Filing, GridCode, Location, OrgCode, Text, Tier,
};
use gridcase_envelope::schema::{Actor, EventMeta};
use jiff::{SignedDuration, Timestamp};

use super::*;

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

struct Walk {
    row: Option<CaseRow>,
    changes: Vec<LedgerChange>,
    sequence: u64,
}

impl Walk {
    fn new() -> Self {
        Walk { row: None, changes: vec![], sequence: 0 }
    }

    fn act(&mut self, command: Command, at: Timestamp, person: &str) {
        let state = self.row.as_ref().map(|r| &r.case);
        let event = gridcase_domain::decide(state, &command, at).unwrap();
        {
            self.sequence += 1;
            let case_id = match &event {
                Event::Filed(f) => f.case_id,
                _ => self.row.as_ref().unwrap().case.id,
            };
            let meta = EventMeta {
                event_id: uuid::Uuid::now_v7(),
                case_id,
                case_version: self.sequence,
                occurred_at: at,
                actor: Actor {
                    person: person.into(),
                    role: ActorRole::GridWorker,
                    organisation: "cc-990101001".into(),
                },
                command_id: None,
            };
            let stored = StoredEvent::chained(&event, meta, None);
            let (row, changes) = apply(self.row.take(), &stored, &event, self.sequence);
            self.row = row;
            self.changes.extend(changes);
        }
    }

    fn total(&self, kind: OrgKind, measure: Measure) -> BTreeMap<(String, String), i64> {
        let mut totals = BTreeMap::new();
        for (key, m, amount) in &self.changes {
            if key.kind == kind && *m == measure {
                *totals.entry((key.org.clone(), key.day.to_string())).or_insert(0) += amount;
            }
        }
        totals.retain(|_, v| *v != 0);
        totals
    }
}

use std::collections::BTreeMap;

fn file(at: Timestamp) -> Command {
    Command::File(Filing {
        case_id: CaseId::new_v7(),
        grid: GridCode::parse("990101001001001").unwrap(),
        category: CategoryCode::parse("0101").unwrap(),
        description: Text::reason("垃圾").unwrap(),
        location: Location::from_degrees(30.27, 120.15, None).unwrap(),
        reported_at: at,
        severity_hint: None,
        contact: None,
        attachments: vec![],
        outside_grid: None,
        channel: Default::default(),
        request_kind: None,
        reference: None,
    })
}

fn dispatch(unit: &str, resolve_due: Timestamp) -> Command {
    Command::Dispatch {
        unit: OrgCode::parse(unit).unwrap(),
        deadlines: Deadlines { acknowledge_due: resolve_due, resolve_due, basis: None },
    }
}

fn entry(org: &str, day: &str, n: i64) -> ((String, String), i64) {
    ((org.to_owned(), day.to_owned()), n)
}

#[test]
fn days_are_counted_in_beijing_time() {
    // 2026-03-09 23:30 UTC is 03-10 07:30 in Beijing.
    assert_eq!(day_of("2026-03-09T23:30:00Z".parse().unwrap()).to_string(), "2026-03-10");
}

#[test]
fn a_return_counts_for_the_unit_that_returned_and_the_due_day_follows_the_deadline() {
    let mut walk = Walk::new();
    let monday = bj("2026-03-09 09:00");
    walk.act(file(monday), monday, "gw-1");
    walk.act(Command::Register { tier: Tier::Normal, note: None, policy: None }, monday, "cc");
    walk.act(dispatch("unit.urban.990101", bj("2026-03-16 09:00")), monday, "cc");
    assert_eq!(walk.total(OrgKind::Unit, Measure::Due), BTreeMap::from([entry("unit.urban.990101", "2026-03-16", 1)]));
    walk.act(Command::Return { reason: Text::reason("派错").unwrap() }, bj("2026-03-09 10:00"), "u");
    assert_eq!(
        walk.total(OrgKind::Unit, Measure::Returned),
        BTreeMap::from([entry("unit.urban.990101", "2026-03-09", 1)])
    );
    assert!(walk.total(OrgKind::Unit, Measure::Due).is_empty(), "a returned case is no longer due for that unit");
    walk.act(dispatch("unit.property.990101001", bj("2026-03-18 09:00")), bj("2026-03-09 11:00"), "cc");
    assert_eq!(
        walk.total(OrgKind::Township, Measure::Due),
        BTreeMap::from([entry("990101001", "2026-03-18", 1)]),
        "due once, on the new deadline's day"
    );
    assert_eq!(walk.total(OrgKind::Worker, Measure::Filed), BTreeMap::from([entry("gw-1", "2026-03-09", 1)]));
}

#[test]
fn closure_is_on_time_when_resolved_by_the_deadline_and_times_are_measured() {
    let mut walk = Walk::new();
    let monday = bj("2026-03-09 09:00");
    walk.act(file(monday), monday, "gw-1");
    walk.act(Command::Register { tier: Tier::Normal, note: None, policy: None }, monday, "cc");
    walk.act(dispatch("unit.urban.990101", bj("2026-03-09 17:00")), monday, "cc");
    walk.act(Command::Acknowledge, monday + SignedDuration::from_mins(30), "u");
    walk.act(Command::Resolve { summary: Text::reason("好").unwrap(), evidence: vec![] }, bj("2026-03-09 16:00"), "u");
    walk.act(Command::Verify { passed: true, reason: None }, bj("2026-03-10 10:00"), "cc");
    let day = |m| walk.total(OrgKind::Township, m);
    assert_eq!(day(Measure::ClosedOnTime), BTreeMap::from([entry("990101001", "2026-03-10", 1)]));
    assert_eq!(day(Measure::AcknowledgeSeconds), BTreeMap::from([entry("990101001", "2026-03-09", 1800)]));
    assert_eq!(day(Measure::ResolveSeconds), BTreeMap::from([entry("990101001", "2026-03-09", 7 * 3600)]));
    assert_eq!(walk.row.as_ref().unwrap().closed_at, Some(bj("2026-03-10 10:00")));
}

#[test]
fn a_late_resolution_closes_but_not_on_time() {
    let mut walk = Walk::new();
    let monday = bj("2026-03-09 09:00");
    walk.act(file(monday), monday, "gw-1");
    walk.act(Command::Register { tier: Tier::Normal, note: None, policy: None }, monday, "cc");
    walk.act(dispatch("unit.urban.990101", bj("2026-03-09 12:00")), monday, "cc");
    walk.act(Command::Acknowledge, monday, "u");
    walk.act(Command::Resolve { summary: Text::reason("好").unwrap(), evidence: vec![] }, bj("2026-03-09 15:00"), "u");
    walk.act(Command::Verify { passed: true, reason: None }, bj("2026-03-09 16:00"), "cc");
    assert_eq!(walk.total(OrgKind::Township, Measure::Closed).len(), 1);
    assert!(walk.total(OrgKind::Township, Measure::ClosedOnTime).is_empty());
}

#[test]
fn a_deadline_passing_counts_on_the_day_it_passed_for_every_organisation_and_a_warning_does_not() {
    let mut walk = Walk::new();
    let monday = bj("2026-03-09 09:00");
    let due = bj("2026-03-10 09:00");
    walk.act(file(monday), monday, "gw-1");
    walk.act(Command::Register { tier: Tier::Normal, note: None, policy: None }, monday, "cc");
    walk.act(dispatch("unit.urban.990101", due), monday, "cc");
    let mark = |mark| Command::MarkClock { clock: Clock::Acknowledge, mark, due };
    walk.act(mark(ClockMark::Warning), bj("2026-03-10 07:00"), "dispatcher");
    assert!(walk.total(OrgKind::Township, Measure::TurnedOverdue).is_empty(), "a warning is not overdue");
    walk.act(mark(ClockMark::Overdue), due, "dispatcher");
    for (kind, org) in [
        (OrgKind::Township, "990101001"),
        (OrgKind::Village, "990101001001"),
        (OrgKind::Grid, "990101001001001"),
        (OrgKind::Unit, "unit.urban.990101"),
    ] {
        assert_eq!(walk.total(kind, Measure::TurnedOverdue), BTreeMap::from([entry(org, "2026-03-10", 1)]), "{kind:?}");
    }
}
