//! How gridcase's states and events read in Open311, decided once.
//!
//! A request's `status` is GeoReport v2's `open` or `closed`: closed once
//! the case is closed after verification (结案), voided (不予立案) or
//! cancelled (撤销); open otherwise. `status_notes` says which, in Chinese.
//!
//! An update's `status` uses FixMyStreet's extended vocabulary, so that
//! FixMyStreet shows the right state:
//!
//! | gridcase event | update status | why |
//! |---|---|---|
//! | filed | OPEN | received, not yet accepted |
//! | registered, returned | INVESTIGATING | accepted (立案); a unit is being chosen (again) |
//! | dispatched, reassigned, hold_approved | ACTION_SCHEDULED | a unit has it with a deadline; or it waits on hold (挂账) |
//! | acknowledged, resumed, extension_approved, resolved, verification_failed, reopened | IN_PROGRESS | being worked on |
//! | verification_passed | FIXED | the centre verified the work: solved, closed |
//! | voided, cancelled | NO_FURTHER_ACTION | never "fixed" or "closed" (FixMyStreet reads a bare CLOSED as fixed when it does not use extended statuses) |
//!
//! A case the unit reports done (`resolved`) is **not** FIXED: the command
//! centre still verifies it, and a failed verification sends it back to
//! work (返工). Telling a resident "fixed" and then "in progress" again
//! would be worse than telling them "done, being checked" once.

use gridcase_domain::State;

/// GeoReport v2's `status` of a request in this state.
pub fn request_status(state: State) -> &'static str {
    match state {
        State::Closed | State::Voided | State::Cancelled => "closed",
        _ => "open",
    }
}

/// What a resident reads about a case in this state.
pub fn state_note(state: State) -> &'static str {
    match state {
        State::Reported => "已收到您的诉求，等待受理",
        State::Registered => "已受理（立案），正在安排处置单位",
        State::Voided => "经核查不予立案",
        State::Dispatched => "已派遣至处置单位，等待签收",
        State::InProgress => "处置单位正在处置",
        State::OnHold => "暂缓处置（挂账）",
        State::Resolved => "处置单位已办结，等待核查",
        State::Closed => "经核查问题已解决，已结案",
        State::Cancelled => "诉求已撤销",
    }
}

/// An update's status and sentence for a change, or for an answer given
/// through the partner system: the answer's text, under the status of the
/// change before it (where the case stood when it was answered).
pub fn update_of(event_type: &str, unit: &str, reason: &str, state_event: &str) -> Option<(&'static str, String)> {
    if event_type == "replied" {
        let status = update(state_event, "", "").map_or("OPEN", |(status, _)| status);
        return Some((status, format!("答复：{reason}")));
    }
    update(event_type, unit, reason)
}

/// An update's status (FixMyStreet's vocabulary) and the sentence a
/// resident reads, for an event a resident may be told of; `None` for any
/// other event.
pub fn update(event_type: &str, unit: &str, reason: &str) -> Option<(&'static str, String)> {
    let with_reason = |text: &str| if reason.is_empty() { text.to_owned() } else { format!("{text}：{reason}") };
    let (status, text) = match event_type {
        "filed" => ("OPEN", "已收到您的诉求，等待受理".to_owned()),
        "registered" => ("INVESTIGATING", "已受理（立案），正在安排处置单位".to_owned()),
        "returned" => ("INVESTIGATING", "正在重新安排处置单位".to_owned()),
        "dispatched" | "reassigned" if !unit.is_empty() => ("ACTION_SCHEDULED", format!("已派遣至处置单位（{unit}）")),
        "dispatched" | "reassigned" => ("ACTION_SCHEDULED", "已派遣至处置单位".to_owned()),
        "hold_approved" => ("ACTION_SCHEDULED", with_reason("暂缓处置（挂账）")),
        "acknowledged" => ("IN_PROGRESS", "处置单位已签收，正在处置".to_owned()),
        "resumed" => ("IN_PROGRESS", "恢复处置".to_owned()),
        "extension_approved" => ("IN_PROGRESS", "办理时限已延长".to_owned()),
        "resolved" => ("IN_PROGRESS", "处置单位已办结，等待指挥中心核查".to_owned()),
        "verification_failed" => ("IN_PROGRESS", "核查未通过，继续处置".to_owned()),
        "reopened" => ("IN_PROGRESS", "问题未解决，已重新办理".to_owned()),
        "verification_passed" => ("FIXED", "经核查问题已解决，已结案".to_owned()),
        "voided" => ("NO_FURTHER_ACTION", with_reason("经核查不予立案")),
        "cancelled" => ("NO_FURTHER_ACTION", with_reason("诉求已撤销")),
        "merged_into" => ("NO_FURTHER_ACTION", with_reason("已与相同诉求合并办理")),
        _ => return None,
    };
    Some((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voided_or_cancelled_case_never_reads_as_fixed_or_closed_in_an_update() {
        for event in ["voided", "cancelled"] {
            let (status, text) = update(event, "", "重复上报").unwrap();
            assert_eq!(status, "NO_FURTHER_ACTION");
            assert!(text.ends_with("：重复上报"), "{text}");
        }
        assert_eq!(update("resolved", "", "").unwrap().0, "IN_PROGRESS");
        assert_eq!(update("verification_passed", "", "").unwrap().0, "FIXED");
        assert_eq!(update("dispatched", "unit-roads", "").unwrap().1, "已派遣至处置单位（unit-roads）");
        // Internal steps are not told.
        for internal in ["deadline_set", "clock_marked", "supervised", "progress_added", "report_added", "urgency_set"]
        {
            assert_eq!(update(internal, "", ""), None, "{internal}");
        }
    }

    #[test]
    fn a_reply_reads_under_the_status_of_the_change_before_it() {
        assert_eq!(
            update_of("replied", "", "路灯已修复", "verification_passed"),
            Some(("FIXED", "答复：路灯已修复".to_owned()))
        );
        assert_eq!(update_of("replied", "", "已受理", "acknowledged").unwrap().0, "IN_PROGRESS");
        assert_eq!(update_of("replied", "", "已受理", "").unwrap().0, "OPEN");
    }

    #[test]
    fn requests_are_open_until_closed_voided_or_cancelled() {
        use State::*;
        for state in [Reported, Registered, Dispatched, InProgress, OnHold, Resolved] {
            assert_eq!(request_status(state), "open", "{state:?}");
        }
        for state in [Closed, Voided, Cancelled] {
            assert_eq!(request_status(state), "closed", "{state:?}");
        }
    }
}
