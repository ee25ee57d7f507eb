//! Rust types for the Avro contract in `schemas/*.avsc`.
//!
//! Each struct serializes (through serde and `apache_avro::to_value`) to exactly the record its `.avsc` file
//! declares: same field names, same order, same types. The tests at the bottom check that against the parsed
//! schema files, so a change on either side that the other does not follow fails the build's tests.

use serde::{Deserialize, Serialize};

/// The schema files, embedded so that binaries do not depend on the working directory.
pub mod avsc {
    /// `schemas/ad_impression.avsc`.
    pub const AD_IMPRESSION: &str = include_str!("../ad_impression.avsc");
    /// `schemas/ad_click.avsc`.
    pub const AD_CLICK: &str = include_str!("../ad_click.avsc");
    /// `schemas/conversion.avsc`.
    pub const CONVERSION: &str = include_str!("../conversion.avsc");
    /// `schemas/campaign.avsc`.
    pub const CAMPAIGN: &str = include_str!("../campaign.avsc");
    /// `schemas/creative.avsc`.
    pub const CREATIVE: &str = include_str!("../creative.avsc");
}

/// A Rust type bound to one record schema of the contract.
pub trait AvroRecord: Serialize {
    /// Full name of the Avro record, e.g. `io.adstream.ads.AdClick`.
    const FULL_NAME: &'static str;
    /// The `.avsc` text of the record.
    const SCHEMA: &'static str;
    /// CloudEvents `ce_type` of events of this kind (`io.adstream.<kind>.v1`).
    const CE_TYPE: &'static str;
    /// Unique id of this record: CloudEvents `ce_id`.
    fn id(&self) -> &str;
    /// Kafka record key: decides the partition (campaign for ad events, user for conversions).
    fn key(&self) -> &str;
    /// Event time in UTC epoch millis; the Kafka record timestamp.
    fn event_time_ms(&self) -> i64;
}

/// Ad platform. Unknown symbols from newer writers read as [`Platform::Unknown`] (the enum's Avro default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Platform {
    /// Google Ads.
    GoogleAds,
    /// Meta (Facebook, Instagram).
    Meta,
    /// TikTok.
    Tiktok,
    /// LinkedIn.
    Linkedin,
    /// Not known to this reader.
    Unknown,
}

impl Platform {
    /// The platform whose Avro enum symbol is `symbol` (what serde names it); None for a symbol this reader does
    /// not know.
    pub fn from_symbol(symbol: &str) -> Option<Platform> {
        Some(match symbol {
            "GOOGLE_ADS" => Platform::GoogleAds,
            "META" => Platform::Meta,
            "TIKTOK" => Platform::Tiktok,
            "LINKEDIN" => Platform::Linkedin,
            "UNKNOWN" => Platform::Unknown,
            _ => return None,
        })
    }

    /// The four platforms adstream generates and normalises.
    pub const ALL: [Platform; 4] = [
        Platform::GoogleAds,
        Platform::Meta,
        Platform::Tiktok,
        Platform::Linkedin,
    ];

    /// adstream's id of one of this platform's campaigns, ad groups or ads: `<slug>-<the platform's id>`, unique
    /// across platforms. Events carry it; the entity tables are keyed by it; reconciliation maps report rows
    /// (which carry the platform's own ids) to it.
    pub fn global_id(self, id: &str) -> String {
        let mut out = String::with_capacity(self.slug().len() + 1 + id.len());
        self.write_global_id(id, &mut out);
        out
    }

    /// [`Platform::global_id`] written into `out` (cleared first), for hot paths that reuse a buffer.
    pub fn write_global_id(self, id: &str, out: &mut String) {
        out.clear();
        out.push_str(self.slug());
        out.push('-');
        out.push_str(id);
    }

    /// Short lowercase slug used in ids and CloudEvents sources.
    pub fn slug(self) -> &'static str {
        match self {
            Platform::GoogleAds => "google",
            Platform::Meta => "meta",
            Platform::Tiktok => "tiktok",
            Platform::Linkedin => "linkedin",
            Platform::Unknown => "unknown",
        }
    }
}

/// Device class the ad was shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Device {
    /// Desktop browser.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Connected TV.
    ConnectedTv,
    /// Anything else.
    Other,
}

/// Where on the platform an impression appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Placement {
    /// Search results.
    Search,
    /// In-feed.
    Feed,
    /// Stories.
    Stories,
    /// In-stream video.
    Video,
    /// Display network.
    Display,
    /// Anything else.
    Other,
}

/// Kind of conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConversionType {
    /// A purchase with a value.
    Purchase,
    /// An account sign-up.
    Signup,
    /// A lead form.
    Lead,
    /// An app install.
    Install,
    /// An add-to-cart.
    AddToCart,
    /// Anything else.
    Other,
}

