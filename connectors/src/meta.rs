//! Meta Marketing API Insights: `GET {base}/act_{id}/insights?level=ad&time_increment=1&breakdowns=
//! hourly_stats_aggregated_by_advertiser_time_zone`, one day per request, paged with `paging.cursors.after` until
//! `paging.next` is absent.
//!
//! Metrics are strings (`"185"`, `spend` `"14.35"` in the account's currency); conversions and their value are the
//! `actions` / `action_values` entries whose `action_type` is one of `conversion_action_types`. Errors are
//! `{"error": {message, type, code, error_subcode}}`: code 190 is an expired or invalid token (Meta has no refresh
//! token, the credentials are read again); the throttling codes (4, 17, 32, 613, 80000–80008) are retried after the
//! `estimated_time_to_regain_access` of the `X-Business-Use-Case-Usage` header, and a success whose usage headers
//! are near 100 % pauses before the next call.
//!
//! Campaigns come from `/act_{id}/campaigns` (same `data` / `paging`), budgets in the currency's minor units.

use std::time::Duration;

use adstream_schemas::events::{
    Campaign, CampaignStatus, Creative, CreativeFormat, Objective, Platform,
};
use chrono::NaiveDate;
use serde_json::Value;

use crate::auth::{Auth, Renewal};
use crate::config::{PlatformConfig, ReportGranularity};
use crate::entities::{self, Entity};
use crate::http::{judge_status, Http, Judged, Received, SourceError};
use crate::source::{self, Account, Figures, Page, ReportSource, RowContext};

/// The production endpoint with the API version this source was written against.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com/v19.0";
/// The hourly breakdown in the ad account's time zone.
const HOURLY_BREAKDOWN: &str = "hourly_stats_aggregated_by_advertiser_time_zone";
/// Usage share (percent) from which the source slows down before the platform throttles it.
const USAGE_PAUSE_PERCENT: f64 = 90.0;
/// How long to pause at that usage when the platform gives no time to regain access.
const USAGE_PAUSE: Duration = Duration::from_secs(60);

/// The Meta source.
#[derive(Debug)]
pub struct Meta {
    http: Http,
    auth: Auth,
    base_url: String,
    granularity: ReportGranularity,
    page_size: u32,
    conversion_types: Vec<String>,
}

impl Meta {
    /// A source for `config`.
    pub fn new(http: Http, config: &PlatformConfig) -> Result<Meta, SourceError> {
        Ok(Meta {
            http,
            auth: Auth::load(&config.credentials, Renewal::Reload)?,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            granularity: config.granularity,
            page_size: config.page_size,
            conversion_types: config.conversion_action_types.clone(),
        })
    }
}

/// The error codes Meta documents as throttling (Airbyte's list).
fn is_throttle(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 613) || (80000..=80008).contains(&code)
}

/// The highest usage share and the longest `estimated_time_to_regain_access` (minutes) of the usage headers.
fn usage(received: &Received) -> (f64, Option<Duration>) {
    let mut highest: f64 = 0.0;
    let mut regain = None;
    let header = |name: &str| -> Option<Value> {
        serde_json::from_str(received.headers.get(name)?.to_str().ok()?).ok()
    };
    if let Some(Value::Object(businesses)) = header("x-business-use-case-usage") {
        for entry in businesses.values().filter_map(Value::as_array).flatten() {
            for key in ["call_count", "total_cputime", "total_time"] {
                highest = highest.max(entry.get(key).and_then(Value::as_f64).unwrap_or(0.0));
            }
            if let Some(minutes) = entry
                .get("estimated_time_to_regain_access")
                .and_then(Value::as_f64)
                .filter(|m| *m > 0.0)
            {
                let wait = Duration::from_secs_f64(minutes * 60.0);
                regain = Some(regain.map_or(wait, |r: Duration| r.max(wait)));
            }
        }
    }
    if let Some(account) = header("x-ad-account-usage") {
        highest = highest.max(
            account
                .get("acc_id_util_pct")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        );
        if highest >= USAGE_PAUSE_PERCENT {
            if let Some(seconds) = account.get("reset_time_duration").and_then(Value::as_f64) {
                let wait = Duration::from_secs_f64(seconds.max(0.0));
                regain = Some(regain.map_or(wait, |r: Duration| r.max(wait)));
            }
        }
    }
    (highest, regain)
}

