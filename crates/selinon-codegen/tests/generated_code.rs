//! The generated code: pinned by snapshots, deterministic, and compiling without warnings for
//! every configuration of the corpus that upstream accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use selinon_codegen::Builder;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus folder: `SELINON_CORPUS_DIR`, else `shared/corpus` beside the checkout.
fn corpus_dir() -> PathBuf {
    match std::env::var_os("SELINON_CORPUS_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.is_dir(),
                "SELINON_CORPUS_DIR={} does not exist",
                dir.display()
            );
            dir
        }
        None => {
            let dir = manifest_dir().join("../../../shared/corpus");
            assert!(
                dir.is_dir(),
                "the corpus is missing: set SELINON_CORPUS_DIR to the shared/corpus folder (looked at {})",
                dir.display()
            );
            dir
        }
    }
}

struct CorpusConfig {
    name: String,
    dir: PathBuf,
    nodes: String,
    flows: Vec<String>,
}

fn accepted_configs() -> Vec<CorpusConfig> {
    let dir = corpus_dir();
    let tsv = std::fs::read_to_string(dir.join("CONFIGS.tsv")).expect("CONFIGS.tsv");
    tsv.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[1] == "ACCEPT").then(|| CorpusConfig {
                name: cols[0].to_string(),
                dir: dir.join(cols[0]),
                nodes: cols[2].to_string(),
                flows: cols[3].split_whitespace().map(str::to_string).collect(),
            })
        })
        .collect()
}

fn builder(c: &CorpusConfig, flows: &[String]) -> Builder {
    let mut b = Builder::new().base_dir(&c.dir).nodes(&c.nodes);
    for f in flows {
        b = b.flows(f);
    }
    b
}

fn features() -> Builder {
    Builder::new()
        .base_dir(manifest_dir().join("tests/configs"))
        .nodes("features.yml")
        .flows("features.yml")
}

#[test]
fn features_snapshot() {
    let code = features().generate_string().unwrap();
    insta::assert_snapshot!("features", code);
}

#[test]
fn dinner_snapshot() {
    let c = accepted_configs()
        .into_iter()
        .find(|c| c.name == "selinon__selinon__example_dinner")
        .unwrap();
    let code = builder(&c, &c.flows).generate_string().unwrap();
    insta::assert_snapshot!("dinner", code);
}

#[test]
fn output_is_byte_identical_across_runs_and_file_orders() {
    for c in accepted_configs() {
        let first = builder(&c, &c.flows)
            .generate_string()
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let again = builder(&c, &c.flows).generate_string().unwrap();
        assert_eq!(first, again, "{}: two runs differ", c.name);
        let mut reversed = c.flows.clone();
        reversed.reverse();
        let shuffled = builder(&c, &reversed).generate_string().unwrap();
        assert_eq!(
            first, shuffled,
            "{}: the order of flow files changes the output",
            c.name
        );
    }
}

/// Writes one crate holding the generated code of every accepted corpus config (and the
/// feature config) next to scaffolded stubs, and runs clippy on it with warnings denied.
#[test]
fn generated_code_compiles_without_warnings() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generated-corpus");
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let runtime = manifest_dir()
        .join("../selinon-runtime")
        .canonicalize()
        .unwrap();
    let cargo_toml = format!(
        "[package]\nname = \"generated-corpus\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nselinon-runtime = {{ path = {:?} }}\nserde_json = \"1\"\n\n[workspace]\n",
        runtime.display().to_string()
    );
    write(&root.join("Cargo.toml"), &cargo_toml);
    let mut lib = String::from(
        "//! Generated code of the corpus, compiled by the codegen tests.\n#![deny(warnings)]\n",
    );
    let mut configs: Vec<(String, Builder)> = accepted_configs()
        .into_iter()
        .map(|c| (c.name.clone(), builder(&c, &c.flows)))
        .collect();
    configs.push(("features".into(), features()));
    for (i, (name, b)) in configs.into_iter().enumerate() {
        let module = format!("config_{i}");
        let generated = b
            .map_module("", format!("crate::{module}::app"))
            .load()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        write(&src.join(format!("{module}_flows.rs")), &generated.code());
        write(
            &src.join(format!("{module}_app.rs")),
            &selinon_codegen::scaffold::stubs(&generated.system),
        );
        lib.push_str(&format!(
            "/// {name}\npub mod {module} {{\n    /// Generated.\n    pub mod flows {{\n        include!(\"{module}_flows.rs\");\n    }}\n    /// Stubs.\n    pub mod app {{\n        include!(\"{module}_app.rs\");\n    }}\n}}\n"
        ));
    }
    write(&src.join("lib.rs"), &lib);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "clippy",
            "--quiet",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-W",
            "clippy::all",
        ])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo clippy");
    assert!(
        out.status.success(),
        "the generated code does not compile cleanly:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}
