//! `gridctl deadline` as an operator runs it.

use std::process::Command;

fn gridctl(args: &[&str]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_gridctl")).args(args).current_dir(root).output().expect("run gridctl")
}

#[test]
fn answers_when_a_case_is_due_and_which_calendar_files_were_used() {
    let output = gridctl(&["deadline", "--tier", "NORMAL", "--from", "2026-02-13T17:00+08:00", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["clocks"][0]["clock"], "acknowledge");
    assert_eq!(report["clocks"][0]["due"], "2026-02-14T17:00:00+08:00", "Saturday 02-14 is a working day");
    assert_eq!(report["clocks"][1]["due"], "2026-02-27T17:00:00+08:00");
    assert!(report["calendar_files"][0].as_str().unwrap().starts_with("2026 ("));
    assert_eq!(report["missing_years"], serde_json::json!([]));
}

#[test]
fn warns_when_a_year_has_no_calendar_file() {
    let output = gridctl(&["deadline", "--tier", "COMPLEX", "--from", "2026-12-28T09:00+08:00"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(text.contains("WARNING: no calendar file for [2027]"), "{text}");
}

#[test]
fn routes_and_extensions_apply() {
    let output = gridctl(&[
        "deadline",
        "--tier",
        "CRITICAL",
        "--from",
        "2026-02-15T03:00+08:00",
        "--category",
        "0802",
        "--grid",
        "990101001001001",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["unit"], "unit.police.990101");
    assert_eq!(report["clocks"][0]["limit"], "15 minutes", "the missing-person route overrides acknowledge");
    assert_eq!(report["clocks"][0]["due"], "2026-02-15T03:15:00+08:00");

    let output = gridctl(&[
        "deadline",
        "--tier",
        "NORMAL",
        "--from",
        "2026-02-13T17:00+08:00",
        "--extension-days",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // 7 working days from Friday 17:00, with the working Saturdays 02-14 and 02-28.
    assert_eq!(report["clocks"][1]["due"], "2026-03-02T17:00:00+08:00");
}

#[test]
fn bad_input_is_a_usage_error() {
    let output = gridctl(&["deadline", "--tier", "SOON", "--from", "2026-02-13T17:00+08:00"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"SOON\" is not CRITICAL, URGENT, NORMAL or COMPLEX"));
}
