//! The dispatcher end to end: cases filed through intake on a real
//! nats-server, dispatched by one or two dispatcher instances, with a clock
//! the test moves by hand.

use std::sync::Arc;

use gridcase_domain::{ActorRole, CaseId, Clock, ClockMark, Command, Event, Supervision, Text, Tier};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, StreamSettings};
use gridcase_process::ManualTimeSource;
use gridcase_tests::act;
use gridcase_tests::fixtures::{as_worker, filing_at, intake_client};
use gridcase_tests::{NatsServer, TestDispatcher, TestIntake};
use jiff::{SignedDuration, Timestamp};

const GRID: &str = "990101001001001";

fn bj(text: &str) -> Timestamp {
    format!("{}:00+08:00[Asia/Shanghai]", text.replace(' ', "T")).parse::<jiff::Zoned>().unwrap().timestamp()
}

struct System {
    nats: NatsServer,
    clock: ManualTimeSource,
    intake: TestIntake,
    log: EventLog,
}

async fn system(at: &str) -> System {
    let nats = NatsServer::start();
    let clock = ManualTimeSource::new(bj(at));
    let intake = TestIntake::spawn_with(TestIntake::config(&nats.url()), Arc::new(clock.clone())).await;
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
    System { nats, clock, intake, log }
}

impl System {
    async fn dispatcher(&self) -> TestDispatcher {
        TestDispatcher::spawn_with(TestDispatcher::config(&self.nats.url()), Arc::new(self.clock.clone())).await
    }

    async fn file(&self, category: &str, hint: Option<Tier>) -> CaseSubject {
        let case_id = CaseId::new_v7();
        let mut request = filing_at(case_id, category, self.clock.now_for_tests());
        request.severity_hint = hint.map(|t| match t {
            Tier::Critical => 1,
            Tier::Urgent => 2,
            Tier::Normal => 3,
            Tier::Complex => 4,
        });
        let mut client = intake_client(self.intake.endpoint()).await;
        client.file_case(as_worker(request)).await.expect("filed");
        act::subject(GRID, case_id)
    }

    /// Wait (bounded) until the case's history satisfies `done`.
    async fn until(
        &self,
        subject: &CaseSubject,
        what: &str,
        done: impl Fn(&[(StoredEvent, Event)]) -> bool,
    ) -> Vec<(StoredEvent, Event)> {
        let done = &done;
        gridcase_tests::eventually(what, || async move { done(&act::events(&self.log, subject).await) }).await;
        act::events(&self.log, subject).await
    }

    async fn until_kind(&self, subject: &CaseSubject, kind: &str) -> Vec<(StoredEvent, Event)> {
        self.until(subject, kind, |events| events.iter().any(|(_, e)| e.kind() == kind)).await
    }
}

/// A dispatcher configuration whose policy is the shipped one with `from`
/// replaced by `to` (the file lives as long as the returned directory).
fn with_policy_changed(system: &System, from: &str, to: &str) -> (tempfile::TempDir, gridcase_dispatcher::Config) {
    let policy = std::fs::read_to_string(gridcase_tests::workspace_root().join("deploy/policy/policy.toml")).unwrap();
    assert!(policy.contains(from), "the shipped policy holds {from}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy.replace(from, to)).unwrap();
    let mut config = TestDispatcher::config(&system.nats.url());
    config.rules.policy = dir.path().join("policy.toml");
    (dir, config)
}

trait NowForTests {
    fn now_for_tests(&self) -> Timestamp;
}

impl NowForTests for ManualTimeSource {
    fn now_for_tests(&self) -> Timestamp {
        gridcase_process::TimeSource::now(self)
    }
}

fn kinds(events: &[(StoredEvent, Event)]) -> Vec<&'static str> {
    events.iter().map(|(_, e)| e.kind()).collect()
}

fn count(events: &[(StoredEvent, Event)], kind: &str) -> usize {
    events.iter().filter(|(_, e)| e.kind() == kind).count()
}

