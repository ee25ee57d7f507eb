//! The read-only rule: only statements that read are executed.
//!
//! The server exposes Kafka topics for reading; a write through DataFusion would at best change an in-memory table
//! other sessions share and at worst write files on the server's host (`COPY ... TO`, `CREATE EXTERNAL TABLE` with a
//! location). So every statement is checked against an allow list before any other hook or DataFusion sees it, on
//! both the simple and the extended protocol, and refused with Postgres' `read_only_sql_transaction` (25006).
//!
//! The server reads each query once, with the PostgreSQL dialect ([`parse`]): the statements checked here are the
//! statements planned, and the plan is checked again before it runs ([`check_plan`], in the query engine). Text the
//! Postgres parser cannot read is refused: as a write when DataFusion's own parser reads it as one of its writes
//! (`CREATE EXTERNAL TABLE ... STORED AS`, `COPY ... TO ... STORED AS`), which makes that refusal as clear as the
//! others, as a syntax error otherwise.

use std::ops::ControlFlow;

use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement as DataFusionStatement};
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{dialect_from_str, Dialect};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::limits::{TextLimits, TextRefusal};
use super::parse_budget::{self, BudgetedPostgres};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::QueryHook;

/// Postgres' SQLSTATE for a write attempted in a read-only transaction.
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// A statement the server refuses, named by its kind (`INSERT`, `COPY ... TO`, `CREATE EXTERNAL TABLE`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the statement would have done, as its leading keywords.
    pub kind: String,
}

impl Refusal {
    /// The message clients show.
    pub fn message(&self) -> String {
        format!(
            "cannot execute {}: the adstream SQL server is read-only (SELECT, WITH, EXPLAIN, SHOW, SET, \
             transactions and cursors only)",
            self.kind
        )
    }

    /// The error sent to the client.
    pub fn into_pg_error(self) -> PgWireError {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            READ_ONLY_SQL_TRANSACTION.to_string(),
            self.message(),
        )))
    }
}

/// `Ok` when `statement`, and every statement and query nested in it, only reads.
///
/// Nested statements matter: `EXPLAIN ANALYZE INSERT ...` runs the insert, a cursor is declared over a query, and
/// a query can hold `SELECT ... INTO new_table` or a data-modifying CTE.
pub fn check(statement: &Statement) -> Result<(), Refusal> {
    match statement.visit(&mut ReadOnlyVisitor) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(refusal) => Err(refusal),
    }
}

/// `Some` when executing `plan` would write: a DML, DDL or `COPY` node anywhere in it.
///
/// The extended protocol executes the plan built at Parse time, so this second look at what will actually run
/// catches a write whose statement form the allow list did not anticipate.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut kind = None;
    // The closure never fails, so the traversal cannot either.
    let _ = plan.apply(|node| {
        kind = match node {
            LogicalPlan::Dml(dml) => Some(dml.op.to_string()),
            LogicalPlan::Ddl(ddl) => Some(ddl.name().to_string()),
            LogicalPlan::Copy(_) => Some("COPY ... TO".to_string()),
            _ => None,
        };
        Ok(if kind.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    match kind {
        Some(kind) => Err(Refusal { kind }),
        None => Ok(()),
    }
}

/// `Ok` when `sql`, read by DataFusion's parser in the session's SQL dialect, only reads (for `adstream sql`, which
/// executes the text with that dialect and DataFusion's read-only options).
///
/// SQL DataFusion's parser cannot read passes: it cannot be executed through DataFusion either.
pub fn check_sql(ctx: &SessionContext, sql: &str) -> Result<(), Refusal> {
    let dialect_name = ctx.state_ref().read().config().options().sql_parser.dialect;
    match dialect_from_str(dialect_name) {
        Some(dialect) => check_datafusion_sql(sql, dialect.as_ref()),
        None => Ok(()),
    }
}

fn check_datafusion_sql(sql: &str, dialect: &dyn Dialect) -> Result<(), Refusal> {
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) => statements.iter().try_for_each(check_datafusion_statement),
        Err(_) => Ok(()),
    }
}

