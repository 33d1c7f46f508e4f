//! Who may do what, tried as an attacker would, over real gRPC against the
//! intake and query services (real NATS JetStream, real PostgreSQL).

use std::collections::BTreeMap;
use std::sync::Arc;

use gridcase_domain::CaseId;
use gridcase_process::SystemTimeSource;
use gridcase_proto::admin::v1 as admin_api;
use gridcase_proto::admin::v1::reference_service_client::ReferenceServiceClient;
use gridcase_proto::auth::v1 as auth_api;
use gridcase_proto::auth::v1::auth_service_client::AuthServiceClient;
use gridcase_proto::cases::v1 as cases_api;
use gridcase_proto::common::v1 as common;
use gridcase_proto::intake::v1 as intake_api;
use gridcase_proto::query::v1 as query_api;
use gridcase_proto::query::v1::query_service_client::QueryServiceClient;
use gridcase_tests::fixtures::{filing, intake_client};
use gridcase_tests::identity::issuer;
use gridcase_tests::lifecycle::{self, context};
use gridcase_tests::{Identity, NatsServer, TestDatabase, TestIntake, TestProjection, stream_end};
use tonic::Code;

const UNIT_A: &str = "unit.property.990101001";
const UNIT_B: &str = "unit.urban.990101";
const PHONE: &str = "13812345678";
const RESIDENT: &str = "王秀英";

/// Everyone who tries.
fn people() -> BTreeMap<&'static str, Identity> {
    BTreeMap::from([
        ("worker_a", Identity::new("gw-0042", "grid_worker", "cc-990101001", "990101001001001")),
        ("worker_a2", Identity::new("gw-0043", "grid_worker", "cc-990101001", "990101001001001")),
        ("worker_b", Identity::new("gw-0101", "grid_worker", "cc-990101101", "990101101001001")),
        ("leader_a", Identity::new("gl-0001", "grid_leader", "cc-990101001", "990101001001001")),
        ("unit_a", Identity::new("wy-07", "handling_unit", UNIT_A, UNIT_A)),
        ("unit_b", Identity::new("cg-02", "handling_unit", UNIT_B, UNIT_B)),
        ("centre_a", Identity::new("cc-op-1", "command_centre", "cc-990101001", "990101001")),
        ("centre_b", Identity::new("cc-op-9", "command_centre", "cc-990101101", "990101101")),
        ("county", Identity::new("audit-1", "county_auditor", "co-990101", "990101")),
        ("county_other", Identity::new("audit-9", "county_auditor", "co-990102", "990102")),
        ("admin", Identity::new("admin-1", "admin", "co-990101", "990101")),
    ])
}

/// The two cases everything is tried on: A in 城关街道 (990101001), filed by
/// worker_a with the resident's contact details and dispatched to unit_a; B
/// in township 990101101, filed by worker_b and dispatched to unit_b.
#[derive(Debug, Clone, Copy)]
enum Case {
    A,
    B,
    /// A well-formed id no case has.
    Missing,
}

