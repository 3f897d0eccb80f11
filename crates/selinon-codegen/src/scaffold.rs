//! Stubs for every user item a configuration names: task types, user storages, custom
//! predicates, `foreach` functions, selective run functions and trace callbacks.
//!
//! `selinon new` writes them as the starting point of a project, and the tests compile every
//! corpus configuration against them. The stubs are a module tree mirroring the YAML module
//! paths (`myapp.tasks` → `pub mod myapp { pub mod tasks { … } }`), to be placed where the
//! generated code's module mapping points.

use std::collections::BTreeMap;

use proc_macro2::TokenStream;
use quote::quote;

use crate::emit::{snake, upper_camel};
use crate::ir::{Condition, Import, System, TraceSink};

#[derive(Default)]
struct Module {
    items: BTreeMap<String, TokenStream>,
    children: BTreeMap<String, Module>,
}

impl Module {
    fn at(&mut self, path: &str) -> &mut Module {
        path.split('.').fold(self, |m, seg| {
            m.children.entry(seg.to_string()).or_default()
        })
    }

    fn tokens(&self) -> TokenStream {
        let items = self.items.values();
        let children = self.children.iter().map(|(name, m)| {
            let ident = crate::emit::ident_for(name);
            let inner = m.tokens();
            quote! {
                pub mod #ident {
                    #[allow(unused_imports)]
                    use selinon_runtime::{json, Db, Json, Task, TaskContext, TaskResult};
                    #inner
                }
            }
        });
        quote!(#(#items)* #(#children)*)
    }
}

fn doc(text: String) -> TokenStream {
    let text = format!(" {text}");
    quote!(#[doc = #text])
}

/// The stub module tree as formatted Rust source.
pub fn stubs(system: &System) -> String {
    render(system, None)
}

/// Stubs whose bodies call functions of a harness module (a Rust path such as
/// `crate::harness`) instead of doing nothing, for tests that run generated code with scripted
/// behaviour (the differential tests against the simulator). The harness provides:
///
/// - `fn task(ctx: &TaskContext, node_args: &Json) -> TaskResult` for every task type (the
///   YAML task is `ctx.task_name`; several tasks may share one type);
/// - `fn foreach(name: &str, db: &Db<'_>, node_args: &Json) -> Vec<Json>`, `name` being the
///   `foreach` function's name;
/// - `fn predicate(name: &str, message: Option<&Json>, node_args: &Json, args: &Json) -> bool`
///   for custom predicates.
///
/// Selective run functions return `None` and trace functions do nothing, as in [`stubs`].
pub fn harness_stubs(system: &System, harness: &str) -> String {
    let path: syn::Path = syn::parse_str(harness).expect("the harness is a Rust path");
    render(system, Some(&path))
}

fn render(system: &System, harness: Option<&syn::Path>) -> String {
    let mut root = Module::default();
    for task in &system.tasks {
        let name = upper_camel(&task.class.name);
        let ty = crate::emit::ident_for(&name);
        let d = doc(format!(
            "Runs task `{}` ({}): replace the body with the task's work.",
            task.name, task.origin
        ));
        let run = match harness {
            None => quote! {
                async fn run(&self, _ctx: &TaskContext, _node_args: Json) -> TaskResult {
                    // `{}`, as `selinon simulate` returns for tasks a scenario does not name.
                    Ok(json!({}))
                }
            },
            Some(h) => quote! {
                async fn run(&self, ctx: &TaskContext, node_args: Json) -> TaskResult {
                    #h::task(ctx, &node_args)
                }
            },
        };
        root.at(&task.class.module)
            .items
            .entry(format!("task {name}"))
            .or_insert_with(|| {
                quote! {
                    #d
                    #[derive(Default)]
                    pub struct #ty;

                    impl Task for #ty {
                        type Args = Json;
                        type Output = Json;

                        #run
                    }
                }
            });
    }
    for storage in &system.storages {
        if storage.class.module == "selinon.storages"
            || storage.class.module.starts_with("selinon.storages.")
        {
            continue;
        }
        let name = upper_camel(&storage.class.name);
        let ty = crate::emit::ident_for(&name);
        let d = doc(format!(
            "Storage `{}` ({}): an in-memory stand-in; replace it with the real adapter.",
            storage.name, storage.origin
        ));
        root.at(&storage.class.module)
            .items
            .entry(format!("storage {name}"))
            .or_insert_with(|| {
                quote! {
                    #d
                    pub type #ty = selinon_runtime::storage::InMemoryStorage;
                }
            });
    }
    let mut add_fn = |import: &Import, item: TokenStream| {
        root.at(&import.module)
            .items
            .entry(format!("fn {}", snake(&import.name)))
            .or_insert(item);
    };
    for flow in &system.flows {
        for edge in &flow.edges {
            if let Some(fe) = &edge.foreach {
                let f = crate::emit::ident_for(&snake(&fe.function.name));
                let d = doc(format!(
                    "`foreach` of edge #{} of flow `{}` ({}): the items to start the edge's nodes for.",
                    edge.index, flow.name, edge.origin
                ));
                let name = &fe.function.name;
                let item = match harness {
                    None => quote! {
                        #d
                        pub fn #f(_db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
                            Vec::new()
                        }
                    },
                    Some(h) => quote! {
                        #d
                        pub fn #f(db: &Db<'_>, node_args: &Json) -> Vec<Json> {
                            #h::foreach(#name, db, node_args)
                        }
                    },
                };
                add_fn(&fe.function, item);
            }
            let failure_conditions = flow
                .failures
                .iter()
                .flat_map(|s| s.alternatives.iter().map(|a| &a.condition));
            for cond in std::iter::once(&edge.condition).chain(failure_conditions) {
                custom_predicates(cond, harness, &mut add_fn);
            }
        }
    }
    for task in &system.tasks {
        if let Some(f) = &task.selective_run_function {
            let name = crate::emit::ident_for(&snake(&f.name));
            let d = doc(format!(
                "Selective run function of task `{}` ({}).",
                task.name, task.origin
            ));
            add_fn(
                f,
                quote! {
                    #d
                    pub fn #name(_input: &selinon_runtime::spec::SelectiveRunInput<'_>) -> Option<String> {
                        None
                    }
                },
            );
        }
    }
    for sink in &system.trace {
        if let TraceSink::Function(f) = sink {
            let name = crate::emit::ident_for(&snake(&f.name));
            add_fn(
                f,
                quote! {
                    /// Receives every trace event.
                    pub fn #name(_event: &str, _details: &Json) {}
                },
            );
        }
    }
    let tokens = root.tokens();
    let file: syn::File = syn::parse2(tokens).expect("stubs are valid Rust");
    crate::emit::space_items(&prettyplease::unparse(&file))
}

