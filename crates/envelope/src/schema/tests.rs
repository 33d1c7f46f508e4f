use gridcase_domain::{
    AttachmentRef, CategoryCode, Clock, ClockMark, DeadlineBasis, Feedback, GridCode, Location, OrgCode, PersonName,
    PhoneNumber, ReplyMethod, ResidentContact, SealedData, Sha256Digest, Supervision, Text, Tier,
};

fn basis() -> Option<DeadlineBasis> {
    Some(DeadlineBasis {
        policy: "demo-2026.1@0123456789ab".into(),
        calendar: "2026:ba9876543210".into(),
        fallback: false,
        terms: Default::default(),
    })
}

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn text(s: &str) -> Text {
    Text::reason(s).unwrap()
}

fn unit(s: &str) -> OrgCode {
    OrgCode::parse(s).unwrap()
}

fn case_id() -> CaseId {
    CaseId::parse("019a0000-0000-7000-8000-000000000001").unwrap()
}

fn photo() -> AttachmentRef {
    AttachmentRef {
        sha256: Sha256Digest::parse(&"0f".repeat(32)).unwrap(),
        size: 20480,
        content_type: "image/jpeg".into(),
    }
}

/// One event of every kind, with every optional field filled.
fn one_of_each() -> Vec<Event> {
    let due = at("2026-02-24T09:00:00Z");
    vec![
        Event::Filed(Filing {
            case_id: case_id(),
            grid: GridCode::parse("110101001001001").unwrap(),
            category: CategoryCode::parse("0501").unwrap(),
            description: Text::parse("3号楼楼道飞线给电动车充电", 2000).unwrap(),
            location: Location::from_degrees(39.904211, 116.407395, Some("东华门街道 3号楼")).unwrap(),
            reported_at: at("2026-02-13T09:00:00Z"),
            severity_hint: Some(Tier::Urgent),
            contact: Some(Contact::Clear(ResidentContact {
                name: Some(PersonName::parse("王芳").unwrap()),
                phone: Some(PhoneNumber::parse("13812345678").unwrap()),
                email: None,
            })),
            attachments: vec![photo()],
            outside_grid: None,
            channel: Default::default(),
            request_kind: None,
            reference: None,
        }),
        Event::Registered {
            tier: Tier::Urgent,
            note: Some(text("消防隐患")),
            policy: Some("demo-2026.1@0123456789ab".into()),
        },
        Event::Voided { reason: text("重复上报") },
        Event::Dispatched { unit: unit("unit.fire.110101001"), acknowledge_due: due, resolve_due: due, basis: basis() },
        Event::Acknowledged { unit: unit("unit.fire.110101001") },
        Event::Returned { unit: unit("unit.fire.110101001"), reason: text("非本单位职责") },
        Event::Reassigned {
            from: unit("unit.fire.110101001"),
            to: unit("unit.property.110101001"),
            acknowledge_due: due,
            resolve_due: due,
            basis: basis(),
            reason: text("改派物业"),
        },
        Event::ProgressAdded { note: text("已联系住户"), attachments: vec![photo()] },
        Event::ExtensionRequested { working_days: 5, reason: text("需采购材料") },
        Event::ExtensionApproved {
            requested_working_days: 5, approved_working_days: 3, reason: Some(text("同意3天"))
        },
        Event::ExtensionRejected { requested_working_days: 5, reason: text("理由不充分") },
        Event::HoldRequested { reason: text("冬季无法施工") },
        Event::HoldApproved { reason: Some(text("同意缓办")) },
        Event::HoldRejected { reason: text("不符合缓办条件") },
        Event::Resumed,
        Event::Resolved { summary: text("已拆除飞线"), evidence: vec![photo()] },
        Event::VerificationPassed { note: Some(text("现场核查通过")) },
        Event::VerificationFailed { reason: text("仍有飞线") },
        Event::FeedbackRecorded { feedback: Feedback::Unsatisfied, comment: Some(text("还有人充电")) },
        Event::Reopened { reason: text("居民不满意") },
        Event::Cancelled { reason: text("误报") },
        Event::Supervised {
            from: Supervision::None,
            to: Supervision::YellowCard,
            reason: text("超期黄牌"),
            escalated_to: Some(unit("co-110101")),
        },
        Event::UrgencySet { urgent: true, reason: Some(text("领导批示")) },
        Event::DeadlineSet { clock: Clock::Verify, due, basis: basis() },
        Event::ClockMarked { clock: Clock::Resolve, mark: ClockMark::Overdue, due },
        Event::ResidentDataErased { reason: text("居民申请删除个人信息") },
        Event::Replied { method: ReplyMethod::Partner, text: text("您反映的楼道飞线充电问题已处理") },
        Event::CallbackRecorded {
            reached: true,
            attempts: 2,
            satisfaction: Some(Feedback::Unsatisfied),
            reason: Some(text("还有人充电")),
        },
        Event::ReportAdded {
            reported_at: "2026-03-09T08:40:00Z".parse().unwrap(),
            location: Some(Location::from_degrees(30.2742, 120.1552, None).unwrap()),
            note: Some(text("灯杆也歪了")),
            attachments: vec![photo()],
        },
        Event::MergedInto {
            main: gridcase_domain::CaseId::parse("019a0000-0000-7000-8000-0000000000ff").unwrap(),
            reason: text("同一路灯"),
        },
        Event::DuplicateMerged {
            duplicate: gridcase_domain::CaseId::parse("019a0000-0000-7000-8000-0000000000fe").unwrap(),
            reports: 2,
            reporters: vec!["gw-0042".into(), "gw-0043".into()],
            attachments: vec![photo()],
        },
    ]
}

