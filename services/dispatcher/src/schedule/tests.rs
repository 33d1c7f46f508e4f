//! The dispatcher's bookkeeping without NATS: a log kept in memory here
//! (per-case expected versions, event ids that tell a step taken twice)
//! answers the schedule's commits, and the schedule is fed the stream in
//! order, at the moments a test (or the property test, at random) chooses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gridcase_calendar::{Calendar, YearTable};
use gridcase_domain::{ActorRole, CaseId, CategoryCode, Command, Filing, GridCode, Location, Text};
use gridcase_envelope::schema::{Actor, EventMeta};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_policy::Policy;
use gridcase_reference::Reference;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::*;

struct World {
    policy: Policy,
    calendar: Calendar,
    reference: Reference,
}

fn world() -> World {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    World {
        policy: Policy::load(&root.join("deploy/policy/policy.toml")).unwrap(),
        calendar: Calendar::new(
            Arc::new(YearTable::load_dir(&root.join("deploy/calendar")).unwrap()),
            Default::default(),
        ),
        reference: Reference::load(&root.join("deploy/reference")).unwrap(),
    }
}

fn core(world: &World) -> Core<'_> {
    Core { policy: &world.policy, calendar: &world.calendar, reference: &world.reference }
}

const GRID: &str = "990101001001001";

fn monday() -> Timestamp {
    "2026-03-02T09:00:00+08:00[Asia/Shanghai]".parse::<jiff::Zoned>().unwrap().timestamp()
}

/// The stream, kept here: every event with its sequence, and each case's
/// events by version.
#[derive(Default)]
struct Log {
    stream: Vec<(String, StoredEvent)>,
    cases: BTreeMap<CaseId, Vec<(u64, StoredEvent)>>,
}

impl Log {
    /// Append `event` to its case if the case stands at `expected` (its
    /// version); the sequence it got, or the version it stands at.
    fn append(
        &mut self,
        (case_id, subject, expected): (CaseId, &CaseSubject, u64),
        event: &Event,
        id: Uuid,
        role: ActorRole,
        at: Timestamp,
    ) -> Result<u64, u64> {
        let history = self.cases.entry(case_id).or_default();
        if history.len() as u64 != expected {
            return Err(history.len() as u64);
        }
        let meta = EventMeta {
            event_id: id,
            case_id,
            case_version: expected + 1,
            occurred_at: at,
            actor: Actor { person: "someone".into(), role, organisation: "cc-990101001".into() },
            command_id: None,
        };
        let stored = StoredEvent::chained(event, meta, history.last().map(|(_, e)| e.hash.clone()));
        self.stream.push((subject.to_string(), stored.clone()));
        let sequence = self.stream.len() as u64;
        history.push((sequence, stored));
        Ok(sequence)
    }

    /// What the log answers a commit: stored (by this commit, or the very
    /// same steps found there already), or a conflict.
    fn commit(&mut self, steps: &StepCommit, now: Timestamp) -> Answer {
        let head = &steps.head;
        let mut last = 0;
        for (index, (event, action)) in steps.steps.iter().enumerate() {
            let id = crate::commit::step_provenance(action, now).event_id;
            let expected = head.version + index as u64;
            match self.append((head.case_id, &head.subject, expected), event, id, ActorRole::System, now) {
                Ok(sequence) => last = sequence,
                Err(_) => {
                    // The step's own event there (an earlier send landed): stored before.
                    let there = &self.cases[&head.case_id];
                    match there.get(expected as usize) {
                        Some((sequence, stored)) if stored.event_id == id => last = *sequence,
                        _ => return Answer::Conflict,
                    }
                }
            }
        }
        Answer::Stored { last_sequence: last }
    }

    /// Every step the dispatcher stored, per case: none twice.
    fn steps_taken_twice(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.stream
            .iter()
            .filter(|(_, stored)| stored.actor.role == ActorRole::System)
            .filter(|(_, stored)| !seen.insert(stored.event_id))
            .map(|(_, stored)| format!("{} v{} {}", stored.case_id, stored.case_version, stored.event_type))
            .collect()
    }
}

/// The case as its events in the log fold.
fn replay(history: &[(u64, StoredEvent)]) -> gridcase_domain::Case {
    let events: Vec<Event> = history.iter().map(|(_, e)| e.decode().unwrap()).collect();
    gridcase_domain::replay(&events).unwrap()
}

