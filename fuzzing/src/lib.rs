//! Fuzz targets: every decoder of input gridcase does not control. Each
//! target takes arbitrary bytes and must return, never panic, whatever they
//! are; what a decoder answers (a value or a typed error) is its business.
//!
//! The same functions are run by `gridcase-fuzz` (a mutation fuzzer on
//! stable Rust, bounded in time, part of the test command) and by the
//! cargo-fuzz targets in `fuzz/` (libFuzzer, coverage-guided, nightly).
//! Corpora live in `fuzz/corpus/<target>/`, shared by both.

use std::path::Path;
use std::sync::OnceLock;

use gridcase_auth::{KeySet, VerifierSettings};
use gridcase_envelope::StoredEvent;
use jiff::Timestamp;

/// A target: a name (its corpus folder) and the function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("stored_event", stored_event),
    ("sealed_json", sealed_json),
    ("master_keys", master_keys),
    ("policy_toml", policy_toml),
    ("calendar_toml", calendar_toml),
    ("reference_csv", reference_csv),
    ("grids_geojson", grids_geojson),
    ("jwt", jwt),
    ("file_case_request", file_case_request),
    ("lifecycle_requests", lifecycle_requests),
    ("query_requests", query_requests),
    ("upload_requests", upload_requests),
];

/// A stored event as read from the stream (another writer's, or altered):
/// the envelope, its payload, the hash over the stored values, the redacted copy.
pub fn stored_event(data: &[u8]) {
    let _ = gridcase_envelope::hash_as_stored(data);
    if let Ok(stored) = StoredEvent::from_json_bytes(data) {
        let _ = stored.decode();
        let _ = stored.redacted_json();
        let _ = stored.compute_hash();
        let _ = gridcase_envelope::verify_chain(std::slice::from_ref(&stored));
    }
}

/// Sealed contact details as the read models keep them.
pub fn sealed_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gridcase_envelope::sealing::SealedJson::from_json(text);
    }
}

/// The master key file.
pub fn master_keys(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gridcase_envelope::sealing::MasterKeys::parse(text);
    }
}

/// The dispatch policy file.
pub fn policy_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gridcase_policy::Policy::parse(Path::new("fuzz.toml"), text);
    }
}

/// A working-calendar year file.
pub fn calendar_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gridcase_calendar::YearFile::parse(Path::new("2026.toml"), text);
    }
}

/// The reference CSV files (grid registry and taxonomy).
pub fn reference_csv(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gridcase_reference::Registry::parse(Path::new("regions.csv"), text);
        let _ = gridcase_reference::Taxonomy::parse(Path::new("categories.csv"), text);
    }
}

/// Grid boundaries (an operator's grids.geojson) against the shipped
/// registry, and every parsed shape measured from a few points.
pub fn grids_geojson(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(boundaries) = gridcase_reference::Boundaries::parse(Path::new("grids.geojson"), text, &reference().registry)
    else {
        return;
    };
    for shape in boundaries.shapes() {
        for (lat, lon) in [(30.2741, 120.1551), (30.0, 120.0), (53.6, 135.1), (3.8, 73.4)] {
            let distance = shape.distance_outside(lat, lon);
            assert!(distance.is_finite() && distance >= 0.0, "{} from ({lat}, {lon}): {distance}", shape.code);
        }
    }
}

const SECRET: &[u8] = b"gridcase-fuzzing-development-secret-32+bytes";

fn key_set() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = KeySet::new(VerifierSettings::default());
        keys.add_dev_secret(SECRET).expect("a long enough secret");
        keys
    })
}

/// The instant tokens are checked at (fixed: a run is repeatable).
pub fn now() -> Timestamp {
    "2026-12-01T08:00:00Z".parse().expect("a timestamp")
}

/// A bearer token: the bytes as a token, and (when they are JSON) as the
/// claims of a token correctly signed with the server's key, so the claims'
/// own checks (roles, territories, lifetimes) are reached.
pub fn jwt(data: &[u8]) {
    let keys = key_set();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keys.verify(text, now());
    }
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        if let Ok(token) = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) {
            let _ = keys.verify(&token, now());
        }
    }
}

fn reference() -> &'static gridcase_reference::Reference {
    static REFERENCE: OnceLock<gridcase_reference::Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/reference");
        gridcase_reference::Reference::load(&dir).expect("the shipped reference data")
    })
}

