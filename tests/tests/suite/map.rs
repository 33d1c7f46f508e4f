//! The one map (一张图): grid boundaries from the reference data in PostGIS,
//! the filings' points beside them, intake's out-of-grid flag checked
//! against PostGIS's own distance.

use std::collections::BTreeSet;
use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::ManualTimeSource;
use gridcase_proto::common::v1 as common;
use gridcase_proto::query::v1 as api;
use gridcase_tests::fixtures::{as_worker, filing, intake_client};
use gridcase_tests::{Backends, Identity, TestIntake, TestProjection, query_client, stream_end, workspace_root};
use sqlx::Row;

fn centre() -> Identity {
    Identity::new("cc-01", "command_centre", "cc-990101001", "990101001")
}

fn at(case_id: CaseId, grid: &str, (latitude, longitude): (f64, f64)) -> gridcase_proto::intake::v1::FileCaseRequest {
    let mut request = filing(case_id);
    request.grid_code = grid.into();
    request.location = Some(common::Location { latitude, longitude, address: String::new() });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_draws_the_territory_s_grids_and_open_cases_and_postgis_agrees_with_intake_s_flag() {
    let Backends { nats, db, .. } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let mut filer = intake_client(intake.endpoint()).await;
    // 城关街道: one case where it says, one filed 5 km away in 青石镇's land.
    let inside = CaseId::new_v7();
    filer.file_case(as_worker(filing(inside))).await.unwrap();
    let astray = CaseId::new_v7();
    filer.file_case(as_worker(at(astray, "990101001001001", (30.2, 120.1)))).await.unwrap();
    // Another township's case (a worker of 白云乡 files it).
    let baiyun = Identity::new("gw-02", "grid_worker", "cc-990101201", "990101201001001");
    let elsewhere = at(CaseId::new_v7(), "990101201001001", (30.2, 120.16));
    filer.file_case(baiyun.request(elsewhere)).await.unwrap();

    let config = TestProjection::config(&nats.url(), &db.url);
    let now = jiff::Timestamp::now();
    let projection = TestProjection::spawn_with(config.clone(), Arc::new(ManualTimeSource::new(now))).await;
    projection.caught_up_to(stream_end(&nats).await).await;
    let mut client = query_client(projection.endpoint(), &centre()).await;

    let map = client.get_grid_map(api::GetGridMapRequest::default()).await.unwrap().into_inner();
    let codes: BTreeSet<&str> = map.grids.iter().map(|g| g.code.as_str()).collect();
    let expected = [
        "990101001001001",
        "99010100100100101",
        "99010100100100102",
        "990101001001002",
        "990101001002001",
        "990101001002002",
    ];
    assert_eq!(codes, expected.into_iter().collect(), "城关街道's grids");
    for grid in &map.grids {
        let geometry: serde_json::Value = serde_json::from_str(&grid.geometry_geojson).unwrap();
        assert_eq!(geometry["type"], "MultiPolygon", "{}", grid.code);
        assert!(geometry["coordinates"][0][0].as_array().unwrap().len() >= 4, "{}", grid.code);
    }
    let east_gate = map.grids.iter().find(|g| g.code == "990101001001001").unwrap();
    assert_eq!((east_gate.name.as_str(), east_gate.level.as_str()), ("东门社区第一网格", "grid"));
    // Only the township's cases, with their points and flags.
    assert_eq!(map.open_cases, 2);
    let ids: BTreeSet<String> = map.cases.iter().map(|c| c.case_id.clone()).collect();
    assert_eq!(ids, [inside.to_string(), astray.to_string()].into_iter().collect());
    let point = |id: CaseId| map.cases.iter().find(|c| c.case_id == id.to_string()).unwrap();
    assert_eq!((point(inside).latitude, point(inside).longitude, point(inside).outside_grid_m), (30.2741, 120.1551, 0));
    let flagged = point(astray).outside_grid_m;
    assert!(flagged > 3000, "{flagged}");

    // The case page's record carries the same.
    let record = client.get_case(api::GetCaseRequest { case_id: astray.to_string() }).await.unwrap().into_inner();
    let location = record.location.expect("a location");
    assert_eq!((location.latitude, location.longitude, record.outside_grid_m), (30.2, 120.1, flagged));

    // PostGIS, measuring on the spheroid, agrees with intake's plane
    // measure to within 0.5 % (and says the other point is inside).
    let rows = sqlx::query(
        "SELECT c.case_id::text, c.outside_grid_m, ST_Distance(g.boundary::geography, c.location::geography), \
                ST_Covers(g.boundary, c.location) \
         FROM cases c JOIN grid_shapes g ON g.code = c.grid WHERE c.township = '990101001'",
    )
    .fetch_all(&projection.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let (id, flag, distance, covered): (String, Option<i32>, f64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if id == inside.to_string() {
            assert!(covered && distance == 0.0 && flag.is_none(), "{distance}");
        } else {
            let flag = f64::from(flag.unwrap());
            assert!(!covered && (flag - distance).abs() < distance * 0.005, "intake {flag} m, PostGIS {distance} m");
        }
    }

    // A region outside the caller's territory is refused; the county sees all 13 shapes.
    let refused =
        client.get_grid_map(api::GetGridMapRequest { region_prefix: "990101201".into(), ..Default::default() }).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    let auditor = Identity::new("audit-01", "county_auditor", "county-990101", "990101");
    let mut county = query_client(projection.endpoint(), &auditor).await;
    let all = county.get_grid_map(api::GetGridMapRequest::default()).await.unwrap().into_inner();
    assert_eq!((all.grids.len(), all.open_cases), (13, 3));
    let request = api::GetGridMapRequest { region_prefix: String::new(), max_cases: 1, without_grids: true };
    let cut = county.get_grid_map(request).await.unwrap().into_inner();
    assert_eq!((cut.cases.len(), cut.open_cases), (1, 3), "a cut list still says how many there are");
    assert!(cut.grids.is_empty(), "a live board's redraw asks for the points only");
    projection.stop().await.unwrap();

    // Restarted with boundaries of one grid only: the others are gone from
    // the map, not left behind.
    let reference = tempfile::tempdir().unwrap();
    for file in ["regions.csv", "categories.csv"] {
        std::fs::copy(workspace_root().join("deploy/reference").join(file), reference.path().join(file)).unwrap();
    }
    let text = std::fs::read_to_string(workspace_root().join("deploy/reference/grids.geojson")).unwrap();
    let mut collection: serde_json::Value = serde_json::from_str(&text).unwrap();
    collection["features"].as_array_mut().unwrap().retain(|f| f["properties"]["code"] == "990101001001001");
    std::fs::write(reference.path().join("grids.geojson"), collection.to_string()).unwrap();
    let mut config = config;
    config.reference_dir = reference.path().to_owned();
    let projection = TestProjection::spawn_with(config, Arc::new(ManualTimeSource::new(now))).await;
    let mut client = query_client(projection.endpoint(), &centre()).await;
    let map = client.get_grid_map(api::GetGridMapRequest::default()).await.unwrap().into_inner();
    assert_eq!(map.grids.iter().map(|g| g.code.as_str()).collect::<Vec<_>>(), ["990101001001001"]);
    projection.stop().await.unwrap();
    intake.stop().await.unwrap();
}
