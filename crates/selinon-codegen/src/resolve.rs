//! Finds the user items the YAML names (task and storage types, `foreach` and selective run
//! functions) in the crate's sources, so that a missing one is an error naming the YAML line
//! instead of rustc's "cannot find type" pointing into generated code.
//!
//! The search reads the crate the way rustc lays modules out (`mod a;` → `a.rs` or
//! `a/mod.rs`, `#[path]`, inline modules) and is conservative: anything it cannot see through
//! (a glob `use`, an item macro, a module it cannot read, a path outside the crate) counts as
//! found; a root that lacks the module has no say (it may not be the crate's root: the file of
//! a doc test, a module file). It reports an item missing when a candidate crate root has the
//! module and not the item, and no other root has it or cannot tell.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::config::model::{Condition, ConditionKind, Config, Name};
use crate::diagnostics::Span;
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::emit::{snake, upper_camel, EmitOptions};

/// What kind of item a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Type,
    Fn,
}

/// The answer of one crate root.
#[derive(Debug, PartialEq)]
enum Lookup {
    Found,
    /// Cannot tell (macros, globs, unreadable files).
    Unknown,
    /// The root has no such module: it may not be the crate's root (the file holding a doc
    /// test, a module file), so it has no say.
    NoModule,
    /// Definitely not there: where it looked and what is there.
    Missing {
        module: String,
        file: PathBuf,
        known: Vec<String>,
    },
}

/// The crate roots to search: the Rust file holding an inline configuration or the
/// `include_flows!` call, and the package's usual roots.
pub fn default_roots(manifest_dir: &Path, calling_file: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = calling_file.map(Path::to_path_buf).into_iter().collect();
    for rel in ["src/lib.rs", "src/main.rs"] {
        roots.push(manifest_dir.join(rel));
    }
    for dir in ["src/bin", "examples", "tests", "benches", ""] {
        if let Ok(entries) = std::fs::read_dir(manifest_dir.join(dir)) {
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect();
            files.sort();
            roots.extend(files);
        }
    }
    roots.retain(|p| p.is_file() && !p.ends_with("build.rs"));
    // The calling file may also be one of the usual roots: keep its first place only.
    let mut seen = std::collections::HashSet::new();
    roots.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    roots
}