/// Postgres' SQLSTATE for text that is no SQL statement.
pub const SYNTAX_ERROR: &str = "42601";

/// Reads `sql` as the server runs it: with the PostgreSQL dialect, whatever any setting says.
///
/// Text that does not parse is refused: with 25006 when DataFusion's parser reads a write in it, with 42601 (syntax
/// error) otherwise.
pub fn parse(
    parser: &PostgresCompatibilityParser,
    sql: &str,
) -> Result<Vec<Statement>, PgWireError> {
    parser.parse(sql).map_err(|error| {
        // The same grammar as the failed parse, under a budget (its text passed the trial parse with a budget
        // computed from its tokens; its length in bytes bounds those).
        let dialect = BudgetedPostgres::new(parse_budget::budget_for(sql.len()));
        if let Err(refusal) = check_datafusion_sql(sql, &dialect) {
            tracing::warn!(sql, "refused: {}", refusal.kind);
            return refusal.into_pg_error();
        }
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            SYNTAX_ERROR.to_string(),
            error.to_string(),
        )))
    })
}

/// The parser the server reads every query text with (the PostgreSQL dialect of sqlparser, as datafusion-postgres
/// configures it).
pub type ServerParser = PostgresCompatibilityParser;

/// What the server decides from a query's text alone, in its order: the size, depth and parse-work bounds (before
/// the server's parser sees the text), the PostgreSQL parse, and the read-only check of each statement. Returns the statements that
/// pass; the session then hands them to its hooks (`SET`, `SHOW`) or plans them and checks the plan. The fuzz
/// target `sql_check` runs it on arbitrary text.
pub fn screen(
    limits: &TextLimits,
    parser: &ServerParser,
    sql: &str,
) -> Result<Vec<Statement>, PgWireError> {
    limits.check(sql).map_err(TextRefusal::into_pg_error)?;
    let statements = parse(parser, sql)?;
    for statement in &statements {
        check(statement).map_err(Refusal::into_pg_error)?;
    }
    Ok(statements)
}

fn check_datafusion_statement(statement: &DataFusionStatement) -> Result<(), Refusal> {
    match statement {
        DataFusionStatement::Statement(statement) => check(statement),
        DataFusionStatement::CreateExternalTable(_) => Err(Refusal {
            kind: "CREATE EXTERNAL TABLE".to_string(),
        }),
        DataFusionStatement::CopyTo(_) => Err(Refusal {
            kind: "COPY ... TO".to_string(),
        }),
        DataFusionStatement::Explain(explain) => check_datafusion_statement(&explain.statement),
        DataFusionStatement::Reset(_) => Ok(()),
    }
}

struct ReadOnlyVisitor;

impl Visitor for ReadOnlyVisitor {
    type Break = Refusal;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        if reads(statement) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Refusal {
                kind: statement_kind(statement),
            })
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        // DataFusion plans `SELECT ... INTO t` as CREATE TABLE t AS SELECT.
        if selects_into(&query.body) {
            ControlFlow::Break(Refusal {
                kind: "SELECT INTO".to_string(),
            })
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// The allow list: statements that read, plus the session and transaction statements psql, psycopg and BI tools
/// send. `SET`/`RESET` change settings, never data. Anything else, including kinds a future parser adds, is refused.
fn reads(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Deallocate { .. }
    )
}

fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