fn judge(received: &Received) -> Judged {
    let (used, regain) = usage(received);
    if let Some(error) = received.json().as_ref().and_then(|b| b.get("error")) {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        let reason = format!("code {code}: {message}");
        if code == 190 {
            return Judged::Expired(reason);
        }
        if is_throttle(code) || received.status.is_server_error() || code == 1 || code == 2 {
            return Judged::Retry {
                after: regain.or_else(|| crate::http::retry_after(&received.headers)),
                reason,
            };
        }
        return Judged::Fatal(format!("HTTP {} {reason}", received.status));
    }
    match judge_status(received) {
        Judged::Data { body, .. } if used >= USAGE_PAUSE_PERCENT => Judged::Data {
            body,
            pause: Some(regain.unwrap_or(USAGE_PAUSE)),
        },
        other => other,
    }
}

/// The sum of the `value`s of `list`'s entries whose `action_type` is one of `types`; None without the list.
fn actions(row: &Value, list: &str, types: &[String], micros: bool) -> Result<Option<f64>, String> {
    let Some(entries) = row.get(list) else {
        return Ok(None);
    };
    let entries = entries
        .as_array()
        .ok_or_else(|| format!("{list}: not a list"))?;
    let mut total = 0.0;
    for entry in entries {
        let kind = entry
            .get("action_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if types.iter().any(|t| t == kind) {
            total += if micros {
                source::money_micros(entry, &["value"]).map_err(|e| format!("{list}: {e}"))? as f64
            } else {
                source::number(entry, &["value"]).map_err(|e| format!("{list}: {e}"))?
            };
        }
    }
    Ok(Some(total))
}

/// One `data` element in figures.
fn figures(row: &Value, hourly: bool, types: &[String]) -> Result<Figures, String> {
    let date_text = row
        .get("date_start")
        .and_then(Value::as_str)
        .ok_or("date_start: missing")?;
    let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
        .map_err(|_| format!("date_start: '{date_text}' is not a date"))?;
    let hour = if hourly {
        // "13:00:00 - 13:59:59"
        let text = row
            .get(HOURLY_BREAKDOWN)
            .and_then(Value::as_str)
            .ok_or(format!("{HOURLY_BREAKDOWN}: missing"))?;
        let hour = text
            .get(..2)
            .and_then(|h| h.parse::<u32>().ok())
            .filter(|h| *h < 24)
            .ok_or(format!("{HOURLY_BREAKDOWN}: '{text}' is not an hour range"))?;
        Some(hour)
    } else {
        None
    };
    let conversions = actions(row, "actions", types, false)?.unwrap_or(0.0);
    let value = actions(row, "action_values", types, true)?.map(|v| v.round() as i64);
    Ok(Figures {
        campaign_id: source::id(row, &["campaign_id"])?,
        ad_group_id: row
            .get("adset_id")
            .map(|_| source::id(row, &["adset_id"]))
            .transpose()?,
        ad_id: source::id(row, &["ad_id"])?,
        date,
        hour,
        impressions: source::count(row, &["impressions"])?,
        clicks: source::count(row, &["clicks"])?,
        spend_micros: source::money_micros(row, &["spend"])?,
        conversions,
        conversion_value_micros: value,
    })
}

