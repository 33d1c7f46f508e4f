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
fn the_reference_calendar_policy_and_auth_crates_do_no_async() {
    for package in ["gridcase-reference", "gridcase-calendar", "gridcase-policy", "gridcase-auth"] {
        let dependencies = normal_dependencies(package);
        let offending: Vec<&String> = dependencies.iter().filter(|d| IO_CRATES.contains(&d.as_str())).collect();
        assert!(offending.is_empty(), "{package} must stay free of async and network crates: {offending:?}");
    }
}

/// Every method of every gridcase service is either an operation of the
/// authorization policy or deliberately public: a new rpc cannot slip past
/// the policy (the layer would refuse it anyway, deny by default).
#[test]
fn every_rpc_is_an_operation_of_the_authorization_policy_or_public() {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(gridcase_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut methods = 0;
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                let operation = gridcase_auth::Operation::from_grpc_path(&path);
                let public = gridcase_auth::Operation::is_public_path(&path);
                assert!(operation.is_some() != public, "{path}: operation {operation:?}, public {public}");
                methods += 1;
            }
        }
    }
    assert!(methods >= 32, "{methods} methods");
}
