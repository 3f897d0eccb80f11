//! The storage pool: one adapter per storage per process, built from the generated
//! [`StorageSpec`] and connected lazily, once.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tokio::sync::OnceCell;

#[cfg(feature = "postgres")]
use super::PostgreSql;
#[cfg(feature = "redis")]
use super::Redis;
#[cfg(feature = "s3")]
use super::S3;
use super::{CacheKind, Filesystem, InMemoryStorage, ResultCache};

use crate::spec::{StorageAdapter, StorageSpec, SystemSpec, TaskSpec};
use crate::storage::{DataStorage, StorageError};
use crate::trace::{TraceEvent, Tracer};

/// The built-in adapters this runtime has, as `module.class`.
pub const BUILTIN_ADAPTERS: &[&str] = &[
    "selinon.storages.memory.InMemoryStorage",
    "selinon.storages.filesystem.Filesystem",
    #[cfg(feature = "redis")]
    "selinon.storages.redis.Redis",
    #[cfg(feature = "postgres")]
    "selinon.storages.postgresql.PostgreSQL",
    #[cfg(feature = "s3")]
    "selinon.storages.s3.S3",
];

/// Expands `{VAR}` from the environment (`{{`/`}}` are literal braces), as upstream's
/// `str.format(**os.environ)`.
pub fn expand_env(text: &str) -> Result<String, StorageError> {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let value = std::env::var(&name).map_err(|_| {
                    StorageError::Configuration(format!(
                        "environment variable `{name}` used in `{text}` is not set"
                    ))
                })?;
                out.push_str(&value);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Expands `{VAR}` in every string of a user storage's configuration (built-ins expand the
/// fields they read themselves), so a user type sees the same values a built-in would.
fn expand_env_in(configuration: &Json) -> Result<Json, StorageError> {
    Ok(match configuration {
        Json::String(s) => Json::String(expand_env(s)?),
        Json::Array(items) => {
            Json::Array(items.iter().map(expand_env_in).collect::<Result<_, _>>()?)
        }
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), expand_env_in(v)?)))
                .collect::<Result<_, StorageError>>()?,
        ),
        other => other.clone(),
    })
}

/// Builds the adapter of a storage: a built-in by upstream module and class, or a user type.
pub fn build_adapter(storage: &StorageSpec) -> Result<Box<dyn DataStorage>, StorageError> {
    let configuration: Json = serde_json::from_str(storage.configuration).map_err(|e| {
        StorageError::Configuration(format!(
            "storage `{}` ({}): configuration is not JSON: {e}",
            storage.name, storage.origin
        ))
    })?;
    let named = |e: StorageError| match e {
        StorageError::Configuration(m) => StorageError::Configuration(format!(
            "storage `{}` ({}): {m}",
            storage.name, storage.origin
        )),
        other => other,
    };
    match &storage.adapter {
        StorageAdapter::User(build) => {
            build(&expand_env_in(&configuration).map_err(named)?).map_err(named)
        }
        StorageAdapter::Builtin { module, class } => {
            let module = module.trim_end_matches('.');
            match (module, *class) {
                ("selinon.storages.memory" | "selinon.storages", "InMemoryStorage") => Ok(
                    Box::new(InMemoryStorage::from_config(&configuration).map_err(named)?),
                ),
                ("selinon.storages.filesystem" | "selinon.storages", "Filesystem") => Ok(Box::new(
                    Filesystem::from_config(&configuration).map_err(named)?,
                )),
                #[cfg(feature = "redis")]
                ("selinon.storages.redis" | "selinon.storages", "Redis") => {
                    let label = format!("{} ({})", storage.name, storage.origin);
                    Ok(Box::new(
                        Redis::from_config_labelled(&configuration, &label).map_err(named)?,
                    ))
                }
                #[cfg(feature = "s3")]
                ("selinon.storages.s3" | "selinon.storages", "S3") => {
                    let label = format!("{} ({})", storage.name, storage.origin);
                    Ok(Box::new(
                        S3::from_config_labelled(&configuration, &label).map_err(named)?,
                    ))
                }
                #[cfg(feature = "postgres")]
                ("selinon.storages.postgresql" | "selinon.storages", "PostgreSQL") => {
                    let label = format!("{} ({})", storage.name, storage.origin);
                    Ok(Box::new(
                        PostgreSql::from_config_labelled(&configuration, &label).map_err(named)?,
                    ))
                }
                _ => Err(StorageError::Configuration(format!(
                    "storage `{}` ({}): no built-in adapter `{module}.{class}` in this runtime; \
                     built-ins: {}; or name your own type implementing `DataStorage`",
                    storage.name,
                    storage.origin,
                    BUILTIN_ADAPTERS.join(", ")
                ))),
            }
        }
    }
}

