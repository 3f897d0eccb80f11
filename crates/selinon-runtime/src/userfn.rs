//! The user functions a dispatcher pass calls: `foreach` functions (how many nodes an edge
//! starts, and with which arguments) and selective run functions (whether a task of a
//! selective run reuses an earlier result).
//!
//! Each comes in two shapes, and generated code accepts either (the [`foreach!`](crate::foreach!) and
//! [`selective_run!`](crate::selective_run!) macros pick the shape from the function's signature):
//!
//! * synchronous, reading only what the engine fetched before the call:
//!   `fn(db: &Db<'_>, node_args: &Json) -> impl IntoIterator<Item = Json>` and
//!   `fn(input: &SelectiveRunInput<'_>) -> Option<String>`;
//! * `async`, with the storages at hand (upstream hands both functions its `StoragePool`):
//!   `async fn(pool: &StorageView<'_>, node_args: &Json) -> Result<impl IntoIterator<Item =
//!   Json>, E>` and `async fn(input: &SelectiveRunInput<'_>, pool: &StorageView<'_>) ->
//!   Result<Option<String>, E>`, where `E` converts into [`UserFnError`] (any
//!   `std::error::Error` does, so `?` works).
//!
//! ```
//! use selinon_runtime::userfn::{StorageView, UserFnError};
//! use selinon_runtime::{json, Db, Json};
//!
//! /// One item per URL of the flow arguments (synchronous).
//! pub fn urls(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
//!     node_args["urls"].as_array().cloned().unwrap_or_default()
//! }
//!
//! /// One item per page of the parent task's result, as stored (asynchronous).
//! pub async fn pages(pool: &StorageView<'_>, _node_args: &Json) -> Result<Vec<Json>, UserFnError> {
//!     let Some(result) = pool.get("Crawl").await? else {
//!         return Err(UserFnError::fatal("`Crawl` is not a parent of this edge"));
//!     };
//!     let pages = result["pages"].as_u64().unwrap_or(0);
//!     Ok((0..pages).map(|page| json!({"page": page})).collect())
//! }
//! ```
//!
//! An error of an `async` function is [`UserFnError::Retry`] (the default for any error) or
//! [`UserFnError::Fatal`]: see there what the pass does with each.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::spec::{BoxFuture, Db, SelectiveRunInput};
use crate::storage::{DataStorage, StorageError, StoragePool};

/// The storages as a `foreach` or selective run function sees them (upstream's `StoragePool`,
/// with its mapping of parent node names to ids): the results of the parent nodes, any
/// storage of the system by name, connected on first use.
#[derive(Clone, Copy)]
pub struct StorageView<'a> {
    pool: Option<&'a StoragePool>,
    flow_name: &'a str,
    parent: &'a Json,
    db: &'a Db<'a>,
}

impl fmt::Debug for StorageView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageView")
            .field("flow_name", &self.flow_name)
            .field("parent", &self.parent)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl<'a> StorageView<'a> {
    /// A view over `pool` (`None`: an engine environment without storages, where every storage
    /// access fails) for a node of `flow_name` whose parent map is `parent`; `db` holds the
    /// results already fetched (those a synchronous `foreach` function reads).
    pub fn new(
        pool: Option<&'a StoragePool>,
        flow_name: &'a str,
        parent: &'a Json,
        db: &'a Db<'a>,
    ) -> Self {
        StorageView {
            pool,
            flow_name,
            parent,
            db,
        }
    }

    /// The flow the function runs for.
    pub fn flow_name(&self) -> &'a str {
        self.flow_name
    }

    /// The parent map: ids of the finished nodes the function runs for, by name (the edge's
    /// source nodes for a `foreach` function, the task's parents for a selective run function).
    pub fn parent(&self) -> &'a Json {
        self.parent
    }

    /// The results fetched before the call: for a `foreach` function, those of the edge's
    /// source tasks that have a storage.
    pub fn db(&self) -> &'a Db<'a> {
        self.db
    }

    fn pool(&self) -> Result<&'a StoragePool, StorageError> {
        self.pool.ok_or_else(|| {
            StorageError::Configuration(
                "this engine environment lends no storages to foreach and selective run \
                 functions"
                    .to_string(),
            )
        })
    }

    /// The stored result of the parent task `task_name` (upstream `StoragePool.get`): already
    /// fetched, or read from its storage; `None` when it is not a parent.
    pub async fn get(&self, task_name: &str) -> Result<Option<Json>, StorageError> {
        if let Some(result) = self.db.get(task_name) {
            return Ok(Some(result.clone()));
        }
        let Some(id) = self.parent.get(task_name).and_then(Json::as_str) else {
            return Ok(None);
        };
        self.retrieve(self.flow_name, task_name, id).await.map(Some)
    }

    /// The stored result of any task instance (upstream `StoragePool.retrieve`).
    pub async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.pool()?.retrieve(flow_name, task_name, task_id).await
    }

    /// A storage of the system by name, as its adapter's concrete type, connected on first
    /// use (upstream `StoragePool.get_connected_storage`), so its own methods are callable.
    pub async fn storage<T: DataStorage>(&self, name: &str) -> Result<Arc<T>, StorageError> {
        self.pool()?.get_connected_storage_as::<T>(name).await
    }

    /// A storage of the system by name, untyped, connected on first use.
    pub async fn storage_dyn(&self, name: &str) -> Result<Arc<dyn DataStorage>, StorageError> {
        self.pool()?.get_connected_storage(name).await
    }

    /// The storage of task `task_name`, as its adapter's concrete type (upstream
    /// `StoragePool.get_storage_by_task_name`).
    pub async fn task_storage<T: DataStorage>(
        &self,
        task_name: &str,
    ) -> Result<Arc<T>, StorageError> {
        let pool = self.pool()?;
        let name = pool.storage_name_of(task_name).ok_or_else(|| {
            StorageError::Configuration(format!("task `{task_name}` has no storage"))
        })?;
        pool.get_connected_storage_as::<T>(name).await
    }
}

