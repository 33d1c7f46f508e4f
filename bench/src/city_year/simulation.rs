//! The year simulated hour by hour on a thread of its own: filings, the
//! dispatcher's steps (its own `Core`) and the people's (`decide`),
//! chained and handed to the publisher in atomic batches.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use gridcase_calendar::Calendar;
use gridcase_dispatcher::core::{Core, Tracked};
use gridcase_domain::{
    ActorRole, Case, CaseId, CategoryCode, Channel, Clock, Command, Event, Feedback, Filing, GridCode, Location,
    OrgCode, PersonName, PhoneNumber, ReplyMethod, RequestKind, ResidentContact, State, Text, Tier,
};
use gridcase_envelope::schema::{Actor, EventMeta};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::cloudevents;
use gridcase_policy::Policy;
use gridcase_reference::Reference;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::{DataSet, reference_dir, rules};

/// The share of filings a partner platform sends (residents' requests).
const PARTNER_SHARE: f64 = 0.25;
/// The partner platform of the data set: the tests' FixMyStreet-like partner,
/// so `city-year queries` can follow its requests with its key.
pub const PARTNER: &str = "partner-fixmystreet";

/// One message of the stream, as the case store would write it.
pub(super) struct Message {
    pub(super) subject: String,
    pub(super) headers: async_nats::HeaderMap,
    pub(super) payload: Bytes,
}

/// The people's parameters of one case, drawn at filing.
#[derive(Debug, Clone)]
struct Draw {
    cancel: bool,
    returned: bool,
    extension: bool,
    rework: bool,
    feedback: Option<Feedback>,
    reopen: bool,
    /// When the people act, as a share of the time their clock allows (from
    /// the state's start to its deadline): most well within it, some late.
    ack_share: f64,
    resolve_share: f64,
    verify_share: f64,
}

/// A case in the simulation.
struct Sim {
    subject: CaseSubject,
    case_id: CaseId,
    township: String,
    /// The dispatcher's view (folded by its own `Core::observe`).
    tracked: Option<Tracked>,
    /// The case as the domain folds it (as intake loads it).
    case: Option<Case>,
    last_sequence: u64,
    last_hash: Option<String>,
    /// When the case entered its present state.
    since: Timestamp,
    draw: Draw,
    returns_done: bool,
    extension_done: bool,
    feedback_done: bool,
}

/// A wake-up in the simulation: (instant, case index), earliest first.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Wake(std::cmp::Reverse<(Timestamp, u64)>);

struct Generator<'a> {
    core: Core<'a>,
    policy: &'a Policy,
    calendar: &'a Calendar,
    rng: fastrand::Rng,
    sequence: u64,
    batch: Vec<Message>,
    in_batch: HashSet<String>,
    batches: tokio::sync::mpsc::Sender<Vec<Message>>,
    counts: std::collections::BTreeMap<String, u64>,
    batch_size: usize,
}