/// A FileCase request off the wire: protobuf decoding, then intake's validation.
pub fn file_case_request(data: &[u8]) {
    use prost::Message as _;
    let Ok(request) = gridcase_proto::intake::v1::FileCaseRequest::decode(data) else { return };
    let filer = gridcase_intake::validate::Filer { subject: "fuzz", channel: gridcase_domain::Channel::GridWorker };
    let _ = gridcase_intake::validate::file_case(&request, filer, reference(), &limits(), now());
}

/// Intake's default limits.
fn limits() -> gridcase_intake::validate::Limits {
    gridcase_intake::validate::Limits {
        max_attachment_bytes: 10 * 1024 * 1024,
        max_clock_skew: jiff::SignedDuration::from_mins(10),
        max_report_age: jiff::SignedDuration::from_hours(720),
        grid_tolerance_m: 200,
    }
}

/// Every request of the case service off the wire (the first byte picks
/// which), then the very check its handler makes.
pub fn lifecycle_requests(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    let _ = gridcase_intake::requests::check_wire(*which, body, &limits());
}

/// Every request of the query service off the wire (the first byte picks
/// which), then the field checks its handler makes before the database.
pub fn query_requests(data: &[u8]) {
    let Some((which, body)) = data.split_first() else { return };
    let _ = gridcase_projection::query::requests::check_wire(*which, body, now());
}

/// An attachment upload off the wire: length-delimited
/// `UploadAttachmentRequest` messages, fed one by one to intake's upload
/// check as the stream would, then its end (a 64 KiB limit, so the limit is
/// reached too).
pub fn upload_requests(data: &[u8]) {
    use prost::Message as _;
    let mut upload = gridcase_intake::validate::Upload::new(64 * 1024);
    let mut rest = data;
    while !rest.is_empty() {
        let Ok(part) = gridcase_proto::intake::v1::UploadAttachmentRequest::decode_length_delimited(&mut rest) else {
            return;
        };
        if upload.part(part).is_err() {
            return;
        }
    }
    let _ = upload.finish();
}

