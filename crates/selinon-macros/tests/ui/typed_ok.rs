//! Typed end to end: `#[task]` functions over serde types, a flow handle that takes the starting
//! task's argument type, a result read as its task's type, in a task and from the outcome.

mod app {
    pub mod tasks {
        use selinon_macros::task;
        use selinon_runtime::{TaskContext, TaskResult};
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub struct Package {
            pub name: String,
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct Release {
            pub url: String,
        }

        #[task]
        pub async fn fetch(package: Package) -> TaskResult<Release> {
            Ok(Release {
                url: format!("https://example.invalid/{}", package.name),
            })
        }

        #[task(name = Report)]
        pub async fn write_report(ctx: &TaskContext) -> TaskResult<String> {
            let release = ctx.parent_result::<crate::flows::tasks::Fetch>().await?;
            Ok(format!("released at {}", release.url))
        }
    }
}

mod flows {
    selinon_macros::flows!(
        r#"
        tasks:
          - name: Fetch
            import: app.tasks
            storage: Memory
          - name: Report
            import: app.tasks
            storage: Memory
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [release]
        flow-definitions:
          - name: release
            edges:
              - from:
                to: Fetch
              - from: Fetch
                to: Report
        "#
    );
}

#[tokio::main]
async fn main() {
    let rt = selinon_runtime::Runtime::new(&flows::SYSTEM);
    let package = app::tasks::Package {
        name: "serde".into(),
    };
    let outcome = rt.run(&flows::release::FLOW, package).await.unwrap();
    assert!(outcome.is_finished(), "{}", outcome.failures());
    let release = rt.result::<flows::tasks::Fetch>(&outcome).await.unwrap();
    assert_eq!(release.url, "https://example.invalid/serde");
    let report: String = rt.result::<flows::tasks::Report>(&outcome).await.unwrap();
    assert_eq!(report, "released at https://example.invalid/serde");
}
