//! The `cases` table, declared once: each column's name, how it is stored,
//! and which field of a [`CaseRow`] it holds. The live projector's bulk
//! upsert ([`upsert_sql`], [`bind`]), the rebuild's COPY ([`copy_columns`],
//! [`copy_row`]) and every read ([`SELECT`], [`read`]) are made from this
//! one table, so a column is added or removed in one place.

use std::collections::{BTreeMap, BTreeSet};

use gridcase_domain::{
    Case, CaseId, CategoryCode, Channel, Clock, ClockMark, Feedback, GridCode, OrgCode, RequestKind, State,
    Supervision, Tier,
};
use jiff::Timestamp;
use sqlx::Row as _;
use uuid::Uuid;

use crate::columns::{contact_state, contact_state_name, due_column, from_micros, micros};
use crate::copy::Rows;
use crate::project::CaseRow;

/// How a column is stored (and bound: every kind has an array type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    /// `bigint`, from a `u64`.
    Big,
    /// `int`, from a `u32` (nullable).
    Small,
    /// `text` (nullable).
    Text,
    Bool,
    /// `timestamptz`, crossing as microseconds (nullable).
    Instant,
    /// `text[]` of `clock:mark` names.
    Marks,
}

/// One column's value for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Uuid(Uuid),
    Big(i64),
    Small(Option<i32>),
    Text(Option<String>),
    Bool(bool),
    Instant(Option<Timestamp>),
    Marks(Vec<String>),
}

pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Set when the case is filed and never changed by an upsert.
    pub at_filing: bool,
    pub value: fn(&CaseRow) -> Cell,
}

const fn column(name: &'static str, kind: Kind, at_filing: bool, value: fn(&CaseRow) -> Cell) -> Column {
    Column { name, kind, at_filing, value }
}

fn text(value: &str) -> Cell {
    Cell::Text(Some(value.to_owned()))
}

fn due(row: &CaseRow, clock: Clock) -> Cell {
    Cell::Instant(row.case.deadlines.get(&clock).copied())
}

