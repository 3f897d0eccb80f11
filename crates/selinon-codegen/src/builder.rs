//! The one entry point behind every front door: build.rs ([`Builder::generate`]), the
//! `include_flows!` and `flows!` macros ([`Builder::generate_tokens`]) and `selinon generate`
//! ([`Builder::generate_string`]).

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use sha2::{Digest, Sha256};

use crate::diagnostics::{display_path, Diagnostics, SourceMap};
use crate::emit::{self, EmitOptions};
use crate::ir::System;

/// Configures and runs code generation.
///
/// In `build.rs`:
///
/// ```no_run
/// let generated = selinon_codegen::Builder::new()
///     .nodes("flows/nodes.yml")
///     .flows("flows/")
///     .map_module("myapp", "crate::tasks")
///     .generate();
/// // The report and a `cargo::error` line are printed already: just fail.
/// if generated.is_err() {
///     std::process::exit(1);
/// }
/// ```
///
/// and in the crate: `mod flows { include!(concat!(env!("OUT_DIR"), "/selinon_flows.rs")); }`.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    nodes: Option<PathBuf>,
    flows: Vec<PathBuf>,
    options: EmitOptions,
    base_dir: Option<PathBuf>,
    out_file: Option<String>,
    inline: Option<(PathBuf, String)>,
    /// Crate roots to find the YAML's user items in (see [`crate::resolve`]).
    crate_roots: Vec<PathBuf>,
}

/// Generation failed: the configuration has errors (already rendered, with file:line:col).
///
/// Its `Debug` form is short (a build script's `.unwrap()` does not repeat the report that
/// [`Builder::generate`] printed); `Display` holds the whole report.
#[derive(thiserror::Error)]
pub enum GenerateError {
    /// No nodes file was given to the builder.
    #[error("no nodes file given: call `.nodes(\"path/to/nodes.yml\")`")]
    NoNodes,
    /// The configuration has errors.
    #[error("the Selinon configuration has errors:\n{rendered}")]
    Invalid {
        /// The errors rendered with file:line:col and the offending lines.
        rendered: String,
        /// Every finding, warnings included.
        diagnostics: Diagnostics,
        /// The files read, to render `diagnostics` again.
        sources: SourceMap,
    },
    /// The generated file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `generate()` was called outside a build script: the named environment variable is not set.
    #[error(
        "{0} is not set: `generate()` runs in build scripts; use `generate_string()` elsewhere"
    )]
    NoOutDir(&'static str),
}

impl std::fmt::Debug for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenerateError::NoNodes => f.write_str("NoNodes"),
            GenerateError::Invalid {
                diagnostics,
                sources,
                ..
            } => f
                .debug_struct("Invalid")
                .field("errors", &diagnostics.error_count())
                .field(
                    "first",
                    &diagnostics.errors().next().map(|d| located(d, sources)),
                )
                .finish_non_exhaustive(),
            GenerateError::Write { path, source } => f
                .debug_struct("Write")
                .field("path", path)
                .field("source", source)
                .finish(),
            GenerateError::NoOutDir(var) => f.debug_tuple("NoOutDir").field(var).finish(),
        }
    }
}

/// Generated code with what it was made from.
#[derive(Debug)]
pub struct Generated {
    /// The IR the code was generated from.
    pub system: System,
    /// Every file read: the YAML files, the output schemas and the migration chain (to watch
    /// for changes).
    pub files: Vec<PathBuf>,
    /// The directory of the migration chain, when there is one (watched for new files).
    pub migration_dir: Option<PathBuf>,
    /// Warnings (there are no errors when generation succeeds).
    pub diagnostics: Diagnostics,
    /// Every file read, to render `diagnostics`.
    pub sources: SourceMap,
    /// `sha256:` and 16 hex digits over the display paths and contents of every file read; written
    /// into the generated header.
    pub content_hash: String,
    options: EmitOptions,
}

impl Generated {
    /// The items as tokens (for the proc macro).
    pub fn tokens(&self) -> TokenStream {
        emit::emit(&self.system, &self.content_hash, &self.options)
    }

    /// The formatted source file with its header.
    pub fn code(&self) -> String {
        emit::render(&self.system, &self.content_hash, &self.options)
    }
}

impl Builder {
    /// A builder with nothing set; same as `Builder::default()`.
    pub fn new() -> Self {
        Builder::default()
    }

    /// The nodes file (`tasks`, `flows`, `storages`, `global`).
    pub fn nodes(mut self, path: impl Into<PathBuf>) -> Self {
        self.nodes = Some(path.into());
        self
    }

