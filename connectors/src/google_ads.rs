//! Google Ads: GAQL over `POST {base}/customers/{cid}/googleAds:searchStream`, one request per account and day.
//!
//! searchStream answers with every row of the query at once, as an array of batches (`results`, `fieldMask`,
//! `requestId`), so a day is one page. int64 fields (ids, impressions, clicks, `costMicros`) arrive as strings,
//! doubles (`conversions`, `conversionsValue`) and `segments.hour` as numbers; money is already in micros of the
//! account's currency, days and hours are in the account's time zone. Errors are Google's `{"error": {code,
//! status, details: [GoogleAdsFailure]}}`, possibly as an element of the stream array: `RESOURCE_EXHAUSTED` /
//! `RESOURCE_TEMPORARILY_EXHAUSTED` (429, with `quotaErrorDetails.retryDelay`) are retried,
//! `authenticationError: OAUTH_TOKEN_EXPIRED` renews the token through the refresh token.
//!
//! Campaigns come from `SELECT campaign.id, campaign.name, campaign.status, ... FROM campaign` over the same
//! endpoint (`ENABLED` / `PAUSED` / `REMOVED`; the budget's `amountMicros` as the daily budget).

use std::time::Duration;

use adstream_schemas::events::{Campaign, CampaignStatus, Creative, CreativeFormat, Platform};
use chrono::NaiveDate;
use serde_json::Value;

use crate::auth::{Auth, Renewal};
use crate::config::{PlatformConfig, ReportGranularity};
use crate::entities::{self, Entity};
use crate::http::{judge_status, Http, Judged, Received, SourceError};
use crate::source::{self, Account, Figures, Page, ReportSource, RowContext};

/// The production endpoint with the API version this source was written against.
pub const DEFAULT_BASE_URL: &str = "https://googleads.googleapis.com/v19";
/// Google's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The Google Ads source.
#[derive(Debug)]
pub struct GoogleAds {
    http: Http,
    auth: Auth,
    base_url: String,
    login_customer_id: Option<String>,
    granularity: ReportGranularity,
}

impl GoogleAds {
    /// A source for `config`; the credentials need a developer token besides the OAuth ones.
    pub fn new(http: Http, config: &PlatformConfig) -> Result<GoogleAds, SourceError> {
        let auth = Auth::load(
            &config.credentials,
            Renewal::RefreshToken {
                token_url: config
                    .token_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URL.into()),
            },
        )?;
        if auth.credentials().developer_token.is_none() {
            return Err(SourceError::Config(
                "google_ads credentials: need a developer_token".into(),
            ));
        }
        if let Some(login) = &config.login_customer_id {
            if login.is_empty() || !login.chars().all(|c| c.is_ascii_digit()) {
                return Err(SourceError::Config(format!(
                    "google_ads.login_customer_id '{login}': expected the manager account's digits without dashes"
                )));
            }
        }
        Ok(GoogleAds {
            http,
            auth,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            login_customer_id: config.login_customer_id.clone(),
            granularity: config.granularity,
        })
    }

    /// One GAQL query over searchStream; the answer's array of batches.
    async fn search_stream(
        &mut self,
        account: &Account,
        what: &str,
        query: &str,
    ) -> Result<Value, SourceError> {
        let url = format!(
            "{}/customers/{}/googleAds:searchStream",
            self.base_url.trim_end_matches('/'),
            account.id
        );
        let query = serde_json::json!({ "query": query });
        let developer_token = self
            .auth
            .credentials()
            .developer_token
            .clone()
            .ok_or_else(|| SourceError::Config("google_ads: no developer_token".into()))?;
        let login = self.login_customer_id.clone();
        let client = self.http.client().clone();
        let body = self
            .http
            .call(
                what,
                &mut self.auth,
                |token| {
                    let request = client
                        .post(&url)
                        .bearer_auth(token.expose())
                        .header("developer-token", developer_token.expose())
                        .json(&query);
                    match &login {
                        Some(login) => request.header("login-customer-id", login),
                        None => request,
                    }
                },
                judge,
            )
            .await?;
        if !body.is_array() {
            return Err(SourceError::Shape {
                what: what.to_owned(),
                reason: "searchStream answer is not an array of batches".into(),
            });
        }
        Ok(body)
    }

    /// The GAQL query of one day at ad level.
    fn query(&self, day: NaiveDate) -> String {
        let hour = match self.granularity {
            ReportGranularity::Hourly => ", segments.hour",
            ReportGranularity::Daily => "",
        };
        format!(
            "SELECT campaign.id, ad_group.id, ad_group_ad.ad.id, segments.date{hour}, metrics.impressions, \
             metrics.clicks, metrics.cost_micros, metrics.conversions, metrics.conversions_value \
             FROM ad_group_ad WHERE segments.date = '{day}'"
        )
    }
}

/// Google's error object, from a body that is one or an array holding one.
fn error_of(body: &Value) -> Option<&Value> {
    body.get("error")
        .or_else(|| body.as_array()?.iter().find_map(|b| b.get("error")))
}

