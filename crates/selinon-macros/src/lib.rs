//! `include_flows!` and `flows!`: compile a Selinon YAML configuration into Rust at build time,
//! from files or from YAML written inline.
//!
//! This crate is thin glue over `selinon-codegen` (the same entry point as build.rs and the
//! `selinon generate` command), so the three front doors cannot drift.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{LitStr, Token};

mod task_attr;

/// Makes an `async fn` a task: writes a unit struct named after the function
/// (`fetch_release` → `FetchRelease`, or `#[task(name = Fetch)]`) that implements
/// `selinon_runtime::Task` by calling it; the YAML's `classname` names that struct. The
/// function takes the context and the task's arguments (any `Deserialize` type, or `Json`),
/// either of which may be left out, and returns `TaskResult<Output>` (any `Serialize` type) or
/// any `Result<Output, E>` whose error converts into a `TaskError`.
///
/// ```
/// use selinon_macros::task;
/// use selinon_runtime::{TaskContext, TaskResult};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// pub struct Package {
///     pub name: String,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// pub struct Release {
///     pub url: String,
/// }
///
/// /// Finds where a package's release is.
/// #[task]
/// pub async fn fetch_release(_ctx: &TaskContext, package: Package) -> TaskResult<Release> {
///     Ok(Release { url: format!("https://example.invalid/{}.tar.gz", package.name) })
/// }
///
/// // `FetchRelease` is the task type; the function stays callable on its own.
/// let _task: FetchRelease = FetchRelease;
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = syn::parse_macro_input!(attr as task_attr::TaskAttr);
    let function = syn::parse_macro_input!(item as syn::ItemFn);
    match task_attr::expand(attr, function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

struct Args {
    paths: Vec<LitStr>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let list = Punctuated::<LitStr, Token![,]>::parse_terminated(input)?;
        Ok(Args {
            paths: list.into_iter().collect(),
        })
    }
}

/// Expands to the generated code of a Selinon configuration.
///
/// ```
/// mod app {
///     pub mod tasks {
///         use selinon_runtime::{Json, Task, TaskContext, TaskResult};
///
///         #[derive(Default)]
///         pub struct Hello;
///
///         impl Task for Hello {
///             type Args = Json;
///             type Output = Json;
///
///             async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
///                 Ok(args)
///             }
///         }
///     }
/// }
///
/// mod flows {
///     // The nodes file, then flow files or directories (here one file holds both).
///     selinon_macros::include_flows!("tests/ui/flows/hello.yml", "tests/ui/flows/hello.yml");
/// }
///
/// fn main() {
///     assert_eq!(flows::SYSTEM.flows[0].name, "hello");
/// }
/// ```
///
/// The first path is the nodes file, the others flow files or directories; paths are relative
/// to the crate's `CARGO_MANIFEST_DIR`. YAML errors become compile errors that name the YAML
/// file, line and column, and the crate is rebuilt when a YAML file, an `output_schema` file or
/// a migration file of `global.migration_dir` changes (a *new* migration file is seen at the
/// next rebuild, e.g. after touching the nodes file; a `build.rs` watches the folder itself).
/// Module paths in the YAML (`import: myapp.tasks`) are taken from the crate root
/// (`crate::myapp::tasks`).
#[proc_macro]
pub fn include_flows(input: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(input as Args);
    match expand(&args) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(args: &Args) -> syn::Result<proc_macro2::TokenStream> {
    let Some((nodes, flows)) = args.paths.split_first() else {
        return Err(syn::Error::new(
            Span::call_site(),
            "include_flows! needs the nodes file and at least one flow file or directory: \
             include_flows!(\"flows/nodes.yml\", \"flows/\")",
        ));
    };
    if flows.is_empty() {
        return Err(syn::Error::new(
            nodes.span(),
            "include_flows! needs at least one flow file or directory after the nodes file",
        ));
    }
    let base = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            "CARGO_MANIFEST_DIR is not set: run through cargo",
        )
    })?;
    let mut builder = selinon_codegen::Builder::new()
        .base_dir(&base)
        .nodes(nodes.value());
    for f in flows {
        builder = builder.flows(f.value());
    }
    generate(builder, nodes.span(), None)
}