/// The filing of `one_of_each` as this build writes it: contact details sealed.
fn sealed_filing() -> Event {
    let Event::Filed(mut filing) = one_of_each().remove(0) else { unreachable!() };
    filing.contact = Some(Contact::Sealed(SealedData { nonce: vec![7; 12], ciphertext: vec![0xA5; 40] }));
    Event::Filed(filing)
}

#[test]
fn a_sealed_filing_is_payload_version_2_and_everything_else_stays_1() {
    let stored = StoredEvent::chained(&sealed_filing(), meta(1), None);
    assert_eq!(stored.schema_version, 2);
    insta::assert_snapshot!("v2_filed", serde_json::to_string_pretty(&stored).unwrap());
    assert_eq!(stored.decode().unwrap(), sealed_filing());
    // Nothing to mask in a sealed filing: the redacted copy is the event.
    assert_eq!(stored.redacted(), stored);
    for stored in chain(&one_of_each()) {
        assert_eq!(stored.schema_version, 1, "{}", stored.event_type);
    }
}

#[test]
fn a_deadline_that_records_its_clocks_terms_is_payload_version_3() {
    use gridcase_domain::{ClockTerms, OrgCode};
    let mut basis = basis().unwrap();
    basis.terms.insert(
        Clock::Resolve,
        ClockTerms { working: true, hours_of: Some(OrgCode::parse("unit.property.990101001").unwrap()) },
    );
    basis.terms.insert(Clock::Acknowledge, ClockTerms { working: false, hours_of: None });
    let dispatched = Event::Dispatched {
        unit: OrgCode::parse("unit.property.990101001").unwrap(),
        acknowledge_due: at("2026-02-13T13:00:00Z"),
        resolve_due: at("2026-02-16T09:00:00Z"),
        basis: Some(basis),
    };
    let stored = StoredEvent::chained(&dispatched, meta(3), Some("a".repeat(64)));
    assert_eq!(stored.schema_version, 3);
    insta::assert_snapshot!("v3_dispatched", serde_json::to_string_pretty(&stored).unwrap());
    assert_eq!(stored.decode().unwrap(), dispatched, "the terms read back");
    // A reader of version 2 would pass over the terms: it must skip the event instead.
    let mut older = stored.clone();
    older.schema_version = 4;
    assert!(matches!(older.decode(), Err(DecodeError::UnsupportedVersion { version: 4, .. })));
    // An event of version 1 (no terms) reads as it did: the terms are empty.
    let v1 = chain(&one_of_each()).into_iter().find(|e| e.event_type == "dispatched").unwrap();
    let Event::Dispatched { basis, .. } = v1.decode().unwrap() else { panic!("a dispatch") };
    assert!(basis.unwrap().terms.is_empty());
}

fn meta(case_version: u64) -> EventMeta {
    EventMeta {
        event_id: Uuid::parse_str("019a0000-0000-7000-8000-0000000000aa").unwrap(),
        case_id: case_id(),
        case_version,
        occurred_at: at("2026-02-13T09:00:05Z"),
        actor: Actor { person: "gw-0042".into(), role: ActorRole::GridWorker, organisation: "cc-110101001".into() },
        command_id: None,
    }
}

fn chain(events: &[Event]) -> Vec<StoredEvent> {
    let mut stored: Vec<StoredEvent> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let prev = stored.last().map(|e| e.hash.clone());
        stored.push(StoredEvent::chained(event, meta(index as u64 + 1), prev));
    }
    stored
}

#[test]
fn every_kind_is_covered() {
    let kinds: Vec<&str> = one_of_each().iter().map(Event::kind).collect();
    assert_eq!(kinds, Event::KINDS.to_vec());
}