/// One error per user item the YAML names that no crate root has.
pub fn check(config: &Config, options: &EmitOptions, roots: &[PathBuf]) -> Vec<Diagnostic> {
    let mut sources = Sources::default();
    let mut out = Vec::new();
    if roots.is_empty() {
        return out;
    }
    let mut seen = std::collections::HashSet::new();
    let mut check = |what: String, import: &Name, at: Span, name: &str, kind: Kind, hint: &str| {
        let module = options
            .module_path(import.as_str())
            .to_string()
            .replace(' ', "");
        let item = match kind {
            Kind::Type => upper_camel(name),
            Kind::Fn => snake(name),
        };
        if !seen.insert((module.clone(), item.clone(), kind)) {
            return;
        }
        let Some(rest) = module.strip_prefix("crate") else {
            return; // another crate's item: rustc reports it
        };
        let segments: Vec<&str> = rest.split("::").filter(|s| !s.is_empty()).collect();
        let mut missing = None;
        for root in roots {
            match sources.lookup(root, &segments, &item, kind) {
                Lookup::Found | Lookup::Unknown => return,
                Lookup::NoModule => {}
                m @ Lookup::Missing { .. } => {
                    missing.get_or_insert(m);
                }
            }
        }
        if let Some(Lookup::Missing {
            module: found_module,
            file,
            known,
        }) = missing
        {
            let there = did_you_mean(&item, known.iter().map(String::as_str));
            let message = format!(
                "{what} names `{module}::{item}`, which does not exist: {found_module} ({}) has \
                 no {} `{item}`{}",
                file.display(),
                match kind {
                    Kind::Type => "type",
                    Kind::Fn => "function",
                },
                if there.is_empty() {
                    String::new()
                } else {
                    format!("; {there}")
                }
            );
            out.push(Diagnostic::error(at, message).with_help(hint.to_string()));
        }
    };
    for task in &config.tasks {
        check(
            format!("task `{}`", task.name.as_str()),
            &task.import,
            task.import.span,
            task.classname(),
            Kind::Type,
            "write the task there (an `async fn` with `#[task]`, or a type implementing \
             `selinon_runtime::Task`), or fix the task's `import` / `classname`",
        );
        if let Some(f) = &task.selective_run_function {
            check(
                format!(
                    "the selective run function of task `{}`",
                    task.name.as_str()
                ),
                &f.import,
                f.import.span,
                f.name.as_str(),
                Kind::Fn,
                "write the function there, or fix `selective_run_function`'s `import` / `name`",
            );
        }
    }
    for storage in &config.storages {
        let module = storage.import.as_str();
        if module == "selinon.storages" || module.starts_with("selinon.storages.") {
            continue;
        }
        check(
            format!("storage `{}`", storage.name.as_str()),
            &storage.import,
            storage.import.span,
            storage.classname(),
            Kind::Type,
            "write the storage type there (implementing `selinon_runtime::DataStorage` and \
             `StorageFromConfig`), or fix the storage's `import` / `classname`",
        );
    }
    for flow in &config.flows {
        for edge in &flow.edges {
            if let Some(f) = &edge.foreach {
                check(
                    format!("the `foreach` of an edge of flow `{}`", flow.name.as_str()),
                    &f.import,
                    f.import.span,
                    f.function.as_str(),
                    Kind::Fn,
                    "write the function there, or fix the `foreach`'s `import` / `function`",
                );
            }
        }
    }
    // User predicates (names that are not built-ins) live in `global.predicates_module`.
    if let Some(module) = &config.global.predicates_module {
        let mut predicates = Vec::new();
        for flow in &config.flows {
            let conditions = flow
                .edges
                .iter()
                .filter_map(|e| e.condition.as_ref())
                .chain(flow.failures.iter().filter_map(|f| f.condition.as_ref()));
            for condition in conditions {
                user_predicates(condition, &mut predicates);
            }
        }
        for name in predicates {
            check(
                format!("the condition predicate `{}`", name.as_str()),
                module,
                name.span,
                name.as_str(),
                Kind::Fn,
                "write `fn(Option<&Json>, &Json, &Json) -> bool` there (result, flow arguments, \
                 `args`), or fix the predicate's name or `global.predicates_module`",
            );
        }
    }
    out
}

/// The predicates of a condition that are not built-ins, in order.
fn user_predicates<'a>(condition: &'a Condition, out: &mut Vec<&'a Name>) {
    match &condition.kind {
        ConditionKind::Predicate { name, .. } => {
            if selinon_runtime::predicates::builtin(name.as_str()).is_none() {
                out.push(name);
            }
        }
        ConditionKind::And(all) | ConditionKind::Or(all) => {
            for c in all {
                user_predicates(c, out);
            }
        }
        ConditionKind::Not(inner) => user_predicates(inner, out),
    }
}

/// Parsed source files, read once.
#[derive(Default)]
struct Sources {
    files: HashMap<PathBuf, Option<Rc<[syn::Item]>>>,
}

/// Where a module's items are, and where its child modules' files are.
struct Module<'a> {
    items: &'a [syn::Item],
    file: &'a Path,
    /// The folder `mod child;` looks in.
    dir: &'a Path,
    /// Inside an inline `mod m { … }` (child files are not looked for).
    inline: bool,
}

impl Sources {
    /// The items of a source file, parsed once.
    fn parse(&mut self, path: &Path) -> Option<Rc<[syn::Item]>> {
        self.files
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(path).ok()?;
                Some(syn::parse_file(&text).ok()?.items.into())
            })
            .clone()
    }

    fn lookup(&mut self, root: &Path, segments: &[&str], item: &str, kind: Kind) -> Lookup {
        let Some(mut items) = self.parse(root) else {
            return Lookup::Unknown;
        };
        let mut current_file = root.to_path_buf();
        let mut current_dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut inline = false;
        for seg in segments {
            let module = Module {
                items: &items,
                file: &current_file,
                dir: &current_dir,
                inline,
            };
            match find_module(&module, seg) {
                Step::Unknown => return Lookup::Unknown,
                Step::Missing => return Lookup::NoModule,
                Step::Inline(inner) => {
                    items = inner.into();
                    current_dir = current_dir.join(seg);
                    inline = true;
                }
                Step::File(path) => {
                    let Some(parsed) = self.parse(&path) else {
                        return Lookup::Unknown;
                    };
                    let is_mod_rs = path.file_name().is_some_and(|n| n == "mod.rs");
                    current_dir = if is_mod_rs {
                        path.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        path.with_extension("")
                    };
                    current_file = path;
                    items = parsed;
                    inline = false;
                }
            }
        }
        match find_item(&items, item, kind) {
            Found::Yes => Lookup::Found,
            Found::Unknown => Lookup::Unknown,
            Found::No(known) => Lookup::Missing {
                module: format!("module `crate::{}`", segments.join("::")),
                file: current_file,
                known,
            },
        }
    }
}

