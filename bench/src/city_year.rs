//! `city-year`: a year of a city's cases, written once into a JetStream store
//! of its own, then measured: the dispatcher's start from the whole stream
//! beside its start from the snapshot of open cases.
//!
//! The generator simulates the year hour by hour: filings arrive with
//! weekday and working-hour peaks; the dispatcher's steps are decided by the
//! dispatcher's own `Core` at the instants it would take them (register,
//! dispatch, deadlines, warnings, overdue marks, cards), with its event ids;
//! the people's steps (acknowledge, return, extension, resolve, verify,
//! feedback, reopen, cancel, registration and dispatch by hand) come from
//! `decide` at drawn delays, with intake's event ids. Every event is sealed
//! and chained as the case store seals it, with the same headers, and
//! written in atomic batches whose first message of each case carries its
//! expected per-subject sequence (a new case: none of its id anywhere).
//! Nothing else writes to the stream, so the stream sequences are known.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use gridcase_calendar::Calendar;
use gridcase_dispatcher::core::{Core, Tracked};
use gridcase_domain::{
    ActorRole, Case, CaseId, CategoryCode, Command, Event, Feedback, Filing, GridCode, Location, OrgCode, PersonName,
    PhoneNumber, ResidentContact, State, Text, Tier,
};
use gridcase_envelope::schema::{Actor, EventMeta};
use gridcase_envelope::{CaseSubject, StoredEvent};
use gridcase_eventlog::{EventLog, StreamSettings, cloudevents};
use gridcase_policy::Policy;
use gridcase_reference::Reference;
use gridcase_tests::{NatsServer, TestDispatcher};
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

/// What the generator wrote, kept beside the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DataSet {
    pub year: i16,
    pub townships: usize,
    pub grids: usize,
    pub cases: usize,
    pub events: u64,
    /// The instant the year ends: the clock of every measurement.
    pub end: Timestamp,
    /// Cases not closed, voided or cancelled at the end.
    pub open: usize,
    pub seconds: f64,
    pub events_by_type: std::collections::BTreeMap<String, u64>,
}

fn manifest(dir: &Path) -> PathBuf {
    dir.join("city-year.json")
}

pub(crate) fn store(dir: &Path) -> PathBuf {
    dir.join("nats")
}

fn reference_dir(dir: &Path) -> PathBuf {
    dir.join("reference")
}

/// A grid registry of `townships` townships of county 990101, each with two
/// villages of `grids` grids between them, and its command centres; the
/// shipped category taxonomy beside it.
fn write_reference(dir: &Path, townships: usize, grids: usize) -> anyhow::Result<Vec<GridCode>> {
    let out = reference_dir(dir);
    std::fs::create_dir_all(&out)?;
    let mut csv = String::from("code,level,name,parent,command_centre\n990101,county,示范市,,co-990101\n");
    let mut codes = Vec::new();
    for township in 1..=townships {
        let t = format!("990101{township:03}");
        csv.push_str(&format!("{t},township,第{township}街道,990101,cc-{t}\n"));
        for village in 1..=2 {
            let v = format!("{t}{village:03}");
            csv.push_str(&format!("{v},village,第{township}街道第{village}社区,{t},\n"));
            for grid in (village..=grids).step_by(2) {
                let g = format!("{v}{grid:03}");
                csv.push_str(&format!("{g},grid,第{township}街道第{grid}网格,{v},\n"));
                codes.push(GridCode::parse(&g).context("a generated grid code")?);
            }
        }
    }
    std::fs::write(out.join("regions.csv"), csv)?;
    let root = gridcase_tests::workspace_root();
    std::fs::copy(root.join("deploy/reference/categories.csv"), out.join("categories.csv"))?;
    Ok(codes)
}

/// The rules every service of the data set runs with (the shipped ones).
fn rules() -> gridcase_resources::PolicyArgs {
    let root = gridcase_tests::workspace_root();
    gridcase_resources::PolicyArgs {
        policy: root.join("deploy/policy/policy.toml"),
        calendar_dir: root.join("deploy/calendar"),
    }
}

