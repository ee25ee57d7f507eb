//! Rust type of the reconciliation job's output: `schemas/campaign_reconciliation.avsc` (platform-reported against
//! event-derived numbers per campaign and window). Serializes to exactly its `.avsc` record, checked below.

use serde::{Deserialize, Serialize};

use crate::events::Platform;
use crate::outputs::Granularity;

/// `schemas/campaign_reconciliation.avsc`.
pub const CAMPAIGN_RECONCILIATION_AVSC: &str = include_str!("../campaign_reconciliation.avsc");

/// Where a window's comparison stands; see the schema's doc of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReconciliationStatus {
    /// Inside the platform's restatement period: may still change.
    Pending,
    /// Final; every difference within the threshold.
    Matched,
    /// Final; some difference above the threshold.
    Mismatched,
    /// Final; too few impressions on both sides to judge.
    InsufficientVolume,
    /// A symbol this reader does not know.
    Unknown,
}

/// One campaign's window, platform against events; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReconciliation {
    /// adstream's campaign id (`<platform slug>-<platform campaign id>`).
    pub campaign_id: String,
    /// Reporting platform.
    pub platform: Platform,
    /// Ad account on the platform.
    pub account_id: String,
    /// Window length of the platform's report.
    pub granularity: Granularity,
    /// Window start, inclusive (UTC epoch millis).
    pub window_start: i64,
    /// Window end, exclusive (UTC epoch millis).
    pub window_end: i64,
    /// Impressions counted from events.
    pub event_impressions: i64,
    /// Clicks counted from events.
    pub event_clicks: i64,
    /// Spend counted from events, micros.
    pub event_spend_micros: i64,
    /// Impressions the platform reports.
    pub platform_impressions: i64,
    /// Clicks the platform reports.
    pub platform_clicks: i64,
    /// Spend the platform reports, micros.
    pub platform_spend_micros: i64,
    /// Ads in the platform's report for the window.
    pub ads_reported: i32,
    /// Relative difference of impressions.
    pub impressions_difference: f64,
    /// Relative difference of clicks.
    pub clicks_difference: f64,
    /// Relative difference of spend.
    pub spend_difference: f64,
    /// The threshold the status was judged by.
    pub threshold: f64,
    /// Where the comparison stands.
    pub status: ReconciliationStatus,
    /// Latest `reported_at` of the window's report rows.
    pub reported_at: i64,
    /// When the row was made.
    pub emitted_at: i64,
    /// Correlation id of the last input that changed the window.
    pub correlation_id: String,
}

impl CampaignReconciliation {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.reconciliation.CampaignReconciliation";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CAMPAIGN_RECONCILIATION_AVSC;

    /// The record key: `<campaign>|<granularity>|<window start RFC 3339 UTC>`, like the metrics rows'.
    pub fn key(&self) -> String {
        let mut key = String::with_capacity(self.campaign_id.len() + 32);
        crate::outputs::write_metrics_key(
            &self.campaign_id,
            self.granularity,
            self.window_start,
            &mut key,
        );
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::assert_matches_schema;

    #[test]
    fn reconciliation_matches_schema() {
        let row = CampaignReconciliation {
            campaign_id: "meta-cmp-0001".into(),
            platform: Platform::Meta,
            account_id: "act-1".into(),
            granularity: Granularity::Hourly,
            window_start: 1_793_491_200_000,
            window_end: 1_793_494_800_000,
            event_impressions: 1_000,
            event_clicks: 20,
            event_spend_micros: 5_000_000,
            platform_impressions: 1_000,
            platform_clicks: 20,
            platform_spend_micros: 5_250_000,
            ads_reported: 3,
            impressions_difference: 0.0,
            clicks_difference: 0.0,
            spend_difference: 0.047,
            threshold: 0.02,
            status: ReconciliationStatus::Mismatched,
            reported_at: 1_793_500_000_000,
            emitted_at: 1_793_500_000_100,
            correlation_id: "corr".into(),
        };
        assert_eq!(row.key(), "meta-cmp-0001|hourly|2026-11-01T00:00:00Z");
        assert_matches_schema(
            CampaignReconciliation::FULL_NAME,
            CampaignReconciliation::SCHEMA,
            row,
        );
    }
}
