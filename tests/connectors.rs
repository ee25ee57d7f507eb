//! The platform connectors end to end: `adstream connect run <platform> --once` against a local fixture server per
//! platform that serves the documented request and response shapes (`../shared/reference/ad-platform-apis.md`):
//! several pages per day, a 429 with `Retry-After`, a 500, an expired token (renewed through the refresh token on
//! Google Ads and LinkedIn, rotated in the credentials file on Meta and TikTok), one malformed row, and on a later
//! sync a restated hour. The sources are the real code; only the base URL points at the fixture.
//!
//! Per platform it shows, reading `read_committed`:
//! - after one pass, every fixture row is in the reports topic exactly once, normalised (key, window, micros),
//!   with the fixture's count and sum of spend; the malformed row is in the dead-letter topic with its reason;
//!   the 429's `Retry-After` was waited out; the campaigns are in the campaigns table with their status;
//! - after a restatement and a paused campaign, a second pass leaves the restated row's new number as the latest
//!   value (every key written once per pass) and the campaign paused;
//! - on fresh topics, a connector killed with SIGKILL three times mid-sync and then run to the end leaves every
//!   row exactly once (no missing, no duplicate), and the dead letter once.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adstream_schemas::events::{AvroRecord, Campaign, CampaignStatus, Creative};
use adstream_schemas::platform::PlatformReport;
use apache_avro::Schema;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};

use common::jobs::{adstream, apply_topology};
use common::recompute::{decode, read_committed_messages};
use common::{start_registry, unique};

/// Days every fixture serves, from [`first_day`]: six pages a pass for Google Ads and LinkedIn (a page per day),
/// eighteen for Meta and TikTok, so that no run between kills can finish the pass (see the kill loop).
const DAYS: u32 = 6;
/// Ads (creatives) per account.
const ADS: u32 = 3;
/// The account every fixture serves.
const ACCOUNT: &str = "1234567";
/// The data request after which each fault is served once (numbered from 1 over the fixture's life).
const RATE_LIMIT_AT: u64 = 2;
const SERVER_ERROR_AT: u64 = 4;
const EXPIRE_AT: u64 = 6;
/// The `Retry-After` of the 429, seconds.
const RETRY_AFTER_SECS: u64 = 1;

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 1).expect("date")
}

/// The day with the malformed row.
fn malformed_day() -> NaiveDate {
    first_day().succ_opt().expect("date")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GoogleAds,
    Meta,
    Tiktok,
    Linkedin,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::GoogleAds => "google-ads",
            Kind::Meta => "meta",
            Kind::Tiktok => "tiktok",
            Kind::Linkedin => "linkedin",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Kind::GoogleAds => "google",
            Kind::Meta => "meta",
            Kind::Tiktok => "tiktok",
            Kind::Linkedin => "linkedin",
        }
    }
    fn section(self) -> &'static str {
        match self {
            Kind::GoogleAds => "google_ads",
            other => other.arg(),
        }
    }
    fn hourly(self) -> bool {
        self != Kind::Linkedin
    }
    fn time_zone(self) -> Tz {
        match self {
            Kind::GoogleAds => chrono_tz::Europe::Berlin,
            Kind::Meta => chrono_tz::America::New_York,
            Kind::Tiktok => chrono_tz::Asia::Singapore,
            Kind::Linkedin => chrono_tz::UTC,
        }
    }
    /// Whether the platform renews tokens with an OAuth refresh token (else the credentials file is rotated).
    fn oauth(self) -> bool {
        matches!(self, Kind::GoogleAds | Kind::Linkedin)
    }
}

/// One row the fixture reports, in the platform's own terms.
#[derive(Debug, Clone, PartialEq)]
struct FixtureRow {
    campaign: String,
    ad_group: String,
    ad: String,
    date: NaiveDate,
    hour: Option<u32>,
    impressions: i64,
    clicks: i64,
    /// Spend in cents, so that every platform's decimal rendering is exact.
    spend_cents: i64,
    conversions: i64,
}