/// Every column of `cases`, in table order.
pub const COLUMNS: [Column; 53] = [
    column("case_id", Kind::Uuid, true, |r| Cell::Uuid(*r.case.id.as_uuid())),
    column("version", Kind::Big, false, |r| Cell::Big(r.case.version as i64)),
    column("last_sequence", Kind::Big, false, |r| Cell::Big(r.last_sequence as i64)),
    column("state", Kind::Text, false, |r| text(r.case.state.name())),
    column("county", Kind::Text, true, |r| text(r.case.grid.county())),
    column("township", Kind::Text, true, |r| Cell::Text(Some(r.case.grid.township().to_string()))),
    column("village", Kind::Text, true, |r| text(r.case.grid.village())),
    column("grid", Kind::Text, true, |r| text(r.case.grid.as_str())),
    column("category", Kind::Text, true, |r| text(r.case.category.as_str())),
    column("description", Kind::Text, true, |r| text(&r.description)),
    column("reported_by", Kind::Text, true, |r| text(&r.reported_by)),
    column("severity_hint", Kind::Text, true, |r| Cell::Text(r.case.severity_hint.map(|t| t.as_str().to_owned()))),
    column("tier", Kind::Text, false, |r| Cell::Text(r.case.tier.map(|t| t.as_str().to_owned()))),
    column("unit", Kind::Text, false, |r| Cell::Text(r.case.unit.as_ref().map(|u| u.to_string()))),
    column("supervision", Kind::Text, false, |r| text(r.case.supervision.name())),
    column("urgent", Kind::Bool, false, |r| Cell::Bool(r.case.urgent)),
    column("filed_at", Kind::Instant, true, |r| Cell::Instant(Some(r.filed_at))),
    column("registered_at", Kind::Instant, false, |r| Cell::Instant(r.registered_at)),
    column("dispatched_at", Kind::Instant, false, |r| Cell::Instant(r.dispatched_at)),
    column("acknowledged_at", Kind::Instant, false, |r| Cell::Instant(r.acknowledged_at)),
    column("resolved_at", Kind::Instant, false, |r| Cell::Instant(r.resolved_at)),
    column("closed_at", Kind::Instant, false, |r| Cell::Instant(r.closed_at)),
    column("register_due", Kind::Instant, false, |r| due(r, Clock::Register)),
    column("acknowledge_due", Kind::Instant, false, |r| due(r, Clock::Acknowledge)),
    column("resolve_due", Kind::Instant, false, |r| due(r, Clock::Resolve)),
    column("verify_due", Kind::Instant, false, |r| due(r, Clock::Verify)),
    column("marks", Kind::Marks, false, |r| {
        Cell::Marks(r.case.marks.iter().map(|(c, m)| format!("{}:{}", c.name(), m.name())).collect())
    }),
    column("pending_extension_days", Kind::Small, false, |r| Cell::Small(r.case.pending_extension.map(|d| d as i32))),
    column("approved_extension_days", Kind::Small, false, |r| Cell::Small(Some(r.case.approved_extension_days as i32))),
    column("hold_requested", Kind::Bool, false, |r| Cell::Bool(r.case.hold_requested)),
    column("feedback", Kind::Text, false, |r| Cell::Text(r.case.feedback.map(|f| f.name().to_owned()))),
    column("returns", Kind::Small, false, |r| Cell::Small(Some(r.case.returns as i32))),
    column("reworks", Kind::Small, false, |r| Cell::Small(Some(r.case.reworks as i32))),
    column("reopenings", Kind::Small, false, |r| Cell::Small(Some(r.case.reopenings as i32))),
    column("last_hash", Kind::Text, false, |r| text(&r.last_hash)),
    column("contact_state", Kind::Text, false, |r| text(contact_state_name(r.case.contact))),
    column("contact_sealed", Kind::Text, false, |r| Cell::Text(r.contact_sealed.clone())),
    column("clock_terms", Kind::Text, false, |r| {
        Cell::Text((!r.case.terms.is_empty()).then(|| serde_json::to_string(&r.case.terms).expect("terms serialise")))
    }),
    // The point itself is a generated PostGIS column (`location`) over these two.
    column("latitude_e6", Kind::Small, true, |r| Cell::Small(r.location_e6.map(|(lat, _)| lat))),
    column("longitude_e6", Kind::Small, true, |r| Cell::Small(r.location_e6.map(|(_, lon)| lon))),
    column("outside_grid_m", Kind::Small, true, |r| {
        Cell::Small(r.outside_grid_m.map(|m| m.min(i32::MAX as u32) as i32))
    }),
    column("channel", Kind::Text, true, |r| text(r.channel.as_str())),
    column("request_kind", Kind::Text, true, |r| Cell::Text(r.request_kind.map(|k| k.as_str().to_owned()))),
    column("reference", Kind::Text, true, |r| Cell::Text(r.reference.clone())),
    column("updated_at", Kind::Instant, false, |r| Cell::Instant(Some(r.updated_at))),
    column("reply_due", Kind::Instant, false, |r| due(r, Clock::Reply)),
    column("callback_due", Kind::Instant, false, |r| due(r, Clock::Callback)),
    column("replied_at", Kind::Instant, false, |r| Cell::Instant(r.replied_at)),
    column("called_back", Kind::Bool, false, |r| Cell::Bool(r.case.called_back)),
    column("reported_at", Kind::Instant, true, |r| Cell::Instant(r.reported_at)),
    column("reports", Kind::Small, false, |r| {
        Cell::Small(Some(1 + r.case.added_reports.min(i32::MAX as u32 - 1) as i32))
    }),
    column("photo", Kind::Text, false, |r| Cell::Text(r.photo.clone())),
    column("merged_into", Kind::Text, false, |r| Cell::Text(r.case.merged_into.map(|id| id.to_string()))),
];

