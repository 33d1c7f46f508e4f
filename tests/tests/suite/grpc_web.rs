//! gRPC-Web on the intake and query listeners, driven by a client gridcase
//! did not write (Buf's Connect for Node.js, gRPC-Web transport over
//! HTTP/1.1, messages from the descriptor set at run time; installed by
//! `deploy/install-deps.sh --browser` into tests/grpcweb), against real
//! nats-server, intake, projection and PostgreSQL; and CORS as a browser
//! asks it (a preflight), open only to the configured origins.

use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::SystemTimeSource;
use gridcase_tests::fixtures::{as_worker, filing, intake_client, jpeg, worker};
use gridcase_tests::{Backends, TestIntake, TestProjection, stream_end, workspace_root};

const APP: &str = "https://app.example.org";

async fn preflight(endpoint: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{endpoint}/gridcase.intake.v1.IntakeService/FileCase"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-grpc-web")
        .send()
        .await
        .expect("a preflight answered")
}

fn allowed_origin(response: &reqwest::Response) -> Option<String> {
    response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_grpc_web_client_files_uploads_downloads_and_lists_and_only_configured_origins_may_call() {
    let Backends { nats, db, log } = Backends::start().await;
    let mut config = TestIntake::config(&nats.url());
    config.grpc_web.grpc_web_origins = vec![APP.into()];
    let intake = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut projection_config = TestProjection::config(&nats.url(), &db.url);
    projection_config.grpc_web.grpc_web_origins = vec![APP.into()];
    let projection = TestProjection::spawn_with(projection_config, Arc::new(SystemTimeSource)).await;

    // One case filed over plain gRPC, projected, for the query listener.
    let before = CaseId::new_v7();
    intake_client(intake.endpoint()).await.file_case(as_worker(filing(before))).await.unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;

    let dir = tempfile::tempdir().unwrap();
    let descriptors = dir.path().join("gridcase.binpb");
    std::fs::write(&descriptors, gridcase_proto::FILE_DESCRIPTOR_SET).unwrap();
    let photo = jpeg(300_000);
    let photo_file = dir.path().join("web.jpg");
    std::fs::write(&photo_file, &photo).unwrap();
    let case_id = CaseId::new_v7();
    let client_dir = workspace_root().join("tests/grpcweb");
    assert!(
        client_dir.join("node_modules/@connectrpc/connect-node").is_dir(),
        "the gRPC-Web client is not installed: run deploy/install-deps.sh --browser"
    );
    let output = tokio::process::Command::new("node")
        .current_dir(&client_dir)
        .arg("client.mjs")
        .arg(&descriptors)
        .args([&intake.endpoint(), &projection.endpoint(), &worker().token(), &case_id.to_string()])
        .arg(&photo_file)
        .output()
        .await
        .expect("node runs");
    assert!(output.status.success(), "the gRPC-Web client failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let step = |name: &str| seen.as_array().unwrap().iter().find(|s| s["step"] == name).cloned().expect(name);
    println!("{}", serde_json::to_string_pretty(&seen).unwrap());

    let filed = step("file");
    assert_eq!(
        (filed["caseId"].as_str(), filed["replayed"].as_bool()),
        (Some(case_id.to_string().as_str()), Some(false))
    );
    let again = step("file again");
    assert_eq!((&again["sequence"], again["replayed"].as_bool()), (&filed["sequence"], Some(true)));
    // Connect's codes: 3 invalid_argument, 16 unauthenticated.
    let bad = step("bad filing");
    assert_eq!(bad["code"], 3, "{bad}");
    assert!(bad["details"].as_array().unwrap().iter().any(|d| d == "google.rpc.BadRequest"), "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("grid_code"), "{bad}");
    assert_eq!(step("no token")["code"], 16);
    let uploaded = step("upload");
    assert_eq!(uploaded["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&photo)));
    assert_eq!(uploaded["size"], photo.len().to_string());
    assert_eq!(step("note")["eventType"], "progress_added");
    let download = step("download");
    assert_eq!(download["bytes"], photo.len());
    assert!(download["parts"].as_u64().unwrap() >= 3, "the reference and several chunks: {download}");
    let mine = step("my cases");
    assert!(mine["caseIds"].as_array().unwrap().iter().any(|id| id == &before.to_string()), "{mine}");

    // The case the web client filed is in the log as any other.
    let history = gridcase_tests::act::events(&log, &gridcase_tests::act::subject("990101001001001", case_id)).await;
    assert_eq!(
        history.iter().map(|(stored, _)| stored.event_type.as_str()).collect::<Vec<_>>(),
        ["filed", "progress_added"]
    );

    // CORS: the configured origin is let in, any other is not.
    let allowed = preflight(&intake.endpoint(), APP).await;
    assert!(allowed.status().is_success());
    assert_eq!(allowed_origin(&allowed).as_deref(), Some(APP));
    let exposed = allowed.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(exposed.contains("authorization") && exposed.contains("x-grpc-web"), "{exposed}");
    assert_eq!(allowed_origin(&preflight(&projection.endpoint(), APP).await).as_deref(), Some(APP));
    assert_eq!(allowed_origin(&preflight(&intake.endpoint(), "https://evil.example").await), None);
    // Off by default: no origin at all.
    let default = TestIntake::spawn(&nats.url()).await;
    assert_eq!(allowed_origin(&preflight(&default.endpoint(), APP).await), None);
}
