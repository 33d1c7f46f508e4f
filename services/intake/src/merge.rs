//! 并案: what a duplicate brings to the case it is merged into: how many
//! reports it has (its filing and those added to it, and any it absorbed
//! itself), who reported them, and every photo of its history, each once.
//! `brought` is pure: read off the duplicate's loaded history, so a
//! retried merge asks for the very same thing; `CaseApi::merge_cases`
//! records the merge on both cases.

use gridcase_domain::{AttachmentRef, Command, Event};
use gridcase_eventlog::store::Loaded;
use gridcase_grpc::Access;
use gridcase_proto::cases::v1 as api;
use tonic::{Response, Status};

use crate::CaseApi;
use crate::cases::refused;
use crate::requests::{Context, MergeRecord};

pub(crate) struct Brought {
    pub reports: u32,
    pub reporters: Vec<String>,
    pub attachments: Vec<AttachmentRef>,
}

pub(crate) fn brought(duplicate: &Loaded) -> Brought {
    let mut reporters: Vec<String> = Vec::new();
    let mut attachments: Vec<AttachmentRef> = Vec::new();
    for positioned in &duplicate.history {
        let Ok(event) = positioned.event.decode() else { continue };
        let reported_by: Vec<String> = match &event {
            Event::Filed(_) | Event::ReportAdded { .. } => vec![positioned.event.actor.person.clone()],
            Event::DuplicateMerged { reporters, .. } => reporters.clone(),
            _ => vec![],
        };
        for person in reported_by {
            if !reporters.contains(&person) {
                reporters.push(person);
            }
        }
        for attachment in event.attachments() {
            if !attachments.iter().any(|a| a.sha256 == attachment.sha256) {
                attachments.push(attachment.clone());
            }
        }
    }
    Brought { reports: 1 + duplicate.case.added_reports, reporters, attachments }
}

impl CaseApi {
    /// `CaseService.Merge`: the main case records what the duplicate brings,
    /// then the duplicate is merged into it; each through `execute`, with a
    /// command id of its own.
    pub(crate) async fn merge_cases(
        &self,
        access: &Access,
        record: MergeRecord,
    ) -> Result<Response<api::CommandResult>, Status> {
        let MergeRecord { ctx, into, reason } = record;
        let duplicate = self.load_for(access, &ctx.case_id).await?;
        // The main case must be the caller's to see too (NOT_FOUND alike).
        self.load_for(access, &into).await?;
        // A duplicate merged (or closed) by another command: refused before
        // the main case records anything.
        if duplicate.command(&ctx.command_id).is_none() {
            let merge = Command::MergeInto { into, reason: reason.clone() };
            gridcase_domain::decide(Some(&duplicate.case), &merge, self.clock.now())
                .map_err(|e| refused(&ctx.case_id, &e))?;
        }
        let brought = brought(&duplicate);
        // The main case first: a merge cut short leaves the duplicate open,
        // and the same command again completes it.
        let main = Context { case_id: into, command_id: format!("{}:main", ctx.command_id), expected_version: None };
        let duplicate_id = ctx.case_id;
        self.execute(access, main, &["duplicate_merged"], |_, _| {
            Ok(Command::AbsorbDuplicate {
                duplicate: duplicate_id,
                reports: brought.reports,
                reporters: brought.reporters.clone(),
                attachments: brought.attachments.clone(),
            })
        })
        .await?;
        self.execute(access, ctx, &["merged_into"], |_, _| Ok(Command::MergeInto { into, reason: reason.clone() }))
            .await
    }
}
