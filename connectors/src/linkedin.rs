//! LinkedIn Marketing API: `GET {base}/adAnalytics?q=statistics&pivots=List(CAMPAIGN,CREATIVE)&timeGranularity=
//! DAILY&dateRange=(start:(...),end:(...))&accounts=List(urn%3Ali%3AsponsoredAccount%3A<id>)`, one day per request,
//! with `LinkedIn-Version` and `X-Restli-Protocol-Version: 2.0.0`.
//!
//! Rest.li syntax: parentheses and colons are literal, URNs inside `List()` are percent-encoded. The finder does
//! not page (a day of one account is far below its 15,000-element ceiling), so a day is one page. `pivotValues`
//! holds the campaign and creative URNs in the order of `pivots`; counts are integers, money
//! (`costInLocalCurrency`, `conversionValueInLocalCurrency`) strings in the account's currency. LinkedIn has no
//! hourly data and reports days in UTC. 401 renews the token through the refresh token; 429 and 5xx are retried
//! (with `Retry-After` when present).
//!
//! Campaigns come from `adAccounts/{id}/adCampaigns?q=search`, paged with `pageToken` /
//! `metadata.nextPageToken`.

use adstream_schemas::events::{Campaign, CampaignStatus, Objective, Platform};
use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use crate::auth::{Auth, Renewal};
use crate::config::{PlatformConfig, ReportGranularity};
use crate::entities::{self, Entity};
use crate::http::{judge_status, Http, SourceError};
use crate::source::{self, Account, Figures, Page, ReportSource, RowContext};

/// The production endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.linkedin.com/rest";
/// LinkedIn's OAuth token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://www.linkedin.com/oauth/v2/accessToken";
/// The fields asked for (at most 20 are allowed).
const FIELDS: &str = "dateRange,pivotValues,impressions,clicks,costInLocalCurrency,externalWebsiteConversions,conversionValueInLocalCurrency";

/// The LinkedIn source.
#[derive(Debug)]
pub struct Linkedin {
    http: Http,
    auth: Auth,
    base_url: String,
    version: String,
}

impl Linkedin {
    /// A source for `config`; LinkedIn reports days only.
    pub fn new(http: Http, config: &PlatformConfig) -> Result<Linkedin, SourceError> {
        if config.granularity != ReportGranularity::Daily {
            return Err(SourceError::Config(
                "linkedin.granularity: LinkedIn's adAnalytics has no hourly data; set `granularity: daily`".into(),
            ));
        }
        Ok(Linkedin {
            http,
            auth: Auth::load(
                &config.credentials,
                Renewal::RefreshToken {
                    token_url: config
                        .token_url
                        .clone()
                        .unwrap_or_else(|| DEFAULT_TOKEN_URL.into()),
                },
            )?,
            base_url: config
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            version: config.linkedin_version.clone(),
        })
    }
}

/// The number at the end of a URN (`urn:li:sponsoredCreative:123` → `123`), checking its type.
fn urn_id(urn: Option<&Value>, kind: &str) -> Result<String, String> {
    let text = urn
        .and_then(Value::as_str)
        .ok_or(format!("pivotValues: no {kind} URN"))?;
    text.strip_prefix(&format!("urn:li:{kind}:"))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or(format!("pivotValues: '{text}' is not a urn:li:{kind}"))
}

/// One `elements` entry in figures.
fn figures(row: &Value) -> Result<Figures, String> {
    let pivots = row
        .get("pivotValues")
        .and_then(Value::as_array)
        .ok_or("pivotValues: missing")?;
    let part = |name: &str| {
        source::at(row, &["dateRange", "start", name])
            .and_then(Value::as_u64)
            .ok_or(format!("dateRange.start.{name}: missing"))
    };
    let (year, month, day) = (part("year")?, part("month")?, part("day")?);
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32).ok_or(format!(
        "dateRange.start: {year}-{month}-{day} is not a date"
    ))?;
    Ok(Figures {
        campaign_id: urn_id(pivots.first(), "sponsoredCampaign")?,
        ad_group_id: None,
        ad_id: urn_id(pivots.get(1), "sponsoredCreative")?,
        date,
        hour: None,
        impressions: source::count(row, &["impressions"])?,
        clicks: source::count(row, &["clicks"])?,
        spend_micros: source::money_micros(row, &["costInLocalCurrency"])?,
        conversions: source::number(row, &["externalWebsiteConversions"])?,
        conversion_value_micros: row
            .get("conversionValueInLocalCurrency")
            .map(|_| source::money_micros(row, &["conversionValueInLocalCurrency"]))
            .transpose()?,
    })
}

impl Linkedin {
    /// GET `endpoint` (a full URL in Rest.li syntax) with the versioned headers.
    async fn get(&mut self, what: &str, endpoint: &str) -> Result<Value, SourceError> {
        let url = reqwest::Url::parse(endpoint).map_err(|e| {
            SourceError::Config(format!("linkedin.base_url: '{endpoint}' is not a URL: {e}"))
        })?;
        let client = self.http.client().clone();
        let version = self.version.clone();
        self.http
            .call(
                what,
                &mut self.auth,
                |token| {
                    client
                        .get(url.clone())
                        .bearer_auth(token.expose())
                        .header("LinkedIn-Version", &version)
                        .header("X-Restli-Protocol-Version", "2.0.0")
                },
                judge_status,
            )
            .await
    }
}