impl FixtureRow {
    fn spend_micros(&self) -> i64 {
        self.spend_cents * 10_000
    }
    fn spend_text(&self) -> String {
        format!("{}.{:02}", self.spend_cents / 100, self.spend_cents % 100)
    }
    /// The reports-topic key, computed here with chrono-tz independently of the connector.
    fn key(&self, kind: Kind) -> String {
        let zone = kind.time_zone();
        let local = self
            .date
            .and_hms_opt(self.hour.unwrap_or(0), 0, 0)
            .expect("time");
        let start = zone
            .from_local_datetime(&local)
            .earliest()
            .expect("exists")
            .with_timezone(&chrono::Utc);
        let granularity = if kind.hourly() { "hourly" } else { "daily" };
        format!(
            "{}|{ACCOUNT}|{}|{granularity}|{}",
            kind.slug(),
            self.ad,
            start.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// The fixture's ads: (ad, campaign, ad group), as in [`dataset`].
fn fixture_ads() -> Vec<(String, String, String)> {
    (0..ADS)
        .map(|a| {
            (
                format!("{}", 9000 + a),
                format!("{}", 500 + a % 2),
                format!("{}", 700 + a),
            )
        })
        .collect()
}

/// The fixture's data set: deterministic numbers per (day, ad, hour).
fn dataset(kind: Kind) -> Vec<FixtureRow> {
    let mut rows = Vec::new();
    for d in 0..DAYS {
        let date = first_day() + chrono::Days::new(u64::from(d));
        for a in 0..ADS {
            let hours: Vec<Option<u32>> = if kind.hourly() {
                (0..24).map(Some).collect()
            } else {
                vec![None]
            };
            for hour in hours {
                let h = i64::from(hour.unwrap_or(0));
                let seed = i64::from(d) * 131 + i64::from(a) * 17 + h * 7;
                let impressions = 100 + seed % 97;
                rows.push(FixtureRow {
                    campaign: format!("{}", 500 + a % 2),
                    ad_group: format!("{}", 700 + a),
                    ad: format!("{}", 9000 + a),
                    date,
                    hour,
                    impressions,
                    clicks: impressions / 20,
                    spend_cents: 100 + seed * 37 % 1900,
                    conversions: i64::from(seed % 5 == 0),
                });
            }
        }
    }
    rows
}

/// Shared state of one fixture server.
struct Fixture {
    kind: Kind,
    rows: Mutex<Vec<FixtureRow>>,
    /// Data requests answered (faults included).
    requests: AtomicU64,
    /// Report pages answered with data.
    pages_served: AtomicU64,
    /// Valid access tokens.
    tokens: Mutex<HashSet<String>>,
    /// Tokens issued so far.
    issued: AtomicU64,
    /// The credentials file (rotated on expiry where there is no refresh token).
    credentials: PathBuf,
    /// When the 429 was answered and when the next data request came.
    rate_limited_at: Mutex<Option<Instant>>,
    retried_after: Mutex<Option<Duration>>,
    /// Faults served, by name.
    faults: Mutex<Vec<&'static str>>,
    /// Campaigns paused on the platform (the others are active).
    paused: Mutex<HashSet<String>>,
    /// Rows per page where the platform pages.
    page_size: usize,
    /// Delay of every data answer, so a kill lands mid-sync.
    delay: Duration,
}

impl Fixture {
    fn new(kind: Kind, dir: &std::path::Path) -> Arc<Fixture> {
        let credentials = dir.join(format!("{}-credentials.yaml", kind.slug()));
        let fixture = Arc::new(Fixture {
            kind,
            rows: Mutex::new(dataset(kind)),
            requests: AtomicU64::new(0),
            pages_served: AtomicU64::new(0),
            tokens: Mutex::new(HashSet::new()),
            issued: AtomicU64::new(0),
            credentials,
            rate_limited_at: Mutex::new(None),
            retried_after: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
            paused: Mutex::new(HashSet::from(["501".to_owned()])),
            page_size: 30,
            delay: Duration::from_millis(150),
        });
        let text = if kind.oauth() {
            "client_id: fixture-client\nclient_secret: fixture-secret\nrefresh_token: fixture-refresh\ndeveloper_token: fixture-dev\n".to_owned()
        } else {
            format!("access_token: {}\n", fixture.issue())
        };
        std::fs::write(&fixture.credentials, text).expect("credentials file");
        fixture
    }

    fn issue(&self) -> String {
        let token = format!(
            "{}-token-{}",
            self.kind.slug(),
            self.issued.fetch_add(1, Ordering::SeqCst) + 1
        );
        self.tokens.lock().expect("lock").insert(token.clone());
        token
    }

    /// Rows of `day`, in a stable order, for a report page being answered.
    fn rows_of(&self, day: NaiveDate) -> Vec<FixtureRow> {
        self.pages_served.fetch_add(1, Ordering::SeqCst);
        self.rows
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.date == day)
            .cloned()
            .collect()
    }

    fn fault(&self, name: &'static str) {
        self.faults.lock().expect("lock").push(name);
    }

    /// Counts a data request and decides whether it gets a fault: Some(response) if so.
    async fn gate(&self, token: Option<&str>) -> Option<Response> {
        tokio::time::sleep(self.delay).await;
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut limited = self.rate_limited_at.lock().expect("lock");
            if let Some(at) = limited.take() {
                *self.retried_after.lock().expect("lock") = Some(at.elapsed());
            }
            if n == RATE_LIMIT_AT {
                *limited = Some(Instant::now());
                self.fault("429");
                return Some(self.rate_limited());
            }
        }
        if n == SERVER_ERROR_AT {
            self.fault("500");
            return Some((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response());
        }
        let valid = token.is_some_and(|t| self.tokens.lock().expect("lock").contains(t));
        if n == EXPIRE_AT && valid {
            // The token in use expires now.
            self.tokens.lock().expect("lock").clear();
            if !self.kind.oauth() {
                // Without refresh tokens, the operator's secret manager writes a new long-lived token.
                let token = self.issue();
                std::fs::write(&self.credentials, format!("access_token: {token}\n"))
                    .expect("rotate");
            }
            self.fault("expired");
            return Some(self.expired());
        }
        if !valid {
            return Some(self.expired());
        }
        None
    }

    /// The platform's documented throttle answer, as a 429 with `Retry-After`.
    fn rate_limited(&self) -> Response {
        let body = match self.kind {
            Kind::GoogleAds => {
                json!({"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v19.errors.GoogleAdsFailure","errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests. Retry in 1 seconds.","details":{"quotaErrorDetails":{"rateScope":"DEVELOPER","retryDelay":"1s"}}}]}]}})
            }
            Kind::Meta => {
                json!({"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079,"fbtrace_id":"EJplcsCHuLu"}})
            }
            Kind::Tiktok => {
                json!({"code":40100,"message":"Too many requests","request_id":"r","data":{}})
            }
            Kind::Linkedin => {
                json!({"status":429,"serviceErrorCode":101,"message":"Resource level throttle limit for calls to this resource is reached."})
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            RETRY_AFTER_SECS.to_string().parse().expect("header"),
        );
        if self.kind == Kind::Meta {
            headers.insert(
                "x-business-use-case-usage",
                r#"{"1":[{"type":"ads_insights","call_count":100,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":0}]}"#.parse().expect("header"),
            );
        }
        (StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response()
    }

    /// The platform's documented expired-token answer.
    fn expired(&self) -> Response {
        match self.kind {
            Kind::GoogleAds => (StatusCode::UNAUTHORIZED, Json(json!({"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED","details":[{"@type":"type.googleapis.com/google.ads.googleads.v19.errors.GoogleAdsFailure","errors":[{"errorCode":{"authenticationError":"OAUTH_TOKEN_EXPIRED"},"message":"The access token has expired."}]}]}}))).into_response(),
            Kind::Meta => (StatusCode::BAD_REQUEST, Json(json!({"error":{"message":"Error validating access token: Session has expired.","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"AbC"}}))).into_response(),
            Kind::Tiktok => Json(json!({"code":40105,"message":"The access token is invalid or has been revoked.","request_id":"r","data":{}})).into_response(),
            Kind::Linkedin => (StatusCode::UNAUTHORIZED, Json(json!({"status":401,"serviceErrorCode":65601,"message":"The token used in the request has expired"}))).into_response(),
        }
    }

    /// The expected latest row per key, and the fixture's row count and spend sum.
    fn expected(&self) -> BTreeMap<String, FixtureRow> {
        self.rows
            .lock()
            .expect("lock")
            .iter()
            .map(|r| (r.key(self.kind), r.clone()))
            .collect()
    }

    /// Restates one hour (or day) of the first day: late conversions and a refund change its numbers.
    fn restate(&self) -> String {
        let mut rows = self.rows.lock().expect("lock");
        let row = rows
            .iter_mut()
            .find(|r| r.date == first_day() && r.hour.unwrap_or(13) == 13 && r.ad == "9001")
            .expect("row to restate");
        row.spend_cents -= 55;
        row.conversions += 2;
        row.key(self.kind)
    }

    /// The advertiser pauses campaign 500 on the platform.
    fn pause(&self) {
        self.paused.lock().expect("lock").insert("500".to_owned());
    }

    /// (campaign id, paused) of the fixture's two campaigns.
    fn campaigns(&self) -> Vec<(&'static str, bool)> {
        let paused = self.paused.lock().expect("lock");
        ["500", "501"]
            .into_iter()
            .map(|id| (id, paused.contains(id)))
            .collect()
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// OAuth `grant_type=refresh_token` (Google, LinkedIn).
async fn token_endpoint(
    State(fixture): State<Arc<Fixture>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let ok = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("refresh_token").map(String::as_str) == Some("fixture-refresh")
        && form.get("client_id").map(String::as_str) == Some("fixture-client")
        && form.get("client_secret").map(String::as_str) == Some("fixture-secret");
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_grant"})),
        )
            .into_response();
    }
    Json(json!({"access_token": fixture.issue(), "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

/// Google Ads `googleAds:searchStream`: the day's rows in two batches, and one malformed row on its day.
async fn google_search_stream(
    State(fixture): State<Arc<Fixture>>,
    Path((customer, method)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(fault) = fixture.gate(bearer(&headers).as_deref()).await {
        return fault;
    }
    let query = body["query"].as_str().unwrap_or("");
    if method != "googleAds:searchStream"
        || customer != ACCOUNT
        || headers.get("developer-token").and_then(|v| v.to_str().ok()) != Some("fixture-dev")
    {
        return (StatusCode::BAD_REQUEST, "unexpected request").into_response();
    }
    if query.ends_with("FROM campaign") {
        let results: Vec<Value> = fixture
            .campaigns()
            .into_iter()
            .map(|(id, paused)| {
                json!({"campaign":{"resourceName":format!("customers/{ACCOUNT}/campaigns/{id}"),"id":id,"name":format!("Campaign {id}"),
                    "status":if paused {"PAUSED"} else {"ENABLED"},"startDate":"2024-04-01"},
                    "campaignBudget":{"amountMicros":"50000000"}})
            })
            .collect();
        return Json(json!([{"results": results, "fieldMask": "campaign.id,campaign.name,campaign.status,campaign.start_date,campaign_budget.amount_micros", "requestId": "req-c"}])).into_response();
    }
    if query.ends_with("FROM ad_group_ad") && !query.contains("segments.date") {
        let results: Vec<Value> = fixture_ads()
            .into_iter()
            .map(|(ad, campaign, ad_group)| {
                json!({"adGroupAd":{"ad":{"id":ad,"name":format!("Ad {ad}"),"type":"RESPONSIVE_SEARCH_AD"}},
                    "adGroup":{"id":ad_group},"campaign":{"id":campaign}})
            })
            .collect();
        return Json(json!([{"results": results, "fieldMask": "ad_group_ad.ad.id,ad_group_ad.ad.name,ad_group_ad.ad.type,ad_group.id,campaign.id", "requestId": "req-a"}])).into_response();
    }
    if !query.contains("FROM ad_group_ad") {
        return (StatusCode::BAD_REQUEST, "unexpected query").into_response();
    }
    let Some(day) = query
        .split("segments.date = '")
        .nth(1)
        .and_then(|rest| NaiveDate::parse_from_str(rest.get(..10)?, "%Y-%m-%d").ok())
    else {
        return (StatusCode::BAD_REQUEST, "no date").into_response();
    };
    let mut results: Vec<Value> = fixture
        .rows_of(day)
        .iter()
        .map(|r| {
            json!({"campaign":{"resourceName":format!("customers/{ACCOUNT}/campaigns/{}", r.campaign),"id":r.campaign},
                "adGroup":{"resourceName":format!("customers/{ACCOUNT}/adGroups/{}", r.ad_group),"id":r.ad_group},
                "adGroupAd":{"ad":{"id":r.ad}},
                "metrics":{"impressions":r.impressions.to_string(),"clicks":r.clicks.to_string(),"costMicros":r.spend_micros().to_string(),
                    "conversions":r.conversions as f64,"conversionsValue":(r.conversions * 25) as f64},
                "segments":{"date":r.date.to_string(),"hour":r.hour}})
        })
        .collect();
    if day == malformed_day() {
        results.insert(5, json!({"campaign":{"id":"500"},"adGroup":{"id":"700"},"adGroupAd":{"ad":{"id":"9000"}},
            "metrics":{"impressions":"12x","clicks":"1","costMicros":"10000"},"segments":{"date":day.to_string(),"hour":3}}));
    }
    let half = results.len() / 2;
    let second = results.split_off(half);
    let mask = "campaign.id,ad_group.id,ad_group_ad.ad.id,segments.date,segments.hour,metrics.impressions,metrics.clicks,metrics.cost_micros,metrics.conversions,metrics.conversions_value";
    Json(json!([
        {"results": results, "fieldMask": mask, "requestId": "req-1"},
        {"results": second, "fieldMask": mask, "requestId": "req-1"}
    ]))
    .into_response()
}

/// Meta `/act_<id>/insights`, paged with `after` cursors.
async fn meta_insights(
    State(fixture): State<Arc<Fixture>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = fixture
        .gate(query.get("access_token").map(String::as_str))
        .await
    {
        return fault;
    }
    let since = query
        .get("time_range")
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|t| NaiveDate::parse_from_str(t["since"].as_str()?, "%Y-%m-%d").ok());
    let (Some(day), true, true) = (
        since,
        account == format!("act_{ACCOUNT}"),
        query.get("level").map(String::as_str) == Some("ad")
            && query.get("breakdowns").map(String::as_str)
                == Some("hourly_stats_aggregated_by_advertiser_time_zone"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error":{"message":"Invalid parameter","type":"OAuthException","code":100}}),
            ),
        )
            .into_response();
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25);
    let offset: usize = query
        .get("after")
        .and_then(|a| a.strip_prefix("cursor-")?.parse().ok())
        .unwrap_or(0);
    let rows = fixture.rows_of(day);
    let mut data: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| {
            let hour = r.hour.unwrap_or(0);
            json!({"campaign_id":r.campaign,"adset_id":r.ad_group,"ad_id":r.ad,"date_start":r.date.to_string(),"date_stop":r.date.to_string(),
                "hourly_stats_aggregated_by_advertiser_time_zone":format!("{hour:02}:00:00 - {hour:02}:59:59"),
                "impressions":r.impressions.to_string(),"clicks":r.clicks.to_string(),"spend":r.spend_text(),
                "actions":[{"action_type":"link_click","value":r.clicks.to_string()},{"action_type":"offsite_conversion.fb_pixel_purchase","value":r.conversions.to_string()}],
                "action_values":[{"action_type":"offsite_conversion.fb_pixel_purchase","value":format!("{}.00", r.conversions * 25)}]})
        })
        .collect();
    if day == malformed_day() && offset == 0 {
        data.insert(3, json!({"campaign_id":"500","ad_id":"9000","date_start":day.to_string(),"date_stop":day.to_string(),
            "hourly_stats_aggregated_by_advertiser_time_zone":"03:00:00 - 03:59:59","impressions":"n/a","clicks":"1","spend":"0.10"}));
    }
    let end = offset + limit;
    let mut paging =
        json!({"cursors":{"before":format!("cursor-{offset}"),"after":format!("cursor-{end}")}});
    if end < rows.len() {
        paging["next"] = json!(format!(
            "https://graph.facebook.com/v19.0/act_{ACCOUNT}/insights?after=cursor-{end}"
        ));
    }
    Json(json!({"data": data, "paging": paging})).into_response()
}

/// TikTok `report/integrated/get/`, paged with `page` / `page_info`.
async fn tiktok_report(
    State(fixture): State<Arc<Fixture>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = headers.get("access-token").and_then(|v| v.to_str().ok());
    if let Some(fault) = fixture.gate(token).await {
        return fault;
    }
    let day = query
        .get("start_date")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let (Some(day), true, true) = (
        day,
        query.get("advertiser_id").map(String::as_str) == Some(ACCOUNT),
        query.get("data_level").map(String::as_str) == Some("AUCTION_AD")
            && query.get("end_date") == query.get("start_date")
            && query
                .get("dimensions")
                .is_some_and(|d| d.contains("stat_time_hour")),
    ) else {
        return Json(
            json!({"code":40002,"message":"Invalid parameters","request_id":"r","data":{}}),
        )
        .into_response();
    };
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let page_size: usize = query
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10);
    let rows = fixture.rows_of(day);
    let total_page = rows.len().div_ceil(page_size);
    let mut list: Vec<Value> = rows
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(|r| {
            json!({"dimensions":{"ad_id":r.ad,"stat_time_hour":format!("{} {:02}:00:00", r.date, r.hour.unwrap_or(0))},
                "metrics":{"campaign_id":r.campaign,"adgroup_id":r.ad_group,"spend":r.spend_text(),"impressions":r.impressions.to_string(),
                    "clicks":r.clicks.to_string(),"conversion":r.conversions.to_string()}})
        })
        .collect();
    if day == malformed_day() && page == 1 {
        list.insert(2, json!({"dimensions":{"ad_id":"9000","stat_time_hour":"2024-05-02 25:00:00"},
            "metrics":{"campaign_id":"500","adgroup_id":"700","spend":"1.00","impressions":"5","clicks":"0","conversion":"0"}}));
    }
    Json(json!({"code":0,"message":"OK","request_id":"2024050113000001","data":{"list":list,
        "page_info":{"page":page,"page_size":page_size,"total_number":rows.len(),"total_page":total_page}}}))
    .into_response()
}

/// LinkedIn `adAnalytics?q=statistics`, one day per request, no paging.
async fn linkedin_analytics(
    State(fixture): State<Arc<Fixture>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(fault) = fixture.gate(bearer(&headers).as_deref()).await {
        return fault;
    }
    let query = query.unwrap_or_default();
    let number = |name: &str| -> Option<u32> {
        let rest = query.split("dateRange=(start:(").nth(1)?;
        let part = rest.split(&format!("{name}:")).nth(1)?;
        part.split([',', ')']).next()?.parse().ok()
    };
    let day = match (number("year"), number("month"), number("day")) {
        (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y as i32, m, d),
        _ => None,
    };
    let valid = query.contains("q=statistics")
        && query.contains("pivots=List(CAMPAIGN,CREATIVE)")
        && query.contains(&format!(
            "accounts=List(urn%3Ali%3AsponsoredAccount%3A{ACCOUNT})"
        ))
        && headers
            .get("x-restli-protocol-version")
            .and_then(|v| v.to_str().ok())
            == Some("2.0.0")
        && headers.contains_key("linkedin-version");
    let Some(day) = day.filter(|_| valid) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status":400,"message":"Invalid query parameters"})),
        )
            .into_response();
    };
    let date = json!({"year": day.year(), "month": day.month(), "day": day.day()});
    let mut elements: Vec<Value> = fixture
        .rows_of(day)
        .iter()
        .map(|r| {
            json!({"pivotValues":[format!("urn:li:sponsoredCampaign:{}", r.campaign), format!("urn:li:sponsoredCreative:{}", r.ad)],
                "dateRange":{"start":date,"end":date},"impressions":r.impressions,"clicks":r.clicks,
                "costInLocalCurrency":r.spend_text(),"externalWebsiteConversions":r.conversions,
                "conversionValueInLocalCurrency":format!("{}.0", r.conversions * 25)})
        })
        .collect();
    if day == malformed_day() {
        elements.insert(1, json!({"pivotValues":["urn:li:sponsoredCampaign:500","urn:li:sponsoredCreative:9000"],
            "dateRange":{"start":date,"end":date},"impressions":3,"clicks":0,"costInLocalCurrency":"1,50"}));
    }
    Json(json!({"paging":{"start":0,"count":10,"links":[]},"elements":elements})).into_response()
}

/// Meta `/act_<id>/campaigns`: budgets in minor units, one page.
async fn meta_campaigns(
    State(fixture): State<Arc<Fixture>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = fixture
        .gate(query.get("access_token").map(String::as_str))
        .await
    {
        return fault;
    }
    if account != format!("act_{ACCOUNT}") {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error":{"message":"Invalid parameter","type":"OAuthException","code":100}}),
            ),
        )
            .into_response();
    }
    let data: Vec<Value> = fixture
        .campaigns()
        .into_iter()
        .map(|(id, paused)| {
            let status = if paused { "PAUSED" } else { "ACTIVE" };
            json!({"id":id,"name":format!("Campaign {id}"),"status":status,"effective_status":status,"objective":"OUTCOME_SALES",
                "daily_budget":"5000","start_time":"2024-04-01T00:00:00-0400","updated_time":"2024-04-30T10:00:00-0400"})
        })
        .collect();
    Json(json!({"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}))
        .into_response()
}

/// TikTok `campaign/get/`.
async fn tiktok_campaigns(
    State(fixture): State<Arc<Fixture>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = headers.get("access-token").and_then(|v| v.to_str().ok());
    if let Some(fault) = fixture.gate(token).await {
        return fault;
    }
    if query.get("advertiser_id").map(String::as_str) != Some(ACCOUNT) {
        return Json(
            json!({"code":40002,"message":"Invalid parameters","request_id":"r","data":{}}),
        )
        .into_response();
    }
    let list: Vec<Value> = fixture
        .campaigns()
        .into_iter()
        .map(|(id, paused)| {
            json!({"campaign_id":id,"campaign_name":format!("Campaign {id}"),"budget":50.0,"budget_mode":"BUDGET_MODE_DAY",
                "operation_status":if paused {"DISABLE"} else {"ENABLE"},"secondary_status":"CAMPAIGN_STATUS_ENABLE",
                "objective_type":"CONVERSIONS","create_time":"2024-04-01 00:00:00","modify_time":"2024-04-30 10:00:00"})
        })
        .collect();
    Json(json!({"code":0,"message":"OK","request_id":"r","data":{"list":list,"page_info":{"page":1,"page_size":1000,"total_number":2,"total_page":1}}})).into_response()
}

/// LinkedIn `adAccounts/<id>/adCampaigns?q=search`.
async fn linkedin_campaigns(
    State(fixture): State<Arc<Fixture>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = fixture.gate(bearer(&headers).as_deref()).await {
        return fault;
    }
    if account != ACCOUNT {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"status":404,"message":"Not found"})),
        )
            .into_response();
    }
    let elements: Vec<Value> = fixture
        .campaigns()
        .into_iter()
        .map(|(id, paused)| {
            json!({"id":id.parse::<i64>().expect("id"),"name":format!("Campaign {id}"),"status":if paused {"PAUSED"} else {"ACTIVE"},
                "account":format!("urn:li:sponsoredAccount:{ACCOUNT}"),"dailyBudget":{"amount":"50.00","currencyCode":"EUR"},
                "runSchedule":{"start":1_711_929_600_000_i64},"objectiveType":"WEBSITE_CONVERSION"})
        })
        .collect();
    Json(json!({"elements": elements, "metadata": {}})).into_response()
}

/// Meta `/act_<id>/ads`.
async fn meta_ads(
    State(fixture): State<Arc<Fixture>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = fixture
        .gate(query.get("access_token").map(String::as_str))
        .await
    {
        return fault;
    }
    if account != format!("act_{ACCOUNT}") {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error":{"message":"Invalid parameter","type":"OAuthException","code":100}}),
            ),
        )
            .into_response();
    }
    let data: Vec<Value> = fixture_ads()
        .into_iter()
        .map(|(ad, campaign, ad_group)| {
            json!({"id":ad,"name":format!("Ad {ad}"),"adset_id":ad_group,"campaign_id":campaign,"created_time":"2024-04-01T09:00:00-0400"})
        })
        .collect();
    Json(json!({"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}))
        .into_response()
}

/// TikTok `ad/get/`.
async fn tiktok_ads(State(fixture): State<Arc<Fixture>>, headers: HeaderMap) -> Response {
    let token = headers.get("access-token").and_then(|v| v.to_str().ok());
    if let Some(fault) = fixture.gate(token).await {
        return fault;
    }
    let list: Vec<Value> = fixture_ads()
        .into_iter()
        .map(|(ad, campaign, ad_group)| {
            json!({"ad_id":ad,"ad_name":format!("Ad {ad}"),"adgroup_id":ad_group,"campaign_id":campaign,"ad_text":"Summer sale",
                "ad_format":"SINGLE_VIDEO","video_id":"v1","create_time":"2024-04-01 09:00:00"})
        })
        .collect();
    Json(json!({"code":0,"message":"OK","request_id":"r","data":{"list":list,"page_info":{"page":1,"page_size":1000,"total_number":3,"total_page":1}}})).into_response()
}

/// LinkedIn `adAccounts/<id>/creatives?q=criteria` (a Rest.li FINDER).
async fn linkedin_creatives(
    State(fixture): State<Arc<Fixture>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = fixture.gate(bearer(&headers).as_deref()).await {
        return fault;
    }
    if account != ACCOUNT
        || headers.get("x-restli-method").and_then(|v| v.to_str().ok()) != Some("FINDER")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"status":400,"message":"Invalid finder"})),
        )
            .into_response();
    }
    let elements: Vec<Value> = fixture_ads()
        .into_iter()
        .map(|(ad, campaign, _)| {
            json!({"id":format!("urn:li:sponsoredCreative:{ad}"),"campaign":format!("urn:li:sponsoredCampaign:{campaign}"),
                "intendedStatus":"ACTIVE","createdAt":1_711_962_000_000_i64,"lastModifiedAt":1_711_962_000_000_i64})
        })
        .collect();
    Json(json!({"elements": elements, "metadata": {}})).into_response()
}