enum Step {
    Inline(Vec<syn::Item>),
    File(PathBuf),
    Missing,
    Unknown,
}

fn find_module(module: &Module<'_>, name: &str) -> Step {
    let mut opaque = false;
    for item in module.items {
        match item {
            syn::Item::Mod(m) if m.ident == name => {
                if let Some((_, inner)) = &m.content {
                    return Step::Inline(inner.clone());
                }
                if module.inline {
                    return Step::Unknown;
                }
                if let Some(path) = path_attr(&m.attrs) {
                    let base = module.file.parent().unwrap_or(Path::new(""));
                    return Step::File(base.join(path));
                }
                let flat = module.dir.join(format!("{name}.rs"));
                if flat.is_file() {
                    return Step::File(flat);
                }
                let nested = module.dir.join(name).join("mod.rs");
                if nested.is_file() {
                    return Step::File(nested);
                }
                return Step::Unknown;
            }
            syn::Item::Use(u) if use_names(&u.tree, name) => return Step::Unknown,
            syn::Item::Macro(_) => opaque = true,
            syn::Item::Use(u) if has_glob(&u.tree) => opaque = true,
            _ => {}
        }
    }
    if opaque {
        Step::Unknown
    } else {
        Step::Missing
    }
}

enum Found {
    Yes,
    Unknown,
    /// Not there; the names of items of that kind that are.
    No(Vec<String>),
}

fn find_item(items: &[syn::Item], name: &str, kind: Kind) -> Found {
    let mut known = Vec::new();
    let mut opaque = false;
    for item in items {
        let (ident, is_kind) = match item {
            syn::Item::Struct(s) => (s.ident.to_string(), kind == Kind::Type),
            syn::Item::Enum(e) => (e.ident.to_string(), kind == Kind::Type),
            syn::Item::Type(t) => (t.ident.to_string(), kind == Kind::Type),
            syn::Item::Union(u) => (u.ident.to_string(), kind == Kind::Type),
            syn::Item::Fn(f) => {
                // `#[task]` (or any attribute macro) may write a type named after the function.
                let attributed = f.attrs.iter().any(|a| !is_inert(a));
                if kind == Kind::Type && attributed {
                    if task_type_name(f) == name {
                        return Found::Yes;
                    }
                    if f.attrs.iter().any(|a| !is_inert(a) && !is_task_attr(a)) {
                        opaque = true;
                    }
                    known.push(task_type_name(f));
                    continue;
                }
                (f.sig.ident.to_string(), kind == Kind::Fn)
            }
            syn::Item::Use(u) => {
                if use_names(&u.tree, name) {
                    return Found::Yes;
                }
                if has_glob(&u.tree) {
                    opaque = true;
                }
                continue;
            }
            syn::Item::Macro(_) => {
                opaque = true;
                continue;
            }
            _ => continue,
        };
        if ident == name && is_kind {
            return Found::Yes;
        }
        if is_kind {
            known.push(ident);
        }
    }
    if opaque {
        Found::Unknown
    } else {
        Found::No(known)
    }
}

/// Attributes that write no code: docs, lints, `cfg`, `derive`-free markers.
fn is_inert(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    [
        "doc",
        "allow",
        "warn",
        "deny",
        "expect",
        "cfg",
        "cfg_attr",
        "inline",
        "must_use",
        "cold",
        "track_caller",
        "deprecated",
        "rustfmt",
        "clippy",
    ]
    .iter()
    .any(|n| path.is_ident(n))
        || path
            .segments
            .first()
            .is_some_and(|s| s.ident == "rustfmt" || s.ident == "clippy")
}

fn is_task_attr(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "task")
}