/// A `{amount: "50.00", currencyCode}` money object in micros.
fn money(entry: &Value, field: &str) -> Result<Option<i64>, String> {
    entry
        .get(field)
        .map(|_| source::money_micros(entry, &[field, "amount"]))
        .transpose()
}

/// One `adCampaigns` element as a campaign.
fn campaign(account: &Account, entry: &Value) -> Result<Campaign, String> {
    let id = source::id(entry, &["id"])?;
    let status = match entities::text(entry, "status")?.as_str() {
        "ACTIVE" => CampaignStatus::Active,
        "PAUSED" | "DRAFT" => CampaignStatus::Paused,
        "ARCHIVED" | "COMPLETED" | "CANCELED" => CampaignStatus::Ended,
        _ => CampaignStatus::Unknown,
    };
    let mut campaign = entities::campaign(
        Platform::Linkedin,
        account,
        &id,
        entities::text(entry, "name")?,
        status,
    );
    campaign.objective = match entry
        .get("objectiveType")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "BRAND_AWARENESS" | "ENGAGEMENT" | "VIDEO_VIEW" => Objective::Awareness,
        "WEBSITE_VISIT" => Objective::Traffic,
        "WEBSITE_CONVERSION" => Objective::Conversions,
        "LEAD_GENERATION" => Objective::Leads,
        _ => Objective::Other,
    };
    campaign.daily_budget_micros = money(entry, "dailyBudget")?;
    campaign.lifetime_budget_micros = money(entry, "totalBudget")?;
    let millis = |path: &[&str]| source::at(entry, path).and_then(Value::as_i64);
    if let Some(start) = millis(&["runSchedule", "start"]) {
        campaign.start_time = start;
    }
    campaign.end_time = millis(&["runSchedule", "end"]);
    if let Some(modified) = millis(&["changeAuditStamps", "lastModified", "time"]) {
        campaign.updated_at = modified;
    }
    Ok(campaign)
}

impl ReportSource for Linkedin {
    fn platform(&self) -> Platform {
        Platform::Linkedin
    }

    async fn fetch_page<'a>(
        &'a mut self,
        account: &'a Account,
        day: NaiveDate,
        _page_token: Option<&'a str>,
    ) -> Result<Page, SourceError> {
        let date = format!(
            "(year:{},month:{},day:{})",
            day.year(),
            day.month(),
            day.day()
        );
        // Built by hand: Rest.li wants its parentheses and colons literal, which a form encoder would escape.
        let endpoint = format!(
            "{}/adAnalytics?q=statistics&pivots=List(CAMPAIGN,CREATIVE)&timeGranularity=DAILY\
             &dateRange=(start:{date},end:{date})&accounts=List(urn%3Ali%3AsponsoredAccount%3A{})&fields={FIELDS}",
            self.base_url.trim_end_matches('/'),
            url::form_urlencoded::byte_serialize(account.id.as_bytes()).collect::<String>()
        );
        let what = format!("linkedin account {} {day}", account.id);
        let body = self.get(&what, &endpoint).await?;
        let elements = body
            .get("elements")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Shape {
                what: what.clone(),
                reason: "no `elements` list".into(),
            })?;
        let context = RowContext {
            platform: Platform::Linkedin,
            account,
            granularity: ReportGranularity::Daily,
            reported_at: chrono::Utc::now().timestamp_millis(),
        };
        let rows = elements
            .iter()
            .map(|row| context.row(row, figures))
            .collect();
        Ok(Page { rows, next: None })
    }

    async fn fetch_campaigns<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity>, SourceError> {
        let what = format!("linkedin account {} campaigns", account.id);
        let mut entities = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut endpoint = format!(
                "{}/adAccounts/{}/adCampaigns?q=search&pageSize=100",
                self.base_url.trim_end_matches('/'),
                url::form_urlencoded::byte_serialize(account.id.as_bytes()).collect::<String>()
            );
            if let Some(token) = &token {
                endpoint.push_str("&pageToken=");
                endpoint.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
            }
            let body = self.get(&what, &endpoint).await?;
            let elements = body
                .get("elements")
                .and_then(Value::as_array)
                .ok_or_else(|| SourceError::Shape {
                    what: what.clone(),
                    reason: "no `elements` list".into(),
                })?;
            entities.extend(
                elements
                    .iter()
                    .map(|entry| entities::entity(entry, |entry| campaign(account, entry))),
            );
            token = source::at(&body, &["metadata", "nextPageToken"])
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(entities);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_documented_element_normalises() {
        let row = json!({"pivotValues":["urn:li:sponsoredCampaign:77","urn:li:sponsoredCreative:123"],
            "dateRange":{"start":{"year":2024,"month":5,"day":1},"end":{"year":2024,"month":5,"day":1}},
            "impressions":19090,"clicks":100,"costInLocalCurrency":"209.449","externalWebsiteConversions":3});
        let figures = figures(&row).expect("parses");
        assert_eq!(
            (
                figures.campaign_id.as_str(),
                figures.ad_id.as_str(),
                figures.spend_micros,
                figures.conversions
            ),
            ("77", "123", 209_449_000, 3.0)
        );
        let mut bad = row.clone();
        bad["pivotValues"] = json!(["urn:li:sponsoredCampaign:77", "urn:li:sponsoredAccount:1"]);
        assert!(super::figures(&bad).is_err());
    }
}
