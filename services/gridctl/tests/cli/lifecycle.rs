//! gridctl against a running intake service (real nats-server), the way an
//! operator uses it: file with a photo, move the case along, read it back.

use std::process::{Command, Output};

use gridcase_tests::{Identity, NatsServer, TestIntake};

struct Gridctl {
    addr: String,
}

impl Gridctl {
    fn run(&self, who: &Identity, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gridctl"))
            .args(["--addr", &self.addr, "--token", &who.token()])
            .args(args)
            .output()
            .expect("run gridctl")
    }

    /// Run and parse the JSON it prints, failing the test with stderr if it failed.
    fn json(&self, who: &Identity, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(who, &all);
        assert!(output.status.success(), "gridctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
    }
}

/// The command centre of a township.
fn centre(township: &str) -> Identity {
    Identity::new("tester-1", "command_centre", &format!("cc-{township}"), township)
}

fn unit() -> Identity {
    Identity::new("wy-07", "handling_unit", "unit.property.990101001", "unit.property.990101001")
}

fn worker(grid: &str) -> Identity {
    Identity::new("gw-0042", "grid_worker", "cc-990101001", grid)
}

fn county() -> Identity {
    Identity::new("audit-1", "county_auditor", "co-990101", "990101")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_walks_a_case_from_filing_to_closure_with_gridctl() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let gridctl = Gridctl { addr: intake.endpoint() };
    let photo_dir = tempfile::tempdir().unwrap();
    let photo = photo_dir.path().join("roof.jpg");
    std::fs::write(&photo, gridcase_tests::fixtures::jpeg(150_000)).unwrap();

    let filed = tokio::task::spawn_blocking({
        let addr = gridctl.addr.clone();
        let photo = photo.to_string_lossy().into_owned();
        move || {
            Gridctl { addr }.json(
                &worker("990101001001001"),
                &[
                    "file",
                    "--grid",
                    "990101001001001",
                    "--category",
                    "0204",
                    "--description",
                    "3号楼顶层漏水",
                    "--latitude",
                    "30.27",
                    "--longitude",
                    "120.15",
                    "--contact-phone",
                    "13812345678",
                    "--photo",
                    &photo,
                ],
            )
        }
    })
    .await
    .unwrap();
    let case = filed["case_id"].as_str().unwrap().to_owned();

    let (cc, unit) = (centre("990101001"), unit());
    let steps: Vec<(&Identity, Vec<&str>, &str)> = vec![
        (&cc, vec!["register", &case, "--tier", "normal"], "REGISTERED"),
        (&cc, vec!["dispatch", &case, "--unit", "unit.property.990101001"], "DISPATCHED"),
        (&unit, vec!["acknowledge", &case], "IN_PROGRESS"),
        (&unit, vec!["request-extension", &case, "--days", "2", "--reason", "等待防水材料"], "IN_PROGRESS"),
        (&cc, vec!["decide-extension", &case, "--approve", "1"], "IN_PROGRESS"),
        (&unit, vec!["resolve", &case, "--summary", "已做防水", "--photo", photo.to_str().unwrap()], "RESOLVED"),
        (&cc, vec!["verify", &case, "--pass"], "CLOSED"),
        (&cc, vec!["feedback", &case, "--feedback", "satisfied"], "CLOSED"),
    ];
    for (who, args, state) in steps {
        let gridctl = Gridctl { addr: gridctl.addr.clone() };
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let who = who.clone();
        let result = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gridctl.json(&who, &args)
        })
        .await
        .unwrap();
        assert_eq!(result["state"], state, "{result}");
    }

    let (show, history, refused, text) = tokio::task::spawn_blocking({
        let addr = gridctl.addr.clone();
        let case = case.clone();
        move || {
            let g = Gridctl { addr };
            let show = g.json(&county(), &["show", &case]);
            let history = g.json(&county(), &["history", &case]);
            let refused = g.run(&centre("990101001"), &["reopen", &case, "--reason", "再看看"]);
            let text = g.run(&county(), &["history", &case]);
            (show, history, refused, text)
        }
    })
    .await
    .unwrap();
    assert_eq!(show["state"], "CLOSED");
    assert_eq!(show["resident_contact"]["phone"], "138****5678", "the county reads masked contact details");
    assert_eq!(show["resident_contact"]["masked"], true);
    assert_eq!(show["approved_extension_days"], 1);
    assert_eq!(show["unit"], "unit.property.990101001");
    assert_eq!(history["chain_verified"], true);
    // JSON times are RFC 3339 with their offset, for scripts in any zone.
    for due in show["deadlines"].as_array().unwrap() {
        let text = due["due"].as_str().unwrap();
        assert!(text.parse::<jiff::Timestamp>().is_ok() && text.ends_with("+08:00"), "{text}");
    }
    let events = history["events"].as_array().unwrap();
    for event in events {
        let text = event["occurred_at"].as_str().unwrap();
        assert!(text.parse::<jiff::Timestamp>().is_ok() && text.ends_with("+08:00"), "{text}");
    }
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "filed",
            "registered",
            "dispatched",
            "acknowledged",
            "extension_requested",
            "extension_approved",
            "resolved",
            "verification_passed",
            "feedback_recorded"
        ]
    );
    assert_eq!(events[0]["attachments"][0]["size"], 150_000);
    assert_eq!(events[6]["attachments"][0]["size"], 150_000, "evidence photo");
    assert_eq!(events[4]["reason"], "等待防水材料");
    assert_eq!(events[3]["actor"]["organisation"], "unit.property.990101001");
    // A history is an audit view: the contact masked, not its sealed form.
    assert_eq!(events[0]["payload"]["resident_contact"]["phone"], "138****5678");
    assert!(events[0]["payload"]["resident_contact"].get("sealed").is_none());

    // A forbidden move gets a precise refusal and a failure exit code.
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("FailedPrecondition") && message.contains("REOPEN_NEEDS_UNSATISFIED_FEEDBACK"),
        "{message}"
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("hash chain verified"), "{text}");
    assert!(text.contains("«等待防水材料»"), "{text}");
}

