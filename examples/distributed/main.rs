//! Flows across worker processes over RabbitMQ (see `examples/distributed/README.md`).
//!
//! ```text
//! cargo run --release --example distributed -- worker [--queues Q1,Q2] [--concurrency N] [--amqp URL] [--redis URL]
//! cargo run --release --example distributed -- submit --flows N [--wait] [--amqp URL] [--redis URL]
//! cargo run --release --example distributed -- status FLOW_ID
//! ```
//!
//! `worker` consumes every queue of the example; `submit --wait` waits for the flows and prints
//! `{"submitted":N,"finished":n,"failed":n,"lost":n,"duplicates":n}`, exiting 0 only when every
//! flow ended as expected.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use selinon_runtime::amqp::{worker_main, Client, RedisBackend};
use selinon_runtime::{json, FlowOutcome};

mod flows {
    selinon_macros::include_flows!("distributed/nodes.yml", "distributed/flows.yml");
}

/// The tasks. Each run is counted in Redis (hash `selinon-example:runs:<run>`, field
/// `<task>:<task id>`), which is how `submit --wait` finds duplicate runs.
mod shop {
    use selinon_macros::task;
    use selinon_runtime::{TaskContext, TaskError, TaskResult};
    use serde::{Deserialize, Serialize};

    /// The Redis connection of the worker, for counting runs.
    pub struct Runs(pub redis::aio::ConnectionManager);

