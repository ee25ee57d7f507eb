//! Where queries run: a checked plan, executed on its own task under a memory pool, a deadline and the client's
//! cancel request.
//!
//! Every query is planned from the statement the Postgres parser produced (never re-printed text re-parsed in a
//! dialect a session chose), checked twice ([`check_plan`] and DataFusion's read-only [`SQLOptions`]) and then
//! executed. Execution runs on a task of its own, on threads of its own, that feeds the client's result stream through a small channel, so
//! that the statement timeout and a `CancelRequest` stop it wherever it is, planning, computing or streaming rows,
//! by dropping DataFusion's stream: pgwire sends rows after the handler returned, out of reach of a timeout around
//! the handler. Each query gets a memory pool of its own, carved out of one pool for the whole server, and never
//! spills to disk.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::iter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{ParamValues, Result as DataFusionResult};
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DataFusionStatement;
use datafusion::sql::sqlparser::ast::{Declare, DeclareType, Statement};
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::results::{QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::cancel::CancelRequest;
use datafusion_postgres::pgwire::messages::data::DataRow;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::QueryHook;
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::read_only::{check_plan, READ_ONLY_SQL_TRANSACTION, SYNTAX_ERROR};
use super::settings;

/// Postgres' SQLSTATE for a statement stopped by its timeout or a cancel request.
pub const QUERY_CANCELED: &str = "57014";
/// Postgres' SQLSTATE for a query that ran out of memory.
pub const OUT_OF_MEMORY: &str = "53200";
/// Postgres' SQLSTATE for a server out of some resource (here: query slots).
pub const INSUFFICIENT_RESOURCES: &str = "53000";
/// Postgres' SQLSTATE for an internal error.
const INTERNAL_ERROR: &str = "XX000";

/// The resources one query may use.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionLimits {
    /// Memory one query may hold, in bytes.
    pub query_memory: usize,
    /// Memory all running queries together may hold, in bytes.
    pub server_memory: usize,
    /// The longest a statement may run; a session's `statement_timeout` can only shorten it.
    pub statement_timeout: Duration,
    /// Queries running at once, open cursors' queries included; one more is refused with Postgres' `53000`.
    pub max_running_queries: usize,
}

/// A connection as a cancel request names it: its process id and secret key.
type ConnectionKey = (i32, Vec<u8>);

fn connection_key<C: ClientInfo + ?Sized>(client: &C) -> ConnectionKey {
    let (pid, secret) = client.pid_and_secret_key();
    (pid, secret.to_bytes().to_vec())
}

/// Plans and runs checked statements for every connection of a server.
pub struct QueryEngine {
    shared: Arc<SessionContext>,
    server_memory: Arc<dyn MemoryPool>,
    limits: ExecutionLimits,
    /// The running query of each connection, woken by a cancel request for it.
    running: Mutex<HashMap<ConnectionKey, Arc<Notify>>>,
    /// One permit per running query: each has threads of its own, and a client could otherwise open cursors
    /// without end.
    query_slots: Arc<Semaphore>,
}

/// The threads one query plans and executes on.
///
/// A stopped query's task is dropped only when its current step returns, and one step of a big join can compute
/// for seconds. Threads of its own keep those seconds from delaying the server's connections and timers and every
/// other query; the operating system shares the cores among them.
struct QueryRuntime {
    handle: Handle,
    /// Taken only on drop.
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("adstream-query")
            .thread_stack_size(super::WORKER_STACK_BYTES)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Without waiting for a stopped query's last step; dropping a runtime in async code must not block.
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Where a query's schema, or the error that stopped it before, goes: taken by whichever of the query and its
/// watcher answers first.
type ReadySender = Arc<Mutex<Option<oneshot::Sender<PgWireResult<Arc<Schema>>>>>>;

/// What a query task starts from.
enum Work {
    /// A statement from the simple protocol, planned on the task (boxed: statements are large).
    Statement(Box<Statement>),
    /// A plan from the extended protocol, parameters bound.
    Plan(LogicalPlan),
}

impl QueryEngine {
    /// An engine serving `shared`'s tables and functions under `limits`.
    pub fn new(shared: Arc<SessionContext>, limits: ExecutionLimits) -> Self {
        Self {
            shared,
            server_memory: Arc::new(GreedyMemoryPool::new(limits.server_memory)),
            limits,
            running: Mutex::new(HashMap::new()),
            query_slots: Arc::new(Semaphore::new(limits.max_running_queries)),
        }
    }

