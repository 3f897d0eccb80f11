//! `selinon.storages.filesystem.Filesystem`: one JSON file per result,
//! `<path>/<flow>/<task>/<id>.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value as Json;

use crate::storage::{DataStorage, StorageError};

/// Results as JSON files under a directory (upstream `Filesystem`). Configuration: `path`
/// (default `{PWD}`), `{VAR}` placeholders expanded from the environment.
#[derive(Debug)]
pub struct Filesystem {
    path: PathBuf,
    connected: AtomicBool,
}

impl Filesystem {
    /// Results under `path`, used as given (`from_config` expands placeholders first).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Filesystem {
            path: path.into(),
            connected: AtomicBool::new(false),
        }
    }

    /// Built from the YAML `configuration`.
    pub fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        let path = match configuration.get("path") {
            None | Some(Json::Null) => "{PWD}".to_string(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => {
                return Err(StorageError::Configuration(format!(
                    "Filesystem: `path` must be a string, not {other}"
                )))
            }
        };
        Ok(Filesystem::new(super::expand_env(&path)?))
    }

    fn file(&self, flow_name: &str, task_name: &str, task_id: &str) -> PathBuf {
        self.path
            .join(flow_name)
            .join(task_name)
            .join(format!("{task_id}.json"))
    }

    fn backend(&self, err: impl std::fmt::Display) -> StorageError {
        StorageError::Backend {
            storage: format!("Filesystem({})", self.path.display()),
            message: err.to_string(),
        }
    }
}

#[async_trait]
impl DataStorage for Filesystem {
    async fn connect(&self) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.path).map_err(|e| self.backend(e))?;
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
        let file = self.file(flow_name, task_name, task_id);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.backend(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::Missing {
                flow_name: flow_name.to_string(),
                task_name: task_name.to_string(),
                task_id: task_id.to_string(),
            }),
            Err(e) => Err(self.backend(e)),
        }
    }

    async fn store(
        &self,
        _node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        let file = self.file(flow_name, task_name, task_id);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.backend(e))?;
        }
        let text = serde_json::to_vec(result).map_err(|e| self.backend(e))?;
        std::fs::write(&file, text).map_err(|e| self.backend(e))?;
        Ok(file.display().to_string())
    }

    async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        std::fs::remove_file(self.file(flow_name, task_name, task_id)).map_err(|e| self.backend(e))
    }
}
