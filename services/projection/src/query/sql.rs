//! The SQL of the queries: the caller's scope ANDed into every query, case
//! lists with their filters and keyset pages, the overdue condition.

use gridcase_auth::Territory;
use gridcase_auth::policy::{ListScope, Target, list_scope};
use gridcase_domain::{CategoryCode, Channel, Clock, RequestKind, State, Supervision};
use gridcase_grpc::{Access, Violations};
use gridcase_proto::common::v1 as common;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use jiff::Timestamp;
use sqlx::{Postgres, QueryBuilder, Row};
use tonic::Status;

use super::CLOCKS;
use crate::columns::{self, from_micros, micros};

/// The SQL condition "some clock that runs in the case's state is past due
/// at `now`", from the domain's own definition of which clock runs in which
/// state (`Clock::runs_in`) and the due columns (`columns::due_column`).
/// `now` is an integer we computed, so it is written into the SQL as is.
pub fn overdue_condition(builder: &mut QueryBuilder<Postgres>, now: i64) {
    builder.push(overdue_sql(now));
}

/// [`overdue_condition`] as SQL text.
pub(super) fn overdue_sql(now: i64) -> String {
    running_due_between(None, now, None)
}

/// "Some clock that runs in the case's state falls due in [from, to)"
/// (from the beginning of time when `from` is None; of `only`'s clock when
/// given), as SQL; both bounds are integers we computed. Each clock's term
/// is what its partial index (`cases_open_*_due`) answers.
fn running_due_between(from: Option<i64>, to: i64, only: Option<Clock>) -> String {
    let clocks: Vec<String> = CLOCKS
        .into_iter()
        .filter(|clock| only.is_none_or(|only| only == *clock))
        .map(|clock| {
            let states: Vec<String> =
                State::ALL.into_iter().filter(|s| clock.runs_in(*s)).map(|s| format!("'{}'", s.name())).collect();
            let due = columns::due_column(clock);
            let lower = from.map(|from| format!(" AND {due} >= ts_from_micros({from})")).unwrap_or_default();
            format!("(state IN ({}){lower} AND {due} < ts_from_micros({to}))", states.join(", "))
        })
        .collect();
    format!("({})", clocks.join(" OR "))
}

/// The board's counts of open cases (`CaseCounts`, in its field order)
/// within the scope and region: one pass over the township's open cases.
/// "Due today" is a running deadline in [now, end of today).
pub(super) fn counts_query(scope: &ListScope, region: &str, now: i64, end_of_today: i64) -> QueryBuilder<Postgres> {
    let open: Vec<String> = State::ALL.into_iter().filter(|s| s.is_open()).map(|s| format!("'{}'", s.name())).collect();
    let mut builder = QueryBuilder::new(format!(
        "SELECT count(*), count(*) FILTER (WHERE {}), count(*) FILTER (WHERE {}), \
         count(*) FILTER (WHERE state = '{}'), count(*) FILTER (WHERE supervision = '{}'), \
         count(*) FILTER (WHERE supervision = '{}') FROM cases WHERE state IN ({})",
        running_due_between(Some(now), end_of_today, None),
        running_due_between(None, now, None),
        State::OnHold.name(),
        Supervision::YellowCard.name(),
        Supervision::RedCard.name(),
        open.join(", "),
    ));
    push_scope(&mut builder, scope);
    if !region.is_empty() {
        push_region(&mut builder, region);
    }
    builder
}

/// What the caller may list, report on or export: their scope, with the
/// regions they asked for checked against their territory.
pub(super) fn scope_for(access: &Access, regions: &[&str]) -> Result<ListScope, Status> {
    let scope = list_scope(&access.principal)
        .ok_or_else(|| Status::permission_denied(format!("{} reads no cases", access.principal.role.with_article())))?;
    // Everyone with a region territory (a grid worker's is their grid) may
    // name only regions inside it; a unit's lists are cut by the unit.
    if matches!(access.principal.territory, Territory::Region(_)) {
        for region in regions.iter().filter(|r| !r.is_empty()) {
            access.check(Target::Region(region))?;
        }
    }
    Ok(scope)
}

/// The scope of a report (overdue, ledger): always a region, so unit and
/// worker rows are cut to the caller's townships.
pub(super) fn report_scope(access: &Access, regions: &[&str]) -> Result<ListScope, Status> {
    let scope = scope_for(access, regions)?;
    if scope.region_prefix.is_none() {
        return Err(Status::permission_denied(format!("{} reads no reports", access.principal.role.with_article())));
    }
    Ok(scope)
}