impl Generator<'_> {
    fn uuid_v7(&mut self, at: Timestamp) -> Uuid {
        let random: [u8; 10] = std::array::from_fn(|_| self.rng.u8(..));
        uuid::Builder::from_unix_timestamp_millis(at.as_millisecond() as u64, &random).into_uuid()
    }

    fn draw(&mut self) -> Draw {
        let rng = &mut self.rng;
        let share = |rng: &mut fastrand::Rng| match rng.f64() {
            x if x < 0.93 => 0.1 + 0.8 * rng.f64(),
            x if x < 0.98 => 0.9 + 0.3 * rng.f64(),
            _ => 1.2 + 1.3 * rng.f64(),
        };
        let feedback = match rng.f64() {
            x if x < 0.55 => Some(Feedback::Satisfied),
            x if x < 0.66 => Some(Feedback::BasicallySatisfied),
            x if x < 0.70 => Some(Feedback::Unsatisfied),
            _ => None,
        };
        Draw {
            cancel: rng.f64() < 0.005,
            returned: rng.f64() < 0.03,
            extension: rng.f64() < 0.05,
            rework: rng.f64() < 0.04,
            reopen: rng.f64() < 0.5,
            feedback,
            ack_share: share(rng),
            resolve_share: share(rng),
            verify_share: share(rng),
        }
    }

    /// Chain `event` after the case's head and add it to the batch being
    /// built; fold it into the dispatcher's and the domain's view.
    fn emit(
        &mut self,
        sim: &mut Sim,
        event: Event,
        event_id: Uuid,
        at: Timestamp,
        actor: Actor,
        command_id: Option<String>,
    ) {
        let version = sim.case.as_ref().map_or(0, |case| case.version) + 1;
        let stored = StoredEvent::chained(
            &event,
            EventMeta { event_id, case_id: sim.case_id, case_version: version, occurred_at: at, actor, command_id },
            sim.last_hash.clone(),
        );
        let mut headers = cloudevents::headers(&stored);
        let subject = sim.subject.to_string();
        if self.in_batch.insert(subject.clone()) {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                sim.last_sequence.to_string().as_str(),
            );
            if sim.last_sequence == 0 {
                headers
                    .insert("Nats-Expected-Last-Subject-Sequence-Subject", CaseSubject::locator(&sim.case_id).as_str());
            }
        }
        self.sequence += 1;
        *self.counts.entry(event.kind().to_owned()).or_default() += 1;
        if let Event::ClockMarked { clock, mark, .. } = &event {
            *self.counts.entry(format!("  {} {}", clock.name(), mark.name())).or_default() += 1;
        }
        if let Event::Supervised { reason, .. } = &event {
            let clock = reason.as_str().split(':').nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("?");
            *self.counts.entry(format!("  supervised {clock}")).or_default() += 1;
        }
        self.batch.push(Message { subject, headers, payload: Bytes::from(stored.to_json_bytes()) });
        // The dispatcher lets a closed case go and folds its whole history
        // again when it is reopened: the same as folding on without a break.
        let observed = gridcase_dispatcher::schedule::observed(&stored, self.sequence);
        sim.tracked = self.core.observe(sim.tracked.take(), &observed, &event);
        sim.case = gridcase_domain::evolve(sim.case.take(), &event);
        sim.last_sequence = self.sequence;
        sim.last_hash = Some(stored.hash);
        if self.batch.len() >= self.batch_size {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.in_batch.clear();
        self.batches.blocking_send(batch).expect("the publisher is running");
    }

    /// The dispatcher's steps due at `now`, as the dispatcher takes them.
    fn dispatcher_steps(&mut self, sim: &mut Sim, now: Timestamp) {
        for _ in 0..8 {
            let Some(tracked) = &sim.tracked else { return };
            if gridcase_dispatcher::core::dormant(tracked.case.state) {
                return;
            }
            let Some(action) = self.core.next_action(tracked, now) else { return };
            let event =
                gridcase_domain::decide(Some(&tracked.case), &action.command, now).expect("the dispatcher's step");
            let provenance = gridcase_dispatcher::commit::step_provenance(&action, now);
            self.emit(sim, event, provenance.event_id, now, provenance.actor, None);
        }
    }

    /// The next step a person takes on the case, and when.
    fn people_next(&self, sim: &Sim) -> Option<(Timestamp, Command, Actor)> {
        let case = sim.case.as_ref()?;
        let draw = &sim.draw;
        let minutes = |m: i64| sim.since + SignedDuration::from_mins(m);
        let centre = Actor {
            person: format!("duty-{}", sim.township),
            role: ActorRole::CommandCentre,
            organisation: format!("cc-{}", sim.township),
        };
        let unit_actor = |unit: &OrgCode| Actor {
            person: format!("staff-{}", unit.as_str().rsplit('.').nth(1).unwrap_or("unit")),
            role: ActorRole::HandlingUnit,
            organisation: unit.to_string(),
        };
        let reason = |text: &str| Text::reason(text).expect("a reason");
        let route = self.policy.route(&case.category, &case.grid);
        // A resident's request is answered through the partner platform
        // within a share of its reply limit (whatever else happens first),
        // and called back after closure instead of a recorded evaluation.
        if case.request_kind.is_some() {
            if !case.replied && Clock::Reply.runs_in(case.state) {
                let filed_at = sim.tracked.as_ref().map_or(sim.since, |tracked| tracked.filed_at);
                let at = match case.deadlines.get(&Clock::Reply) {
                    Some(due) => {
                        filed_at
                            + SignedDuration::from_secs_f64(
                                due.duration_since(filed_at).as_secs_f64().max(0.0) * draw.resolve_share,
                            )
                    }
                    None => filed_at + SignedDuration::from_hours(4),
                };
                let state_step = self.state_step(sim, case, draw, &centre, &unit_actor, &reason, route);
                let reply = Command::Reply {
                    method: ReplyMethod::Partner,
                    text: reason("您反映的问题已受理，正在处置"),
                };
                return match state_step {
                    Some(step) if step.0 < at => Some(step),
                    _ => Some((at, reply, centre)),
                };
            }
            if case.state == State::Closed && !case.called_back {
                let satisfaction = draw.feedback.unwrap_or(Feedback::Satisfied);
                let why = (satisfaction == Feedback::Unsatisfied).then(|| reason("问题仍未解决"));
                let command = Command::RecordCallback {
                    reached: true,
                    attempts: 1,
                    satisfaction: Some(satisfaction),
                    reason: why,
                };
                return Some((minutes(24 * 60), command, centre));
            }
        }
        self.state_step(sim, case, draw, &centre, &unit_actor, &reason, route)
    }

    /// The people's next step of the lifecycle (not a resident's answer or callback).
    #[allow(clippy::too_many_arguments)]
    fn state_step(
        &self,
        sim: &Sim,
        case: &Case,
        draw: &Draw,
        centre: &Actor,
        unit_actor: &dyn Fn(&OrgCode) -> Actor,
        reason: &dyn Fn(&str) -> Text,
        route: Option<&gridcase_policy::Route>,
    ) -> Option<(Timestamp, Command, Actor)> {
        let centre = centre.clone();
        let minutes = |m: i64| sim.since + SignedDuration::from_mins(m);
        // A share of the time from the state's start to the clock's deadline.
        let within = |clock: gridcase_domain::Clock, share: f64, otherwise: i64| match case.deadlines.get(&clock) {
            Some(due) if *due > sim.since => {
                sim.since + SignedDuration::from_secs_f64(due.duration_since(sim.since).as_secs_f64() * share)
            }
            _ => minutes(otherwise),
        };
        match case.state {
            State::Reported if draw.cancel => {
                Some((minutes(60), Command::Cancel { reason: reason("居民已自行解决") }, centre))
            }
            State::Reported if self.policy.registers_by_hand(&case.category) || route.is_none() => {
                Some((minutes(120), Command::Register { tier: Tier::Normal, note: None, policy: None }, centre))
            }
            State::Registered if route.is_none() || case.returns > 0 => {
                let unit = route.map_or_else(
                    || OrgCode::parse(&format!("unit.mediation.{}", sim.township)).expect("a unit code"),
                    |route| route.unit.clone(),
                );
                let at = minutes(if case.returns > 0 { 120 } else { 10 });
                let tier = case.tier.unwrap_or(Tier::Normal);
                let planner = gridcase_policy::Planner::new(self.policy, self.calendar);
                let (deadlines, _) = planner.dispatch(tier, &case.category, &case.grid, &unit, at);
                Some((at, Command::Dispatch { unit, deadlines }, centre))
            }
            State::Dispatched => {
                let unit = case.unit.clone()?;
                if draw.returned && !sim.returns_done {
                    Some((minutes(30), Command::Return { reason: reason("非本单位职责") }, unit_actor(&unit)))
                } else {
                    Some((
                        within(gridcase_domain::Clock::Acknowledge, draw.ack_share, 60),
                        Command::Acknowledge,
                        unit_actor(&unit),
                    ))
                }
            }
            State::InProgress => {
                let unit = case.unit.clone()?;
                if case.pending_extension.is_some() {
                    let command = Command::DecideExtension { approved_working_days: Some(2), reason: None };
                    Some((minutes(240), command, centre))
                } else if draw.extension && !sim.extension_done {
                    let command =
                        Command::RequestExtension { working_days: 3, reason: reason("需协调相关部门") };
                    Some((minutes(24 * 60), command, unit_actor(&unit)))
                } else {
                    let command = Command::Resolve { summary: reason("已处理完毕"), evidence: vec![] };
                    let at = within(gridcase_domain::Clock::Resolve, draw.resolve_share, 24 * 60);
                    Some((at, command, unit_actor(&unit)))
                }
            }
            State::Resolved => {
                let passed = !(draw.rework && case.reworks == 0);
                let reason = (!passed).then(|| reason("现场核查未整改到位"));
                let at = within(gridcase_domain::Clock::Verify, draw.verify_share, 240);
                Some((at, Command::Verify { passed, reason }, centre))
            }
            State::Closed if case.feedback.is_none() && !sim.feedback_done => {
                let feedback = draw.feedback?;
                Some((minutes(24 * 60), Command::RecordFeedback { feedback, comment: None }, centre))
            }
            State::Closed if case.feedback == Some(Feedback::Unsatisfied) && draw.reopen && case.reopenings == 0 => {
                Some((minutes(120), Command::Reopen { reason: reason("居民不满意") }, centre))
            }
            _ => None,
        }
    }

    /// Take the people's step, as intake records it.
    fn people_step(&mut self, sim: &mut Sim, now: Timestamp, command: Command, actor: Actor) {
        let case = sim.case.as_ref().expect("a filed case");
        let Ok(event) = gridcase_domain::decide(Some(case), &command, now) else { return };
        match &command {
            Command::Return { .. } => sim.returns_done = true,
            Command::RequestExtension { .. } => sim.extension_done = true,
            Command::RecordFeedback { .. } => sim.feedback_done = true,
            Command::Reopen { .. } => sim.feedback_done = false,
            _ => {}
        }
        let command_id = self.uuid_v7(now).to_string();
        let event_id = gridcase_intake::command_event_id(&sim.case_id, &command_id);
        self.emit(sim, event, event_id, now, actor, Some(command_id));
    }
}