fn file(log: &mut Log, at: Timestamp) -> (CaseId, CaseSubject) {
    let case_id = CaseId::new_v7();
    let grid = GridCode::parse(GRID).unwrap();
    let filing = Filing {
        case_id,
        grid: grid.clone(),
        category: CategoryCode::parse("0101").unwrap(),
        description: Text::reason("路灯不亮").unwrap(),
        location: Location::from_degrees(30.27, 120.15, None).unwrap(),
        reported_at: at,
        severity_hint: None,
        contact: None,
        attachments: vec![],
        outside_grid: None,
        channel: Default::default(),
        request_kind: None,
        reference: None,
    };
    let subject = CaseSubject::for_grid(&grid, &case_id);
    let event = gridcase_domain::decide(None, &Command::File(filing), at).unwrap();
    log.append((case_id, &subject, 0), &event, Uuid::now_v7(), ActorRole::GridWorker, at).unwrap();
    (case_id, subject)
}

/// Feed the schedule every message of the stream after `read`.
fn read_on(schedule: &mut Schedule, core: &Core<'_>, log: &Log, read: &mut usize) {
    while *read < log.stream.len() {
        let (subject, stored) = &log.stream[*read];
        *read += 1;
        schedule.observe(core, subject, Ok(stored), *read as u64);
    }
    schedule.saw_end(*read as u64, 0);
}

#[test]
fn a_case_with_a_step_in_flight_is_not_decided_again_until_its_event_is_read() {
    let world = world();
    let core = core(&world);
    let (mut log, mut schedule, mut read) = (Log::default(), Schedule::new(true), 0);
    let now = monday();
    file(&mut log, now);
    read_on(&mut schedule, &core, &log, &mut read);

    let first = schedule.act(&core, now, 10);
    assert_eq!(first.len(), 1, "registration (and dispatch, chained)");
    let kinds: Vec<&str> = first[0].steps.iter().map(|(e, _)| e.kind()).collect();
    assert_eq!(kinds, ["registered", "dispatched"]);
    assert!(schedule.act(&core, now, 10).is_empty(), "nothing new while the commit is out");

    // Stored, not read back yet: still in flight, even when woken.
    let answer = log.commit(&first[0], now);
    schedule.settle(&first[0].head, answer);
    schedule.wake_due(now + SignedDuration::from_hours(1000));
    assert!(schedule.act(&core, now, 10).is_empty(), "waits for its own events");
    assert!(!schedule.settled());

    // Read back: the next step (the deadline watch has none yet) and settled.
    read_on(&mut schedule, &core, &log, &mut read);
    assert!(schedule.act(&core, now, 10).is_empty(), "nothing due yet");
    assert!(schedule.settled());
    assert_eq!(schedule.tracked(&first[0].head.case_id).unwrap().case.version, 3);
}

#[test]
fn a_step_that_lost_to_another_writer_waits_for_the_winning_event() {
    let world = world();
    let core = core(&world);
    let (mut log, mut schedule, mut read) = (Log::default(), Schedule::new(false), 0);
    let now = monday();
    let (case_id, subject) = file(&mut log, now);
    read_on(&mut schedule, &core, &log, &mut read);
    let register = schedule.act(&core, now, 10).pop().unwrap();

    // A command centre registers it by hand first.
    let by_hand = gridcase_domain::decide(
        Some(&schedule.tracked(&case_id).unwrap().case),
        &Command::Register { tier: gridcase_domain::Tier::Normal, note: None, policy: None },
        now,
    )
    .unwrap();
    log.append((case_id, &subject, 1), &by_hand, Uuid::now_v7(), ActorRole::CommandCentre, now).unwrap();
    let answer = log.commit(&register, now);
    assert_eq!(answer, Answer::Conflict);
    schedule.settle(&register.head, answer);
    assert!(schedule.act(&core, now, 10).is_empty(), "the winner is not read yet: nothing decided");

    read_on(&mut schedule, &core, &log, &mut read);
    let next = schedule.act(&core, now, 10);
    assert_eq!(next[0].steps[0].0.kind(), "dispatched", "decided from the case as the winner left it");
}

#[test]
fn an_answer_after_the_event_was_read_looks_at_the_case_at_once() {
    let world = world();
    let core = core(&world);
    let (mut log, mut schedule, mut read) = (Log::default(), Schedule::new(false), 0);
    let now = monday();
    file(&mut log, now);
    read_on(&mut schedule, &core, &log, &mut read);
    let register = schedule.act(&core, now, 10).pop().unwrap();
    let answer = log.commit(&register, now);
    // The stream reader was faster than the commit's answer.
    read_on(&mut schedule, &core, &log, &mut read);
    schedule.settle(&register.head, answer);
    let next = schedule.act(&core, now, 10);
    assert_eq!(next.len(), 1, "the dispatch is decided at once");
    assert_eq!(next[0].steps[0].0.kind(), "dispatched");
}

