//! The Redis and PostgreSQL adapters one by one against the servers on 127.0.0.1 (REDIS_URL,
//! POSTGRES_URL): store / retrieve / delete / store_error with upstream's data layout, data
//! written by upstream (its own `result` table) read and extended, connections the server
//! drops, servers that do not answer and bad configurations (errors naming the storage and
//! where it is configured, no panics).
//!
//! A missing server fails these tests with how to start it (`selinon_testkit`).

use selinon_runtime::spec::{StorageAdapter, StorageSpec};
use selinon_runtime::storage::build_adapter;
use selinon_runtime::{json, DataStorage, Json, StorageError};

fn spec(module: &'static str, class: &'static str, configuration: String) -> StorageSpec {
    StorageSpec {
        name: "Results",
        origin: "nodes.yml:12",
        adapter: StorageAdapter::Builtin { module, class },
        configuration: Box::leak(configuration.into_boxed_str()),
        cache: None,
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn missing(e: &StorageError) -> bool {
    matches!(e, StorageError::Missing { .. })
}

#[tokio::test]
async fn redis_round_trip_with_upstream_layout() {
    let Some(url) = selinon_testkit::redis_url() else {
        return;
    };
    let (host, port) = selinon_testkit::host_port(&url, 6379);
    // `{VAR}` expansion as upstream (`port` and `host` from the environment).
    std::env::set_var("SELINON_TEST_REDIS_PORT", port.to_string());
    std::env::set_var("SELINON_TEST_REDIS_HOST", &host);
    let adapter = build_adapter(&spec(
        "selinon.storages.redis",
        "Redis",
        json!({"host": "{SELINON_TEST_REDIS_HOST}", "port": "{SELINON_TEST_REDIS_PORT}", "db": 5})
            .to_string(),
    ))
    .unwrap();
    assert!(!adapter.is_connected(), "connects lazily");
    adapter.connect().await.unwrap();

    let id = unique("redis-task");
    let result = json!({"name": "serde", "versions": [1, 2], "none": null});
    let args = json!({"name": "serde"});
    let record = adapter
        .store(&args, "flow1", "Collect", &id, &result)
        .await
        .unwrap();
    assert_eq!(record, id, "upstream returns the task id");
    assert_eq!(
        adapter.retrieve("flow1", "Collect", &id).await.unwrap(),
        result
    );

    // The layout upstream reads: key = task id in db 5, a JSON document.
    let client = redis::Client::open(format!("redis://{host}:{port}/5")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: String = redis::cmd("GET")
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    let doc: Json = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        doc,
        json!({"node_args": args, "flow_name": "flow1", "task_name": "Collect",
               "task_id": id, "result": result})
    );

    // A document written by upstream is read back.
    let upstream_id = unique("redis-upstream");
    let upstream_doc = json!({"node_args": null, "flow_name": "f", "task_name": "Old",
                              "task_id": upstream_id, "result": [1, "a"]});
    let _: () = redis::cmd("SET")
        .arg(&upstream_id)
        .arg(upstream_doc.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        adapter.retrieve("f", "Old", &upstream_id).await.unwrap(),
        json!([1, "a"])
    );

    // Another task's record under that id is not this task's result (upstream asserts).
    let e = adapter
        .retrieve("f", "Other", &upstream_id)
        .await
        .unwrap_err();
    assert!(missing(&e), "{e}");

    // store_error: upstream's Redis adapter does not implement it either.
    let e = adapter
        .store_error(&args, "flow1", "Collect", &id, "boom")
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotSupported(_)), "{e}");

    adapter.delete("flow1", "Collect", &id).await.unwrap();
    adapter.delete("f", "Old", &upstream_id).await.unwrap();
    let e = adapter.retrieve("flow1", "Collect", &id).await.unwrap_err();
    assert!(missing(&e), "{e}");
    let e = adapter.delete("flow1", "Collect", &id).await.unwrap_err();
    assert!(missing(&e), "{e}");
}

/// A connection string whose sessions use a schema of their own (`search_path`), so the test
/// has its own `result` table in the shared database.
fn in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}&application_name={schema}")
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

fn postgres(url: &str, schema: &str) -> Box<dyn DataStorage> {
    build_adapter(&spec(
        "selinon.storages.postgresql",
        "PostgreSQL",
        json!({"connection_string": in_schema(url, schema), "encoding": "utf-8", "echo": false})
            .to_string(),
    ))
    .unwrap()
}