/// Weight of an hour of the year in the filing rate: working hours on
/// working days peak, evenings and rest days less, nights little.
fn hour_weight(calendar: &Calendar, at: &jiff::Zoned) -> f64 {
    let working = calendar.day_kind(at.date()).working;
    let hour = at.hour();
    let by_hour = match hour {
        8..=11 | 14..=17 => 3.0,
        12 | 13 | 18..=21 => 1.5,
        6 | 7 | 22 => 0.6,
        _ => 0.15,
    };
    by_hour * if working { 1.0 } else { 0.55 }
}

/// The year, simulated on this thread; batches go to the publisher.
pub(super) fn simulate(
    dir: &Path,
    cases: usize,
    year: i16,
    seed: u64,
    grids: Vec<GridCode>,
    batches: tokio::sync::mpsc::Sender<Vec<Message>>,
) -> anyhow::Result<DataSet> {
    let (policy, calendar) = rules().load()?;
    let reference = Reference::load(&reference_dir(dir))?;
    let categories: Vec<CategoryCode> = reference.taxonomy.iter().map(|c| c.code.clone()).collect();
    let core = Core { policy: &policy, calendar: &calendar, reference: &reference };
    let mut generator = Generator {
        core,
        policy: &policy,
        calendar: &calendar,
        rng: fastrand::Rng::with_seed(seed),
        sequence: 0,
        batch: Vec::new(),
        in_batch: HashSet::new(),
        batches,
        counts: Default::default(),
        batch_size: 1000,
    };
    let tz = jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE)?;
    let start = jiff::civil::date(year, 1, 1).to_zoned(tz.clone())?;
    let end = jiff::civil::date(year + 1, 1, 1).to_zoned(tz.clone())?;
    let hours: Vec<jiff::Zoned> = {
        let mut hours = Vec::new();
        let mut at = start.clone();
        while at < end {
            hours.push(at.clone());
            at = at.checked_add(SignedDuration::from_hours(1))?;
        }
        hours
    };
    let weights: Vec<f64> = hours.iter().map(|hour| hour_weight(&calendar, hour)).collect();
    let total: f64 = weights.iter().sum();

    let mut sims: HashMap<u64, Sim> = HashMap::new();
    let mut wakes: BinaryHeap<Wake> = BinaryHeap::new();
    let mut next_index = 0u64;
    let mut filed = 0usize;
    let mut carry = 0.0f64;
    let workers_per_township = 20;
    let descriptions =
        ["路灯不亮", "垃圾未及时清运", "电动车楼道充电", "邻里噪音纠纷", "屋顶漏水", "井盖缺失", "占道经营"];
    for (hour_index, hour) in hours.iter().enumerate() {
        let hour_start = hour.timestamp();
        let hour_end = hour_start + SignedDuration::from_hours(1);
        // This hour's filings.
        carry += cases as f64 * weights[hour_index] / total;
        let mut arrivals: Vec<Timestamp> = Vec::new();
        while carry >= 1.0 && filed + arrivals.len() < cases {
            carry -= 1.0;
            arrivals.push(hour_start + SignedDuration::from_millis(generator.rng.i64(0..3_600_000)));
        }
        if hour_index + 1 == hours.len() {
            while filed + arrivals.len() < cases {
                arrivals.push(hour_start + SignedDuration::from_millis(generator.rng.i64(0..3_600_000)));
            }
        }
        for at in arrivals {
            let index = next_index;
            next_index += 1;
            let grid = grids[generator.rng.usize(..grids.len())].clone();
            let category = categories[generator.rng.usize(..categories.len())].clone();
            let reported_at = at - SignedDuration::from_mins(generator.rng.i64(1..30));
            let case_id = CaseId::from_uuid(generator.uuid_v7(reported_at)).expect("a v7 id");
            let township = grid.township().to_string();
            let draw = generator.draw();
            // In clear, as history from before sealing (issue 15) holds
            // them: sealing here would need a key store entry per case.
            let contact = (generator.rng.f64() < 0.3).then(|| ResidentContact {
                name: Some(PersonName::parse("王秀英").expect("a name")),
                phone: Some(
                    PhoneNumber::parse(&format!("139{:08}", generator.rng.u32(..100_000_000))).expect("a phone"),
                ),
                email: None,
            });
            let description = descriptions[generator.rng.usize(..descriptions.len())];
            // A quarter of the requests come from residents through a
            // partner platform (Open311), three quarters from grid workers.
            let partner = generator.rng.f64() < PARTNER_SHARE;
            let request_kind = partner.then(|| RequestKind::ALL[generator.rng.usize(..RequestKind::ALL.len())]);
            let filing = Filing {
                case_id,
                grid: grid.clone(),
                category,
                description: Text::parse(description, 2000).expect("a description"),
                location: Location::from_degrees(
                    25.04 + generator.rng.f64() * 0.2,
                    102.7 + generator.rng.f64() * 0.2,
                    None,
                )
                .expect("a location"),
                reported_at,
                severity_hint: None,
                contact: contact.map(gridcase_domain::Contact::Clear),
                attachments: vec![],
                outside_grid: None,
                channel: if partner { Channel::Partner } else { Channel::GridWorker },
                request_kind,
                reference: partner.then(|| Text::parse(&format!("fms-{index}"), 100).expect("a reference")),
            };
            let worker = if partner {
                Actor { person: PARTNER.into(), role: ActorRole::Partner, organisation: format!("org-{PARTNER}") }
            } else {
                Actor {
                    person: format!("gw-{township}-{:02}", generator.rng.usize(..workers_per_township)),
                    role: ActorRole::GridWorker,
                    organisation: format!("cc-{township}"),
                }
            };
            let mut sim = Sim {
                subject: CaseSubject::for_grid(&grid, &case_id),
                case_id,
                township,
                tracked: None,
                case: None,
                last_sequence: 0,
                last_hash: None,
                since: at,
                draw,
                returns_done: false,
                extension_done: false,
                feedback_done: false,
            };
            let event = gridcase_domain::decide(None, &Command::File(filing), at).expect("a filing");
            let event_id = generator.uuid_v7(at);
            generator.emit(&mut sim, event, event_id, at, worker, None);
            sims.insert(index, sim);
            wakes.push(Wake(std::cmp::Reverse((at, index))));
        }
        filed = next_index as usize;
        // Everything due within this hour, in time order.
        while let Some(Wake(std::cmp::Reverse((at, index)))) = wakes.peek().map(|w| Wake(w.0)) {
            if at >= hour_end {
                break;
            }
            wakes.pop();
            let Some(mut sim) = sims.remove(&index) else { continue };
            advance(&mut generator, &mut sim, at);
            if let Some(next) = next_wake(&generator, &sim, at) {
                wakes.push(Wake(std::cmp::Reverse((next, index))));
                sims.insert(index, sim);
            }
        }
    }
    generator.flush();
    let open = sims
        .values()
        .filter(|sim| sim.case.as_ref().is_some_and(|case| !case.state.is_final() && case.state != State::Closed))
        .count();
    Ok(DataSet {
        year,
        townships: reference.registry.regions().filter(|r| r.level == gridcase_reference::Level::Township).count(),
        grids: grids.len(),
        cases,
        events: generator.sequence,
        end: end.timestamp(),
        open,
        seconds: 0.0,
        events_by_type: generator.counts,
    })
}

/// What happens to a case at `now`: the dispatcher's due steps, then a
/// person's step if one is due, then the dispatcher's steps that follows.
fn advance(generator: &mut Generator<'_>, sim: &mut Sim, now: Timestamp) {
    generator.dispatcher_steps(sim, now);
    if let Some((at, command, actor)) = generator.people_next(sim)
        && at <= now
    {
        let before = sim.case.as_ref().map(|case| case.state);
        generator.people_step(sim, now, command, actor);
        if sim.case.as_ref().map(|case| case.state) != before {
            sim.since = now;
        }
        generator.dispatcher_steps(sim, now);
    }
}

/// When to look at the case again (none: nothing more will happen to it).
fn next_wake(generator: &Generator<'_>, sim: &Sim, now: Timestamp) -> Option<Timestamp> {
    let people = generator.people_next(sim).map(|(at, _, _)| at.max(now + SignedDuration::from_secs(1)));
    let dispatcher = sim.tracked.as_ref().and_then(|tracked| generator.core.next_wakeup(tracked, now));
    match (people, dispatcher) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
