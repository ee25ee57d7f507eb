//! The `connectors:` section of the config file (`adstream connect run <platform> --config connectors.yaml`).
//! Unknown fields are refused so a typo is named, not ignored. See `connectors.yaml` at the repository root for a
//! commented example.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};

/// Everything the connectors read from the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// Where rows, dead letters and cursors go.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Prefix of the connectors' Kafka transactional ids (`<prefix>-<platform>`). One connector process per
    /// platform and prefix may run: a second one fences the first.
    #[serde(default = "default_transactional_id_prefix")]
    pub transactional_id_prefix: String,
    /// Seconds between two sync passes of a connector that runs until stopped (without `--once`).
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// The HTTP client's limits, shared by every platform.
    #[serde(default)]
    pub http: HttpConfig,
    /// Google Ads (GAQL over `googleAds:searchStream`).
    #[serde(default)]
    pub google_ads: Option<PlatformConfig>,
    /// Meta Marketing API Insights.
    #[serde(default)]
    pub meta: Option<PlatformConfig>,
    /// TikTok API for Business reporting.
    #[serde(default)]
    pub tiktok: Option<PlatformConfig>,
    /// LinkedIn Marketing API `adAnalytics`.
    #[serde(default)]
    pub linkedin: Option<PlatformConfig>,
}

fn default_transactional_id_prefix() -> String {
    "adstream-connect".into()
}

fn default_poll_interval_secs() -> u64 {
    900
}

/// Topic names; the defaults are those of `topology/adstream.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Compacted topic of the normalised report rows.
    #[serde(default = "default_reports_topic")]
    pub reports: String,
    /// Where malformed rows go, with their reason in headers; created on start when missing.
    #[serde(default = "default_dead_letters_topic")]
    pub dead_letters: String,
    /// Compacted topic of the per-account cursors.
    #[serde(default = "default_cursors_topic")]
    pub cursors: String,
    /// Compacted campaigns table the entity sync writes.
    #[serde(default = "default_campaigns_topic")]
    pub campaigns: String,
    /// Compacted creatives table the entity sync writes (one record per ad).
    #[serde(default = "default_creatives_topic")]
    pub creatives: String,
}

fn default_reports_topic() -> String {
    "platform.reports".into()
}

fn default_dead_letters_topic() -> String {
    "dlq.platform.reports".into()
}

fn default_cursors_topic() -> String {
    "connectors.cursors".into()
}

fn default_campaigns_topic() -> String {
    "ads.campaigns".into()
}

fn default_creatives_topic() -> String {
    "ads.creatives".into()
}

impl Default for TopicsConfig {
    fn default() -> TopicsConfig {
        TopicsConfig {
            reports: default_reports_topic(),
            dead_letters: default_dead_letters_topic(),
            cursors: default_cursors_topic(),
            campaigns: default_campaigns_topic(),
            creatives: default_creatives_topic(),
        }
    }
}

/// Limits of the HTTP client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Seconds one request may take, body included.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Seconds to establish a connection.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Largest response body read; a bigger one fails the request (a report page is far smaller).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Retries of one request after a rate limit, a server error or a transport error, before the sync of the
    /// account stops with an error.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff in milliseconds; it doubles per retry, with jitter.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest backoff in seconds (a `Retry-After` or usage header asking for longer is still honoured, up to
    /// `max_wait_secs`).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Longest wait a platform may ask for (`Retry-After`, usage headers); longer asks fail the request.
    #[serde(default = "default_max_wait_secs")]
    pub max_wait_secs: u64,
}

fn default_timeout_secs() -> u64 {
    60
}
fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_max_body_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_max_retries() -> u32 {
    8
}
fn default_initial_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_secs() -> u64 {
    60
}
fn default_max_wait_secs() -> u64 {
    900
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            timeout_secs: default_timeout_secs(),
            connect_timeout_secs: default_connect_timeout_secs(),
            max_body_bytes: default_max_body_bytes(),
            max_retries: default_max_retries(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_secs: default_max_backoff_secs(),
            max_wait_secs: default_max_wait_secs(),
        }
    }
}

