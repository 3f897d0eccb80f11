//! Benchmark of the distributed runtime on the real RabbitMQ (and Redis for flow state).
//!
//! `cargo run --release --example amqp_bench -- --shape chain10|fanout|foreach --flows N --workers W`
//! starts W worker processes (this binary, `worker` mode), runs N flows of the shape at once,
//! and prints one JSON line:
//!
//! - `flows_per_s`, `tasks_per_s`: N flows started at once, first submit to last end;
//! - `worker_cpu_ms_per_task`, `broker_cpu_ms_per_task`, `redis_cpu_ms_per_task`: CPU time
//!   (user + system) the worker processes, RabbitMQ and Redis spent during those N flows,
//!   per task (the broker's and Redis's when they run on this machine, else null);
//! - `backend_calls_per_task`: round trips of the workers to the flow-state backend per task
//!   (`backend_calls` splits them by kind); `redis_commands_per_task` counts the commands
//!   Redis ran, those inside the commit and read scripts included, and
//!   `redis_bytes_per_task` the bytes in and out of Redis;
//! - `hop_p50_ms`, `hop_p99_ms`: time from a task's end to its successor's start, over 50
//!   flows run one at a time (the latency of a hop; `loaded_hop_*` are the same under the
//!   N-flow load, queueing included);
//! - `worker_rss_mb`: the largest resident size of a worker process at the end of the run;
//! - `raw_msgs_per_s`: persistent messages of the same size published (with confirms) and
//!   consumed (with acks) through one queue by plain lapin, in the same run: the broker's
//!   ceiling on this machine, to compare `tasks_per_s` with.
//!
//! Shapes: `chain10` (10 tasks in a row), `fanout` (1 → 10 → 1) and `foreach` (1 → `--width`
//! → 1 through a `foreach` sub-flow; default width 100), the shapes of `bench/bench.yml`.
//!
//! Options: `--concurrency C` (per worker, default 32), `--amqp URL` (env `AMQP_URL`),
//! `--redis URL` (env `REDIS_URL`), `--width N` (foreach).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use selinon_runtime::amqp::broker::connection_properties;
use selinon_runtime::amqp::{Client, FlowBackend, RedisBackend, Worker};
use selinon_runtime::backend::{BackendError, Commit, Confirmed, Loaded, Outgoing};
use selinon_runtime::engine::NodeStatus;
use selinon_runtime::json;

/// With `--features mimalloc`: workers allocate per message, and mimalloc spends less CPU on it
/// than the system's allocator, for a larger resident size (see docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench {
    pub mod tasks {
        use selinon_runtime::{Task, TaskContext, TaskResult};

        include!("bench/types.rs");

        /// Does nothing but note when it started and ended (µs since the epoch).
        #[derive(Default)]
        pub struct Noop;

        impl Task for Noop {
            type Args = Item;
            type Output = Done;

            async fn run(&self, ctx: &TaskContext, _args: Item) -> TaskResult<Done> {
                let start = crate::now_us();
                let result = Done { ok: true };
                crate::TIMES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((
                        ctx.dispatcher_id.clone(),
                        ctx.task_name.clone(),
                        start,
                        crate::now_us(),
                    ));
                Ok(result)
            }
        }
    }
}

mod flows {
    selinon_macros::include_flows!("bench/bench.yml", "bench/bench.yml");
}

type Timing = (String, String, u64, u64);
static TIMES: Mutex<Vec<Timing>> = Mutex::new(Vec::new());

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

struct Options {
    shape: String,
    flows: usize,
    workers: usize,
    concurrency: usize,
    amqp: String,
    redis: String,
    width: u64,
    times_file: Option<String>,
    counts_file: Option<String>,
}

fn options() -> (bool, Options) {
    let mut o = Options {
        shape: "chain10".into(),
        flows: 1000,
        workers: 2,
        concurrency: 32,
        amqp: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into()),
        width: 100,
        times_file: None,
        counts_file: None,
    };
    let mut worker = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "worker" => worker = true,
            "--shape" => o.shape = value("--shape"),
            "--flows" => o.flows = value("--flows").parse().expect("--flows N"),
            "--workers" => o.workers = value("--workers").parse().expect("--workers W"),
            "--concurrency" => {
                o.concurrency = value("--concurrency").parse().expect("--concurrency C")
            }
            "--amqp" => o.amqp = value("--amqp"),
            "--redis" => o.redis = value("--redis"),
            "--width" => o.width = value("--width").parse().expect("--width N"),
            "--times-file" => o.times_file = Some(value("--times-file")),
            "--counts-file" => o.counts_file = Some(value("--counts-file")),
            other => panic!(
                "unknown argument {other}; use --shape chain10|fanout|foreach --flows N \
                 --workers W [--width N] [--concurrency C] [--amqp URL] [--redis URL]"
            ),
        }
    }
    assert!(
        ["chain10", "fanout", "foreach"].contains(&o.shape.as_str()),
        "--shape is chain10, fanout or foreach"
    );
    (worker, o)
}

