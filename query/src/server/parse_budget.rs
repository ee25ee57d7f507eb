//! A bound on the work of parsing one query text.
//!
//! sqlparser backtracks. With the PostgreSQL dialect every function argument is first read as a named argument
//! (`name => value`) and, when no `=>` follows, read again as a plain expression; an argument that is itself a call
//! is read twice at each level, so nested calls cost 2^depth. Fuzzing found texts of 300 bytes (nested calls around
//! half-finished expressions) that kept one parse busy for more than 20 seconds, on the async worker that runs the
//! session. The size and depth bounds of [`super::limits`] do not catch them: the cost grows with how the nesting
//! backtracks, not with length or depth alone.
//!
//! So before the server's parser reads a text, [`check`] reads it once with the same grammar and a step budget:
//! [`BudgetedPostgres`] is the PostgreSQL dialect, unchanged except that it counts every expression the parser
//! starts (sqlparser asks the dialect's `parse_prefix` hook first at each one, retries included) and stops the parse
//! when the count passes the budget. The budget is a constant plus a few steps per token: real queries (psql's and
//! BI tools' catalog queries, long projections, nested subqueries and CASEs) take about one step per token, while the
//! backtracking grows without bound. The exponential case is a known sqlparser defect (fixed upstream after 0.62,
//! the version DataFusion pins here); when DataFusion moves to a fixed sqlparser this check stays as a cheap bound.

use std::any::TypeId;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Steps every text may take whatever its length: enough for function calls nested 16 deep (2^16 steps, about 15
/// ms in a release build), which real queries do not reach.
pub const BASE_STEPS: usize = 100_000;
/// Steps each token of the text adds to the budget; real queries take about one.
pub const STEPS_PER_TOKEN: usize = 8;

/// Why a text was refused by the trial parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the query is too complex to parse: reading it took more than {budget} parser steps (the budget for its \
     {tokens} tokens); function calls nested this deep make the SQL parser retry exponentially"
)]
pub struct ParseTooComplex {
    /// The budget that was exhausted.
    pub budget: usize,
    /// The number of tokens the budget was computed from.
    pub tokens: usize,
}

/// `Ok` when parsing `sql` with the PostgreSQL dialect stays within the step budget for its length. Syntax errors
/// are not this check's business: they are `Ok` here and reported by the real parse.
pub fn check(sql: &str) -> Result<(), ParseTooComplex> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(());
    };
    let token_count = tokens
        .iter()
        .filter(|token| !matches!(token.token, Token::Whitespace(_)))
        .count();
    let budgeted = BudgetedPostgres::new(budget_for(token_count));
    // The outcome does not matter, only whether the budget ran out: a few parser paths turn any error into an
    // attempt at another form, so the parse may end with some other error, but every expression it starts after
    // the budget is spent fails at once, so it ends quickly either way.
    let _ = Parser::new(&budgeted)
        .with_tokens_with_locations(tokens)
        .parse_statements();
    if budgeted.exhausted() {
        return Err(ParseTooComplex {
            budget: budgeted.budget,
            tokens: token_count,
        });
    }
    Ok(())
}

/// The step budget of a text of `tokens` tokens.
pub fn budget_for(tokens: usize) -> usize {
    BASE_STEPS.saturating_add(tokens.saturating_mul(STEPS_PER_TOKEN))
}

/// The PostgreSQL dialect with a budget of parser steps (see the module documentation).
///
/// It answers every question the parser asks exactly as [`PostgreSqlDialect`] does, including its identity
/// (`dialect()`), which the parser checks for dialect-specific syntax. Once the budget is spent, every expression
/// the parser starts fails with [`ParserError::RecursionLimitExceeded`], the error sqlparser's backtracking passes
/// on instead of trying the next alternative, so the parse ends quickly.
#[derive(Debug)]
pub struct BudgetedPostgres {
    inner: PostgreSqlDialect,
    budget: usize,
    steps: AtomicUsize,
    exhausted: AtomicBool,
}

impl BudgetedPostgres {
    /// A dialect that allows `budget` steps.
    pub fn new(budget: usize) -> Self {
        Self {
            inner: PostgreSqlDialect {},
            budget,
            steps: AtomicUsize::new(0),
            exhausted: AtomicBool::new(false),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps.load(Ordering::Relaxed)
    }

    /// Whether a parse ran out of steps.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }
}

/// Forwards methods without arguments other than `&self` to the PostgreSQL dialect.
macro_rules! same_as_postgres {
    ($($method:ident -> $returns:ty),* $(,)?) => {
        $(fn $method(&self) -> $returns { self.inner.$method() })*
    };
}

/// Every method [`PostgreSqlDialect`] overrides is forwarded (sqlparser 0.62); the test
/// `parses_like_the_postgres_dialect` compares the two on the fuzz corpus and the server's test queries.
impl Dialect for BudgetedPostgres {
    fn dialect(&self) -> TypeId {
        self.inner.dialect()
    }

    fn parse_prefix(&self, _parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let steps = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if steps > self.budget {
            self.exhausted.store(true, Ordering::Relaxed);
            return Some(Err(ParserError::RecursionLimitExceeded));
        }
        None
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.inner.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.inner.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.inner.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.inner.get_next_precedence(parser)
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.inner.prec_value(prec)
    }