pub struct Generate {
    pub dir: PathBuf,
    pub cases: usize,
    pub townships: usize,
    pub grids: usize,
    pub year: i16,
    pub seed: u64,
}

/// One message of the stream, as the case store would write it.
struct Message {
    subject: String,
    headers: async_nats::HeaderMap,
    payload: Bytes,
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
    /// the status's start to its deadline): most well within it, some late.
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
    /// When the case entered its present status.
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

    /// Seal `event` after the case's head and add it to the batch being
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
        // A share of the time from the status's start to the clock's deadline.
        let within = |clock: gridcase_domain::Clock, share: f64, otherwise: i64| match case.deadlines.get(&clock) {
            Some(due) if *due > sim.since => {
                sim.since + SignedDuration::from_secs_f64(due.duration_since(sim.since).as_secs_f64() * share)
            }
            _ => minutes(otherwise),
        };
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

pub async fn generate(options: Generate) -> anyhow::Result<()> {
    let Generate { dir, cases, townships, grids, year, seed } = options;
    anyhow::ensure!(!store(&dir).exists(), "{} holds a data set already: remove it first", dir.display());
    std::fs::create_dir_all(&dir)?;
    let grid_codes = write_reference(&dir, townships, grids)?;
    let nats = NatsServer::start_with_store(&store(&dir));
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    println!(
        "generating {cases} cases of {year} over {townships} townships ({} grids) into {} (nats-server {})",
        grid_codes.len(),
        dir.display(),
        crate::nats_version()
    );
    let started = Instant::now();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Message>>(4);
    let dir_for_thread = dir.clone();
    let generator = std::thread::spawn(move || simulate(&dir_for_thread, cases, year, seed, grid_codes, sender));

    let js = log.context().clone();
    let mut written = 0u64;
    let mut last_report = Instant::now();
    while let Some(batch) = receiver.recv().await {
        written += batch.len() as u64;
        publish(&js, batch).await?;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            println!("  {written} events in {seconds:.0} s ({:.0} events/s)", written as f64 / seconds);
        }
    }
    let mut data_set = generator.join().map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    data_set.seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(log.last_sequence().await? == data_set.events, "the stream holds what was generated");
    std::fs::write(manifest(&dir), serde_json::to_vec_pretty(&data_set)?)?;
    let bytes = dir_size(&store(&dir));
    println!(
        "generated {} cases, {} events in {:.0} s ({:.0} events/s), {:.1} GiB on disk; {} open at the end ({:.1} %)",
        data_set.cases,
        data_set.events,
        data_set.seconds,
        data_set.events as f64 / data_set.seconds,
        bytes as f64 / (1u64 << 30) as f64,
        data_set.open,
        100.0 * data_set.open as f64 / data_set.cases as f64
    );
    for (kind, count) in &data_set.events_by_type {
        println!("  {kind:<24} {count:>10}");
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One atomic batch: the last message commits it and is answered.
async fn publish(js: &async_nats::jetstream::Context, batch: Vec<Message>) -> anyhow::Result<()> {
    let client = js.client();
    let id = Uuid::new_v4().simple().to_string();
    let total = batch.len();
    for (index, Message { subject, mut headers, payload }) in batch.into_iter().enumerate() {
        headers.insert(async_nats::header::NATS_BATCH_ID, id.as_str());
        headers.insert(async_nats::header::NATS_BATCH_SEQUENCE, (index + 1).to_string().as_str());
        if index + 1 < total {
            client.publish_with_headers(subject, headers, payload).await?;
        } else {
            headers.insert(async_nats::header::NATS_BATCH_COMMIT, "1");
            let message = async_nats::jetstream::message::PublishMessage::build().payload(payload).headers(headers);
            let ack = js.send_publish(subject, message).await?.await.context("a batch refused")?;
            anyhow::ensure!(
                ack.batch_size == Some(total as u64),
                "batch of {total} acknowledged as {:?}",
                ack.batch_size
            );
        }
    }
    Ok(())
}

/// The year, simulated on this thread; batches go to the publisher.
fn simulate(
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
            });
            let description = descriptions[generator.rng.usize(..descriptions.len())];
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
            };
            let worker = Actor {
                person: format!("gw-{township}-{:02}", generator.rng.usize(..workers_per_township)),
                role: ActorRole::GridWorker,
                organisation: format!("cc-{township}"),
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

pub struct Measure {
    pub dir: PathBuf,
}

pub(crate) fn load_manifest(dir: &Path) -> anyhow::Result<DataSet> {
    let text = std::fs::read(manifest(dir))
        .with_context(|| format!("no data set in {}: run city-year generate", dir.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned()))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One start of the dispatcher on the data set.
#[derive(Debug)]
pub struct Start {
    /// Steps it appended (0: the data set already holds every step it takes).
    pub steps: u64,
    /// The sequence it resumed from (none: it read the whole stream).
    pub resumed_from: Option<u64>,
}

/// The dispatcher on the data set: a start that reads the whole stream, then
/// (after it stopped and saved its snapshot) a start from the snapshot.
pub async fn dispatcher(options: Measure) -> anyhow::Result<Vec<Start>> {
    let data = load_manifest(&options.dir)?;
    let nats = NatsServer::start_with_store(&store(&options.dir));
    println!(
        "data set: {} cases, {} events of {} over {} townships; {} open at the end; clock at {}",
        data.cases, data.events, data.year, data.townships, data.open, data.end
    );
    let clock = gridcase_process::ManualTimeSource::new(data.end);
    let config = |bucket: &str| {
        let mut config = TestDispatcher::config(&nats.url());
        config.reference_dir = reference_dir(&options.dir);
        config.snapshot_bucket = bucket.to_owned();
        config.tick = Duration::from_millis(200);
        config
    };
    // A bucket of this run's own: the first start finds no snapshot.
    let bucket = format!("bench-{}", Uuid::new_v4().simple());
    let mut rows = Vec::new();
    for start in ["cold (whole stream)", "warm (snapshot)"] {
        let rss_before = peak_rss_mib();
        let started = Instant::now();
        let mut dispatcher = TestDispatcher::spawn_with(config(&bucket), Arc::new(clock.clone())).await;
        dispatcher.settled_within(data.end, &nats, Duration::from_secs(3600)).await;
        let ready = started.elapsed();
        let steps = gridcase_tests::stream_end(&nats).await - data.events;
        let resumed = dispatcher.snapshots().resumed_from;
        let stop_started = Instant::now();
        dispatcher.stop().await?;
        let stop = stop_started.elapsed();
        rows.push((start, ready, steps, resumed, stop, rss_before, peak_rss_mib()));
    }
    println!(
        "\n{:<22} {:>16} {:>8} {:>14} {:>16} {:>14}",
        "start", "to all armed, s", "steps", "resumed from", "stop + save, s", "peak RSS, MiB"
    );
    for (start, ready, steps, resumed, stop, _, rss) in &rows {
        println!(
            "{start:<22} {:>16.2} {:>8} {:>14} {:>16.2} {:>14.0}",
            ready.as_secs_f64(),
            steps,
            resumed.map_or("-".to_owned(), |s| s.to_string()),
            stop.as_secs_f64(),
            rss
        );
    }
    println!(
        "\n'to all armed': from start until the dispatcher has read the stream to its end and looked at every open case at the year's end \
         (every step due taken, every wake-up set). 'steps': what it appended: 0 means the generated history is what the dispatcher itself writes. \
         Peak RSS is the benchmark process's high-water mark (it only grows)."
    );
    Ok(rows.into_iter().map(|(_, _, steps, resumed_from, ..)| Start { steps, resumed_from }).collect())
}

/// The write path's reads on the data set: how long loading a case (find its
/// subject from its id, read its history, fold it) takes after a year of
/// history, beside a raw read of one message by stream sequence.
pub async fn reads(options: Measure, samples: usize) -> anyhow::Result<()> {
    let data = load_manifest(&options.dir)?;
    let started = Instant::now();
    let nats = NatsServer::start_with_store(&store(&options.dir));
    println!("nats-server ready on the data set in {:.1} s", started.elapsed().as_secs_f64());
    let log = EventLog::open(nats.client().await, StreamSettings::default()).await?;
    let store = gridcase_eventlog::store::CaseStore::new(log.clone());
    let mut rng = fastrand::Rng::with_seed(7);
    let mut raw = Vec::with_capacity(samples);
    let mut subjects = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sequence = rng.u64(1..=data.events);
        let started = Instant::now();
        let mark = log.mark_at(sequence).await?.context("a message at every sequence")?;
        raw.push(started.elapsed());
        subjects.push(CaseSubject::from_subject(&mark.subject).context("a case subject")?);
    }
    let (mut locate, mut history, mut events) = (Vec::new(), Vec::new(), 0usize);
    for subject in &subjects {
        let case_id = subject.case_id();
        let started = Instant::now();
        anyhow::ensure!(log.locate(&case_id).await?.as_ref() == Some(subject), "located");
        locate.push(started.elapsed());
        let started = Instant::now();
        let loaded = store.load_subject(case_id, subject.clone()).await?.context("a filed case")?;
        history.push(started.elapsed());
        events += loaded.history.len();
    }
    let figures = |label: &'static str, latencies: Vec<Duration>| crate::Figures {
        label,
        count: latencies.len(),
        elapsed: latencies.iter().sum(),
        latencies,
    };
    println!(
        "{} random cases of {} events in all ({:.1} events per case), one read at a time:\n",
        samples,
        data.events,
        events as f64 / samples as f64
    );
    println!("{:<34} {:>8} {:>10} {:>10} {:>10} {:>10}", "read", "count", "per sec", "p50 ms", "p99 ms", "max ms");
    figures("raw: one message by sequence", raw).print();
    figures("locate a case by id (wildcard)", locate).print();
    figures("load a case (history + fold)", history).print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small year, generated and then read by the dispatcher at the
    /// year's end: it finds every step it would take already taken (the
    /// generated history is what it writes itself), from the whole stream
    /// and from its snapshot alike; every case's chain verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dispatcher_finds_a_generated_year_complete() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("year");
        generate(Generate { dir: data.clone(), cases: 400, townships: 3, grids: 4, year: 2025, seed: 11 })
            .await
            .unwrap();
        let set = load_manifest(&data).unwrap();
        assert_eq!(set.cases, 400);
        assert!(set.events > 400 * 6, "every case has its lifecycle: {} events", set.events);
        for kind in ["registered", "dispatched", "acknowledged", "resolved", "verification_passed", "deadline_set"] {
            assert!(set.events_by_type.get(kind).is_some_and(|n| *n > 0), "{kind}: {:?}", set.events_by_type);
        }

        let starts = dispatcher(Measure { dir: data.clone() }).await.unwrap();
        assert_eq!(starts.len(), 2);
        assert_eq!((starts[0].steps, starts[0].resumed_from), (0, None), "whole stream: {starts:?}");
        assert_eq!((starts[1].steps, starts[1].resumed_from), (0, Some(set.events)), "from the snapshot: {starts:?}");

        let nats = NatsServer::start_with_store(&store(&data));
        let log = EventLog::open(nats.client().await, StreamSettings::default()).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        for sequence in (1..=set.events).step_by(97) {
            let mark = log.mark_at(sequence).await.unwrap().unwrap();
            if seen.insert(mark.subject.clone()) {
                let subject = CaseSubject::from_subject(&mark.subject).unwrap();
                let history = log.history(&subject).await.unwrap();
                gridcase_envelope::verify_history(&history).unwrap();
            }
        }
        assert!(seen.len() > 10);
    }
}
