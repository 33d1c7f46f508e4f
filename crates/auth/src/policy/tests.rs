use super::*;
use Decision::{Allow, Hidden};

fn principal(role: &str, territory: &str) -> Principal {
    Principal::new(&format!("{role}-1"), role, "org-1", territory).unwrap()
}

fn case(grid: &str, unit: Option<&str>, reporter: &str) -> CaseScope {
    CaseScope { grid: grid.into(), unit: unit.map(Into::into), reporter: reporter.into() }
}

fn forbidden(decision: &Decision) -> bool {
    matches!(decision, Decision::Forbidden(_))
}

#[test]
fn refusals_read_as_sentences() {
    assert_eq!(
        authorize(&principal("admin", "990101"), Cancel, Target::Service),
        Decision::Forbidden("an admin may not Cancel".into())
    );
    assert_eq!(
        authorize(&principal("county_auditor", "990101"), Cancel, Target::Service),
        Decision::Forbidden("a county_auditor may not Cancel".into())
    );
}

#[test]
fn every_grpc_path_maps_to_one_operation_and_every_operation_has_a_path() {
    for op in Operation::ALL {
        assert!(PATHS.iter().any(|(_, o)| *o == op), "{op} has no path");
    }
    for (path, op) in PATHS {
        assert_eq!(Operation::from_grpc_path(path), Some(*op));
        assert!(!Operation::is_public_path(path), "{path} is both public and an operation");
    }
    assert_eq!(Operation::from_grpc_path("/gridcase.cases.v1.CaseService/Unknown"), None);
    assert!(Operation::is_public_path("/grpc.health.v1.Health/Check"));
}

#[test]
fn the_role_table() {
    // (role, operations allowed on a case in territory); every other operation is forbidden.
    let table: &[(&str, &str, &[Operation])] = &[
        (
            "grid_worker",
            "990101001001001",
            &[
                FileCase,
                UploadAttachment,
                SyncCases,
                AddProgress,
                AddReport,
                FindSimilar,
                ListMine,
                ReadCase,
                ReadHistory,
                ListCases,
                WhoAmI,
            ],
        ),
        (
            "grid_leader",
            "990101001001001",
            &[
                FileCase,
                UploadAttachment,
                SyncCases,
                AddProgress,
                AddReport,
                FindSimilar,
                ListMine,
                ReadCase,
                ReadHistory,
                ListCases,
                WhoAmI,
            ],
        ),
        (
            "handling_unit",
            "unit-a",
            &[
                UploadAttachment,
                Reply,
                Acknowledge,
                Return,
                AddProgress,
                RequestExtension,
                RequestHold,
                Resume,
                Resolve,
                ReadCase,
                ReadHistory,
                ListCases,
                WhoAmI,
            ],
        ),
        (
            "command_centre",
            "990101001",
            &[
                UploadAttachment,
                FindSimilar,
                Merge,
                Reply,
                RecordCallback,
                Register,
                Void,
                Dispatch,
                Reassign,
                AddProgress,
                DecideExtension,
                DecideHold,
                Resume,
                Verify,
                RecordFeedback,
                Reopen,
                Cancel,
                Supervise,
                SetUrgent,
                EraseResidentData,
                ReadCase,
                ReadHistory,
                ListCases,
                OverdueReport,
                Ledger,
                ExportCases,
                ExportLedger,
                WatchCases,
                ListUpdates,
                WhoAmI,
            ],
        ),
        (
            "county_auditor",
            "990101",
            &[
                EraseResidentData,
                ReadCase,
                ReadHistory,
                ListCases,
                OverdueReport,
                Ledger,
                ExportCases,
                ExportLedger,
                WatchCases,
                ListUpdates,
                WhoAmI,
            ],
        ),
        ("admin", "990101", &[WhoAmI, ReadReference, ValidateReference]),
        ("partner", "990101", &[FileCase, UploadAttachment, AddProgress, ReadCase, ListCases, ListUpdates, WhoAmI]),
    ];
    for (role, territory, allowed) in table {
        let who = principal(role, territory);
        for op in Operation::ALL {
            let decision = authorize(&who, op, Target::Service);
            assert_eq!(decision == Allow, allowed.contains(&op), "{role} {op}: {decision:?}");
            assert!(decision == Allow || forbidden(&decision), "{role} {op}: the layer never hides");
        }
    }
}

#[test]
fn the_county_and_admins_change_nothing() {
    let county = principal("county_auditor", "990101");
    let admin = principal("admin", "990101");
    // …but the county answers residents' requests to erase their data.
    for op in Operation::ALL.into_iter().filter(|op| op.changes_cases()) {
        if op != EraseResidentData {
            assert!(forbidden(&authorize(&county, op, Target::Service)), "county {op}");
        }
        assert!(forbidden(&authorize(&admin, op, Target::Service)), "admin {op}");
    }
}

