//! Typed builders for ad events, for connectors and applications that emit events one at a time.
//!
//! A builder starts from what identifies the event (ids, time, where it was served), takes optional parts by
//! name, and `build()` checks the values the schema cannot express (non-empty ids, ISO 4217 currency, costs not
//! negative, a real event time), so that an invalid event is refused where it is made rather than dead-lettered
//! downstream.

use adstream_schemas::events::{
    AdClick, AdImpression, Conversion, ConversionType, Device, Placement, Platform,
};

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {record}.{field}: {problem}")]
pub struct InvalidEvent {
    /// Record type, e.g. `AdClick`.
    pub record: &'static str,
    /// Field name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(record: &'static str, field: &'static str, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent {
        record,
        field,
        problem: problem.into(),
    }
}

fn require_id(record: &'static str, field: &'static str, value: &str) -> Result<(), InvalidEvent> {
    if value.trim().is_empty() {
        return Err(invalid(record, field, "must not be empty"));
    }
    Ok(())
}

fn require_currency(record: &'static str, value: &str) -> Result<(), InvalidEvent> {
    if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            record,
            "currency",
            format!("'{value}' is not an ISO 4217 code like USD"),
        ));
    }
    Ok(())
}

fn require_non_negative(
    record: &'static str,
    field: &'static str,
    value: i64,
) -> Result<(), InvalidEvent> {
    if value < 0 {
        return Err(invalid(record, field, format!("{value} is negative")));
    }
    Ok(())
}

fn require_time(record: &'static str, value: i64) -> Result<(), InvalidEvent> {
    // Before 2000-01-01 is a unit mistake (seconds instead of millis) or a zero default, not an ad event.
    if value < 946_684_800_000 {
        return Err(invalid(
            record,
            "event_time",
            format!("{value} is not epoch milliseconds after 2000"),
        ));
    }
    Ok(())
}

/// The checks an event must pass beyond its schema: what `build()` runs, and what a server that receives
/// complete events (`adstream ingest serve`) runs on each.
pub trait CheckedEvent {
    /// `Ok` when every id is non-empty, the event time is epoch millis after 2000, money is not negative and the
    /// currency is an ISO 4217 code; else the first field that is wrong.
    fn check(&self) -> Result<(), InvalidEvent>;
}

/// The checks shared by impressions and clicks (what identifies where the ad was served, its time and cost).
fn check_served(
    record: &'static str,
    event_id: &str,
    serving: [(&'static str, &str); 4],
    event_time: i64,
    cost_micros: i64,
    currency: &str,
) -> Result<(), InvalidEvent> {
    require_id(record, "event_id", event_id)?;
    for (field, value) in serving {
        require_id(record, field, value)?;
    }
    require_time(record, event_time)?;
    require_non_negative(record, "cost_micros", cost_micros)?;
    require_currency(record, currency)
}

impl CheckedEvent for AdImpression {
    fn check(&self) -> Result<(), InvalidEvent> {
        check_served(
            "AdImpression",
            &self.event_id,
            [
                ("account_id", &self.account_id),
                ("campaign_id", &self.campaign_id),
                ("ad_group_id", &self.ad_group_id),
                ("creative_id", &self.creative_id),
            ],
            self.event_time,
            self.cost_micros,
            &self.currency,
        )
    }
}

impl CheckedEvent for AdClick {
    fn check(&self) -> Result<(), InvalidEvent> {
        check_served(
            "AdClick",
            &self.event_id,
            [
                ("account_id", &self.account_id),
                ("campaign_id", &self.campaign_id),
                ("ad_group_id", &self.ad_group_id),
                ("creative_id", &self.creative_id),
            ],
            self.event_time,
            self.cost_micros,
            &self.currency,
        )
    }
}

impl CheckedEvent for Conversion {
    fn check(&self) -> Result<(), InvalidEvent> {
        const R: &str = "Conversion";
        require_id(R, "conversion_id", &self.conversion_id)?;
        require_id(R, "user_id", &self.user_id)?;
        require_time(R, self.event_time)?;
        require_non_negative(R, "value_micros", self.value_micros)?;
        require_currency(R, &self.currency)
    }
}

/// Where an ad was served: the identifying part shared by impressions and clicks.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Platform.
    pub platform: Platform,
    /// Advertiser account.
    pub account_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Ad group / ad set.
    pub ad_group_id: String,
    /// Creative.
    pub creative_id: String,
}

/// Builds an [`AdImpression`].
#[derive(Debug, Clone)]
pub struct ImpressionBuilder {
    event: AdImpression,
}

impl ImpressionBuilder {
    /// Starts an impression with id, event time (epoch millis) and where it was served.
    pub fn new(event_id: impl Into<String>, event_time_ms: i64, serving: Serving) -> Self {
        Self {
            event: AdImpression {
                event_id: event_id.into(),
                event_time: event_time_ms,
                platform: serving.platform,
                account_id: serving.account_id,
                campaign_id: serving.campaign_id,
                ad_group_id: serving.ad_group_id,
                creative_id: serving.creative_id,
                user_id: None,
                placement: Placement::Other,
                device: Device::Other,
                cost_micros: 0,
                currency: "USD".to_string(),
            },
        }
    }

    /// The pseudonymous user who saw it.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.event.user_id = Some(user_id.into());
        self
    }

    /// Placement and device.
    pub fn shown_on(mut self, placement: Placement, device: Device) -> Self {
        self.event.placement = placement;
        self.event.device = device;
        self
    }

    /// What the impression cost, in micros of `currency`.
    pub fn cost(mut self, cost_micros: i64, currency: impl Into<String>) -> Self {
        self.event.cost_micros = cost_micros;
        self.event.currency = currency.into();
        self
    }

    /// Checks and returns the impression.
    pub fn build(self) -> Result<AdImpression, InvalidEvent> {
        self.event.check()?;
        Ok(self.event)
    }
}