impl Meta {
    /// Every entry of the account's `edge` list (`campaigns`, `ads`) with `fields`, all pages.
    async fn list(
        &mut self,
        account: &Account,
        edge: &str,
        fields: &str,
    ) -> Result<Vec<Value>, SourceError> {
        let endpoint = format!(
            "{}/act_{}/{edge}",
            self.base_url.trim_end_matches('/'),
            account.id
        );
        let what = format!("meta act_{} {edge}", account.id);
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = vec![
                ("fields", fields.into()),
                ("limit", self.page_size.to_string()),
            ];
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let (data, next) = self.get_page(&what, &endpoint, &query).await?;
            entries.extend(data);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(entries),
            }
        }
    }

    /// One page of a Graph API list at `endpoint` with `query`: its `data` and the `after` cursor of the next page
    /// (None on the last page, which has no `paging.next`, though it may still carry cursors).
    async fn get_page(
        &mut self,
        what: &str,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> Result<(Vec<Value>, Option<String>), SourceError> {
        let url = crate::http::url_with_query(endpoint, query)?;
        let client = self.http.client().clone();
        let mut body = self
            .http
            .call(
                what,
                &mut self.auth,
                |token| {
                    // Meta takes the token as a query parameter; reqwest errors are shown without the URL.
                    let mut url = url.clone();
                    url.query_pairs_mut()
                        .append_pair("access_token", token.expose());
                    client.get(url)
                },
                judge,
            )
            .await?;
        let next = body
            .get("paging")
            .filter(|p| p.get("next").and_then(Value::as_str).is_some())
            .and_then(|p| source::at(p, &["cursors", "after"]))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match body.get_mut("data").map(Value::take) {
            Some(Value::Array(data)) => Ok((data, next)),
            _ => Err(SourceError::Shape {
                what: what.to_owned(),
                reason: "no `data` list".into(),
            }),
        }
    }
}

/// One `/act_<id>/ads` entry as a creative; the ad's name is its headline (the creative object's format is not
/// read, so it is unknown).
fn creative(entry: &Value) -> Result<Creative, String> {
    let created = graph_time("created_time", &entities::text(entry, "created_time")?)?;
    Ok(entities::creative(
        Platform::Meta,
        (
            &source::id(entry, &["id"])?,
            &source::id(entry, &["campaign_id"])?,
            &source::id(entry, &["adset_id"])?,
        ),
        CreativeFormat::Unknown,
        entities::text(entry, "name")?,
        created,
    ))
}

/// A Graph API time (`2024-05-01T00:00:00-0700`) in UTC epoch millis.
fn graph_time(field: &str, text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z")
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{field}: '{text}' is not a time"))
}

/// One `/act_<id>/campaigns` entry as a campaign.
fn campaign(account: &Account, entry: &Value) -> Result<Campaign, String> {
    let id = source::id(entry, &["id"])?;
    let status = match entities::text(entry, "status")?.as_str() {
        "ACTIVE" => CampaignStatus::Active,
        "PAUSED" => CampaignStatus::Paused,
        "DELETED" | "ARCHIVED" => CampaignStatus::Ended,
        _ => CampaignStatus::Unknown,
    };
    let mut campaign = entities::campaign(
        Platform::Meta,
        account,
        &id,
        entities::text(entry, "name")?,
        status,
    );
    campaign.objective = match entry.get("objective").and_then(Value::as_str).unwrap_or("") {
        "OUTCOME_AWARENESS" | "BRAND_AWARENESS" | "REACH" => Objective::Awareness,
        "OUTCOME_TRAFFIC" | "LINK_CLICKS" => Objective::Traffic,
        "OUTCOME_SALES" | "CONVERSIONS" => Objective::Conversions,
        "OUTCOME_APP_PROMOTION" | "APP_INSTALLS" => Objective::AppInstalls,
        "OUTCOME_LEADS" | "LEAD_GENERATION" => Objective::Leads,
        _ => Objective::Other,
    };
    let budget = |field: &str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .map(|text| entities::minor_units_micros(&account.currency, field, text))
            .transpose()
    };
    campaign.daily_budget_micros = budget("daily_budget")?;
    campaign.lifetime_budget_micros = budget("lifetime_budget")?;
    if let Some(start) = entry.get("start_time").and_then(Value::as_str) {
        campaign.start_time = graph_time("start_time", start)?;
    }
    if let Some(stop) = entry.get("stop_time").and_then(Value::as_str) {
        campaign.end_time = Some(graph_time("stop_time", stop)?);
    }
    if let Some(updated) = entry.get("updated_time").and_then(Value::as_str) {
        campaign.updated_at = graph_time("updated_time", updated)?;
    }
    Ok(campaign)
}