    /// A context for one query: the shared catalog, functions and settings, with a memory pool of its own, no
    /// spilling, and the PostgreSQL dialect whatever the shared settings say.
    pub fn query_context(&self) -> PgWireResult<SessionContext> {
        let shared = self.shared.state();
        let runtime = RuntimeEnvBuilder::from_runtime_env(shared.runtime_env())
            .with_memory_pool(Arc::new(QueryMemoryPool::new(
                self.server_memory.clone(),
                self.limits.query_memory,
            )))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(datafusion_error)?;
        let mut config = shared.config().clone();
        config.options_mut().sql_parser.dialect = Dialect::PostgreSQL;
        let state = SessionStateBuilder::new_from_existing(shared)
            .with_config(config)
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Plans `statement` and checks the plan only reads.
    async fn plan(&self, ctx: &SessionContext, statement: Statement) -> PgWireResult<LogicalPlan> {
        let plan = ctx
            .state()
            .statement_to_plan(DataFusionStatement::Statement(Box::new(statement)))
            .await
            .map_err(datafusion_error)?;
        check_read_only(&plan)?;
        Ok(plan)
    }

    /// Plans `statement` for a prepared statement (the extended protocol's Parse).
    pub async fn prepare(&self, statement: &Statement) -> PgWireResult<LogicalPlan> {
        let ctx = self.query_context()?;
        self.plan(&ctx, statement.clone()).await
    }

    /// Stops the running query of the connection a cancel request names, if any.
    pub fn cancel(&self, request: &CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(cancelled) = running {
            tracing::info!(pid = request.pid, "cancel request");
            // A permit is kept if the task is not waiting yet, so a cancel during planning is not lost.
            cancelled.notify_one();
        }
    }

    /// Plans and runs a statement of the simple protocol for `client`.
    pub async fn run_statement<C>(
        self: &Arc<Self>,
        client: &C,
        statement: Statement,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ?Sized,
    {
        if let Statement::Deallocate { .. } = statement {
            // PREPARE is refused, so there is never anything to deallocate; drivers send it anyway.
            return Ok(Response::Execution(Tag::new("DEALLOCATE")));
        }
        self.run(
            client,
            Work::Statement(Box::new(statement)),
            &Format::UnifiedText,
        )
        .await
    }

    /// Runs `work` for `client` and returns its result stream in `format`.
    async fn run<C>(
        self: &Arc<Self>,
        client: &C,
        work: Work,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ?Sized,
    {
        let slot = self.query_slots.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("refused: too many queries running");
            user_error(
                INSUFFICIENT_RESOURCES,
                format!(
                    "too many queries running: the server runs at most {} at once (open cursors included)",
                    self.limits.max_running_queries
                ),
            )
        })?;
        let timeout = settings::statement_timeout(client)
            .map_or(self.limits.statement_timeout, |session| {
                session.min(self.limits.statement_timeout)
            });
        let deadline = Instant::now() + timeout;
        let key = connection_key(client);
        let cancelled = Arc::new(Notify::new());
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), cancelled.clone());
        let (ready_tx, ready_rx) = oneshot::channel();
        // Whoever finishes first tells the client the schema or the error: the query, or the watcher stopping it.
        let ready = Arc::new(Mutex::new(Some(ready_tx)));
        // Two batches in flight: enough to overlap computing and sending, and the query waits (holding no more
        // memory) while the client reads slowly.
        let (batch_tx, batch_rx) = mpsc::channel(2);
        let runtime = QueryRuntime::start().map_err(|error| {
            tracing::error!(%error, "cannot start a query's threads");
            internal("the server cannot start the query's threads")
        })?;
        let engine = self.clone();
        let query = runtime.spawn(
            engine
                .clone()
                .produce(work, ready.clone(), batch_tx.clone())
                .in_current_span(),
        );
        // The watcher runs on the caller's runtime: the query's threads may be busy in one long computation, and
        // the client must hear of the timeout or the cancel without waiting for it.
        tokio::spawn(
            async move {
                let stop = query.abort_handle();
                tokio::pin!(query);
                let outcome = tokio::select! {
                    () = cancelled.notified() => Err(canceled("canceling statement due to user request")),
                    () = tokio::time::sleep_until(deadline) => {
                        Err(canceled("canceling statement due to statement timeout"))
                    }
                    // Nobody will read the rows: the client went away, or closed the cursor.
                    () = batch_tx.closed() => Ok(()),
                    joined = &mut query => joined.unwrap_or_else(|error| {
                        tracing::error!(%error, "query task failed");
                        Err(internal("the query failed unexpectedly"))
                    }),
                };
                // Drops DataFusion's stream, and with it the tasks it spawned, once the current step returns.
                stop.abort();
                drop(runtime);
                drop(slot);
                engine.finished(&key, &cancelled);
                if let Err(error) = outcome {
                    tracing::info!(%error, "query stopped");
                    let ready = ready.lock().unwrap_or_else(PoisonError::into_inner).take();
                    match ready {
                        Some(ready) => {
                            let _ = ready.send(Err(error));
                        }
                        None => {
                            let _ = batch_tx.send(Err(error)).await;
                        }
                    }
                }
            }
            .in_current_span(),
        );
        let schema = ready_rx
            .await
            .map_err(|_| internal("the query stopped before it was planned"))??;
        let format_options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &schema,
            format,
            Some(format_options),
        )?);
        let row_fields = fields.clone();
        let rows = futures::stream::unfold(batch_rx, |mut batches| async move {
            batches.recv().await.map(|batch| (batch, batches))
        })
        .flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(row_fields.clone(), batch),
                Err(error) => Box::new(iter::once(Err(error))),
            };
            futures::stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// Plans if needed, executes, hands the schema to `ready` and the batches to `batches` until the stream ends or
    /// the client stops reading. Errors are the watcher's to report.
    async fn produce(
        self: Arc<Self>,
        work: Work,
        ready: ReadySender,
        batches: mpsc::Sender<PgWireResult<RecordBatch>>,
    ) -> PgWireResult<()> {
        let ctx = self.query_context()?;
        let plan = match work {
            Work::Statement(statement) => self.plan(&ctx, *statement).await?,
            Work::Plan(plan) => {
                check_read_only(&plan)?;
                plan
            }
        };
        let frame = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(datafusion_error)?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await.map_err(datafusion_error)?;
        let ready = ready.lock().unwrap_or_else(PoisonError::into_inner).take();
        let told = ready.is_some_and(|ready| ready.send(Ok(schema)).is_ok());
        if !told {
            // The client went away, or the watcher already answered.
            return Ok(());
        }
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(datafusion_error)?;
            if batches.send(Ok(batch)).await.is_err() {
                // The client went away or pgwire dropped the response: dropping the stream stops the query.
                return Ok(());
            }
        }
        Ok(())
    }

    fn finished(&self, key: &ConnectionKey, cancelled: &Arc<Notify>) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        // A later query of the same connection may have registered already.
        if running
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, cancelled))
        {
            running.remove(key);
        }
    }
}