#[test]
fn a_reopened_case_is_read_again_whole_and_a_later_event_reads_it_once_more() {
    let world = world();
    let core = core(&world);
    let (mut log, mut schedule, mut read) = (Log::default(), Schedule::new(true), 0);
    let now = monday();
    let (case_id, subject) = file(&mut log, now);
    read_on(&mut schedule, &core, &log, &mut read);
    let steps = schedule.act(&core, now, 10).pop().unwrap();
    schedule.settle(&steps.head, log.commit(&steps, now));
    // The unit resolves, the centre verifies: closed, let go.
    for (command, role) in [
        (Command::Acknowledge, ActorRole::HandlingUnit),
        (Command::Resolve { summary: Text::reason("已修复").unwrap(), evidence: vec![] }, ActorRole::HandlingUnit),
        (Command::Verify { passed: true, reason: None }, ActorRole::CommandCentre),
        (
            Command::RecordFeedback { feedback: gridcase_domain::Feedback::Unsatisfied, comment: None },
            ActorRole::CommandCentre,
        ),
    ] {
        let case = replay(&log.cases[&case_id]);
        let event = gridcase_domain::decide(Some(&case), &command, now).unwrap();
        log.append((case_id, &subject, case.version), &event, Uuid::now_v7(), role, now).unwrap();
        read_on(&mut schedule, &core, &log, &mut read);
        for steps in schedule.act(&core, now, 10) {
            schedule.settle(&steps.head, log.commit(&steps, now));
            read_on(&mut schedule, &core, &log, &mut read);
        }
    }
    assert!(schedule.tracked(&case_id).is_none(), "a closed case is let go");

    // Reopened: its history is to be read; an event seen meanwhile reads it again.
    let case = replay(&log.cases[&case_id]);
    let reopen =
        gridcase_domain::decide(Some(&case), &Command::Reopen { reason: Text::reason("又坏了").unwrap() }, now)
            .unwrap();
    log.append((case_id, &subject, case.version), &reopen, Uuid::now_v7(), ActorRole::CommandCentre, now).unwrap();
    let (subject_read, stored) = &log.stream[read];
    read += 1;
    assert_eq!(schedule.observe(&core, subject_read, Ok(stored), read as u64), Observation::Load(subject.clone()));
    let history_then: Vec<(u64, StoredEvent)> = log.cases[&case_id].clone();
    let case = replay(&log.cases[&case_id]);
    let note = Command::AddProgress { note: Text::reason("已安排").unwrap(), attachments: vec![] };
    let event = gridcase_domain::decide(Some(&case), &note, now).unwrap();
    log.append((case_id, &subject, case.version), &event, Uuid::now_v7(), ActorRole::CommandCentre, now).unwrap();
    read_on(&mut schedule, &core, &log, &mut read);
    let old: Vec<(u64, &StoredEvent)> = history_then.iter().map(|(s, e)| (*s, e)).collect();
    assert_eq!(schedule.loaded(&core, case_id, Ok(old)), Loaded::Again(subject.clone()), "read again");
    let whole: Vec<(u64, &StoredEvent)> = log.cases[&case_id].iter().map(|(s, e)| (*s, e)).collect();
    assert_eq!(schedule.loaded(&core, case_id, Ok(whole)), Loaded::Done);
    assert_eq!(schedule.tracked(&case_id).unwrap().case.version, case.version + 1, "tracked again, every event folded");
    let next = schedule.act(&core, now, 10);
    assert_eq!(next[0].steps[0].0.kind(), "deadline_set", "a reopened case gets a fresh resolve deadline");
}

mod property {
    use proptest::prelude::*;

    use super::*;

    /// One thing happening, chosen at random: what the stream reader, the
    /// log, the clock and the people do, in any order.
    #[derive(Debug, Clone)]
    enum Happening {
        /// A grid worker files a case.
        File,
        /// The reader delivers the next `n` messages of the stream.
        Read(usize),
        /// The dispatcher acts on what is dirty.
        Act,
        /// The log answers commit `i` of those out (modulo), its answer
        /// delivered, or lost (stored all the same) and the commit retried.
        Answer(usize, bool),
        /// Time passes.
        Wait(u8),
        /// A unit acknowledges a case `i` (modulo), a person's command
        /// racing the dispatcher's steps.
        Acknowledge(usize),
    }