fn custom_predicates(
    cond: &Condition,
    harness: Option<&syn::Path>,
    add: &mut impl FnMut(&Import, TokenStream),
) {
    for p in cond.predicates() {
        if p.builtin {
            continue;
        }
        let import = Import {
            module: p.module.clone(),
            name: p.name.clone(),
        };
        let f = crate::emit::ident_for(&snake(&p.name));
        let d = doc(format!("Custom predicate `{}` ({}).", p.name, p.origin));
        let name = &p.name;
        let item = match harness {
            None => quote! {
                #d
                pub fn #f(_message: Option<&Json>, _node_args: &Json, _args: &Json) -> bool {
                    true
                }
            },
            Some(h) => quote! {
                #d
                pub fn #f(message: Option<&Json>, node_args: &Json, args: &Json) -> bool {
                    #h::predicate(#name, message, node_args, args)
                }
            },
        };
        add(&import, item);
    }
}

/// What `selinon new` needs to know.
#[derive(Clone, Debug)]
pub struct NewProject {
    /// The directory to create (it must not exist, or be empty).
    pub dir: std::path::PathBuf,
    /// The nodes file to copy into the project's `config/` folder.
    pub nodes: std::path::PathBuf,
    /// The flow files or folders to copy into `config/` (the nodes file may be listed too when it
    /// holds the flows).
    pub flows: Vec<std::path::PathBuf>,
    /// Path dependencies on this local checkout of the repository. Without it: the sources this
    /// crate was built from ([`built_from`]) when they are still there, else the repository
    /// as a git dependency.
    pub selinon_path: Option<std::path::PathBuf>,
}

