//! The source abstraction and what every platform's rows need: an account with its time zone, one page of
//! normalised rows, and the parsing of the platforms' numbers (counts and money as strings or numbers, decimal
//! money into micros without going through floating point).

use std::future::Future;

use adstream_schemas::events::Platform;
use adstream_schemas::outputs::Granularity;
use adstream_schemas::platform::PlatformReport;
use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

use crate::config::{AccountConfig, ReportGranularity};
use adstream_schemas::events::{Campaign, Creative};

use crate::entities::Entity;
use crate::http::SourceError;

/// An ad account to sync, its configuration checked.
#[derive(Debug, Clone)]
pub struct Account {
    /// The platform's account id.
    pub id: String,
    /// The account's time zone.
    pub time_zone: Tz,
    /// The account's currency.
    pub currency: String,
}

impl Account {
    /// Checks `config`: a known IANA time zone and a three-letter currency.
    pub fn from_config(config: &AccountConfig) -> Result<Account, SourceError> {
        let time_zone: Tz = config.time_zone.parse().map_err(|_| {
            SourceError::Config(format!(
                "account {}: unknown time zone '{}' (expected an IANA name like America/New_York)",
                config.id, config.time_zone
            ))
        })?;
        if config.currency.len() != 3 || !config.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(SourceError::Config(format!(
                "account {}: currency '{}' is not an ISO 4217 code like USD",
                config.id, config.currency
            )));
        }
        if config.id.trim().is_empty() {
            return Err(SourceError::Config("an account has an empty id".into()));
        }
        Ok(Account {
            id: config.id.clone(),
            time_zone,
            currency: config.currency.clone(),
        })
    }
}

/// One row of a page.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A row in the documented shape, normalised.
    Report(PlatformReport),
    /// A row that is not: it goes to the dead-letter topic with its reason, and the rest of the page goes on.
    Malformed {
        /// The row as the platform sent it (JSON).
        raw: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One page of one account's day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// The page's rows.
    pub rows: Vec<Row>,
    /// The token of the day's next page; None on the last page.
    pub next: Option<String>,
}

/// A platform's reporting API and its campaign list.
pub trait ReportSource: Send {
    /// The platform.
    fn platform(&self) -> Platform;

    /// The page of `account`'s rows of `day` (in the account's time zone) that `page_token` names (None: the first
    /// page). Rows that cannot be normalised are [`Row::Malformed`]; only a failure of the request itself is an
    /// error.
    fn fetch_page<'a>(
        &'a mut self,
        account: &'a Account,
        day: NaiveDate,
        page_token: Option<&'a str>,
    ) -> impl Future<Output = Result<Page, SourceError>> + Send + 'a;

    /// Every campaign of `account` (all pages), for the entity sync.
    fn fetch_campaigns<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> impl Future<Output = Result<Vec<Entity<Campaign>>, SourceError>> + Send + 'a;

    /// Every ad (creative) of `account` (all pages), for the entity sync.
    fn fetch_creatives<'a>(
        &'a mut self,
        account: &'a Account,
    ) -> impl Future<Output = Result<Vec<Entity<Creative>>, SourceError>> + Send + 'a;
}

/// What every row of one page shares.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    /// Platform.
    pub platform: Platform,
    /// Account.
    pub account: &'a Account,
    /// Window length of the rows.
    pub granularity: ReportGranularity,
    /// When the page was read (UTC epoch millis).
    pub reported_at: i64,
}

/// The figures of one row, parsed; [`RowContext::report`] makes the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Campaign id.
    pub campaign_id: String,
    /// Ad group id, where there is one.
    pub ad_group_id: Option<String>,
    /// Ad id.
    pub ad_id: String,
    /// Day of the row in the account's time zone.
    pub date: NaiveDate,
    /// Hour of the day (0..=23) for hourly rows.
    pub hour: Option<u32>,
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Spend in micros.
    pub spend_micros: i64,
    /// Conversions.
    pub conversions: f64,
    /// Conversion value in micros.
    pub conversion_value_micros: Option<i64>,
}

