//! A worker process for the AMQP tests: the test system's queues (prefixed by the env
//! `SELINON_TEST_PREFIX`), results in the directory `SELINON_TEST_STORE`, flow state and run
//! counts in Redis (`REDIS_URL`), broker `AMQP_URL`; the system of `SELINON_TEST_SYSTEM`
//! (`main`, `v1`, `v2`); delay queues rotate every `SELINON_TEST_DELAY_ROTATION_MS` and a flow
//! starts at most `SELINON_TEST_MAX_NODES` nodes when those are set. Stops on SIGTERM.

use std::sync::Arc;

use std::time::Duration;

use selinon_runtime::amqp::{DelayQueues, RedisBackend, Worker};
use selinon_tests::testapp;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string());
    let concurrency = std::env::var("SELINON_TEST_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let backend = RedisBackend::connect(&redis_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = redis::Client::open(redis_url.as_str()).expect("REDIS_URL");
    let counter = redis::aio::ConnectionManager::new(client)
        .await
        .expect("Redis");
    let mut builder = Worker::builder(selinon_tests::system_from_env());
    if let Some(ms) = std::env::var("SELINON_TEST_DELAY_ROTATION_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        builder = builder.delay_queues(DelayQueues::with_rotation(Duration::from_millis(ms)));
    }
    if let Some(n) = std::env::var("SELINON_TEST_MAX_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        builder = builder.max_nodes_per_flow(n);
    }
    let worker = builder
        .backend(Arc::new(backend))
        .concurrency(concurrency)
        .resource(testapp::Counter(counter))
        .without_config_trace()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = worker.run().await {
        eprintln!("worker stopped: {e}");
        std::process::exit(1);
    }
}