#[test]
fn stored_json_of_each_event_type_is_frozen() {
    for (event, stored) in one_of_each().iter().zip(chain(&one_of_each())) {
        assert_eq!(stored.event_type, event.kind());
        let json = serde_json::to_string_pretty(&stored).unwrap();
        insta::assert_snapshot!(format!("v1_{}", event.kind()), json);
    }
}

#[test]
fn every_event_round_trips_through_bytes() {
    for stored in chain(&one_of_each()) {
        let back = StoredEvent::from_json_bytes(&stored.to_json_bytes()).unwrap();
        assert_eq!(back, stored);
        assert_eq!(back.compute_hash(), stored.hash);
    }
    for (event, stored) in one_of_each().iter().zip(chain(&one_of_each())) {
        assert_eq!(&stored.decode().unwrap(), event);
    }
}

#[test]
fn an_unknown_type_is_reported_not_fatal() {
    let mut stored = chain(&one_of_each()).remove(1);
    stored.event_type = "escalated_to_city".into();
    assert!(matches!(stored.decode(), Err(DecodeError::UnknownType(t)) if t == "escalated_to_city"));
    let mut newer = chain(&one_of_each()).remove(1);
    newer.schema_version = PAYLOAD_VERSION + 1;
    let version = PAYLOAD_VERSION + 1;
    assert!(matches!(newer.decode(), Err(DecodeError::UnsupportedVersion { version: v, .. }) if v == version));
}

#[test]
fn the_hash_chain_detects_altered_missing_and_reordered_events() {
    let history = chain(&one_of_each()[..5]);
    assert_eq!(verify_chain(&history), Ok(()));

    let mut altered = history.clone();
    altered[2].payload = serde_json::json!({ "reason": "改过的理由" });
    assert_eq!(verify_chain(&altered), Err(ChainBreak::Altered { case_version: 3, event_id: altered[2].event_id }));

    let mut missing = history.clone();
    missing.remove(2);
    assert_eq!(verify_chain(&missing), Err(ChainBreak::Gap { expected: 3, found: 4 }));

    // Rewritten consistently (hash recomputed) but not re-chained: still caught.
    let mut rewritten = history.clone();
    rewritten[1].occurred_at = at("2026-02-14T00:00:00Z");
    rewritten[1].hash = rewritten[1].compute_hash();
    assert_eq!(
        verify_chain(&rewritten),
        Err(ChainBreak::Unchained { case_version: 3, event_id: rewritten[2].event_id })
    );
}

#[test]
fn canonical_bytes_sort_keys_and_ignore_map_order() {
    let value = serde_json::json!({ "b": 1, "a": { "d": [true, null], "c": "x" } });
    let mut out = String::new();
    write_canonical(&value, &mut out);
    assert_eq!(out, r#"{"a":{"c":"x","d":[true,null]},"b":1}"#);
}

#[test]
fn redacted_json_is_the_json_of_the_redacted_copy() {
    let stored = chain(&one_of_each());
    assert!(stored.iter().any(|s| s.payload.get("resident_contact").is_some()), "a filing with contact details");
    for event in &stored {
        let expected = String::from_utf8(event.redacted().to_json_bytes()).unwrap();
        assert_eq!(event.redacted_json(), expected, "{}", event.event_type);
    }
}

#[test]
fn a_malformed_sealed_contact_is_an_error_never_an_empty_clear_one() {
    let stored = StoredEvent::chained(&sealed_filing(), meta(1), None);
    let with_contact = |contact: serde_json::Value| {
        let mut altered = stored.clone();
        altered.payload["resident_contact"] = contact;
        altered.decode()
    };
    let good = stored.payload["resident_contact"]["sealed"].clone();
    let mut extra = good.clone();
    extra["key"] = "k1".into();
    let mut other_alg = good.clone();
    other_alg["alg"] = "ROT13".into();
    let mut bad_base64 = good.clone();
    bad_base64["nonce"] = "not base64!".into();
    for contact in [
        serde_json::json!({ "sealed": extra }),
        serde_json::json!({ "sealed": other_alg }),
        serde_json::json!({ "sealed": bad_base64 }),
        serde_json::json!({ "sealed": good, "name": "王芳" }),
        serde_json::json!({ "name": "王芳", "nickname": "芳" }),
    ] {
        assert!(matches!(with_contact(contact.clone()), Err(DecodeError::Malformed { .. })), "{contact}");
    }
    assert!(with_contact(serde_json::json!({ "sealed": good })).is_ok());
    assert!(with_contact(serde_json::json!({ "phone": "13812345678" })).is_ok(), "clear, from before sealing");
}
