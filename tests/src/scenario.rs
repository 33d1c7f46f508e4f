//! Cases set up the way a test reads: `given(&log, GRID).at(t).filed("0101")`
//! then `.registered()`, `.dispatched_to(UNIT, ack_due, resolve_due)`,
//! `.acknowledged()`, `.resolved("…")`, `.verified()`, `.returned("…")`, or
//! any command by anyone with `.by(...)`; each step goes through the case
//! store at the scenario's clock, as the services would record it.

use gridcase_domain::{
    ActorRole, CaseId, CategoryCode, Command, Deadlines, Filing, GridCode, Location, OrgCode, Text, Tier,
};
use gridcase_envelope::CaseSubject;
use gridcase_eventlog::EventLog;
use jiff::Timestamp;

use crate::act;

/// One case on its way through its lifecycle.
pub struct Scenario<'a> {
    log: &'a EventLog,
    pub id: CaseId,
    pub subject: CaseSubject,
    /// Known for a case the scenario files.
    grid: Option<GridCode>,
    township: String,
    at: Timestamp,
    unit: Option<OrgCode>,
}

/// A new case (not yet filed) in `grid`, at the current instant until `at` says otherwise.
pub fn given<'a>(log: &'a EventLog, grid: &str) -> Scenario<'a> {
    let id = CaseId::new_v7();
    let grid = GridCode::parse(grid).expect("a grid code");
    let (subject, township) = (CaseSubject::for_grid(&grid, &id), grid.township().to_string());
    Scenario { log, id, subject, grid: Some(grid), township, at: Timestamp::now(), unit: None }
}

/// A case already in the log (filed through intake, say).
pub fn given_case<'a>(log: &'a EventLog, subject: &CaseSubject) -> Scenario<'a> {
    let (township, id) = CaseSubject::parse(subject.as_str()).expect("a case subject");
    Scenario { log, id, subject: subject.clone(), grid: None, township, at: Timestamp::now(), unit: None }
}

/// A filing of `category` in `grid` reported at `at`.
pub fn filing(case_id: CaseId, grid: &str, category: &str, at: Timestamp) -> Command {
    Command::File(Filing {
        case_id,
        grid: GridCode::parse(grid).expect("a grid code"),
        category: CategoryCode::parse(category).expect("a category code"),
        description: Text::reason("测试事件").expect("text"),
        location: Location::from_degrees(30.27, 120.15, None).expect("a location"),
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

fn text(s: &str) -> Text {
    Text::reason(s).expect("text")
}

impl<'a> Scenario<'a> {
    /// The following steps happen at `at`.
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// The township's command centre (its organisation code).
    pub fn centre(&self) -> String {
        format!("cc-{}", self.township)
    }

    /// `role` of `organisation` does `command` now; panics if the rules refuse.
    pub async fn by(self, command: Command, role: ActorRole, organisation: &str) -> Self {
        let name = command.name();
        act::command(self.log, &self.subject, command, role, organisation, self.at)
            .await
            .unwrap_or_else(|e| panic!("{name} in the scenario was refused: {e:#}"));
        self
    }

    /// The township's command centre does `command` now.
    pub async fn by_centre(self, command: Command) -> Self {
        let centre = self.centre();
        self.by(command, ActorRole::CommandCentre, &centre).await
    }

    /// The unit the case is dispatched to does `command` now.
    pub async fn by_unit(self, command: Command) -> Self {
        let unit = self.unit.clone().expect("the case was dispatched in the scenario");
        self.by(command, ActorRole::HandlingUnit, unit.as_str()).await
    }

    pub async fn filed(self, category: &str) -> Self {
        let grid = self.grid.clone().expect("a case the scenario files: given(log, grid)");
        let (command, centre) = (filing(self.id, grid.as_str(), category, self.at), self.centre());
        self.by(command, ActorRole::GridWorker, &centre).await
    }

    pub async fn registered(self) -> Self {
        self.by_centre(Command::Register { tier: Tier::Normal, note: None, policy: None }).await
    }

    pub async fn dispatched_to(mut self, unit: &str, acknowledge_due: Timestamp, resolve_due: Timestamp) -> Self {
        let unit = OrgCode::parse(unit).expect("a unit code");
        self.unit = Some(unit.clone());
        let deadlines = Deadlines { acknowledge_due, resolve_due, basis: None };
        self.by_centre(Command::Dispatch { unit, deadlines }).await
    }

    pub async fn acknowledged(self) -> Self {
        self.by_unit(Command::Acknowledge).await
    }

    pub async fn returned(self, reason: &str) -> Self {
        self.by_unit(Command::Return { reason: text(reason) }).await
    }

    pub async fn resolved(self, summary: &str) -> Self {
        self.by_unit(Command::Resolve { summary: text(summary), evidence: vec![] }).await
    }

    pub async fn verified(self) -> Self {
        self.by_centre(Command::Verify { passed: true, reason: None }).await
    }

    pub async fn voided(self, reason: &str) -> Self {
        self.by_centre(Command::Void { reason: text(reason) }).await
    }
}
