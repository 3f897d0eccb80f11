//! A cluster for the AMQP tests: worker processes (`amqp_worker`) on the real RabbitMQ and
//! Redis on 127.0.0.1, with queues of their own (a per-cluster prefix), and a client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use selinon_runtime::amqp::{Client, RedisBackend};
use selinon_runtime::{Flow, FlowOutcome, Json, Takes};
use tokio::process::{Child, Command};

/// One cluster at a time per test process (its queue prefix is process-wide).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether RabbitMQ and Redis answer; panics with how to start them if not (see
/// `selinon_testkit`: `false` only under its explicit opt-out, outside CI).
pub fn services() -> bool {
    selinon_testkit::amqp_url().is_some() && selinon_testkit::redis_url().is_some()
}

/// The broker's URL; tests check [`services`] first.
pub fn amqp_url() -> String {
    selinon_testkit::amqp_url().expect("RabbitMQ answers")
}

/// Redis's URL; tests check [`services`] first.
pub fn redis_url() -> String {
    selinon_testkit::redis_url().expect("Redis answers")
}

pub struct Cluster {
    _guard: tokio::sync::MutexGuard<'static, ()>,
    pub prefix: String,
    pub store: PathBuf,
    pub workers: Vec<Option<Child>>,
    pub client: Client,
    pub backend: Arc<RedisBackend>,
    pub redis: redis::aio::ConnectionManager,
    concurrency: usize,
    /// `SELINON_TEST_SYSTEM` of the workers started from now on.
    pub system: String,
}

impl Cluster {
    /// Starts `n` worker processes and a client.
    pub async fn start(name: &str, n: usize) -> Cluster {
        Self::start_with(name, n, 8).await
    }

    pub async fn start_with(name: &str, n: usize, concurrency: usize) -> Cluster {
        Self::start_system(name, n, concurrency, "main").await
    }

    /// Workers of the system `system` (`main`, `v1`, `v2`; see `selinon_tests::system_from_env`).
    pub async fn start_system(name: &str, n: usize, concurrency: usize, system: &str) -> Cluster {
        let guard = ONE_AT_A_TIME.lock().await;
        let prefix = format!(
            "t_{name}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let store = std::env::temp_dir().join(format!("selinon-{prefix}"));
        std::fs::create_dir_all(&store).unwrap();
        // The client expands the queue names from the same variables as the workers.
        std::env::set_var("SELINON_TEST_PREFIX", &prefix);
        std::env::set_var("SELINON_TEST_STORE", &store);
        let backend = Arc::new(RedisBackend::connect(&redis_url()).await.unwrap());
        std::env::set_var("SELINON_TEST_SYSTEM", system);
        let client = Client::connect(
            selinon_tests::system_from_env(),
            &amqp_url(),
            backend.clone(),
        )
        .await
        .unwrap();
        let redis = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
            .await
            .unwrap();
        let mut cluster = Cluster {
            _guard: guard,
            prefix,
            store,
            workers: Vec::new(),
            client,
            backend,
            redis,
            concurrency,
            system: system.into(),
        };
        for _ in 0..n {
            let child = cluster.spawn_worker();
            cluster.workers.push(Some(child));
        }
        cluster
    }

    fn spawn_worker(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_amqp_worker"))
            .env("SELINON_TEST_PREFIX", &self.prefix)
            .env("SELINON_TEST_STORE", &self.store)
            .env("SELINON_TEST_CONCURRENCY", self.concurrency.to_string())
            .env("SELINON_TEST_SYSTEM", &self.system)
            .env("AMQP_URL", amqp_url())
            .env("REDIS_URL", redis_url())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the amqp_worker binary starts")
    }

    /// `kill -9` worker `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.workers[i].take() {
            child.start_kill().unwrap();
            let _ = child.wait().await;
        }
    }

    pub fn restart(&mut self, i: usize) {
        assert!(self.workers[i].is_none(), "worker {i} still runs");
        self.workers[i] = Some(self.spawn_worker());
    }

    /// Asserts every worker process is still alive (none crashed).
    pub fn assert_alive(&mut self) {
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(child) = w {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "worker {i} exited: a worker must never crash"
                );
            }
        }
    }

    pub async fn submit<M: Takes<Json> + ?Sized>(&self, flow: &Flow<M>, args: Json) -> String {
        self.client.submit(flow, args).await.unwrap()
    }

    /// Runs a flow to its end (at most 60 s).
    pub async fn run<M: Takes<Json> + ?Sized>(&self, flow: &Flow<M>, args: Json) -> FlowOutcome {
        let id = self.submit(flow, args).await;
        self.client
            .wait(&id, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("flow `{}`: {e}", flow.name))
    }

    /// Runs per task instance in namespace `ns`: `"Task:id"` → runs.
    pub async fn runs(&self, ns: &str) -> HashMap<String, i64> {
        let mut conn = self.redis.clone();
        redis::cmd("HGETALL")
            .arg(format!("selinon-test:runs:{ns}"))
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Runs per task name in namespace `ns`.
    pub async fn runs_by_task(&self, ns: &str) -> HashMap<String, i64> {
        let mut by_task = HashMap::new();
        for (key, n) in self.runs(ns).await {
            let task = key.split(':').next().unwrap().to_string();
            *by_task.entry(task).or_default() += n;
        }
        by_task
    }

    /// The queues of this cluster.
    pub fn queues(&self) -> Vec<String> {
        ["tasks", "side", "dispatcher"]
            .iter()
            .map(|q| format!("{}_{q}", self.prefix))
            .collect()
    }

    /// Stops the workers (SIGTERM, then kill) and deletes the cluster's queues.
    pub async fn stop(mut self) {
        for w in self.workers.iter_mut() {
            if let Some(child) = w.as_mut() {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .arg(pid.to_string())
                        .status();
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                }
            }
        }
        if let Ok(conn) = lapin::Connection::connect(
            &amqp_url(),
            selinon_runtime::amqp::broker::connection_properties("selinon-test"),
        )
        .await
        {
            if let Ok(channel) = conn.create_channel().await {
                for q in self.queues() {
                    let _ = channel
                        .queue_delete(&q, lapin::options::QueueDeleteOptions::default())
                        .await;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