/// Serves `fixture` on `127.0.0.1:0`; returns the base URL.
async fn serve(fixture: Arc<Fixture>) -> String {
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/customers/{customer}/{method}", post(google_search_stream))
        .route("/{account}/insights", get(meta_insights))
        .route("/{account}/campaigns", get(meta_campaigns))
        .route("/{account}/ads", get(meta_ads))
        .route("/ad/get/", get(tiktok_ads))
        .route("/adAccounts/{account}/creatives", get(linkedin_creatives))
        .route("/report/integrated/get/", get(tiktok_report))
        .route("/campaign/get/", get(tiktok_campaigns))
        .route("/adAnalytics", get(linkedin_analytics))
        .route("/adAccounts/{account}/adCampaigns", get(linkedin_campaigns))
        .with_state(fixture);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Private topics for one run: reports, cursors (applied with the binary) and the dead-letter topic's name.
struct Topics {
    reports: String,
    cursors: String,
    campaigns: String,
    creatives: String,
    dead_letters: String,
}

fn private_topics(registry: &str, name: &str) -> Topics {
    let prefix = unique(name);
    let topics = Topics {
        reports: format!("{prefix}.reports"),
        cursors: format!("{prefix}.cursors"),
        campaigns: format!("{prefix}.campaigns"),
        creatives: format!("{prefix}.creatives"),
        dead_letters: format!("dlq.{prefix}.reports"),
    };
    let dir = std::env::temp_dir().join(unique("connectors-topology"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("topology.yaml");
    std::fs::write(
        &path,
        format!(
            "defaults:\n  partitions: 4\n  replication_factor: 1\ntopics:\n\
             \x20 - {{ name: {}, key: report_key, value_schema: io.adstream.platform.PlatformReport, cleanup_policy: compact }}\n\
             \x20 - {{ name: {}, key: cursor_key, value_schema: io.adstream.platform.ConnectorCursor, cleanup_policy: compact, partitions: 1 }}\n\
             \x20 - {{ name: {}, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}\n\
             \x20 - {{ name: {}, key: creative_id, value_schema: io.adstream.ads.Creative, cleanup_policy: compact }}\n",
            topics.reports, topics.cursors, topics.campaigns, topics.creatives
        ),
    )
    .expect("topology");
    apply_topology(registry, &path, &[]);
    topics
}

/// The connectors config file for `kind` against `base_url`, writing into `topics`.
fn config_file(kind: Kind, fixture: &Fixture, base_url: &str, topics: &Topics) -> PathBuf {
    let last = first_day() + chrono::Days::new(u64::from(DAYS - 1));
    let granularity = if kind.hourly() { "hourly" } else { "daily" };
    let yaml = format!(
        "connectors:\n\
         \x20 transactional_id_prefix: {prefix}\n\
         \x20 topics: {{ reports: {reports}, cursors: {cursors}, campaigns: {campaigns}, creatives: {creatives}, dead_letters: {dead} }}\n\
         \x20 http: {{ initial_backoff_ms: 50, max_backoff_secs: 1, timeout_secs: 10 }}\n\
         \x20 {section}:\n\
         \x20   base_url: {base_url}\n\
         \x20   token_url: {base_url}/token\n\
         \x20   credentials: {{ file: {credentials} }}\n\
         \x20   accounts: [{{ id: \"{ACCOUNT}\", time_zone: {zone}, currency: EUR }}]\n\
         \x20   start_date: {start}\n\
         \x20   end_date: {last}\n\
         \x20   granularity: {granularity}\n\
         \x20   page_size: {page_size}\n",
        prefix = unique("connect-txn"),
        reports = topics.reports,
        cursors = topics.cursors,
        campaigns = topics.campaigns,
        creatives = topics.creatives,
        dead = topics.dead_letters,
        section = kind.section(),
        credentials = fixture.credentials.display(),
        zone = kind.time_zone().name(),
        start = first_day(),
        page_size = fixture.page_size,
    );
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("connectors")));
    std::fs::write(&path, yaml).expect("config");
    path
}

fn start_connector(kind: Kind, registry: &str, config: &std::path::Path) -> Child {
    adstream(
        registry,
        &[
            "connect",
            "run",
            kind.arg(),
            "--once",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the connector")
}

/// Runs the connector to the end of one pass; panics with its output if it fails.
async fn run_once(kind: Kind, registry: &str, config: &std::path::Path) -> String {
    let child = start_connector(kind, registry, config);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "connector failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every record of the reports topic as (key, decoded row), read_committed.
fn reports(topic: &str) -> Vec<(String, PlatformReport)> {
    let schema = Schema::parse_str(PlatformReport::SCHEMA).expect("schema");
    read_committed_messages(topic)
        .iter()
        .map(|m| {
            let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8 key");
            (key, decode(&schema, m.payload().expect("value")))
        })
        .collect()
}

/// The latest status per campaign id of the campaigns table, with the other figures checked.
fn campaign_statuses(kind: Kind, topic: &str) -> BTreeMap<String, CampaignStatus> {
    let schema = Schema::parse_str(Campaign::SCHEMA).expect("schema");
    let mut statuses = BTreeMap::new();
    for message in read_committed_messages(topic) {
        let campaign: Campaign = decode(&schema, message.payload().expect("value"));
        assert_eq!(message.key(), Some(campaign.campaign_id.as_bytes()));
        assert_eq!(
            (campaign.account_id.as_str(), campaign.currency.as_str()),
            (ACCOUNT, "EUR")
        );
        assert_eq!(campaign.time_zone, kind.time_zone().name());
        assert_eq!(
            campaign.daily_budget_micros,
            Some(50_000_000),
            "{kind:?}: {campaign:?}"
        );
        assert!(campaign.start_time > 0, "{campaign:?}");
        statuses.insert(campaign.campaign_id, campaign.status);
    }
    statuses
}

fn assert_campaigns(kind: Kind, topic: &str, fixture: &Fixture) {
    let expected: BTreeMap<String, CampaignStatus> = fixture
        .campaigns()
        .into_iter()
        .map(|(id, paused)| {
            let status = if paused {
                CampaignStatus::Paused
            } else {
                CampaignStatus::Active
            };
            (format!("{}-{id}", kind.slug()), status)
        })
        .collect();
    assert_eq!(
        campaign_statuses(kind, topic),
        expected,
        "{kind:?}: campaigns"
    );
}

/// Every ad of the fixture is in the creatives table with its campaign and ad group, ids made global.
fn assert_creatives(kind: Kind, topic: &str) {
    let schema = Schema::parse_str(Creative::SCHEMA).expect("schema");
    let mut found = BTreeMap::new();
    for message in read_committed_messages(topic) {
        let creative: Creative = decode(&schema, message.payload().expect("value"));
        assert_eq!(message.key(), Some(creative.creative_id.as_bytes()));
        found.insert(
            creative.creative_id,
            (creative.campaign_id, creative.ad_group_id),
        );
    }
    let slug = kind.slug();
    let expected: BTreeMap<String, (String, String)> = fixture_ads()
        .into_iter()
        .map(|(ad, campaign, ad_group)| {
            // LinkedIn has no ad group: the campaign stands in for it.
            let group = if kind == Kind::Linkedin {
                campaign.clone()
            } else {
                ad_group
            };
            (
                format!("{slug}-{ad}"),
                (format!("{slug}-{campaign}"), format!("{slug}-{group}")),
            )
        })
        .collect();
    assert_eq!(found, expected, "{kind:?}: creatives");
}

/// The dead letters: (class, message, value).
fn dead_letters(topic: &str) -> Vec<(String, String, String)> {
    read_committed_messages(topic)
        .iter()
        .map(|m| {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == name)?.value.map(<[u8]>::to_vec))
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default()
            };
            (
                header("dlq_error_class"),
                header("dlq_error_message"),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

/// Records per key, and the latest row per key.
fn tally(
    records: &[(String, PlatformReport)],
) -> (BTreeMap<String, usize>, BTreeMap<String, PlatformReport>) {
    let mut counts = BTreeMap::new();
    let mut latest = BTreeMap::new();
    for (key, row) in records {
        *counts.entry(key.clone()).or_insert(0) += 1;
        latest.insert(key.clone(), row.clone());
    }
    (counts, latest)
}

/// The latest rows equal the fixture's: same keys, same figures, normalised; and the count and spend sum agree.
fn assert_matches_fixture(
    kind: Kind,
    latest: &BTreeMap<String, PlatformReport>,
    fixture: &Fixture,
) {
    let expected = fixture.expected();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !latest.contains_key(*k))
        .collect();
    let extra: Vec<&String> = latest
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{kind:?}: missing {missing:?}, unexpected {extra:?}"
    );
    for (key, want) in &expected {
        let got = &latest[key];
        assert_eq!(
            (
                got.account_id.as_str(),
                got.campaign_id.as_str(),
                got.ad_id.as_str(),
                got.impressions,
                got.clicks,
                got.spend_micros,
                got.conversions
            ),
            (
                ACCOUNT,
                want.campaign.as_str(),
                want.ad.as_str(),
                want.impressions,
                want.clicks,
                want.spend_micros(),
                want.conversions as f64
            ),
            "{kind:?} {key}"
        );
        assert_eq!(
            (got.time_zone.as_str(), got.currency.as_str()),
            (kind.time_zone().name(), "EUR")
        );
        let length = if kind.hourly() { 3_600_000 } else { 86_400_000 };
        assert_eq!(got.window_end - got.window_start, length, "{key}");
        assert_eq!(got.ad_group_id.is_some(), kind != Kind::Linkedin, "{key}");
    }
    let spend: i64 = latest.values().map(|r| r.spend_micros).sum();
    let fixture_spend: i64 = expected.values().map(FixtureRow::spend_micros).sum();
    assert_eq!(
        (latest.len(), spend),
        (expected.len(), fixture_spend),
        "{kind:?}: count and spend"
    );
}

fn assert_one_malformed_row(kind: Kind, topic: &str, passes: usize) {
    let letters = dead_letters(topic);
    assert_eq!(
        letters.len(),
        passes,
        "{kind:?}: one dead letter per pass: {letters:?}"
    );
    for (class, message, value) in letters {
        assert_eq!(class, "malformed-row");
        let field = match kind {
            Kind::GoogleAds => "metrics.impressions",
            Kind::Meta => "impressions",
            Kind::Tiktok => "stat_time_hour",
            Kind::Linkedin => "costInLocalCurrency",
        };
        assert!(
            message.contains(field),
            "{kind:?}: reason '{message}' names {field}"
        );
        assert!(
            serde_json::from_str::<Value>(&value).is_ok(),
            "the raw row is kept: {value}"
        );
    }
}

async fn platform_end_to_end(kind: Kind) {
    let registry = start_registry(kind.slug()).await;
    let dir = std::env::temp_dir().join(unique("connectors"));
    std::fs::create_dir_all(&dir).expect("dir");
    let fixture = Fixture::new(kind, &dir);
    let base_url = serve(fixture.clone()).await;

    // One pass through the faults.
    let topics = private_topics(&registry.url, kind.slug());
    let config = config_file(kind, &fixture, &base_url, &topics);
    let started = Instant::now();
    let said = run_once(kind, &registry.url, &config).await;
    eprintln!(
        "{kind:?}: first pass in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        said.trim()
    );
    assert_eq!(
        *fixture.faults.lock().expect("lock"),
        ["429", "500", "expired"],
        "every fault was served"
    );
    let waited = fixture
        .retried_after
        .lock()
        .expect("lock")
        .expect("retried after the 429");
    assert!(
        waited >= Duration::from_secs(RETRY_AFTER_SECS),
        "{kind:?}: retried after {waited:?}, before Retry-After"
    );
    let (counts, latest) = tally(&reports(&topics.reports));
    assert!(
        counts.values().all(|n| *n == 1),
        "{kind:?}: a row written twice in one pass"
    );
    assert_matches_fixture(kind, &latest, &fixture);
    assert_one_malformed_row(kind, &topics.dead_letters, 1);
    assert_campaigns(kind, &topics.campaigns, &fixture);
    assert_creatives(kind, &topics.creatives);

    // The platform restates an hour and the advertiser pauses a campaign; the next pass re-reads the look-back,
    // the new number overwrites and the campaign shows as paused.
    let restated = fixture.restate();
    fixture.pause();
    let said = run_once(kind, &registry.url, &config).await;
    eprintln!("{kind:?}: second pass: {}", said.trim());
    let (counts, latest) = tally(&reports(&topics.reports));
    assert!(
        counts.values().all(|n| *n == 2),
        "{kind:?}: every key once per pass"
    );
    assert_matches_fixture(kind, &latest, &fixture);
    let want = &fixture.expected()[&restated];
    assert_eq!(
        latest[&restated].spend_micros,
        want.spend_micros(),
        "the restated spend overwrote"
    );
    assert_one_malformed_row(kind, &topics.dead_letters, 2);
    assert_campaigns(kind, &topics.campaigns, &fixture);

    // Killed three times mid-sync on fresh topics, then run to the end: every row exactly once.
    let topics = private_topics(&registry.url, &format!("{}-kill", kind.slug()));
    let config = config_file(kind, &fixture, &base_url, &topics);
    let mut kills = 0usize;
    while kills < 3 {
        let before = fixture.pages_served.load(Ordering::SeqCst);
        let mut child = start_connector(kind, &registry.url, &config);
        // One more report page on its way, then 0, 150 or 350 ms: the kill lands before, during or after that
        // page's commit, while the connector is mid-pass. Each answer takes the fixture's 150 ms, so a run commits
        // at most two pages before its kill and the three runs at most five: the pass is never complete.
        let deadline = Instant::now() + Duration::from_secs(60);
        while fixture.pages_served.load(Ordering::SeqCst) < before + 1 {
            assert!(Instant::now() < deadline, "the connector made no requests");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis([0, 150, 350][kills])).await;
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the connector ended before it was killed"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
    }
    let said = run_once(kind, &registry.url, &config).await;
    eprintln!("{kind:?}: after {kills} kills: {}", said.trim());
    let (counts, latest) = tally(&reports(&topics.reports));
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "{kind:?}: {} keys duplicated after kills, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert_matches_fixture(kind, &latest, &fixture);
    assert_one_malformed_row(kind, &topics.dead_letters, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_reports_arrive_exactly_once() {
    platform_end_to_end(Kind::GoogleAds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reports_arrive_exactly_once() {
    platform_end_to_end(Kind::Meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_reports_arrive_exactly_once() {
    platform_end_to_end(Kind::Tiktok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkedin_reports_arrive_exactly_once() {
    platform_end_to_end(Kind::Linkedin).await;
}

/// `config` with its text changed by `edit`, written to a new file.
fn edited(config: &std::path::Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("config");
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("connectors-edited")));
    std::fs::write(&path, edit(text)).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_account_fails_the_run_with_the_platforms_message() {
    let registry = start_registry("connect-refused").await;
    let dir = std::env::temp_dir().join(unique("connectors"));
    std::fs::create_dir_all(&dir).expect("dir");
    let fixture = Fixture::new(Kind::Meta, &dir);
    let base_url = serve(fixture.clone()).await;
    let topics = private_topics(&registry.url, "refused");
    let config = edited(
        &config_file(Kind::Meta, &fixture, &base_url, &topics),
        |text| text.replace(&format!("id: \"{ACCOUNT}\""), "id: \"999\""),
    );
    let child = start_connector(Kind::Meta, &registry.url, &config);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("meta account 999") && stderr.contains("Invalid parameter"),
        "the error names the account and the platform's message: {stderr}"
    );
    assert!(
        !stderr.contains("meta-token"),
        "no token in the output: {stderr}"
    );
    assert!(reports(&topics.reports).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_connector_passes_again_and_stops_on_sigterm() {
    use std::io::BufRead;
    let registry = start_registry("connect-loop").await;
    let dir = std::env::temp_dir().join(unique("connectors"));
    std::fs::create_dir_all(&dir).expect("dir");
    let fixture = Fixture::new(Kind::Linkedin, &dir);
    let base_url = serve(fixture.clone()).await;
    let topics = private_topics(&registry.url, "loop");
    let config = edited(
        &config_file(Kind::Linkedin, &fixture, &base_url, &topics),
        |text| text.replacen("connectors:\n", "connectors:\n  poll_interval_secs: 1\n", 1),
    );
    let mut child = adstream(
        &registry.url,
        &[
            "connect",
            "run",
            "linkedin",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the connector");
    let stdout = child.stdout.take().expect("stdout");
    // Two passes: the second one re-reads the look-back.
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .collect::<Result<Vec<String>, _>>()
    })
    .await
    .expect("join")
    .expect("two pass lines");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("linkedin account 1234567:")),
        "{lines:?}"
    );
    let status = common::jobs::terminate(child);
    assert!(status.success(), "SIGTERM stops the loop cleanly: {status}");
    let (counts, latest) = tally(&reports(&topics.reports));
    assert!(
        counts.values().all(|n| *n >= 2),
        "every key written by both passes"
    );
    assert_matches_fixture(Kind::Linkedin, &latest, &fixture);
}
