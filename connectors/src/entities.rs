//! Entity sync: the platforms' campaigns (status, budgets, schedule) as `io.adstream.ads.Campaign` records in the
//! compacted `ads.campaigns` table, so that a campaign paused on the platform shows as paused in adstream, and their
//! ads as `io.adstream.ads.Creative` records in `ads.creatives` (campaign, ad group, format, headline).
//!
//! Each pass lists every campaign and ad of every account (these lists are small) and writes them in one
//! transaction per account; the tables are keyed, so writing an unchanged entity again is harmless. Ids are the
//! platform's prefixed by the platform's slug (`meta-222`), because the tables' keys are unique across platforms.
//! KPI targets are adstream's own settings, not the platform's: synced campaigns carry none.

use adstream_schemas::events::{
    Campaign, CampaignStatus, CampaignTargets, Creative, CreativeFormat, Objective, Platform,
};
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use serde_json::Value;

use crate::source::{self, Account};

/// One entry of a platform's campaign or ad list.
#[derive(Debug, Clone, PartialEq)]
pub enum Entity<T> {
    /// An entry in the documented shape.
    Record(Box<T>),
    /// An entry that is not; dead-lettered with its reason.
    Malformed {
        /// The entry as the platform sent it (JSON).
        raw: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `entry` parsed by `parse`, or the malformed entry.
pub fn entity<T>(entry: &Value, parse: impl FnOnce(&Value) -> Result<T, String>) -> Entity<T> {
    match parse(entry) {
        Ok(record) => Entity::Record(Box::new(record)),
        Err(reason) => Entity::Malformed {
            raw: entry.to_string(),
            reason,
        },
    }
}

/// The adstream id of a platform's campaign, ad group or ad ([`Platform::global_id`]), unique across platforms as
/// the entity tables' keys must be.
pub fn global_id(platform: Platform, id: &str) -> String {
    platform.global_id(id)
}

/// A creative (an ad) of `platform`; ids are the platform's, made global by [`global_id`].
pub fn creative(
    platform: Platform,
    ids: (&str, &str, &str),
    format: CreativeFormat,
    headline: String,
    created_at: i64,
) -> Creative {
    let (ad, campaign, ad_group) = ids;
    Creative {
        creative_id: global_id(platform, ad),
        campaign_id: global_id(platform, campaign),
        ad_group_id: global_id(platform, ad_group),
        platform,
        format,
        headline,
        created_at,
    }
}

/// A campaign of `account` with what every platform sets the same way; the caller fills in the rest (a
/// platform that gives no start leaves `start_time` at 0, and no update time leaves `updated_at` at now).
pub fn campaign(
    platform: Platform,
    account: &Account,
    id: &str,
    name: String,
    status: CampaignStatus,
) -> Campaign {
    Campaign {
        campaign_id: global_id(platform, id),
        platform,
        account_id: account.id.clone(),
        name,
        objective: Objective::Other,
        status,
        currency: account.currency.clone(),
        daily_budget_micros: None,
        lifetime_budget_micros: None,
        start_time: 0,
        end_time: None,
        time_zone: account.time_zone.name().to_owned(),
        targets: CampaignTargets::default(),
        updated_at: chrono::Utc::now().timestamp_millis(),
    }
}

/// A required string field.
pub fn text(entry: &Value, field: &str) -> Result<String, String> {
    entry
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(format!("{field}: missing"))
}

/// Local midnight of `YYYY-MM-DD` in the account's time zone (UTC epoch millis).
pub fn local_day_start(account: &Account, field: &str, text: &str) -> Result<i64, String> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{field}: '{text}' is not a date"))?;
    source::local_start(account.time_zone, day, 0)
}

/// `YYYY-MM-DD HH:MM:SS` as UTC epoch millis.
pub fn utc_time(field: &str, text: &str) -> Result<i64, String> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|t| chrono::Utc.from_utc_datetime(&t).timestamp_millis())
        .map_err(|_| format!("{field}: '{text}' is not a time"))
}

/// ISO 4217 currencies without minor units, whose amounts Meta writes in whole units.
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// An amount in the currency's minor units (Meta's budgets: `"2000"` is 20.00 USD) in micros.
pub fn minor_units_micros(currency: &str, field: &str, text: &str) -> Result<i64, String> {
    let minor: i64 = text
        .trim()
        .parse()
        .ok()
        .filter(|v: &i64| *v >= 0)
        .ok_or(format!("{field}: '{text}' is not an amount in minor units"))?;
    let per_minor = if ZERO_DECIMAL.contains(&currency) {
        1_000_000
    } else {
        10_000
    };
    minor
        .checked_mul(per_minor)
        .ok_or(format!("{field}: '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_the_currency() {
        assert_eq!(minor_units_micros("USD", "b", "2000"), Ok(20_000_000));
        assert_eq!(minor_units_micros("JPY", "b", "2000"), Ok(2_000_000_000));
        assert!(minor_units_micros("USD", "b", "20.5").is_err());
    }
}
