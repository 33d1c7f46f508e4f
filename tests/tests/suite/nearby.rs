//! The worker in the street, against real nats-server, intake, projection
//! and PostgreSQL with PostGIS: `FindSimilarCases` before filing,
//! `AddReport` instead of a duplicate, `ListMyCases` with a change cursor,
//! and photos as thumbnails and ranges.

use std::collections::BTreeSet;
use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::SystemTimeSource;
use gridcase_proto::cases::v1 as cases;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as api;
use gridcase_proto::query::v1 as query;
use gridcase_tests::fixtures::{filing, intake_client, photo_png, upload};
use gridcase_tests::lifecycle::{centre, client as cases_client};
use gridcase_tests::{Backends, Identity, TestIntake, TestProjection, query_client, stream_end};
use tonic::Code;

/// The lamp: just north of the line between 东门社区第一网格 and 第二网格.
const LAMP: (f64, f64) = (30.2705, 120.1850);
/// Degrees per metre, near the lamp.
const LAT_PER_M: f64 = 1.0 / 111_195.0;
const LON_PER_M: f64 = 1.0 / 96_000.0;

fn worker_of(grid: &str, subject: &str) -> Identity {
    Identity::new(subject, "grid_worker", "cc-990101001", grid)
}

fn at(north_m: f64, east_m: f64) -> common::Location {
    common::Location {
        latitude: LAMP.0 + north_m * LAT_PER_M,
        longitude: LAMP.1 + east_m * LON_PER_M,
        address: String::new(),
    }
}

async fn file(
    client: &mut gridcase_proto::intake::v1::intake_service_client::IntakeServiceClient<tonic::transport::Channel>,
    who: &Identity,
    grid: &str,
    category: &str,
    location: common::Location,
) -> CaseId {
    let id = CaseId::new_v7();
    let request = api::FileCaseRequest {
        grid_code: grid.into(),
        category_code: category.into(),
        location: Some(location),
        ..filing(id)
    };
    client.file_case(who.request(request)).await.expect("filed");
    id
}

