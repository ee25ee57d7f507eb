//! TikTok API for Business reporting: `GET {base}/report/integrated/get/` with the `Access-Token` header, one day
//! per request (`start_date` = `end_date`), at ad level (`data_level=AUCTION_AD`), paged with `page` while
//! `page_info.page < page_info.total_page`.
//!
//! Rows are `{"dimensions": {"ad_id", "stat_time_hour": "2024-05-01 13:00:00"}, "metrics": {...}}` with metrics as
//! strings (numbers accepted too), `spend` in the advertiser's currency and times in its time zone; `campaign_id`
//! and `adgroup_id` are requested as metrics. The report has no conversion value, so it is null. Errors come with
//! HTTP 200 and a non-zero `code`: 40100 (rate limit) and 50000/50002/60001 (system, maintenance) are retried,
//! 40105 (bad or expired token; TikTok's long-term tokens have no refresh token) reads the credentials again.
//!
//! Campaigns come from `campaign/get/` (`operation_status` ENABLE / DISABLE, `budget` with its `budget_mode`).

use std::time::Duration;

use adstream_schemas::events::{
    Campaign, CampaignStatus, Creative, CreativeFormat, Objective, Platform,
};
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value;

use crate::auth::{Auth, Renewal};
use crate::config::{PlatformConfig, ReportGranularity};
use crate::entities::{self, Entity};
use crate::http::{judge_status, Http, Judged, Received, SourceError};
use crate::source::{self, Account, Figures, Page, ReportSource, RowContext};

/// The production endpoint with the API version this source was written against.
pub const DEFAULT_BASE_URL: &str = "https://business-api.tiktok.com/open_api/v1.3";
/// The wait Airbyte's TikTok source uses after a rate-limit code: TikTok sends no Retry-After.
const RATE_LIMIT_WAIT: Duration = Duration::from_millis(600);
/// TikTok's largest page.
const MAX_PAGE_SIZE: u32 = 1000;

/// The TikTok source.
#[derive(Debug)]
pub struct Tiktok {
    http: Http,
    auth: Auth,
    base_url: String,
    granularity: ReportGranularity,
    page_size: u32,
}

impl Tiktok {
    /// A source for `config`.
    pub fn new(http: Http, config: &PlatformConfig) -> Result<Tiktok, SourceError> {
        Ok(Tiktok {
            http,
            auth: Auth::load(&config.credentials, Renewal::Reload)?,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            granularity: config.granularity,
            page_size: config.page_size.clamp(1, MAX_PAGE_SIZE),
        })
    }

    fn time_dimension(&self) -> &'static str {
        match self.granularity {
            ReportGranularity::Hourly => "stat_time_hour",
            ReportGranularity::Daily => "stat_time_day",
        }
    }
}

fn judge(received: &Received) -> Judged {
    let Some(body) = received.json().filter(|_| received.status.is_success()) else {
        return judge_status(received);
    };
    let code = body.get("code").and_then(Value::as_i64);
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    match code {
        Some(0) => Judged::Data { body, pause: None },
        Some(40100) => Judged::Retry {
            after: Some(RATE_LIMIT_WAIT),
            reason: format!("code 40100: {message}"),
        },
        Some(code @ (50000 | 50002 | 60001)) => Judged::Retry {
            after: None,
            reason: format!("code {code}: {message}"),
        },
        Some(40105) => Judged::Expired(format!("code 40105: {message}")),
        Some(code) => Judged::Fatal(format!("code {code}: {message}")),
        None => Judged::Fatal(format!("answer without a code: {}", received.excerpt())),
    }
}

/// One `data.list` element in figures.
fn figures(row: &Value, time_dimension: &str, hourly: bool) -> Result<Figures, String> {
    let text = source::at(row, &["dimensions", time_dimension])
        .and_then(Value::as_str)
        .ok_or(format!("dimensions.{time_dimension}: missing"))?;
    let time = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| format!("dimensions.{time_dimension}: '{text}' is not a time"))?;
    Ok(Figures {
        campaign_id: source::id(row, &["metrics", "campaign_id"])?,
        ad_group_id: Some(source::id(row, &["metrics", "adgroup_id"])?),
        ad_id: source::id(row, &["dimensions", "ad_id"])?,
        date: time.date(),
        hour: hourly.then(|| time.hour()),
        impressions: source::count(row, &["metrics", "impressions"])?,
        clicks: source::count(row, &["metrics", "clicks"])?,
        spend_micros: source::money_micros(row, &["metrics", "spend"])?,
        conversions: source::number(row, &["metrics", "conversion"])?,
        conversion_value_micros: None,
    })
}