/// `Ok` when `plan` only reads, by both the server's rule and DataFusion's read-only options.
fn check_read_only(plan: &LogicalPlan) -> PgWireResult<()> {
    if let Err(refusal) = check_plan(plan) {
        tracing::warn!("refused by plan: {}", refusal.kind);
        return Err(refusal.into_pg_error());
    }
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    read_only.verify_plan(plan).map_err(|error| {
        tracing::warn!(%error, "refused by DataFusion's read-only options");
        user_error(READ_ONLY_SQL_TRANSACTION, error.strip_backtrace())
    })
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn canceled(message: &str) -> PgWireError {
    user_error(QUERY_CANCELED, message.to_string())
}

fn internal(message: &str) -> PgWireError {
    user_error(INTERNAL_ERROR, message.to_string())
}

/// A DataFusion error for the client: running out of memory with Postgres' code, the rest as datafusion-postgres
/// reports them.
fn datafusion_error(error: DataFusionError) -> PgWireError {
    if let DataFusionError::ResourcesExhausted(message) = error.find_root() {
        return user_error(
            OUT_OF_MEMORY,
            format!("the query needs more memory than it may use: {message}"),
        );
    }
    PgWireError::ApiError(Box::new(error))
}

/// The result format the client asked for at Bind, which the execute hook cannot see: stored in the connection's
/// extensions just before the portal runs.
#[derive(Debug, Clone)]
pub struct PortalResultFormat(pub Format);

/// The last query hook of the portal runner: runs every bound statement no other hook answered on the
/// [`QueryEngine`], with the parameters datafusion-postgres decoded.
pub struct ExecuteHook {
    engine: Arc<QueryEngine>,
}

impl ExecuteHook {
    /// Runs statements on `engine`.
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl QueryHook for ExecuteHook {
    async fn handle_simple_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The session runs simple queries on the engine itself.
        None
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // The session's parser plans on the engine itself.
        None
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        logical_plan: &LogicalPlan,
        params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let plan = match logical_plan.clone().replace_params_with_values(params) {
            Ok(plan) => plan,
            Err(error) => return Some(Err(datafusion_error(error))),
        };
        let format = client
            .session_extensions()
            .get::<PortalResultFormat>()
            .map_or(Format::UnifiedText, |format| format.0.clone());
        Some(self.engine.run(&*client, Work::Plan(plan), &format).await)
    }
}

/// `DECLARE ... CURSOR FOR query`: the query planned, checked and run by the [`QueryEngine`] like any other, its
/// rows then read by `FETCH` (which datafusion-postgres' cursor hook answers, as it does `CLOSE`). The hook goes
/// before that one, which would hand the query's text to DataFusion and read it on the connection's threads,
/// beyond the timeout, cancel requests and memory limit.
pub struct DeclareCursorHook {
    engine: Arc<QueryEngine>,
}

impl DeclareCursorHook {
    /// Runs cursors' queries on `engine`.
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        Self { engine }
    }

    async fn declare(
        &self,
        client: &mut dyn HookClient,
        declarations: &[Declare],
    ) -> PgWireResult<Response> {
        for declaration in declarations {
            let syntax = |message: &str| user_error(SYNTAX_ERROR, message.to_string());
            if declaration.declare_type != Some(DeclareType::Cursor) {
                return Err(syntax("only DECLARE ... CURSOR FOR a query is supported"));
            }
            let Some(name) = declaration.names.first() else {
                return Err(syntax("DECLARE CURSOR needs a cursor name"));
            };
            let Some(query) = &declaration.for_query else {
                return Err(syntax("DECLARE CURSOR needs a FOR query"));
            };
            let work = Work::Statement(Box::new(Statement::Query(query.clone())));
            let Response::Query(rows) = self
                .engine
                .run(&*client, work, &Format::UnifiedText)
                .await?
            else {
                return Err(internal("a cursor's query returned no rows"));
            };
            let statement =
                StoredStatement::new(name.value.clone(), (query.to_string(), None), vec![]);
            let portal = Portal::new_cursor(name.value.clone(), Arc::new(statement));
            portal.start(rows).await;
            client.portal_store().put_portal(Arc::new(portal));
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

#[async_trait]
impl QueryHook for DeclareCursorHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Declare { stmts } => Some(self.declare(client, stmts).await),
            _ => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // The cursor hook describes DECLARE at Parse (no rows).
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match statement {
            Statement::Declare { stmts } => Some(self.declare(client, stmts).await),
            _ => None,
        }
    }
}

/// pgwire's cancel handler (which drops the handler's future) plus stopping the connection's query task.
pub struct QueryCancelHandler {
    pgwire: DefaultCancelHandler,
    engine: Arc<QueryEngine>,
}

impl QueryCancelHandler {
    /// Cancels through `pgwire` and `engine`.
    pub fn new(pgwire: DefaultCancelHandler, engine: Arc<QueryEngine>) -> Self {
        Self { pgwire, engine }
    }
}

#[async_trait]
impl CancelHandler for QueryCancelHandler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        self.engine.cancel(&request);
        self.pgwire.on_cancel_request(request).await;
    }
}