impl RowContext<'_> {
    /// The normalised record of `figures`: the window from the day and hour in the account's time zone.
    pub fn report(&self, figures: Figures) -> Result<PlatformReport, String> {
        let (granularity, start, end) = match (self.granularity, figures.hour) {
            (ReportGranularity::Hourly, Some(hour)) => {
                let start = local_start(self.account.time_zone, figures.date, hour)?;
                (Granularity::Hourly, start, start + 3_600_000)
            }
            (ReportGranularity::Hourly, None) => return Err("hourly report row has no hour".into()),
            (ReportGranularity::Daily, _) => {
                let next = figures
                    .date
                    .succ_opt()
                    .ok_or_else(|| format!("date {} has no next day", figures.date))?;
                (
                    Granularity::Daily,
                    local_start(self.account.time_zone, figures.date, 0)?,
                    local_start(self.account.time_zone, next, 0)?,
                )
            }
        };
        Ok(PlatformReport {
            platform: self.platform,
            account_id: self.account.id.clone(),
            campaign_id: figures.campaign_id,
            ad_group_id: figures.ad_group_id,
            ad_id: figures.ad_id,
            granularity,
            window_start: start,
            window_end: end,
            time_zone: self.account.time_zone.name().to_owned(),
            currency: self.account.currency.clone(),
            impressions: figures.impressions,
            clicks: figures.clicks,
            spend_micros: figures.spend_micros,
            conversions: figures.conversions,
            conversion_value_micros: figures.conversion_value_micros,
            reported_at: self.reported_at,
        })
    }

    /// `row` normalised by `parse`, or the malformed row with its reason.
    pub fn row(&self, row: &Value, parse: impl FnOnce(&Value) -> Result<Figures, String>) -> Row {
        match parse(row).and_then(|figures| self.report(figures)) {
            Ok(report) => Row::Report(report),
            Err(reason) => Row::Malformed {
                raw: row.to_string(),
                reason,
            },
        }
    }
}

/// UTC epoch millis of `hour`:00 on `date` in `zone`. In the hour a DST change repeats, the first; an hour that
/// does not exist there (skipped by DST) is an error: the platform cannot have reported it.
pub fn local_start(zone: Tz, date: NaiveDate, hour: u32) -> Result<i64, String> {
    let local = date
        .and_hms_opt(hour, 0, 0)
        .ok_or_else(|| format!("hour {hour} is not an hour of the day"))?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("{local} does not exist in {}", zone.name()))
}

/// The value at `path` (object keys) in `row`.
pub fn at<'v>(row: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(row, |v, key| v.get(key))
}

/// A required id at `path`: a non-empty string or an integer.
pub fn id(row: &Value, path: &[&str]) -> Result<String, String> {
    match at(row, path) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(other) => Err(format!("{}: {other} is not an id", path.join("."))),
        None => Err(format!("{}: missing", path.join("."))),
    }
}

/// A count at `path`: a non-negative integer as a number or a string; missing is 0 (platforms leave zero
/// metrics out).
pub fn count(row: &Value, path: &[&str]) -> Result<i64, String> {
    let bad = |v: &Value| format!("{}: {v} is not a count", path.join("."));
    match at(row, path) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|c| *c >= 0)
            .ok_or_else(|| bad(&Value::Number(n.clone()))),
        Some(v @ Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| bad(v)),
        Some(other) => Err(bad(other)),
    }
}

/// An amount of money in currency units at `path` (`"14.35"`, `14.35`, `"209.449"`) in micros, exactly: the
/// decimal text is scaled, never a float. Missing is 0.
pub fn money_micros(row: &Value, path: &[&str]) -> Result<i64, String> {
    match at(row, path) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => decimal_micros(&n.to_string()),
        Some(Value::String(s)) => decimal_micros(s),
        Some(other) => Err(format!("{other} is not an amount")),
    }
    .map_err(|e| format!("{}: {e}", path.join(".")))
}