#[test]
fn every_subcommand_has_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_gridctl")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(subcommands.len() >= 23, "{subcommands:?}");
    for subcommand in subcommands {
        let output = Command::new(env!("CARGO_BIN_EXE_gridctl")).args([subcommand, "--help"]).output().unwrap();
        assert!(output.status.success(), "{subcommand} --help");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage: gridctl"), "{subcommand}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gridctl_lists_overdue_cases_and_the_ledger_from_the_query_service() {
    use std::sync::Arc;

    use gridcase_tests::{TestDatabase, TestProjection, stream_end};

    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    // The query service's clock stands ten days ahead: the case is long overdue by then.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(240);
    let projection = TestProjection::spawn_with(
        TestProjection::config(&nats.url(), &db.url),
        Arc::new(gridcase_process::ManualTimeSource::new(later)),
    )
    .await;
    let (addr, query_addr) = (intake.endpoint(), projection.endpoint());
    let case = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            let g = Gridctl { addr };
            let filed = g.json(
                &worker("990101101001001"),
                &[
                    "file",
                    "--grid",
                    "990101101001001",
                    "--category",
                    "0101",
                    "--description",
                    "垃圾堆放",
                    "--latitude",
                    "30.2",
                    "--longitude",
                    "120.1",
                ],
            );
            let case = filed["case_id"].as_str().unwrap().to_owned();
            g.json(&centre("990101101"), &["register", &case, "--tier", "normal"]);
            g.json(&centre("990101101"), &["dispatch", &case, "--unit", "unit.urban.990101"]);
            case
        }
    })
    .await
    .unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;
    let (overdue, ledger, exported) = tokio::task::spawn_blocking(move || {
        let g = Gridctl { addr };
        let overdue = g.json(&centre("990101101"), &["--query-addr", &query_addr, "overdue", "--region", "990101101"]);
        let today =
            jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).date().to_string();
        let ledger = g.json(
            &centre("990101101"),
            &[
                "--query-addr",
                &query_addr,
                "ledger",
                "--kind",
                "township",
                "--org",
                "990101101",
                "--from",
                &today,
                "--to",
                &today,
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let mut exported = Vec::new();
        for format in ["csv", "xlsx"] {
            let out = dir.path().join(format!("cases.{format}"));
            let written = g.json(
                &centre("990101101"),
                &["--query-addr", &query_addr, "export", "cases", "--format", format, "--out", out.to_str().unwrap()],
            );
            exported.push((written, std::fs::read(&out).unwrap()));
            let again = g.run(
                &centre("990101101"),
                &["--query-addr", &query_addr, "export", "cases", "--out", out.to_str().unwrap()],
            );
            assert!(!again.status.success(), "an existing file is never overwritten");
        }
        (overdue, ledger, exported)
    })
    .await
    .unwrap();
    let (overdue, ledger, exported) = (overdue, ledger, exported);
    let (csv, csv_bytes) = &exported[0];
    assert_eq!(csv["rows"], 1, "{csv}");
    let text = String::from_utf8(csv_bytes.clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "a header and the case: {text}");
    assert!(text.lines().nth(1).unwrap().starts_with(&case));
    let (xlsx, xlsx_bytes) = &exported[1];
    assert_eq!(xlsx["rows"], 1);
    assert!(xlsx_bytes.starts_with(b"PK"), "an XLSX file is a zip");
    assert_eq!(overdue["total"], 2, "acknowledge and resolve clocks both overdue: {overdue}");
    let group = &overdue["groups"][0];
    assert_eq!((group["township"].as_str(), group["unit"].as_str()), (Some("990101101"), Some("unit.urban.990101")));
    assert!(group["items"].as_array().unwrap().iter().all(|i| i["case_id"] == case.as_str()));
    assert_eq!(ledger[0]["filed"], 1);
    assert_eq!(ledger[0]["overdue_open"], 1);
    projection.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gridctl_token_mints_only_from_a_server_with_a_development_secret() {
    let nats = NatsServer::start();
    let dev = TestIntake::spawn(&nats.url()).await;
    let mut config = TestIntake::config(&nats.url());
    config.auth.dev_secret_file = None;
    let public_key = gridcase_tests::workspace_root().join("crates/auth/testdata/idp-ed25519.pub.pem");
    config.auth.keys = vec![format!("idp-2026:EdDSA:{}", public_key.display())];
    let production = TestIntake::spawn_with(config, std::sync::Arc::new(gridcase_process::SystemTimeSource)).await;
    let (dev_addr, production_addr) = (dev.endpoint(), production.endpoint());
    tokio::task::spawn_blocking(move || {
        let gridctl = |addr: &str, args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_gridctl"))
                .env_remove("GRIDCTL_TOKEN")
                .args(["--addr", addr])
                .args(args)
                .output()
                .unwrap()
        };
        let mint = ["token", "--subject", "cc-op-1", "--role", "command_centre", "--org", "cc-990101001"];
        let minted = gridctl(&dev_addr, &[&mint[..], &["--territory", "990101001"]].concat());
        assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
        let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
        let whoami = gridctl(&dev_addr, &["--token", &token, "--json", "whoami"]);
        let who: serde_json::Value = serde_json::from_slice(&whoami.stdout).unwrap();
        assert_eq!((who["subject"].as_str(), who["territory"].as_str()), (Some("cc-op-1"), Some("990101001")));

        let bad_territory = gridctl(&dev_addr, &[&mint[..], &["--territory", "990101"]].concat());
        assert!(!bad_territory.status.success());
        let message = String::from_utf8_lossy(&bad_territory.stderr);
        assert!(message.contains("InvalidArgument") && message.contains("territory"), "{message}");

        let refused = gridctl(&production_addr, &[&mint[..], &["--territory", "990101001"]].concat());
        assert!(!refused.status.success());
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(message.contains("FailedPrecondition") && message.contains("no development secret"), "{message}");
        let rejected = gridctl(&production_addr, &["--token", &token, "whoami"]);
        assert!(String::from_utf8_lossy(&rejected.stderr).contains("Unauthenticated"));
        let no_token = gridctl(&dev_addr, &["whoami"]);
        assert!(String::from_utf8_lossy(&no_token.stderr).contains("GRIDCTL_TOKEN"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_answers_and_calls_back_a_resident_s_request_with_gridctl() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let addr = intake.endpoint();
    let run = move |who: Identity, args: Vec<&'static str>| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || Gridctl { addr }.json(&who, &args))
    };
    let filed = run(
        worker("990101001001001"),
        vec![
            "file",
            "--grid",
            "990101001001001",
            "--category",
            "0204",
            "--description",
            "居民来电：楼顶漏水",
            "--latitude",
            "30.27",
            "--longitude",
            "120.15",
            "--request-kind",
            "complaint",
        ],
    )
    .await
    .unwrap();
    let case: &'static str = Box::leak(filed["case_id"].as_str().unwrap().to_owned().into_boxed_str());
    let (cc, unit) = (centre("990101001"), unit());
    let steps: Vec<(&Identity, Vec<&'static str>, &str)> = vec![
        (&cc, vec!["reply", case, "--method", "phone", "--text", "已受理，三日内上门"], "replied"),
        (&cc, vec!["register", case, "--tier", "normal"], "registered"),
        (&cc, vec!["dispatch", case, "--unit", "unit.property.990101001"], "dispatched"),
        (&unit, vec!["acknowledge", case], "acknowledged"),
        (&unit, vec!["resolve", case, "--summary", "已做防水"], "resolved"),
        (&cc, vec!["verify", case, "--pass"], "verification_passed"),
        (&cc, vec!["callback", case, "--not-reached"], "callback_recorded"),
        (&cc, vec!["callback", case, "--attempts", "2", "--satisfaction", "basically-satisfied"], "callback_recorded"),
    ];
    for (who, args, event) in steps {
        let result = run(who.clone(), args.clone()).await.unwrap();
        assert_eq!(result["event_type"], event, "{args:?}: {result}");
    }
    // Reached once: a second callback is refused by the rule, named.
    let addr = intake.endpoint();
    let refused = tokio::task::spawn_blocking(move || {
        Gridctl { addr }.run(&centre("990101001"), &["callback", case, "--satisfaction", "satisfied"])
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("CALLBACK_ALREADY_DONE"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_syncs_a_days_json_lines_with_gridctl_and_sending_them_again_stores_nothing() {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let gridctl = Gridctl { addr: intake.endpoint() };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lamp.jpg"), gridcase_tests::fixtures::jpeg(300_000)).unwrap();
    let (a, b) = (gridcase_domain::CaseId::new_v7(), gridcase_domain::CaseId::new_v7());
    let seen = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 3 * 3600).unwrap();
    let filing = |id: gridcase_domain::CaseId, photos: &str| {
        format!(
            r#"{{"type":"file","case_id":"{id}","grid":"990101001001001","category":"0201","description":"路灯不亮","latitude":30.2741,"longitude":120.1551,"reported_at":"{seen}","photos":[{photos}]}}"#
        )
    };
    let lines = [
        filing(a, r#""lamp.jpg""#),
        format!(r#"{{"type":"note","case_id":"{a}","command_id":"a-1","note":"已联系物业"}}"#),
        filing(b, ""),
        format!(r#"{{"type":"note","case_id":"{b}","command_id":"b-1","note":""}}"#),
    ];
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let who = worker("990101001001001");
    let sync = |json: bool| {
        let addr = gridctl.addr.clone();
        let (who, file) = (who.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            let gridctl = Gridctl { addr };
            let mut args = vec![];
            if json {
                args.push("--json");
            }
            args.extend(["sync", file.to_str().unwrap()]);
            gridctl.run(&who, &args)
        })
    };
    let first = sync(false).await.unwrap();
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(!first.status.success(), "one item is refused, so gridctl says so: {text}");
    assert!(text.contains(&format!("#0 stored {a}")), "{text}");
    assert!(text.contains(&format!("#1 stored {a}")), "{text}");
    assert!(text.contains("#3 refused") && text.contains("note [REQUIRED]"), "{text}");
    assert!(text.contains("4 items: 1 refused"), "{text}");

    let again = sync(true).await.unwrap();
    let outcomes: Vec<serde_json::Value> =
        String::from_utf8_lossy(&again.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = outcomes.iter().map(|o| o["outcome"].as_str().unwrap()).collect();
    assert_eq!(names, ["replayed", "replayed", "replayed", "refused"]);
    assert_eq!(outcomes[3]["refusal"]["fields"][0]["field"], "note");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_asks_gridctl_what_is_near_reports_it_again_and_lists_their_cases() {
    use std::sync::Arc;

    use gridcase_tests::{TestDatabase, TestProjection, stream_end};

    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let intake = TestIntake::spawn(&nats.url()).await;
    let projection = TestProjection::spawn_with(
        TestProjection::config(&nats.url(), &db.url),
        Arc::new(gridcase_process::SystemTimeSource),
    )
    .await;
    let grid = "990101001001001";
    let (first, other) = (worker(grid), Identity::new("gw-0043", "grid_worker", "cc-990101001", grid));
    let addr = intake.endpoint();
    let filed = tokio::task::spawn_blocking({
        let addr = addr.clone();
        let first = first.clone();
        move || {
            let g = Gridctl { addr };
            let file = |lat: &str| {
                let args = [
                    "file",
                    "--grid",
                    grid,
                    "--category",
                    "0201",
                    "--description",
                    "路灯不亮",
                    "--latitude",
                    lat,
                    "--longitude",
                    "120.1850",
                ];
                g.json(&first, &args)["case_id"].as_str().unwrap().to_owned()
            };
            (file("30.27050"), file("30.27060"))
        }
    })
    .await
    .unwrap();
    projection.caught_up_to(stream_end(&nats).await).await;
    let query_addr = projection.endpoint();
    let run = move |who: Identity, args: Vec<String>| {
        let (addr, query_addr) = (addr.clone(), query_addr.clone());
        tokio::task::spawn_blocking(move || {
            let output = Command::new(env!("CARGO_BIN_EXE_gridctl"))
                .args(["--json", "--addr", &addr, "--query-addr", &query_addr, "--token", &who.token()])
                .args(&args)
                .output()
                .unwrap();
            assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
            // JSON lines, or one document over several lines: a stream of values.
            serde_json::Deserializer::from_slice(&output.stdout)
                .into_iter::<serde_json::Value>()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let near = run(
        other.clone(),
        args(&["similar", "--latitude", "30.27052", "--longitude", "120.1850", "--category", "0201", "--radius", "30"]),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = near.iter().map(|c| c["case_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [filed.0.as_str(), filed.1.as_str()], "nearest first: {near:?}");
    let reported = run(other.clone(), args(&["report", &filed.1, "--note", "我也看到了"])).await.unwrap();
    assert_eq!(reported[0]["event_type"], "report_added", "{reported:?}");
    projection.caught_up_to(stream_end(&nats).await).await;
    // The command centre merges the second into the first.
    let merged =
        run(centre("990101001"), args(&["merge", &filed.1, "--into", &filed.0, "--reason", "同一路灯"])).await.unwrap();
    assert_eq!(merged[0]["event_type"], "merged_into", "{merged:?}");
    projection.caught_up_to(stream_end(&nats).await).await;
    let mine = run(first, args(&["my-cases"])).await.unwrap();
    let (cases, cursor) = mine.split_at(mine.len() - 1);
    assert_eq!(cases.len(), 2, "{mine:?}");
    assert!(cases.iter().all(|c| c["mine"] == true));
    let case = |id: &str| cases.iter().find(|c| c["case_id"] == id).unwrap().clone();
    assert_eq!(case(&filed.1)["open"], false, "merged");
    assert_eq!(case(&filed.0)["reports"], 3, "its own, the merged one's filing and its added report");
    assert!(cursor[0]["cursor"].as_str().unwrap().parse::<u64>().unwrap() > 0);
}
