//! Fuzz target `sql_check`: arbitrary text through what the SQL server decides from a query's text alone (size,
//! depth and parse-work bounds, the PostgreSQL parse, the read-only check of each statement), and through the
//! read-only check `adstream sql` runs in DataFusion's dialect.
//!
//! Shared by the afl binary (`fuzz/fuzz_targets/sql_check.rs`) and the corpus replay (`tests/fuzz_corpus.rs`).

use adstream_query::server::limits::TextLimits;
use adstream_query::server::read_only;
use datafusion::prelude::SessionContext;

/// The server's default bounds (`--max-query-kb 1024`, `--max-query-depth 1000`).
const LIMITS: TextLimits = TextLimits {
    max_bytes: 1024 * 1024,
    max_depth: 1000,
};

thread_local! {
    // Built once per thread: building either per input would dominate the run.
    static CONTEXT: SessionContext = SessionContext::new();
    static PARSER: read_only::ServerParser = read_only::ServerParser::new();
}

/// Checks `data` (when UTF-8) as SQL; a refusal is fine, a panic or a stack overflow is not.
pub fn run(data: &[u8]) {
    if let Ok(sql) = std::str::from_utf8(data) {
        PARSER.with(|parser| {
            let _ = read_only::screen(&LIMITS, parser, sql);
        });
        CONTEXT.with(|ctx| {
            let _ = read_only::check_sql(ctx, sql);
        });
    }
}
