//! The S3 storage adapter (`import: selinon.storages.s3`, `classname: S3`) for AWS and
//! S3-compatible servers (MinIO, moto, …), through the `object_store` crate. Layout as
//! upstream: the object key is the task id, the body the result as JSON.

use std::sync::Arc;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::storage::{DataStorage, StorageError, StorageFromConfig};

/// Results in an S3 bucket. Configuration (upstream's keys, `{VAR}` expanded): `bucket`
/// (required), `location` (the region), `endpoint_url`, `use_ssl`, `aws_access_key_id`,
/// `aws_secret_access_key`, `region_name`; `serialize_json` is accepted (results are always
/// JSON here). Credentials not given come from the environment (`AWS_*`). The bucket must
/// exist.
pub struct S3 {
    builder: AmazonS3Builder,
    bucket: String,
    label: String,
    store: OnceCell<Arc<dyn ObjectStore>>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn text(configuration: &Json, key: &str) -> Result<Option<String>, StorageError> {
    match configuration.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(super::expand_env(s)?)),
        Some(Json::Bool(b)) => Ok(Some(b.to_string())),
        Some(Json::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(StorageError::Configuration(format!(
            "`{key}` must be a string, not {other}"
        ))),
    }
}

impl S3 {
    /// Built from upstream's configuration keys; `label` names the storage in errors.
    pub fn from_config_labelled(configuration: &Json, label: &str) -> Result<Self, StorageError> {
        let bucket = text(configuration, "bucket")?
            .ok_or_else(|| StorageError::Configuration("`bucket` is required".into()))?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(region) =
            text(configuration, "region_name")?.or(text(configuration, "location")?)
        {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = text(configuration, "endpoint_url")? {
            let http = endpoint.starts_with("http://");
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(http)
                .with_virtual_hosted_style_request(false);
        }
        if text(configuration, "use_ssl")?.as_deref() == Some("false") {
            builder = builder.with_allow_http(true);
        }
        if let Some(key) = text(configuration, "aws_access_key_id")? {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = text(configuration, "aws_secret_access_key")? {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(S3 {
            builder,
            bucket,
            label: label.to_string(),
            store: OnceCell::new(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Backend {
            storage: self.label.clone(),
            message: format!("bucket {}: {e}", self.bucket),
        }
    }

    async fn store_handle(&self) -> Result<&Arc<dyn ObjectStore>, StorageError> {
        self.store
            .get_or_try_init(|| async {
                let store = self.builder.clone().build().map_err(|e| self.error(e))?;
                Ok(Arc::new(store) as Arc<dyn ObjectStore>)
            })
            .await
    }
}

impl StorageFromConfig for S3 {
    fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        S3::from_config_labelled(configuration, "S3")
    }
}

#[async_trait]
impl DataStorage for S3 {
    async fn connect(&self) -> Result<(), StorageError> {
        self.store_handle().await.map(|_| ())
    }

    fn is_connected(&self) -> bool {
        self.store.initialized()
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
        let store = self.store_handle().await?;
        let got = match store.get(&Path::from(task_id)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Missing {
                    flow_name: flow_name.into(),
                    task_name: task_name.into(),
                    task_id: task_id.into(),
                })
            }
            Err(e) => return Err(self.error(e)),
        };
        let bytes = got.bytes().await.map_err(|e| self.error(e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.error(format!("object {task_id} is not JSON: {e}")))
    }

    async fn store(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        _task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        let store = self.store_handle().await?;
        let body = serde_json::to_vec(result).map_err(|e| self.error(e))?;
        store
            .put(&Path::from(task_id), PutPayload::from(body))
            .await
            .map_err(|e| self.error(e))?;
        Ok(task_id.to_string())
    }

    /// Deletes a result; a missing object is an error, as upstream (S3 deletes are
    /// idempotent, so the object is looked up first).
    async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        let store = self.store_handle().await?;
        let path = Path::from(task_id);
        match store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Missing {
                    flow_name: flow_name.into(),
                    task_name: task_name.into(),
                    task_id: task_id.into(),
                })
            }
            Err(e) => return Err(self.error(e)),
        }
        store.delete(&path).await.map_err(|e| self.error(e))
    }
}