/// Expands to the generated code of a Selinon configuration written inline: one YAML
/// document with the nodes file's keys (`tasks`, `flows`, `storages`, `global`) and
/// `flow-definitions`.
///
/// ```
/// mod app {
///     pub mod tasks {
///         use selinon_runtime::{Json, Task, TaskContext, TaskResult};
///
///         #[derive(Default)]
///         pub struct Hello;
///
///         impl Task for Hello {
///             type Args = Json;
///             type Output = Json;
///
///             async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
///                 Ok(args)
///             }
///         }
///     }
/// }
///
/// mod flows {
///     selinon_macros::flows!(
///         r#"
///         tasks:
///           - name: Hello
///             import: app.tasks
///         flows: [hello]
///         flow-definitions:
///           - name: hello
///             edges:
///               - from:
///                 to: Hello
///         "#
///     );
/// }
///
/// fn main() {
///     assert_eq!(flows::SYSTEM.flows[0].name, "hello");
/// }
/// ```
///
/// The YAML may be indented as a whole. Errors and the generated doc comments name the Rust
/// file and the line and column of the YAML in it; relative paths in the YAML
/// (`global.migration_dir`, `output_schema`) are read from the Rust file's folder. Module paths in
/// the YAML are taken from the crate root, as with [`include_flows!`].
#[proc_macro]
pub fn flows(input: TokenStream) -> TokenStream {
    let yaml = syn::parse_macro_input!(input as LitStr);
    match expand_inline(&yaml) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand_inline(yaml: &LitStr) -> syn::Result<proc_macro2::TokenStream> {
    let span = yaml.span().unwrap();
    let cwd = std::env::current_dir().map_err(|e| {
        syn::Error::new(
            yaml.span(),
            format!("cannot read the current directory: {e}"),
        )
    })?;
    // The Rust file holding the YAML (rustdoc's examples have none on disk: their name stands
    // for it).
    let file = span
        .local_file()
        .unwrap_or_else(|| std::path::PathBuf::from(span.file()));
    // Pad the YAML to where it stands in the Rust file, so that every line and column the
    // compiler reports (and every `origin`) is the Rust file's.
    let token = yaml.token().to_string();
    let opening = token.find('"').map_or(1, |i| i + 1);
    let padding = format!(
        "{}{}",
        "\n".repeat(span.line().saturating_sub(1)),
        " ".repeat(span.column().saturating_sub(1) + opening)
    );
    let builder = selinon_codegen::Builder::new()
        .base_dir(&cwd)
        .inline(&file, padding + &yaml.value());
    generate(builder, yaml.span(), Some(cwd.join(&file)))
}

/// Generates through the one codegen entry point; `inline_source` is the Rust file that holds
/// the YAML (not tracked: it is being compiled).
fn generate(
    builder: selinon_codegen::Builder,
    span: Span,
    inline_source: Option<std::path::PathBuf>,
) -> syn::Result<proc_macro2::TokenStream> {
    let mut builder = builder.map_module("", "crate");
    // Missing user items are errors naming the YAML line: look for them in the crate.
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        let calling = span.unwrap().local_file();
        builder = builder.crate_roots(selinon_codegen::resolve::default_roots(
            std::path::Path::new(&dir),
            calling.as_deref(),
        ));
    }
    match builder.generate_tokens() {
        Ok(generated) => {
            let code = generated.tokens();
            // Rebuild when a file read changes (YAML, output schemas, migrations): include
            // every file's bytes.
            let tracked = generated
                .files
                .iter()
                .filter(|p| inline_source.as_deref() != Some(p.as_path()))
                .map(|p| {
                    let p = p.to_string_lossy().into_owned();
                    quote!(
                        const _: &[u8] = include_bytes!(#p);
                    )
                });
            Ok(quote! {
                #(#tracked)*
                #code
            })
        }
        Err(selinon_codegen::GenerateError::Invalid {
            diagnostics,
            sources,
            ..
        }) => {
            // One compile error per YAML error, each naming the YAML file, line and column.
            let mut errors = diagnostics.errors().map(|d| {
                let mut message = d.message.clone();
                if let Some(at) = d.span {
                    message.push_str(&format!("\n --> {}", sources.location(at)));
                }
                if let Some(help) = &d.help {
                    message.push_str(&format!("\n = help: {help}"));
                }
                syn::Error::new(span, message)
            });
            let mut all = errors
                .next()
                .unwrap_or_else(|| syn::Error::new(span, "the Selinon configuration has errors"));
            errors.for_each(|e| all.combine(e));
            Err(all)
        }
        Err(err) => Err(syn::Error::new(span, err.to_string())),
    }
}
