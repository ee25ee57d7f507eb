//! Prints adstream's compatibility verdicts for a corpus of schema pairs, for the Python oracle test
//! (`tests/python/test_compat_oracle.py`), which compares them with Python avro's checker.
//!
//! Usage: `compat_verdicts <corpus.jsonl>`, where each line is `{"name": ..., "old": <schema>, "new": <schema>}`.
//! Prints one JSON line per pair: `{"name", "backward", "forward", "full", "why_backward", "why_forward",
//! "apache_avro_backward", "apache_avro_forward"}` (the last two: apache-avro's checker alone, `Partial` counted as
//! incompatible, to show what our corrections change), or `{"name", "error"}` when a schema does not parse.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use adstream_schemas::compat::{self, CompatibilityLevel};
use anyhow::{Context, Result};
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use serde_json::{json, Value};

fn reasons(writer: &Schema, reader: &Schema) -> Vec<String> {
    match compat::can_read(writer, reader) {
        Ok(()) => Vec::new(),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

fn apache_avro_alone(writer: &Schema, reader: &Schema) -> bool {
    matches!(
        SchemaCompatibility::can_read(writer, reader),
        Ok(Compatibility::Full)
    )
}

fn verdict(name: &str, pair: &Value) -> Value {
    let parse = |side: &str| {
        Schema::parse(&pair[side])
            .map_err(|e| format!("the {side} schema of '{name}' does not parse: {e}"))
    };
    let (old, new) = match (parse("old"), parse("new")) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => return json!({ "name": name, "error": e }),
    };
    let existing = [old];
    let compatible = |level| compat::check(level, &new, &existing).is_empty();
    json!({
        "name": name,
        "backward": compatible(CompatibilityLevel::Backward),
        "forward": compatible(CompatibilityLevel::Forward),
        "full": compatible(CompatibilityLevel::Full),
        "why_backward": reasons(&existing[0], &new),
        "why_forward": reasons(&new, &existing[0]),
        "apache_avro_backward": apache_avro_alone(&existing[0], &new),
        "apache_avro_forward": apache_avro_alone(&new, &existing[0]),
    })
}

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: compat_verdicts <corpus.jsonl>")?;
    let file = File::open(&path).with_context(|| format!("cannot open corpus {path}"))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {path}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: Value = serde_json::from_str(&line)
            .with_context(|| format!("{path}:{}: not a JSON object", index + 1))?;
        let name = pair["name"]
            .as_str()
            .with_context(|| format!("{path}:{}: no \"name\" string", index + 1))?;
        writeln!(out, "{}", verdict(name, &pair))?;
    }
    out.flush()?;
    Ok(())
}
