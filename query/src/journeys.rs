//! The journeys of a period as a path dataset: SQL over `attribution.journeys` (`adstream attribution fit` and
//! `adstream attribution journeys`).
//!
//! One table, `history."<journeys topic>"`, a [`TopicTable`] read with this build's `Journey` schema. The journeys
//! that ended in `[from, until)` (`ended_at`, which is also the record timestamp) are grouped by path into
//! ChannelAttribution's rows. The scan starts where Kafka's time index puts `from` (a `_timestamp` bound, exact at
//! the start); the end is filtered on `ended_at` only, not pushed down as a `_timestamp` bound: the topic is
//! written in transactions, whose commit markers carry the wall-clock time, and a marker newer than `until` would
//! end the scan before later records of older journeys. The rows:
//! `path`, `total_conversions` (converted journeys), `total_conversion_value` (their value, in currency units:
//! micros / 10⁶, currencies summed as they come) and `total_null` (journeys without conversion). Reads are
//! `read_committed`, up to the topic's end when the query runs.

use std::sync::Arc;

use adstream_processors::attribution::models::{parse_path, PathCount};
use adstream_schemas::outputs::Journey;
use apache_avro::Schema;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;

use crate::catalog::{self, CATALOG, HISTORY};
use crate::source::KafkaSource;
use crate::table::{TableMode, TopicTable};
use crate::QueryError;

/// What can go wrong reading the journeys.
#[derive(Debug, thiserror::Error)]
pub enum JourneysError {
    /// Kafka, the registry or the table could not be set up or read.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// DataFusion could not plan or run the query.
    #[error("the journeys query failed: {0}")]
    DataFusion(#[from] DataFusionError),
    /// A result column is missing or not of the expected type.
    #[error("journeys column {column}: {message}")]
    Column {
        /// The column's name.
        column: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// One distinct path of a period, as a row of ChannelAttribution's path data.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRow {
    /// Campaign ids joined by ` > `.
    pub path: String,
    /// Converted journeys along it.
    pub conversions: i64,
    /// Their value in currency units.
    pub value: f64,
    /// Journeys along it without conversion.
    pub nulls: i64,
}

impl PathRow {
    /// The row as the models' input.
    pub fn path_count(&self) -> PathCount {
        PathCount {
            channels: parse_path(&self.path, Journey::PATH_SEPARATOR.trim()),
            conversions: self.conversions as f64,
            value: self.value,
            nulls: self.nulls as f64,
        }
    }
}

/// A session over one journeys topic.
pub struct JourneySession {
    ctx: SessionContext,
    topic: String,
}

impl JourneySession {
    /// A session over `topic` (records of `Journey`) read through `source`. Asks Kafka nothing yet.
    pub fn new(source: &Arc<KafkaSource>, topic: &str) -> Result<JourneySession, JourneysError> {
        let ctx = catalog::new_session()?;
        let reader = Schema::parse_str(Journey::SCHEMA).map_err(|e| QueryError::Schema {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
        let table = TopicTable::new(source.clone(), topic, reader, TableMode::History)?;
        ctx.register_table(
            TableReference::full(CATALOG, HISTORY, topic),
            Arc::new(table),
        )?;
        Ok(JourneySession {
            ctx,
            topic: topic.to_owned(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The SQL that groups the journeys that ended in `[from_ms, until_ms)` by path, ordered by path.
    pub fn paths_sql(&self, from_ms: i64, until_ms: i64) -> String {
        format!(
            "SELECT path, \
                    SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS total_conversions, \
                    SUM(CASE WHEN converted THEN CAST(value_micros AS DOUBLE) / 1000000.0 ELSE 0.0 END) \
                        AS total_conversion_value, \
                    SUM(CASE WHEN converted THEN 0 ELSE 1 END) AS total_null \
             FROM {HISTORY}.\"{}\" \
             WHERE _timestamp >= to_timestamp_millis({from_ms}) AND ended_at >= to_timestamp_millis({from_ms}) \
               AND ended_at < to_timestamp_millis({until_ms}) \
               AND path IS NOT NULL AND path <> '' \
             GROUP BY path ORDER BY path",
            self.topic.replace('"', "\"\"")
        )
    }

    /// The journeys that ended in `[from_ms, until_ms)`, one row per distinct path, ordered by path.
    pub async fn paths(&self, from_ms: i64, until_ms: i64) -> Result<Vec<PathRow>, JourneysError> {
        let plan = self
            .ctx
            .sql(&self.paths_sql(from_ms, until_ms))
            .await?
            .create_physical_plan()
            .await?;
        let batches = collect(plan, self.ctx.task_ctx()).await?;
        let mut rows = Vec::new();
        for batch in &batches {
            let paths = column(batch, "path", &DataType::Utf8)?;
            let conversions = column(batch, "total_conversions", &DataType::Int64)?;
            let value = column(batch, "total_conversion_value", &DataType::Float64)?;
            let nulls = column(batch, "total_null", &DataType::Int64)?;
            let (paths, conversions, value, nulls) = (
                paths.as_string::<i32>(),
                conversions.as_primitive::<Int64Type>(),
                value.as_primitive::<Float64Type>(),
                nulls.as_primitive::<Int64Type>(),
            );
            for row in 0..batch.num_rows() {
                rows.push(PathRow {
                    path: paths.value(row).to_owned(),
                    conversions: conversions.value(row),
                    value: value.value(row),
                    nulls: nulls.value(row),
                });
            }
        }
        Ok(rows)
    }
}

/// The rows as a ChannelAttribution path-data CSV (header `path,total_conversions,total_conversion_value,
/// total_null`; paths quoted).
pub fn paths_csv(rows: &[PathRow]) -> String {
    let mut out = String::from("path,total_conversions,total_conversion_value,total_null\n");
    for row in rows {
        out.push_str(&format!(
            "\"{}\",{},{},{}\n",
            row.path.replace('"', "\"\""),
            row.conversions,
            row.value,
            row.nulls
        ));
    }
    out
}

/// [`crate::report::result_column`] as a journeys error.
fn column(
    batch: &RecordBatch,
    name: &'static str,
    to: &DataType,
) -> Result<Arc<dyn Array>, JourneysError> {
    crate::report::result_column(batch, name, to).map_err(|message| JourneysError::Column {
        column: name,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_path_counts_and_channelattribution_csv() {
        let rows = [
            PathRow {
                path: "c-a > c-b".into(),
                conversions: 2,
                value: 12.5,
                nulls: 3,
            },
            PathRow {
                path: "c-\"q\"".into(),
                conversions: 0,
                value: 0.0,
                nulls: 1,
            },
        ];
        assert_eq!(
            rows[0].path_count(),
            PathCount {
                channels: vec!["c-a".into(), "c-b".into()],
                conversions: 2.0,
                value: 12.5,
                nulls: 3.0
            }
        );
        assert_eq!(
            paths_csv(&rows),
            "path,total_conversions,total_conversion_value,total_null\n\"c-a > c-b\",2,12.5,3\n\"c-\"\"q\"\"\",0,0,1\n"
        );
    }
}
