//! Upstream Selinon's dinner example with real tasks and storages: buy the ingredients (a
//! sub-flow), prepare the pie (warm the oven until it is hot enough, in a cycle, while the dough
//! is made; bake when both are done), serve a plate per guest (`foreach`); if buying or
//! preparing fails, order pizza and beer instead (fallbacks).
//!
//! `cargo run --example dinner` — the `httpStatus` condition asks a recipe server, which this
//! example starts on 127.0.0.1:47613.

use std::io::{Read, Write};

mod myapp {
    pub mod tasks {
        use selinon_runtime::{json, Json, Task, TaskContext, TaskResult};

        macro_rules! shopping {
            ($($name:ident => $item:literal),*) => {$(
                #[derive(Default)]
                pub struct $name;

                impl Task for $name {
                    async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
                        Ok(json!({"bought": $item}))
                    }
                }
            )*};
        }

        shopping!(BuyEggsTask => "eggs", BuyFlourTask => "flour", BuyFlowerTask => "flowers",
                  BuyAllRemainingTask => "butter and apples");

        #[derive(Default)]
        pub struct OrderPizzaTask;

        impl Task for OrderPizzaTask {
            async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
                Ok(json!({"pizza": "margherita"}))
            }
        }

        #[derive(Default)]
        pub struct OrderBeerTask;

        impl Task for OrderBeerTask {
            async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
                Ok(json!({"beer": 6}))
            }
        }

        /// Heats by 75 degrees per run, starting from the previous run's temperature.
        #[derive(Default)]
        pub struct WarmUpOvenTask;

        impl Task for WarmUpOvenTask {
            async fn run(&self, ctx: &TaskContext, _args: Json) -> TaskResult {
                let previous = match ctx.parent_task_result("WarmUpOvenTask").await {
                    Ok(result) => result["temperature"].as_i64().unwrap_or(25),
                    Err(_) => 25,
                };
                let temperature = previous + 75;
                println!("  oven at {temperature} degrees");
                Ok(json!({"temperature": temperature}))
            }
        }

        #[derive(Default)]
        pub struct MakeDoughTask;

        impl Task for MakeDoughTask {
            async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
                Ok(json!({"dough": "ready"}))
            }
        }

        #[derive(Default)]
        pub struct BakeTask;

        impl Task for BakeTask {
            async fn run(&self, ctx: &TaskContext, _args: Json) -> TaskResult {
                let oven = ctx.parent_task_result("WarmUpOvenTask").await?;
                println!("  baking at {} degrees", oven["temperature"]);
                Ok(json!({"pie": "apple", "temperature": oven["temperature"]}))
            }
        }

        #[derive(Default)]
        pub struct ServePlateTask;

        impl Task for ServePlateTask {
            async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
                println!("  a plate served");
                Ok(json!({"served": args}))
            }
        }
    }

    pub mod storages {
        //! The oven, the fridge and the basket keep results in memory.
        use selinon_runtime::storage::InMemoryStorage;

        pub type Oven = InMemoryStorage;
        pub type Fridge = InMemoryStorage;
        pub type Basket = InMemoryStorage;
    }

    pub mod helpers {
        use selinon_runtime::{json, Db, Json};

        /// One item per guest: the flow's `guests`, or two guests by default.
        pub fn iter_guests(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
            match node_args["guests"].as_array() {
                Some(guests) => guests.clone(),
                None => vec![json!("Alice"), json!("Bob")],
            }
        }
    }
}

mod flows {
    selinon_macros::include_flows!("dinner/dinner.yaml", "dinner/dinner.yaml");
}

/// Answers every request with `200 OK`: the recipe the `httpStatus` condition looks for.
fn serve_recipes() -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:47613")?;
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(err) = serve_recipes() {
        eprintln!(
            "cannot serve the recipes on 127.0.0.1:47613 ({err}); is another dinner running?"
        );
        return std::process::ExitCode::FAILURE;
    }
    println!("dinnerFlow:");
    let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
    let outcome = match runtime
        .run(&flows::dinner_flow::FLOW, selinon_runtime::json!(null))
        .await
    {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut nodes: Vec<_> = outcome.finished_nodes.keys().cloned().collect();
    nodes.sort();
    println!(
        "dinnerFlow {:?}: finished {}",
        outcome.status,
        nodes.join(", ")
    );
    if outcome.is_finished() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