    /// A whole configuration held in a string (the nodes file's keys and `flow-definitions`
    /// in one document), written in the file `path`: diagnostics and generated doc comments
    /// name `path` and the lines of `text`, and relative paths in it (`global.migration_dir`)
    /// are read from `path`'s folder. Replaces `nodes` and `flows`.
    pub fn inline(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.inline = Some((path.into(), text.into()));
        self
    }

    /// A flow file, or a directory holding flow files (every `*.yml`/`*.yaml` below it).
    pub fn flows(mut self, path: impl Into<PathBuf>) -> Self {
        self.flows.push(path.into());
        self
    }

    /// Maps a YAML module prefix to a Rust path: `.map_module("myapp", "crate::app")` turns
    /// `import: myapp.tasks` into `crate::app::tasks`. An empty `from` prefixes every module.
    pub fn map_module(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.options.module_map.push((from.into(), to.into()));
        self
    }

    /// Paths are resolved against, and shown relative to, this directory (default: the
    /// current directory; the macro uses `CARGO_MANIFEST_DIR`).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The file name written into `OUT_DIR` by [`Builder::generate`] (default
    /// `selinon_flows.rs`).
    pub fn out_file(mut self, name: impl Into<String>) -> Self {
        self.out_file = Some(name.into());
        self
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Looks for the user items the YAML names (task and storage types, `foreach` and selective
    /// run functions) in the crate whose roots these are: a missing one is an error naming the
    /// YAML line (rustc's own error would point into the generated code). `generate()` looks in
    /// the package's usual roots by itself.
    pub fn crate_roots(mut self, roots: impl IntoIterator<Item = PathBuf>) -> Self {
        self.crate_roots = roots.into_iter().collect();
        self
    }

    /// Loads, checks and lowers the configuration.
    pub fn load(&self) -> Result<Generated, GenerateError> {
        let mut checked = match &self.inline {
            Some((path, text)) => crate::check_inline(self.resolve(path), text),
            None => {
                let nodes = self.nodes.as_ref().ok_or(GenerateError::NoNodes)?;
                let flows: Vec<PathBuf> = self.flows.iter().map(|f| self.resolve(f)).collect();
                crate::check_files(self.resolve(nodes), &flows)
            }
        };
        let ids: Vec<_> = checked.sources.files().map(|(id, _)| id).collect();
        for id in ids {
            let path = checked.sources.get(id).path.clone();
            let shown = match &self.base_dir {
                Some(base) => path
                    .strip_prefix(base)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_else(|_| display_path(&path)),
                None => display_path(&path),
            };
            checked.sources.set_display(id, shown);
        }
        let files: Vec<PathBuf> = checked
            .sources
            .files()
            .map(|(_, f)| f.path.clone())
            .collect();
        if let Some(config) = checked.config.as_ref() {
            if !checked.diagnostics.has_errors() && !self.crate_roots.is_empty() {
                for d in crate::resolve::check(config, &self.options, &self.crate_roots) {
                    checked.diagnostics.push(d);
                }
            }
        }
        let Some(config) = checked
            .config
            .as_ref()
            .filter(|_| !checked.diagnostics.has_errors())
        else {
            return Err(GenerateError::Invalid {
                rendered: checked.diagnostics.render(&checked.sources, false),
                diagnostics: checked.diagnostics,
                sources: checked.sources,
            });
        };
        // Lower again so the IR carries the display paths chosen above; the migration chain
        // and the output schemas were read by `check_files`.
        let mut system = crate::ir::lower(config, &checked.sources);
        if let Some(read) = checked.system.take() {
            system.migrations = read.migrations;
            for (task, read) in system.tasks.iter_mut().zip(read.tasks) {
                task.output_schema = read.output_schema;
            }
        }
        let content_hash = content_hash(&checked.sources);
        Ok(Generated {
            system,
            files,
            migration_dir: checked.migration_dir,
            diagnostics: checked.diagnostics,
            sources: checked.sources,
            content_hash,
            options: self.options.clone(),
        })
    }

    /// The generated items as tokens.
    pub fn generate_tokens(&self) -> Result<Generated, GenerateError> {
        self.load()
    }

    /// The generated source file.
    pub fn generate_string(&self) -> Result<String, GenerateError> {
        Ok(self.load()?.code())
    }

    /// For build scripts: writes `OUT_DIR/selinon_flows.rs` (only when it changed), prints
    /// `cargo::rerun-if-changed` for every file read (YAML, output schemas, migrations) and the
    /// migration directory (a new migration file), and each warning as one `cargo::warning`
    /// line (`file:line:col: message`).
    ///
    /// On failure it has already told cargo everything: a configuration with errors prints its
    /// rustc-style report on stderr and one `cargo::error` line (how many errors, where the
    /// first is, where the report is); any other failure prints one `cargo::error` line. The
    /// build script only has to exit with a failure status, so that cargo shows the report
    /// (under `--- stderr`) and stops:
    ///
    /// ```no_run
    /// // build.rs, in `fn main`:
    /// let generated = selinon_codegen::Builder::new()
    ///     .nodes("flows/nodes.yml")
    ///     .flows("flows/")
    ///     .generate();
    /// if generated.is_err() {
    ///     std::process::exit(1);
    /// }
    /// ```
    ///
    /// The `cargo::` instructions need cargo 1.84 or newer (older than the workspace's
    /// `rust-version`).
    pub fn generate(&self) -> Result<PathBuf, GenerateError> {
        let out_dir = std::env::var_os("OUT_DIR").ok_or(GenerateError::NoOutDir("OUT_DIR"))?;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        self.generate_into(Path::new(&out_dir), &mut out, &mut err)
    }

    /// [`Builder::generate`] with the cargo instructions written to `out` and the report to
    /// `err`.
    fn generate_into(
        &self,
        out_dir: &Path,
        out: &mut dyn std::io::Write,
        err: &mut dyn std::io::Write,
    ) -> Result<PathBuf, GenerateError> {
        // Output is best effort: a closed stdout must not turn a good build into a bad one.
        // A failed build script runs again at the next build whatever it printed, so no
        // `rerun-if-changed` lines are printed on failure: `--- stdout` holds only the error.
        let mut this = self.clone();
        if this.crate_roots.is_empty() {
            if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
                this.crate_roots = crate::resolve::default_roots(Path::new(&dir), None);
            }
        }
        let generated = match this.load() {
            Ok(g) => g,
            Err(e) => {
                if let GenerateError::Invalid {
                    rendered,
                    diagnostics,
                    sources,
                } = &e
                {
                    let _ = write!(err, "{rendered}");
                    let _ = err.flush();
                    let _ = writeln!(out, "cargo::error={}", cargo_summary(diagnostics, sources));
                } else {
                    let _ = writeln!(out, "cargo::error={}", one_line(&e.to_string()));
                }
                return Err(e);
            }
        };
        for p in &self.flows {
            let _ = writeln!(out, "cargo::rerun-if-changed={}", self.resolve(p).display());
        }
        if let Some(n) = &self.nodes {
            let _ = writeln!(out, "cargo::rerun-if-changed={}", self.resolve(n).display());
        }
        for f in &generated.files {
            let _ = writeln!(out, "cargo::rerun-if-changed={}", f.display());
        }
        if let Some(dir) = &generated.migration_dir {
            let _ = writeln!(out, "cargo::rerun-if-changed={}", dir.display());
        }
        for d in generated.diagnostics.warnings() {
            let _ = writeln!(
                out,
                "cargo::warning={}",
                one_line(&located(d, &generated.sources))
            );
        }
        let path = out_dir.join(self.out_file.as_deref().unwrap_or("selinon_flows.rs"));
        let written = write_if_changed(&path, &generated.code());
        if let Err(e) = &written {
            let _ = writeln!(out, "cargo::error={}", one_line(&e.to_string()));
        }
        written.map(|()| path)
    }
}

/// `file:line:col: message` (the message alone when the finding has no place).
fn located(d: &crate::diagnostics::Diagnostic, sources: &SourceMap) -> String {
    match d.span {
        Some(span) => format!("{}: {}", sources.location(span), d.message),
        None => d.message.clone(),
    }
}

/// A cargo instruction holds one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The one line cargo shows for a configuration with errors: how many, the first one, and
/// where the full report is.
fn cargo_summary(diagnostics: &Diagnostics, sources: &SourceMap) -> String {
    let n = diagnostics.error_count();
    let first = diagnostics
        .errors()
        .next()
        .map(|d| located(d, sources))
        .unwrap_or_default();
    let (errors, lead) = if n == 1 {
        ("1 error".to_string(), "")
    } else {
        (format!("{n} errors"), "the first: ")
    };
    one_line(&format!(
        "the Selinon configuration has {errors} ({lead}{first}); the full report is below, \
         under `--- stderr`"
    ))
}

/// Writes `content` unless the file already holds it (so its mtime stays), through a temporary
/// file so a reader never sees half a file.
pub fn write_if_changed(path: &Path, content: &str) -> Result<(), GenerateError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    let err = |source| GenerateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("rs.tmp");
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// SHA-256 over the files' (YAML, output schemas, migrations) display paths and contents, in path
/// order (so the order the files were given in does not matter).
fn content_hash(sources: &SourceMap) -> String {
    let mut files: Vec<(&str, &str)> = sources
        .files()
        .map(|(_, f)| (f.display.as_str(), f.text.as_str()))
        .collect();
    files.sort();
    files.dedup();
    let mut hasher = Sha256::new();
    for (path, text) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", &hex[..16])
}