/// The `errorCode` maps of a GoogleAdsFailure.
fn error_codes(error: &Value) -> impl Iterator<Item = &Value> {
    error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("errors").and_then(Value::as_array))
        .flatten()
}

/// `"60s"` → 60 s.
fn retry_delay(error: &Value) -> Option<Duration> {
    error_codes(error).find_map(|e| {
        let text = source::at(e, &["details", "quotaErrorDetails", "retryDelay"])?.as_str()?;
        let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
        Some(Duration::from_secs_f64(seconds.max(0.0)))
    })
}

fn judge(received: &Received) -> Judged {
    let body = received.json();
    if let Some(error) = body.as_ref().and_then(error_of) {
        let status = error.get("status").and_then(Value::as_str).unwrap_or("");
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        let expired = error_codes(error).any(|e| {
            source::at(e, &["errorCode", "authenticationError"])
                .and_then(Value::as_str)
                .is_some_and(|code| code == "OAUTH_TOKEN_EXPIRED" || code == "OAUTH_TOKEN_INVALID")
        });
        if expired || status == "UNAUTHENTICATED" {
            return Judged::Expired(format!("{status}: {message}"));
        }
        if matches!(
            status,
            "RESOURCE_EXHAUSTED"
                | "RESOURCE_TEMPORARILY_EXHAUSTED"
                | "UNAVAILABLE"
                | "INTERNAL"
                | "DEADLINE_EXCEEDED"
        ) {
            return Judged::Retry {
                after: retry_delay(error).or_else(|| crate::http::retry_after(&received.headers)),
                reason: format!("{status}: {message}"),
            };
        }
        if received.status.is_server_error() {
            return judge_status(received);
        }
        return Judged::Fatal(format!("HTTP {} {status}: {message}", received.status));
    }
    judge_status(received)
}

/// One `results` element in figures.
fn figures(row: &Value, hourly: bool) -> Result<Figures, String> {
    let date_text = source::at(row, &["segments", "date"])
        .and_then(Value::as_str)
        .ok_or("segments.date: missing")?;
    let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d")
        .map_err(|_| format!("segments.date: '{date_text}' is not a date"))?;
    let hour = if hourly {
        let hour = source::at(row, &["segments", "hour"])
            .and_then(Value::as_u64)
            .filter(|h| *h < 24)
            .ok_or("segments.hour: missing or not 0..23")?;
        Some(hour as u32)
    } else {
        None
    };
    let conversion_value = source::money_micros(row, &["metrics", "conversionsValue"])?;
    Ok(Figures {
        campaign_id: source::id(row, &["campaign", "id"])?,
        ad_group_id: Some(source::id(row, &["adGroup", "id"])?),
        ad_id: source::id(row, &["adGroupAd", "ad", "id"])?,
        date,
        hour,
        impressions: source::count(row, &["metrics", "impressions"])?,
        clicks: source::count(row, &["metrics", "clicks"])?,
        spend_micros: source::count(row, &["metrics", "costMicros"])?,
        conversions: source::number(row, &["metrics", "conversions"])?,
        conversion_value_micros: Some(conversion_value),
    })
}