/// Counts a worker's round trips to the flow-state backend, by kind.
struct Counting {
    inner: RedisBackend,
    calls: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Counting {
    fn count(&self, what: &'static str) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }
}

#[async_trait::async_trait]
impl FlowBackend for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn read(
        &self,
        flow_id: &str,
        since: Option<u64>,
    ) -> Result<Option<Loaded>, BackendError> {
        self.count(if since.is_some() {
            "read_since"
        } else {
            "read"
        });
        self.inner.read(flow_id, since).await
    }

    async fn commit(&self, commit: &Commit<'_>) -> Result<bool, BackendError> {
        self.count("commit");
        let done = self.inner.commit(commit).await?;
        if !done {
            self.count("commit_conflict");
        }
        Ok(done)
    }

    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError> {
        self.count("outbox");
        self.inner.outbox(flow_id, trigger).await
    }

    async fn clear_outboxes(&self, confirmed: &[Confirmed]) -> Result<(), BackendError> {
        self.count("clear_outboxes");
        self.inner.clear_outboxes(confirmed).await
    }

    async fn task_status(
        &self,
        flow_id: &str,
        task_id: &str,
    ) -> Result<Option<NodeStatus>, BackendError> {
        self.count("task_status");
        self.inner.task_status(flow_id, task_id).await
    }

    async fn set_task_status(
        &self,
        flow_id: &str,
        task_id: &str,
        status: NodeStatus,
    ) -> Result<(), BackendError> {
        self.count("set_task_status");
        self.inner.set_task_status(flow_id, task_id, status).await
    }
}

async fn run_worker(o: Options) {
    let backend = Arc::new(Counting {
        inner: RedisBackend::connect(&o.redis).await.expect("Redis"),
        calls: Mutex::new(Default::default()),
    });
    let worker = Worker::builder(&flows::SYSTEM)
        .amqp_url(&o.amqp)
        .backend(backend.clone())
        .concurrency(o.concurrency)
        .without_config_trace()
        .build()
        .expect("worker");
    worker.run().await.expect("worker runs");
    if let Some(path) = o.times_file {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("times file"));
        for (flow, task, start, end) in TIMES.lock().unwrap().iter() {
            writeln!(f, "{flow}\t{task}\t{start}\t{end}").unwrap();
        }
    }
    if let Some(path) = o.counts_file {
        let calls = backend.calls.lock().unwrap().clone();
        std::fs::write(path, serde_json::to_string(&calls).unwrap()).expect("counts file");
    }
}

/// CPU time (user + system) of a process so far, in ms.
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces): state is the 3rd, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ is 100 on Linux
}

