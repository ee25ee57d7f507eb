//! The pgwire query handlers: every query text is size- and depth-checked, parsed once with the PostgreSQL dialect,
//! and each statement answered by the first of the session hooks (read-only rule, `SET`, cursors, `SHOW`,
//! transactions) that takes it, else planned, checked and run by the [`QueryEngine`]. No path hands SQL text to
//! DataFusion.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;

use super::engine::{PortalResultFormat, QueryEngine};
use super::limits::TextLimits;
use super::read_only::{parse, SYNTAX_ERROR};

/// The simple and extended query handlers of the server.
pub struct ReadOnlySession {
    engine: Arc<QueryEngine>,
    limits: TextLimits,
    hooks: Vec<Arc<dyn QueryHook>>,
    /// Runs bound portals: it decodes the parameters, then hands the statement to the hooks, the last of which is
    /// the engine's (`ExecuteHook`), so its own execution of the plan is never reached.
    inner: Arc<DfSessionService>,
    parser: Arc<ReadOnlyParser>,
}

impl ReadOnlySession {
    /// Answers statements with `hooks` (in order) and runs the others on `engine`; `inner` must run portals through
    /// the same hooks followed by the engine's execute hook.
    pub fn new(
        engine: Arc<QueryEngine>,
        limits: TextLimits,
        hooks: Vec<Arc<dyn QueryHook>>,
        inner: Arc<DfSessionService>,
    ) -> Self {
        let parser = Arc::new(ReadOnlyParser {
            engine: engine.clone(),
            limits,
            hooks: hooks.clone(),
            sql_parser: PostgresCompatibilityParser::new(),
            describe: inner.query_parser(),
        });
        Self {
            engine,
            limits,
            hooks,
            inner,
            parser,
        }
    }
}

fn check_text(limits: &TextLimits, sql: &str) -> PgWireResult<()> {
    limits.check(sql).map_err(|refusal| {
        tracing::warn!(bytes = sql.len(), "refused before parsing: {refusal}");
        refusal.into_pg_error()
    })
}

#[async_trait]
impl SimpleQueryHandler for ReadOnlySession {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        check_text(&self.limits, query)?;
        let statements = parse(&self.parser.sql_parser, query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        // The hooks take a context; they get one with the query limits rather than the shared one.
        let ctx = self.engine.query_context()?;
        let mut responses = Vec::with_capacity(statements.len());
        'statements: for statement in statements {
            for hook in &self.hooks {
                if let Some(response) = hook.handle_simple_query(&statement, &ctx, client).await {
                    responses.push(response?);
                    continue 'statements;
                }
            }
            responses.push(self.engine.run_statement(client, statement).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for ReadOnlySession {
    type Statement = <Parser as QueryParser>::Statement;
    type QueryParser = ReadOnlyParser;

    fn query_parser(&self) -> Arc<ReadOnlyParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The statement passed the checks when it was parsed; the hooks check it again with its plan.
        client
            .session_extensions()
            .insert(PortalResultFormat(portal.result_column_format.clone()));
        ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows).await
    }
}

/// Parses and plans prepared statements (the extended protocol's Parse) like the simple protocol's statements.
pub struct ReadOnlyParser {
    engine: Arc<QueryEngine>,
    limits: TextLimits,
    hooks: Vec<Arc<dyn QueryHook>>,
    sql_parser: PostgresCompatibilityParser,
    /// datafusion-postgres' parser, for describing a prepared statement's parameters and result columns.
    describe: Arc<Parser>,
}

#[async_trait]
impl QueryParser for ReadOnlyParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        check_text(&self.limits, sql)?;
        let mut statements = parse(&self.sql_parser, sql)?;
        if statements.len() > 1 {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_string(),
                SYNTAX_ERROR.to_string(),
                "cannot insert multiple commands into a prepared statement".to_string(),
            ))));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let text = statement.to_string();
        let plan = self.plan(client, &statement).await?;
        Ok(Some((text, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describe.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describe.get_result_schema(statement, column_format)
    }
}

impl ReadOnlyParser {
    async fn plan<C>(
        &self,
        client: &C,
        statement: &Statement,
    ) -> PgWireResult<datafusion::logical_expr::LogicalPlan>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let ctx = self.engine.query_context()?;
        for hook in &self.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(statement, &ctx, client)
                .await
            {
                return plan;
            }
        }
        self.engine.prepare(statement).await
    }
}
