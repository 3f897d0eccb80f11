//! Every user item the YAML names that the crate does not have is an error naming the YAML
//! line: a storage type, a `foreach` function, a selective run function and a condition's own
//! predicate (the task is there).

mod app {
    pub mod tasks {
        use selinon_macros::task;
        use selinon_runtime::{AnyArgs, TaskResult};

        #[task]
        pub async fn hello(_args: AnyArgs) -> TaskResult<u32> {
            Ok(1)
        }

        pub fn reuse_hello() {}
    }

    pub mod storages {
        pub type Ledger = selinon_runtime::storage::InMemoryStorage;
    }

    pub mod fns {
        pub fn iter_items() {}
    }

    pub mod preds {
        pub fn is_fresh() {}
    }
}

mod flows {
    selinon_macros::flows!(
        r#"
        tasks:
          - name: Hello
            import: app.tasks
            storage: Results
            selective_run_function: {name: reuse_helo, import: app.tasks}
        storages:
          - name: Results
            import: app.storages
            classname: Ledgr
            configuration: {path: /tmp}
        global:
          predicates_module: app.preds
        flows: [hello]
        flow-definitions:
          - name: hello
            edges:
              - from:
                to: Hello
                foreach: {import: app.fns, function: iter_itemz}
              - from: Hello
                to: Hello
                condition: {name: isFrsh, node: Hello}
        "#
    );
}

fn main() {}