fn dispatched(events: &[(StoredEvent, Event)]) -> (String, Timestamp, Timestamp, gridcase_domain::DeadlineBasis) {
    events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Dispatched { unit, acknowledge_due, resolve_due, basis } => {
                Some((unit.to_string(), *acknowledge_due, *resolve_due, basis.clone().expect("basis recorded")))
            }
            _ => None,
        })
        .expect("a dispatch")
}

#[tokio::test]
async fn filed_cases_come_out_dispatched_with_deadlines_an_independent_calculation_confirms() {
    let system = system("2026-02-13 17:00").await; // Friday before the Spring Festival
    let _dispatcher = system.dispatcher().await;
    // Expected values from a minute-by-minute walk over the 2026 schedule
    // (see the calendar crate's table): Saturday 02-14 is a working day.
    let cases = [
        ("0202", None, Tier::Critical, "unit.utilities.990101", "2026-02-13 17:30", "2026-02-13 23:00"),
        ("0101", Some(Tier::Urgent), Tier::Urgent, "unit.urban.990101", "2026-02-13 18:00", "2026-02-14 11:00"),
        ("0101", None, Tier::Normal, "unit.urban.990101", "2026-02-14 17:00", "2026-02-27 17:00"),
        ("0701", None, Tier::Complex, "unit.urban.990101", "2026-02-14 17:00", "2026-03-12 17:00"),
        ("0204", None, Tier::Normal, "unit.property.990101001", "2026-02-14 17:00", "2026-02-27 17:00"),
    ];
    for (category, hint, tier, unit, ack, resolve) in cases {
        let subject = system.file(category, hint).await;
        let events = system.until_kind(&subject, "dispatched").await;
        assert_eq!(kinds(&events), ["filed", "registered", "dispatched"], "{category}");
        let Event::Registered { tier: registered, policy, .. } = &events[1].1 else { panic!() };
        assert_eq!(*registered, tier, "{category}");
        assert!(policy.as_deref().unwrap().starts_with("demo-2026.1@"));
        let (got_unit, got_ack, got_resolve, basis) = dispatched(&events);
        assert_eq!((got_unit.as_str(), got_ack, got_resolve), (unit, bj(ack), bj(resolve)), "{category} {tier}");
        assert!(!basis.fallback);
        assert_eq!(events[2].0.actor.role, ActorRole::System);
        gridcase_envelope::verify_chain(&events.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()).unwrap();
        // Registration and dispatch went out together: one atomic batch.
        let history = system.log.history(&subject).await.unwrap();
        let stream = system.log.context().get_stream("GRIDCASE_CASES").await.unwrap();
        let mut batch_ids = Vec::new();
        for positioned in &history[1..] {
            let message = stream.get_raw_message(positioned.stream_sequence).await.unwrap();
            batch_ids.push(message.headers.get("Nats-Batch-Id").map(|id| id.to_string()));
        }
        assert!(batch_ids[0].is_some() && batch_ids[0] == batch_ids[1], "{category}: {batch_ids:?}");
        assert_eq!(history[2].stream_sequence, history[1].stream_sequence + 1);
    }
}

#[tokio::test]
async fn a_one_minute_tier_makes_a_case_overdue_and_escalated_a_minute_later_untouched() {
    let system = system("2026-03-09 09:00").await;
    let (_dir, config) = with_policy_changed(&system, "acknowledge = \"30 minutes\"", "acknowledge = \"1 minute\"");
    let _dispatcher = TestDispatcher::spawn_with(config, Arc::new(system.clock.clone())).await;

    let subject = system.file("0201", Some(Tier::Critical)).await;
    let events = system.until_kind(&subject, "dispatched").await;
    assert_eq!(dispatched(&events).1, bj("2026-03-09 09:01"));
    assert_eq!(count(&events, "clock_marked"), 0);

    system.clock.advance(SignedDuration::from_secs(60));
    let events = system.until_kind(&subject, "supervised").await;
    assert_eq!(kinds(&events), ["filed", "registered", "dispatched", "clock_marked", "supervised"]);
    assert!(matches!(&events[3].1, Event::ClockMarked { clock: Clock::Acknowledge, mark: ClockMark::Overdue, .. }));
    let Event::Supervised { to, escalated_to, .. } = &events[4].1 else { panic!() };
    assert_eq!(*to, Supervision::YellowCard);
    assert_eq!(escalated_to.as_ref().unwrap().as_str(), "co-990101");
    assert!(events.iter().skip(1).all(|(stored, _)| stored.actor.role == ActorRole::System), "nobody touched it");
}

