//! The commands that file cases and move them through their lifecycle.

use std::path::PathBuf;

use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake;

use crate::client::Connection;
use crate::output;

/// Options every lifecycle command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The case id (UUID v7).
    case_id: String,

    /// The command id; reuse the one printed by a failed attempt to retry it safely. Default: a new UUID.
    #[arg(long)]
    command_id: Option<String>,

    /// The case version you last saw: refuse (ABORTED) if the case has moved on since.
    #[arg(long)]
    expected_version: Option<u64>,
}

/// The command id this run sends, so a failure can say how to retry it.
static COMMAND_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Target {
    fn context(&self) -> Option<api::CommandContext> {
        let command_id =
            COMMAND_ID.get_or_init(|| self.command_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string()));
        Some(api::CommandContext {
            case_id: self.case_id.clone(),
            command_id: command_id.clone(),
            expected_version: self.expected_version,
        })
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Tier {
    Critical,
    Urgent,
    Normal,
    Complex,
}

impl Tier {
    fn proto(self) -> common::Tier {
        match self {
            Tier::Critical => common::Tier::Critical,
            Tier::Urgent => common::Tier::Urgent,
            Tier::Normal => common::Tier::Normal,
            Tier::Complex => common::Tier::Complex,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Feedback {
    Satisfied,
    BasicallySatisfied,
    Unsatisfied,
}

impl Feedback {
    fn proto(self) -> common::Feedback {
        match self {
            Feedback::Satisfied => common::Feedback::Satisfied,
            Feedback::BasicallySatisfied => common::Feedback::BasicallySatisfied,
            Feedback::Unsatisfied => common::Feedback::Unsatisfied,
        }
    }
}

/// A kind of request as typed (consultation, help, complaint, report,
/// suggestion, praise), read by the domain's own parser.
fn request_kind(text: &str) -> Result<gridcase_domain::RequestKind, String> {
    gridcase_domain::RequestKind::parse(text).ok_or_else(|| {
        let kinds: Vec<String> = gridcase_domain::RequestKind::ALL.iter().map(|k| k.as_str().to_lowercase()).collect();
        format!("one of {}", kinds.join(", "))
    })
}

/// How a resident was answered.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReplyMethod {
    Phone,
    Sms,
    InPerson,
    /// Through the partner system the request came from (an Open311 update).
    Partner,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Level {
    Normal,
    YellowCard,
    RedCard,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// File a case as a grid worker (uploading photos first).
    File {
        /// 15-digit grid or 17-digit micro-grid code.
        #[arg(long)]
        grid: String,
        /// 4-digit category code.
        #[arg(long)]
        category: String,
        /// What was seen.
        #[arg(long)]
        description: String,
        #[arg(long, allow_negative_numbers = true)]
        latitude: f64,
        #[arg(long, allow_negative_numbers = true)]
        longitude: f64,
        #[arg(long, default_value = "")]
        address: String,
        /// Raise the tier (never lowers it).
        #[arg(long, value_enum)]
        severity: Option<Tier>,
        #[arg(long)]
        contact_name: Option<String>,
        #[arg(long)]
        contact_phone: Option<String>,
        /// A photo to attach (repeatable): .jpg, .png, .webp, .heic or .mp4.
        #[arg(long = "photo")]
        photos: Vec<PathBuf>,
        /// The case id; reuse it to retry a filing safely. Default: a new UUID v7.
        #[arg(long)]
        case_id: Option<String>,
        /// A resident's request of this kind (诉求类型): it is then answered
        /// and called back on their clocks.
        #[arg(long, value_parser = request_kind)]
        request_kind: Option<gridcase_domain::RequestKind>,
    },
    /// 立案: accept a reported case.
    Register {
        #[command(flatten)]
        target: Target,
        /// The tier; default: the one the dispatch policy gives the case.
        #[arg(long, value_enum)]
        tier: Option<Tier>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 不予立案: not a case (duplicate, out of scope, false report).
    Void {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// 派遣: dispatch a registered case to a handling unit (deadlines by policy).
    Dispatch {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        unit: String,
    },
    /// 签收: the handling unit acknowledges.
    Acknowledge {
        #[command(flatten)]
        target: Target,
    },
    /// 退回: the unit returns a wrongly routed case.
    Return {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// 改派: move a dispatched, unacknowledged case to another unit.
    Reassign {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        reason: String,
    },
    /// Add a note and photos.
    Progress {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        note: String,
        #[arg(long = "photo")]
        photos: Vec<PathBuf>,
    },
    /// Another report of the same problem on an open case of your grids
    /// (found with `gridctl similar`), instead of filing a duplicate.
    Report {
        #[command(flatten)]
        target: Target,
        /// What you add; optional.
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long = "photo")]
        photos: Vec<PathBuf>,
        /// Where you stand (with --longitude).
        #[arg(long, allow_negative_numbers = true, requires = "longitude")]
        latitude: Option<f64>,
        #[arg(long, allow_negative_numbers = true, requires = "latitude")]
        longitude: Option<f64>,
    },
    /// 并案: merge a duplicate (the case id given) into a main case, which
    /// goes on with the duplicate's reports, reporters and photos.
    Merge {
        #[command(flatten)]
        target: Target,
        /// The main case.
        #[arg(long)]
        into: String,
        #[arg(long)]
        reason: String,
    },
    /// 延期申请: ask for more working days.
    RequestExtension {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        days: u32,
        #[arg(long)]
        reason: String,
    },
    /// Approve (--approve N) or reject (--reject --reason …) an extension.
    DecideExtension {
        #[command(flatten)]
        target: Target,
        /// Working days granted (at most those requested).
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: Option<u32>,
        /// Reject it (give --reason).
        #[arg(long)]
        reject: bool,
        /// Why (required when rejecting).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 挂账/缓办: ask to put the case on hold.
    RequestHold {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// Approve or reject (--reject --reason …) a hold.
    DecideHold {
        #[command(flatten)]
        target: Target,
        /// Approve the hold: the resolve clock pauses.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Reject it (give --reason).
        #[arg(long)]
        reject: bool,
        /// Why (required when rejecting).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume work after a hold.
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// 办结: report the case done, with evidence.
    Resolve {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        summary: String,
        #[arg(long = "photo")]
        photos: Vec<PathBuf>,
    },
    /// 核查: pass (closes) or send back for rework (--rework --reason …).
    Verify {
        #[command(flatten)]
        target: Target,
        /// Verification passed: close the case.
        #[arg(long, conflicts_with = "rework", required_unless_present = "rework")]
        pass: bool,
        /// Send it back for rework (give --reason).
        #[arg(long)]
        rework: bool,
        /// Why (required for rework).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// 评价: record the resident's satisfaction with a closed case.
    Feedback {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum)]
        feedback: Feedback,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// 答复: record the answer given to the resident of a resident's request.
    Reply {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum)]
        method: ReplyMethod,
        /// What the resident was told.
        #[arg(long)]
        text: String,
    },
    /// 回访: record a callback after closure (reached or not; when reached,
    /// the resident's satisfaction, and why when unsatisfied).
    Callback {
        #[command(flatten)]
        target: Target,
        /// The resident was not reached this time.
        #[arg(long)]
        not_reached: bool,
        /// Attempts so far, this one included.
        #[arg(long, default_value_t = 1)]
        attempts: u32,
        #[arg(long, value_enum, required_unless_present = "not_reached")]
        satisfaction: Option<Feedback>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reopen a closed case after unsatisfied feedback.
    Reopen {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// 撤销: withdraw the case.
    Cancel {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// Erase the resident's contact details (on their request, PIPL):
    /// destroys the case's data key. Command centre or county.
    EraseResidentData {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// 督办: raise the supervision level.
    Supervise {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum)]
        level: Level,
        #[arg(long)]
        reason: String,
    },
    /// 加急: set (--on) or clear (--off) the urgent flag.
    Urgent {
        #[command(flatten)]
        target: Target,
        /// Set the flag.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        /// Clear the flag.
        #[arg(long)]
        off: bool,
        /// Why (optional).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show a case: state, tier, unit, deadlines, counts.
    Show {
        /// The case id.
        case_id: String,
    },
    /// Show every event of a case: who, when, why; the hash chain verified.
    History {
        /// The case id.
        case_id: String,
    },
}

fn now_proto() -> prost_types::Timestamp {
    let now = jiff::Timestamp::now();
    prost_types::Timestamp { seconds: now.as_second(), nanos: now.subsec_nanosecond() }
}

pub async fn run(command: Command, connection: &Connection, json: bool) -> anyhow::Result<()> {
    let mut cases = connection.cases().await?;
    let c = connection;
    let result = match command {
        Command::File {
            grid,
            category,
            description,
            latitude,
            longitude,
            address,
            severity,
            contact_name,
            contact_phone,
            photos,
            case_id,
            request_kind,
        } => {
            let attachments = crate::upload::photos(c, &photos).await?;
            let case_id = case_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let resident_contact =
                (contact_name.is_some() || contact_phone.is_some()).then(|| intake::ResidentContact {
                    name: contact_name.unwrap_or_default(),
                    phone: contact_phone.unwrap_or_default(),
                    ..Default::default()
                });
            let request = intake::FileCaseRequest {
                case_id: case_id.clone(),
                grid_code: grid,
                category_code: category,
                description,
                location: Some(common::Location { latitude, longitude, address }),
                reported_at: Some(now_proto()),
                severity_hint: severity.map(|t| t.proto() as i32),
                resident_contact,
                attachments,
                request_kind: gridcase_proto::convert::request_kind_to_proto(request_kind) as i32,
                ..Default::default()
            };
            let receipt = c.intake().await?.file_case(c.request(request)?).await.map_err(output::refusal)?.into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "case_id": receipt.case_id, "stream_sequence": receipt.stream_sequence, "replayed": receipt.replayed })
                );
            } else {
                let replayed = if receipt.replayed { " (retry: the original receipt)" } else { "" };
                println!("filed case {} (stream sequence {}){replayed}", receipt.case_id, receipt.stream_sequence);
            }
            return Ok(());
        }
        Command::Show { case_id } => {
            let view = cases.get_case(c.request(api::GetCaseRequest { case_id })?).await.map_err(output::refusal)?;
            output::case_view(view.get_ref(), json);
            return Ok(());
        }
        Command::History { case_id } => {
            let history =
                cases.get_history(c.request(api::GetHistoryRequest { case_id })?).await.map_err(output::refusal)?;
            output::history(history.get_ref(), json);
            return Ok(());
        }
        Command::Register { target, tier, note } => {
            cases
                .register(c.request(api::RegisterRequest {
                    context: target.context(),
                    tier: tier.map_or(0, |tier| tier.proto() as i32),
                    note,
                })?)
                .await
        }
        Command::Void { target, reason } => {
            cases.void(c.request(api::VoidRequest { context: target.context(), reason })?).await
        }
        Command::Dispatch { target, unit } => {
            cases.dispatch(c.request(api::DispatchRequest { context: target.context(), unit })?).await
        }
        Command::Acknowledge { target } => {
            cases.acknowledge(c.request(api::AcknowledgeRequest { context: target.context() })?).await
        }
        Command::Return { target, reason } => {
            cases.r#return(c.request(api::ReturnRequest { context: target.context(), reason })?).await
        }
        Command::Reassign { target, unit, reason } => {
            cases.reassign(c.request(api::ReassignRequest { context: target.context(), unit, reason })?).await
        }
        Command::Progress { target, note, photos } => {
            let attachments = crate::upload::photos(c, &photos).await?;
            cases
                .add_progress(c.request(api::AddProgressRequest { context: target.context(), note, attachments })?)
                .await
        }
        Command::Report { target, note, photos, latitude, longitude } => {
            let attachments = crate::upload::photos(c, &photos).await?;
            let location = latitude.zip(longitude).map(|(latitude, longitude)| common::Location {
                latitude,
                longitude,
                address: String::new(),
            });
            let message = api::AddReportRequest {
                context: target.context(),
                reported_at: Some(now_proto()),
                location,
                note,
                attachments,
            };
            cases.add_report(c.request(message)?).await
        }
        Command::Merge { target, into, reason } => {
            cases.merge(c.request(api::MergeRequest { context: target.context(), into_case_id: into, reason })?).await
        }
        Command::RequestExtension { target, days, reason } => {
            let message = api::RequestExtensionRequest { context: target.context(), working_days: days, reason };
            cases.request_extension(c.request(message)?).await
        }
        Command::DecideExtension { target, approve, reject: _, reason } => {
            let message = api::DecideExtensionRequest {
                context: target.context(),
                approve: approve.is_some(),
                approved_working_days: approve.unwrap_or(0),
                reason,
            };
            cases.decide_extension(c.request(message)?).await
        }
        Command::RequestHold { target, reason } => {
            cases.request_hold(c.request(api::RequestHoldRequest { context: target.context(), reason })?).await
        }
        Command::DecideHold { target, approve, reject: _, reason } => {
            cases.decide_hold(c.request(api::DecideHoldRequest { context: target.context(), approve, reason })?).await
        }
        Command::Resume { target } => cases.resume(c.request(api::ResumeRequest { context: target.context() })?).await,
        Command::Resolve { target, summary, photos } => {
            let evidence = crate::upload::photos(c, &photos).await?;
            cases.resolve(c.request(api::ResolveRequest { context: target.context(), summary, evidence })?).await
        }
        Command::Verify { target, pass, rework: _, reason } => {
            cases.verify(c.request(api::VerifyRequest { context: target.context(), passed: pass, reason })?).await
        }
        Command::Feedback { target, feedback, comment } => {
            let feedback = feedback.proto();
            let message = api::RecordFeedbackRequest { context: target.context(), feedback: feedback as i32, comment };
            cases.record_feedback(c.request(message)?).await
        }
        Command::Reply { target, method, text } => {
            let method = match method {
                ReplyMethod::Phone => common::ReplyMethod::Phone,
                ReplyMethod::Sms => common::ReplyMethod::Sms,
                ReplyMethod::InPerson => common::ReplyMethod::InPerson,
                ReplyMethod::Partner => common::ReplyMethod::Partner,
            };
            let message = api::ReplyRequest { context: target.context(), method: method as i32, text };
            cases.reply(c.request(message)?).await
        }
        Command::Callback { target, not_reached, attempts, satisfaction, reason } => {
            let message = api::RecordCallbackRequest {
                context: target.context(),
                reached: !not_reached,
                attempts,
                satisfaction: satisfaction.map_or(common::Feedback::Unspecified, Feedback::proto) as i32,
                reason,
            };
            cases.record_callback(c.request(message)?).await
        }
        Command::Reopen { target, reason } => {
            cases.reopen(c.request(api::ReopenRequest { context: target.context(), reason })?).await
        }
        Command::Cancel { target, reason } => {
            cases.cancel(c.request(api::CancelRequest { context: target.context(), reason })?).await
        }
        Command::EraseResidentData { target, reason } => {
            let message = api::EraseResidentDataRequest { context: target.context(), reason };
            cases.erase_resident_data(c.request(message)?).await
        }
        Command::Supervise { target, level, reason } => {
            let level = match level {
                Level::Normal => common::Supervision::Normal,
                Level::YellowCard => common::Supervision::YellowCard,
                Level::RedCard => common::Supervision::RedCard,
            };
            let message = api::SuperviseRequest { context: target.context(), level: level as i32, reason };
            cases.supervise(c.request(message)?).await
        }
        Command::Urgent { target, on, off: _, reason } => {
            cases.set_urgent(c.request(api::SetUrgentRequest { context: target.context(), urgent: on, reason })?).await
        }
    };
    let result = result
        .map_err(|status| {
            let retryable = matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            );
            let error = output::refusal(status);
            match COMMAND_ID.get() {
                Some(id) if retryable => {
                    error.context(format!("to retry safely, run the same command with --command-id {id}"))
                }
                _ => error,
            }
        })?
        .into_inner();
    output::command_result(&result, json);
    Ok(())
}
