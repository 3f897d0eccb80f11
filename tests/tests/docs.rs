//! What a newcomer reads first is true: the README's Rust version is the workspace's
//! `rust-version`, its first commands are the example and CI, it says how to install
//! cargo-nextest, and README, COMPATIBILITY.md and docs/ link only inside the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md, COMPATIBILITY.md and every Markdown file below docs/.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md"), root().join("COMPATIBILITY.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn readme_rust_version_is_the_workspace_rust_version() {
    let manifest = read(&root().join("Cargo.toml"));
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    let readme = read(&root().join("README.md"));
    let needs = readme
        .lines()
        .find(|l| l.starts_with("Needs Rust "))
        .expect("README.md says which Rust it needs (`Needs Rust X or newer`)");
    assert!(
        needs.starts_with(&format!("Needs Rust {version} or newer")),
        "README.md says `{needs}`, Cargo.toml has rust-version = {version}"
    );
    // The pinned toolchain is at least rust-version and named in the README.
    let toolchain = read(&root().join("rust-toolchain.toml"));
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("channel in rust-toolchain.toml")
        .trim_matches('"');
    assert!(readme.contains(&format!("pins {channel}")), "{channel}");
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(parse(channel) >= parse(version), "{channel} < {version}");
}

#[test]
fn readme_first_commands_run_the_example_and_ci() {
    let readme = read(&root().join("README.md"));
    assert!(readme.contains("cargo install cargo-nextest --locked"));
    let first_block: Vec<&str> = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a shell block")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(first_block, ["cargo run --example dinner", "bash .ci/run"]);
    assert!(read(&root().join("examples/Cargo.toml")).contains("name = \"dinner\""));
}

#[test]
fn documents_link_only_inside_the_repository() {
    let root = root().canonicalize().unwrap();
    let mut problems = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for (i, line) in text.lines().enumerate() {
            let place = format!(
                "{}:{}",
                doc.strip_prefix(&root).unwrap_or(&doc).display(),
                i + 1
            );
            for outside in ["../shared", "/work/"] {
                if line.contains(outside) {
                    problems.push(format!("{place}: names `{outside}`"));
                }
            }
            // Markdown links `[text](target)` to files.
            for part in line.split("](").skip(1) {
                let Some(target) = part.split(')').next() else {
                    continue;
                };
                let target = target.split('#').next().unwrap_or("");
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let path = doc.parent().unwrap().join(target);
                match path.canonicalize() {
                    Ok(p) if p.starts_with(&root) => {}
                    Ok(_) => {
                        problems.push(format!("{place}: `{target}` is outside the repository"))
                    }
                    Err(_) => problems.push(format!("{place}: `{target}` does not exist")),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
