//! The PostgreSQL storage adapter (`import: selinon.storages.postgresql`, `classname:
//! PostgreSQL`) with upstream's table: `result (id, flow_name, task_name, task_id unique,
//! result jsonb, node_args jsonb)`, created when missing.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::storage::{DataStorage, StorageError, StorageFromConfig};

/// Upstream's table as SQLAlchemy creates it (`Column(Integer, Sequence('result_id'),
/// primary_key=True)`: a sequence `result_id`; upstream's own table has no default on `id`,
/// so inserts name `nextval('result_id')` themselves). Ours gets the default as well.
const CREATE: &str = "CREATE SEQUENCE IF NOT EXISTS result_id;
CREATE TABLE IF NOT EXISTS result (
    id INTEGER NOT NULL DEFAULT nextval('result_id') PRIMARY KEY,
    flow_name VARCHAR(128),
    task_name VARCHAR(128),
    task_id VARCHAR(255) UNIQUE,
    result JSONB,
    node_args JSONB
)";

/// Whether `result.id` has a default (a table created by this adapter, or by an earlier one
/// with `SERIAL`); without one (upstream's table) inserts take `nextval('result_id')`.
const ID_HAS_DEFAULT: &str = "SELECT column_default IS NOT NULL FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'result' AND column_name = 'id'";

const INSERT_DEFAULT_ID: &str =
    "INSERT INTO result (flow_name, task_name, task_id, result, node_args)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (task_id) DO UPDATE
    SET flow_name = EXCLUDED.flow_name, task_name = EXCLUDED.task_name,
        result = EXCLUDED.result, node_args = EXCLUDED.node_args
    RETURNING id";

const INSERT_NEXTVAL_ID: &str =
    "INSERT INTO result (id, flow_name, task_name, task_id, result, node_args)
    VALUES (nextval('result_id'), $1, $2, $3, $4, $5)
    ON CONFLICT (task_id) DO UPDATE
    SET flow_name = EXCLUDED.flow_name, task_name = EXCLUDED.task_name,
        result = EXCLUDED.result, node_args = EXCLUDED.node_args
    RETURNING id";

/// Results in PostgreSQL. Configuration: `connection_string` (required, SQLAlchemy style
/// `postgresql://user:password@host:port/db`, `{VAR}` expanded); `encoding` and `echo` are
/// accepted and ignored. A pool of connections; broken ones are replaced (a server restart
/// costs the requests in flight, not the adapter).
pub struct PostgreSql {
    connection_string: String,
    label: String,
    /// The pool and the insert statement that suits the table.
    pool: OnceCell<(Pool, &'static str)>,
}

impl std::fmt::Debug for PostgreSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgreSql")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl PostgreSql {
    /// A client for the database at `connection_string`; `label` names the storage in errors. Nothing is connected until first use.
    pub fn new(connection_string: impl Into<String>, label: impl Into<String>) -> Self {
        PostgreSql {
            connection_string: connection_string.into(),
            label: label.into(),
            pool: OnceCell::new(),
        }
    }

    /// Built from upstream's configuration keys; `label` names the storage in errors.
    pub fn from_config_labelled(configuration: &Json, label: &str) -> Result<Self, StorageError> {
        let raw = configuration
            .get("connection_string")
            .and_then(Json::as_str)
            .ok_or_else(|| {
                StorageError::Configuration(
                    "`connection_string` is required, e.g. postgresql://user@localhost:5432/db"
                        .into(),
                )
            })?;
        let mut cs = super::expand_env(raw)?;
        // SQLAlchemy names a driver: `postgresql+psycopg2://…`.
        if let Some(rest) = cs.strip_prefix("postgresql+") {
            if let Some(i) = rest.find("://") {
                cs = format!("postgresql{}", &rest[i..]);
            }
        }
        Ok(PostgreSql::new(cs, label))
    }

    fn error(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Backend {
            storage: self.label.clone(),
            message: e.to_string(),
        }
    }

    async fn pool(&self) -> Result<(&Pool, &'static str), StorageError> {
        self.pool
            .get_or_try_init(|| async {
                let config: tokio_postgres::Config = self
                    .connection_string
                    .parse()
                    .map_err(|e| self.error(format!("connection_string: {e}")))?;
                let manager = Manager::from_config(
                    config,
                    tokio_postgres::NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Verified,
                    },
                );
                let pool = Pool::builder(manager)
                    .max_size(16)
                    .build()
                    .map_err(|e| self.error(e))?;
                let client = pool
                    .get()
                    .await
                    .map_err(|e| self.error(format!("cannot connect: {e}")))?;
                if let Err(e) = client.batch_execute(CREATE).await {
                    // Workers starting together race on CREATE … IF NOT EXISTS; the loser
                    // sees a duplicate. The table being there is all that matters.
                    let there = client
                        .query_one("SELECT to_regclass('result') IS NOT NULL", &[])
                        .await
                        .map(|row| row.get::<_, bool>(0))
                        .unwrap_or(false);
                    if !there {
                        return Err(self.error(format!("cannot create the `result` table: {e}")));
                    }
                }
                let has_default = client
                    .query_opt(ID_HAS_DEFAULT, &[])
                    .await
                    .map_err(|e| self.error(e))?
                    .is_some_and(|row| row.get::<_, bool>(0));
                let insert = if has_default {
                    INSERT_DEFAULT_ID
                } else {
                    INSERT_NEXTVAL_ID
                };
                Ok((pool, insert))
            })
            .await
            .map(|(pool, insert)| (pool, *insert))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        self.pool()
            .await?
            .0
            .get()
            .await
            .map_err(|e| self.error(format!("cannot connect: {e}")))
    }
}

impl StorageFromConfig for PostgreSql {
    fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        PostgreSql::from_config_labelled(configuration, "PostgreSQL")
    }
}

#[async_trait]
impl DataStorage for PostgreSql {
    async fn connect(&self) -> Result<(), StorageError> {
        self.pool().await.map(|_| ())
    }

    fn is_connected(&self) -> bool {
        self.pool.initialized()
    }

    async fn disconnect(&self) -> Result<(), StorageError> {
        if let Some((pool, _)) = self.pool.get() {
            pool.close();
        }
        Ok(())
    }

    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT task_name, result FROM result WHERE task_id = $1",
                &[&task_id],
            )
            .await
            .map_err(|e| self.error(e))?;
        match row {
            Some(row) if row.get::<_, Option<String>>(0).as_deref() == Some(task_name) => {
                Ok(row.get::<_, Option<Json>>(1).unwrap_or(Json::Null))
            }
            _ => Err(StorageError::Missing {
                flow_name: flow_name.into(),
                task_name: task_name.into(),
                task_id: task_id.into(),
            }),
        }
    }

    /// Stores a result; a task run again (at-least-once delivery) replaces its record.
    async fn store(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        let client = self.client().await?;
        let insert = self.pool().await?.1;
        let row = client
            .query_one(
                insert,
                &[&flow_name, &task_name, &task_id, result, node_args],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get::<_, i32>(0).to_string())
    }

    async fn delete(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<(), StorageError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM result WHERE task_id = $1", &[&task_id])
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
