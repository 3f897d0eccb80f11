//! `selinon.storages.memory.InMemoryStorage`: results in a map in this process, by task id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use crate::storage::{DataStorage, StorageError};

/// Where `echo` prints each stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Echo {
    Off,
    Stdout,
    Stderr,
}

/// Keeps results in memory, keyed by task id (upstream `InMemoryStorage`). Configuration:
/// `echo` (`false`, `true`/`stdout`, `stderr`) prints each stored record, `json` prints it as
/// one JSON line.
#[derive(Debug)]
pub struct InMemoryStorage {
    records: Mutex<HashMap<String, Record>>,
    connected: AtomicBool,
    echo: Echo,
    json: bool,
}

#[derive(Clone, Debug)]
struct Record {
    node_args: Json,
    flow_name: String,
    task_name: String,
    result: Json,
}

impl Default for InMemoryStorage {
    fn default() -> Self {
        InMemoryStorage {
            records: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            echo: Echo::Off,
            json: false,
        }
    }
}

impl InMemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        InMemoryStorage::default()
    }

    /// Built from the YAML `configuration` (a map; anything else means the defaults).
    pub fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        let echo = match configuration.get("echo") {
            None | Some(Json::Null) | Some(Json::Bool(false)) => Echo::Off,
            Some(Json::Bool(true)) => Echo::Stdout,
            Some(Json::String(s)) if s == "stdout" => Echo::Stdout,
            Some(Json::String(s)) if s == "stderr" => Echo::Stderr,
            Some(other) => {
                return Err(StorageError::Configuration(format!(
                    "InMemoryStorage: `echo` must be false, true, \"stdout\" or \"stderr\", not {other}"
                )))
            }
        };
        let json = match configuration.get("json") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(StorageError::Configuration(format!(
                    "InMemoryStorage: `json` must be a boolean, not {other}"
                )))
            }
        };
        Ok(InMemoryStorage {
            echo,
            json,
            ..InMemoryStorage::default()
        })
    }

    /// How many results are stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no result is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl DataStorage for InMemoryStorage {
    async fn connect(&self) -> Result<(), StorageError> {
        self.connected.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    async fn disconnect(&self) -> Result<(), StorageError> {
        self.connected.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.lock()
            .get(task_id)
            .map(|r| r.result.clone())
            .ok_or_else(|| StorageError::Missing {
                flow_name: flow_name.to_string(),
                task_name: task_name.to_string(),
                task_id: task_id.to_string(),
            })
    }

    async fn store(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        let record = Record {
            node_args: node_args.clone(),
            flow_name: flow_name.to_string(),
            task_name: task_name.to_string(),
            result: result.clone(),
        };
        if self.echo != Echo::Off {
            let text = if self.json {
                json!({
                    "node_args": record.node_args,
                    "flow_name": record.flow_name,
                    "task_name": record.task_name,
                    "task_id": task_id,
                    "result": record.result,
                })
                .to_string()
            } else {
                format!(
                    "{flow_name}/{task_name}/{task_id}: {}",
                    serde_json::to_string_pretty(result).unwrap_or_default()
                )
            };
            match self.echo {
                Echo::Stderr => eprintln!("{text}"),
                _ => println!("{text}"),
            }
        }
        self.lock().insert(task_id.to_string(), record);
        Ok(task_id.to_string())
    }

    async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        self.lock()
            .remove(task_id)
            .map(|_| ())
            .ok_or_else(|| StorageError::Missing {
                flow_name: flow_name.to_string(),
                task_name: task_name.to_string(),
                task_id: task_id.to_string(),
            })
    }
}

/// So a configuration can name it as a user storage too (`pub type Store = InMemoryStorage;`),
/// e.g. as the stand-in `selinon new` scaffolds.
impl crate::storage::StorageFromConfig for InMemoryStorage {
    fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        InMemoryStorage::from_config(configuration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_retrieves_by_id() {
        let s = InMemoryStorage::from_config(&json!({"echo": false})).unwrap();
        s.connect().await.unwrap();
        assert!(s.is_connected());
        s.store(&json!({}), "f", "T", "id1", &json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(s.retrieve("f", "T", "id1").await.unwrap(), json!({"a": 1}));
        assert!(matches!(
            s.retrieve("f", "T", "id2").await,
            Err(StorageError::Missing { .. })
        ));
        assert!(matches!(
            s.store_error(&json!({}), "f", "T", "id1", "boom").await,
            Err(StorageError::NotSupported(_))
        ));
        s.delete("f", "T", "id1").await.unwrap();
        assert!(s.is_empty());
        assert!(InMemoryStorage::from_config(&json!({"echo": 3})).is_err());
    }
}