/// Builds an [`AdClick`].
#[derive(Debug, Clone)]
pub struct ClickBuilder {
    event: AdClick,
}

impl ClickBuilder {
    /// Starts a click with id, event time (epoch millis) and where the ad was served.
    pub fn new(event_id: impl Into<String>, event_time_ms: i64, serving: Serving) -> Self {
        Self {
            event: AdClick {
                event_id: event_id.into(),
                event_time: event_time_ms,
                platform: serving.platform,
                account_id: serving.account_id,
                campaign_id: serving.campaign_id,
                ad_group_id: serving.ad_group_id,
                creative_id: serving.creative_id,
                user_id: None,
                impression_id: None,
                device: Device::Other,
                cost_micros: 0,
                currency: "USD".to_string(),
            },
        }
    }

    /// The pseudonymous user who clicked.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.event.user_id = Some(user_id.into());
        self
    }

    /// The impression the click followed.
    pub fn after_impression(mut self, impression_id: impl Into<String>) -> Self {
        self.event.impression_id = Some(impression_id.into());
        self
    }

    /// Device class.
    pub fn device(mut self, device: Device) -> Self {
        self.event.device = device;
        self
    }

    /// What the click cost, in micros of `currency`.
    pub fn cost(mut self, cost_micros: i64, currency: impl Into<String>) -> Self {
        self.event.cost_micros = cost_micros;
        self.event.currency = currency.into();
        self
    }

    /// Checks and returns the click.
    pub fn build(self) -> Result<AdClick, InvalidEvent> {
        self.event.check()?;
        Ok(self.event)
    }
}

/// Builds a [`Conversion`].
#[derive(Debug, Clone)]
pub struct ConversionBuilder {
    event: Conversion,
}

impl ConversionBuilder {
    /// Starts a conversion of `user_id` at `event_time_ms`, with no value.
    pub fn new(
        conversion_id: impl Into<String>,
        event_time_ms: i64,
        user_id: impl Into<String>,
    ) -> Self {
        Self {
            event: Conversion {
                conversion_id: conversion_id.into(),
                event_time: event_time_ms,
                user_id: user_id.into(),
                conversion_type: ConversionType::Other,
                value_micros: 0,
                currency: "USD".to_string(),
            },
        }
    }

    /// Kind of conversion.
    pub fn kind(mut self, conversion_type: ConversionType) -> Self {
        self.event.conversion_type = conversion_type;
        self
    }

    /// Its value in micros of `currency`.
    pub fn value(mut self, value_micros: i64, currency: impl Into<String>) -> Self {
        self.event.value_micros = value_micros;
        self.event.currency = currency.into();
        self
    }

    /// Checks and returns the conversion.
    pub fn build(self) -> Result<Conversion, InvalidEvent> {
        self.event.check()?;
        Ok(self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving() -> Serving {
        Serving {
            platform: Platform::Linkedin,
            account_id: "a".into(),
            campaign_id: "c".into(),
            ad_group_id: "g".into(),
            creative_id: "cr".into(),
        }
    }

    #[test]
    fn builds_valid_events() {
        let click = ClickBuilder::new("clk", 1_793_491_200_000, serving())
            .user("u")
            .after_impression("imp")
            .cost(1_500_000, "EUR")
            .build()
            .expect("valid");
        assert_eq!(click.user_id.as_deref(), Some("u"));
        assert_eq!(click.currency, "EUR");
        let imp = ImpressionBuilder::new("imp", 1_793_491_200_000, serving())
            .cost(4_000, "USD")
            .build();
        assert!(imp.is_ok());
        let conv = ConversionBuilder::new("cv", 1_793_491_200_000, "u")
            .kind(ConversionType::Purchase)
            .value(5, "GBP");
        assert!(conv.build().is_ok());
    }

    #[test]
    fn refuses_what_the_schema_cannot_express() {
        let err = ClickBuilder::new("clk", 1_793_491_200_000, serving())
            .cost(-1, "USD")
            .build()
            .unwrap_err();
        assert_eq!((err.record, err.field), ("AdClick", "cost_micros"));
        let err = ImpressionBuilder::new("imp", 1_793_491_200, serving())
            .build()
            .unwrap_err();
        assert_eq!(
            err.field, "event_time",
            "seconds instead of millis is caught"
        );
        let err = ConversionBuilder::new("cv", 1_793_491_200_000, "u")
            .value(1, "usd")
            .build()
            .unwrap_err();
        assert_eq!(err.field, "currency");
        let err = ConversionBuilder::new("cv", 1_793_491_200_000, " ")
            .build()
            .unwrap_err();
        assert_eq!(err.field, "user_id");
        assert_eq!(
            err.to_string(),
            "invalid Conversion.user_id: must not be empty"
        );
    }
}
