//! The campaign report (`adstream report campaigns`) as SQL over topic tables.
//!
//! Two tables, both [`TopicTable`]s in [`TableMode::History`] read with this build's `CampaignMetrics` and
//! `CampaignAlert` schemas (records written under older or newer compatible schemas resolve to them, and a topic
//! with no schema registered yet still reads):
//!
//! - the metrics topic of the chosen granularity: the latest row per key, summed per campaign, ranked by spend
//!   ([`CampaignReport::query`]); the KPIs come from `adstream_processors::campaign_metrics::kpi`, the job's own
//!   maths, over the sums;
//! - the alerts topic: every change, and the latest state per campaign and alert kind ([`AlertReport::query`]).
//!
//! "Latest row per key" is computed in SQL over the history rather than taken from a [`TableMode::LatestPerKey`]
//! table, to keep the report's rule: a key's latest *decodable* row counts, and a tombstone or an undecodable
//! record does not remove the row before it (a `LatestPerKey` table drops the key in both cases). Reads are
//! `read_committed`, like every topic table's.

use std::sync::Arc;

use adstream_processors::campaign_metrics::kpi::{Kpis, Totals};
use adstream_schemas::events::Platform;
use adstream_schemas::outputs::{AlertKind, AlertSeverity, CampaignAlert, CampaignMetrics};
use apache_avro::Schema;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;

use crate::catalog::{self, CATALOG, HISTORY};
use crate::source::KafkaSource;
use crate::table::{TableMode, TopicTable};
use crate::QueryError;

/// What can go wrong running the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Kafka, the registry or a table could not be set up or read.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// DataFusion could not plan or run a query.
    #[error("the report query failed: {0}")]
    DataFusion(#[from] DataFusionError),
    /// A result column is missing or not of a type the report reads.
    #[error("report column {column}: {message}")]
    Column {
        /// The column's name.
        column: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// A session holding the report's two tables, `history."<metrics topic>"` and `history."<alerts topic>"`.
pub struct ReportSession {
    ctx: SessionContext,
    metrics_topic: String,
    alerts_topic: String,
}

impl ReportSession {
    /// A session over `metrics_topic` (rows of `CampaignMetrics`) and `alerts_topic` (rows of `CampaignAlert`) read
    /// through `source`. Asks Kafka nothing yet: each query reads the topics to their end at the time it runs.
    pub fn new(
        source: &Arc<KafkaSource>,
        metrics_topic: &str,
        alerts_topic: &str,
    ) -> Result<ReportSession, ReportError> {
        let ctx = catalog::new_session()?;
        for (topic, schema) in [
            (metrics_topic, CampaignMetrics::SCHEMA),
            (alerts_topic, CampaignAlert::SCHEMA),
        ] {
            let reader = Schema::parse_str(schema).map_err(|e| QueryError::Schema {
                topic: topic.to_owned(),
                message: e.to_string(),
            })?;
            let table = TopicTable::new(source.clone(), topic, reader, TableMode::History)?;
            ctx.register_table(
                TableReference::full(CATALOG, HISTORY, topic),
                Arc::new(table),
            )?;
        }
        Ok(ReportSession {
            ctx,
            metrics_topic: metrics_topic.to_owned(),
            alerts_topic: alerts_topic.to_owned(),
        })
    }

    /// The metrics topic.
    pub fn metrics_topic(&self) -> &str {
        &self.metrics_topic
    }

    /// The alerts topic.
    pub fn alerts_topic(&self) -> &str {
        &self.alerts_topic
    }

    /// Plans and runs `sql`; returns its batches and how many records of the scanned topics did not decode.
    async fn run(&self, sql: &str) -> Result<(Vec<RecordBatch>, usize), ReportError> {
        let plan = self.ctx.sql(sql).await?.create_physical_plan().await?;
        let batches = collect(plan.clone(), self.ctx.task_ctx()).await?;
        Ok((batches, undecodable(plan.as_ref())))
    }
}

/// The sum of the `undecodable` counters of the topic scans in `plan`.
fn undecodable(plan: &dyn ExecutionPlan) -> usize {
    let here = plan
        .metrics()
        .and_then(|metrics| metrics.sum_by_name("undecodable"))
        .map_or(0, |value| value.as_usize());
    here + plan
        .children()
        .into_iter()
        .map(|child| undecodable(child.as_ref()))
        .sum::<usize>()
}

/// `history."<topic>"`, quoted for SQL.
fn history_table(topic: &str) -> String {
    format!("{HISTORY}.\"{}\"", topic.replace('"', "\"\""))
}

/// One campaign's sums over the latest rows of its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSummary {
    /// The campaign.
    pub campaign_id: String,
    /// Its platform.
    pub platform: Platform,
    /// The currency of its money columns.
    pub currency: String,
    /// Impressions, clicks, spend, conversions and revenue summed over its windows (counts and spend saturate,
    /// as [`Totals::add`] does; a negative count in a row counts as 0).
    pub totals: Totals,
    /// The KPIs of [`CampaignSummary::totals`] ([`Kpis::of`]).
    pub kpis: Kpis,
    /// Windows (keys) of the campaign.
    pub windows: u64,
    /// Of those, the windows whose latest row is final.
    pub final_windows: u64,
    /// The sum of the latest rows' `corrections`.
    pub corrections: i64,
}

/// The metrics part of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignReport {
    /// Keys (windows) with a row.
    pub rows: u64,
    /// Campaigns with a row.
    pub campaigns: u64,
    /// Records of the topic that did not decode.
    pub undecodable: usize,
    /// The top campaigns by spend (ties by campaign id).
    pub top: Vec<CampaignSummary>,
}

