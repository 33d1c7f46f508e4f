//! The documents stay true to the tree: the README's walkthrough is
//! `deploy/walkthrough.sh`, line for line, so what a newcomer pastes is what
//! the fresh-machine check runs; every path they name exists.

#[test]
fn the_readme_walkthrough_is_the_script() {
    let root = gridcase_tests::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let script = std::fs::read_to_string(root.join("deploy/walkthrough.sh")).unwrap();
    let (_, from_script) = script.split_once("# --- walkthrough ---\n").expect("the script's marker");
    let section = &readme[readme.find("## Walkthrough with gridctl").expect("the README's walkthrough")..];
    let block = section.split_once("```sh\n").expect("a sh block").1;
    let block = &block[..block.find("```\n").expect("the block's end")];
    assert_eq!(block, from_script, "README walkthrough and deploy/walkthrough.sh differ");
}

/// Every file or folder the documents name (in backticks, or as a relative
/// link) exists: a module moved or renamed must take its documents along.
#[test]
fn every_path_the_documents_name_exists() {
    let root = gridcase_tests::workspace_root();
    let mut checked = 0;
    for document in ["README.md", "ARCHITECTURE.md", "bench/README.md"] {
        let path = root.join(document);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let base = path.parent().unwrap();
        let mut missing = Vec::new();
        for name in named_paths(&text) {
            checked += 1;
            // A path in backticks is from the repository's root, a link from
            // the document's folder.
            if !root.join(&name).exists() && !base.join(&name).exists() {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "{document} names paths that do not exist: {missing:?}");
    }
    assert!(checked > 50, "only {checked} paths found in the documents");
}

/// `crates/x/src/y.rs`-like names in backticks, and the targets of relative
/// markdown links (`](path)` or `](path#anchor)`).
fn named_paths(text: &str) -> Vec<String> {
    let looks_like_path = |s: &str| {
        let top = [
            "crates/",
            "services/",
            "proto/",
            "deploy/",
            "tests/",
            "bench/",
            "chaos/",
            "fuzzing/",
            "fuzz/",
            "migrations/",
            "../",
        ];
        !s.contains(['*', '<', '>', ' ', '…', '{', '$']) && (top.iter().any(|t| s.starts_with(t)) || s.ends_with(".md"))
    };
    let mut paths = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        if looks_like_path(quoted) {
            paths.push(quoted.trim_end_matches(':').to_owned());
        }
    }
    for link in text.split("](").skip(1) {
        let target = &link[..link.find(')').unwrap_or(0)];
        let target = target.split('#').next().unwrap();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            paths.push(target.to_owned());
        }
    }
    paths
}
