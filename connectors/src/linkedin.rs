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

use adstream_schemas::events::{
    Campaign, CampaignStatus, Creative, CreativeFormat, Objective, Platform,
};
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

/// The number at the end of the URN in `field` (`urn:li:sponsoredCreative:123` → `123`), checking its type.
fn urn_id(urn: Option<&Value>, field: &str, kind: &str) -> Result<String, String> {
    let text = urn
        .and_then(Value::as_str)
        .ok_or(format!("{field}: no {kind} URN"))?;
    text.strip_prefix(&format!("urn:li:{kind}:"))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or(format!("{field}: '{text}' is not a urn:li:{kind}"))
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
        campaign_id: urn_id(pivots.first(), "pivotValues", "sponsoredCampaign")?,
        ad_group_id: None,
        ad_id: urn_id(pivots.get(1), "pivotValues", "sponsoredCreative")?,
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
    /// Every element of the account's `finder` (`adCampaigns?q=search`, `creatives?q=criteria`), all pages
    /// (`pageToken` / `metadata.nextPageToken`); `restli_finder` adds the `X-RestLi-Method: FINDER` header the
    /// creatives finder wants.
    async fn list(
        &mut self,
        account: &Account,
        finder: &str,
        restli_finder: bool,
    ) -> Result<Vec<Value>, SourceError> {
        let what = format!("linkedin account {} {finder}", account.id);
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut endpoint = format!(
                "{}/adAccounts/{}/{finder}&pageSize=100",
                self.base_url.trim_end_matches('/'),
                url::form_urlencoded::byte_serialize(account.id.as_bytes()).collect::<String>()
            );
            if let Some(token) = &token {
                endpoint.push_str("&pageToken=");
                endpoint.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
            }
            let mut body = self.get(&what, &endpoint, restli_finder).await?;
            token = source::at(&body, &["metadata", "nextPageToken"])
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            match body.get_mut("elements").map(Value::take) {
                Some(Value::Array(elements)) => entries.extend(elements),
                _ => {
                    return Err(SourceError::Shape {
                        what,
                        reason: "no `elements` list".into(),
                    })
                }
            }
            if token.is_none() {
                return Ok(entries);
            }
        }
    }

    /// GET `endpoint` (a full URL in Rest.li syntax) with the versioned headers.
    async fn get(
        &mut self,
        what: &str,
        endpoint: &str,
        restli_finder: bool,
    ) -> Result<Value, SourceError> {
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
                    let request = client
                        .get(url.clone())
                        .bearer_auth(token.expose())
                        .header("LinkedIn-Version", &version)
                        .header("X-Restli-Protocol-Version", "2.0.0");
                    if restli_finder {
                        request.header("X-RestLi-Method", "FINDER")
                    } else {
                        request
                    }
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

/// One creatives-finder element as a creative. LinkedIn has no ad group below the campaign, so the campaign
/// stands in for it; the creative's `name` (when it has one) is its headline.
fn creative(entry: &Value) -> Result<Creative, String> {
    let ad = urn_id(entry.get("id"), "id", "sponsoredCreative")?;
    let campaign = urn_id(entry.get("campaign"), "campaign", "sponsoredCampaign")?;
    let created = source::at(entry, &["createdAt"])
        .and_then(Value::as_i64)
        .ok_or("createdAt: missing")?;
    let name = entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(entities::creative(
        Platform::Linkedin,
        (&ad, &campaign, &campaign),
        CreativeFormat::Unknown,
        name.to_owned(),
        created,
    ))
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
        let body = self.get(&what, &endpoint, false).await?;
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
    ) -> Result<Vec<Entity<Campaign>>, SourceError> {
        let entries = self.list(account, "adCampaigns?q=search", false).await?;
        Ok(entries
            .iter()
            .map(|entry| entities::entity(entry, |entry| campaign(account, entry)))
            .collect())
    }

    async fn fetch_creatives<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> Result<Vec<Entity<Creative>>, SourceError> {
        let entries = self.list(account, "creatives?q=criteria", true).await?;
        Ok(entries
            .iter()
            .map(|entry| entities::entity(entry, creative))
            .collect())
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