impl CampaignReport {
    /// The report over the metrics table of `session`: the latest decodable row of every key (a key is one
    /// campaign window), summed per campaign, the `top` campaigns by spend.
    pub async fn query(session: &ReportSession, top: usize) -> Result<CampaignReport, ReportError> {
        // Counts and spend are summed as DECIMAL(38, 0), exactly, and saturated when read (Totals::add saturates;
        // SQL's BIGINT sum would wrap). `u64::try_from(count).unwrap_or(0)` per row is the CASE.
        let sql = format!(
            "WITH versions AS (
                SELECT campaign_id, platform, currency, impressions, clicks, spend_micros, conversions,
                       revenue_micros, is_final, corrections,
                       row_number() OVER (PARTITION BY _key ORDER BY _offset DESC, _partition DESC) AS newest
                FROM {table}
                WHERE _key IS NOT NULL AND campaign_id IS NOT NULL
            ),
            campaigns AS (
                SELECT campaign_id,
                       max(platform) AS platform,
                       max(currency) AS currency,
                       sum(CAST(CASE WHEN impressions < 0 THEN 0 ELSE impressions END AS DECIMAL(38, 0)))
                           AS impressions,
                       sum(CAST(CASE WHEN clicks < 0 THEN 0 ELSE clicks END AS DECIMAL(38, 0))) AS clicks,
                       sum(CAST(spend_micros AS DECIMAL(38, 0))) AS spend_micros,
                       sum(conversions) AS conversions,
                       sum(revenue_micros) AS revenue_micros,
                       count(*) AS windows,
                       sum(CASE WHEN is_final THEN 1 ELSE 0 END) AS final_windows,
                       sum(corrections) AS corrections
                FROM versions
                WHERE newest = 1
                GROUP BY campaign_id
            )
            SELECT *, sum(windows) OVER () AS all_rows, count(*) OVER () AS all_campaigns
            FROM campaigns
            ORDER BY spend_micros DESC, campaign_id ASC
            LIMIT {limit}",
            table = history_table(&session.metrics_topic),
            // At least one row, which carries the totals.
            limit = top.max(1),
        );
        let (batches, undecodable) = session.run(&sql).await?;
        let mut report = CampaignReport {
            rows: 0,
            campaigns: 0,
            undecodable,
            top: Vec::new(),
        };
        for batch in &batches {
            let campaign_id = strings(batch, "campaign_id")?;
            let platform = strings(batch, "platform")?;
            let currency = strings(batch, "currency")?;
            let impressions = decimals(batch, "impressions")?;
            let clicks = decimals(batch, "clicks")?;
            let spend = decimals(batch, "spend_micros")?;
            let conversions = floats(batch, "conversions")?;
            let revenue = floats(batch, "revenue_micros")?;
            let windows = integers(batch, "windows")?;
            let final_windows = integers(batch, "final_windows")?;
            let corrections = integers(batch, "corrections")?;
            let all_rows = integers(batch, "all_rows")?;
            let all_campaigns = integers(batch, "all_campaigns")?;
            for row in 0..batch.num_rows() {
                report.rows = non_negative(all_rows[row]);
                report.campaigns = non_negative(all_campaigns[row]);
                if report.top.len() >= top {
                    continue;
                }
                let totals = Totals {
                    impressions: saturate_u64(impressions[row]),
                    clicks: saturate_u64(clicks[row]),
                    spend_micros: saturate_i64(spend[row]),
                    conversions: conversions[row],
                    revenue_micros: revenue[row],
                };
                report.top.push(CampaignSummary {
                    campaign_id: campaign_id[row].clone(),
                    platform: symbol(&platform[row]).unwrap_or(Platform::Unknown),
                    currency: currency[row].clone(),
                    kpis: Kpis::of(&totals),
                    totals,
                    windows: non_negative(windows[row]),
                    final_windows: non_negative(final_windows[row]),
                    corrections: corrections[row],
                });
            }
        }
        Ok(report)
    }
}