/// Why a `foreach` or selective run function gave no answer.
///
/// Upstream leaves an exception raised there undefined; here the pass stops without deciding
/// anything, and:
/// * [`UserFnError::Retry`] (what any `std::error::Error` converts into, so `?` works): the
///   same pass runs again later on the same input (after the flow's `retry_countdown`, at least
///   100 ms), as when a storage cannot be read; the flow's state does not change, nothing is
///   started twice. A function that keeps failing keeps the flow waiting: return
///   [`UserFnError::Fatal`] for what retrying cannot fix.
/// * [`UserFnError::Fatal`]: the flow fails at once (`DISPATCHER_FAILURE`, not retried, as
///   for a panic in the pass), with the function and the message in the failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserFnError {
    /// Transient: run the pass again later.
    Retry(String),
    /// Permanent: fail the flow.
    Fatal(String),
}

impl UserFnError {
    /// A transient error: the pass runs again later.
    pub fn retry(message: impl fmt::Display) -> Self {
        UserFnError::Retry(message.to_string())
    }

    /// A permanent error: the flow fails.
    pub fn fatal(message: impl fmt::Display) -> Self {
        UserFnError::Fatal(message.to_string())
    }
}

impl fmt::Display for UserFnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserFnError::Retry(m) => f.write_str(m),
            UserFnError::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

/// Any error converts into a transient one, so `?` works in `async` user functions.
impl<E: std::error::Error> From<E> for UserFnError {
    fn from(err: E) -> Self {
        UserFnError::Retry(err.to_string())
    }
}

/// What a [`ForeachFn`](crate::spec::ForeachFn) returns.
pub type ForeachFuture<'a> = BoxFuture<'a, Result<Vec<Json>, UserFnError>>;

/// What a [`SelectiveRunFn`](crate::spec::SelectiveRunFn) returns.
pub type SelectiveFuture<'a> = BoxFuture<'a, Result<Option<String>, UserFnError>>;

/// Marks the synchronous shape of a user function (the `M` of [`ForeachFunction`] and
/// [`SelectiveRunFunction`]).
pub enum SyncShape {}

/// Marks the `async` shape of a user function.
pub enum AsyncShape {}

/// A `foreach` function of either shape (see the [module](self) documentation); `M` tells the
/// shapes apart and is inferred.
pub trait ForeachFunction<M>: Send + Sync + 'static {
    /// Calls the function.
    fn call<'a>(&'a self, pool: &'a StorageView<'a>, node_args: &'a Json) -> ForeachFuture<'a>;
}