impl Tiktok {
    /// Every entry of the advertiser's `<kind>/get/` list (`campaign`, `ad`), all pages.
    async fn list(&mut self, account: &Account, kind: &str) -> Result<Vec<Value>, SourceError> {
        let endpoint = format!("{}/{kind}/get/", self.base_url.trim_end_matches('/'));
        let what = format!("tiktok advertiser {} {kind} list", account.id);
        let mut entries = Vec::new();
        let mut page = 1;
        loop {
            let query: Vec<(&str, String)> = vec![
                ("advertiser_id", account.id.clone()),
                ("page", page.to_string()),
                ("page_size", self.page_size.to_string()),
            ];
            let (list, next) = self.get_page(&what, &endpoint, &query, page).await?;
            entries.extend(list);
            match next {
                Some(next) => page = next,
                None => return Ok(entries),
            }
        }
    }

    /// Page `page` of a list endpoint: its `data.list` and the next page's number while `page < total_page`.
    async fn get_page(
        &mut self,
        what: &str,
        endpoint: &str,
        query: &[(&str, String)],
        page: u32,
    ) -> Result<(Vec<Value>, Option<u32>), SourceError> {
        let url = crate::http::url_with_query(endpoint, query)?;
        let client = self.http.client().clone();
        let mut body = self
            .http
            .call(
                what,
                &mut self.auth,
                |token| {
                    client
                        .get(url.clone())
                        .header("Access-Token", token.expose())
                },
                judge,
            )
            .await?;
        let total_pages = source::at(&body, &["data", "page_info", "total_page"])
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let next = (u64::from(page) < total_pages).then_some(page + 1);
        match body
            .get_mut("data")
            .and_then(|d| d.get_mut("list"))
            .map(Value::take)
        {
            Some(Value::Array(list)) => Ok((list, next)),
            _ => Err(SourceError::Shape {
                what: what.to_owned(),
                reason: "no data.list".into(),
            }),
        }
    }
}

/// One `campaign/get/` entry as a campaign. TikTok's times carry no zone; they are taken as UTC.
fn campaign(account: &Account, entry: &Value) -> Result<Campaign, String> {
    let id = source::id(entry, &["campaign_id"])?;
    let status = match entities::text(entry, "operation_status")?.as_str() {
        "ENABLE" => CampaignStatus::Active,
        "DISABLE" => CampaignStatus::Paused,
        _ => CampaignStatus::Unknown,
    };
    let mut campaign = entities::campaign(
        Platform::Tiktok,
        account,
        &id,
        entities::text(entry, "campaign_name")?,
        status,
    );
    campaign.objective = match entry
        .get("objective_type")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "REACH" | "VIDEO_VIEWS" => Objective::Awareness,
        "TRAFFIC" => Objective::Traffic,
        "CONVERSIONS" | "WEB_CONVERSIONS" | "PRODUCT_SALES" => Objective::Conversions,
        "APP_PROMOTION" | "APP_INSTALL" => Objective::AppInstalls,
        "LEAD_GENERATION" => Objective::Leads,
        _ => Objective::Other,
    };
    let budget = source::money_micros(entry, &["budget"])?;
    match entry.get("budget_mode").and_then(Value::as_str) {
        Some("BUDGET_MODE_DAY") => campaign.daily_budget_micros = Some(budget),
        Some("BUDGET_MODE_TOTAL") => campaign.lifetime_budget_micros = Some(budget),
        _ => {}
    }
    if let Some(created) = entry.get("create_time").and_then(Value::as_str) {
        campaign.start_time = entities::utc_time("create_time", created)?;
    }
    if let Some(modified) = entry.get("modify_time").and_then(Value::as_str) {
        campaign.updated_at = entities::utc_time("modify_time", modified)?;
    }
    Ok(campaign)
}