#[tokio::test]
async fn two_dispatchers_racing_take_every_step_once() {
    let system = system("2026-03-09 09:00").await;
    let (mut a, mut b) = (system.dispatcher().await, system.dispatcher().await);
    let mut subjects = Vec::new();
    for i in 0..24 {
        subjects.push(system.file(if i % 2 == 0 { "0101" } else { "0202" }, None).await);
    }
    for subject in &subjects {
        system.until_kind(subject, "dispatched").await;
    }
    // Past every acknowledge deadline: each case is marked overdue and carded once.
    system.clock.advance(SignedDuration::from_hours(30));
    for subject in &subjects {
        system.until_kind(subject, "supervised").await;
    }
    system.clock.advance(SignedDuration::from_secs(1));
    let now = gridcase_process::TimeSource::now(&system.clock);
    a.settled_at(now, &system.nats).await;
    b.settled_at(now, &system.nats).await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    for subject in &subjects {
        let events = act::events(&system.log, subject).await;
        assert_eq!(count(&events, "registered"), 1, "{:?}", kinds(&events));
        assert_eq!(count(&events, "dispatched"), 1, "{:?}", kinds(&events));
        let overdue_acks = events
            .iter()
            .filter(|(_, e)| {
                matches!(e, Event::ClockMarked { clock: Clock::Acknowledge, mark: ClockMark::Overdue, .. })
            })
            .count();
        assert_eq!(overdue_acks, 1, "{:?}", kinds(&events));
        let cards: Vec<Supervision> = events
            .iter()
            .filter_map(|(_, e)| if let Event::Supervised { to, .. } = e { Some(*to) } else { None })
            .collect();
        assert!(
            cards == [Supervision::YellowCard] || cards == [Supervision::YellowCard, Supervision::RedCard],
            "{cards:?}"
        );
    }
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_breach_loses_and_doubles_no_timer() {
    let system = system("2026-03-09 09:00").await;
    let first = system.dispatcher().await;
    let subject = system.file("0101", None).await; // NORMAL: acknowledge by Tue 09:00
    system.until_kind(&subject, "dispatched").await;
    system.clock.set(bj("2026-03-09 16:36")); // the 70% warning
    system.until_kind(&subject, "clock_marked").await;
    first.kill(); // crash

    system.clock.set(bj("2026-03-10 09:30")); // the deadline passes while no dispatcher runs
    let second = system.dispatcher().await;
    let events = system.until_kind(&subject, "supervised").await;
    system.clock.set(bj("2026-03-10 10:00"));
    let mut second = second;
    second.settled_at(bj("2026-03-10 10:00"), &system.nats).await;
    second.stop().await.unwrap();
    let mut third = system.dispatcher().await; // and once more, cleanly
    third.settled_at(bj("2026-03-10 10:00"), &system.nats).await;
    third.stop().await.unwrap();

    let after = act::events(&system.log, &subject).await;
    assert_eq!(kinds(&after), kinds(&events), "nothing was added by restarts");
    assert_eq!(kinds(&after), ["filed", "registered", "dispatched", "clock_marked", "clock_marked", "supervised"]);
    let marks: Vec<ClockMark> = after
        .iter()
        .filter_map(|(_, e)| if let Event::ClockMarked { mark, .. } = e { Some(*mark) } else { None })
        .collect();
    assert_eq!(marks, [ClockMark::Warning, ClockMark::Overdue]);
}

#[tokio::test]
async fn killing_the_dispatcher_repeatedly_during_a_load_changes_nothing_in_the_final_history() {
    let system = system("2026-03-09 09:00").await;
    let mut subjects = Vec::new();
    let mut dispatcher = system.dispatcher().await;
    for round in 0..4 {
        for i in 0..10 {
            subjects.push(system.file(if (round + i) % 3 == 0 { "0202" } else { "0101" }, None).await);
        }
        dispatcher.kill();
        dispatcher = system.dispatcher().await;
    }
    for subject in &subjects {
        let events = system.until_kind(subject, "dispatched").await;
        assert_eq!(kinds(&events), ["filed", "registered", "dispatched"]);
    }
    dispatcher.stop().await.unwrap();
}

#[tokio::test]
async fn an_unrouted_case_waits_for_manual_registration_visibly() {
    let system = system("2026-03-09 09:00").await;
    let _dispatcher = system.dispatcher().await;
    let subject = system.file("0901", None).await; // suggestions: no route, registered by hand
    let events = system.until_kind(&subject, "deadline_set").await;
    assert_eq!(kinds(&events), ["filed", "progress_added", "deadline_set"]);
    let Event::ProgressAdded { note, .. } = &events[1].1 else { panic!() };
    assert!(note.as_str().starts_with("等待人工立案"), "{note}");
    let Event::DeadlineSet { clock, due, .. } = &events[2].1 else { panic!() };
    assert_eq!((*clock, *due), (Clock::Register, bj("2026-03-10 09:00")));
}

#[tokio::test]
async fn extensions_and_holds_move_the_resolve_deadline() {
    let system = system("2026-03-02 09:00").await;
    let _dispatcher = system.dispatcher().await;
    let subject = system.file("0101", None).await;
    let events = system.until_kind(&subject, "dispatched").await;
    assert_eq!(dispatched(&events).2, bj("2026-03-09 09:00"));
    let unit = "unit.urban.990101";
    let now = gridcase_process::TimeSource::now(&system.clock);
    act::command(&system.log, &subject, Command::Acknowledge, ActorRole::HandlingUnit, unit, now).await.unwrap();
    let reason = |s: &str| Text::reason(s).unwrap();
    act::command(
        &system.log,
        &subject,
        Command::RequestExtension { working_days: 3, reason: reason("需采购材料") },
        ActorRole::HandlingUnit,
        unit,
        now,
    )
    .await
    .unwrap();
    act::command(
        &system.log,
        &subject,
        Command::DecideExtension { approved_working_days: Some(2), reason: None },
        ActorRole::CommandCentre,
        "cc-990101001",
        now,
    )
    .await
    .unwrap();
    let events = system.until_kind(&subject, "deadline_set").await;
    let Event::DeadlineSet { clock, due, basis } = &events.last().unwrap().1 else { panic!() };
    assert_eq!((*clock, *due), (Clock::Resolve, bj("2026-03-11 09:00")), "2 more working days");
    assert!(basis.as_ref().unwrap().policy.starts_with("demo-2026.1@"));

    system.clock.set(bj("2026-03-03 09:00"));
    let now = bj("2026-03-03 09:00");
    act::command(
        &system.log,
        &subject,
        Command::RequestHold { reason: reason("雨季无法施工") },
        ActorRole::HandlingUnit,
        unit,
        now,
    )
    .await
    .unwrap();
    act::command(
        &system.log,
        &subject,
        Command::DecideHold { approve: true, reason: None },
        ActorRole::CommandCentre,
        "cc-990101001",
        now,
    )
    .await
    .unwrap();
    system.clock.set(bj("2026-03-23 09:00"));
    act::command(
        &system.log,
        &subject,
        Command::Resume,
        ActorRole::CommandCentre,
        "cc-990101001",
        bj("2026-03-23 09:00"),
    )
    .await
    .unwrap();
    let events = system.until(&subject, "a second deadline_set", |e| count(e, "deadline_set") == 2).await;
    let Event::DeadlineSet { due, .. } = &events.last().unwrap().1 else { panic!() };
    // 6 working days were left at the hold (Tue 03-03 09:00 → Wed 03-11 09:00).
    assert_eq!(*due, bj("2026-03-31 09:00"));
    assert_eq!(count(&events, "clock_marked"), 0, "no overdue while on hold");
}

#[tokio::test]
async fn a_malformed_policy_stops_start_up_with_the_line() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(gridcase_tests::workspace_root().join("deploy/policy/policy.toml"))
        .unwrap()
        .replace("resolve = \"15 working days\"", "resolve = \"fifteen days\"");
    let line = policy.lines().position(|l| l.contains("fifteen days")).unwrap() + 1;
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let mut config = TestDispatcher::config(&nats.url());
    config.rules.policy = dir.path().join("policy.toml");
    let error = TestDispatcher::try_spawn_with(config, Arc::new(ManualTimeSource::new(bj("2026-03-09 09:00"))))
        .await
        .err()
        .expect("start-up refused");
    let message = format!("{error:#}");
    assert!(message.contains(&format!("policy.toml, line {line}: \"fifteen days\" is not a limit")), "{message}");
}