/// Why a project could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum NewProjectError {
    /// The configuration could not be loaded, has errors, or its code could not be generated.
    #[error(transparent)]
    Config(#[from] crate::GenerateError),
    /// The directory exists and is not empty.
    #[error("{0} exists and is not empty: choose a new directory")]
    NotEmpty(std::path::PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Creates a ready cargo project from an existing configuration: the YAML copied under
/// `config/`, a `build.rs` generating the code, one stub per user item in `src/app.rs`, and a
/// `main` that runs a flow on the in-process runtime. Returns the files written.
pub fn new_project(p: &NewProject) -> Result<Vec<std::path::PathBuf>, NewProjectError> {
    use std::path::Path;
    let mut builder = crate::Builder::new().nodes(&p.nodes);
    for f in &p.flows {
        builder = builder.flows(f);
    }
    builder.load()?;
    if p.dir.exists()
        && std::fs::read_dir(&p.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(NewProjectError::NotEmpty(p.dir.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewProjectError::Io { path, source }
    };
    let mut written = Vec::new();
    let mut write = |rel: &str, text: &str| -> Result<(), NewProjectError> {
        let path = p.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
        Ok(())
    };

    // The YAML, under config/: the nodes file, then flow files and directories by name.
    let file_name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let nodes_rel = format!("config/{}", file_name(&p.nodes));
    let read = |path: &Path| std::fs::read_to_string(path).map_err(io(path));
    write(&nodes_rel, &read(&p.nodes)?)?;
    let mut flow_rels = Vec::new();
    let same = |a: &Path, b: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok();
    for f in &p.flows {
        if f.is_dir() {
            let rel = format!("config/{}", file_name(f));
            let mut diags = crate::Diagnostics::default();
            for file in crate::config::expand_flow_path(f, &mut diags) {
                let inner = file.strip_prefix(f).unwrap_or(&file);
                let target = format!("{rel}/{}", inner.to_string_lossy().replace('\\', "/"));
                if !same(&file, &p.nodes) {
                    write(&target, &read(&file)?)?;
                }
            }
            flow_rels.push(rel);
        } else if same(f, &p.nodes) {
            flow_rels.push(nodes_rel.clone());
        } else {
            let rel = format!("config/{}", file_name(f));
            write(&rel, &read(f)?)?;
            flow_rels.push(rel);
        }
    }

    let name = file_name(&p.dir)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>();
    let source = match &p.selinon_path {
        Some(root) => Dependency::Path {
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()),
            given: true,
        },
        None => match built_from() {
            Some(root) => Dependency::Path { root, given: false },
            None => Dependency::Git,
        },
    };
    let flows_calls: String = flow_rels
        .iter()
        .map(|f| format!("\n        .flows({f:?})"))
        .collect();
    write(
        "build.rs",
        &format!(
            "//! Compiles the Selinon configuration under `config/` into `OUT_DIR/selinon_flows.rs`.\n\n\
             fn main() {{\n    let generated = selinon_codegen::Builder::new()\n        .nodes({nodes_rel:?}){flows_calls}\n        \
             // YAML modules (`import: myapp.tasks`) live under `src/app.rs` (`crate::app::myapp::tasks`).\n        \
             .map_module(\"\", \"crate::app\")\n        .generate();\n    \
             // On errors, `generate` has printed the report (cargo shows it under `--- stderr`)\n    \
             // and one `cargo::error` line: failing is all that is left to do.\n    \
             if generated.is_err() {{\n        std::process::exit(1);\n    }}\n}}\n"
        ),
    )?;
    write("src/main.rs", MAIN_RS)?;
    // Load the copy, so the stubs name their YAML definitions as `config/...:line`.
    let mut copied = crate::Builder::new().base_dir(&p.dir).nodes(&nodes_rel);
    for f in &flow_rels {
        copied = copied.flows(f);
    }
    let generated = copied.load()?;
    // The runtime features the configuration's built-in storages need (Redis, PostgreSQL, S3).
    let features: std::collections::BTreeSet<&str> = generated
        .system
        .storages
        .iter()
        .filter_map(crate::emit::storage_feature)
        .collect();
    let runtime_features = if features.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = features.iter().map(|f| format!("{f:?}")).collect();
        format!(", features = [{}]", list.join(", "))
    };
    write(
        "Cargo.toml",
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\n{}{}\nserde_json = \"1\"\ntokio = {{ version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }}\n\n\
             [build-dependencies]\n{}\n\n# A project of its own, even inside another workspace.\n[workspace]\n",
            source.comment(),
            source.line("selinon-runtime", &runtime_features),
            source.line("selinon-codegen", ""),
        ),
    )?;
    // With the sources `selinon` was built from, their lock file: the versions of every
    // dependency that Selinon was built and tested with (and a build that needs no download
    // when they were built before). Cargo drops what the project does not use.
    if let Dependency::Path { root, .. } = &source {
        if let Ok(lock) = std::fs::read_to_string(root.join("Cargo.lock")) {
            write("Cargo.lock", &lock)?;
        }
    }
    write(
        "src/app.rs",
        &format!(
            "//! The code the configuration names: one stub per task, storage and function. Each\n\
             //! names its YAML definition; replace the bodies with the real work.\n\n{}",
            stubs(&generated.system)
        ),
    )?;
    write(".gitignore", "/target\n")?;
    Ok(written)
}

/// Where the scaffold's `selinon-runtime` and `selinon-codegen` come from.
enum Dependency {
    /// A local copy of this repository: `--selinon-path`, or the sources `selinon` was built from.
    Path {
        root: std::path::PathBuf,
        given: bool,
    },
    /// The project's git repository (the crates are not on crates.io).
    Git,
}

impl Dependency {
    /// The comment above the dependencies, saying where they come from and how to change it.
    fn comment(&self) -> String {
        match self {
            Dependency::Path { given: true, .. } => {
                "# Selinon for Rust from a local checkout (`selinon new --selinon-path`).\n".into()
            }
            Dependency::Path { root, given: false } => format!(
                "# Selinon for Rust from the sources the `selinon` command was built from\n\
                 # ({}). If they move, point `path` at another checkout, or use the\n\
                 # repository: `selinon-runtime = {{ git = \"{REPOSITORY}\" }}` (same for\n\
                 # selinon-codegen below).\n",
                root.display()
            ),
            Dependency::Git => format!(
                "# Selinon for Rust from its repository (the crates are not on crates.io). For a\n\
                 # local checkout use `path = \"CHECKOUT/crates/selinon-runtime\"` instead (and\n\
                 # the same for selinon-codegen below), or `selinon new --selinon-path CHECKOUT`.\n\
                 # Version {}.\n",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }

    fn line(&self, krate: &str, extra: &str) -> String {
        match self {
            Dependency::Path { root, .. } => format!(
                "{krate} = {{ path = {:?}{extra} }}",
                root.join("crates").join(krate).to_string_lossy()
            ),
            Dependency::Git => format!("{krate} = {{ git = {REPOSITORY:?}{extra} }}"),
        }
    }
}

/// The project's repository, for the git dependencies of a scaffold.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The root of the sources this crate was built from, when they are still there (a `selinon`
/// installed with `cargo install --path` or `--git` keeps them); `None` for a copy from a
/// package registry (no workspace around it) or when they were removed.
pub fn built_from() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = std::fs::canonicalize(root).ok()?;
    let is_ours = ["selinon-runtime", "selinon-codegen"]
        .iter()
        .all(|k| root.join("crates").join(k).join("Cargo.toml").is_file());
    is_ours.then_some(root)
}

const MAIN_RS: &str = r#"//! Runs a flow of the configuration on the in-process runtime:
//! `cargo run -- FLOW '{"json": "args"}'` prints the flow's final state and exits 0 when the
//! flow finished, 1 when it failed (after saying why each failed node failed).

mod app;

mod flows {
    include!(concat!(env!("OUT_DIR"), "/selinon_flows.rs"));
}

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Log lines on stderr (`RUST_LOG`, default `info`): why tasks fail, and every trace event
    // when `global.trace` names `logging`.
    selinon_runtime::logging::init();
    let mut args = std::env::args().skip(1);
    let flow_names: Vec<&str> = flows::SYSTEM.flows.iter().map(|f| f.name).collect();
    let Some(flow) = args.next() else {
        eprintln!("usage: cargo run -- FLOW ['{{\"json\": \"args\"}}']\nflows: {}", flow_names.join(", "));
        return ExitCode::from(2);
    };
    let node_args = match args.next() {
        None => serde_json::Value::Null,
        Some(text) => match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(err) => {
                eprintln!("the flow arguments are not JSON: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
    match runtime.run_flow_by_name(&flow, node_args).await {
        Ok(outcome) => {
            println!("{}", serde_json::to_string_pretty(&outcome).unwrap_or_default());
            if outcome.is_finished() {
                ExitCode::SUCCESS
            } else {
                eprintln!("flow {} failed: {}", outcome.flow_name, outcome.failures());
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::Dependency;

    #[test]
    fn without_the_sources_the_dependencies_are_git_ones_with_a_comment() {
        let git = Dependency::Git;
        assert_eq!(
            git.line("selinon-runtime", ", features = [\"redis\"]"),
            format!(
                "selinon-runtime = {{ git = \"{}\", features = [\"redis\"] }}",
                env!("CARGO_PKG_REPOSITORY")
            )
        );
        assert!(git.comment().contains("not on crates.io"));
        assert!(git.comment().lines().all(|l| l.starts_with("# ")));
        // This crate is built from the repository: the sources are found.
        let root = super::built_from().expect("built from the repository");
        let path = Dependency::Path {
            root: root.clone(),
            given: false,
        };
        assert!(path.comment().contains(&root.display().to_string()));
        assert!(path.comment().lines().all(|l| l.starts_with("# ")));
        assert!(path
            .line("selinon-codegen", "")
            .contains("/crates/selinon-codegen\""));
    }
}