/// The process whose command name is `name` (the first found), on this machine.
fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// Commands Redis ran and bytes in and out of it so far (`INFO stats`).
async fn redis_counters(conn: &mut redis::aio::MultiplexedConnection) -> (f64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .expect("INFO");
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (
        field("total_commands_processed"),
        field("total_net_input_bytes") + field("total_net_output_bytes"),
    )
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Successor start − predecessor end along the shape's edges, in ms.
fn hops(shape: &str, times: &HashMap<(String, String), (u64, u64)>, id: &str, out: &mut Vec<f64>) {
    let t = |n: &str| times.get(&(id.to_string(), n.to_string())).copied();
    let mut hop = |end: u64, start: u64| out.push((start as f64 - end as f64) / 1e3);
    if shape == "chain10" {
        for i in 1..10 {
            if let (Some((_, e)), Some((s, _))) = (t(&format!("T{i}")), t(&format!("T{}", i + 1))) {
                hop(e, s);
            }
        }
    } else {
        for i in 1..=10 {
            if let (Some((_, e)), Some((s, _))) = (t("F0"), t(&format!("F{i}"))) {
                hop(e, s);
            }
        }
        let last = (1..=10)
            .filter_map(|i| t(&format!("F{i}")))
            .map(|(_, e)| e)
            .max();
        if let (Some(e), Some((s, _))) = (last, t("FJoin")) {
            hop(e, s);
        }
    }
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Publishes `count` persistent messages of `size` bytes with confirms (a window of 256)
/// while one consumer acks them: messages per second through the broker.
async fn raw_ceiling(url: &str, count: usize, size: usize) -> f64 {
    let conn = lapin::Connection::connect(url, connection_properties("selinon-bench-raw"))
        .await
        .expect("RabbitMQ");
    let publisher = conn.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = "selinon_bench_raw";
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publisher
        .queue_declare(queue, durable, FieldTable::default())
        .await
        .unwrap();
    publisher
        .queue_purge(queue, QueuePurgeOptions::default())
        .await
        .unwrap();
    let consumer_channel = conn.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(64, Default::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = vec![b'x'; size];
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        for _ in 0..count {
            let delivery = consumer.next().await.expect("delivery").expect("delivery");
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
        }
    });
    let mut window = Vec::with_capacity(256);
    for _ in 0..count {
        let confirm = publisher
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                &body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        window.push(confirm);
        if window.len() == 256 {
            for c in window.drain(..) {
                c.await.unwrap();
            }
        }
    }
    for c in window.drain(..) {
        c.await.unwrap();
    }
    consume.await.unwrap();
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let _ = publisher.queue_delete(queue, Default::default()).await;
    rate
}

async fn run_bench(o: Options) {
    let exe = std::env::current_exe().expect("own path");
    let dir = std::env::temp_dir().join(format!("selinon-amqp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Start from empty queues.
    let conn = lapin::Connection::connect(&o.amqp, connection_properties("selinon-bench"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {}: {e} (start it with `rabbitmq-server -detached`)",
                o.amqp
            )
        });
    let channel = conn.create_channel().await.unwrap();
    for q in ["bench_tasks", "bench_flows"] {
        channel
            .queue_declare(
                q,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_purge(q, QueuePurgeOptions::default())
            .await
            .unwrap();
    }

    let mut workers = Vec::new();
    for i in 0..o.workers {
        let child = tokio::process::Command::new(&exe)
            .args(["worker", "--concurrency", &o.concurrency.to_string()])
            .args(["--amqp", &o.amqp, "--redis", &o.redis])
            .args([
                "--times-file",
                dir.join(format!("w{i}.tsv")).to_str().unwrap(),
            ])
            .args([
                "--counts-file",
                dir.join(format!("w{i}.json")).to_str().unwrap(),
            ])
            .kill_on_drop(true)
            .spawn()
            .expect("worker process");
        workers.push(child);
    }
    // Wait until every worker consumes.
    let ready = Instant::now();
    loop {
        let q = channel
            .queue_declare(
                "bench_tasks",
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        if q.consumer_count() as usize >= o.workers {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "workers did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let backend = Arc::new(RedisBackend::connect(&o.redis).await.expect("Redis"));
    let client = Client::connect(&flows::SYSTEM, &o.amqp, backend)
        .await
        .expect("client");
    let (flow, tasks_per_flow, width) = match o.shape.as_str() {
        "chain10" => (flows::chain10::FLOW.untyped(), 10.0, 0),
        "fanout" => (flows::fanout::FLOW.untyped(), 12.0, 0),
        _ => (
            flows::foreach::FLOW.untyped(),
            o.width as f64 + 2.0,
            o.width,
        ),
    };
    let item = |i: usize| bench::tasks::Item { i: i as u64, width };

    // Warm-up, then N flows at once.
    let warm = client.submit_many(&flow, (0..20).map(item)).await.unwrap();
    client
        .wait_all(&warm, Duration::from_secs(120))
        .await
        .unwrap();
    let worker_pids: Vec<u32> = workers.iter().filter_map(|w| w.id()).collect();
    let cpu = |pids: &[u32]| -> Option<f64> { pids.iter().map(|p| cpu_ms(*p)).sum() };
    let broker_pid: Vec<u32> = pid_of("beam.smp").into_iter().collect();
    let redis_pid: Vec<u32> = pid_of("redis-server").into_iter().collect();
    let mut redis_conn = redis::Client::open(o.redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let before = (
        cpu(&worker_pids),
        cpu(&broker_pid),
        cpu(&redis_pid),
        redis_counters(&mut redis_conn).await,
    );
    let start = Instant::now();
    let ids = client
        .submit_many(&flow, (0..o.flows).map(item))
        .await
        .unwrap();
    let done = client
        .wait_all(&ids, Duration::from_secs(600))
        .await
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let after = (
        cpu(&worker_pids),
        cpu(&broker_pid),
        cpu(&redis_pid),
        redis_counters(&mut redis_conn).await,
    );
    let tasks = o.flows as f64 * tasks_per_flow;
    let per_task = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / tasks);
    let worker_cpu = per_task(before.0, after.0);
    let broker_cpu = per_task(before.1, after.1);
    let redis_cpu = per_task(before.2, after.2);
    let redis_commands = (after.3 .0 - before.3 .0) / tasks;
    let redis_bytes = (after.3 .1 - before.3 .1) / tasks;

    let finished = done.values().filter(|o| o.is_finished()).count();

    // Hop latency: flows one at a time.
    let mut single = Vec::new();
    for i in 0..50 {
        let id = client.submit(&flow, item(i)).await.unwrap();
        client.wait(&id, Duration::from_secs(60)).await.unwrap();
        single.push(id);
    }

    let worker_rss_mb = workers
        .iter()
        .filter_map(|w| w.id())
        .map(rss_mb)
        .fold(0.0, f64::max);
    for w in &workers {
        if let Some(pid) = w.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    for w in &mut workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w.wait()).await;
    }
    let mut times = HashMap::new();
    for i in 0..o.workers {
        let text = std::fs::read_to_string(dir.join(format!("w{i}.tsv"))).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [flow, task, s, e] = f[..] {
                times.insert(
                    (flow.to_string(), task.to_string()),
                    (s.parse().unwrap_or(0), e.parse().unwrap_or(0)),
                );
            }
        }
    }
    // Backend round trips over every flow the workers ran (warm-up and latency runs too: the
    // same shape), per task.
    let mut calls: std::collections::BTreeMap<String, f64> = Default::default();
    for i in 0..o.workers {
        let text = std::fs::read_to_string(dir.join(format!("w{i}.json"))).unwrap_or_default();
        let counts: std::collections::BTreeMap<String, f64> =
            serde_json::from_str(&text).unwrap_or_default();
        for (what, n) in counts {
            *calls.entry(what).or_default() += n;
        }
    }
    let all_tasks = (20 + o.flows + 50) as f64 * tasks_per_flow;
    let calls_per_task: f64 = calls
        .iter()
        .filter(|(what, _)| *what != "commit_conflict")
        .map(|(_, n)| n)
        .sum::<f64>()
        / all_tasks;
    let _ = std::fs::remove_dir_all(&dir);
    let mut loaded = Vec::new();
    for id in &ids {
        hops(&o.shape, &times, id, &mut loaded);
    }
    let mut latency = Vec::new();
    for id in &single {
        hops(&o.shape, &times, id, &mut latency);
    }

    let message_size = 420;
    let raw = raw_ceiling(&o.amqp, 20_000, message_size).await;
    let flows_per_s = o.flows as f64 / wall;
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    println!(
        "{}",
        json!({
            "shape": o.shape,
            "width": (o.shape == "foreach").then_some(o.width),
            "flows": o.flows,
            "workers": o.workers,
            "concurrency": o.concurrency,
            "finished": finished,
            "lost": o.flows - done.len(),
            "wall_s": round(wall, 3),
            "flows_per_s": round(flows_per_s, 1),
            "tasks_per_s": round(flows_per_s * tasks_per_flow, 0),
            "hop_p50_ms": round(percentile(&mut latency, 0.5), 3),
            "hop_p99_ms": round(percentile(&mut latency, 0.99), 3),
            "loaded_hop_p50_ms": round(percentile(&mut loaded, 0.5), 3),
            "loaded_hop_p99_ms": round(percentile(&mut loaded, 0.99), 3),
            "worker_rss_mb": round(worker_rss_mb, 1),
            "worker_cpu_ms_per_task": worker_cpu.map(|x| round(x, 4)),
            "broker_cpu_ms_per_task": broker_cpu.map(|x| round(x, 4)),
            "redis_cpu_ms_per_task": redis_cpu.map(|x| round(x, 4)),
            "backend_calls_per_task": round(calls_per_task, 3),
            "backend_calls": calls
                .iter()
                .map(|(k, n)| (k.clone(), json!(round(n / all_tasks, 3))))
                .collect::<serde_json::Map<_, _>>(),
            "redis_commands_per_task": round(redis_commands, 2),
            "redis_bytes_per_task": round(redis_bytes, 0),
            "raw_msgs_per_s": round(raw, 0),
            "raw_message_bytes": message_size,
        })
    );
    assert_eq!(finished, o.flows, "every flow finished");
}

#[tokio::main]
async fn main() {
    let (worker, o) = options();
    if worker {
        run_worker(o).await;
    } else {
        run_bench(o).await;
    }
}
