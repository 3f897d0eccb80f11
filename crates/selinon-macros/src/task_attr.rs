//! `#[task]`: an `async fn` becomes a Selinon task type.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, ReturnType, Token, Type};

/// The attribute's arguments: `#[task]` or `#[task(name = FetchRelease)]`.
pub struct TaskAttr {
    name: Option<Ident>,
}

impl Parse for TaskAttr {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(TaskAttr { name: None });
        }
        let key: Ident = input.parse()?;
        if key != "name" {
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown argument `{key}` of `#[task]`: the one argument is \
                     `name = TypeName` (the task type the YAML's `classname` names)"
                ),
            ));
        }
        input.parse::<Token![=]>()?;
        let name: Ident = input.parse()?;
        if !input.is_empty() {
            return Err(input.error("`#[task]` takes one argument: `name = TypeName`"));
        }
        Ok(TaskAttr { name: Some(name) })
    }
}

const SIGNATURE: &str = "a task function is `async fn name(ctx: &TaskContext, args: Args) -> \
                         TaskResult<Output>`; `args` or `ctx` may be left out";

/// The task type for a function: a unit struct named after it, implementing `Task` by calling
/// it. The function stays as it is (callable from tests).
pub fn expand(attr: TaskAttr, function: ItemFn) -> syn::Result<TokenStream> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("`#[task]` needs an `async fn`: {SIGNATURE}"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a task function cannot be generic: the YAML names one type per task",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(variadic.span(), SIGNATURE));
    }
    let mut inputs = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    format!("a task function takes no `self`: {SIGNATURE}"),
                ))
            }
            FnArg::Typed(t) => inputs.push(&*t.ty),
        }
    }
    let is_ref = |ty: &Type| matches!(ty, Type::Reference(_));
    let fn_name = &sig.ident;
    let (args_ty, call) = match inputs.as_slice() {
        [] => (quote!(::selinon_runtime::task::AnyArgs), quote!(#fn_name())),
        [ctx] if is_ref(ctx) => (
            quote!(::selinon_runtime::task::AnyArgs),
            quote!(#fn_name(ctx)),
        ),
        [args] => (quote!(#args), quote!(#fn_name(args))),
        [ctx, args] if is_ref(ctx) && !is_ref(args) => (quote!(#args), quote!(#fn_name(ctx, args))),
        [_, args] if is_ref(args) => {
            return Err(syn::Error::new(
                args.span(),
                format!(
                    "task arguments are taken by value (they are decoded from the flow's \
                     JSON for each run): {SIGNATURE}"
                ),
            ))
        }
        [ctx, _] => {
            return Err(syn::Error::new(
                ctx.span(),
                format!("the first parameter is the context, `&TaskContext`: {SIGNATURE}"),
            ))
        }
        _ => {
            return Err(syn::Error::new(
                sig.inputs.span(),
                format!("too many parameters: {SIGNATURE}"),
            ))
        }
    };
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.paren_token.span.close(),
                format!("a task function returns its result: {SIGNATURE}"),
            ))
        }
    };
    let name = attr
        .name
        .unwrap_or_else(|| Ident::new(&upper_camel(&fn_name.to_string()), fn_name.span()));
    let vis = &function.vis;
    let docs = function
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect::<Vec<_>>();
    let generated_doc = format!(" The task type of [`{fn_name}`] (written by `#[task]`).");
    let doc = if docs.is_empty() {
        quote!(#[doc = #generated_doc])
    } else {
        quote!(#(#docs)*)
    };
    // Errors about the future (not `Send`) or the return type point at the signature.
    let span = sig.span();
    let output = quote_spanned!(ret.span()=> <#ret as ::selinon_runtime::task::TaskReturn>::Output);
    let run = quote_spanned! {span=>
        fn run(
            &self,
            ctx: &::selinon_runtime::TaskContext,
            args: Self::Args,
        ) -> impl ::core::future::Future<Output = ::selinon_runtime::TaskResult<Self::Output>>
               + ::core::marker::Send {
            let _ = (&ctx, &args);
            async move { ::selinon_runtime::task::TaskReturn::into_task_result(#call.await) }
        }
    };
    Ok(quote! {
        #function

        #doc
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #name;

        impl ::selinon_runtime::Task for #name {
            type Args = #args_ty;
            type Output = #output;

            #run
        }
    })
}

/// `fetch_release` → `FetchRelease`.
fn upper_camel(name: &str) -> String {
    name.trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