#[tokio::test]
async fn health_says_when_next_years_calendar_is_missing() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let system = system("2026-11-22 10:00").await; // 2027 is not published yet
    let dispatcher = system.dispatcher().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", dispatcher.health_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = |service: &'static str| {
        let mut health = health.clone();
        async move { health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status() }
    };
    gridcase_tests::eventually("the dispatcher to report SERVING", || async {
        status(gridcase_dispatcher::service::HEALTH_DISPATCHER).await == ServingStatus::Serving
    })
    .await;
    assert_eq!(status(gridcase_dispatcher::service::HEALTH_CALENDAR).await, ServingStatus::NotServing);
    let _ = health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[tokio::test]
async fn resolve_and_verify_clocks_run_out_too_and_a_redispatch_restarts_the_clocks() {
    let system = system("2026-03-09 09:00").await;
    let mut dispatcher = system.dispatcher().await;
    let marks = |events: &[(StoredEvent, Event)]| -> Vec<(Clock, ClockMark)> {
        events
            .iter()
            .filter_map(
                |(_, e)| if let Event::ClockMarked { clock, mark, .. } = e { Some((*clock, *mark)) } else { None },
            )
            .collect()
    };

    // A missing manhole cover (CRITICAL, calendar time): resolve within 6 hours.
    let manhole = system.file("0202", None).await;
    let events = system.until_kind(&manhole, "dispatched").await;
    assert_eq!(dispatched(&events).2, bj("2026-03-09 15:00"));
    let unit = "unit.utilities.990101";
    act::command(&system.log, &manhole, Command::Acknowledge, ActorRole::HandlingUnit, unit, bj("2026-03-09 09:10"))
        .await
        .unwrap();
    system.clock.set(bj("2026-03-09 15:00"));
    let events = system.until_kind(&manhole, "supervised").await;
    assert_eq!(marks(&events), [(Clock::Resolve, ClockMark::Overdue)]);

    let resolve = Command::Resolve { summary: Text::reason("已加盖临时井盖").unwrap(), evidence: vec![] };
    act::command(&system.log, &manhole, resolve, ActorRole::HandlingUnit, unit, bj("2026-03-09 15:30")).await.unwrap();
    system.clock.set(bj("2026-03-09 15:30"));
    let events = system.until_kind(&manhole, "deadline_set").await;
    let Event::DeadlineSet { clock, due, .. } = &events.last().unwrap().1 else { panic!() };
    assert_eq!((*clock, *due), (Clock::Verify, bj("2026-03-10 15:30")), "1 working day to verify");
    system.clock.set(bj("2026-03-10 15:30"));
    let events =
        system.until(&manhole, "verify overdue", |e| marks(e).contains(&(Clock::Verify, ClockMark::Overdue))).await;
    assert_eq!(marks(&events), [(Clock::Resolve, ClockMark::Overdue), (Clock::Verify, ClockMark::Overdue)]);

    // Exposed rubbish, returned by the unit, dispatched again by the centre.
    system.clock.set(bj("2026-03-11 09:00"));
    let rubbish = system.file("0101", None).await;
    system.until_kind(&rubbish, "dispatched").await;
    let reason = Text::reason("非本单位职责").unwrap();
    act::command(
        &system.log,
        &rubbish,
        Command::Return { reason },
        ActorRole::HandlingUnit,
        "unit.urban.990101",
        bj("2026-03-11 10:00"),
    )
    .await
    .unwrap();
    system.clock.set(bj("2026-03-12 09:30")); // past the first acknowledge deadline: it no longer runs
    dispatcher.settled_at(bj("2026-03-12 09:30"), &system.nats).await;
    assert_eq!(marks(&act::events(&system.log, &rubbish).await), []);
    let deadlines = gridcase_domain::Deadlines {
        acknowledge_due: bj("2026-03-13 09:30"),
        resolve_due: bj("2026-03-20 09:30"),
        basis: None,
    };
    let redispatch =
        Command::Dispatch { unit: gridcase_domain::OrgCode::parse("unit.property.990101001").unwrap(), deadlines };
    act::command(&system.log, &rubbish, redispatch, ActorRole::CommandCentre, "cc-990101001", bj("2026-03-12 09:30"))
        .await
        .unwrap();
    system.clock.set(bj("2026-03-13 09:30"));
    let events = system.until_kind(&rubbish, "supervised").await;
    assert_eq!(marks(&events), [(Clock::Acknowledge, ClockMark::Overdue)], "the new deadline, once");
    assert_eq!(count(&events, "dispatched"), 2);
}