/// One query's memory: at most `limit` bytes, taken from the server's pool, so one query cannot starve the others
/// and all together cannot exceed the server's budget.
#[derive(Debug)]
struct QueryMemoryPool {
    server: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl QueryMemoryPool {
    fn new(server: Arc<dyn MemoryPool>, limit: usize) -> Self {
        Self {
            server,
            limit,
            used: AtomicUsize::new(0),
        }
    }
}

impl fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query pool: {} of {} bytes used",
            self.used.load(Ordering::Relaxed),
            self.limit
        )
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "adstream query pool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DataFusionResult<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|&total| total <= self.limit)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "{} bytes more for {} would exceed the query's limit of {} bytes ({used} in use)",
                    additional,
                    reservation.consumer().name(),
                    self.limit
                ))
            })?;
        if let Err(error) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn engine(shared: SessionContext, query_memory: usize) -> QueryEngine {
        let limits = ExecutionLimits {
            query_memory,
            server_memory: 4 * query_memory,
            statement_timeout: Duration::from_secs(60),
            max_running_queries: 4,
        };
        QueryEngine::new(Arc::new(shared), limits)
    }

    #[tokio::test]
    async fn a_query_over_its_memory_fails_alone() {
        let engine = engine(SessionContext::new(), 1 << 20);
        let ctx = match engine.query_context() {
            Ok(ctx) => ctx,
            Err(error) => panic!("{error}"),
        };
        // Sorting a million rows needs far more than a megabyte and may not spill.
        let result = ctx
            .sql("SELECT v FROM generate_series(1, 1000000) AS t(v) ORDER BY v DESC")
            .await;
        let frame = match result {
            Ok(frame) => frame,
            Err(error) => panic!("{error}"),
        };
        let error = match frame.collect().await {
            Ok(_) => panic!("the sort fitted in a megabyte"),
            Err(error) => error,
        };
        assert!(
            matches!(error.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{error}"
        );
        assert_eq!(engine.server_memory.reserved(), 0);
    }

    #[tokio::test]
    async fn the_query_context_ignores_the_shared_dialect() {
        let shared = SessionContext::new();
        shared
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .sql_parser
            .dialect = Dialect::MySQL;
        let engine = engine(shared, 1 << 20);
        let ctx = match engine.query_context() {
            Ok(ctx) => ctx,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            ctx.state().config().options().sql_parser.dialect,
            Dialect::PostgreSQL
        );
    }
}
