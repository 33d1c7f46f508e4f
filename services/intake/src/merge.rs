//! 并案: what a duplicate brings to the case it is merged into: how many
//! reports it has (its filing and those added to it, and any it absorbed
//! itself), who reported them, and every photo of its history, each once.
//! Pure: read off the duplicate's loaded history, so a retried merge asks
//! for the very same thing.

use gridcase_domain::{AttachmentRef, Event};
use gridcase_eventlog::store::Loaded;

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