#[test]
fn cases_outside_the_territory_are_hidden_not_forbidden() {
    let mine = case("990101001001001", Some("unit-a"), "grid_worker-1");
    let other_grid = case("990101001001002", Some("unit-a"), "someone-else");
    let other_township = case("990101002001001", Some("unit-b"), "someone-else");
    let other_county = case("990102001001001", None, "someone-else");
    let rows: &[(&str, &str, Operation, &CaseScope, Decision)] = &[
        ("grid_worker", "990101001001001", ReadCase, &mine, Allow),
        ("grid_worker", "990101001001001", ReadCase, &other_grid, Hidden),
        ("grid_worker", "990101001001001", AddProgress, &other_township, Hidden),
        ("grid_leader", "990101001001001", ReadCase, &mine, Allow),
        ("grid_leader", "990101001001002", ReadHistory, &other_grid, Allow),
        ("grid_leader", "990101001001001", ReadCase, &other_grid, Hidden),
        ("handling_unit", "unit-a", Acknowledge, &mine, Allow),
        ("handling_unit", "unit-a", Resolve, &other_grid, Allow),
        ("handling_unit", "unit-a", ReadCase, &other_township, Hidden),
        ("handling_unit", "unit-a", ReadCase, &other_county, Hidden),
        ("command_centre", "990101001", Dispatch, &other_grid, Allow),
        ("command_centre", "990101001", Dispatch, &other_township, Hidden),
        ("command_centre", "990101002", ReadHistory, &other_township, Allow),
        ("county_auditor", "990101", ReadCase, &other_township, Allow),
        ("county_auditor", "990101", ReadHistory, &other_county, Hidden),
        ("admin", "990101", WhoAmI, &mine, Hidden),
        // A partner sees what it filed, in its territory, and nothing else.
        ("partner", "990101", ReadCase, &case("990101001001001", None, "partner-1"), Allow),
        ("partner", "990101", AddProgress, &case("990101002001001", Some("unit-b"), "partner-1"), Allow),
        ("partner", "990101", ReadCase, &mine, Hidden),
        ("partner", "990101002", ReadCase, &case("990101001001001", None, "partner-1"), Hidden),
    ];
    for (role, territory, op, target, expected) in rows {
        assert_eq!(&authorize(&principal(role, territory), *op, Target::Case(target)), expected, "{role} {op}");
    }
    // A forbidden operation stays forbidden on a hidden case: the answer does not depend on the case.
    let decision = authorize(&principal("county_auditor", "990101"), Cancel, Target::Case(&other_county));
    assert!(forbidden(&decision), "{decision:?}");
}

#[test]
fn filings_and_regions_outside_the_territory_are_forbidden() {
    let worker = principal("grid_worker", "990101001001001");
    assert_eq!(authorize(&worker, FileCase, Target::Filing { grid: "990101001001001" }), Allow);
    assert_eq!(authorize(&worker, FileCase, Target::Filing { grid: "99010100100100101" }), Allow);
    assert!(forbidden(&authorize(&worker, FileCase, Target::Filing { grid: "990101001001002" })));
    let centre = principal("command_centre", "990101001");
    assert_eq!(authorize(&centre, OverdueReport, Target::Region("990101001")), Allow);
    assert_eq!(authorize(&centre, WatchCases, Target::Region("990101001")), Allow);
    assert_eq!(authorize(&centre, Ledger, Target::Region("990101001002")), Allow);
    assert!(forbidden(&authorize(&centre, OverdueReport, Target::Region("990101"))));
    assert!(forbidden(&authorize(&centre, WatchCases, Target::Region("990101002"))));
    let county = principal("county_auditor", "990101");
    assert_eq!(authorize(&county, ExportCases, Target::Region("990101002")), Allow);
    assert!(forbidden(&authorize(&county, ExportCases, Target::Region("990102"))));
}

#[test]
fn list_scopes_follow_the_role() {
    assert_eq!(
        list_scope(&principal("grid_worker", "990101001001001")),
        Some(ListScope { reporter: Some("grid_worker-1".into()), ..ListScope::default() })
    );
    assert_eq!(
        list_scope(&principal("command_centre", "990101001")),
        Some(ListScope { region_prefix: Some("990101001".into()), ..ListScope::default() })
    );
    assert_eq!(
        list_scope(&principal("handling_unit", "unit-a")),
        Some(ListScope { unit: Some("unit-a".into()), ..ListScope::default() })
    );
    assert_eq!(list_scope(&principal("admin", "990101")), None);
    assert_eq!(
        list_scope(&principal("partner", "990101001")),
        Some(ListScope {
            region_prefix: Some("990101001".into()),
            reporter: Some("partner-1".into()),
            ..ListScope::default()
        })
    );
}

#[test]
fn contact_details_in_full_only_for_those_who_call_back() {
    let mine = case("990101001001001", Some("unit-a"), "grid_worker-1");
    let cases: &[(&str, &str, ContactView)] = &[
        ("grid_worker", "990101001001001", ContactView::Full),
        ("grid_worker", "990101001001002", ContactView::Full),
        ("grid_leader", "990101001001001", ContactView::Full),
        ("handling_unit", "unit-a", ContactView::Full),
        ("handling_unit", "unit-b", ContactView::Masked),
        ("command_centre", "990101001", ContactView::Full),
        ("command_centre", "990101002", ContactView::Masked),
        ("county_auditor", "990101", ContactView::Masked),
        ("admin", "990101", ContactView::Masked),
        ("partner", "990101", ContactView::Masked),
    ];
    for (role, territory, expected) in cases {
        assert_eq!(contact_view(&principal(role, territory), &mine), *expected, "{role} {territory}");
    }
}