#[tokio::test]
async fn a_worker_finds_the_fifty_reports_of_one_lamp_adds_a_report_and_syncs_down_only_what_changed() {
    let Backends { nats, db, log: _log } = Backends::start().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    let mut filer = intake_client(intake.endpoint()).await;
    let grid = "990101001001001";
    let next_door = "990101001001002";
    let (a, b) = (worker_of(grid, "gw-0042"), worker_of(grid, "gw-0043"));
    let neighbour = worker_of(next_door, "gw-0099");

    // 50 reports of the broken lamp within 25 m, by two workers of the grid.
    let mut lamp = BTreeSet::new();
    for i in 0..50 {
        let angle = f64::from(i) * 0.7;
        let metres = 1.0 + f64::from(i % 25);
        let who = if i % 2 == 0 { &a } else { &b };
        lamp.insert(file(&mut filer, who, grid, "0201", at(metres * angle.sin(), metres * angle.cos())).await);
    }
    // Around it, what must not be found: the grid next door 10 m away, a
    // lamp 200 m off, a neighbour dispute (another major category) on the
    // spot, and a voided duplicate on the spot.
    for _ in 0..5 {
        file(&mut filer, &neighbour, next_door, "0201", at(-10.0, 0.0)).await;
    }
    let far = file(&mut filer, &a, grid, "0201", at(200.0, 0.0)).await;
    file(&mut filer, &a, grid, "0301", at(0.0, 0.0)).await;
    let voided = file(&mut filer, &a, grid, "0203", at(1.0, 1.0)).await;
    let mut lifecycle = cases_client(intake.endpoint()).await;
    let context = |id: CaseId, command: &str| {
        Some(cases::CommandContext { case_id: id.to_string(), command_id: command.into(), expected_version: None })
    };
    lifecycle
        .void(centre().request(cases::VoidRequest { context: context(voided, "void-1"), reason: "重复".into() }))
        .await
        .unwrap();
    // A road (0203: same major category as the lamp) 5 m away is related.
    let road = file(&mut filer, &b, grid, "0203", at(0.0, 5.0)).await;
    projection.caught_up_to(stream_end(&nats).await).await;

    let ask = |radius_m: u32| query::FindSimilarCasesRequest {
        location: Some(at(0.0, 0.0)),
        category_code: "0201".into(),
        radius_m,
        days: 7,
        limit: 100,
    };
    let mut reader_a = query_client(projection.endpoint(), &a).await;
    let found = reader_a.find_similar_cases(ask(30)).await.unwrap().into_inner().cases;
    let ids: BTreeSet<CaseId> = found.iter().map(|c| CaseId::parse(&c.case_id).unwrap()).collect();
    let mut expected = lamp.clone();
    expected.insert(road);
    assert_eq!(ids, expected, "the 50 lamp reports and the related road, nothing else");
    assert!(found.windows(2).all(|w| w[0].distance_m <= w[1].distance_m), "nearest first");
    assert!(found.iter().all(|c| c.distance_m <= 30.0 && c.grid_code == grid));
    assert_eq!(found.iter().filter(|c| !c.same_category).count(), 1, "the road is related, not the same");
    assert!(!ids.contains(&far) && !ids.contains(&voided));
    // The neighbour sees their own five, none of ours.
    let mut reader_n = query_client(projection.endpoint(), &neighbour).await;
    let theirs = reader_n.find_similar_cases(ask(30)).await.unwrap().into_inner().cases;
    assert_eq!(theirs.len(), 5);
    assert!(theirs.iter().all(|c| c.grid_code == next_door));
    // Bad questions, every field at once.
    let bad = reader_a
        .find_similar_cases(query::FindSimilarCasesRequest { radius_m: 5000, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Worker B, who did not file the nearest one, adds a report with a photo.
    let nearest = CaseId::parse(&found[0].case_id).unwrap();
    let photo = photo_png(800, 600);
    let attachment = upload(intake.endpoint(), "image/png", &photo).await;
    let seen = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    let report = |id: CaseId, command: &str| cases::AddReportRequest {
        context: context(id, command),
        reported_at: Some(gridcase_proto::convert::timestamp_to_proto(seen)),
        location: Some(at(1.0, 1.0)),
        note: "灯杆也歪了".into(),
        attachments: vec![attachment.clone()],
    };
    let added = lifecycle.add_report(b.request(report(nearest, "report-1"))).await.unwrap().into_inner();
    assert_eq!(added.event_type, "report_added");
    let again = lifecycle.add_report(b.request(report(nearest, "report-1"))).await.unwrap().into_inner();
    assert!(again.replayed, "a retried report is the same report");
    // Not on a voided case, not across the grid line, not from the future.
    let closed = lifecycle.add_report(b.request(report(voided, "report-2"))).await.unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
    let outside = lifecycle.add_report(neighbour.request(report(nearest, "report-3"))).await.unwrap_err();
    assert_eq!(outside.code(), Code::NotFound, "{outside:?}");
    let mut future = report(nearest, "report-4");
    future.reported_at =
        Some(gridcase_proto::convert::timestamp_to_proto(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)));
    let refused = lifecycle.add_report(b.request(future)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    projection.caught_up_to(stream_end(&nats).await).await;
    let found = reader_a.find_similar_cases(ask(30)).await.unwrap().into_inner().cases;
    let counted = found.iter().find(|c| c.case_id == nearest.to_string()).unwrap();
    assert_eq!(counted.reports, 2, "the case counts its reports");
    assert_eq!(counted.photo_sha256, attachment.sha256, "the report's photo is the case's thumbnail");

    // The photo as a thumbnail (a JPEG within 120 px) and as a range.
    let fetch = |max_dimension: u32, offset: u64, length: u64| cases::GetAttachmentRequest {
        case_id: nearest.to_string(),
        sha256: attachment.sha256.clone(),
        max_dimension,
        offset,
        length,
    };
    let bytes = |mut parts: tonic::Streaming<cases::AttachmentPart>| async move {
        let mut bytes = Vec::new();
        while let Some(part) = parts.message().await.unwrap() {
            if let Some(cases::attachment_part::Part::Chunk(chunk)) = part.part {
                bytes.extend(chunk);
            }
        }
        bytes
    };
    let thumb = bytes(lifecycle.get_attachment(a.request(fetch(120, 0, 0))).await.unwrap().into_inner()).await;
    let decoded = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).expect("a JPEG");
    assert_eq!((decoded.width(), decoded.height()), (120, 90));
    assert!(thumb.len() < photo.len() / 4, "{} bytes of thumbnail for a {}-byte photo", thumb.len(), photo.len());
    let range = bytes(lifecycle.get_attachment(a.request(fetch(0, 100, 1000))).await.unwrap().into_inner()).await;
    assert_eq!(range, photo[100..1100]);
    let tail = bytes(lifecycle.get_attachment(a.request(fetch(0, 1000, 0))).await.unwrap().into_inner()).await;
    assert_eq!(tail, photo[1000..]);
    let beyond = lifecycle.get_attachment(a.request(fetch(0, photo.len() as u64 + 1, 0))).await.unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange);

    // ListMyCases: A's world is their filings and the open cases of the grid.
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = reader_a
            .list_my_cases(query::ListMyCasesRequest { cursor: cursor.clone(), page_size: 20 })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.cases);
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    let listed: BTreeSet<CaseId> = all.iter().map(|c| CaseId::parse(&c.case_id).unwrap()).collect();
    assert_eq!(listed.len(), all.len(), "each case once on a first sync");
    assert!(lamp.iter().all(|id| listed.contains(id)), "B's lamp reports are in A's grid, and open");
    assert!(listed.contains(&voided), "A's own filing, voided");
    assert!(all.iter().all(|c| c.grid_code == grid), "nothing from next door");
    assert!(all.iter().filter(|c| !c.mine).all(|c| c.open), "others' cases only while open");
    let first = all.iter().find(|c| c.case_id == nearest.to_string()).unwrap();
    assert_eq!((first.reports, first.photo_sha256.as_str()), (2, attachment.sha256.as_str()));

    // Nothing changed: nothing new. Then B's case is voided and A's far one
    // noted: exactly those two come back, the voided one no longer open.
    let quiet = reader_a.list_my_cases(query::ListMyCasesRequest { cursor: cursor.clone(), page_size: 0 }).await;
    assert!(quiet.unwrap().into_inner().cases.is_empty());
    let b_case =
        *lamp.iter().find(|id| **id != nearest && all.iter().any(|c| c.case_id == id.to_string() && !c.mine)).unwrap();
    lifecycle
        .void(centre().request(cases::VoidRequest { context: context(b_case, "void-2"), reason: "重复".into() }))
        .await
        .unwrap();
    lifecycle
        .add_progress(a.request(cases::AddProgressRequest {
            context: context(far, "note-1"),
            note: "远处那盏也坏了".into(),
            attachments: vec![],
        }))
        .await
        .unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;
    let changed = reader_a
        .list_my_cases(query::ListMyCasesRequest { cursor: cursor.clone(), page_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(String, bool)> = changed.cases.iter().map(|c| (c.case_id.clone(), c.open)).collect();
    assert_eq!(states, [(b_case.to_string(), false), (far.to_string(), true)], "only what changed, in order");
    assert!(changed.cursor.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
    let bad_cursor = reader_a.list_my_cases(query::ListMyCasesRequest { cursor: "x".into(), page_size: 0 }).await;
    assert_eq!(bad_cursor.unwrap_err().code(), Code::InvalidArgument);
}
