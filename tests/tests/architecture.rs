//! Architecture invariants that a build would not catch by itself.

use std::process::Command;

/// The crates a pure crate must never depend on, directly or not.
const IO_CRATES: [&str; 9] = ["tokio", "async-nats", "sqlx", "tonic", "prost", "hyper", "mio", "futures", "reqwest"];

fn normal_dependencies(package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(gridcase_tests::workspace_root())
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_domain_crate_does_no_io_and_no_async() {
    let dependencies = normal_dependencies("gridcase-domain");
    assert!(dependencies.iter().any(|d| d == "jiff"), "cargo tree listed {dependencies:?}");
    let offending: Vec<&String> = dependencies.iter().filter(|d| IO_CRATES.contains(&d.as_str())).collect();
    assert!(offending.is_empty(), "gridcase-domain must stay pure but depends on {offending:?}");
}

#[test]
fn the_reference_calendar_and_policy_crates_do_no_async() {
    for package in ["gridcase-reference", "gridcase-calendar", "gridcase-policy"] {
        let dependencies = normal_dependencies(package);
        let offending: Vec<&String> = dependencies.iter().filter(|d| IO_CRATES.contains(&d.as_str())).collect();
        assert!(offending.is_empty(), "{package} must stay free of async and network crates: {offending:?}");
    }
}