    same_as_postgres!(
        supports_unicode_string_literal -> bool,
        supports_filter_during_aggregation -> bool,
        supports_group_by_expr -> bool,
        allow_extract_custom -> bool,
        allow_extract_single_quotes -> bool,
        supports_create_index_with_clause -> bool,
        supports_explain_with_utility_options -> bool,
        supports_listen_notify -> bool,
        supports_factorial_operator -> bool,
        supports_bitwise_shift_operators -> bool,
        supports_comment_on -> bool,
        supports_load_extension -> bool,
        supports_named_fn_args_with_colon_operator -> bool,
        supports_named_fn_args_with_expr_name -> bool,
        supports_empty_projections -> bool,
        supports_nested_comments -> bool,
        supports_string_escape_constant -> bool,
        supports_numeric_literal_underscores -> bool,
        supports_array_typedef_with_brackets -> bool,
        supports_geometric_types -> bool,
        supports_set_names -> bool,
        supports_alter_column_type_using -> bool,
        supports_notnull_operator -> bool,
        supports_interval_options -> bool,
        supports_insert_table_alias -> bool,
        supports_create_table_like_parenthesized -> bool,
        supports_select_wildcard_with_alias -> bool,
        supports_comma_separated_trim -> bool,
        supports_xml_expressions -> bool,
        supports_comment_optimizer_hint -> bool,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fuzz_dir(kind: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz")
            .join(kind)
            .join("sql_check")
    }

    fn texts_in(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut texts: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter_map(|path| {
                let bytes = std::fs::read(&path).expect("read fuzz input");
                String::from_utf8(bytes).ok().map(|text| (path, text))
            })
            .collect();
        texts.sort();
        texts
    }

    fn nested(call: &str, depth: usize, inner: &str, close: &str) -> String {
        format!(
            "SELECT {}{inner}{} FROM t",
            call.repeat(depth),
            close.repeat(depth)
        )
    }

    /// Regression (fuzzing, 2026-12-06): these texts took 2 to more than 20 seconds each to parse on the session's
    /// worker; the trial parse now refuses each well within its budget.
    #[test]
    fn backtracking_texts_found_by_fuzzing_are_refused() {
        let slow = texts_in(&fuzz_dir("regressions"));
        let slow: Vec<_> = slow
            .iter()
            .filter(|(path, _)| path.to_string_lossy().contains("slow-parse-"))
            .collect();
        assert_eq!(slow.len(), 7, "fuzz/regressions/sql_check/slow-parse-*.sql");
        for (path, sql) in slow {
            let refusal = check(sql).expect_err(&path.display().to_string());
            assert!(refusal.budget >= BASE_STEPS, "{refusal:?}");
        }
        // The same shape from sqlparser's own bug reports, and plain nested calls past 2^17 steps.
        let cast_case = format!("SELECT {}{}", "CAST(CASE (".repeat(8), ")".repeat(24));
        assert!(check(&cast_case).is_err());
        assert!(check(&nested("upper(", 20, "x", ")")).is_err());
    }

    #[test]
    fn real_queries_fit_the_budget() {
        let queries = [
            // psql's \dt and \d.
            "SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' \
             THEN 'view' END as \"Type\", pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" FROM \
             pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind \
             IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND \
             pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT \
             pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = \
             a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull FROM pg_catalog.pg_attribute a WHERE \
             a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            // A BI tool's nesting.
            "SELECT round(cast(sum(coalesce(nullif(trim(lower(concat(substr(campaign_id, 1, 3), '-', \
             cast(extract(hour FROM to_timestamp_millis(event_time)) AS varchar)))), ''), 'x')) AS double), 4) \
             FROM ads_clicks",
        ];
        for sql in queries {
            assert_eq!(check(sql), Ok(()), "{sql}");
        }
        assert_eq!(check(&nested("coalesce(", 12, "x", ", 0)")), Ok(()));
        assert_eq!(check(&nested("upper(", 14, "x", ")")), Ok(()));
        assert_eq!(check(&nested("(SELECT ", 40, "1", ")")), Ok(()));
        let wide = format!(
            "SELECT {} FROM t WHERE {}",
            (0..2000)
                .map(|i| format!("sum(c{i}) AS s{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..1000)
                .map(|i| format!("c{i} > {i}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        assert_eq!(check(&wide), Ok(()));
    }

    /// The budgeted dialect must read every text exactly as the PostgreSQL dialect does, or the trial parse would
    /// measure a different grammar from the one the server runs.
    #[test]
    fn parses_like_the_postgres_dialect() {
        let mut texts = texts_in(&fuzz_dir("corpus"));
        texts.extend(
            [
                "SELECT f(a => 1, b => 2), g(x := 3), 5!, 1 << 2, 'a' || 'b', j -> 'k', j ->> 'k' FROM t",
                "SELECT count(*) FILTER (WHERE a > 1), ARRAY[1, 2][1], U&'\\0041', E'\\n', 1_000, a::text COLLATE \"C\"",
                "SELECT a FROM t WHERE a NOTNULL AND b ISNULL AND c @> d AND e ~* 'x' AND interval '1 day' > f",
                "LISTEN chan; SET NAMES 'utf8'; EXPLAIN (ANALYZE, VERBOSE) SELECT 1; SELECT point '(1,2)' <-> point '(3,4)'",
            ]
            .map(|sql| (PathBuf::from("inline"), sql.to_string())),
        );
        for (path, sql) in texts {
            let budgeted = BudgetedPostgres::new(usize::MAX);
            let theirs = Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(|e| e.to_string());
            let ours = Parser::parse_sql(&budgeted, &sql).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{}: {sql}", path.display());
        }
    }
}
