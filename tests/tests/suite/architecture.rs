//! Architecture invariants that a build would not catch by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
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
fn the_reference_calendar_policy_auth_and_envelope_crates_do_no_async() {
    for package in ["gridcase-reference", "gridcase-calendar", "gridcase-policy", "gridcase-auth", "gridcase-envelope"]
    {
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

/// The libraries in `crates/` are what the services are built on: none of
/// them may depend on a service (or on the benches, the chaos harness, the
/// fuzz targets, the test support), only on each other and on the wire
/// contract in `proto/`.
#[test]
fn no_library_crate_depends_on_a_service_or_a_harness() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--offline", "--no-deps", "--format-version", "1"])
        .current_dir(gridcase_tests::workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let crates = gridcase_tests::workspace_root().join("crates");
    let proto = gridcase_tests::workspace_root().join("proto");
    let mut libraries = 0;
    for package in metadata["packages"].as_array().unwrap() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        if !manifest.starts_with(&crates) {
            continue;
        }
        libraries += 1;
        for dependency in package["dependencies"].as_array().unwrap() {
            let Some(path) = dependency["path"].as_str() else { continue };
            assert!(
                Path::new(path).starts_with(&crates) || Path::new(path) == proto,
                "{} depends on {} at {path}, outside crates/ and proto/",
                package["name"],
                dependency["name"]
            );
        }
    }
    assert!(libraries >= 10, "{libraries} library crates found under {}", crates.display());
}

/// Within each crate, the modules' imports form no cycle: every module can
/// be read knowing only the ones below it. (A module and its own children
/// may refer to each other; the crate root only re-exports.)
#[test]
fn no_crate_has_a_cycle_between_its_modules() {
    let root = gridcase_tests::workspace_root();
    let mut crates = 0;
    for folder in ["crates", "services"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let source = entry.unwrap().path().join("src");
            if source.is_dir() {
                crates += 1;
                let cycles = module_cycles(&source);
                assert!(cycles.is_empty(), "modules of {} import each other in a loop: {cycles:?}", source.display());
            }
        }
    }
    for harness in ["bench", "chaos", "fuzzing", "tests", "proto"] {
        crates += 1;
        let cycles = module_cycles(&root.join(harness).join("src"));
        assert!(cycles.is_empty(), "modules of {harness} import each other in a loop: {cycles:?}");
    }
    assert!(crates >= 19, "{crates} crates read");
}

/// The checker itself finds a loop, and only a loop.
#[test]
fn the_module_cycle_check_finds_a_loop_of_imports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\npub use a::Thing;\n").unwrap();
    std::fs::write(src.join("a.rs"), "mod inner;\nuse crate::b::{self, Other};\n").unwrap();
    std::fs::write(src.join("a/inner.rs"), "use super::super::c::X; // crate::b in a comment is no import\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub fn f() { crate::a::g(); }\n#[cfg(test)]\nmod tests { use crate::c::Y; }\n")
        .unwrap();
    std::fs::write(src.join("c.rs"), "pub struct X;\n").unwrap();
    assert_eq!(module_cycles(src), vec![vec!["a".to_owned(), "b".to_owned()]]);
    std::fs::write(src.join("b.rs"), "pub fn f() {}\n").unwrap();
    std::fs::write(src.join("c.rs"), "use crate::a::inner::Z;\n").unwrap();
    assert_eq!(module_cycles(src), vec![vec!["a::inner".to_owned(), "c".to_owned()]]);
}

/// The groups of modules (as `a::b`) under `src` that import each other in
/// a loop, each sorted.
fn module_cycles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if path.last().is_some_and(|last| last == "mod" || (path.len() == 1 && (last == "lib" || last == "main"))) {
                path.pop();
            }
            // Tests beside their module read it from outside; they are not part of it.
            (path.last().map(String::as_str) != Some("tests")).then_some((path, file))
        })
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in referenced_paths(&code_only(&text), module) {
            let Some(target) = (0..=path.len()).rev().map(|n| &path[..n]).find(|p| modules.contains_key(*p)) else {
                continue;
            };
            let related = target.starts_with(module) || module.starts_with(target);
            if !target.is_empty() && !related {
                edges.entry(module.clone()).or_default().insert(target.to_vec());
            }
        }
    }
    strongly_connected(&modules.keys().cloned().collect::<Vec<_>>(), &edges)
        .into_iter()
        .filter(|group| group.len() > 1)
        .map(|group| group.into_iter().map(|m| m.join("::")).collect())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without the inline test module at the
/// end of a file.
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
    text.lines()
        .map(|line| {
            let bytes = line.as_bytes();
            let comment = (0..bytes.len().saturating_sub(1))
                .find(|&i| bytes[i] == b'/' && bytes[i + 1] == b'/' && (i == 0 || bytes[i - 1] != b':'));
            &line[..comment.unwrap_or(line.len())]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts at `crate::` or `super::` in `code` (a `{…}`
/// group expanded into its paths), from the crate root.
fn referenced_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (start, keyword) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &code[start..];
        let mut base: Vec<String> = if keyword == "crate::" {
            rest = &rest["crate::".len()..];
            Vec::new()
        } else {
            let mut base = module.to_vec();
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            base
        };
        for tail in expand(rest) {
            let mut full = std::mem::take(&mut base);
            base.clone_from(&full);
            full.extend(tail);
            paths.push(full);
        }
    }
    paths
}

/// The paths a `use` tree or an inline path names, from its start: `a::b`,
/// `a::{b, c::{d}}`, `self`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut items = Vec::new();
            let (mut depth, mut from) = (0, 0);
            let inner = &group[..end];
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&inner[from..i]);
                        from = i + 1;
                    }
                    _ => {}
                }
            }
            items.push(&inner[from..]);
            return items
                .into_iter()
                .filter(|item| !item.trim().is_empty())
                .flat_map(expand)
                .map(|tail| segments.iter().cloned().chain(tail.into_iter().filter(|s| s != "self")).collect())
                .collect();
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*').collect();
        if name.is_empty() {
            return vec![segments];
        }
        rest = &rest[name.len()..];
        segments.push(name);
        match rest.strip_prefix("::") {
            Some(after) => rest = after.trim_start(),
            None => return vec![segments],
        }
    }
}

/// Tarjan's strongly connected components of the graph.
fn strongly_connected<N: Ord + Clone>(nodes: &[N], edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        groups: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(node: &N, edges: &BTreeMap<N, BTreeSet<N>>, state: &mut State<N>) {
        let index = state.index.len();
        state.index.insert(node.clone(), index);
        state.low.insert(node.clone(), index);
        state.stack.push(node.clone());
        state.on_stack.insert(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if !state.index.contains_key(next) {
                visit(next, edges, state);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node.clone(), low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node.clone(), low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut group = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(&member);
                let last = &member == node;
                group.push(member);
                if last {
                    break;
                }
            }
            group.sort();
            state.groups.push(group);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(node) {
            visit(node, edges, &mut state);
        }
    }
    state.groups
}
