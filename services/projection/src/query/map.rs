//! The one map (一张图): the grids of a territory with their boundaries, and
//! its open cases as points. PostGIS holds both (migration 0008); the
//! boundaries come from the reference data ([`crate::store::load_shapes`]).

use gridcase_auth::policy::ListScope;
use gridcase_domain::{State, Tier};
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use tonic::Status;

use super::db_error;
use super::sql::{overdue_sql, push_region, push_scope};

/// The most cases one map carries (a township's open cases, overdue first).
pub(super) const MAX_CASES: u32 = 5000;

/// About 5 m at these latitudes: finer than a screen shows a township.
const SIMPLIFY_DEGREES: f64 = 0.00005;

fn open_states() -> String {
    let open: Vec<String> = State::ALL.into_iter().filter(|s| s.is_open()).map(|s| format!("'{}'", s.name())).collect();
    open.join(", ")
}

pub(super) async fn grid_map(
    pool: &PgPool,
    scope: &ListScope,
    prefix: &str,
    now: i64,
    max_cases: u32,
    with_grids: bool,
) -> Result<api::GridMap, Status> {
    let grids = if with_grids { grids(pool, scope, prefix).await? } else { Vec::new() };
    let (cases, open_cases) = cases(pool, scope, prefix, now, max_cases).await?;
    Ok(api::GridMap { grids, cases, open_cases })
}

async fn grids(pool: &PgPool, scope: &ListScope, prefix: &str) -> Result<Vec<api::MapGrid>, Status> {
    // The region drawn: the one asked for, else the caller's; a caller
    // without one (a handling unit) sees the townships its open cases lie in.
    let region = if prefix.is_empty() { scope.region_prefix.clone().unwrap_or_default() } else { prefix.to_owned() };
    let mut grids = QueryBuilder::<Postgres>::new(format!(
        "SELECT code, name, level, ST_AsGeoJSON(ST_Multi(ST_SimplifyPreserveTopology(boundary, {SIMPLIFY_DEGREES})), 6) \
         FROM grid_shapes WHERE "
    ));
    if region.is_empty() {
        grids.push(format!("township IN (SELECT DISTINCT township FROM cases WHERE state IN ({})", open_states()));
        push_scope(&mut grids, scope);
        grids.push(")");
    } else {
        grids.push("code LIKE ").push_bind(format!("{region}%"));
    }
    grids.push(" ORDER BY code");
    Ok(grids
        .build()
        .fetch_all(pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| api::MapGrid { code: row.get(0), name: row.get(1), level: row.get(2), geometry_geojson: row.get(3) })
        .collect())
}

async fn cases(
    pool: &PgPool,
    scope: &ListScope,
    prefix: &str,
    now: i64,
    max_cases: u32,
) -> Result<(Vec<api::MapCase>, u64), Status> {
    let mut cases = QueryBuilder::<Postgres>::new(format!(
        "SELECT case_id::text, state, tier, grid, latitude_e6, longitude_e6, outside_grid_m, COALESCE({}, false) AS overdue, \
         count(*) OVER () FROM cases WHERE latitude_e6 IS NOT NULL AND state IN ({})",
        overdue_sql(now),
        open_states(),
    ));
    push_scope(&mut cases, scope);
    if !prefix.is_empty() {
        push_region(&mut cases, prefix);
    }
    cases.push(" ORDER BY overdue DESC, filed_at DESC, case_id DESC LIMIT ").push_bind(i64::from(max_cases));
    let rows = cases.build().fetch_all(pool).await.map_err(db_error)?;
    let open_cases = rows.first().map_or(0, |row| row.get::<i64, _>(8) as u64);
    let cases = rows
        .into_iter()
        .map(|row| api::MapCase {
            case_id: row.get(0),
            state: convert::state_to_proto(State::from_name(row.get::<&str, _>(1)).unwrap_or(State::Reported)) as i32,
            tier: convert::tier_to_proto(row.get::<Option<&str>, _>(2).and_then(Tier::parse)) as i32,
            grid_code: row.get(3),
            latitude: f64::from(row.get::<i32, _>(4)) / 1e6,
            longitude: f64::from(row.get::<i32, _>(5)) / 1e6,
            outside_grid_m: row.get::<Option<i32>, _>(6).map_or(0, |m| m as u32),
            overdue: row.get(7),
        })
        .collect();
    Ok((cases, open_cases))
}