/// The bytes of the snapshot saved in `bucket`.
async fn saved_snapshot(system: &System, bucket: &str) -> Vec<u8> {
    let store = gridcase_dispatcher::snapshot::SnapshotStore::open(system.log.context(), bucket, 1, String::new())
        .await
        .unwrap();
    store.read().await.unwrap().expect("a snapshot was saved")
}

/// The case lines of the snapshot saved in `bucket`, sorted (one per open case).
async fn snapshot_lines(system: &System, bucket: &str) -> (gridcase_dispatcher::snapshot::Header, Vec<String>) {
    let text = String::from_utf8(saved_snapshot(system, bucket).await).unwrap();
    let mut lines = text.lines();
    let header = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut cases: Vec<String> = lines.map(str::to_owned).collect();
    cases.sort();
    (header, cases)
}

#[tokio::test]
async fn a_restart_resumes_from_the_snapshot_and_a_crash_after_it_neither_loses_nor_doubles_a_step() {
    let system = system("2026-03-09 09:00").await; // a Monday
    let mut first = system.dispatcher().await;
    let mut subjects = Vec::new();
    for _ in 0..3 {
        subjects.push(system.file("0101", None).await); // NORMAL: acknowledge by Tue 09:00, warned at Mon 16:36
    }
    for subject in &subjects {
        system.until_kind(subject, "dispatched").await;
    }
    first.settled_at(bj("2026-03-09 09:00"), &system.nats).await;
    assert_eq!(first.snapshots().resumed_from, None, "nothing saved before: the whole stream was read");
    first.stop().await.unwrap(); // saves what it folded
    let covered = gridcase_tests::stream_end(&system.nats).await;
    let (header, lines) = snapshot_lines(&system, gridcase_dispatcher::snapshot::DEFAULT_BUCKET).await;
    assert_eq!((header.covers.sequence, header.cases, lines.len()), (covered, 3, 3));

    // Resumed from the snapshot; the warnings come due and are taken after it.
    let second = system.dispatcher().await;
    system.clock.set(bj("2026-03-09 16:36"));
    for subject in &subjects {
        system.until_kind(subject, "clock_marked").await;
    }
    assert_eq!(second.snapshots().resumed_from, Some(covered));
    second.kill(); // a crash: the warnings are in the log, not in the snapshot

    // The deadline passes while no dispatcher runs; the next start resumes
    // from the same snapshot, reads the warnings from the log and goes on.
    system.clock.set(bj("2026-03-10 09:30"));
    let mut third = system.dispatcher().await;
    for subject in &subjects {
        system.until_kind(subject, "supervised").await;
    }
    third.settled_at(bj("2026-03-10 09:30"), &system.nats).await;
    assert_eq!(third.snapshots().resumed_from, Some(covered));
    third.stop().await.unwrap();
    for subject in &subjects {
        let events = act::events(&system.log, subject).await;
        assert_eq!(
            kinds(&events),
            ["filed", "registered", "dispatched", "clock_marked", "clock_marked", "supervised"],
            "each step once"
        );
    }

    // What the snapshot holds is what a full replay folds: a dispatcher with
    // a bucket of its own reads the whole stream, takes no step, and saves
    // the same case lines.
    let end = gridcase_tests::stream_end(&system.nats).await;
    let mut config = TestDispatcher::config(&system.nats.url());
    config.snapshot_bucket = "replayed".into();
    let mut replayed = TestDispatcher::spawn_with(config, Arc::new(system.clock.clone())).await;
    replayed.settled_at(bj("2026-03-10 09:30"), &system.nats).await;
    assert_eq!(replayed.snapshots().resumed_from, None);
    replayed.stop().await.unwrap();
    assert_eq!(gridcase_tests::stream_end(&system.nats).await, end, "no step was due");
    let (resumed, resumed_lines) = snapshot_lines(&system, gridcase_dispatcher::snapshot::DEFAULT_BUCKET).await;
    let (full, full_lines) = snapshot_lines(&system, "replayed").await;
    assert_eq!((resumed.covers, resumed.cases), (full.covers, full.cases));
    assert_eq!(resumed_lines, full_lines);
}

