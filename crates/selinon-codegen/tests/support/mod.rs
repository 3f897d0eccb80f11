//! Shared by the tests that compile generated code: the corpus, its configurations, and the
//! writing of generated crates. `selinon-cli`'s differential test includes this file too, so
//! paths are relative to `crates/<crate>`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use selinon_codegen::Builder;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus folder (`selinon_testkit::corpus_dir`: `SELINON_CORPUS_DIR`, else
/// `shared/corpus` beside the checkout; a failure with how to get it when missing).
pub fn corpus_dir() -> PathBuf {
    selinon_testkit::corpus_dir()
        .expect("these tests cannot go without the corpus: unset SELINON_SKIP_CORPUS")
}

pub struct CorpusConfig {
    pub name: String,
    pub dir: PathBuf,
    pub nodes: String,
    pub flows: Vec<String>,
}

/// The corpus configurations upstream accepts (`CONFIGS.tsv`).
pub fn accepted_configs() -> Vec<CorpusConfig> {
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
        .map(with_output_schemas)
        .collect()
}

/// The corpus ships no `output_schema` file, and the generator embeds them: a configuration
/// that names some is copied to a scratch folder where each missing schema is written as a
/// schema of objects (the mocked results of these tests are objects).
fn with_output_schemas(c: CorpusConfig) -> CorpusConfig {
    let nodes = c.dir.join(&c.nodes);
    let checked = selinon_codegen::check_strs(
        (
            &nodes.to_string_lossy(),
            &std::fs::read_to_string(&nodes).expect("the nodes file"),
        ),
        &[],
    );
    let folder = Path::new(&c.nodes).parent().unwrap_or(Path::new(""));
    let missing: Vec<PathBuf> = checked
        .config
        .iter()
        .flat_map(|config| &config.tasks)
        .filter_map(|t| t.output_schema.as_ref())
        .map(|s| folder.join(&s.value))
        .filter(|p| !c.dir.join(p).is_file())
        .collect();
    if missing.is_empty() {
        return c;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("corpus-with-output-schemas")
        .join(&c.name);
    copy_dir(&c.dir, &dir);
    for path in missing {
        write(
            &dir.join(path),
            r#"{"$comment": "written by the tests: the corpus has no schema files", "type": "object"}"#,
        );
    }
    CorpusConfig { dir, ..c }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            write(&target, &std::fs::read_to_string(entry.path()).unwrap());
        }
    }
}

pub fn builder(c: &CorpusConfig, flows: &[String]) -> Builder {
    let mut b = Builder::new().base_dir(&c.dir).nodes(&c.nodes);
    for f in flows {
        b = b.flows(f);
    }
    b
}

/// `tests/configs/features.yml`: every feature of the configuration format in one system.
pub fn features() -> Builder {
    Builder::new()
        .base_dir(manifest_dir().join("../selinon-codegen/tests/configs"))
        .nodes("features.yml")
        .flows("features.yml")
}

/// Every accepted corpus configuration and the feature configuration, by name, in a fixed
/// order (module `config_<i>` of a generated crate is the i-th).
pub fn all_configs() -> Vec<(String, Builder)> {
    let mut configs: Vec<(String, Builder)> = accepted_configs()
        .into_iter()
        .map(|c| {
            let b = builder(&c, &c.flows);
            (c.name, b)
        })
        .collect();
    configs.push(("features".into(), features()));
    configs
}

/// Writes a file unless it already holds `text` (so that cargo sees no change).
pub fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

/// The `Cargo.toml` of a generated crate depending on this checkout's runtime, with the runtime feature of the one built-in storage adapter
/// the configurations use (Redis, in `features.yml`).
pub fn generated_cargo_toml(name: &str, extra_dependencies: &str) -> String {
    let runtime = manifest_dir()
        .join("../selinon-runtime")
        .canonicalize()
        .unwrap();
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nselinon-runtime = {{ path = {:?}, features = [\"redis\"] }}\nserde_json = \"1\"\n{extra_dependencies}\n[workspace]\n",
        runtime.display().to_string()
    )
}

/// The module of config `i` in `lib.rs`: its generated code and its stubs (both written
/// beside `lib.rs`).
pub fn config_module(i: usize, name: &str) -> String {
    let module = format!("config_{i}");
    format!(
        "/// {name}\npub mod {module} {{\n    /// Generated.\n    pub mod flows {{\n        include!(\"{module}_flows.rs\");\n    }}\n    /// Stubs.\n    pub mod app {{\n        include!(\"{module}_app.rs\");\n    }}\n}}\n"
    )
}
