//! Fuzz target `sql_check`: arbitrary text through the SQL server's read-only statement check.
//!
//! Shared by the afl binary (`fuzz/fuzz_targets/sql_check.rs`) and the corpus replay (`tests/fuzz_corpus.rs`).
//! Keep it a thin call: it follows whatever entry point `query/src/server/read_only.rs` offers.

use datafusion::prelude::SessionContext;

thread_local! {
    // One default session (its dialect is what the check reads); building one per input would dominate.
    static CONTEXT: SessionContext = SessionContext::new();
}

/// Checks `data` (when UTF-8) as SQL; a refusal is fine, a panic is not.
pub fn run(data: &[u8]) {
    if let Ok(sql) = std::str::from_utf8(data) {
        CONTEXT.with(|ctx| {
            let _ = adstream_query::server::read_only::check_sql(ctx, sql);
        });
    }
}
