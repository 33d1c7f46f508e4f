//! The README's walkthrough is `deploy/walkthrough.sh`, line for line, so
//! what a newcomer pastes is what the fresh-machine check runs.

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