/// What a `SELECT` (or `RETURNING`) lists for [`read`]: every column by its
/// name, instants as microseconds.
pub static SELECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    COLUMNS
        .iter()
        .map(|c| match c.kind {
            Kind::Instant => format!("micros({0}) AS {0}", c.name),
            _ => c.name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// The columns of a COPY, in the order [`copy_row`] writes them.
pub fn copy_columns() -> String {
    COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// The bulk upsert of rows bound by [`bind`]: one array per column, a
/// filing's columns kept when the case exists.
pub fn upsert_sql() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let selected: Vec<String> = COLUMNS
        .iter()
        .map(|c| match c.kind {
            Kind::Instant => format!("ts_from_micros({})", c.name),
            Kind::Marks => {
                format!("CASE WHEN {0} = '' THEN ARRAY[]::text[] ELSE string_to_array({0}, ',') END", c.name)
            }
            _ => c.name.to_owned(),
        })
        .collect();
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let array = match c.kind {
                Kind::Uuid => "uuid[]",
                Kind::Big | Kind::Instant => "bigint[]",
                Kind::Small => "int[]",
                Kind::Text | Kind::Marks => "text[]",
                Kind::Bool => "bool[]",
            };
            format!("${}::{array}", index + 1)
        })
        .collect();
    let updates: Vec<String> =
        COLUMNS.iter().filter(|c| !c.at_filing).map(|c| format!("{0} = EXCLUDED.{0}", c.name)).collect();
    format!(
        "INSERT INTO cases ({names}) SELECT {selected} FROM UNNEST({arrays}) AS x({names}) \
         ON CONFLICT (case_id) DO UPDATE SET {updates}",
        names = names.join(", "),
        selected = selected.join(", "),
        arrays = arrays.join(", "),
        updates = updates.join(", "),
    )
}

/// Bind `rows` to [`upsert_sql`]: one array per column, in order.
pub fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &[CaseRow],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for column in &COLUMNS {
        let cells = rows.iter().map(|row| (column.value)(row));
        query =
            match column.kind {
                Kind::Uuid => query
                    .bind(cells.map(|c| if let Cell::Uuid(v) = c { v } else { unreachable!() }).collect::<Vec<_>>()),
                Kind::Big => {
                    query.bind(cells.map(|c| if let Cell::Big(v) = c { v } else { unreachable!() }).collect::<Vec<_>>())
                }
                Kind::Small => query
                    .bind(cells.map(|c| if let Cell::Small(v) = c { v } else { unreachable!() }).collect::<Vec<_>>()),
                Kind::Text => query
                    .bind(cells.map(|c| if let Cell::Text(v) = c { v } else { unreachable!() }).collect::<Vec<_>>()),
                Kind::Bool => query
                    .bind(cells.map(|c| if let Cell::Bool(v) = c { v } else { unreachable!() }).collect::<Vec<_>>()),
                Kind::Instant => query.bind(
                    cells
                        .map(|c| if let Cell::Instant(v) = c { v.map(micros) } else { unreachable!() })
                        .collect::<Vec<_>>(),
                ),
                Kind::Marks => query.bind(
                    cells
                        .map(|c| if let Cell::Marks(v) = c { v.join(",") } else { unreachable!() })
                        .collect::<Vec<_>>(),
                ),
            };
    }
    query
}

/// One row in COPY text format, as [`upsert_sql`] would store it.
pub fn copy_row(rows: &mut Rows, row: &CaseRow) {
    for column in &COLUMNS {
        match (column.value)(row) {
            Cell::Uuid(value) => rows.uuid(&value),
            Cell::Big(value) => rows.raw(value),
            Cell::Small(value) => match value {
                Some(value) => rows.raw(value),
                None => rows.null(),
            },
            Cell::Text(value) => rows.opt_text(value.as_deref()),
            Cell::Bool(value) => rows.raw(if value { 't' } else { 'f' }),
            Cell::Instant(value) => rows.instant(value),
            // A text array of `clock:mark` names (letters and underscores only).
            Cell::Marks(marks) => rows.text(&format!("{{{}}}", marks.join(","))),
        }
    }
    rows.end();
}

fn corrupt(what: &str) -> anyhow::Error {
    anyhow::anyhow!("read model holds an invalid {what}")
}