impl HttpConfig {
    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Window length the reports are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReportGranularity {
    /// One row per ad and hour (Google Ads, Meta, TikTok).
    #[default]
    Hourly,
    /// One row per ad and day (every platform; LinkedIn has no hourly data).
    Daily,
}

/// One platform's connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Base URL of the API, version included (e.g. `https://graph.facebook.com/v19.0`); default: the production
    /// endpoint of the version the source was written against. Tests point it at a local fixture server.
    #[serde(default)]
    pub base_url: Option<String>,
    /// OAuth token endpoint used with a refresh token (Google Ads, LinkedIn); default: the platform's.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Where the credentials are.
    pub credentials: CredentialsConfig,
    /// The ad accounts to sync.
    pub accounts: Vec<AccountConfig>,
    /// First day (YYYY-MM-DD, in each account's time zone) ever synced.
    #[serde(deserialize_with = "date")]
    pub start_date: NaiveDate,
    /// Last day synced (for backfills and tests); default: today in the account's time zone.
    #[serde(default, deserialize_with = "optional_date")]
    pub end_date: Option<NaiveDate>,
    /// Days before the last synced day that every pass reads again, because platforms restate recent numbers
    /// (late conversions, invalid-click refunds).
    #[serde(default = "default_lookback_days")]
    pub lookback_days: u32,
    /// Hourly or daily rows.
    #[serde(default)]
    pub granularity: ReportGranularity,
    /// Rows per page where the API pages (Meta `limit`, TikTok `page_size`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Meta: the `actions` / `action_values` types counted as conversions.
    #[serde(default = "default_conversion_action_types")]
    pub conversion_action_types: Vec<String>,
    /// Google Ads: the manager account (digits) the accounts are reached through (`login-customer-id`).
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// LinkedIn: the `LinkedIn-Version` header (YYYYMM).
    #[serde(default = "default_linkedin_version")]
    pub linkedin_version: String,
}

fn default_lookback_days() -> u32 {
    7
}
fn default_page_size() -> u32 {
    500
}
fn default_conversion_action_types() -> Vec<String> {
    vec!["offsite_conversion.fb_pixel_purchase".into()]
}
fn default_linkedin_version() -> String {
    "202601".into()
}

/// An ad account and what the platform's numbers for it are in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The account id as the platform writes it (Google customer id digits, Meta ad account id without `act_`,
    /// TikTok advertiser id, LinkedIn sponsored account id).
    pub id: String,
    /// IANA time zone of the account, which the platform's days and hours follow (Google `customer.time_zone`,
    /// Meta `timezone_name`, TikTok advertiser `timezone`; LinkedIn reports in UTC).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// ISO 4217 currency of the account (spend and conversion values are in it).
    pub currency: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// Where a platform's credentials are: a file (YAML or JSON map) or environment variables; the file wins when both
/// are given. Keys / variable suffixes: `access_token`, `refresh_token`, `client_id`, `client_secret`,
/// `developer_token` (Google Ads). Never in the config file itself.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// A file holding the credentials, re-read when a token without a refresh token expires (so a rotated token
    /// is picked up).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Prefix of environment variables: `<PREFIX>_ACCESS_TOKEN`, `<PREFIX>_REFRESH_TOKEN`, ...
    #[serde(default)]
    pub env_prefix: Option<String>,
}

fn date<'de, D: Deserializer<'de>>(input: D) -> Result<NaiveDate, D::Error> {
    let text = String::deserialize(input)?;
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|e| serde::de::Error::custom(format!("'{text}' is not a YYYY-MM-DD date: {e}")))
}

fn optional_date<'de, D: Deserializer<'de>>(input: D) -> Result<Option<NaiveDate>, D::Error> {
    date(input).map(Some)
}