#[tokio::test]
async fn a_snapshot_in_doubt_is_replayed_over() {
    use gridcase_dispatcher::snapshot::DEFAULT_BUCKET;
    let system = system("2026-03-09 09:00").await;
    let first = system.dispatcher().await;
    let subject = system.file("0101", None).await;
    system.until_kind(&subject, "dispatched").await;
    first.stop().await.unwrap();
    let (header, _) = snapshot_lines(&system, DEFAULT_BUCKET).await;
    let bucket = system.log.context().get_object_store(DEFAULT_BUCKET).await.unwrap();
    let saved = saved_snapshot(&system, DEFAULT_BUCKET).await;
    let text = String::from_utf8(saved.clone()).unwrap();

    // Each start below must replay the whole stream, and still take the
    // step due (the warning) exactly once.
    let corrupt: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not a snapshot".to_vec()),
        ("cut short", saved[..saved.len() - 40].to_vec()),
        ("another stream's", text.replacen(header.covers.hash.as_deref().unwrap(), &"0".repeat(64), 1).into_bytes()),
    ];
    system.clock.set(bj("2026-03-09 16:36"));
    for (what, bytes) in corrupt {
        bucket.put("open-cases", &mut bytes.as_slice()).await.unwrap();
        let mut dispatcher = system.dispatcher().await;
        dispatcher.settled_at(bj("2026-03-09 16:36"), &system.nats).await;
        assert_eq!(dispatcher.snapshots().resumed_from, None, "{what}: replayed");
        dispatcher.kill(); // saves nothing: the next start meets the next corruption
    }
    // Other rules (the policy changed): the clocks are folded again.
    bucket.put("open-cases", &mut saved.as_slice()).await.unwrap();
    let (_dir, config) = with_policy_changed(&system, "acknowledge = \"30 minutes\"", "acknowledge = \"20 minutes\"");
    let mut changed = TestDispatcher::spawn_with(config, Arc::new(system.clock.clone())).await;
    changed.settled_at(bj("2026-03-09 16:36"), &system.nats).await;
    assert_eq!(changed.snapshots().resumed_from, None, "other rules: replayed");
    changed.kill();
    // The untouched snapshot is used again.
    let mut again = system.dispatcher().await;
    again.settled_at(bj("2026-03-09 16:36"), &system.nats).await;
    assert_eq!(again.snapshots().resumed_from, Some(header.covers.sequence));
    again.stop().await.unwrap();

    let events = act::events(&system.log, &subject).await;
    assert_eq!(kinds(&events), ["filed", "registered", "dispatched", "clock_marked"], "the warning once");
}