impl ReportSource for Meta {
    fn platform(&self) -> Platform {
        Platform::Meta
    }

    async fn fetch_page<'a>(
        &'a mut self,
        account: &'a Account,
        day: NaiveDate,
        page_token: Option<&'a str>,
    ) -> Result<Page, SourceError> {
        let endpoint = format!(
            "{}/act_{}/insights",
            self.base_url.trim_end_matches('/'),
            account.id
        );
        let hourly = self.granularity == ReportGranularity::Hourly;
        let mut query: Vec<(&str, String)> = vec![
            ("level", "ad".into()),
            (
                "fields",
                "campaign_id,adset_id,ad_id,impressions,clicks,spend,actions,action_values".into(),
            ),
            (
                "time_range",
                serde_json::json!({"since": day.to_string(), "until": day.to_string()}).to_string(),
            ),
            ("time_increment", "1".into()),
            ("limit", self.page_size.to_string()),
        ];
        if hourly {
            query.push(("breakdowns", HOURLY_BREAKDOWN.into()));
        }
        if let Some(after) = page_token {
            query.push(("after", after.into()));
        }
        let what = format!("meta act_{} {day}", account.id);
        let (data, next) = self.get_page(&what, &endpoint, &query).await?;
        let context = RowContext {
            platform: Platform::Meta,
            account,
            granularity: self.granularity,
            reported_at: chrono::Utc::now().timestamp_millis(),
        };
        let rows = data
            .iter()
            .map(|row| context.row(row, |row| figures(row, hourly, &self.conversion_types)))
            .collect();
        Ok(Page { rows, next })
    }

    async fn fetch_campaigns<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Campaign>>, SourceError> {
        let fields = "id,name,status,objective,daily_budget,lifetime_budget,start_time,stop_time,updated_time";
        let entries = self.list(account, "campaigns", fields).await?;
        Ok(entries
            .iter()
            .map(|entry| entities::entity(entry, |entry| campaign(account, entry)))
            .collect())
    }

    async fn fetch_creatives<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Creative>>, SourceError> {
        let entries = self
            .list(account, "ads", "id,name,adset_id,campaign_id,created_time")
            .await?;
        Ok(entries
            .iter()
            .map(|entry| entities::entity(entry, creative))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde_json::json;

    #[test]
    fn the_documented_row_normalises_with_its_actions() {
        let row = json!({"campaign_id":"222","ad_id":"333","date_start":"2024-05-01","date_stop":"2024-05-01",
            "hourly_stats_aggregated_by_advertiser_time_zone":"13:00:00 - 13:59:59","impressions":"185","clicks":"9","spend":"14.35",
            "actions":[{"action_type":"link_click","value":"9"},{"action_type":"offsite_conversion.fb_pixel_purchase","value":"1"}],
            "action_values":[{"action_type":"offsite_conversion.fb_pixel_purchase","value":"42.10"}]});
        let types = vec!["offsite_conversion.fb_pixel_purchase".to_owned()];
        let figures = figures(&row, true, &types).expect("parses");
        assert_eq!(figures.hour, Some(13));
        assert_eq!(figures.spend_micros, 14_350_000);
        assert_eq!(figures.conversions, 1.0);
        assert_eq!(figures.conversion_value_micros, Some(42_100_000));
        assert_eq!(figures.ad_group_id, None);
    }

    #[test]
    fn code_190_renews_and_throttles_wait_for_the_usage_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-business-use-case-usage",
            r#"{"1":[{"type":"ads_insights","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":2}]}"#
                .parse()
                .expect("header"),
        );
        let throttled = Received {
            status: StatusCode::BAD_REQUEST,
            headers,
            body: json!({"error":{"message":"User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079}}).to_string().into_bytes(),
        };
        assert!(
            matches!(judge(&throttled), Judged::Retry { after: Some(d), .. } if d == Duration::from_secs(120))
        );
        let expired = Received {
            status: StatusCode::BAD_REQUEST,
            headers: Default::default(),
            body: json!({"error":{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":463}}).to_string().into_bytes(),
        };
        assert!(matches!(judge(&expired), Judged::Expired(_)));
    }
}
