//! The Selinon compiler: YAML flow configurations → checked model → IR → Rust.
//!
//! The folder tree follows the pipeline: [`config`] reads the YAML into a model with a source
//! location for every node, [`validate`] runs the system checks, [`ir`] resolves the model into
//! flow graphs. Every stage reports into one [`Diagnostics`] list.
//!
//! ```
//! let nodes = "tasks:\n  - name: Hello\n    import: app.tasks\nflows: [hello]\n";
//! let flows = "flow-definitions:\n  - name: hello\n    edges:\n      - from:\n        to: Hello\n";
//! let checked = selinon_codegen::check_strs(("nodes.yml", nodes), &[("flows.yml", flows)]);
//! assert!(!checked.diagnostics.has_errors());
//! let system = checked.system.unwrap();
//! assert_eq!(system.flows[0].name, "hello");
//! ```

#![warn(missing_docs)]

pub mod builder;
pub mod config;
pub mod diagnostics;
pub mod emit;
pub mod ir;
pub mod migrate;
pub mod plot;
pub mod resolve;
pub mod scaffold;
pub mod schema;
pub mod validate;

use std::path::PathBuf;

pub use builder::{Builder, GenerateError, Generated};
pub use diagnostics::{Diagnostic, Diagnostics, Severity, SourceMap, Span};

/// The outcome of loading and checking a configuration.
#[derive(Debug)]
pub struct Checked {
    /// Every file read, for rendering diagnostics.
    pub sources: SourceMap,
    /// The model as loaded (present unless a file could not be read or parsed).
    pub config: Option<config::Config>,
    /// The IR, present when there are no errors.
    pub system: Option<ir::System>,
    /// Every error and warning found.
    pub diagnostics: Diagnostics,
    /// The directory of the migration chain, when it was read (watched for new files).
    pub migration_dir: Option<PathBuf>,
}

/// Loads, checks and lowers a configuration from files (a directory in `flows` stands for every
/// YAML file below it). The migration chain of `global.migration_dir` is read too: its files
/// join [`Checked::sources`] (so that the content hash covers them and builds watch them) and
/// the IR's [`ir::System::migrations`].
pub fn check_files(nodes: impl Into<PathBuf>, flows: &[PathBuf]) -> Checked {
    let nodes = nodes.into();
    let mut sources = SourceMap::default();
    let mut diagnostics = Diagnostics::default();
    let config = config::load_files(&nodes, flows, &mut sources, &mut diagnostics);
    let mut checked = finish(sources, config, diagnostics);
    read_migrations(&nodes, &mut checked);
    read_output_schemas(&nodes, &mut checked);
    checked
}

/// Reads the migration chain of `global.migration_dir` (relative to the nodes file) into the
/// IR. Nothing is read when the directory does not exist or names an environment variable that
/// is not set now: workers then read the directory when they start. A file of the chain that
/// cannot be read is an error.
fn read_migrations(nodes: &std::path::Path, checked: &mut Checked) {
    let Some(system) = &mut checked.system else {
        return;
    };
    let Some(dir) = checked
        .config
        .as_ref()
        .and_then(|c| c.global.migration_dir.as_ref())
    else {
        return;
    };
    let Ok(path) = migrate::resolve_dir(nodes, &dir.value) else {
        return;
    };
    if !path.is_dir() {
        return;
    }
    match migrate::read_chain(&path) {
        Ok(chain) => {
            for (version, text) in &chain {
                checked
                    .sources
                    .add(path.join(format!("{version}.json")), text.clone());
            }
            system.migrations = chain;
            checked.migration_dir = Some(path);
        }
        Err(err) => {
            checked.diagnostics.error(
                dir.span,
                format!("the migration chain of `global.migration_dir` cannot be read: {err}"),
                "migration files are `1.json`, `2.json`, … as `selinon migrate` writes them; \
                 fix or remove the file",
            );
            checked.system = None;
        }
    }
}

/// Reads every task's `output_schema` (a path relative to the nodes file's folder; absolute
/// paths as they are) into the IR, as compact JSON text that generated code embeds. Each file
/// joins [`Checked::sources`] (the content hash covers it, builds watch it). A file that
/// cannot be read, is not JSON or is not a valid JSON schema is an error at the task's
/// `output_schema`.
fn read_output_schemas(nodes: &std::path::Path, checked: &mut Checked) {
    let (Some(config), Some(system)) = (&checked.config, &mut checked.system) else {
        return;
    };
    let folder = nodes.parent().unwrap_or(std::path::Path::new(""));
    let mut read: std::collections::BTreeMap<PathBuf, Result<String, ()>> = Default::default();
    let mut failed = false;
    for (task, ir_task) in config.tasks.iter().zip(&mut system.tasks) {
        let (Some(schema), Some(ir_schema)) = (&task.output_schema, &mut ir_task.output_schema)
        else {
            continue;
        };
        let path = folder.join(&schema.value);
        let outcome = read.entry(path.clone()).or_insert_with(|| {
            match schema::read(&path, &schema.value, folder) {
                Ok((text, compact)) => {
                    checked.sources.add(path.clone(), text);
                    Ok(compact)
                }
                Err(problem) => {
                    checked.diagnostics.error(
                        schema.span,
                        format!(
                            "the output schema of task `{}` {}",
                            task.name.value, problem.message
                        ),
                        problem.help,
                    );
                    Err(())
                }
            }
        });
        match outcome {
            Ok(compact) => ir_schema.json = Some(compact.clone()),
            Err(()) => {
                // One file named by several tasks: each task's key gets the error.
                if !checked
                    .diagnostics
                    .iter()
                    .any(|d| d.span == Some(schema.span))
                {
                    checked.diagnostics.error(
                        schema.span,
                        format!(
                            "the output schema of task `{}` (`{}`) cannot be used: see the \
                             error above about the same file",
                            task.name.value, schema.value
                        ),
                        "",
                    );
                }
                failed = true;
            }
        }
    }
    if failed {
        checked.system = None;
        checked.diagnostics.sort();
    }
}

/// Loads, checks and lowers a whole configuration (nodes and flow definitions in one document)
/// held in a string and written in the file `path`: its migration chain is read relative to
/// `path`'s folder.
pub fn check_inline(path: impl Into<PathBuf>, text: &str) -> Checked {
    let path = path.into();
    let shown = path.to_string_lossy().into_owned();
    let mut checked = check_strs((&shown, text), &[(&shown, text)]);
    read_migrations(&path, &mut checked);
    read_output_schemas(&path, &mut checked);
    checked
}

/// Loads, checks and lowers a configuration held in strings: `(path, text)` pairs. A flow file
/// with the same path as the nodes file is the nodes file (a single file holding both). No
/// file is read: `output_schema` files and the migration chain are left out of the IR.
pub fn check_strs(nodes: (&str, &str), flows: &[(&str, &str)]) -> Checked {
    let mut sources = SourceMap::default();
    let mut diagnostics = Diagnostics::default();
    let config = config::load_strs(nodes, flows, &mut sources, &mut diagnostics);
    finish(sources, config, diagnostics)
}

fn finish(
    sources: SourceMap,
    config: Option<config::Config>,
    mut diagnostics: Diagnostics,
) -> Checked {
    let system = config.as_ref().and_then(|config| {
        validate::validate(config, &mut diagnostics);
        if diagnostics.has_errors() {
            None
        } else {
            Some(ir::lower(config, &sources))
        }
    });
    diagnostics.sort();
    Checked {
        sources,
        config,
        system,
        diagnostics,
        migration_dir: None,
    }
}