/// The current state of one alert condition of a campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertState {
    /// The campaign.
    pub campaign_id: String,
    /// The condition.
    pub kind: AlertKind,
    /// Its latest severity.
    pub severity: AlertSeverity,
    /// The latest change's message.
    pub message: String,
}

/// The alerts part of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReport {
    /// Alert changes on the topic (decodable records with a key and a value).
    pub changes: u64,
    /// The conditions whose latest state is not resolved, by campaign id, then kind (as named in Rust).
    pub firing: Vec<AlertState>,
}

impl AlertReport {
    /// The report over the alerts table of `session`: every change counted, the latest per campaign and kind
    /// kept, the ones not resolved listed.
    pub async fn query(session: &ReportSession) -> Result<AlertReport, ReportError> {
        let sql = format!(
            "WITH changes AS (
                SELECT campaign_id, kind, severity, message,
                       row_number() OVER (
                           PARTITION BY campaign_id, kind ORDER BY _offset DESC, _partition DESC
                       ) AS newest,
                       count(*) OVER () AS changes
                FROM {table}
                WHERE _key IS NOT NULL AND campaign_id IS NOT NULL
            )
            SELECT campaign_id, kind, severity, message, changes
            FROM changes
            WHERE newest = 1
            ORDER BY campaign_id, kind",
            table = history_table(&session.alerts_topic),
        );
        let (batches, _) = session.run(&sql).await?;
        let mut report = AlertReport {
            changes: 0,
            firing: Vec::new(),
        };
        for batch in &batches {
            let campaign_id = strings(batch, "campaign_id")?;
            let kind = strings(batch, "kind")?;
            let severity = strings(batch, "severity")?;
            let message = strings(batch, "message")?;
            let changes = integers(batch, "changes")?;
            for row in 0..batch.num_rows() {
                report.changes = non_negative(changes[row]);
                let severity = symbol(&severity[row]).unwrap_or(AlertSeverity::Unknown);
                // Every condition's latest state comes back (so that `changes` arrives even when none fires).
                if severity == AlertSeverity::Resolved {
                    continue;
                }
                report.firing.push(AlertState {
                    campaign_id: campaign_id[row].clone(),
                    kind: symbol(&kind[row]).unwrap_or(AlertKind::Unknown),
                    severity,
                    message: message[row].clone(),
                });
            }
        }
        // Kinds in the order of their Rust names, as the report always listed them.
        report.firing.sort_by(|a, b| {
            (a.campaign_id.as_str(), format!("{:?}", a.kind))
                .cmp(&(b.campaign_id.as_str(), format!("{:?}", b.kind)))
        });
        Ok(report)
    }
}

