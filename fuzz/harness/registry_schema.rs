//! Fuzz target `registry_schema`: arbitrary text as Avro schemas submitted to the registry, and the compatibility
//! check between two of them.
//!
//! Input: one selector byte (the compatibility level), then UTF-8 text; a NUL splits it into the new schema and
//! the existing one (without a NUL the schema is checked against itself). Both go through the registry's own
//! parsing (`parse_submitted_schema`, which applies the union fan-out bound), so the check only ever sees schemas
//! the registry would accept, and must stay fast on them.
//!
//! Shared by the afl binary (`fuzz/fuzz_targets/registry_schema.rs`) and the corpus replay (`tests/fuzz_corpus.rs`).

use adstream_registry::parse_submitted_schema;
use adstream_schemas::compat::{self, CompatibilityLevel};

/// Parses and, when both parse, checks compatibility; errors are fine, panics are not.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (new_text, old_text) = text.split_once('\0').unwrap_or((text, text));
    let Ok(new_schema) = parse_submitted_schema(new_text) else {
        return;
    };
    let Ok(old_schema) = parse_submitted_schema(old_text) else {
        return;
    };
    let level = CompatibilityLevel::ALL[usize::from(selector) % CompatibilityLevel::ALL.len()];
    let _ = compat::check(level, &new_schema, &[old_schema]);
}