/// Campaign objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Objective {
    /// Reach and awareness.
    Awareness,
    /// Traffic to a site.
    Traffic,
    /// Conversions.
    Conversions,
    /// App installs.
    AppInstalls,
    /// Leads.
    Leads,
    /// Anything else.
    Other,
}

/// Campaign delivery status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignStatus {
    /// Delivering.
    Active,
    /// Paused by the advertiser.
    Paused,
    /// Past its end time.
    Ended,
    /// Not known to this reader.
    Unknown,
}

/// Creative format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreativeFormat {
    /// Static image.
    Image,
    /// Video.
    Video,
    /// Carousel of cards.
    Carousel,
    /// Text only.
    Text,
    /// Not known to this reader.
    Unknown,
}

/// `io.adstream.ads.AdImpression`: one ad served to one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdImpression {
    /// Unique id; CloudEvents `ce_id`.
    pub event_id: String,
    /// Event time, UTC epoch millis.
    pub event_time: i64,
    /// Serving platform.
    pub platform: Platform,
    /// Advertiser account.
    pub account_id: String,
    /// Campaign; the record key.
    pub campaign_id: String,
    /// Ad group / ad set.
    pub ad_group_id: String,
    /// Creative shown.
    pub creative_id: String,
    /// Pseudonymous user, when known.
    pub user_id: Option<String>,
    /// Placement.
    pub placement: Placement,
    /// Device class.
    pub device: Device,
    /// Charge for this impression in micros of `currency`.
    pub cost_micros: i64,
    /// ISO 4217 currency.
    pub currency: String,
}

/// `io.adstream.ads.AdClick`: one click on a served ad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdClick {
    /// Unique id; CloudEvents `ce_id`.
    pub event_id: String,
    /// Event time, UTC epoch millis.
    pub event_time: i64,
    /// Serving platform.
    pub platform: Platform,
    /// Advertiser account.
    pub account_id: String,
    /// Campaign; the record key.
    pub campaign_id: String,
    /// Ad group / ad set.
    pub ad_group_id: String,
    /// Creative clicked.
    pub creative_id: String,
    /// Pseudonymous user, when known.
    pub user_id: Option<String>,
    /// The impression this click followed, when known.
    pub impression_id: Option<String>,
    /// Device class.
    pub device: Device,
    /// Charge for this click in micros of `currency`.
    pub cost_micros: i64,
    /// ISO 4217 currency.
    pub currency: String,
}

/// `io.adstream.ads.Conversion`: a conversion reported by the advertiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    /// Unique id; CloudEvents `ce_id`.
    pub conversion_id: String,
    /// Event time, UTC epoch millis.
    pub event_time: i64,
    /// Pseudonymous user; the record key.
    pub user_id: String,
    /// Kind of conversion.
    pub conversion_type: ConversionType,
    /// Value in micros of `currency`.
    pub value_micros: i64,
    /// ISO 4217 currency.
    pub currency: String,
}

/// `io.adstream.ads.CampaignTargets`: KPI targets; `None` means no target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CampaignTargets {
    /// Minimum click-through rate.
    pub min_ctr: Option<f64>,
    /// Maximum cost per click, micros.
    pub max_cpc_micros: Option<i64>,
    /// Target cost per acquisition, micros.
    pub target_cpa_micros: Option<i64>,
    /// Minimum return on ad spend.
    pub min_roas: Option<f64>,
    /// Maximum cost per thousand impressions, micros.
    #[serde(default)]
    pub target_cpm_micros: Option<i64>,
}

/// `io.adstream.ads.Campaign`: campaign settings; compacted by `campaign_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// Campaign id; the record key.
    pub campaign_id: String,
    /// Platform.
    pub platform: Platform,
    /// Advertiser account.
    pub account_id: String,
    /// Display name.
    pub name: String,
    /// Objective.
    pub objective: Objective,
    /// Delivery status.
    pub status: CampaignStatus,
    /// ISO 4217 currency of budgets.
    pub currency: String,
    /// Daily budget, micros.
    pub daily_budget_micros: Option<i64>,
    /// Lifetime budget, micros.
    pub lifetime_budget_micros: Option<i64>,
    /// Delivery start, UTC epoch millis.
    pub start_time: i64,
    /// Delivery end, UTC epoch millis.
    pub end_time: Option<i64>,
    /// IANA time zone of the account.
    pub time_zone: String,
    /// KPI targets.
    pub targets: CampaignTargets,
    /// Last change, UTC epoch millis.
    pub updated_at: i64,
}