#[tokio::test]
async fn postgres_creates_the_table_and_round_trips() {
    let Some(url) = selinon_testkit::postgres_url() else {
        return;
    };
    let schema = format!("selinon_new_{}", std::process::id());
    let db = admin(&url).await;
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await
    .unwrap();

    let adapter = postgres(&url, &schema);
    assert!(!adapter.is_connected(), "connects lazily");
    let id = unique("pg-task");
    let result = json!({"ok": true, "n": 3});
    let args = json!({"name": "x"});
    let record = adapter
        .store(&args, "flow1", "Collect", &id, &result)
        .await
        .unwrap();
    assert!(
        record.parse::<i32>().is_ok(),
        "upstream returns the row id: {record}"
    );
    assert_eq!(
        adapter.retrieve("flow1", "Collect", &id).await.unwrap(),
        result
    );
    let row = db
        .query_one(
            &format!(
                "SELECT id, flow_name, task_name, result::text, node_args::text \
                 FROM {schema}.result WHERE task_id = $1"
            ),
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0).to_string(), record);
    assert_eq!(row.get::<_, String>(1), "flow1");
    assert_eq!(row.get::<_, String>(2), "Collect");
    assert_eq!(
        serde_json::from_str::<Json>(&row.get::<_, String>(3)).unwrap(),
        result
    );
    assert_eq!(
        serde_json::from_str::<Json>(&row.get::<_, String>(4)).unwrap(),
        args
    );

    let e = adapter.retrieve("flow1", "Other", &id).await.unwrap_err();
    assert!(missing(&e), "{e}");
    let e = adapter
        .store_error(&args, "flow1", "Collect", &id, "boom")
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotSupported(_)), "{e}");
    adapter.delete("flow1", "Collect", &id).await.unwrap();
    let e = adapter.delete("flow1", "Collect", &id).await.unwrap_err();
    assert!(missing(&e), "{e}");

    // The server drops our connections (as a restart does): the pool replaces them.
    let killed = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(killed >= 1, "the adapter had a connection open");
    let id2 = unique("pg-after-drop");
    adapter
        .store(&args, "flow1", "Collect", &id2, &result)
        .await
        .expect("a dropped connection is replaced");
    assert_eq!(
        adapter.retrieve("flow1", "Collect", &id2).await.unwrap(),
        result
    );
    adapter.disconnect().await.unwrap();
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_reads_and_extends_a_table_upstream_created() {
    let Some(url) = selinon_testkit::postgres_url() else {
        return;
    };
    let schema = format!("selinon_up_{}", std::process::id());
    let db = admin(&url).await;
    // The DDL SQLAlchemy emits for upstream's `Result` model (no default on `id`), and a row
    // as upstream inserts it.
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE SEQUENCE {schema}.result_id;
         CREATE TABLE {schema}.result (
             id INTEGER NOT NULL,
             flow_name VARCHAR(128),
             task_name VARCHAR(128),
             task_id VARCHAR(255),
             result JSONB,
             node_args JSONB,
             PRIMARY KEY (id),
             UNIQUE (task_id)
         );
         INSERT INTO {schema}.result (id, flow_name, task_name, task_id, result, node_args)
         VALUES (nextval('{schema}.result_id'), 'flow1', 'Old', 'upstream-1',
                 '{{\"from\": \"python\"}}', '{{\"a\": 1}}');"
    ))
    .await
    .unwrap();

    let adapter = postgres(&url, &schema);
    assert_eq!(
        adapter
            .retrieve("flow1", "Old", "upstream-1")
            .await
            .unwrap(),
        json!({"from": "python"})
    );
    let id = unique("pg-next");
    let record = adapter
        .store(&json!(null), "flow1", "New", &id, &json!([1, 2]))
        .await
        .expect("inserts into upstream's table take ids from its sequence");
    assert_eq!(
        record, "2",
        "the next value of upstream's `result_id` sequence"
    );
    assert_eq!(
        adapter.retrieve("flow1", "New", &id).await.unwrap(),
        json!([1, 2])
    );
    adapter.disconnect().await.unwrap();
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn unreachable_servers_and_bad_configuration_name_the_storage() {
    // Nothing listens on port 1 of the loopback.
    let redis = build_adapter(&spec(
        "selinon.storages.redis",
        "Redis",
        json!({"host": "127.0.0.1", "port": 1, "socket_timeout": 1}).to_string(),
    ))
    .unwrap();
    let e = redis.connect().await.unwrap_err().to_string();
    assert!(e.contains("Results (nodes.yml:12)"), "{e}");
    assert!(e.contains("127.0.0.1:1"), "{e}");
    let e = redis
        .retrieve("f", "T", "id")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Results (nodes.yml:12)"), "{e}");

    let pg = build_adapter(&spec(
        "selinon.storages.postgresql",
        "PostgreSQL",
        json!({"connection_string": "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"})
            .to_string(),
    ))
    .unwrap();
    let e = pg
        .store(&json!(null), "f", "T", "id", &json!(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Results (nodes.yml:12)"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");

    for (module, class, configuration, expected) in [
        (
            "selinon.storages.postgresql",
            "PostgreSQL",
            json!({}),
            "connection_string",
        ),
        (
            "selinon.storages.redis",
            "Redis",
            json!({"port": "not a port"}),
            "port",
        ),
        (
            "selinon.storages.redis",
            "Redis",
            json!({"host": "{SELINON_TEST_SURELY_UNSET}"}),
            "SELINON_TEST_SURELY_UNSET",
        ),
    ] {
        let e = build_adapter(&spec(module, class, configuration.to_string()))
            .err()
            .expect("a bad configuration is an error")
            .to_string();
        assert!(e.contains("storage `Results` (nodes.yml:12)"), "{e}");
        assert!(e.contains(expected), "{e}");
    }
}