/// Inputs of the protobuf targets, encoded here (`gridcase-fuzz
/// --write-seeds` writes them into the corpus): (target, file name, bytes).
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use gridcase_proto::cases::v1 as cases;
    use gridcase_proto::common::v1 as common;
    use gridcase_proto::intake::v1 as intake;
    use prost::Message as _;
    let filing = intake::FileCaseRequest {
        case_id: "019a0000-0000-7000-8000-000000000001".into(),
        grid_code: "990101001001001".into(),
        category_code: "0201".into(),
        description: "东门路12号路灯不亮".into(),
        location: Some(common::Location { latitude: 30.2741, longitude: 120.1551, address: "东门路12号".into() }),
        reported_at: Some(prost_types::Timestamp { seconds: now().as_second() - 60, nanos: 0 }),
        severity_hint: Some(common::Tier::Urgent as i32),
        resident_contact: Some(intake::ResidentContact {
            name: "王秀英".into(),
            phone: "13812345678".into(),
            ..Default::default()
        }),
        attachments: vec![common::AttachmentRef {
            sha256: "0f".repeat(32),
            size: 20480,
            content_type: "image/jpeg".into(),
        }],
        ..Default::default()
    };
    let context = || {
        Some(cases::CommandContext {
            case_id: "019a0000-0000-7000-8000-000000000001".into(),
            command_id: "cmd-1".into(),
            expected_version: Some(3),
        })
    };
    let mut seeds = vec![("file_case_request", "filing".to_owned(), filing.encode_to_vec())];
    let reason = || "居民申请".to_owned();
    let attachments = || filing.attachments.clone();
    let case_id = || "019a0000-0000-7000-8000-000000000001".to_owned();
    // One accepted request of each kind of `check_wire`, by name.
    let example = |name: &str| -> Vec<u8> {
        match name {
            "Merge" => cases::MergeRequest {
                context: context(),
                into_case_id: "019a0000-0000-7000-8000-0000000000ff".into(),
                reason: "同一路灯".into(),
            }
            .encode_to_vec(),
            "Register" => cases::RegisterRequest { context: context(), tier: 2, note: "立案".into() }.encode_to_vec(),
            "Void" => cases::VoidRequest { context: context(), reason: reason() }.encode_to_vec(),
            "Dispatch" => {
                cases::DispatchRequest { context: context(), unit: "unit.property.990101001".into() }.encode_to_vec()
            }
            "Acknowledge" => cases::AcknowledgeRequest { context: context() }.encode_to_vec(),
            "Return" => cases::ReturnRequest { context: context(), reason: reason() }.encode_to_vec(),
            "Reassign" => {
                cases::ReassignRequest { context: context(), unit: "unit.urban.990101".into(), reason: "改派".into() }
                    .encode_to_vec()
            }
            "AddProgress" => {
                cases::AddProgressRequest { context: context(), note: "已联系".into(), attachments: attachments() }
                    .encode_to_vec()
            }
            "AddReport" => cases::AddReportRequest {
                context: context(),
                reported_at: Some(prost_types::Timestamp { seconds: now().as_second() - 3600, nanos: 0 }),
                location: Some(common::Location { latitude: 30.2741, longitude: 120.1551, address: String::new() }),
                note: "我也看到了".into(),
                attachments: attachments(),
            }
            .encode_to_vec(),
            "RequestExtension" => {
                cases::RequestExtensionRequest { context: context(), working_days: 3, reason: "材料".into() }
                    .encode_to_vec()
            }
            "DecideExtension" => cases::DecideExtensionRequest {
                context: context(),
                approve: true,
                approved_working_days: 2,
                reason: String::new(),
            }
            .encode_to_vec(),
            "RequestHold" => cases::RequestHoldRequest { context: context(), reason: reason() }.encode_to_vec(),
            "DecideHold" => {
                cases::DecideHoldRequest { context: context(), approve: false, reason: reason() }.encode_to_vec()
            }
            "Resume" => cases::ResumeRequest { context: context() }.encode_to_vec(),
            "Resolve" => {
                cases::ResolveRequest { context: context(), summary: "已修复".into(), evidence: attachments() }
                    .encode_to_vec()
            }
            "Verify" => {
                cases::VerifyRequest { context: context(), passed: false, reason: "未修好".into() }.encode_to_vec()
            }
            "RecordFeedback" => {
                cases::RecordFeedbackRequest { context: context(), feedback: 1, comment: "满意".into() }.encode_to_vec()
            }
            "Reply" => cases::ReplyRequest { context: context(), method: 1, text: "已电话答复".into() }.encode_to_vec(),
            "RecordCallback" => cases::RecordCallbackRequest {
                context: context(),
                reached: true,
                attempts: 2,
                satisfaction: 3,
                reason: "仍未解决".into(),
            }
            .encode_to_vec(),
            "Reopen" => cases::ReopenRequest { context: context(), reason: reason() }.encode_to_vec(),
            "Cancel" => cases::CancelRequest { context: context(), reason: reason() }.encode_to_vec(),
            "Supervise" => {
                cases::SuperviseRequest { context: context(), level: 3, reason: "超期".into() }.encode_to_vec()
            }
            "SetUrgent" => {
                cases::SetUrgentRequest { context: context(), urgent: true, reason: String::new() }.encode_to_vec()
            }
            "EraseResidentData" => {
                cases::EraseResidentDataRequest { context: context(), reason: reason() }.encode_to_vec()
            }
            "GetCase" => cases::GetCaseRequest { case_id: case_id() }.encode_to_vec(),
            "GetHistory" => cases::GetHistoryRequest { case_id: case_id() }.encode_to_vec(),
            "GetAttachment" => cases::GetAttachmentRequest {
                case_id: case_id(),
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                max_dimension: 240,
                ..Default::default()
            }
            .encode_to_vec(),
            other => panic!("no example of the request kind {other}: add one"),
        }
    };
    let lifecycle = gridcase_intake::requests::KINDS
        .iter()
        .enumerate()
        .map(|(which, (name, _))| (which as u8, *name, example(name)));
    for (which, name, body) in lifecycle {
        let mut data = vec![which];
        data.extend(body);
        seeds.push(("lifecycle_requests", format!("kind-{which:02}-{name}"), data));
    }
    use gridcase_proto::query::v1 as query;
    let list = || query::ListCasesRequest {
        region_prefix: "990101001".into(),
        grid_code: "990101001001001".into(),
        states: vec![common::CaseState::Dispatched as i32],
        tier: common::Tier::Urgent as i32,
        unit: "unit.property.990101001".into(),
        overdue_only: true,
        filed_from: Some(prost_types::Timestamp { seconds: now().as_second() - 86_400, nanos: 0 }),
        filed_to: Some(prost_types::Timestamp { seconds: now().as_second(), nanos: 0 }),
        page_size: 50,
        page_token: "1767225600000000:019a0000-0000-7000-8000-000000000001".into(),
        clock: common::Clock::Resolve as i32,
        supervision: common::Supervision::YellowCard as i32,
        due_within_seconds: 0,
        order: query::ListOrder::FiledNewest as i32,
        ..Default::default()
    };
    let ledger = || query::LedgerRequest {
        org_kind: "township".into(),
        org: "990101001".into(),
        from_day: "2026-01-01".into(),
        to_day: "2026-03-31".into(),
        period: query::Period::Month as i32,
    };
    let query_example = |name: &str| -> Vec<u8> {
        match name {
            "GetCase" => query::GetCaseRequest { case_id: case_id() }.encode_to_vec(),
            "GetCaseHistory" => query::GetCaseHistoryRequest { case_id: case_id() }.encode_to_vec(),
            "ListCases" => list().encode_to_vec(),
            "OverdueReport" => query::OverdueReportRequest { region_prefix: "990101001".into() }.encode_to_vec(),
            "Ledger" => ledger().encode_to_vec(),
            "ExportCases" => {
                query::ExportCasesRequest { filter: Some(list()), format: query::ExportFormat::Xlsx as i32 }
                    .encode_to_vec()
            }
            "ExportLedger" => {
                query::ExportLedgerRequest { ledger: Some(ledger()), format: query::ExportFormat::Csv as i32 }
                    .encode_to_vec()
            }
            "WatchCases" => {
                query::WatchCasesRequest { township: "990101001".into(), after_sequence: 12 }.encode_to_vec()
            }
            "CountCases" => query::CountCasesRequest { region_prefix: "990101001".into() }.encode_to_vec(),
            "GetGridMap" => {
                query::GetGridMapRequest { region_prefix: "990101001".into(), max_cases: 500, without_grids: true }
                    .encode_to_vec()
            }
            other => panic!("no example of the query request kind {other}: add one"),
        }
    };
    {
        use gridcase_proto::intake::v1::{
            AttachmentMetadata, UploadAttachmentRequest, upload_attachment_request::Part,
        };
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
        jpeg.extend(std::iter::repeat_n(0u8, 300));
        let parts = [
            Part::Metadata(AttachmentMetadata { content_type: "image/jpeg".into(), ..Default::default() }),
            Part::Chunk(jpeg[..100].to_vec()),
            Part::Chunk(jpeg[100..].to_vec()),
        ];
        let mut data = Vec::new();
        for part in parts {
            UploadAttachmentRequest { part: Some(part) }.encode_length_delimited(&mut data).expect("to memory");
        }
        seeds.push(("upload_requests", "jpeg-in-two-chunks".to_owned(), data));
    }
    for (which, (name, _)) in gridcase_projection::query::requests::KINDS.iter().enumerate() {
        let mut data = vec![which as u8];
        data.extend(query_example(name));
        seeds.push(("query_requests", format!("kind-{which:02}-{name}"), data));
    }
    seeds
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upload_seed_is_an_upload_intake_accepts() {
        use prost::Message as _;
        let (_, _, data) = super::generated_seeds()
            .into_iter()
            .find(|(target, _, _)| *target == "upload_requests")
            .expect("an upload seed");
        let mut upload = gridcase_intake::validate::Upload::new(64 * 1024);
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let part = gridcase_proto::intake::v1::UploadAttachmentRequest::decode_length_delimited(&mut rest).unwrap();
            upload.part(part).expect("each part accepted");
        }
        let (content_type, content) = upload.finish().expect("the upload accepted");
        assert_eq!((content_type.as_str(), content.len()), ("image/jpeg", 311));
    }

    #[test]
    fn every_query_seed_passes_the_check_of_its_kind() {
        let seeds: Vec<_> =
            super::generated_seeds().into_iter().filter(|(target, _, _)| *target == "query_requests").collect();
        assert_eq!(seeds.len(), gridcase_projection::query::requests::KINDS.len());
        for (_, name, data) in seeds {
            let (which, body) = data.split_first().expect("a kind byte");
            assert!(gridcase_projection::query::requests::check_wire(*which, body, super::now()), "{name} is refused");
        }
    }

    /// Each lifecycle seed is an accepted request of the kind it is filed
    /// under: the seeds and the kinds of `check_wire` are in the same order.
    #[test]
    fn every_lifecycle_seed_passes_the_check_of_its_kind() {
        let seeds: Vec<_> =
            super::generated_seeds().into_iter().filter(|(target, _, _)| *target == "lifecycle_requests").collect();
        assert_eq!(seeds.len(), gridcase_intake::requests::KINDS.len());
        for (_, name, data) in seeds {
            let (which, body) = data.split_first().expect("a kind byte");
            assert!(gridcase_intake::requests::check_wire(*which, body, &super::limits()), "{name} is refused");
        }
    }
}