/// The statement's kind for the error message: named for the classes users meet, else its leading keywords.
fn statement_kind(statement: &Statement) -> String {
    match statement {
        Statement::Insert(_) => "INSERT".to_string(),
        Statement::Update(_) => "UPDATE".to_string(),
        Statement::Delete(_) => "DELETE".to_string(),
        Statement::Merge(_) => "MERGE".to_string(),
        Statement::Copy { to: true, .. } => "COPY ... TO".to_string(),
        Statement::Copy { to: false, .. } => "COPY FROM".to_string(),
        Statement::CreateTable(create) if create.external => "CREATE EXTERNAL TABLE".to_string(),
        other => {
            // Keywords render in upper case and names as written, so the leading upper-case words are the kind
            // (`DROP TABLE`, `CREATE VIEW`, `TRUNCATE`); four words cover `CREATE OR REPLACE VIEW`.
            let text = other.to_string();
            let words: Vec<&str> = text
                .split_whitespace()
                .take(4)
                .take_while(|word| word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .collect();
            if words.is_empty() {
                "this statement".to_string()
            } else {
                words.join(" ")
            }
        }
    }
}

/// The first query hook: logs every statement and refuses those that do not only read.
#[derive(Debug)]
pub struct ReadOnlyHook;

fn refuse(statement: &Statement) -> Option<PgWireError> {
    check(statement).err().map(|refusal| {
        tracing::warn!(sql = %statement, "refused: {}", refusal.kind);
        refusal.into_pg_error()
    })
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        tracing::info!(sql = %statement, "query");
        refuse(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        tracing::debug!(sql = %statement, "parse");
        refuse(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        tracing::info!(sql = %statement, "query (extended)");
        if let Some(error) = refuse(statement) {
            return Some(Err(error));
        }
        check_plan(logical_plan).err().map(|refusal| {
            tracing::warn!(sql = %statement, "refused by plan: {}", refusal.kind);
            Err(refusal.into_pg_error())
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    use super::*;

    /// Parses with the parser the server uses, so the test sees the statements the hook sees.
    fn parse(sql: &str) -> Vec<Statement> {
        match PostgresCompatibilityParser::new().parse(sql) {
            Ok(statements) => statements,
            Err(error) => panic!("{sql}: {error}"),
        }
    }

    fn refused(sql: &str) -> String {
        let statements = parse(sql);
        assert_eq!(statements.len(), 1, "{sql}");
        match check(&statements[0]) {
            Err(refusal) => refusal.kind,
            Ok(()) => panic!("{sql} was allowed"),
        }
    }

    fn allowed(sql: &str) {
        for statement in parse(sql) {
            assert_eq!(check(&statement), Ok(()), "{sql}");
        }
    }

    #[test]
    fn insert_is_refused() {
        assert_eq!(refused("INSERT INTO t VALUES (1)"), "INSERT");
        assert_eq!(refused("INSERT INTO t SELECT * FROM u"), "INSERT");
    }

    #[test]
    fn update_delete_merge_are_refused() {
        assert_eq!(refused("UPDATE t SET a = 1"), "UPDATE");
        assert_eq!(refused("DELETE FROM t WHERE a = 1"), "DELETE");
        assert_eq!(
            refused("MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE"),
            "MERGE"
        );
    }

    #[test]
    fn copy_both_ways_is_refused() {
        assert_eq!(refused("COPY (SELECT 1) TO '/tmp/x.csv'"), "COPY ... TO");
        assert_eq!(refused("COPY t TO STDOUT"), "COPY ... TO");
        assert_eq!(refused("COPY t FROM '/tmp/x.csv'"), "COPY FROM");
        assert_eq!(refused("COPY t FROM STDIN"), "COPY FROM");
    }

    #[test]
    fn create_external_table_is_refused() {
        // Hive's form, which the Postgres-compatibility parser reads.
        assert_eq!(
            refused("CREATE EXTERNAL TABLE x (a INT) STORED AS TEXTFILE LOCATION '/tmp/x'"),
            "CREATE EXTERNAL TABLE"
        );
        // DataFusion's form, which only DataFusion's parser reads.
        let ctx = SessionContext::new();
        let sql = "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/tmp/x.csv'";
        assert_eq!(
            check_sql(&ctx, sql).map_err(|r| r.kind),
            Err("CREATE EXTERNAL TABLE".to_string())
        );
    }

    #[test]
    fn datafusion_copy_to_is_refused() {
        let ctx = SessionContext::new();
        let sql = "COPY (SELECT 1) TO '/tmp/x.parquet' STORED AS PARQUET";
        assert_eq!(
            check_sql(&ctx, sql).map_err(|r| r.kind),
            Err("COPY ... TO".to_string())
        );
        let sql = "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'";
        assert_eq!(
            check_sql(&ctx, sql).map_err(|r| r.kind),
            Err("COPY ... TO".to_string())
        );
        assert_eq!(
            check_sql(&ctx, "SELECT 1; INSERT INTO t VALUES (1)").map_err(|r| r.kind),
            Err("INSERT".to_string())
        );
        assert_eq!(check_sql(&ctx, "SELECT 1; SHOW ALL"), Ok(()));
    }

    #[test]
    fn ddl_is_refused() {
        assert_eq!(refused("CREATE TABLE t (a INT)"), "CREATE TABLE");
        assert_eq!(refused("CREATE TABLE t AS SELECT 1"), "CREATE TABLE");
        assert_eq!(refused("CREATE VIEW v AS SELECT 1"), "CREATE VIEW");
        assert_eq!(
            refused("CREATE OR REPLACE VIEW v AS SELECT 1"),
            "CREATE OR REPLACE VIEW"
        );
        assert_eq!(refused("CREATE SCHEMA s"), "CREATE SCHEMA");
        assert_eq!(refused("DROP TABLE metrics_campaign_hourly"), "DROP TABLE");
        assert_eq!(refused("DROP VIEW IF EXISTS v"), "DROP VIEW IF EXISTS");
        assert_eq!(refused("ALTER TABLE t ADD COLUMN b INT"), "ALTER TABLE");
        assert_eq!(refused("TRUNCATE TABLE t"), "TRUNCATE TABLE");
    }

    #[test]
    fn writes_nested_in_reads_are_refused() {
        assert_eq!(
            refused("EXPLAIN ANALYZE INSERT INTO t VALUES (1)"),
            "INSERT"
        );
        assert_eq!(
            refused("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'"),
            "COPY ... TO"
        );
        assert_eq!(refused("SELECT * INTO t2 FROM t"), "SELECT INTO");
        assert_eq!(
            refused("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            "DELETE"
        );
        assert_eq!(refused("PREPARE p AS INSERT INTO t VALUES (1)"), "PREPARE");
    }

    #[test]
    fn reads_and_session_statements_are_allowed() {
        allowed("SELECT 1");
        allowed("SELECT a, count(*) FROM t WHERE a > 1 GROUP BY a ORDER BY 2 DESC LIMIT 5");
        allowed("WITH x AS (SELECT 1 AS a) SELECT * FROM x UNION ALL SELECT 2");
        allowed("EXPLAIN SELECT * FROM t");
        allowed("EXPLAIN ANALYZE SELECT * FROM t");
        allowed("SHOW TABLES");
        allowed("SHOW search_path");
        allowed("SHOW ALL");
        allowed("SET datestyle TO 'ISO'");
        allowed("SET TIME ZONE 'UTC'");
        allowed("SET datafusion.execution.batch_size = 1024");
        allowed("RESET datafusion.execution.batch_size");
        allowed("BEGIN");
        allowed("BEGIN READ ONLY");
        allowed("START TRANSACTION");
        allowed("COMMIT");
        allowed("ROLLBACK");
        allowed("DECLARE c CURSOR FOR SELECT * FROM t");
        allowed("FETCH 100 FROM c");
        allowed("CLOSE c");
        allowed("DEALLOCATE p");
    }

    #[test]
    fn psql_catalog_queries_are_allowed() {
        // What `psql \dt` sends (psql 16).
        allowed(
            "SELECT n.nspname as \"Schema\", c.relname as \"Name\", \
             CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\", \
             pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" \
             FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' \
             AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' \
             AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;",
        );
    }

    #[tokio::test]
    async fn plans_that_write_are_refused() {
        let ctx = SessionContext::new();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                match ctx.state().create_logical_plan(sql).await {
                    Ok(plan) => plan,
                    Err(error) => panic!("{sql}: {error}"),
                }
            }
        };
        let create = plan("CREATE TABLE t (a INT)").await;
        assert!(check_plan(&create).is_err());
        let copy = plan("COPY (SELECT 1) TO '/tmp/never-written.csv'").await;
        assert_eq!(
            check_plan(&copy).map_err(|r| r.kind),
            Err("COPY ... TO".to_string())
        );
        assert_eq!(check_plan(&plan("SELECT 1").await), Ok(()));
    }
}
