//! `FindSimilarCases`: before filing, the open cases of the same or a
//! related category (the same major category: the code's first two digits)
//! near a point, in the caller's territory, nearest first. PostGIS answers
//! it on the partial GiST index over open cases' points
//! (`cases_open_location`, migration 0014): distances in metres on the
//! geography of the points.

use gridcase_auth::Territory;
use gridcase_domain::{CategoryCode, Location, State};
use gridcase_grpc::{Access, Violations};
use gridcase_proto::convert;
use gridcase_proto::query::v1 as api;
use jiff::{SignedDuration, Timestamp};
use sqlx::{PgPool, Row as _};
use tonic::Status;

use super::db_error;
use crate::columns::{from_micros, micros};

pub const DEFAULT_RADIUS_M: u32 = 50;
pub const MAX_RADIUS_M: u32 = 1000;
pub const DEFAULT_DAYS: u32 = 30;
pub const MAX_DAYS: u32 = 90;
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// A question, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearby {
    pub location: Location,
    pub category: CategoryCode,
    pub radius_m: u32,
    pub days: u32,
    pub limit: u32,
}

fn bounded(value: u32, default: u32, max: u32, field: &str, v: &mut Violations) -> u32 {
    match value {
        0 => default,
        value if value > max => {
            v.add(field, "OUT_OF_RANGE", format!("must be 1-{max}"));
            default
        }
        value => value,
    }
}

/// Pure: the request's fields, or every violation.
pub fn check(request: &api::FindSimilarCasesRequest) -> Result<Nearby, Status> {
    let mut v = Violations::new();
    let location = match &request.location {
        None => {
            v.add("location", "REQUIRED", "is required: where the worker stands");
            None
        }
        Some(location) => match Location::from_degrees(location.latitude, location.longitude, None) {
            Ok(location) => Some(location),
            Err(error) => {
                v.add("location", "OUT_OF_RANGE", error.to_string());
                None
            }
        },
    };
    let category = match CategoryCode::parse(&request.category_code) {
        Ok(code) => Some(code),
        Err(_) if request.category_code.is_empty() => {
            v.add("category_code", "REQUIRED", "is required: the category about to be filed");
            None
        }
        Err(error) => {
            v.add("category_code", "MALFORMED", error.to_string());
            None
        }
    };
    let radius_m = bounded(request.radius_m, DEFAULT_RADIUS_M, MAX_RADIUS_M, "radius_m", &mut v);
    let days = bounded(request.days, DEFAULT_DAYS, MAX_DAYS, "days", &mut v);
    let limit = bounded(request.limit, DEFAULT_LIMIT, MAX_LIMIT, "limit", &mut v);
    v.into_result()?;
    Ok(Nearby { location: location.expect("checked"), category: category.expect("checked"), radius_m, days, limit })
}

/// The region a caller's nearby cases are looked for in: their territory
/// (a grid worker's grid, a centre's township).
pub fn region_of(access: &Access) -> Result<String, Status> {
    match &access.principal.territory {
        Territory::Region(prefix) => Ok(prefix.clone()),
        Territory::Unit(_) => Err(Status::permission_denied("a handling unit has no territory to search")),
    }
}

/// The query: $1 longitude, $2 latitude, $3 radius in metres, $4 the
/// territory's prefix (compared by `substr`, which no b-tree answers: the
/// b-tree over grids, there for ListMyCases, would otherwise win over the
/// GiST index of open cases' points and read a whole grid's cases), $5 the category, $6 the earliest filing
/// (microseconds), $7 the limit. Public for the benchmark's raw baseline.
pub const SQL: &str = "WITH here AS (SELECT ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography AS point) \
         SELECT case_id, state, grid, category, description, latitude_e6, longitude_e6, micros(filed_at), reports, photo, \
                ST_Distance(location::geography, here.point) AS distance \
         FROM cases, here \
         WHERE state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED') \
           AND ST_DWithin(location::geography, here.point, $3) \
           AND substr(grid, 1, length($4)) = $4 \
           AND left(category, 2) = left($5, 2) \
           AND filed_at >= ts_from_micros($6) \
         ORDER BY distance, case_id LIMIT $7";

pub async fn find(
    pool: &PgPool,
    region: &str,
    nearby: &Nearby,
    now: Timestamp,
) -> Result<api::FindSimilarCasesResponse, Status> {
    let since = now - SignedDuration::from_hours(24 * i64::from(nearby.days));
    let category = nearby.category.as_str();
    let rows = sqlx::query(SQL)
        .bind(nearby.location.longitude())
        .bind(nearby.location.latitude())
        .bind(f64::from(nearby.radius_m))
        .bind(region)
        .bind(category)
        .bind(micros(since))
        .bind(i64::from(nearby.limit))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let cases = rows
        .iter()
        .map(|row| {
            let state = State::from_name(row.get::<&str, _>(1)).unwrap_or(State::Reported);
            let row_category: String = row.get(3);
            api::SimilarCase {
                case_id: row.get::<uuid::Uuid, _>(0).to_string(),
                state: convert::state_to_proto(state) as i32,
                grid_code: row.get(2),
                same_category: row_category == category,
                category_code: row_category,
                description: row.get(4),
                location: super::sql::location_at(row, 5),
                filed_at: Some(convert::timestamp_to_proto(from_micros(row.get(7)))),
                reports: row.get::<i32, _>(8).max(1) as u32,
                photo_sha256: row.get::<Option<String>, _>(9).unwrap_or_default(),
                distance_m: row.get(10),
            }
        })
        .collect();
    Ok(api::FindSimilarCasesResponse { cases })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridcase_proto::common::v1 as common;

    #[test]
    fn a_question_is_checked_field_by_field_with_documented_defaults() {
        let asked = api::FindSimilarCasesRequest {
            location: Some(common::Location { latitude: 30.2741, longitude: 120.1551, address: String::new() }),
            category_code: "0201".into(),
            ..Default::default()
        };
        let nearby = check(&asked).unwrap();
        assert_eq!((nearby.radius_m, nearby.days, nearby.limit), (DEFAULT_RADIUS_M, DEFAULT_DAYS, DEFAULT_LIMIT));
        let bad = api::FindSimilarCasesRequest { radius_m: 5000, days: 91, limit: 101, ..Default::default() };
        let status = check(&bad).unwrap_err();
        use tonic_types::StatusExt as _;
        let fields: Vec<String> =
            status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["location", "category_code", "radius_m", "days", "limit"]);
    }
}
