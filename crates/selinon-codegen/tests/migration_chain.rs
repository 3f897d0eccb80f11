//! The migration chain of `global.migration_dir` (resolved relative to the nodes file) is
//! embedded in the generated code, covered by the content hash and watched by builds.

use std::path::{Path, PathBuf};

use selinon_codegen::{Builder, GenerateError, Generated};

const NODES: &str = "\
tasks:
  - {name: A, import: app.tasks}
  - {name: B, import: app.tasks}
flows: [f]
global:
  migration_dir: migrations
flow-definitions:
  - name: f
    edges:
      - {from: , to: A}
      - {from: A, to: B}
";

const FIRST: &str = r#"{"migration": {"f": {"translation": {"1": null}, "tainted_edges": {}, "tainting_nodes": {}}}, "tainted_flow_strategy": "FAIL"}"#;

/// A configuration folder `<tmp>/<name>/config` holding `nodes.yml` and `migrations/`.
fn config_dir(name: &str, migrations: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("migration-chain-{name}-{}", std::process::id()))
        .join("config");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    std::fs::write(dir.join("nodes.yml"), NODES).unwrap();
    for (file, text) in migrations {
        std::fs::write(dir.join("migrations").join(file), text).unwrap();
    }
    dir
}

/// Generates from the folder's parent, as `selinon generate --nodes config/nodes.yml` does:
/// `migrations` is found beside the nodes file, not in the working directory.
fn generate(dir: &Path) -> Result<Generated, GenerateError> {
    Builder::new()
        .base_dir(dir.parent().unwrap())
        .nodes("config/nodes.yml")
        .flows("config/nodes.yml")
        .load()
}

#[test]
fn the_chain_is_embedded_in_the_generated_code() {
    let dir = config_dir("embedded", &[("1.json", FIRST)]);
    let generated = generate(&dir).unwrap();
    assert_eq!(generated.system.migrations, [(1, FIRST.to_string())]);
    let code = generated.code();
    let literal = format!("{FIRST:?}");
    assert!(
        code.contains("1u32") && code.contains(&literal),
        "the generated code does not embed 1.json:\n{code}"
    );
    // Builds watch the migration files and the directory (for a new file).
    assert!(
        generated
            .files
            .contains(&dir.join("migrations/1.json").to_path_buf()),
        "{:?}",
        generated.files
    );
    assert_eq!(generated.migration_dir, Some(dir.join("migrations")));
}

#[test]
fn the_content_hash_covers_the_chain() {
    let dir = config_dir("hash", &[("1.json", FIRST)]);
    let first = generate(&dir).unwrap().content_hash;
    std::fs::write(
        dir.join("migrations/1.json"),
        FIRST.replace("FAIL", "RETRY"),
    )
    .unwrap();
    let changed = generate(&dir).unwrap().content_hash;
    assert_ne!(first, changed, "a changed migration file changes the hash");
    std::fs::write(dir.join("migrations/2.json"), FIRST).unwrap();
    let added = generate(&dir).unwrap();
    assert_ne!(
        changed, added.content_hash,
        "a new migration file changes the hash"
    );
    assert_eq!(
        added
            .system
            .migrations
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn without_the_directory_nothing_is_embedded() {
    let dir = config_dir("missing", &[]);
    std::fs::remove_dir(dir.join("migrations")).unwrap();
    let generated = generate(&dir).unwrap();
    assert!(generated.system.migrations.is_empty());
    assert_eq!(generated.migration_dir, None);
    assert!(generated.code().contains("path: \"migrations\""));
}

#[test]
fn a_bad_migration_file_is_an_error_at_migration_dir() {
    let dir = config_dir("bad", &[("1.json", FIRST), ("2.json", "{\"x\": 1}")]);
    let Err(GenerateError::Invalid { rendered, .. }) = generate(&dir) else {
        panic!("a bad migration file must be an error");
    };
    assert!(rendered.contains("config/nodes.yml:6:18"), "{rendered}");
    assert!(rendered.contains("2.json"), "{rendered}");
    assert!(rendered.contains("not a migration file"), "{rendered}");
}