/// AND the caller's scope into a query over `cases`.
pub(super) fn push_scope(builder: &mut QueryBuilder<Postgres>, scope: &ListScope) {
    if let Some(prefix) = &scope.region_prefix {
        push_region(builder, prefix);
    }
    if let Some(unit) = &scope.unit {
        builder.push(" AND unit = ").push_bind(unit.clone());
    }
    if let Some(reporter) = &scope.reporter {
        builder.push(" AND reported_by = ").push_bind(reporter.clone());
    }
}

/// AND "the case lies in this region" (a digits-only prefix): a whole
/// township or county by its indexed column, anything else by grid prefix.
pub(super) fn push_region(builder: &mut QueryBuilder<Postgres>, prefix: &str) {
    match prefix.len() {
        9 => builder.push(" AND township = ").push_bind(prefix.to_owned()),
        6 => builder.push(" AND county = ").push_bind(prefix.to_owned()),
        _ => builder.push(" AND grid LIKE ").push_bind(format!("{prefix}%")),
    };
}

/// The SQL of a case list: its filters within the caller's scope, newest
/// first, after the page token.
pub fn list_query(
    filter: &api::ListCasesRequest,
    scope: &ListScope,
    now: Timestamp,
    columns: &str,
) -> Result<QueryBuilder<Postgres>, Status> {
    let mut builder = filtered_query(filter, scope, now, columns)?;
    if due_soonest(filter) {
        builder.push(format!(" ORDER BY {} ASC NULLS LAST, case_id ASC", next_due_sql(list_clock(filter))));
    } else {
        builder.push(" ORDER BY filed_at DESC, case_id DESC");
    }
    Ok(builder)
}

/// Whether a list is ordered by its earliest running deadline.
pub(super) fn due_soonest(filter: &api::ListCasesRequest) -> bool {
    filter.order == api::ListOrder::DueSoonest as i32
}

/// The clock a list is cut to, if any.
pub(super) fn list_clock(filter: &api::ListCasesRequest) -> Option<Clock> {
    convert::clock_from_proto(filter.clock)
}

/// The earliest deadline (of `clock`, or of any clock) that runs in the
/// case's state, as SQL (`LEAST` passes over the NULLs of clocks that do
/// not run); NULL when none runs.
pub(super) fn next_due_sql(clock: Option<Clock>) -> String {
    let clocks: Vec<String> = CLOCKS
        .into_iter()
        .filter(|c| clock.is_none_or(|only| only == *c))
        .map(|clock| {
            let states: Vec<String> =
                State::ALL.into_iter().filter(|s| clock.runs_in(*s)).map(|s| format!("'{}'", s.name())).collect();
            format!("CASE WHEN state IN ({}) THEN {} END", states.join(", "), columns::due_column(clock))
        })
        .collect();
    format!("LEAST({})", clocks.join(", "))
}

/// Where a page of a list ends, as its token says: the filing time (newest
/// first), or the earliest running deadline (soonest first; None for the
/// cases with none, listed last), with the case id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageKey {
    Filed(i64, uuid::Uuid),
    Due(Option<i64>, uuid::Uuid),
}

impl PageKey {
    pub(super) fn token(&self) -> String {
        match self {
            PageKey::Filed(at, id) => format!("{at}:{id}"),
            PageKey::Due(Some(at), id) => format!("due:{at}:{id}"),
            PageKey::Due(None, id) => format!("due:-:{id}"),
        }
    }

    fn parse(token: &str, by_due: bool) -> Option<PageKey> {
        let instant = |text: &str| text.parse::<i64>().ok().filter(|at| Timestamp::from_microsecond(*at).is_ok());
        match (by_due, token.strip_prefix("due:")) {
            (true, Some(rest)) => {
                let (at, id) = rest.split_once(':')?;
                let at = if at == "-" { None } else { Some(instant(at)?) };
                Some(PageKey::Due(at, uuid::Uuid::parse_str(id).ok()?))
            }
            (false, None) => {
                let (at, id) = token.split_once(':')?;
                Some(PageKey::Filed(instant(at)?, uuid::Uuid::parse_str(id).ok()?))
            }
            _ => None,
        }
    }
}