    /// What an order flow is started with (every task of the flow and of `notify` takes it).
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Order {
        pub order: u64,
        /// Which `submit` the order belongs to (names the Redis hash runs are counted in).
        pub run: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Validated {
        pub order: u64,
        pub valid: bool,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Reserved {
        pub reserved: bool,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Charged {
        pub charged: bool,
        pub provider: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Sent {
        pub sent: String,
    }

    async fn count(ctx: &TaskContext, order: &Order) -> Result<i64, TaskError> {
        let runs = ctx
            .resource::<Runs>()
            .ok_or_else(|| TaskError::fatal("the worker has no Redis connection"))?;
        let mut conn = runs.0.clone();
        redis::cmd("HINCRBY")
            .arg(format!("selinon-example:runs:{}", order.run))
            .arg(format!("{}:{}", ctx.task_name, ctx.task_id))
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| TaskError::failed(format!("Redis: {e}")))
    }

    #[task]
    pub async fn validate_order(ctx: &TaskContext, order: Order) -> TaskResult<Validated> {
        count(ctx, &order).await?;
        Ok(Validated {
            order: order.order,
            valid: true,
        })
    }

    /// The stock service fails the first call for every order; the retry succeeds.
    #[task]
    pub async fn reserve_stock(ctx: &TaskContext, order: Order) -> TaskResult<Reserved> {
        if count(ctx, &order).await? == 1 {
            return Err(TaskError::failed("stock service timed out"));
        }
        Ok(Reserved { reserved: true })
    }

    /// The primary payment provider is down.
    #[task]
    pub async fn charge_card(ctx: &TaskContext, order: Order) -> TaskResult<Charged> {
        count(ctx, &order).await?;
        Err(TaskError::fatal("payment provider unavailable"))
    }

    /// The fallback of `ChargeCard`.
    #[task]
    pub async fn charge_backup_card(ctx: &TaskContext, order: Order) -> TaskResult<Charged> {
        count(ctx, &order).await?;
        Ok(Charged {
            charged: true,
            provider: "backup".into(),
        })
    }

    #[task]
    pub async fn send_email(ctx: &TaskContext, order: Order) -> TaskResult<Sent> {
        count(ctx, &order).await?;
        Ok(Sent {
            sent: "email".into(),
        })
    }

    #[task]
    pub async fn send_sms(ctx: &TaskContext, order: Order) -> TaskResult<Sent> {
        count(ctx, &order).await?;
        Ok(Sent { sent: "sms".into() })
    }
}

struct Options {
    amqp: String,
    redis: String,
    flows: usize,
    wait: bool,
    flow_id: Option<String>,
}

const USAGE: &str =
    "usage: distributed worker [--queues Q1,Q2] [--concurrency N] [--amqp URL] [--redis URL]
       distributed submit --flows N [--wait] [--amqp URL] [--redis URL]
       distributed status FLOW_ID [--amqp URL] [--redis URL]";

fn options(args: Vec<String>) -> Result<Options, String> {
    let mut o = Options {
        amqp: std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672".into()),
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
        flows: 10,
        wait: false,
        flow_id: None,
    };
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--amqp" => o.amqp = value()?,
            "--redis" => o.redis = value()?,
            "--flows" => o.flows = value()?.parse().map_err(|e| format!("--flows: {e}"))?,
            "--wait" => o.wait = true,
            id if !id.starts_with('-') && o.flow_id.is_none() => o.flow_id = Some(id.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(o)
}

/// `worker`: the runtime's standard worker command line, plus the Redis connection the tasks
/// count their runs with.
async fn worker(args: Vec<String>) -> ExitCode {
    let redis = args
        .iter()
        .position(|a| a == "--redis")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let runs = match redis::Client::open(redis.as_str()) {
        Ok(client) => match redis::aio::ConnectionManager::new(client).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: Redis at {redis}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("error: Redis URL {redis}: {e}");
            return ExitCode::from(2);
        }
    };
    worker_main(&flows::SYSTEM, args, |w| w.resource(shop::Runs(runs))).await
}

async fn status(o: Options) -> Result<bool, String> {
    let id = o
        .flow_id
        .clone()
        .ok_or(format!("status needs a flow id\n{USAGE}"))?;
    let backend = Arc::new(
        RedisBackend::connect(&o.redis)
            .await
            .map_err(|e| e.to_string())?,
    );
    let client = Client::connect(&flows::SYSTEM, &o.amqp, backend)
        .await
        .map_err(|e| e.to_string())?;
    let report = client.status(&id).await.map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    client.close().await;
    Ok(true)
}

/// The final state every order must reach.
fn as_expected(out: &FlowOutcome) -> bool {
    out.is_finished()
        && out.failed_nodes.is_empty()
        && [
            "ValidateOrder",
            "ReserveStock",
            "ChargeBackupCard",
            "notify",
        ]
        .iter()
        .all(|n| out.finished(n).len() == 1)
}

async fn submit(o: Options) -> Result<bool, String> {
    let backend = Arc::new(
        RedisBackend::connect(&o.redis)
            .await
            .map_err(|e| e.to_string())?,
    );
    let client = Client::connect(&flows::SYSTEM, &o.amqp, backend)
        .await
        .map_err(|e| e.to_string())?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ids = client
        .submit_many(
            &flows::order::FLOW,
            (0..o.flows as u64).map(|order| shop::Order {
                order,
                run: run.clone(),
            }),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !o.wait {
        for id in &ids {
            println!("{id}");
        }
        client.close().await;
        return Ok(true);
    }
    let done = client
        .wait_all(&ids, Duration::from_secs(300))
        .await
        .map_err(|e| e.to_string())?;
    client.close().await;
    let finished = done.values().filter(|o| as_expected(o)).count();
    let failed = done.len() - finished;
    let lost = ids.len() - done.len();
    // Runs beyond one per scheduled node (ReserveStock fails once by design).
    let mut conn = redis::aio::ConnectionManager::new(
        redis::Client::open(o.redis.as_str()).map_err(|e| e.to_string())?,
    )
    .await
    .map_err(|e| e.to_string())?;
    let runs: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("selinon-example:runs:{run}"))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let duplicates: i64 = runs
        .iter()
        .map(|(k, n)| {
            let expected = if k.starts_with("ReserveStock:") { 2 } else { 1 };
            (n - expected).max(0)
        })
        .sum();
    println!(
        "{}",
        json!({
            "submitted": ids.len(),
            "finished": finished,
            "failed": failed,
            "lost": lost,
            "duplicates": duplicates,
        })
    );
    Ok(finished == ids.len())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs on stderr, filtered by `RUST_LOG` (default `info`).
    selinon_runtime::logging::init();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args.remove(0);
    if command == "worker" {
        return worker(args).await;
    }
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "submit" => submit(o).await,
        "status" => status(o).await,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
