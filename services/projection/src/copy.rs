//! Rows in PostgreSQL's COPY text format, for the rebuild's bulk loads.
//!
//! The columns are written exactly as the live projector's statements store
//! them (instants truncated to the microsecond, marks as a text array), so a
//! rebuilt table equals the live one row for row.

use std::io::Write as _;

use jiff::Timestamp;
use uuid::Uuid;

use crate::project::EventRow;
use crate::project::{LedgerKey, Measure};

/// The columns of `case_events` in the order [`event`] writes them.
pub const EVENT_COLUMNS: &str = "stream_sequence, event_id, case_id, case_version, event_type, occurred_at, \
    actor_person, actor_role, actor_organisation, reason, hash, prev_hash, envelope";

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

    pub(crate) fn end(&mut self) {
        self.bytes.push(b'\n');
        self.started = false;
        self.count += 1;
    }

    pub(crate) fn null(&mut self) {
        self.field();
        self.bytes.extend_from_slice(b"\\N");
    }

    pub(crate) fn raw(&mut self, value: impl std::fmt::Display) {
        self.field();
        write!(self.bytes, "{value}").expect("writing to memory");
    }

    pub(crate) fn text(&mut self, value: &str) {
        self.field();
        escape_into(&mut self.bytes, value);
    }

    pub(crate) fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub(crate) fn uuid(&mut self, value: &Uuid) {
        self.field();
        let mut buffer = Uuid::encode_buffer();
        self.bytes.extend_from_slice(value.hyphenated().encode_lower(&mut buffer).as_bytes());
    }

    pub(crate) fn instant(&mut self, value: Option<Timestamp>) {
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