#[derive(Debug, Clone, Copy)]
enum Try {
    File { grid: &'static str },
    GetCase(Case),
    GetHistory(Case),
    QueryGetCase(Case),
    QueryHistory(Case),
    Register(Case),
    Acknowledge(Case),
    Progress(Case),
    Resolve(Case),
    Supervise(Case),
    Feedback(Case),
    Cancel(Case),
    List { region: &'static str },
    Overdue { region: &'static str },
    Ledger { kind: &'static str, org: &'static str },
    Watch { township: &'static str },
    Export { region: &'static str },
    WhoAmI,
    GetReference,
    ValidateReference,
}

struct World {
    intake: String,
    query: String,
    a: CaseId,
    b: CaseId,
    missing: CaseId,
}

impl World {
    fn id(&self, case: Case) -> String {
        match case {
            Case::A => self.a,
            Case::B => self.b,
            Case::Missing => self.missing,
        }
        .to_string()
    }

    async fn attempt(&self, who: &Identity, what: Try) -> Result<(), tonic::Status> {
        let mut cases = lifecycle::client(self.intake.clone()).await;
        let mut query = QueryServiceClient::connect(self.query.clone()).await.unwrap();
        let ctx = |case: Case| context(CaseId::parse(&self.id(case)).unwrap());
        let reason = "核实".to_owned();
        match what {
            Try::File { grid } => {
                let request = intake_api::FileCaseRequest { grid_code: grid.into(), ..filing(CaseId::new_v7()) };
                intake_client(self.intake.clone()).await.file_case(who.request(request)).await.map(drop)
            }
            Try::GetCase(case) => {
                cases.get_case(who.request(cases_api::GetCaseRequest { case_id: self.id(case) })).await.map(drop)
            }
            Try::GetHistory(case) => {
                cases.get_history(who.request(cases_api::GetHistoryRequest { case_id: self.id(case) })).await.map(drop)
            }
            Try::QueryGetCase(case) => {
                query.get_case(who.request(query_api::GetCaseRequest { case_id: self.id(case) })).await.map(drop)
            }
            Try::QueryHistory(case) => query
                .get_case_history(who.request(query_api::GetCaseHistoryRequest { case_id: self.id(case) }))
                .await
                .map(drop),
            Try::Register(case) => cases
                .register(who.request(cases_api::RegisterRequest {
                    context: ctx(case),
                    tier: common::Tier::Normal as i32,
                    note: String::new(),
                }))
                .await
                .map(drop),
            Try::Acknowledge(case) => {
                cases.acknowledge(who.request(cases_api::AcknowledgeRequest { context: ctx(case) })).await.map(drop)
            }
            Try::Progress(case) => cases
                .add_progress(who.request(cases_api::AddProgressRequest {
                    context: ctx(case),
                    note: "补充: 现场有积水".into(),
                    attachments: vec![],
                }))
                .await
                .map(drop),
            Try::Resolve(case) => cases
                .resolve(who.request(cases_api::ResolveRequest {
                    context: ctx(case),
                    summary: reason,
                    evidence: vec![],
                }))
                .await
                .map(drop),
            Try::Supervise(case) => cases
                .supervise(who.request(cases_api::SuperviseRequest {
                    context: ctx(case),
                    level: common::Supervision::YellowCard as i32,
                    reason,
                }))
                .await
                .map(drop),
            Try::Feedback(case) => cases
                .record_feedback(who.request(cases_api::RecordFeedbackRequest {
                    context: ctx(case),
                    feedback: common::Feedback::Satisfied as i32,
                    comment: String::new(),
                }))
                .await
                .map(drop),
            Try::Cancel(case) => {
                cases.cancel(who.request(cases_api::CancelRequest { context: ctx(case), reason })).await.map(drop)
            }
            Try::List { region } => query
                .list_cases(
                    who.request(query_api::ListCasesRequest { region_prefix: region.into(), ..Default::default() }),
                )
                .await
                .map(drop),
            Try::Overdue { region } => query
                .overdue_report(who.request(query_api::OverdueReportRequest { region_prefix: region.into() }))
                .await
                .map(drop),
            Try::Ledger { kind, org } => query.ledger(who.request(ledger_request(kind, org))).await.map(drop),
            Try::Watch { township } => query
                .watch_cases(who.request(query_api::WatchCasesRequest { township: township.into(), after_sequence: 0 }))
                .await
                .map(drop),
            Try::Export { region } => query
                .export_cases(who.request(query_api::ExportCasesRequest {
                    filter: Some(query_api::ListCasesRequest { region_prefix: region.into(), ..Default::default() }),
                    format: query_api::ExportFormat::Csv as i32,
                }))
                .await
                .map(drop),
            Try::GetReference => ReferenceServiceClient::connect(self.intake.clone())
                .await
                .unwrap()
                .get_reference(who.request(admin_api::GetReferenceRequest {}))
                .await
                .map(drop),
            Try::ValidateReference => {
                let regions =
                    std::fs::read(gridcase_tests::workspace_root().join("deploy/reference/regions.csv")).unwrap();
                ReferenceServiceClient::connect(self.intake.clone())
                    .await
                    .unwrap()
                    .validate_reference(
                        who.request(admin_api::ValidateReferenceRequest {
                            regions_csv: regions,
                            categories_csv: vec![],
                        }),
                    )
                    .await
                    .map(drop)
            }
            Try::WhoAmI => AuthServiceClient::connect(self.intake.clone())
                .await
                .unwrap()
                .who_am_i(who.request(auth_api::WhoAmIRequest {}))
                .await
                .map(drop),
        }
    }
}

fn ledger_request(kind: &str, org: &str) -> query_api::LedgerRequest {
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).date().to_string();
    query_api::LedgerRequest {
        org_kind: kind.into(),
        org: org.into(),
        from_day: today.clone(),
        to_day: today,
        period: query_api::Period::Total as i32,
    }
}

/// File a case as `worker` and have `centre` register it and dispatch it to `unit`.
async fn dispatched_case(intake: &str, worker: &Identity, centre: &Identity, grid: &str, unit: &str) -> CaseId {
    let case_id = CaseId::new_v7();
    let request = intake_api::FileCaseRequest {
        grid_code: grid.into(),
        resident_contact: Some(intake_api::ResidentContact {
            name: RESIDENT.into(),
            phone: PHONE.into(),
            ..Default::default()
        }),
        ..filing(case_id)
    };
    intake_client(intake.to_owned()).await.file_case(worker.request(request)).await.expect("filed");
    let mut cases = lifecycle::client(intake.to_owned()).await;
    cases
        .register(centre.request(cases_api::RegisterRequest {
            context: context(case_id),
            tier: common::Tier::Normal as i32,
            note: String::new(),
        }))
        .await
        .expect("registered");
    cases
        .dispatch(centre.request(cases_api::DispatchRequest { context: context(case_id), unit: unit.into() }))
        .await
        .expect("dispatched");
    case_id
}

struct Running {
    nats: NatsServer,
    intake: TestIntake,
    projection: TestProjection,
    _db: TestDatabase,
}

async fn start() -> Running {
    let nats = NatsServer::start();
    let intake = TestIntake::spawn(&nats.url()).await;
    let db = TestDatabase::create().await;
    let projection =
        TestProjection::spawn_with(TestProjection::config(&nats.url(), &db.url), Arc::new(SystemTimeSource)).await;
    Running { nats, intake, projection, _db: db }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_tries_every_operation_inside_and_outside_its_territory() {
    let running = start().await;
    let p = people();
    let intake = running.intake.endpoint();
    let a = dispatched_case(&intake, &p["worker_a"], &p["centre_a"], "990101001001001", UNIT_A).await;
    let b = dispatched_case(&intake, &p["worker_b"], &p["centre_b"], "990101101001001", UNIT_B).await;
    running.projection.caught_up_to(stream_end(&running.nats).await).await;
    let world = World { intake, query: running.projection.endpoint(), a, b, missing: CaseId::new_v7() };

    use Case::{A, B, Missing};
    use Code::{FailedPrecondition as Refused, NotFound, Ok, PermissionDenied as Denied};
    // Rows run in order: the mutations that pass change the cases the later rows see.
    let table: &[(&str, Try, Code)] = &[
        // Filing: only grid workers and leaders, only in their own grid.
        ("worker_a", Try::File { grid: "990101001001001" }, Ok),
        ("worker_a", Try::File { grid: "99010100100100101" }, Ok),
        ("worker_a", Try::File { grid: "990101001002001" }, Denied),
        ("worker_a", Try::File { grid: "990101101001001" }, Denied),
        ("leader_a", Try::File { grid: "990101001001001" }, Ok),
        ("centre_a", Try::File { grid: "990101001001001" }, Denied),
        ("unit_a", Try::File { grid: "990101001001001" }, Denied),
        ("county", Try::File { grid: "990101001001001" }, Denied),
        ("admin", Try::File { grid: "990101001001001" }, Denied),
        // Reading one case from the event log: outside the territory it does not exist.
        ("worker_a", Try::GetCase(A), Ok),
        ("worker_a2", Try::GetCase(A), NotFound),
        ("worker_b", Try::GetCase(A), NotFound),
        ("leader_a", Try::GetCase(A), Ok),
        ("unit_a", Try::GetCase(A), Ok),
        ("unit_b", Try::GetCase(A), NotFound),
        ("centre_a", Try::GetCase(A), Ok),
        ("centre_b", Try::GetCase(A), NotFound),
        ("county", Try::GetCase(A), Ok),
        ("county_other", Try::GetCase(A), NotFound),
        ("admin", Try::GetCase(A), Denied),
        ("centre_a", Try::GetCase(Missing), NotFound),
        ("worker_a", Try::GetHistory(A), Ok),
        ("worker_a", Try::GetHistory(B), NotFound),
        ("unit_b", Try::GetHistory(B), Ok),
        // Reading from the read models.
        ("centre_a", Try::QueryGetCase(B), NotFound),
        ("centre_b", Try::QueryGetCase(B), Ok),
        ("county", Try::QueryGetCase(B), Ok),
        ("county_other", Try::QueryGetCase(B), NotFound),
        ("unit_b", Try::QueryHistory(B), Ok),
        ("worker_a", Try::QueryHistory(B), NotFound),
        ("leader_a", Try::QueryHistory(A), Ok),
        ("admin", Try::QueryHistory(A), Denied),
        // Changing a case: the unit it is dispatched to, the centre of its township.
        ("unit_b", Try::Acknowledge(A), NotFound),
        ("centre_a", Try::Acknowledge(A), Denied),
        ("worker_a", Try::Acknowledge(A), Denied),
        ("county", Try::Acknowledge(A), Denied),
        ("unit_a", Try::Acknowledge(A), Ok),
        ("centre_a", Try::Register(A), Refused),
        ("centre_b", Try::Register(A), NotFound),
        ("unit_a", Try::Register(A), Denied),
        ("county", Try::Cancel(A), Denied),
        ("centre_b", Try::Cancel(A), NotFound),
        ("county_other", Try::Cancel(Missing), Denied),
        ("worker_a", Try::Progress(A), Ok),
        ("worker_a2", Try::Progress(A), NotFound),
        ("worker_b", Try::Progress(A), NotFound),
        ("leader_a", Try::Progress(A), Ok),
        ("unit_a", Try::Progress(A), Ok),
        ("admin", Try::Progress(A), Denied),
        ("centre_a", Try::Supervise(A), Ok),
        ("centre_a", Try::Supervise(B), NotFound),
        ("centre_b", Try::Supervise(B), Ok),
        ("unit_a", Try::Resolve(B), NotFound),
        ("unit_b", Try::Resolve(B), Refused),
        ("worker_a", Try::Feedback(A), Denied),
        ("unit_a", Try::Feedback(A), Denied),
        // Many cases at once: scoped, and no region outside the territory.
        ("centre_a", Try::List { region: "" }, Ok),
        ("centre_a", Try::List { region: "990101001001" }, Ok),
        ("centre_a", Try::List { region: "990101101" }, Denied),
        ("centre_a", Try::List { region: "990101" }, Denied),
        ("worker_a", Try::List { region: "" }, Ok),
        ("worker_a", Try::List { region: "990101001001001" }, Ok),
        ("worker_a", Try::List { region: "990101101001001" }, Denied),
        ("worker_a", Try::List { region: "990101101" }, Denied),
        ("worker_a", Try::List { region: "990101" }, Denied),
        ("unit_b", Try::List { region: "" }, Ok),
        ("admin", Try::List { region: "" }, Denied),
        ("centre_a", Try::Overdue { region: "" }, Ok),
        ("centre_a", Try::Overdue { region: "990101" }, Denied),
        ("county", Try::Overdue { region: "990101101" }, Ok),
        ("county", Try::Overdue { region: "990102" }, Denied),
        ("unit_a", Try::Overdue { region: "" }, Denied),
        ("worker_a", Try::Ledger { kind: "township", org: "" }, Denied),
        ("centre_a", Try::Ledger { kind: "township", org: "990101101" }, Denied),
        ("centre_a", Try::Ledger { kind: "unit", org: "" }, Ok),
        ("county", Try::Ledger { kind: "township", org: "" }, Ok),
        ("centre_a", Try::Watch { township: "990101001" }, Ok),
        ("centre_a", Try::Watch { township: "990101101" }, Denied),
        ("county", Try::Watch { township: "990101101" }, Ok),
        ("worker_a", Try::Watch { township: "990101001" }, Denied),
        ("county", Try::Export { region: "990101" }, Ok),
        ("county_other", Try::Export { region: "990101" }, Denied),
        ("unit_a", Try::Export { region: "" }, Denied),
        ("admin", Try::WhoAmI, Ok),
        // Reference data: admins only.
        ("admin", Try::GetReference, Ok),
        ("admin", Try::ValidateReference, Ok),
        ("centre_a", Try::GetReference, Denied),
        ("county", Try::ValidateReference, Denied),
        ("worker_a", Try::ValidateReference, Denied),
        ("worker_b", Try::WhoAmI, Ok),
    ];
    assert!(table.len() >= 40);
    let mut failures = Vec::new();
    for (name, what, expected) in table {
        let result = world.attempt(&p[name], *what).await;
        let code = result.as_ref().map_or_else(|s| s.code(), |_| Ok);
        if code != *expected {
            failures.push(format!("{name} {what:?}: expected {expected:?}, got {result:?}"));
        }
        // A hidden case and a missing one are refused word for word alike.
        if let Err(status) = &result
            && status.code() == NotFound
        {
            let case_id = match what {
                Try::GetCase(c)
                | Try::GetHistory(c)
                | Try::QueryGetCase(c)
                | Try::QueryHistory(c)
                | Try::Register(c)
                | Try::Acknowledge(c)
                | Try::Progress(c)
                | Try::Resolve(c)
                | Try::Supervise(c)
                | Try::Cancel(c) => world.id(*c),
                _ => panic!("NOT_FOUND for {what:?}"),
            };
            assert_eq!(status.message(), format!("case {case_id} does not exist"), "{name} {what:?}");
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), table.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_ledgers_and_the_actor_follow_the_verified_token() {
    let running = start().await;
    let p = people();
    let intake = running.intake.endpoint();
    let a = dispatched_case(&intake, &p["worker_a"], &p["centre_a"], "990101001001001", UNIT_A).await;
    let b = dispatched_case(&intake, &p["worker_b"], &p["centre_b"], "990101101001001", UNIT_B).await;
    // Unit A also serves township B: its ledger row for a centre counts that centre's township only.
    let b2 = dispatched_case(&intake, &p["worker_b"], &p["centre_b"], "990101101001001", UNIT_A).await;
    running.projection.caught_up_to(stream_end(&running.nats).await).await;

    let listed = |who: &'static str| {
        let (endpoint, who) = (running.projection.endpoint(), p[who].clone());
        async move {
            let mut client = QueryServiceClient::connect(endpoint).await.unwrap();
            let mut ids: Vec<String> = client
                .list_cases(who.request(query_api::ListCasesRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .cases
                .into_iter()
                .map(|c| c.case_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut ids: Vec<CaseId>| {
        ids.sort();
        ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(listed("worker_a").await, sorted(vec![a]), "a grid worker lists the cases they filed");
    assert_eq!(listed("worker_a2").await, sorted(vec![]), "and nobody else's, even in their grid");
    assert_eq!(listed("worker_b").await, sorted(vec![b, b2]));
    assert_eq!(listed("unit_a").await, sorted(vec![a, b2]), "a unit lists what is dispatched to it");
    assert_eq!(listed("centre_a").await, sorted(vec![a]), "a centre lists its township");
    assert_eq!(listed("county").await, sorted(vec![a, b, b2]), "the county lists every township");
    assert_eq!(listed("county_other").await, sorted(vec![]));

    let mut query = QueryServiceClient::connect(running.projection.endpoint()).await.unwrap();
    let rows = query.ledger(p["centre_a"].request(ledger_request("unit", UNIT_A))).await.unwrap().into_inner().rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].registered, rows[0].dispatched), (0, 1), "centre A counts unit A's township-A case only");
    let rows = query.ledger(p["county"].request(ledger_request("unit", UNIT_A))).await.unwrap().into_inner().rows;
    assert_eq!(rows[0].dispatched, 2, "the county counts both townships");
    let rows = query.ledger(p["centre_b"].request(ledger_request("worker", ""))).await.unwrap().into_inner().rows;
    let orgs: Vec<&str> = rows.iter().map(|r| r.org.as_str()).collect();
    assert_eq!(orgs, ["gw-0101"], "centre B's worker ledger holds its own workers only");

    // The actor of every event is the token's subject, role and organisation.
    let mut cases = lifecycle::client(intake.clone()).await;
    cases.acknowledge(p["unit_a"].request(cases_api::AcknowledgeRequest { context: context(a) })).await.unwrap();
    let history = cases
        .get_history(p["centre_a"].request(cases_api::GetHistoryRequest { case_id: a.to_string() }))
        .await
        .unwrap()
        .into_inner();
    let actors: Vec<(String, String, String)> = history
        .events
        .iter()
        .map(|e| {
            let actor = e.actor.clone().unwrap();
            (actor.person, actor.role, actor.organisation)
        })
        .collect();
    let expected = [
        ("gw-0042", "GRID_WORKER", "cc-990101001"),
        ("cc-op-1", "COMMAND_CENTRE", "cc-990101001"),
        ("cc-op-1", "COMMAND_CENTRE", "cc-990101001"),
        ("wy-07", "HANDLING_UNIT", UNIT_A),
    ]
    .map(|(p, r, o)| (p.to_owned(), r.to_owned(), o.to_owned()));
    assert_eq!(actors, expected);
}

/// A token for centre A with claims changed by `change`, signed with the test secret.
fn token_with(change: impl FnOnce(&mut gridcase_auth::Claims)) -> String {
    let centre = &people()["centre_a"];
    let issuer = issuer();
    let mut claims = issuer.claims(&centre.principal, jiff::Timestamp::now(), 600);
    change(&mut claims);
    issuer.sign(&claims)
}

fn unsigned(header: &str, claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("{}.{}.", b64(header.as_bytes()), b64(&serde_json::to_vec(claims).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_foreign_and_unsigned_tokens_are_unauthenticated_everywhere() {
    let running = start().await;
    let p = people();
    let a =
        dispatched_case(&running.intake.endpoint(), &p["worker_a"], &p["centre_a"], "990101001001001", UNIT_A).await;
    let now = jiff::Timestamp::now().as_second();
    let valid_claims =
        serde_json::to_value(issuer().claims(&p["centre_a"].principal, jiff::Timestamp::now(), 600)).unwrap();
    let forger = gridcase_auth::DevIssuer::new(
        b"a secret the attacker made up, long enough to pass",
        &gridcase_auth::VerifierSettings::default(),
    );
    let mut type_confused = valid_claims.clone();
    type_confused["exp"] = serde_json::json!(format!("{}", now + 600));
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let unknown_kid = {
        let token = p["centre_a"].token();
        let (_, rest) = token.split_once('.').unwrap();
        use base64::Engine as _;
        let header =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"old"}"#);
        format!("{header}.{rest}")
    };
    let string_exp = {
        let header = jsonwebtoken::Header {
            kid: Some("dev".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let key = jsonwebtoken::EncodingKey::from_secret(gridcase_tests::identity::TEST_DEV_SECRET.as_bytes());
        jsonwebtoken::encode(&header, &type_confused, &key).unwrap()
    };
    // (what, the authorization metadata, what the refusal must say: any of these)
    let attempts: Vec<(&str, Option<String>, &[&str])> = vec![
        ("no token", None, &["no bearer token"]),
        ("not a JWT", Some("Bearer abc.def".into()), &["malformed"]),
        ("basic auth", Some("Basic Z3c6cGFzcw==".into()), &["Bearer <token>"]),
        // HTTP may trim the trailing space, leaving no token at all.
        ("empty bearer", Some("Bearer ".into()), &["Bearer <token>", "malformed"]),
        (
            "expired",
            bearer(token_with(|c| {
                c.iat = now - 3600;
                c.exp = now - 120;
            })),
            &["expired"],
        ),
        ("not yet valid", bearer(token_with(|c| c.nbf = Some(now + 3600))), &["not valid yet"]),
        (
            "issued in the future",
            bearer(token_with(|c| {
                c.iat = now + 3600;
                c.exp = now + 4000;
            })),
            &["issued in the future"],
        ),
        ("lives too long", bearer(token_with(|c| c.exp = now + 30 * 24 * 3600)), &["lives longer"]),
        (
            "wrong audience",
            bearer(token_with(|c| c.aud = gridcase_auth::token::Audience::One("wechat-miniapp".into()))),
            &["another audience"],
        ),
        ("wrong issuer", bearer(token_with(|c| c.iss = "evil".into())), &["does not trust"]),
        ("unknown role", bearer(token_with(|c| c.role = "superuser".into())), &["claim role"]),
        ("territory of the wrong shape", bearer(token_with(|c| c.territory = "99".into())), &["claim territory"]),
        (
            "wrongly signed",
            bearer(forger.mint(&p["centre_a"].principal, jiff::Timestamp::now(), 600)),
            &["signature does not verify"],
        ),
        // Valid claims and the development key id: only the missing signature is wrong.
        (
            "alg none",
            bearer(unsigned(r#"{"alg":"none","typ":"JWT","kid":"dev"}"#, &valid_claims)),
            &["the token is unsigned (alg \"none\")"],
        ),
        ("unknown key id", bearer(unknown_kid), &["does not know (old)"]),
        ("exp as a string", bearer(string_exp), &["malformed"]),
    ];
    let mut cases = lifecycle::client(running.intake.endpoint()).await;
    let mut query = QueryServiceClient::connect(running.projection.endpoint()).await.unwrap();
    for (name, authorization, reasons) in &attempts {
        fn with<T>(authorization: &Option<String>, message: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            if let Some(value) = authorization {
                request.metadata_mut().insert("authorization", value.parse().unwrap());
            }
            request
        }
        let status = cases
            .cancel(with(authorization, cases_api::CancelRequest { context: context(a), reason: "x".into() }))
            .await
            .expect_err(name);
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert!(reasons.iter().any(|r| status.message().contains(r)), "{name}: {status:?}");
        let status =
            query.list_cases(with(authorization, query_api::ListCasesRequest::default())).await.expect_err(name);
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert!(reasons.iter().any(|r| status.message().contains(r)), "{name}: {status:?}");
    }
    // Nothing got through: the case is still dispatched, with its three events.
    let view = cases
        .get_case(p["centre_a"].request(cases_api::GetCaseRequest { case_id: a.to_string() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((view.state, view.version), (common::CaseState::Dispatched as i32, 3));
    // Health checks need no token.
    let channel = tonic::transport::Endpoint::from_shared(running.intake.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_tokens_only_from_a_server_with_a_development_secret() {
    let nats = NatsServer::start();
    // Development: the minter works, checks the identity, and its tokens are accepted.
    let dev = TestIntake::spawn(&nats.url()).await;
    let mut auth = AuthServiceClient::connect(dev.endpoint()).await.unwrap();
    let issued = auth
        .issue_dev_token(auth_api::IssueDevTokenRequest {
            subject: "cc-op-1".into(),
            role: "command_centre".into(),
            organisation: "cc-990101001".into(),
            territory: "990101001".into(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut request = tonic::Request::new(auth_api::WhoAmIRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {}", issued.token).parse().unwrap());
    let caller = auth.who_am_i(request).await.unwrap().into_inner();
    assert_eq!(
        (caller.subject.as_str(), caller.role.as_str(), caller.territory.as_str()),
        ("cc-op-1", "command_centre", "990101001")
    );
    let status = auth
        .issue_dev_token(auth_api::IssueDevTokenRequest {
            subject: "x".into(),
            role: "root".into(),
            organisation: "o".into(),
            territory: "990101".into(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Production: only the identity provider's public key; no minting, and development tokens are refused.
    let keys = gridcase_tests::workspace_root().join("crates/auth/testdata/idp-ed25519.pub.pem");
    let mut config = TestIntake::config(&nats.url());
    config.auth.dev_secret_file = None;
    config.auth.keys = vec![format!("idp-2026:EdDSA:{}", keys.display())];
    let production = TestIntake::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let mut auth = AuthServiceClient::connect(production.endpoint()).await.unwrap();
    let status = auth
        .issue_dev_token(auth_api::IssueDevTokenRequest {
            subject: "cc-op-1".into(),
            role: "command_centre".into(),
            organisation: "cc-990101001".into(),
            territory: "990101001".into(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let mut request = tonic::Request::new(auth_api::WhoAmIRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {}", issued.token).parse().unwrap());
    assert_eq!(auth.who_am_i(request).await.unwrap_err().code(), Code::Unauthenticated);
    // A token the identity provider signed (EdDSA) is accepted.
    let private = std::fs::read(gridcase_tests::workspace_root().join("crates/auth/testdata/idp-ed25519.pem")).unwrap();
    let claims = issuer().claims(&people()["county"].principal, jiff::Timestamp::now(), 600);
    let header = jsonwebtoken::Header {
        kid: Some("idp-2026".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
    };
    let token =
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_pem(&private).unwrap()).unwrap();
    let mut request = tonic::Request::new(auth_api::WhoAmIRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(auth.who_am_i(request).await.unwrap().into_inner().subject, "audit-1");

    // A server that trusts an identity provider refuses to also hold a development secret.
    let mut config = TestIntake::config(&nats.url());
    config.auth.keys = vec![format!("idp-2026:EdDSA:{}", keys.display())];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gridcase_intake::Application::build(config, listener, Arc::new(SystemTimeSource)).await.err().unwrap();
    assert!(format!("{error:#}").contains("exclusive"), "{error:#}");

    // A server without any key refuses to start.
    let mut config = TestIntake::config(&nats.url());
    config.auth.dev_secret_file = None;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gridcase_intake::Application::build(config, listener, Arc::new(SystemTimeSource)).await.err().unwrap();
    assert!(format!("{error:#}").contains("no token keys are configured"), "{error:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_its_token_expires() {
    let nats = NatsServer::start();
    let db = TestDatabase::create().await;
    let mut config = TestProjection::config(&nats.url(), &db.url);
    config.auth.clock_skew = std::time::Duration::from_secs(1);
    let projection = TestProjection::spawn_with(config, Arc::new(SystemTimeSource)).await;
    let centre = &people()["centre_a"];
    let token = issuer().mint(&centre.principal, jiff::Timestamp::now(), 2);
    let mut request =
        tonic::Request::new(query_api::WatchCasesRequest { township: "990101001".into(), after_sequence: 0 });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut client = QueryServiceClient::connect(projection.endpoint()).await.unwrap();
    let mut watch = client.watch_cases(request).await.unwrap().into_inner();
    let ended =
        tokio::time::timeout(std::time::Duration::from_secs(20), watch.message()).await.expect("the watch ended");
    let status = ended.expect_err("ends with a status, not a change");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
}