/// `io.adstream.ads.Creative`: a creative; compacted by `creative_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creative {
    /// Creative id; the record key.
    pub creative_id: String,
    /// Owning campaign.
    pub campaign_id: String,
    /// Owning ad group / ad set.
    pub ad_group_id: String,
    /// Platform.
    pub platform: Platform,
    /// Format.
    pub format: CreativeFormat,
    /// Headline shown to users.
    pub headline: String,
    /// Creation time, UTC epoch millis.
    pub created_at: i64,
}

macro_rules! avro_record {
    ($ty:ty, $name:literal, $schema:expr, $ce:literal, id: $id:ident, key: $key:ident, time: $time:ident) => {
        impl AvroRecord for $ty {
            const FULL_NAME: &'static str = $name;
            const SCHEMA: &'static str = $schema;
            const CE_TYPE: &'static str = $ce;
            fn id(&self) -> &str {
                &self.$id
            }
            fn key(&self) -> &str {
                &self.$key
            }
            fn event_time_ms(&self) -> i64 {
                self.$time
            }
        }
    };
}

avro_record!(AdImpression, "io.adstream.ads.AdImpression", avsc::AD_IMPRESSION, "io.adstream.ad.impression.v1",
    id: event_id, key: campaign_id, time: event_time);
avro_record!(AdClick, "io.adstream.ads.AdClick", avsc::AD_CLICK, "io.adstream.ad.click.v1",
    id: event_id, key: campaign_id, time: event_time);
avro_record!(Conversion, "io.adstream.ads.Conversion", avsc::CONVERSION, "io.adstream.conversion.v1",
    id: conversion_id, key: user_id, time: event_time);
avro_record!(Campaign, "io.adstream.ads.Campaign", avsc::CAMPAIGN, "io.adstream.campaign.v1",
    id: campaign_id, key: campaign_id, time: updated_at);
avro_record!(Creative, "io.adstream.ads.Creative", avsc::CREATIVE, "io.adstream.creative.v1",
    id: creative_id, key: creative_id, time: created_at);