impl<F, I> ForeachFunction<(SyncShape, I)> for F
where
    F: Fn(&Db<'_>, &Json) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = Json>,
{
    fn call<'a>(&'a self, pool: &'a StorageView<'a>, node_args: &'a Json) -> ForeachFuture<'a> {
        let items = self(pool.db(), node_args).into_iter().collect();
        Box::pin(std::future::ready(Ok(items)))
    }
}

/// An `async` `foreach` function for one lifetime of its arguments (so that its future may
/// borrow them); implemented for every `async fn(&StorageView<'_>, &Json) -> Result<…>`.
pub trait AsyncForeach<'a>: Send + Sync {
    /// The items the function returns.
    type Items: IntoIterator<Item = Json>;
    /// The function's error.
    type Error: Into<UserFnError>;
    /// The function's future.
    type Future: Future<Output = Result<Self::Items, Self::Error>> + Send + 'a;

    /// Calls the function.
    fn call_async(&self, pool: &'a StorageView<'a>, node_args: &'a Json) -> Self::Future;
}

impl<'a, F, Fut, I, E> AsyncForeach<'a> for F
where
    F: Fn(&'a StorageView<'a>, &'a Json) -> Fut + Send + Sync,
    Fut: Future<Output = Result<I, E>> + Send + 'a,
    I: IntoIterator<Item = Json>,
    E: Into<UserFnError>,
{
    type Items = I;
    type Error = E;
    type Future = Fut;

    fn call_async(&self, pool: &'a StorageView<'a>, node_args: &'a Json) -> Fut {
        self(pool, node_args)
    }
}

impl<F> ForeachFunction<AsyncShape> for F
where
    F: for<'a> AsyncForeach<'a> + 'static,
{
    fn call<'a>(&'a self, pool: &'a StorageView<'a>, node_args: &'a Json) -> ForeachFuture<'a> {
        let future = self.call_async(pool, node_args);
        Box::pin(async move {
            match future.await {
                Ok(items) => Ok(items.into_iter().collect()),
                Err(err) => Err(err.into()),
            }
        })
    }
}

/// A selective run function of either shape (see the [module](self) documentation); `M` tells
/// the shapes apart and is inferred.
pub trait SelectiveRunFunction<M>: Send + Sync + 'static {
    /// Calls the function.
    fn call<'a>(
        &'a self,
        input: &'a SelectiveRunInput<'a>,
        pool: &'a StorageView<'a>,
    ) -> SelectiveFuture<'a>;
}

impl<F> SelectiveRunFunction<SyncShape> for F
where
    F: Fn(&SelectiveRunInput<'_>) -> Option<String> + Send + Sync + 'static,
{
    fn call<'a>(
        &'a self,
        input: &'a SelectiveRunInput<'a>,
        _pool: &'a StorageView<'a>,
    ) -> SelectiveFuture<'a> {
        Box::pin(std::future::ready(Ok(self(input))))
    }
}

/// An `async` selective run function for one lifetime of its arguments; implemented for every
/// `async fn(&SelectiveRunInput<'_>, &StorageView<'_>) -> Result<Option<String>, E>`.
pub trait AsyncSelectiveRun<'a>: Send + Sync {
    /// The function's error.
    type Error: Into<UserFnError>;
    /// The function's future.
    type Future: Future<Output = Result<Option<String>, Self::Error>> + Send + 'a;

    /// Calls the function.
    fn call_async(
        &self,
        input: &'a SelectiveRunInput<'a>,
        pool: &'a StorageView<'a>,
    ) -> Self::Future;
}

impl<'a, F, Fut, E> AsyncSelectiveRun<'a> for F
where
    F: Fn(&'a SelectiveRunInput<'a>, &'a StorageView<'a>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Option<String>, E>> + Send + 'a,
    E: Into<UserFnError>,
{
    type Error = E;
    type Future = Fut;

    fn call_async(&self, input: &'a SelectiveRunInput<'a>, pool: &'a StorageView<'a>) -> Fut {
        self(input, pool)
    }
}

impl<F> SelectiveRunFunction<AsyncShape> for F
where
    F: for<'a> AsyncSelectiveRun<'a> + 'static,
{
    fn call<'a>(
        &'a self,
        input: &'a SelectiveRunInput<'a>,
        pool: &'a StorageView<'a>,
    ) -> SelectiveFuture<'a> {
        let future = self.call_async(input, pool);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// The [`ForeachFn`](crate::spec::ForeachFn) of a user's `foreach` function of either shape:
/// `foreach!(crate::app::iter_items, "message")`. A function of neither shape is a compile
/// error whose message is the given one (generated code names the function and the edge's
/// `file:line` in it).
#[macro_export]
#[rustfmt::skip] // rustfmt indents the attribute further on every run
macro_rules! foreach {
    ($function:path, $message:literal) => {{
        #[diagnostic::on_unimplemented(
            message = $message,
            label = "not a foreach function",
            note = "write `fn(&Db<'_>, &Json) -> impl IntoIterator<Item = Json>` or \
                    `async fn(&StorageView<'_>, &Json) -> Result<impl IntoIterator<Item = Json>, E>` \
                    (E: Into<UserFnError>)"
        )]
        trait IsForeach<M>: $crate::userfn::ForeachFunction<M> {}
        impl<M, T: $crate::userfn::ForeachFunction<M>> IsForeach<M> for T {}
        fn call<'a, M, F: IsForeach<M>>(
            function: &'a F,
            pool: &'a $crate::userfn::StorageView<'a>,
            node_args: &'a $crate::Json,
        ) -> $crate::userfn::ForeachFuture<'a> {
            function.call(pool, node_args)
        }
        fn run<'a>(
            pool: &'a $crate::userfn::StorageView<'a>,
            node_args: &'a $crate::Json,
        ) -> $crate::userfn::ForeachFuture<'a> {
            call(&$function, pool, node_args)
        }
        const RUN: $crate::spec::ForeachFn = &run;
        RUN
    }};
}

