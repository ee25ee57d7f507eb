//! Rust types of what the platform connectors write: `schemas/platform_report.avsc` (the normalised report rows of
//! `platform.reports`) and `schemas/connector_cursor.avsc` (each ad account's sync position, written in the same
//! transaction as the rows).
//!
//! Like [`crate::outputs`], each struct serializes to exactly its `.avsc` record, checked by the tests below; keys
//! are built here so that the connectors and every reader agree on them.

use serde::{Deserialize, Serialize};

use crate::events::Platform;
use crate::outputs::Granularity;

/// `schemas/platform_report.avsc`.
pub const PLATFORM_REPORT_AVSC: &str = include_str!("../platform_report.avsc");
/// `schemas/connector_cursor.avsc`.
pub const CONNECTOR_CURSOR_AVSC: &str = include_str!("../connector_cursor.avsc");

/// One ad's numbers for one hour or day, as its platform reports them; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformReport {
    /// Platform that reported the row.
    pub platform: Platform,
    /// Ad account on the platform.
    pub account_id: String,
    /// The platform's campaign id.
    pub campaign_id: String,
    /// The platform's ad group, where the report has one.
    pub ad_group_id: Option<String>,
    /// The platform's ad (creative) id.
    pub ad_id: String,
    /// Window length.
    pub granularity: Granularity,
    /// Window start, inclusive (UTC epoch millis).
    pub window_start: i64,
    /// Window end, exclusive (UTC epoch millis).
    pub window_end: i64,
    /// IANA time zone of the account.
    pub time_zone: String,
    /// ISO 4217 currency of the account.
    pub currency: String,
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Spend in micros of the currency.
    pub spend_micros: i64,
    /// Conversions the platform attributes to the ad.
    pub conversions: f64,
    /// Their value in micros, when the platform reports one.
    pub conversion_value_micros: Option<i64>,
    /// When the connector read the row (UTC epoch millis).
    pub reported_at: i64,
}

impl PlatformReport {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.platform.PlatformReport";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = PLATFORM_REPORT_AVSC;

    /// The record key: `<platform slug>|<account>|<ad>|<granularity>|<window start RFC 3339 UTC>`. A restated
    /// number of the same ad and window has the same key, so compaction keeps the latest.
    pub fn key(&self) -> String {
        let mut key = format!("{}|{}|", self.platform.slug(), self.account_id);
        // "<ad>|<granularity>|<start>": the metrics key's tail, written by the same code.
        crate::outputs::write_metrics_key(
            &self.ad_id,
            self.granularity,
            self.window_start,
            &mut key,
        );
        key
    }
}

/// Where a connector is in one account's reports; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorCursor {
    /// Platform of the account.
    pub platform: Platform,
    /// Ad account on the platform.
    pub account_id: String,
    /// Last day of the last completed pass.
    pub synced_through: Option<String>,
    /// First day of the pass in progress.
    pub pass_from: Option<String>,
    /// Last day of the pass in progress.
    pub pass_to: Option<String>,
    /// Day whose next page is still to be read.
    pub next_day: Option<String>,
    /// The platform's token for that page; None for the day's first page.
    pub page_token: Option<String>,
    /// When the cursor was committed (UTC epoch millis).
    pub updated_at: i64,
}

impl ConnectorCursor {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.platform.ConnectorCursor";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CONNECTOR_CURSOR_AVSC;

    /// The record key: `<platform slug>|<account>`.
    pub fn key(&self) -> String {
        cursor_key(self.platform, &self.account_id)
    }
}

/// The cursor key of `account` on `platform`.
pub fn cursor_key(platform: Platform, account: &str) -> String {
    format!("{}|{account}", platform.slug())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::assert_matches_schema;

    fn report() -> PlatformReport {
        PlatformReport {
            platform: Platform::Meta,
            account_id: "111".into(),
            campaign_id: "222".into(),
            ad_group_id: Some("444".into()),
            ad_id: "333".into(),
            granularity: Granularity::Hourly,
            window_start: 1_714_568_400_000,
            window_end: 1_714_572_000_000,
            time_zone: "America/New_York".into(),
            currency: "USD".into(),
            impressions: 185,
            clicks: 9,
            spend_micros: 14_350_000,
            conversions: 1.0,
            conversion_value_micros: Some(80_500_000),
            reported_at: 1_714_600_000_000,
        }
    }

    #[test]
    fn report_matches_schema_and_its_key_names_ad_and_window() {
        assert_matches_schema(PlatformReport::FULL_NAME, PlatformReport::SCHEMA, report());
        assert_eq!(report().key(), "meta|111|333|hourly|2024-05-01T13:00:00Z");
    }

    #[test]
    fn cursor_matches_schema() {
        let cursor = ConnectorCursor {
            platform: Platform::Tiktok,
            account_id: "7".into(),
            synced_through: Some("2024-05-02".into()),
            pass_from: Some("2024-04-26".into()),
            pass_to: Some("2024-05-03".into()),
            next_day: Some("2024-04-27".into()),
            page_token: Some("3".into()),
            updated_at: 1_714_600_000_000,
        };
        assert_eq!(cursor.key(), "tiktok|7");
        assert_matches_schema(ConnectorCursor::FULL_NAME, ConnectorCursor::SCHEMA, cursor);
    }
}
