//! A flow's handle takes what its starting task takes: anything else does not compile.

mod app {
    pub mod tasks {
        use selinon_macros::task;
        use selinon_runtime::TaskResult;
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub struct Package {
            pub name: String,
        }

        #[task]
        pub async fn hello(package: Package) -> TaskResult<String> {
            Ok(format!("hello {}", package.name))
        }
    }
}

mod flows {
    selinon_macros::include_flows!("ui-flows/hello.yml", "ui-flows/hello.yml");
}

#[derive(serde::Serialize)]
pub struct Order {
    pub id: u64,
}

#[allow(dead_code)]
fn start(rt: &selinon_runtime::Runtime) -> selinon_runtime::FlowHandle {
    rt.run(&flows::hello::FLOW, Order { id: 7 })
}

fn main() {}