/// Every schema of the contract (input events and processor outputs) by record full name.
pub const ALL_SCHEMAS: [(&str, &str); 8] = [
    (AdImpression::FULL_NAME, avsc::AD_IMPRESSION),
    (AdClick::FULL_NAME, avsc::AD_CLICK),
    (Conversion::FULL_NAME, avsc::CONVERSION),
    (Campaign::FULL_NAME, avsc::CAMPAIGN),
    (Creative::FULL_NAME, avsc::CREATIVE),
    (
        crate::outputs::CampaignMetrics::FULL_NAME,
        crate::outputs::CAMPAIGN_METRICS_AVSC,
    ),
    (
        crate::outputs::CampaignAlert::FULL_NAME,
        crate::outputs::CAMPAIGN_ALERT_AVSC,
    ),
    (
        crate::outputs::AttributionCredit::FULL_NAME,
        crate::outputs::ATTRIBUTION_CREDIT_AVSC,
    ),
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::{from_value, to_value, types::Value, Schema};
    use serde::de::DeserializeOwned;

    /// Field names of a record schema and of a serialized value must be identical and in the same order, and the
    /// value must survive an Avro binary round trip through the schema back into the same Rust value.
    fn assert_record_matches_schema<
        T: AvroRecord + DeserializeOwned + PartialEq + std::fmt::Debug,
    >(
        sample: T,
    ) {
        assert_matches_schema(T::FULL_NAME, T::SCHEMA, sample)
    }

    /// [`assert_record_matches_schema`] for any serde type and schema text (also used by the output types).
    pub(crate) fn assert_matches_schema<
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    >(
        full_name: &str,
        schema_text: &str,
        sample: T,
    ) {
        let schema = Schema::parse_str(schema_text).expect("schema parses");
        let Schema::Record(record) = &schema else {
            panic!("{full_name} is not a record")
        };
        assert_eq!(record.name.fullname(None), full_name);
        let value = to_value(&sample).expect("serializes");
        let Value::Record(fields) = &value else {
            panic!("not a record value")
        };
        let schema_fields: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        let value_fields: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            schema_fields, value_fields,
            "{}: field names/order differ",
            full_name
        );
        for field in &record.fields {
            assert!(
                field.doc.is_some(),
                "{}.{} has no doc",
                full_name,
                field.name
            );
        }
        // The producer's path: serde straight into Avro binary, validated against the schema.
        let writer = GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer");
        let datum = writer
            .write_ser_to_vec(&sample)
            .expect("encodes with the schema");
        assert_eq!(
            datum,
            writer.write_value_to_vec(value).expect("value encodes"),
            "serde and Value paths agree"
        );
        let reader = GenericDatumReader::builder(&schema)
            .build()
            .expect("reader");
        let decoded = reader.read_value(&mut datum.as_slice()).expect("decodes");
        let back: T = from_value(&decoded).expect("deserializes");
        assert_eq!(back, sample);
        // The processors' path: Avro binary straight into the type, which also checks that each struct's name
        // is its record's name.
        let direct: T = reader
            .read_deser(&mut datum.as_slice())
            .expect("reads straight into the type");
        assert_eq!(direct, sample);
    }

    #[test]
    fn impression_matches_schema() {
        assert_record_matches_schema(AdImpression {
            event_id: "imp-1".into(),
            event_time: 1_700_000_000_000,
            platform: Platform::Meta,
            account_id: "act".into(),
            campaign_id: "meta-c1".into(),
            ad_group_id: "g".into(),
            creative_id: "cr".into(),
            user_id: Some("u1".into()),
            placement: Placement::Stories,
            device: Device::ConnectedTv,
            cost_micros: 4200,
            currency: "USD".into(),
        });
    }

    #[test]
    fn click_matches_schema() {
        assert_record_matches_schema(AdClick {
            event_id: "clk-1".into(),
            event_time: 1_700_000_000_001,
            platform: Platform::GoogleAds,
            account_id: "act".into(),
            campaign_id: "google-c1".into(),
            ad_group_id: "g".into(),
            creative_id: "cr".into(),
            user_id: None,
            impression_id: Some("imp-1".into()),
            device: Device::Mobile,
            cost_micros: 1_250_000,
            currency: "EUR".into(),
        });
    }

    #[test]
    fn conversion_matches_schema() {
        assert_record_matches_schema(Conversion {
            conversion_id: "cv-1".into(),
            event_time: 1_700_000_000_002,
            user_id: "u1".into(),
            conversion_type: ConversionType::AddToCart,
            value_micros: 99_990_000,
            currency: "USD".into(),
        });
    }

    #[test]
    fn campaign_matches_schema() {
        assert_record_matches_schema(Campaign {
            campaign_id: "tiktok-c1".into(),
            platform: Platform::Tiktok,
            account_id: "act".into(),
            name: "Spring sale".into(),
            objective: Objective::AppInstalls,
            status: CampaignStatus::Active,
            currency: "USD".into(),
            daily_budget_micros: Some(500_000_000),
            lifetime_budget_micros: None,
            start_time: 1_700_000_000_000,
            end_time: Some(1_800_000_000_000),
            time_zone: "Europe/Berlin".into(),
            targets: CampaignTargets {
                min_ctr: Some(0.01),
                max_cpc_micros: None,
                target_cpa_micros: Some(20_000_000),
                min_roas: Some(2.5),
                target_cpm_micros: Some(8_000_000),
            },
            updated_at: 1_700_000_000_000,
        });
    }

    #[test]
    fn creative_matches_schema() {
        assert_record_matches_schema(Creative {
            creative_id: "cr".into(),
            campaign_id: "linkedin-c1".into(),
            ad_group_id: "g".into(),
            platform: Platform::Linkedin,
            format: CreativeFormat::Carousel,
            headline: "Hello".into(),
            created_at: 1_700_000_000_000,
        });
    }

    /// Every enum must carry a default so a reader survives symbols added by a newer writer, and every
    /// timestamp is `timestamp-millis`.
    #[test]
    fn contract_rules_hold_in_every_schema() {
        fn walk(json: &serde_json::Value, file: &str) {
            match json {
                serde_json::Value::Object(map) => {
                    if map.get("type").and_then(|t| t.as_str()) == Some("enum") {
                        assert!(
                            map.contains_key("default"),
                            "{file}: enum {:?} has no default",
                            map.get("name")
                        );
                    }
                    if map.get("type").and_then(|t| t.as_str()) == Some("record") {
                        assert!(
                            map.contains_key("doc"),
                            "{file}: record {:?} has no doc",
                            map.get("name")
                        );
                    }
                    for value in map.values() {
                        walk(value, file);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, file)),
                _ => {}
            }
        }
        for (name, text) in ALL_SCHEMAS {
            let json: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
            walk(&json, name);
            for field in json["fields"].as_array().expect("fields") {
                let fname = field["name"].as_str().unwrap_or_default();
                if fname.ends_with("_time") || fname.ends_with("_at") {
                    let logical = field["type"]["logicalType"]
                        .as_str()
                        .or_else(|| field["type"][1]["logicalType"].as_str());
                    assert_eq!(logical, Some("timestamp-millis"), "{name}.{fname}");
                }
            }
        }
    }

    #[test]
    fn platform_symbols_are_the_serde_names() {
        for platform in Platform::ALL.into_iter().chain([Platform::Unknown]) {
            let symbol = serde_json::to_value(platform).expect("serializes");
            let symbol = symbol.as_str().expect("a string");
            assert_eq!(Platform::from_symbol(symbol), Some(platform));
        }
        assert_eq!(Platform::from_symbol("MYSPACE"), None);
    }
}