/// The results of every batch of a searchStream answer.
fn results(body: &Value) -> impl Iterator<Item = &Value> {
    body.as_array().into_iter().flatten().flat_map(|batch| {
        batch
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
}

/// The campaign list's GAQL.
const CAMPAIGNS_QUERY: &str =
    "SELECT campaign.id, campaign.name, campaign.status, campaign.start_date, \
    campaign.end_date, campaign_budget.amount_micros FROM campaign";

/// One `FROM campaign` result as a campaign.
fn campaign(account: &Account, row: &Value) -> Result<Campaign, String> {
    let id = source::id(row, &["campaign", "id"])?;
    let name = source::at(row, &["campaign", "name"])
        .and_then(Value::as_str)
        .ok_or("campaign.name: missing")?;
    let status = match source::at(row, &["campaign", "status"]).and_then(Value::as_str) {
        Some("ENABLED") => CampaignStatus::Active,
        Some("PAUSED") => CampaignStatus::Paused,
        Some("REMOVED") => CampaignStatus::Ended,
        Some(_) => CampaignStatus::Unknown,
        None => return Err("campaign.status: missing".into()),
    };
    let mut campaign =
        entities::campaign(Platform::GoogleAds, account, &id, name.to_owned(), status);
    // `amount_micros` is the average daily budget; a campaign-total budget (`total_amount_micros`) is not read.
    if source::at(row, &["campaignBudget", "amountMicros"]).is_some() {
        campaign.daily_budget_micros =
            Some(source::count(row, &["campaignBudget", "amountMicros"])?);
    }
    if let Some(start) = source::at(row, &["campaign", "startDate"]).and_then(Value::as_str) {
        campaign.start_time = entities::local_day_start(account, "campaign.startDate", start)?;
    }
    if let Some(end) = source::at(row, &["campaign", "endDate"]).and_then(Value::as_str) {
        // Google's end date is the last day the campaign serves: it ends at the next midnight.
        let last = entities::local_day_start(account, "campaign.endDate", end)?;
        campaign.end_time = Some(last + 86_400_000);
    }
    Ok(campaign)
}

/// The ad list's GAQL.
const ADS_QUERY: &str =
    "SELECT ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.ad.type, ad_group.id, \
    campaign.id FROM ad_group_ad";

/// One `FROM ad_group_ad` result as a creative. GAQL gives no creation time: `created_at` is 0.
fn creative(row: &Value) -> Result<Creative, String> {
    let ad = source::id(row, &["adGroupAd", "ad", "id"])?;
    let format = match source::at(row, &["adGroupAd", "ad", "type"])
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "TEXT_AD" | "EXPANDED_TEXT_AD" | "RESPONSIVE_SEARCH_AD" => CreativeFormat::Text,
        "IMAGE_AD" | "RESPONSIVE_DISPLAY_AD" => CreativeFormat::Image,
        kind if kind.starts_with("VIDEO") => CreativeFormat::Video,
        _ => CreativeFormat::Unknown,
    };
    let name = source::at(row, &["adGroupAd", "ad", "name"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(entities::creative(
        Platform::GoogleAds,
        (
            &ad,
            &source::id(row, &["campaign", "id"])?,
            &source::id(row, &["adGroup", "id"])?,
        ),
        format,
        name.to_owned(),
        0,
    ))
}

impl ReportSource for GoogleAds {
    fn platform(&self) -> Platform {
        Platform::GoogleAds
    }

    async fn fetch_page<'a>(
        &'a mut self,
        account: &'a Account,
        day: NaiveDate,
        _page_token: Option<&'a str>,
    ) -> Result<Page, SourceError> {
        let what = format!("google_ads customer {} {day}", account.id);
        let query = self.query(day);
        let body = self.search_stream(account, &what, &query).await?;
        let context = RowContext {
            platform: Platform::GoogleAds,
            account,
            granularity: self.granularity,
            reported_at: chrono::Utc::now().timestamp_millis(),
        };
        let hourly = self.granularity == ReportGranularity::Hourly;
        let rows = results(&body)
            .map(|row| context.row(row, |row| figures(row, hourly)))
            .collect();
        Ok(Page { rows, next: None })
    }

    async fn fetch_campaigns<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Campaign>>, SourceError> {
        let what = format!("google_ads customer {} campaigns", account.id);
        let body = self.search_stream(account, &what, CAMPAIGNS_QUERY).await?;
        Ok(results(&body)
            .map(|row| entities::entity(row, |row| campaign(account, row)))
            .collect())
    }

    async fn fetch_creatives<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Creative>>, SourceError> {
        let what = format!("google_ads customer {} ads", account.id);
        let body = self.search_stream(account, &what, ADS_QUERY).await?;
        Ok(results(&body)
            .map(|row| entities::entity(row, creative))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use serde_json::json;

    fn received(status: u16, body: Value) -> Received {
        Received {
            status: StatusCode::from_u16(status).expect("status"),
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn quota_errors_wait_their_retry_delay_and_expired_tokens_renew() {
        let quota = json!({"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v19.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests. Retry in 60 seconds.","details":{"quotaErrorDetails":{"rateScope":"DEVELOPER","retryDelay":"60s"}}}]}]}});
        assert!(matches!(
            judge(&received(429, quota)),
            Judged::Retry { after: Some(d), .. } if d == Duration::from_secs(60)
        ));
        let expired = json!([{"error":{"code":401,"status":"UNAUTHENTICATED","message":"expired","details":[{"errors":[{"errorCode":{"authenticationError":"OAUTH_TOKEN_EXPIRED"}}]}]}}]);
        assert!(matches!(judge(&received(401, expired)), Judged::Expired(_)));
        let denied = json!({"error":{"code":403,"status":"PERMISSION_DENIED","message":"no","details":[{"errors":[{"errorCode":{"authorizationError":"USER_PERMISSION_DENIED"}}]}]}});
        assert!(matches!(judge(&received(403, denied)), Judged::Fatal(_)));
    }

    #[test]
    fn a_documented_row_normalises() {
        let row = json!({"campaign":{"resourceName":"customers/123/campaigns/111","id":"111"},"adGroup":{"id":"222"},"adGroupAd":{"ad":{"id":"333"}},
            "metrics":{"impressions":"1200","clicks":"34","costMicros":"5120000","conversions":2.0,"conversionsValue":80.5},
            "segments":{"date":"2024-05-01","hour":13}});
        let figures = figures(&row, true).expect("parses");
        assert_eq!(
            (
                figures.impressions,
                figures.clicks,
                figures.spend_micros,
                figures.conversion_value_micros,
                figures.hour
            ),
            (1200, 34, 5_120_000, Some(80_500_000), Some(13))
        );
        let mut bad = row.clone();
        bad["metrics"]["clicks"] = json!("many");
        assert_eq!(
            super::figures(&bad, true),
            Err("metrics.clicks: \"many\" is not a count".into())
        );
    }
}
