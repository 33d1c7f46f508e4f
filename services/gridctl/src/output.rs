//! What gridctl prints: text for people, JSON for scripts.

use gridcase_proto::cases::v1 as api;
use gridcase_proto::common::v1 as common;
use serde_json::{Value, json};
use tonic_types::StatusExt;

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(value).map(|e| name(e).to_owned()).unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

pub fn state(value: i32) -> String {
    enum_name(value, |s: common::CaseState| s.as_str_name()).trim_start_matches("CASE_STATE_").to_owned()
}

fn tier(value: i32) -> String {
    enum_name(value, |t: common::Tier| t.as_str_name()).trim_start_matches("TIER_").to_owned()
}

fn supervision(value: i32) -> String {
    enum_name(value, |s: common::Supervision| s.as_str_name()).trim_start_matches("SUPERVISION_").to_owned()
}

fn feedback(value: i32) -> String {
    enum_name(value, |f: common::Feedback| f.as_str_name()).trim_start_matches("FEEDBACK_").to_owned()
}

fn clock(value: i32) -> String {
    enum_name(value, |c: common::Clock| c.as_str_name()).trim_start_matches("CLOCK_").to_owned()
}

fn zoned(ts: &Option<prost_types::Timestamp>) -> Option<jiff::Zoned> {
    let ts = ts.as_ref()?;
    let instant = jiff::Timestamp::new(ts.seconds, ts.nanos).ok()?;
    Some(instant.to_zoned(jiff::tz::TimeZone::get(gridcase_calendar::TIME_ZONE).expect("bundled time zone")))
}

/// For people: Beijing time with its offset, e.g. `2026-12-08 18:00:00 +08:00`.
pub fn time(ts: &Option<prost_types::Timestamp>) -> String {
    zoned(ts).map(|z| z.strftime("%Y-%m-%d %H:%M:%S %:z").to_string()).unwrap_or_default()
}

/// For scripts: RFC 3339 with the offset, e.g. `2026-12-08T18:00:00+08:00`
/// (fractions of a second kept when there are any); `null` when absent.
pub fn time_json(ts: &Option<prost_types::Timestamp>) -> Value {
    zoned(ts).map(|z| Value::String(z.strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string())).unwrap_or(Value::Null)
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("json"));
}

pub fn command_result(result: &api::CommandResult, json: bool) {
    if json {
        return print_json(&json!({
            "case_id": result.case_id,
            "version": result.version,
            "stream_sequence": result.stream_sequence,
            "state": state(result.state),
            "event_type": result.event_type,
            "replayed": result.replayed,
            "recorded_at": time_json(&result.recorded_at),
        }));
    }
    let replayed = if result.replayed { " (retry: the first result)" } else { "" };
    println!(
        "case {}: {} → {} (version {}, at {}){replayed}",
        result.case_id,
        result.event_type,
        state(result.state),
        result.version,
        time(&result.recorded_at)
    );
}

