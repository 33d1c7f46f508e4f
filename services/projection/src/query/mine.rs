//! `ListMyCases`: a grid worker's own world for offline use: the cases they
//! filed and the open cases of their grids, by change cursor. The cursor is
//! the stream sequence of a case's last event (`cases.last_sequence`): the
//! projector writes the stream in order, one transaction after another, so
//! every row at or below a sequence seen is already visible and "after the
//! cursor" misses nothing. On the first call (no cursor) a case of their
//! grids is listed only while open; after that every change of one is, so
//! the app learns that a case it holds was closed and drops it.

use gridcase_domain::State;
use gridcase_grpc::Violations;
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use sqlx::{PgPool, Row as _};
use tonic::Status;

use super::db_error;
use crate::columns::from_micros;

pub const DEFAULT_PAGE: u32 = 200;
pub const MAX_PAGE: u32 = 500;

/// Pure: the cursor and page size asked for.
pub fn check(request: &api::ListMyCasesRequest) -> Result<(u64, u32), Status> {
    let mut v = Violations::new();
    let cursor = match request.cursor.as_str() {
        "" => 0,
        text => text.parse::<u64>().unwrap_or_else(|_| {
            v.add("cursor", "MALFORMED", "is not a cursor this service gave: send the last answer's cursor");
            0
        }),
    };
    let page = match request.page_size {
        0 => DEFAULT_PAGE,
        size if size > MAX_PAGE => {
            v.add("page_size", "OUT_OF_RANGE", format!("must be 1-{MAX_PAGE}"));
            DEFAULT_PAGE
        }
        size => size,
    };
    v.into_result()?;
    Ok((cursor, page))
}

/// The query: $1 the worker, $2 the cursor, $3 their grids' prefix
/// pattern, $4 the page size plus one. Public for the benchmark's raw
/// baseline.
pub const SQL: &str = "SELECT case_id, state, grid, category, description, latitude_e6, longitude_e6, micros(filed_at), \
                micros(reported_at), micros(updated_at), reported_by = $1, reports, photo, version, last_sequence \
         FROM cases \
         WHERE last_sequence > $2 \
           AND (reported_by = $1 \
                OR (grid LIKE $3 AND ($2 > 0 OR state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED')))) \
         ORDER BY last_sequence LIMIT $4";

pub async fn list(
    pool: &PgPool,
    me: &str,
    region: &str,
    cursor: u64,
    page: u32,
) -> Result<api::ListMyCasesResponse, Status> {
    let rows = sqlx::query(SQL)
        .bind(me)
        .bind(i64::try_from(cursor).unwrap_or(i64::MAX))
        .bind(format!("{}%", region.replace(['%', '_', '\\'], "")))
        .bind(i64::from(page) + 1)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let more = rows.len() > page as usize;
    let rows = &rows[..rows.len().min(page as usize)];
    let next = rows.last().map_or(cursor, |row| row.get::<i64, _>(14) as u64);
    let cases = rows
        .iter()
        .map(|row| {
            let state = State::from_name(row.get::<&str, _>(1)).unwrap_or(State::Reported);
            api::MyCase {
                case_id: row.get::<uuid::Uuid, _>(0).to_string(),
                state: convert::state_to_proto(state) as i32,
                grid_code: row.get(2),
                category_code: row.get(3),
                description: row.get(4),
                location: super::sql::location_at(row, 5),
                filed_at: Some(convert::timestamp_to_proto(from_micros(row.get(7)))),
                reported_at: row.get::<Option<i64>, _>(8).map(|at| convert::timestamp_to_proto(from_micros(at))),
                updated_at: Some(convert::timestamp_to_proto(from_micros(row.get(9)))),
                mine: row.get(10),
                open: state.is_open(),
                reports: row.get::<i32, _>(11).max(1) as u32,
                photo_sha256: row.get::<Option<String>, _>(12).unwrap_or_default(),
                version: row.get::<i64, _>(13) as u64,
            }
        })
        .collect();
    Ok(api::ListMyCasesResponse { cases, cursor: next.to_string(), more })
}