/// One `ad/get/` entry as a creative: its text is the headline (its name without one).
fn creative(entry: &Value) -> Result<Creative, String> {
    let format = match entry.get("ad_format").and_then(Value::as_str).unwrap_or("") {
        "SINGLE_VIDEO" => CreativeFormat::Video,
        "SINGLE_IMAGE" => CreativeFormat::Image,
        "CAROUSEL" | "CAROUSEL_ADS" => CreativeFormat::Carousel,
        _ => CreativeFormat::Unknown,
    };
    let headline = match entry.get("ad_text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => entities::text(entry, "ad_name")?,
    };
    let created = entities::utc_time("create_time", &entities::text(entry, "create_time")?)?;
    Ok(entities::creative(
        Platform::Tiktok,
        (
            &source::id(entry, &["ad_id"])?,
            &source::id(entry, &["campaign_id"])?,
            &source::id(entry, &["adgroup_id"])?,
        ),
        format,
        headline,
        created,
    ))
}

impl ReportSource for Tiktok {
    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    async fn fetch_page<'a>(
        &'a mut self,
        account: &'a Account,
        day: NaiveDate,
        page_token: Option<&'a str>,
    ) -> Result<Page, SourceError> {
        let page: u32 = match page_token {
            None => 1,
            Some(token) => token.parse().map_err(|_| SourceError::Shape {
                what: format!("tiktok advertiser {}", account.id),
                reason: format!("cursor page '{token}' is not a page number"),
            })?,
        };
        let endpoint = format!(
            "{}/report/integrated/get/",
            self.base_url.trim_end_matches('/')
        );
        let time_dimension = self.time_dimension();
        let query: Vec<(&str, String)> = vec![
            ("advertiser_id", account.id.clone()),
            ("report_type", "BASIC".into()),
            ("service_type", "AUCTION".into()),
            ("data_level", "AUCTION_AD".into()),
            ("dimensions", format!("[\"ad_id\",\"{time_dimension}\"]")),
            (
                "metrics",
                r#"["campaign_id","adgroup_id","spend","impressions","clicks","conversion"]"#
                    .into(),
            ),
            ("start_date", day.to_string()),
            ("end_date", day.to_string()),
            ("page", page.to_string()),
            ("page_size", self.page_size.to_string()),
        ];
        let what = format!("tiktok advertiser {} {day} page {page}", account.id);
        let (list, next) = self.get_page(&what, &endpoint, &query, page).await?;
        let next = next.map(|page| page.to_string());
        let context = RowContext {
            platform: Platform::Tiktok,
            account,
            granularity: self.granularity,
            reported_at: chrono::Utc::now().timestamp_millis(),
        };
        let hourly = self.granularity == ReportGranularity::Hourly;
        let rows = list
            .iter()
            .map(|row| context.row(row, |row| figures(row, time_dimension, hourly)))
            .collect();
        Ok(Page { rows, next })
    }

    async fn fetch_campaigns<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Campaign>>, SourceError> {
        let entries = self.list(account, "campaign").await?;
        Ok(entries
            .iter()
            .map(|entry| entities::entity(entry, |entry| campaign(account, entry)))
            .collect())
    }

    async fn fetch_creatives<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Creative>>, SourceError> {
        let entries = self.list(account, "ad").await?;
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

    fn ok(body: Value) -> Received {
        Received {
            status: StatusCode::OK,
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn codes_in_200_answers_decide() {
        assert!(matches!(
            judge(&ok(
                json!({"code":40100,"message":"Too many requests","data":{}})
            )),
            Judged::Retry { after: Some(_), .. }
        ));
        assert!(matches!(
            judge(&ok(
                json!({"code":40105,"message":"Access token is incorrect or has been revoked","data":{}})
            )),
            Judged::Expired(_)
        ));
        assert!(matches!(
            judge(&ok(json!({"code":40002,"message":"bad","data":{}}))),
            Judged::Fatal(_)
        ));
        assert!(matches!(
            judge(&ok(json!({"code":0,"message":"OK","data":{"list":[]}}))),
            Judged::Data { .. }
        ));
    }

    #[test]
    fn a_documented_row_normalises() {
        let row = json!({"dimensions":{"ad_id":"1714125042508817","stat_time_hour":"2024-05-01 13:00:00"},
            "metrics":{"campaign_id":"17","adgroup_id":"18","spend":"20.00","impressions":"4696","clicks":"51","conversion":"0"}});
        let figures = figures(&row, "stat_time_hour", true).expect("parses");
        assert_eq!(
            (figures.hour, figures.spend_micros, figures.impressions),
            (Some(13), 20_000_000, 4696)
        );
    }
}