pub fn case_view(view: &api::CaseView, json: bool) {
    let deadlines: Vec<Value> = view
        .deadlines
        .iter()
        .map(|d| json!({ "clock": clock(d.clock), "due": time_json(&d.due), "warned": d.warned, "overdue": d.overdue }))
        .collect();
    if json {
        return print_json(&json!({
            "case_id": view.case_id,
            "version": view.version,
            "state": state(view.state),
            "grid_code": view.grid_code,
            "category_code": view.category_code,
            "tier": tier(view.tier),
            "unit": view.unit,
            "supervision": supervision(view.supervision),
            "urgent": view.urgent,
            "deadlines": deadlines,
            "pending_extension_days": view.pending_extension_days,
            "approved_extension_days": view.approved_extension_days,
            "hold_requested": view.hold_requested,
            "feedback": feedback(view.feedback),
            "returns": view.returns,
            "reworks": view.reworks,
            "reopenings": view.reopenings,
            "resident_contact": view.resident_contact.as_ref().map(|c| json!({
                "name": c.name, "phone": c.phone, "masked": c.masked,
            })),
        }));
    }
    println!("case        {}", view.case_id);
    println!("state       {} (version {})", state(view.state), view.version);
    println!("grid        {}   category {}", view.grid_code, view.category_code);
    println!("tier        {}   unit {}", tier(view.tier), if view.unit.is_empty() { "-" } else { &view.unit });
    println!("supervision {}{}", supervision(view.supervision), if view.urgent { "   URGENT" } else { "" });
    for d in &view.deadlines {
        let flag = if d.overdue {
            "  OVERDUE"
        } else if d.warned {
            "  warning"
        } else {
            ""
        };
        println!("deadline    {:<12} {}{flag}", clock(d.clock), time(&d.due));
    }
    if view.pending_extension_days > 0 {
        println!("extension   {} working days requested, pending", view.pending_extension_days);
    }
    if view.hold_requested {
        println!("hold        requested, pending");
    }
    println!(
        "counts      returns {}  reworks {}  reopenings {}  extension days approved {}",
        view.returns, view.reworks, view.reopenings, view.approved_extension_days
    );
    if view.feedback != common::Feedback::Unspecified as i32 {
        println!("feedback    {}", feedback(view.feedback));
    }
    if let Some(contact) = &view.resident_contact {
        let shown = [contact.name.as_str(), contact.phone.as_str()].into_iter().filter(|s| !s.is_empty());
        println!(
            "resident    {}{}",
            shown.collect::<Vec<_>>().join("  "),
            if contact.masked { "  (masked)" } else { "" }
        );
    }
}

pub fn history(history: &api::History, json: bool) {
    if json {
        let events: Vec<Value> = history
            .events
            .iter()
            .map(|e| {
                let actor = e.actor.clone().unwrap_or_default();
                json!({
                    "case_version": e.case_version,
                    "type": e.r#type,
                    "occurred_at": time_json(&e.occurred_at),
                    "actor": { "person": actor.person, "role": actor.role, "organisation": actor.organisation },
                    "reason": e.reason,
                    "attachments": e.attachments.iter().map(|a| json!({"sha256": a.sha256, "size": a.size, "content_type": a.content_type})).collect::<Vec<_>>(),
                    "payload": serde_json::from_str::<Value>(&e.payload_json).unwrap_or(Value::Null),
                    "hash": e.hash,
                    "prev_hash": e.prev_hash,
                })
            })
            .collect();
        return print_json(&json!({
            "case_id": history.case_id,
            "chain_verified": history.chain_verified,
            "chain_problem": history.chain_problem,
            "events": events,
        }));
    }
    println!("history of case {}", history.case_id);
    for e in &history.events {
        let actor = e.actor.clone().unwrap_or_default();
        let why = if e.reason.is_empty() { String::new() } else { format!("  «{}»", e.reason) };
        let photos =
            if e.attachments.is_empty() { String::new() } else { format!("  [{} attachment(s)]", e.attachments.len()) };
        println!(
            "{:>3}  {}  {:<22} {} ({}, {}){why}{photos}",
            e.case_version,
            time(&e.occurred_at),
            e.r#type,
            actor.person,
            actor.role,
            actor.organisation
        );
    }
    if history.chain_verified {
        println!("hash chain verified: no event altered or missing");
    } else {
        println!("HASH CHAIN BROKEN: {}", history.chain_problem);
    }
}

/// A refusal from the server, with its details, as an error to print.
pub fn refusal(status: tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            text.push_str(&format!("\n  {} [{}]: {}", v.field, v.reason, v.description));
        }
    }
    if let Some(failure) = details.precondition_failure() {
        for v in &failure.violations {
            text.push_str(&format!("\n  rule {} on {}: {}", v.r#type, v.subject, v.description));
        }
    }
    anyhow::anyhow!(text)
}