/// A case row from a `SELECT {SELECT}`, by column name.
pub fn read(row: &sqlx::postgres::PgRow) -> anyhow::Result<CaseRow> {
    let at = |name: &str| row.get::<Option<i64>, _>(name).map(from_micros);
    let small = |name: &str| row.get::<i32, _>(name) as u32;
    let mut deadlines = BTreeMap::new();
    for clock in Clock::ALL {
        if let Some(due) = at(due_column(clock)) {
            deadlines.insert(clock, due);
        }
    }
    let mut marks = BTreeSet::new();
    for mark in row.get::<Vec<String>, _>("marks") {
        let (clock, kind) = mark.split_once(':').ok_or_else(|| corrupt("mark"))?;
        marks.insert((
            Clock::from_name(clock).ok_or_else(|| corrupt("mark clock"))?,
            ClockMark::from_name(kind).ok_or_else(|| corrupt("mark kind"))?,
        ));
    }
    let optional_tier =
        |name: &str| row.get::<Option<&str>, _>(name).map(|t| Tier::parse(t).ok_or_else(|| corrupt(name))).transpose();
    let case = Case {
        id: CaseId::from_uuid(row.get::<Uuid, _>("case_id")).map_err(|_| corrupt("case id"))?,
        grid: GridCode::parse(row.get::<&str, _>("grid")).map_err(|_| corrupt("grid"))?,
        category: CategoryCode::parse(row.get::<&str, _>("category")).map_err(|_| corrupt("category"))?,
        state: State::from_name(row.get::<&str, _>("state")).ok_or_else(|| corrupt("state"))?,
        version: row.get::<i64, _>("version") as u64,
        severity_hint: optional_tier("severity_hint")?,
        tier: optional_tier("tier")?,
        unit: row.get::<Option<&str>, _>("unit").map(|u| OrgCode::parse(u).map_err(|_| corrupt("unit"))).transpose()?,
        supervision: Supervision::from_name(row.get::<&str, _>("supervision")).ok_or_else(|| corrupt("supervision"))?,
        urgent: row.get("urgent"),
        deadlines,
        marks,
        pending_extension: row.get::<Option<i32>, _>("pending_extension_days").map(|d| d as u32),
        approved_extension_days: small("approved_extension_days"),
        hold_requested: row.get("hold_requested"),
        feedback: row
            .get::<Option<&str>, _>("feedback")
            .map(|f| Feedback::from_name(f).ok_or_else(|| corrupt("feedback")))
            .transpose()?,
        returns: small("returns"),
        reworks: small("reworks"),
        reopenings: small("reopenings"),
        contact: contact_state(row.get::<&str, _>("contact_state")).ok_or_else(|| corrupt("contact state"))?,
        terms: match row.get::<Option<&str>, _>("clock_terms") {
            Some(json) => serde_json::from_str(json).map_err(|_| corrupt("clock terms"))?,
            None => BTreeMap::new(),
        },
        request_kind: row
            .get::<Option<&str>, _>("request_kind")
            .map(|k| RequestKind::parse(k).ok_or_else(|| corrupt("request kind")))
            .transpose()?,
        replied: at("replied_at").is_some(),
        added_reports: small("reports").saturating_sub(1),
        merged_into: row
            .get::<Option<&str>, _>("merged_into")
            .map(|id| CaseId::parse(id).map_err(|_| corrupt("merged into")))
            .transpose()?,
        called_back: row.get("called_back"),
    };
    let request_kind = case.request_kind;
    Ok(CaseRow {
        case,
        last_sequence: row.get::<i64, _>("last_sequence") as u64,
        description: row.get("description"),
        reported_by: row.get("reported_by"),
        filed_at: at("filed_at").ok_or_else(|| corrupt("filing time"))?,
        reported_at: at("reported_at"),
        photo: row.get("photo"),
        registered_at: at("registered_at"),
        dispatched_at: at("dispatched_at"),
        acknowledged_at: at("acknowledged_at"),
        resolved_at: at("resolved_at"),
        closed_at: at("closed_at"),
        last_hash: row.get("last_hash"),
        contact_sealed: row.get("contact_sealed"),
        location_e6: row.get::<Option<i32>, _>("latitude_e6").zip(row.get::<Option<i32>, _>("longitude_e6")),
        outside_grid_m: row.get::<Option<i32>, _>("outside_grid_m").map(|m| m as u32),
        channel: Channel::parse(row.get::<&str, _>("channel")).ok_or_else(|| corrupt("channel"))?,
        request_kind,
        reference: row.get("reference"),
        updated_at: at("updated_at").ok_or_else(|| corrupt("last change time"))?,
        replied_at: at("replied_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_case_row_has_its_column_once() {
        let names: BTreeSet<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), COLUMNS.len(), "a column declared twice");
        for clock in Clock::ALL {
            assert!(names.contains(due_column(clock)), "{clock:?} has no column");
        }
        // The rebuild's COPY and the projector's upsert name the same columns.
        let sql = upsert_sql();
        assert!(sql.starts_with(&format!("INSERT INTO cases ({}) ", copy_columns())), "{sql}");
        assert!(sql.contains(&format!("${}::", COLUMNS.len())) && !sql.contains(&format!("${}:", COLUMNS.len() + 1)));
    }
}