    fn happening() -> impl Strategy<Value = Happening> {
        prop_oneof![
            1 => Just(Happening::File),
            4 => (1usize..4).prop_map(Happening::Read),
            3 => Just(Happening::Act),
            4 => (0usize..8, any::<bool>()).prop_map(|(i, lost)| Happening::Answer(i, lost)),
            2 => (1u8..30).prop_map(Happening::Wait),
            1 => (0usize..8).prop_map(Happening::Acknowledge),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the order of answers, reads, wake-ups and people's
        /// commands: the schedule never hands out a step (one case, one
        /// version, one clock and mark: one key) again while it is out or
        /// after the log stored it (a step whose answer was lost goes again
        /// with the same key; one refused, with its chain, because the case
        /// moved may come again if the case arrives at the same version);
        /// the log never stores a step twice; and once everything is read
        /// and answered it settles.
        #[test]
        fn no_step_is_handed_out_twice_whatever_the_order(happenings in proptest::collection::vec(happening(), 1..120)) {
            let world = world();
            let core = core(&world);
            let (mut log, mut schedule, mut read) = (Log::default(), Schedule::new(true), 0usize);
            let mut now = monday();
            let mut out: Vec<StepCommit> = Vec::new();
            // Each step key handed out: still out (true), or answered for good (false).
            let mut handed: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
            /// The schedule gets the answer; a step not stored may come again.
            fn settle(
                schedule: &mut Schedule,
                handed: &mut std::collections::HashMap<String, bool>,
                steps: &StepCommit,
                answer: Answer,
            ) {
                schedule.settle(&steps.head, answer);
                for (_, action) in &steps.steps {
                    if matches!(answer, Answer::Stored { .. }) {
                        handed.insert(action.key.clone(), false);
                    } else {
                        handed.remove(&action.key);
                    }
                }
            }
            fn hand_out(
                handed: &mut std::collections::HashMap<String, bool>,
                steps: Vec<StepCommit>,
                out: &mut Vec<StepCommit>,
            ) -> Result<(), TestCaseError> {
                for commit in steps {
                    for (_, action) in &commit.steps {
                        let again = handed.insert(action.key.clone(), true);
                        prop_assert!(again.is_none(), "step {} handed out again ({again:?})", action.key);
                    }
                    out.push(commit);
                }
                Ok(())
            }
            let mut filed: Vec<(CaseId, CaseSubject)> = Vec::new();
            let deliver = |schedule: &mut Schedule, log: &Log, read: &mut usize, n: usize| {
                for _ in 0..n {
                    if *read >= log.stream.len() { break }
                    let (subject, stored) = &log.stream[*read];
                    *read += 1;
                    schedule.observe(&core, subject, Ok(stored), *read as u64);
                    schedule.saw_end(*read as u64, (log.stream.len() - *read) as u64);
                }
            };
            for happening in happenings {
                match happening {
                    Happening::File => filed.push(file(&mut log, now)),
                    Happening::Read(n) => deliver(&mut schedule, &log, &mut read, n),
                    Happening::Act => {
                        schedule.wake_due(now);
                        hand_out(&mut handed, schedule.act(&core, now, 4), &mut out)?;
                    }
                    Happening::Answer(i, lost) if !out.is_empty() => {
                        let steps = out.remove(i % out.len());
                        let answer = log.commit(&steps, now);
                        settle(&mut schedule, &mut handed, &steps, if lost { Answer::Retry } else { answer });
                    }
                    Happening::Answer(..) => {}
                    Happening::Wait(minutes) => now += SignedDuration::from_mins(i64::from(minutes) * 60),
                    Happening::Acknowledge(i) if !filed.is_empty() => {
                        let (case_id, subject) = filed[i % filed.len()].clone();
                        let history = &log.cases[&case_id];
                        let case = replay(history);
                        if let Ok(event) = gridcase_domain::decide(Some(&case), &Command::Acknowledge, now) {
                            log.append((case_id, &subject, case.version), &event, Uuid::now_v7(), ActorRole::HandlingUnit, now).unwrap();
                        }
                    }
                    Happening::Acknowledge(_) => {}
                }
                let twice = log.steps_taken_twice();
                prop_assert!(twice.is_empty(), "steps stored twice: {twice:?}");
            }
            // Everything answered and read: the schedule settles, every step
            // once, and no case is left waiting on an answer that came.
            for _ in 0..50 {
                while let Some(steps) = out.pop() {
                    let answer = log.commit(&steps, now);
                    settle(&mut schedule, &mut handed, &steps, answer);
                }
                let end = log.stream.len();
                deliver(&mut schedule, &log, &mut read, end);
                hand_out(&mut handed, schedule.act(&core, now, 100), &mut out)?;
                if out.is_empty() && schedule.settled() { break }
            }
            prop_assert!(schedule.settled(), "the schedule settles");
            prop_assert!(log.steps_taken_twice().is_empty());
        }
    }
}