#[tokio::test]
async fn a_closed_case_is_let_go_and_its_reopening_is_read_back_with_a_fresh_resolve_deadline() {
    use gridcase_domain::Feedback;
    let system = system("2026-03-09 09:00").await;
    let first = system.dispatcher().await;
    let subject = system.file("0101", None).await; // NORMAL: resolve within 5 working days
    system.until_kind(&subject, "dispatched").await;
    let (unit, centre) = ("unit.urban.990101", "cc-990101001");
    let text = |s: &str| Text::reason(s).unwrap();
    act::command(&system.log, &subject, Command::Acknowledge, ActorRole::HandlingUnit, unit, bj("2026-03-09 09:30"))
        .await
        .unwrap();
    let resolve = Command::Resolve { summary: text("已清运"), evidence: vec![] };
    act::command(&system.log, &subject, resolve, ActorRole::HandlingUnit, unit, bj("2026-03-09 10:00")).await.unwrap();
    system.until_kind(&subject, "deadline_set").await; // the verify clock
    let verify = Command::Verify { passed: true, reason: None };
    act::command(&system.log, &subject, verify, ActorRole::CommandCentre, centre, bj("2026-03-09 11:00"))
        .await
        .unwrap();
    let feedback = Command::RecordFeedback { feedback: Feedback::Unsatisfied, comment: None };
    act::command(&system.log, &subject, feedback, ActorRole::CommandCentre, centre, bj("2026-03-09 12:00"))
        .await
        .unwrap();
    // Another case moves the stream on past the closed one's last event.
    let other = system.file("0101", None).await;
    system.until_kind(&other, "dispatched").await;
    first.stop().await.unwrap();
    let (header, lines) = snapshot_lines(&system, gridcase_dispatcher::snapshot::DEFAULT_BUCKET).await;
    assert_eq!((header.cases, lines.len()), (1, 1), "only the open case is kept: {lines:?}");
    let case_id = subject.case_id().to_string();
    assert!(!lines[0].contains(&case_id), "a closed case is not kept");

    // As if the snapshot had been saved while the closed case's history was
    // being read (a reopening): the next start reads it again and folds it
    // (closed: let go), and settles.
    use gridcase_dispatcher::snapshot::DEFAULT_BUCKET;
    let saved = String::from_utf8(saved_snapshot(&system, DEFAULT_BUCKET).await).unwrap();
    let (head, body) = saved.split_once('\n').unwrap();
    let mut head: serde_json::Value = serde_json::from_str(head).unwrap();
    head["loading"] = serde_json::json!([subject.to_string()]);
    let rewritten = format!("{head}\n{body}");
    let bucket = system.log.context().get_object_store(DEFAULT_BUCKET).await.unwrap();
    bucket.put("open-cases", &mut rewritten.as_bytes()).await.unwrap();

    // Reopened a day later: the resumed dispatcher reads the case's history
    // and re-arms the resolve clock from the reopening, as a full replay would.
    system.clock.set(bj("2026-03-10 09:00"));
    let mut second = system.dispatcher().await;
    second.settled_at(bj("2026-03-10 09:00"), &system.nats).await;
    assert_eq!(second.snapshots().resumed_from, Some(header.covers.sequence));
    let reopen = Command::Reopen { reason: text("居民不满意") };
    act::command(&system.log, &subject, reopen, ActorRole::CommandCentre, centre, bj("2026-03-10 09:00"))
        .await
        .unwrap();
    let events = system.until(&subject, "a fresh resolve deadline", |e| count(e, "deadline_set") == 2).await;
    let Event::DeadlineSet { clock, due, .. } = &events.last().unwrap().1 else { panic!("{:?}", kinds(&events)) };
    assert_eq!((*clock, *due), (Clock::Resolve, bj("2026-03-17 09:00")), "5 working days from the reopening");
    // The reopened case is open again: it is in the next snapshot.
    second.settled_at(bj("2026-03-10 09:00"), &system.nats).await;
    second.stop().await.unwrap();
    let (_, lines) = snapshot_lines(&system, gridcase_dispatcher::snapshot::DEFAULT_BUCKET).await;
    assert_eq!(lines.len(), 2);
    let reopened = lines.iter().find(|line| line.contains(&case_id)).expect("the reopened case is kept");
    assert!(reopened.contains(r#""state":"IN_PROGRESS""#), "{reopened}");
}
