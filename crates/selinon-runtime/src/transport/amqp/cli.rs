//! A whole worker `main` in one call: the command line every worker binary shares.
//!
//! ```no_run
//! # static SYSTEM: std::sync::OnceLock<selinon_runtime::SystemSpec> = std::sync::OnceLock::new();
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     # let system: &'static selinon_runtime::SystemSpec = SYSTEM.get().unwrap();
//!     // `my-worker [--queues a,b] [--concurrency N] [--amqp URL] [--redis URL]`
//!     selinon_runtime::amqp::worker_main(system, std::env::args().skip(1), |worker| worker).await
//! }
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use super::worker::WorkerBuilder;
use super::Worker;
use crate::backend::RedisBackend;
use crate::spec::SystemSpec;

/// What `--help` prints.
pub const WORKER_USAGE: &str = "\
options:
  --queues Q1,Q2      consume only these queues (default: every task and dispatcher queue)
  --concurrency N     messages handled at once (default 16)
  --amqp URL          the broker (default: env AMQP_URL, else amqp://127.0.0.1:5672/%2f)
  --redis URL         the flow-state backend, the database in its path (redis://host:6379/9)
                      (default: env REDIS_URL, else redis://127.0.0.1:6379/, database 0)
  --metrics ADDR      serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9464; feature `metrics`)
  --list-queues       print the queues of this system and exit";

/// Installs a log subscriber unless the program has one ([`crate::logging::init`]: stderr,
/// `RUST_LOG`, default `info`), parses the worker options from `args`, connects to Redis, lets `configure` add resources,
/// trace sinks or storages, and runs the worker until Ctrl-C or SIGTERM. Errors are printed
/// with what to do; the exit code is 2 for a usage error, 1 for a failure.
pub async fn worker_main(
    system: &'static SystemSpec,
    args: impl IntoIterator<Item = String>,
    configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> ExitCode {
    crate::logging::init();
    let mut builder = Worker::builder(system);
    // The same default as clients (`Client::from_env`) and `selinon status`.
    let mut redis = crate::backend::redis_url_from_env();
    let mut metrics_addr: Option<String> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next().ok_or_else(|| {
                eprintln!("error: {arg} needs a value\n{WORKER_USAGE}");
                ExitCode::from(2)
            })
        };
        match arg.as_str() {
            "--queues" => match value() {
                Ok(v) => builder = builder.queues(v.split(',').map(str::trim)),
                Err(code) => return code,
            },
            "--concurrency" => match value().map(|v| v.parse::<usize>()) {
                Ok(Ok(n)) => builder = builder.concurrency(n),
                Ok(Err(e)) => {
                    eprintln!("error: --concurrency: {e}\n{WORKER_USAGE}");
                    return ExitCode::from(2);
                }
                Err(code) => return code,
            },
            "--amqp" => match value() {
                Ok(v) => builder = builder.amqp_url(v),
                Err(code) => return code,
            },
            "--redis" => match value() {
                Ok(v) => redis = v,
                Err(code) => return code,
            },
            "--metrics" => match value() {
                Ok(v) => metrics_addr = Some(v),
                Err(code) => return code,
            },
            "--list-queues" => match super::worker::Queues::new(system) {
                Ok(q) => {
                    for queue in q.all() {
                        println!("{queue}");
                    }
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            "--help" | "-h" => {
                println!("{WORKER_USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown option `{other}`\n{WORKER_USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let backend = match RedisBackend::connect(&redis).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: {e}\n(start Redis with `redis-server --daemonize yes --bind 127.0.0.1 \
                 --port 6379 --save \"\"`, or pass --redis URL)"
            );
            return ExitCode::FAILURE;
        }
    };
    #[cfg_attr(not(feature = "metrics"), allow(unused_mut))]
    let mut builder = builder.backend(Arc::new(backend));
    if let Some(addr) = metrics_addr {
        #[cfg(feature = "metrics")]
        {
            let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
                eprintln!("error: --metrics {addr}: not an address like 127.0.0.1:9464");
                return ExitCode::from(2);
            };
            let metrics = crate::trace::metrics::MetricsSink::new();
            match metrics.serve(addr).await {
                Ok(bound) => eprintln!("metrics on http://{bound}/metrics"),
                Err(e) => {
                    eprintln!("error: --metrics {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            builder = builder.trace_sink(metrics);
        }
        #[cfg(not(feature = "metrics"))]
        {
            eprintln!(
                "error: --metrics {addr}: this worker was built without the `metrics` feature of \
                 selinon-runtime"
            );
            return ExitCode::from(2);
        }
    }
    let worker = match configure(builder).build() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "worker {} consuming {} (Ctrl-C to stop)",
        std::process::id(),
        worker.queues().join(", ")
    );
    match worker.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
