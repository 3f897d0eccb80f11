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
    let mut root = Module::default();
    for task in &system.tasks {
        let name = upper_camel(&task.class.name);
        let ty = crate::emit::ident_for(&name);
        let d = doc(format!(
            "Runs task `{}` ({}): replace the body with the task's work.",
            task.name, task.origin
        ));
        root.at(&task.class.module)
            .items
            .entry(format!("task {name}"))
            .or_insert_with(|| {
                quote! {
                    #d
                    #[derive(Default)]
                    pub struct #ty;

                    impl Task for #ty {
                        async fn run(&self, _ctx: &TaskContext, node_args: Json) -> TaskResult {
                            Ok(json!({ "task": #name, "node_args": node_args }))
                        }
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
        root.at(&storage.class.module).items.entry(format!("storage {name}")).or_insert_with(|| {
            quote! {
                #d
                #[derive(Default)]
                pub struct #ty {
                    records: std::sync::Mutex<std::collections::HashMap<String, Json>>,
                }

                impl selinon_runtime::StorageFromConfig for #ty {
                    fn from_config(_configuration: &Json) -> Result<Self, selinon_runtime::StorageError> {
                        Ok(Self::default())
                    }
                }

                #[selinon_runtime::async_trait]
                impl selinon_runtime::DataStorage for #ty {
                    async fn connect(&self) -> Result<(), selinon_runtime::StorageError> {
                        Ok(())
                    }

                    fn is_connected(&self) -> bool {
                        true
                    }

                    async fn disconnect(&self) -> Result<(), selinon_runtime::StorageError> {
                        Ok(())
                    }

                    async fn retrieve(
                        &self,
                        flow_name: &str,
                        task_name: &str,
                        task_id: &str,
                    ) -> Result<Json, selinon_runtime::StorageError> {
                        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
                        records.get(task_id).cloned().ok_or_else(|| selinon_runtime::StorageError::Missing {
                            flow_name: flow_name.to_string(),
                            task_name: task_name.to_string(),
                            task_id: task_id.to_string(),
                        })
                    }

                    async fn store(
                        &self,
                        _node_args: &Json,
                        _flow_name: &str,
                        _task_name: &str,
                        task_id: &str,
                        result: &Json,
                    ) -> Result<String, selinon_runtime::StorageError> {
                        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
                        records.insert(task_id.to_string(), result.clone());
                        Ok(task_id.to_string())
                    }
                }
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
                add_fn(
                    &fe.function,
                    quote! {
                        #d
                        pub fn #f(_db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
                            Vec::new()
                        }
                    },
                );
            }
            let failure_conditions = flow
                .failures
                .iter()
                .flat_map(|s| s.alternatives.iter().map(|a| &a.condition));
            for cond in std::iter::once(&edge.condition).chain(failure_conditions) {
                custom_predicates(cond, &mut add_fn);
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
    prettyplease::unparse(&file)
}

fn custom_predicates(cond: &Condition, add: &mut impl FnMut(&Import, TokenStream)) {
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
        add(
            &import,
            quote! {
                #d
                pub fn #f(_message: Option<&Json>, _node_args: &Json, _args: &Json) -> bool {
                    true
                }
            },
        );
    }
}
