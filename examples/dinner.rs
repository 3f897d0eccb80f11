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
        use selinon_macros::task;
        use selinon_runtime::{AnyArgs, Task, TaskContext, TaskResult};
        use serde::{Deserialize, Serialize};

        use crate::flows::tasks::WarmUpOvenTask as Oven;

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Bought {
            pub bought: String,
        }

        macro_rules! shopping {
            ($($name:ident => $item:literal),*) => {$(
                #[derive(Default)]
                pub struct $name;

                impl Task for $name {
                    type Args = AnyArgs;
                    type Output = Bought;

                    async fn run(&self, _ctx: &TaskContext, _args: AnyArgs) -> TaskResult<Bought> {
                        Ok(Bought { bought: $item.into() })
                    }
                }
            )*};
        }

        shopping!(BuyEggsTask => "eggs", BuyFlourTask => "flour", BuyFlowerTask => "flowers",
                  BuyAllRemainingTask => "butter and apples");

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Pizza {
            pub pizza: String,
        }

        #[task(name = OrderPizzaTask)]
        pub async fn order_pizza() -> TaskResult<Pizza> {
            Ok(Pizza {
                pizza: "margherita".into(),
            })
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Beer {
            pub beer: u32,
        }

        #[task(name = OrderBeerTask)]
        pub async fn order_beer() -> TaskResult<Beer> {
            Ok(Beer { beer: 6 })
        }

        /// The oven's state; the cycle's condition reads `temperature`.
        #[derive(Debug, Serialize, Deserialize)]
        pub struct Temperature {
            pub temperature: i64,
        }

        /// Heats by 75 degrees per run, starting from the previous run's temperature.
        #[task(name = WarmUpOvenTask)]
        pub async fn warm_up_oven(ctx: &TaskContext) -> TaskResult<Temperature> {
            let previous = match ctx.parent_result::<Oven>().await {
                Ok(oven) => oven.temperature,
                Err(_) => 25,
            };
            let temperature = previous + 75;
            println!("  oven at {temperature} degrees");
            Ok(Temperature { temperature })
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Dough {
            pub dough: String,
        }

        #[task(name = MakeDoughTask)]
        pub async fn make_dough() -> TaskResult<Dough> {
            Ok(Dough {
                dough: "ready".into(),
            })
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Pie {
            pub pie: String,
            pub temperature: i64,
        }

        #[task(name = BakeTask)]
        pub async fn bake(ctx: &TaskContext) -> TaskResult<Pie> {
            let oven = ctx.parent_result::<Oven>().await?;
            println!("  baking at {} degrees", oven.temperature);
            Ok(Pie {
                pie: "apple".into(),
                temperature: oven.temperature,
            })
        }

        #[derive(Debug, Serialize, Deserialize)]
        pub struct Served {
            pub served: String,
        }

        /// Serves one plate (one per guest: the edge's `foreach` starts one per item).
        #[task(name = ServePlateTask)]
        pub async fn serve_plate() -> TaskResult<Served> {
            println!("  a plate served");
            Ok(Served {
                served: "apple pie".into(),
            })
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
        use selinon_runtime::{Db, Json};
        use serde::Deserialize;

        /// What the dinner is started with: who comes (two guests when nobody is named).
        #[derive(Deserialize)]
        struct Party {
            guests: Vec<String>,
        }

        /// One item per guest.
        pub fn iter_guests(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
            let guests = Party::deserialize(node_args)
                .map(|party| party.guests)
                .unwrap_or_else(|_| vec!["Alice".into(), "Bob".into()]);
            guests.into_iter().map(Json::String).collect()
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
    let outcome = match runtime.run(&flows::dinner_flow::FLOW, ()).await {
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