/// One adapter per storage, built and connected on first use; reads and writes by task name
/// (using `storage_task_name` consistently, for store and retrieve alike).
pub struct StoragePool {
    /// Tasks and storages by name.
    tasks: HashMap<&'static str, &'static TaskSpec>,
    storages: HashMap<&'static str, &'static StorageSpec>,
    slots: HashMap<String, OnceCell<Arc<dyn DataStorage>>>,
    /// The result cache of each storage that has `cache:`.
    caches: HashMap<String, ResultCache>,
    given: HashMap<String, Arc<dyn DataStorage>>,
    tracer: Tracer,
}

impl std::fmt::Debug for StoragePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoragePool")
            .field("storages", &self.slots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StoragePool {
    /// A pool over the storages of a system; `given` replaces the adapters of the storages it
    /// names (they are still connected lazily).
    pub fn new(
        system: &'static SystemSpec,
        given: HashMap<String, Arc<dyn DataStorage>>,
        tracer: Tracer,
    ) -> Self {
        let mut slots: HashMap<String, OnceCell<Arc<dyn DataStorage>>> = system
            .storages
            .iter()
            .map(|s| (s.name.to_string(), OnceCell::new()))
            .collect();
        for name in given.keys() {
            slots.entry(name.clone()).or_default();
        }
        let caches = system
            .storages
            .iter()
            .filter_map(|s| {
                let spec = s.cache.as_ref()?;
                let kind = CacheKind::from_name(spec.kind)?;
                Some((
                    s.name.to_string(),
                    ResultCache::new(kind, spec.max_cache_size),
                ))
            })
            .collect();
        StoragePool {
            tasks: system.tasks.iter().map(|t| (t.name, t)).collect(),
            storages: system.storages.iter().map(|s| (s.name, s)).collect(),
            slots,
            caches,
            given,
            tracer,
        }
    }

    /// The connected adapter of a storage (built and connected on first use).
    pub async fn get_connected_storage(
        &self,
        name: &str,
    ) -> Result<Arc<dyn DataStorage>, StorageError> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| StorageError::Configuration(format!("unknown storage `{name}`")))?;
        slot.get_or_try_init(|| async {
            let adapter: Arc<dyn DataStorage> = match self.given.get(name) {
                Some(a) => a.clone(),
                None => {
                    let spec = self.storages.get(name).ok_or_else(|| {
                        StorageError::Configuration(format!("unknown storage `{name}`"))
                    })?;
                    Arc::from(build_adapter(spec)?)
                }
            };
            self.tracer
                .emit_with(TraceEvent::StorageConnect, || json!({"storage_name": name}));
            if !adapter.is_connected() {
                adapter.connect().await?;
            }
            Ok(adapter)
        })
        .await
        .cloned()
    }

    /// The connected adapter of a storage as its concrete type, so that its own methods are
    /// callable; an error names both types when the storage's adapter is another.
    pub async fn get_connected_storage_as<T: DataStorage>(
        &self,
        name: &str,
    ) -> Result<Arc<T>, StorageError> {
        let adapter = self.get_connected_storage(name).await?;
        let actual = adapter.type_name();
        let any: Arc<dyn std::any::Any + Send + Sync> = adapter;
        any.downcast::<T>().map_err(|_| {
            StorageError::Configuration(format!(
                "storage `{name}` is a `{actual}`, not a `{}`",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The storage name of a task, if it has one.
    pub fn storage_name_of(&self, task_name: &str) -> Option<&'static str> {
        self.tasks.get(task_name).and_then(|t| t.storage)
    }

    /// Whether a task is `storage_readonly` (its results are not stored).
    pub fn is_storage_readonly(&self, task_name: &str) -> bool {
        self.tasks
            .get(task_name)
            .is_some_and(|t| t.storage_readonly)
    }

    /// The connected storage of a task, `None` if the task has none.
    pub async fn storage_of(
        &self,
        task_name: &str,
    ) -> Result<Option<Arc<dyn DataStorage>>, StorageError> {
        match self.storage_name_of(task_name) {
            Some(name) => Ok(Some(self.get_connected_storage(name).await?)),
            None => Ok(None),
        }
    }

    /// The name a task's results are stored under (`storage_task_name`).
    fn alias(&self, task_name: &str) -> String {
        self.tasks
            .get(task_name)
            .map(|t| t.storage_task_name())
            .unwrap_or(task_name)
            .to_string()
    }

    /// The stored result of a task instance.
    pub async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        let storage = self.storage_of(task_name).await?.ok_or_else(|| {
            StorageError::Configuration(format!(
                "task `{task_name}` has no storage, so it has no stored result"
            ))
        })?;
        let alias = self.alias(task_name);
        let storage_name = self.storage_name_of(task_name);
        let cache = storage_name.and_then(|n| self.caches.get(n));
        if let Some(cache) = cache {
            let info = || {
                json!({
                    "flow_name": flow_name,
                    "task_name": task_name,
                    "task_id": task_id,
                    "storage_name": storage_name,
                })
            };
            self.tracer.emit_with(TraceEvent::TaskResultCacheGet, info);
            if let Some(hit) = cache.get(task_id) {
                self.tracer.emit_with(TraceEvent::TaskResultCacheHit, info);
                return Ok(hit);
            }
            self.tracer.emit_with(TraceEvent::TaskResultCacheMiss, info);
        }
        self.tracer.emit_with(TraceEvent::StorageRetrieve, || {
            json!({
                "flow_name": flow_name,
                "task_name": task_name,
                "task_id": task_id,
                "storage_name": self.storage_name_of(task_name),
            })
        });
        let result = storage.retrieve(flow_name, &alias, task_id).await?;
        if let Some(cache) = cache {
            cache.add(task_id, result.clone());
            self.tracer.emit_with(TraceEvent::TaskResultCacheAdd, || {
                json!({
                    "flow_name": flow_name,
                    "task_name": task_name,
                    "task_id": task_id,
                    "storage_name": storage_name,
                })
            });
        }
        Ok(result)
    }

    /// Stores a task's result in its storage; `None` if the task has no storage.
    pub async fn store(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<Option<String>, StorageError> {
        let Some(storage) = self.storage_of(task_name).await? else {
            return Ok(None);
        };
        let alias = self.alias(task_name);
        let record = storage
            .store(node_args, flow_name, &alias, task_id, result)
            .await?;
        self.tracer.emit_with(TraceEvent::StorageStore, || {
            json!({
                "flow_name": flow_name,
                "task_name": task_name,
                "task_id": task_id,
                "storage_name": self.storage_name_of(task_name),
                "record_id": record,
            })
        });
        Ok(Some(record))
    }

    /// Stores the error of a task that failed for good.
    pub async fn store_error(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        error: &str,
    ) -> Result<(), StorageError> {
        let Some(storage) = self.storage_of(task_name).await? else {
            return Ok(());
        };
        let alias = self.alias(task_name);
        storage
            .store_error(node_args, flow_name, &alias, task_id, error)
            .await
    }

    /// Deletes a stored result.
    pub async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        let Some(storage) = self.storage_of(task_name).await? else {
            return Ok(());
        };
        let alias = self.alias(task_name);
        self.tracer.emit_with(
            TraceEvent::StorageDelete,
            || json!({"flow_name": flow_name, "task_name": task_name, "task_id": task_id}),
        );
        storage.delete(flow_name, &alias, task_id).await?;
        self.tracer.emit_with(
            TraceEvent::StorageDeleted,
            || json!({"flow_name": flow_name, "task_name": task_name, "task_id": task_id}),
        );
        Ok(())
    }

    /// Disconnects every connected adapter.
    pub async fn disconnect_all(&self) {
        for slot in self.slots.values() {
            if let Some(adapter) = slot.get() {
                let _ = adapter.disconnect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        std::env::set_var("SELINON_TEST_EXPAND", "x");
        assert_eq!(
            expand_env("a{SELINON_TEST_EXPAND}b{{c}}").unwrap(),
            "axb{c}"
        );
        assert!(expand_env("{SELINON_TEST_SURELY_UNSET_VAR}").is_err());
    }

    #[test]
    fn unknown_builtin_names_the_storage() {
        let spec = StorageSpec {
            name: "Mongo",
            origin: "nodes.yml:3",
            adapter: StorageAdapter::Builtin {
                module: "selinon.storages.mongodb",
                class: "MongoDB",
            },
            configuration: "{}",
            cache: None,
        };
        let err = build_adapter(&spec)
            .err()
            .expect("no redis adapter")
            .to_string();
        assert!(err.contains("storage `Mongo` (nodes.yml:3)"), "{err}");
        assert!(err.contains("selinon.storages.mongodb.MongoDB"), "{err}");
    }
}
