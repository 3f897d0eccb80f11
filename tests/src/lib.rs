//! Integration tests across the crates live in `tests/`. This library holds the system the
//! AMQP tests run on several worker processes (`src/bin/amqp_worker.rs`) and its tasks.

/// The test system (`amqp/nodes.yml`, `amqp/flows.yml`).
pub mod flows {
    selinon_macros::include_flows!("amqp/nodes.yml", "amqp/flows.yml");
}

/// The tasks of the test system. Every run is counted in Redis (hash
/// `selinon-test:runs:<ns>`, field `<task name>:<task id>`, where `ns` is the flow argument
/// `ns`), so a test sees across processes which nodes ran and how often.
pub mod testapp {
    use std::time::Duration;

    use selinon_runtime::{json, Db, Json, Task, TaskContext, TaskError, TaskResult};

    /// The Redis connection of a worker, as a task resource.
    pub struct Counter(pub redis::aio::ConnectionManager);

    /// Counts this run; the number of runs of this task instance so far, this one included.
    pub async fn count_run(ctx: &TaskContext, args: &Json) -> Result<i64, TaskError> {
        let Some(counter) = ctx.resource::<Counter>() else {
            return Ok(1);
        };
        let ns = args["ns"].as_str().unwrap_or("default");
        let mut conn = counter.0.clone();
        redis::cmd("HINCRBY")
            .arg(format!("selinon-test:runs:{ns}"))
            .arg(format!("{}:{}", ctx.task_name, ctx.task_id))
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| TaskError::failed(format!("counting the run: {e}")))
    }

    async fn pause(args: &Json) {
        if let Some(ms) = args["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Returns its node name and arguments.
    #[derive(Default)]
    pub struct Echo;

    impl Task for Echo {
        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            pause(&args).await;
            Ok(json!({"task": ctx.task_name, "args": args}))
        }
    }

    /// Returns `{"go": <args.go>}` for the conditions after it.
    #[derive(Default)]
    pub struct Decide;

    impl Task for Decide {
        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            Ok(json!({"go": args["go"]}))
        }
    }

    /// Always fails.
    #[derive(Default)]
    pub struct Fail;

    impl Task for Fail {
        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            Err(TaskError::failed("Boom fails, as it should"))
        }
    }

    /// Fails its first run (per task instance), then succeeds.
    #[derive(Default)]
    pub struct Flaky;

    impl Task for Flaky {
        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            let runs = count_run(ctx, &args).await?;
            let fail_times = args["flaky_times"].as_i64().unwrap_or(1);
            if runs <= fail_times {
                return Err(TaskError::failed(format!("flaky run {runs}")));
            }
            Ok(json!({"runs": runs}))
        }
    }

    /// Panics.
    #[derive(Default)]
    pub struct Panics;

    impl Task for Panics {
        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            panic!("a task that panics");
        }
    }

    /// `foreach` of the `fanout` flow: ten items.
    pub fn ten_items(_db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
        (0..10).map(|i| json!(i)).collect()
    }
}