/// A non-negative decimal amount (`"14.35"`, `"1e2"` is refused) in micros; more than six decimals round half up.
pub fn decimal_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a non-negative decimal amount");
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let units: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut micros: i64 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        let digit = i64::from(digit - b'0');
        match i {
            0..=5 => micros = micros * 10 + digit,
            // The seventh decimal rounds half up; the ones after it cannot change that.
            6 if digit >= 5 => micros += 1,
            _ => {}
        }
    }
    for _ in fraction.len()..6 {
        micros *= 10;
    }
    units
        .checked_mul(1_000_000)
        .and_then(|u| u.checked_add(micros))
        .ok_or_else(bad)
}

/// A non-negative number (conversions) at `path`, as a number or a string; missing is 0.
pub fn number(row: &Value, path: &[&str]) -> Result<f64, String> {
    let bad = |v: &Value| format!("{}: {v} is not a number", path.join("."));
    let value = match at(row, path) {
        None | Some(Value::Null) => return Ok(0.0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(other) => return Err(bad(other)),
    };
    value
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| bad(at(row, path).unwrap_or(&Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_scaled_exactly() {
        assert_eq!(decimal_micros("14.35"), Ok(14_350_000));
        assert_eq!(decimal_micros("209.449"), Ok(209_449_000));
        assert_eq!(decimal_micros("20"), Ok(20_000_000));
        assert_eq!(decimal_micros(".5"), Ok(500_000));
        assert_eq!(decimal_micros("0.0000015"), Ok(2));
        assert_eq!(decimal_micros("0.1234564"), Ok(123_456));
        for bad in ["", ".", "-1", "1e2", "abc", "1.2.3", "99999999999999999"] {
            assert!(decimal_micros(bad).is_err(), "{bad}");
        }
        let row = json!({"spend": "14.35", "value": 80.5, "bad": true});
        assert_eq!(money_micros(&row, &["spend"]), Ok(14_350_000));
        assert_eq!(money_micros(&row, &["value"]), Ok(80_500_000));
        assert_eq!(money_micros(&row, &["missing"]), Ok(0));
        assert!(money_micros(&row, &["bad"]).is_err());
    }

    #[test]
    fn counts_and_ids_take_strings_or_numbers() {
        let row =
            json!({"m": {"a": "1200", "b": 34, "c": "x", "d": -1}, "id": 111, "s": "222", "e": ""});
        assert_eq!(count(&row, &["m", "a"]), Ok(1200));
        assert_eq!(count(&row, &["m", "b"]), Ok(34));
        assert_eq!(count(&row, &["m", "z"]), Ok(0));
        assert_eq!(
            count(&row, &["m", "c"]),
            Err("m.c: \"x\" is not a count".into())
        );
        assert!(count(&row, &["m", "d"]).is_err());
        assert_eq!(id(&row, &["id"]), Ok("111".into()));
        assert_eq!(id(&row, &["s"]), Ok("222".into()));
        assert!(id(&row, &["e"]).is_err() && id(&row, &["nope"]).is_err());
    }

    #[test]
    fn windows_follow_the_accounts_time_zone_across_dst() {
        let zone: Tz = "America/New_York".parse().expect("zone");
        let day = NaiveDate::from_ymd_opt(2024, 5, 1).expect("date");
        // 13:00 EDT is 17:00 UTC.
        assert_eq!(local_start(zone, day, 13), Ok(1_714_582_800_000));
        // 2024-03-10 02:00 does not exist in New York.
        let spring = NaiveDate::from_ymd_opt(2024, 3, 10).expect("date");
        assert!(local_start(zone, spring, 2).is_err());
        let account = Account {
            id: "1".into(),
            time_zone: zone,
            currency: "USD".into(),
        };
        let context = RowContext {
            platform: Platform::Meta,
            account: &account,
            granularity: ReportGranularity::Daily,
            reported_at: 0,
        };
        let figures = Figures {
            campaign_id: "c".into(),
            ad_group_id: None,
            ad_id: "a".into(),
            date: spring,
            hour: None,
            impressions: 1,
            clicks: 0,
            spend_micros: 0,
            conversions: 0.0,
            conversion_value_micros: None,
        };
        let report = context.report(figures).expect("report");
        assert_eq!(report.window_end - report.window_start, 23 * 3_600_000);
    }
}