/// The type `#[task]` writes for a function: `#[task(name = X)]`, else the function's name in
/// `UpperCamelCase`.
fn task_type_name(f: &syn::ItemFn) -> String {
    for attr in f.attrs.iter().filter(|a| is_task_attr(a)) {
        let mut name = None;
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let ident: syn::Ident = meta.value()?.parse()?;
                name = Some(ident.to_string());
            }
            Ok(())
        });
        if let Some(name) = name {
            return name;
        }
    }
    upper_camel(f.sig.ident.to_string().trim_start_matches("r#"))
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.path().is_ident("path"))
        .and_then(|a| {
            let syn::Meta::NameValue(nv) = &a.meta else {
                return None;
            };
            match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            }
        })
}

/// Whether a `use` brings `name` into the module.
fn use_names(tree: &syn::UseTree, name: &str) -> bool {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, name),
        syn::UseTree::Name(n) => n.ident == name,
        syn::UseTree::Rename(r) => r.rename == name,
        syn::UseTree::Glob(_) => false,
        syn::UseTree::Group(g) => g.items.iter().any(|t| use_names(t, name)),
    }
}

fn has_glob(tree: &syn::UseTree) -> bool {
    match tree {
        syn::UseTree::Path(p) => has_glob(&p.tree),
        syn::UseTree::Glob(_) => true,
        syn::UseTree::Group(g) => g.items.iter().any(has_glob),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn finds_items_through_files_paths_inline_modules_and_task_functions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "src/main.rs",
            "mod app; #[path = \"other/place.rs\"] mod moved; mod inline { pub fn f() {} }",
        );
        write(
            d,
            "src/app/mod.rs",
            "pub mod tasks; pub use crate::moved::Reexported;",
        );
        write(
            d,
            "src/app/tasks.rs",
            "pub struct Fetch; #[task] pub async fn write_report() {} \
             #[selinon_macros::task(name = Named)] async fn other() {} pub fn items() {}",
        );
        write(d, "src/other/place.rs", "pub type Reexported = u8;");
        let roots = [d.join("src/main.rs")];
        let mut s = Sources::default();
        let mut find =
            |segments: &[&str], item: &str, kind| s.lookup(&roots[0], segments, item, kind);
        assert_eq!(find(&["app", "tasks"], "Fetch", Kind::Type), Lookup::Found);
        assert_eq!(
            find(&["app", "tasks"], "WriteReport", Kind::Type),
            Lookup::Found
        );
        assert_eq!(find(&["app", "tasks"], "Named", Kind::Type), Lookup::Found);
        assert_eq!(find(&["app", "tasks"], "items", Kind::Fn), Lookup::Found);
        assert_eq!(find(&["app"], "Reexported", Kind::Type), Lookup::Found);
        assert_eq!(find(&["moved"], "Reexported", Kind::Type), Lookup::Found);
        assert_eq!(find(&["inline"], "f", Kind::Fn), Lookup::Found);
        match find(&["app", "tasks"], "Fetc", Kind::Type) {
            Lookup::Missing { known, file, .. } => {
                assert!(known.contains(&"Fetch".to_string()), "{known:?}");
                assert!(file.ends_with("src/app/tasks.rs"), "{}", file.display());
            }
            other => panic!("{other:?}"),
        }
        // A root without the module may not be the crate's root: it has no say.
        assert_eq!(find(&["nope"], "X", Kind::Type), Lookup::NoModule);
    }

    #[test]
    fn what_it_cannot_see_through_counts_as_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "src/lib.rs",
            "pub mod globbed; pub mod macros; pub mod attributed; \
             #[path = concat!(env!(\"OUT_DIR\"), \"/x.rs\")] pub mod generated;",
        );
        write(d, "src/globbed.rs", "pub use other::*;");
        write(d, "src/macros.rs", "make_tasks!(A, B);");
        write(
            d,
            "src/attributed.rs",
            "#[my_macro] pub async fn thing() {}",
        );
        let root = d.join("src/lib.rs");
        let mut s = Sources::default();
        for (module, item) in [
            ("globbed", "Any"),
            ("macros", "A"),
            ("attributed", "Thing2"),
            ("generated", "X"),
        ] {
            assert_eq!(
                s.lookup(&root, &[module], item, Kind::Type),
                Lookup::Unknown,
                "{module}::{item}"
            );
        }
    }
}
