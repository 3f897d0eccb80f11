//! Storages for real (Redis, PostgreSQL and the filesystem on 127.0.0.1): a flow whose tasks
//! write to three storages and whose conditions read the results back, in-process and over
//! AMQP; upstream's data layout; a Redis server killed mid-flow.

mod support;

use std::time::Duration;

use selinon_runtime::{json, Runtime, TraceEvent, TraceRecorder};
use selinon_tests::{flows, testapp};
use support::{redis_url, services, Cluster};

async fn counter() -> testapp::Counter {
    let client = redis::Client::open(redis_url()).unwrap();
    testapp::Counter(redis::aio::ConnectionManager::new(client).await.unwrap())
}

fn store_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("selinon-storages-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_storages_in_process_with_upstream_layout() {
    if !services() {
        return;
    }
    let Some(postgres) = selinon_testkit::postgres_url() else {
        return;
    };
    std::env::set_var("SELINON_TEST_STORE", store_dir("inproc"));
    std::env::set_var("SELINON_TEST_PREFIX", "unused");
    let rt = Runtime::builder(&flows::SYSTEM)
        .resource(counter().await)
        .without_config_trace()
        .build();

    let out = rt
        .run(&flows::storages3::FLOW, json!({"go": true}))
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(
        out.finished("Accept").len(),
        1,
        "every condition read true: {out:?}"
    );
    assert!(out.finished("Reject").is_empty());

    // Upstream's layout: Redis key = task id, a JSON document with the result.
    let redis_id = &out.finished("InRedis")[0];
    let client = redis::Client::open("redis://127.0.0.1:6379/3").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: String = redis::cmd("GET")
        .arg(redis_id)
        .query_async(&mut conn)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["task_name"], "InRedis");
    assert_eq!(doc["flow_name"], "storages3");
    assert_eq!(doc["result"], json!({"go": true}));
    assert_eq!(doc["node_args"], json!({"go": true}));

    // PostgreSQL: the `result` table.
    let pg_id = &out.finished("InPostgres")[0];
    let (pg, connection) = tokio_postgres::connect(&postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = pg
        .query_one(
            "SELECT task_name, flow_name, result::text FROM result WHERE task_id = $1",
            &[pg_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "InPostgres");
    assert_eq!(row.get::<_, String>(1), "storages3");
    let result: serde_json::Value = serde_json::from_str(&row.get::<_, String>(2)).unwrap();
    assert_eq!(result, json!({"go": true}));

    // Results read back through the runtime, from the right storage each.
    for task in ["InRedis", "InPostgres", "InFiles"] {
        let id = &out.finished(task)[0];
        let v = rt.task_result("storages3", task, id).await.unwrap();
        assert_eq!(v, json!({"go": true}), "{task}");
    }

    // A false result read from PostgreSQL takes the other branch.
    let out = rt
        .run(&flows::storages3::FLOW, json!({"go": false}))
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    assert!(out.finished("Accept").is_empty(), "{out:?}");
    assert_eq!(out.finished("Reject").len(), 1, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_storages_over_amqp() {
    if !services() {
        return;
    }
    if selinon_testkit::postgres_url().is_none() {
        return;
    }
    let cluster = Cluster::start("storages", 2).await;
    let out = cluster
        .run(&flows::storages3::FLOW, json!({"go": true}))
        .await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("Accept").len(), 1, "{out:?}");
    let out = cluster
        .run(&flows::storages3::FLOW, json!({"go": false}))
        .await;
    assert_eq!(out.finished("Reject").len(), 1, "{out:?}");
    cluster.stop().await;
}

/// A Redis server for this test only, on a free loopback port.
fn start_redis(port: u16) -> std::process::Child {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server runs (it comes with Redis)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server on port {port} did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_server_killed_mid_flow_costs_retries_not_the_flow() {
    if !services() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::env::set_var("SELINON_TEST_KILLABLE_REDIS_PORT", port.to_string());
    std::env::set_var("SELINON_TEST_STORE", store_dir("killed"));
    let mut server = start_redis(port);
    let recorder = TraceRecorder::new();
    let rt = Runtime::builder(&flows::SYSTEM)
        .resource(counter().await)
        .trace_sink(recorder.clone())
        .without_config_trace()
        .build();
    // Fragile runs 1.5 s; its server dies meanwhile, so storing its result fails.
    let handle = rt.run(
        &flows::fragile::FLOW,
        json!({"ns": format!("killed-{port}"), "sleep": {"Fragile": 1500}}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut server = start_redis(port);
    let out = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the flow ends")
        .unwrap();
    server.kill().unwrap();
    let _ = server.wait();
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("A").len(), 1, "{out:?}");
    let retries = recorder.of(TraceEvent::TaskRetry);
    assert!(!retries.is_empty(), "the failed store was retried");
    assert!(
        retries.iter().all(|r| r["task_name"] == "Fragile"),
        "{retries:?}"
    );
    let storage_errors: Vec<String> = retries
        .iter()
        .map(|r| r["what"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        storage_errors.iter().any(|w| w.contains("KillableRedis")),
        "the error names the storage and its config line: {storage_errors:?}"
    );
}

/// A raw HTTP request to the local S3 server (moto takes unsigned requests).
fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_adapter_round_trip_with_upstream_layout() {
    let Some(moto_server) = selinon_testkit::moto_server() else {
        return;
    };
    use selinon_runtime::storage::S3;
    use selinon_runtime::{DataStorage, StorageError};

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new(&moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        let _ = server.kill();
        let _ = server.wait();
        panic!("moto_server did not start on port {port}");
    }
    let created = http(
        port,
        &format!("PUT /results HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");

    let adapter = S3::from_config_labelled(
        &json!({
            "bucket": "results",
            "endpoint_url": format!("http://127.0.0.1:{port}"),
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }),
        "S3Results (nodes.yml:40)",
    )
    .unwrap();
    adapter.connect().await.unwrap();
    let result = json!({"license": "MIT", "files": 42});
    adapter
        .store(&json!({}), "flow", "Task", "task-1", &result)
        .await
        .unwrap();
    assert_eq!(
        adapter.retrieve("flow", "Task", "task-1").await.unwrap(),
        result
    );
    // Upstream's layout, read as upstream reads it (boto3, which comes with moto): the object
    // key is the task id, the body the JSON result.
    let python = std::path::Path::new(&moto_server).with_file_name("python");
    let script = format!(
        "import boto3; s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', \
         aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1'); \
         print(s3.get_object(Bucket='results', Key='task-1')['Body'].read().decode())"
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body, result);
    let missing = adapter.retrieve("flow", "Task", "nope").await.unwrap_err();
    assert!(matches!(missing, StorageError::Missing { .. }), "{missing}");
    adapter.delete("flow", "Task", "task-1").await.unwrap();
    assert!(adapter.retrieve("flow", "Task", "task-1").await.is_err());
    // Deleting what is not there is an error, as upstream.
    let gone = adapter.delete("flow", "Task", "task-1").await.unwrap_err();
    assert!(matches!(gone, StorageError::Missing { .. }), "{gone}");
    let _ = server.kill();
    let _ = server.wait();
}
