//! TikTok API for Business reporting: `GET {base}/report/integrated/get/` with the `Access-Token` header, one day
//! per request (`start_date` = `end_date`), at ad level (`data_level=AUCTION_AD`), paged with `page` while
//! `page_info.page < page_info.total_page`.
//!
//! Rows are `{"dimensions": {"ad_id", "stat_time_hour": "2024-05-01 13:00:00"}, "metrics": {...}}` with metrics as
//! strings (numbers accepted too), `spend` in the advertiser's currency and times in its time zone; `campaign_id`
//! and `adgroup_id` are requested as metrics. The report has no conversion value, so it is null. Errors come with
//! HTTP 200 and a non-zero `code`: 40100 (rate limit) and 50000/50002/60001 (system, maintenance) are retried,
//! 40105 (bad or expired token; TikTok's long-term tokens have no refresh token) reads the credentials again.

use std::time::Duration;

use adstream_schemas::events::Platform;
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value;

use crate::auth::{Auth, Renewal};
use crate::config::{PlatformConfig, ReportGranularity};
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
        let url = crate::http::url_with_query(&endpoint, &query)?;
        let client = self.http.client().clone();
        let what = format!("tiktok advertiser {} {day} page {page}", account.id);
        let body = self
            .http
            .call(
                &what,
                &mut self.auth,
                |token| {
                    client
                        .get(url.clone())
                        .header("Access-Token", token.expose())
                },
                judge,
            )
            .await?;
        let list = source::at(&body, &["data", "list"])
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Shape {
                what: what.clone(),
                reason: "no data.list".into(),
            })?;
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
        let total_pages = source::at(&body, &["data", "page_info", "total_page"])
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let next = (u64::from(page) < total_pages).then(|| (page + 1).to_string());
        Ok(Page { rows, next })
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