/// An enum of the contract from its Avro symbol (`GOOGLE_ADS`, `RESOLVED`).
fn symbol<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn saturate_u64(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

fn saturate_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Column `name` of `batch` cast to `to`, without nulls; the error says what is wrong with it.
pub(crate) fn result_column(
    batch: &RecordBatch,
    name: &'static str,
    to: &DataType,
) -> Result<Arc<dyn Array>, String> {
    let found = batch
        .column_by_name(name)
        .ok_or_else(|| "missing from the result".to_owned())?;
    let cast = cast(found, to).map_err(|e| e.to_string())?;
    if cast.null_count() > 0 {
        return Err("null in a result row".to_owned());
    }
    Ok(cast)
}

/// [`result_column`] as a report error.
fn column(
    batch: &RecordBatch,
    name: &'static str,
    to: &DataType,
) -> Result<Arc<dyn Array>, ReportError> {
    result_column(batch, name, to).map_err(|message| ReportError::Column {
        column: name,
        message,
    })
}

fn strings(batch: &RecordBatch, name: &'static str) -> Result<Vec<String>, ReportError> {
    let array = column(batch, name, &DataType::Utf8)?;
    Ok(array
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}

fn integers(batch: &RecordBatch, name: &'static str) -> Result<Vec<i64>, ReportError> {
    let array = column(batch, name, &DataType::Int64)?;
    Ok(array.as_primitive::<Int64Type>().values().to_vec())
}

fn floats(batch: &RecordBatch, name: &'static str) -> Result<Vec<f64>, ReportError> {
    let array = column(batch, name, &DataType::Float64)?;
    Ok(array.as_primitive::<Float64Type>().values().to_vec())
}

fn decimals(batch: &RecordBatch, name: &'static str) -> Result<Vec<i128>, ReportError> {
    let array = column(batch, name, &DataType::Decimal128(38, 0))?;
    Ok(array.as_primitive::<Decimal128Type>().values().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_read_as_the_contract_enums() {
        assert_eq!(symbol::<Platform>("GOOGLE_ADS"), Some(Platform::GoogleAds));
        assert_eq!(
            symbol::<AlertSeverity>("RESOLVED"),
            Some(AlertSeverity::Resolved)
        );
        // Records written before the four severities: INFO and WARNING read as LOW and MEDIUM.
        assert_eq!(symbol::<AlertSeverity>("INFO"), Some(AlertSeverity::Low));
        assert_eq!(
            symbol::<AlertSeverity>("WARNING"),
            Some(AlertSeverity::Medium)
        );
        assert_eq!(symbol::<AlertSeverity>("HIGH"), Some(AlertSeverity::High));
        assert_eq!(
            symbol::<AlertKind>("CTR_BELOW_TARGET"),
            Some(AlertKind::CtrBelowTarget)
        );
        assert_eq!(symbol::<Platform>("NOPE"), None);
    }

    #[test]
    fn sums_saturate_like_totals() {
        assert_eq!(saturate_u64(-5), 0);
        assert_eq!(saturate_u64(i128::from(u64::MAX) + 1), u64::MAX);
        assert_eq!(saturate_i64(i128::from(i64::MAX) + 1), i64::MAX);
        assert_eq!(saturate_i64(i128::from(i64::MIN) - 1), i64::MIN);
        assert_eq!(history_table("a\"b"), "history.\"a\"\"b\"");
    }
}