/// `SELECT columns FROM cases` cut to the scope and the filter, unordered
/// (`count(*)` for how many a list or an export holds).
pub fn filtered_query(
    filter: &api::ListCasesRequest,
    scope: &ListScope,
    now: Timestamp,
    columns: &str,
) -> Result<QueryBuilder<Postgres>, Status> {
    let mut v = Violations::new();
    if !filter.region_prefix.bytes().all(|b| b.is_ascii_digit()) || filter.region_prefix.len() > 17 {
        v.add("region_prefix", "MALFORMED", "must be a region-code prefix (digits)");
    }
    if !filter.category_code.is_empty() && CategoryCode::parse(&filter.category_code).is_err() {
        v.add("category_code", "MALFORMED", "must be a 4-digit category code");
    }
    let states: Vec<String> = filter
        .states
        .iter()
        .map(|s| convert::state_from_proto(*s).map(|s| s.name().to_owned()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| {
            v.add("states", "UNKNOWN_VALUE", "every state must be a CaseState other than UNSPECIFIED");
            vec![]
        });
    let after = if filter.page_token.is_empty() {
        None
    } else {
        match PageKey::parse(&filter.page_token, due_soonest(filter)) {
            Some(key) => Some(key),
            None => {
                v.add("page_token", "MALFORMED", "is not a token this service returned for a list in this order");
                None
            }
        }
    };
    if api::ListOrder::try_from(filter.order).is_err() {
        v.add("order", "UNKNOWN_VALUE", "must be a ListOrder");
    }
    if filter.clock != 0 && list_clock(filter).is_none() {
        v.add("clock", "UNKNOWN_VALUE", "must be a Clock");
    }
    let supervision = match filter.supervision {
        0 => None,
        level => match convert::supervision_from_proto(level) {
            Some(level) => Some(level),
            None => {
                v.add("supervision", "UNKNOWN_VALUE", "must be a Supervision level");
                None
            }
        },
    };
    if filter.overdue_only && filter.due_within_seconds > 0 {
        v.add("due_within_seconds", "CONFLICT", "a list is either overdue or due soon, not both");
    }
    // Times a calendar can hold (a client's `seconds` may be anything).
    let mut time = |field: &str, at: Option<&prost_types::Timestamp>| {
        let at = at?;
        match Timestamp::new(at.seconds, at.nanos) {
            Ok(at) => Some(micros(at)),
            Err(_) => {
                v.add(field, "OUT_OF_RANGE", "must be a time between the years -9999 and 9999");
                None
            }
        }
    };
    let (filed_from, filed_to) =
        (time("filed_from", filter.filed_from.as_ref()), time("filed_to", filter.filed_to.as_ref()));
    v.into_result()?;
    let mut builder = QueryBuilder::new(format!("SELECT {columns} FROM cases WHERE TRUE"));
    push_scope(&mut builder, scope);
    if !filter.region_prefix.is_empty() {
        push_region(&mut builder, &filter.region_prefix);
    }
    if !filter.grid_code.is_empty() {
        builder.push(" AND grid = ").push_bind(filter.grid_code.clone());
    }
    if !states.is_empty() {
        builder.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(tier) =
        gridcase_domain::Tier::ALL.into_iter().find(|t| convert::tier_to_proto(Some(*t)) as i32 == filter.tier)
    {
        builder.push(" AND tier = ").push_bind(tier.as_str());
    }
    if !filter.unit.is_empty() {
        builder.push(" AND unit = ").push_bind(filter.unit.clone());
    }
    if !filter.category_code.is_empty() {
        builder.push(" AND category = ").push_bind(filter.category_code.clone());
    }
    let clock = list_clock(filter);
    let next_due = next_due_sql(clock);
    if filter.overdue_only {
        builder.push(" AND ");
        match clock {
            // Each clock's own indexed condition (the common case).
            None => overdue_condition(&mut builder, micros(now)),
            Some(_) => {
                builder.push(format!("{next_due} < ts_from_micros({})", micros(now)));
            }
        }
    } else if filter.due_within_seconds > 0 {
        let until = now.as_microsecond() + i64::from(filter.due_within_seconds) * 1_000_000;
        // The indexed condition (some running clock falls due in the
        // window) narrows the rows; the exact one (the soonest running
        // deadline does) decides. Without the first a township's whole
        // year was read (p50 203 ms on the city year).
        let indexed = running_due_between(Some(micros(now)), until + 1, clock);
        builder.push(format!(
            " AND {indexed} AND {next_due} >= ts_from_micros({}) AND {next_due} <= ts_from_micros({until})",
            micros(now)
        ));
    } else if clock.is_some() {
        builder.push(format!(" AND {next_due} IS NOT NULL"));
    }
    if let Some(level) = supervision {
        builder.push(" AND supervision = ").push_bind(level.name());
    }
    if let Some(from) = filed_from {
        builder.push(" AND filed_at >= ts_from_micros(").push_bind(from).push(")");
    }
    if let Some(to) = filed_to {
        builder.push(" AND filed_at < ts_from_micros(").push_bind(to).push(")");
    }
    match after {
        Some(PageKey::Filed(at, id)) => {
            builder
                .push(" AND (filed_at, case_id) < (ts_from_micros(")
                .push_bind(at)
                .push("), ")
                .push_bind(id)
                .push(")");
        }
        Some(PageKey::Due(Some(at), id)) => {
            builder
                .push(format!(" AND ({next_due} IS NULL OR ({next_due}, case_id) > (ts_from_micros("))
                .push_bind(at)
                .push("), ")
                .push_bind(id)
                .push("))");
        }
        Some(PageKey::Due(None, id)) => {
            builder.push(format!(" AND {next_due} IS NULL AND case_id > ")).push_bind(id);
        }
        None => {}
    }
    Ok(builder)
}

pub(super) const SUMMARY_COLUMNS: &str = "case_id, state, township, grid, category, tier, unit, supervision, micros(filed_at), \
    micros(register_due), micros(acknowledge_due), micros(resolve_due), micros(verify_due), contact_state, \
    channel, request_kind, micros(updated_at), description, latitude_e6, longitude_e6, reference, micros(reported_at)";

/// A row of [`SUMMARY_COLUMNS`] as the API shows it; `next_due` among the
/// deadlines of `clock` only, when the list was cut to one.
pub(super) fn summary(row: &sqlx::postgres::PgRow, now: Timestamp, clock: Option<Clock>) -> api::CaseSummary {
    let status = State::from_name(row.get::<&str, _>(1)).unwrap_or(State::Reported);
    let running: Vec<(Clock, Timestamp)> =
        [(9, Clock::Register), (10, Clock::Acknowledge), (11, Clock::Resolve), (12, Clock::Verify)]
            .into_iter()
            .filter(|(_, c)| c.runs_in(status))
            .filter_map(|(i, c)| Some((c, from_micros(row.get::<Option<i64>, _>(i)?))))
            .collect();
    let overdue = running.iter().any(|(_, due)| *due < now);
    let next = running.iter().filter(|(c, _)| clock.is_none_or(|only| only == *c)).min_by_key(|(_, due)| *due);
    api::CaseSummary {
        case_id: row.get::<uuid::Uuid, _>(0).to_string(),
        state: convert::state_to_proto(status) as i32,
        township: row.get(2),
        grid_code: row.get(3),
        category_code: row.get(4),
        tier: convert::tier_to_proto(row.get::<Option<&str>, _>(5).and_then(gridcase_domain::Tier::parse)) as i32,
        unit: row.get::<Option<String>, _>(6).unwrap_or_default(),
        supervision: convert::supervision_to_proto(
            gridcase_domain::Supervision::from_name(row.get(7)).unwrap_or_default(),
        ) as i32,
        filed_at: Some(convert::timestamp_to_proto(from_micros(row.get(8)))),
        overdue,
        next_due: next.map(|(_, due)| convert::timestamp_to_proto(*due)),
        next_due_clock: next.map_or(0, |(c, _)| convert::clock_to_proto(*c) as i32),
        channel: convert::channel_to_proto(Channel::parse(row.get(14)).unwrap_or_default()) as i32,
        request_kind: convert::request_kind_to_proto(row.get::<Option<&str>, _>(15).and_then(RequestKind::parse))
            as i32,
        updated_at: Some(convert::timestamp_to_proto(from_micros(row.get(16)))),
        description: row.get(17),
        location: location_at(row, 18),
        reference: row.get::<Option<String>, _>(20).unwrap_or_default(),
        reported_at: row.get::<Option<i64>, _>(21).map(|at| convert::timestamp_to_proto(from_micros(at))),
    }
}

/// The point in columns `index` (latitude) and `index + 1` (longitude) of
/// a row, if it has one.
pub(super) fn location_at(row: &sqlx::postgres::PgRow, index: usize) -> Option<common::Location> {
    row.get::<Option<i32>, _>(index).zip(row.get::<Option<i32>, _>(index + 1)).map(|(lat, lon)| location(lat, lon))
}

/// A point of the read models (microdegrees) as the API gives it.
pub(super) fn location(latitude_e6: i32, longitude_e6: i32) -> common::Location {
    common::Location {
        latitude: f64::from(latitude_e6) / 1e6,
        longitude: f64::from(longitude_e6) / 1e6,
        address: String::new(),
    }
}
