//! `include_flows!`: compiles a Selinon YAML configuration into Rust at build time.
//!
//! This crate is thin glue over `selinon-codegen` (the same entry point as build.rs and the
//! `selinon generate` command), so the three front doors cannot drift.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{LitStr, Token};

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
/// file, line and column, and the crate is rebuilt when a YAML file changes. Module paths in
/// the YAML (`import: myapp.tasks`) are taken from the crate root (`crate::myapp::tasks`).
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
        .nodes(nodes.value())
        .map_module("", "crate");
    for f in flows {
        builder = builder.flows(f.value());
    }
    match builder.generate_tokens() {
        Ok(generated) => {
            let code = generated.tokens();
            // Rebuild when a YAML file changes: include every file's bytes.
            let tracked = generated.files.iter().map(|p| {
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
                if let Some(span) = d.span {
                    message.push_str(&format!("\n --> {}", sources.location(span)));
                }
                if let Some(help) = &d.help {
                    message.push_str(&format!("\n = help: {help}"));
                }
                syn::Error::new(nodes.span(), message)
            });
            let mut all = errors.next().unwrap_or_else(|| {
                syn::Error::new(nodes.span(), "the Selinon configuration has errors")
            });
            errors.for_each(|e| all.combine(e));
            Err(all)
        }
        Err(err) => Err(syn::Error::new(nodes.span(), err.to_string())),
    }
}
