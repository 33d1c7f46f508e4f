//! Rows in PostgreSQL's COPY text format, for the rebuild's bulk loads.
//!
//! The columns are written exactly as the live projector's statements store
//! them (instants truncated to the microsecond, marks as a text array), so a
//! rebuilt table equals the live one row for row.

use std::io::Write as _;

use gridcase_domain::Clock;
use jiff::Timestamp;
use uuid::Uuid;

use crate::project::{CaseRow, LedgerKey, Measure};
use crate::store::{EventRow, due_column};

/// The columns of `case_events` in the order [`event`] writes them.
pub const EVENT_COLUMNS: &str = "stream_sequence, event_id, case_id, case_version, event_type, occurred_at, \
    actor_person, actor_role, actor_organisation, reason, hash, prev_hash, envelope";

/// The columns of `cases` in the order [`case`] writes them.
pub fn case_columns() -> String {
    let due: Vec<&str> = [Clock::Register, Clock::Acknowledge, Clock::Resolve, Clock::Verify].map(due_column).to_vec();
    format!(
        "case_id, version, last_sequence, state, county, township, village, grid, category, description, \
         reported_by, contact_phone_masked, severity_hint, tier, unit, supervision, urgent, filed_at, registered_at, \
         dispatched_at, acknowledged_at, resolved_at, closed_at, {}, marks, pending_extension_days, \
         approved_extension_days, hold_requested, feedback, returns, reworks, reopenings, last_hash, contact_state, \
         contact_sealed",
        due.join(", ")
    )
}

/// The columns of `ledger_daily` in the order [`ledger`] writes them.
pub fn ledger_columns() -> String {
    let measures: Vec<&str> = Measure::ALL.iter().map(|m| m.column()).collect();
    format!("org_kind, org, township, day, {}", measures.join(", "))
}

/// A COPY text buffer being filled row by row.
#[derive(Default)]
pub struct Rows {
    pub bytes: Vec<u8>,
    pub count: usize,
    started: bool,
}

impl Rows {
    fn field(&mut self) {
        if self.started {
            self.bytes.push(b'\t');
        }
        self.started = true;
    }

    fn end(&mut self) {
        self.bytes.push(b'\n');
        self.started = false;
        self.count += 1;
    }

    fn null(&mut self) {
        self.field();
        self.bytes.extend_from_slice(b"\\N");
    }

    fn raw(&mut self, value: impl std::fmt::Display) {
        self.field();
        write!(self.bytes, "{value}").expect("writing to memory");
    }

    fn text(&mut self, value: &str) {
        self.field();
        escape_into(&mut self.bytes, value);
    }

    fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    fn uuid(&mut self, value: &Uuid) {
        self.field();
        let mut buffer = Uuid::encode_buffer();
        self.bytes.extend_from_slice(value.hyphenated().encode_lower(&mut buffer).as_bytes());
    }

    fn instant(&mut self, value: Option<Timestamp>) {
        match value {
            // Truncated to the microsecond, as the live statements store it.
            Some(at) => self.raw(Timestamp::from_microsecond(at.as_microsecond()).expect("in range")),
            None => self.null(),
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// COPY text escaping: backslash, and the tab, newline and carriage return
/// that would end a field or a row.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (index, byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        out.extend_from_slice(escaped);
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// One audit-history row.
pub fn event(rows: &mut Rows, e: &EventRow) {
    rows.raw(e.stream_sequence);
    rows.uuid(&e.event_id);
    rows.uuid(&e.case_id);
    rows.raw(e.case_version);
    rows.text(&e.event_type);
    rows.instant(Some(e.occurred_at));
    rows.text(&e.actor_person);
    rows.text(&e.actor_role);
    rows.text(&e.actor_organisation);
    rows.opt_text(e.reason.as_deref());
    rows.text(&e.hash);
    rows.opt_text(e.prev_hash.as_deref());
    rows.text(&e.envelope);
    rows.end();
}

/// One case row.
pub fn case(rows: &mut Rows, r: &CaseRow) {
    let case = &r.case;
    rows.uuid(case.id.as_uuid());
    rows.raw(case.version);
    rows.raw(r.last_sequence);
    rows.text(case.status.name());
    rows.text(case.grid.county());
    rows.text(&case.grid.township().to_string());
    rows.text(case.grid.village());
    rows.text(case.grid.as_str());
    rows.text(case.category.as_str());
    rows.text(&r.description);
    rows.text(&r.reported_by);
    rows.opt_text(r.contact_phone_masked.as_deref());
    rows.opt_text(case.severity_hint.map(|t| t.as_str()));
    rows.opt_text(case.tier.map(|t| t.as_str()));
    rows.opt_text(case.unit.as_ref().map(|u| u.to_string()).as_deref());
    rows.text(case.supervision.name());
    rows.raw(if case.urgent { 't' } else { 'f' });
    rows.instant(Some(r.filed_at));
    for at in [r.registered_at, r.dispatched_at, r.acknowledged_at, r.resolved_at, r.closed_at] {
        rows.instant(at);
    }
    for clock in [Clock::Register, Clock::Acknowledge, Clock::Resolve, Clock::Verify] {
        rows.instant(case.deadlines.get(&clock).copied());
    }
    // A text array of `clock:mark` names (letters and underscores only).
    let marks: Vec<String> = case.marks.iter().map(|(c, m)| format!("{}:{}", c.name(), m.name())).collect();
    rows.text(&format!("{{{}}}", marks.join(",")));
    match case.pending_extension {
        Some(days) => rows.raw(days),
        None => rows.null(),
    }
    rows.raw(case.approved_extension_days);
    rows.raw(if case.hold_requested { 't' } else { 'f' });
    rows.opt_text(case.feedback.map(|f| f.name()));
    rows.raw(case.returns);
    rows.raw(case.reworks);
    rows.raw(case.reopenings);
    rows.text(&r.last_hash);
    rows.text(crate::store::contact_state_name(case.contact));
    rows.opt_text(r.contact_sealed.as_deref());
    rows.end();
}

/// One ledger row (or a delta of one, for the rebuild's staging table).
pub fn ledger(rows: &mut Rows, key: &LedgerKey, counts: &[i64; Measure::ALL.len()]) {
    rows.text(key.kind.as_str());
    rows.text(&key.org);
    rows.text(&key.township);
    rows.raw(key.day);
    for count in counts {
        rows.raw(count);
    }
    rows.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_would_end_a_field_or_a_row_are_escaped() {
        let mut out = Vec::new();
        escape_into(&mut out, "a\tb\nc\\d\re 网格");
        assert_eq!(String::from_utf8(out).unwrap(), "a\\tb\\nc\\\\d\\re 网格");
    }

    #[test]
    fn instants_are_truncated_to_the_microsecond_and_nulls_written_as_such() {
        let mut rows = Rows::default();
        rows.instant(Some(Timestamp::from_nanosecond(1_700_000_000_123_456_789).unwrap()));
        rows.instant(None);
        rows.raw(7);
        rows.end();
        assert_eq!(String::from_utf8(rows.bytes).unwrap(), "2023-11-14T22:13:20.123456Z\t\\N\t7\n");
        assert_eq!(rows.count, 1);
    }
}