/// The [`SelectiveRunFn`](crate::spec::SelectiveRunFn) of a user's selective run function of
/// either shape: `selective_run!(crate::app::reuse, "message")`; a function of neither shape
/// is a compile error whose message is the given one.
#[macro_export]
#[rustfmt::skip] // rustfmt indents the attribute further on every run
macro_rules! selective_run {
    ($function:path, $message:literal) => {{
        #[diagnostic::on_unimplemented(
            message = $message,
            label = "not a selective run function",
            note = "write `fn(&SelectiveRunInput<'_>) -> Option<String>` or \
                    `async fn(&SelectiveRunInput<'_>, &StorageView<'_>) -> Result<Option<String>, E>` \
                    (E: Into<UserFnError>)"
        )]
        trait IsSelectiveRun<M>: $crate::userfn::SelectiveRunFunction<M> {}
        impl<M, T: $crate::userfn::SelectiveRunFunction<M>> IsSelectiveRun<M> for T {}
        fn call<'a, M, F: IsSelectiveRun<M>>(
            function: &'a F,
            input: &'a $crate::spec::SelectiveRunInput<'a>,
            pool: &'a $crate::userfn::StorageView<'a>,
        ) -> $crate::userfn::SelectiveFuture<'a> {
            function.call(input, pool)
        }
        fn run<'a>(
            input: &'a $crate::spec::SelectiveRunInput<'a>,
            pool: &'a $crate::userfn::StorageView<'a>,
        ) -> $crate::userfn::SelectiveFuture<'a> {
            call(&$function, input, pool)
        }
        const RUN: $crate::spec::SelectiveRunFn = &run;
        RUN
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn items_sync(db: &Db<'_>, node_args: &Json) -> Vec<Json> {
        let n = db.get("A").and_then(Json::as_u64).unwrap_or(0) + node_args.as_u64().unwrap_or(0);
        (0..n).map(Json::from).collect()
    }

    async fn items_async(
        pool: &StorageView<'_>,
        node_args: &Json,
    ) -> Result<Vec<Json>, UserFnError> {
        tokio::task::yield_now().await;
        match pool.get("A").await? {
            Some(a) => Ok(vec![a, node_args.clone()]),
            None => Err(UserFnError::fatal("no A")),
        }
    }

    async fn reuse_async(
        input: &SelectiveRunInput<'_>,
        pool: &StorageView<'_>,
    ) -> Result<Option<String>, StorageError> {
        tokio::task::yield_now().await;
        Ok(pool
            .parent()
            .get(input.node_name)
            .and_then(Json::as_str)
            .map(str::to_string))
    }

    fn reuse_sync(input: &SelectiveRunInput<'_>) -> Option<String> {
        Some(input.node_name.to_string())
    }

    #[tokio::test]
    async fn both_shapes_go_through_the_macros() {
        let a = json!(2);
        let db = Db::new([("A", &a)]);
        let parent = json!({"T": "t-1"});
        let pool = StorageView::new(None, "flow", &parent, &db);
        let args = json!(1);

        let sync_fn = foreach!(items_sync, "not a foreach");
        assert_eq!(
            sync_fn(&pool, &args).await,
            Ok(vec![json!(0), json!(1), json!(2)])
        );
        let async_fn = foreach!(items_async, "not a foreach");
        assert_eq!(async_fn(&pool, &args).await, Ok(vec![json!(2), json!(1)]));
        let empty = Db::empty();
        let no_a = StorageView::new(None, "flow", &parent, &empty);
        assert_eq!(
            async_fn(&no_a, &args).await,
            Err(UserFnError::Fatal("no A".into()))
        );

        let task_names = vec!["X".to_string()];
        let input = SelectiveRunInput {
            flow_name: "flow",
            node_name: "T",
            node_args: &args,
            task_names: &task_names,
        };
        let sync_fn = selective_run!(reuse_sync, "not selective");
        assert_eq!(sync_fn(&input, &pool).await, Ok(Some("T".into())));
        let async_fn = selective_run!(reuse_async, "not selective");
        assert_eq!(async_fn(&input, &pool).await, Ok(Some("t-1".into())));
    }

    #[tokio::test]
    async fn without_a_pool_storage_access_fails_and_errors_convert() {
        let empty = Db::empty();
        let parent = json!({"A": "a-1"});
        let pool = StorageView::new(None, "flow", &parent, &empty);
        let err = pool.get("A").await.unwrap_err();
        assert!(err.to_string().contains("lends no storages"), "{err}");
        assert_eq!(pool.get("B").await.unwrap(), None, "not a parent");
        let converted: UserFnError = err.into();
        assert!(matches!(converted, UserFnError::Retry(_)), "{converted:?}");
    }
}
