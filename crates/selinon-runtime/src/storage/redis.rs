//! The Redis storage adapter (`import: selinon.storages.redis`, `classname: Redis`), with
//! upstream's layout: the key is the task id, the value a JSON document
//! `{"node_args", "flow_name", "task_name", "task_id", "result"}`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value as Json};
use tokio::sync::OnceCell;

use crate::storage::{DataStorage, StorageError, StorageFromConfig};

/// Results in Redis. Configuration (upstream's keys, `{VAR}` expanded): `host` (default
/// `localhost`), `port` (6379), `db` (0), `password`, `socket_timeout` (seconds),
/// `unix_socket_path`.
pub struct Redis {
    url: String,
    label: String,
    timeout: Option<Duration>,
    conn: OnceCell<redis::aio::ConnectionManager>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn text(configuration: &Json, key: &str) -> Result<Option<String>, StorageError> {
    match configuration.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(super::expand_env(s)?)),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(StorageError::Configuration(format!(
            "`{key}` must be a string or a number, not {other}"
        ))),
    }
}

impl Redis {
    /// An adapter for `url` (`redis://host:port/db`); `label` names it in errors.
    pub fn new(url: impl Into<String>, label: impl Into<String>) -> Self {
        Redis {
            url: url.into(),
            label: label.into(),
            timeout: None,
            conn: OnceCell::new(),
        }
    }

    /// Built from upstream's configuration keys; `label` names the storage in errors.
    pub fn from_config_labelled(configuration: &Json, label: &str) -> Result<Self, StorageError> {
        let host = text(configuration, "host")?.unwrap_or_else(|| "localhost".into());
        let port: u16 = text(configuration, "port")?
            .unwrap_or_else(|| "6379".into())
            .parse()
            .map_err(|e| StorageError::Configuration(format!("`port`: {e}")))?;
        let db: u32 = text(configuration, "db")?
            .unwrap_or_else(|| "0".into())
            .parse()
            .map_err(|e| StorageError::Configuration(format!("`db`: {e}")))?;
        let password = text(configuration, "password")?;
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let url = match text(configuration, "unix_socket_path")? {
            Some(path) => format!("redis+unix://{path}?db={db}"),
            None => format!("redis://{auth}{host}:{port}/{db}"),
        };
        let mut adapter = Redis::new(url, label);
        adapter.timeout = configuration
            .get("socket_timeout")
            .and_then(Json::as_f64)
            .map(Duration::from_secs_f64);
        Ok(adapter)
    }

    fn error(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Backend {
            storage: self.label.clone(),
            message: format!("{}: {e}", self.url.split('@').next_back().unwrap_or("")),
        }
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StorageError> {
        self.conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str()).map_err(|e| self.error(e))?;
                let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2);
                redis::aio::ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|e| self.error(format!("cannot connect: {e}")))
            })
            .await
            .cloned()
    }
}

impl StorageFromConfig for Redis {
    fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        Redis::from_config_labelled(configuration, "Redis")
    }
}

#[async_trait]
impl DataStorage for Redis {
    async fn connect(&self) -> Result<(), StorageError> {
        self.conn().await.map(|_| ())
    }

    fn is_connected(&self) -> bool {
        self.conn.initialized()
    }

    async fn disconnect(&self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        let mut conn = self.conn().await?;
        let text: Option<String> = redis::cmd("GET")
            .arg(task_id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let missing = || StorageError::Missing {
            flow_name: flow_name.into(),
            task_name: task_name.into(),
            task_id: task_id.into(),
        };
        let record: Json = serde_json::from_str(&text.ok_or_else(missing)?)
            .map_err(|e| self.error(format!("the record of {task_id} is not JSON: {e}")))?;
        if record["task_name"] != json!(task_name) {
            return Err(missing());
        }
        Ok(record["result"].clone())
    }

    async fn store(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        let mut conn = self.conn().await?;
        let record = json!({
            "node_args": node_args,
            "flow_name": flow_name,
            "task_name": task_name,
            "task_id": task_id,
            "result": result,
        });
        let _: () = redis::cmd("SET")
            .arg(task_id)
            .arg(record.to_string())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(task_id.to_string())
    }

    async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        let n: i64 = redis::cmd("DEL")
            .arg(task_id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        if n == 0 {
            return Err(StorageError::Missing {
                flow_name: flow_name.into(),
                task_name: task_name.into(),
                task_id: task_id.into(),
            });
        }
        Ok(())
    }
}
