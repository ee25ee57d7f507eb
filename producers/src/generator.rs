//! Deterministic generator of realistic ad-platform traffic.
//!
//! For a given [`GeneratorConfig`] (seed included) the generator yields the same events in the same order every
//! time, so tests can assert on exact outcomes and a backtest can be reproduced. It is pure: no Kafka, no clock, no
//! I/O; the producer drains it.
//!
//! The model, briefly:
//! - **Campaigns** across Google Ads, Meta, TikTok and LinkedIn, each with a billing model (CPC on search-like
//!   platforms, CPM elsewhere), a base CTR, post-click conversion rate, order value, account time zone, daily
//!   budget sized around its expected spend (some over-, some under-pacing) and KPI targets.
//! - **Creatives**: three to six per campaign, each with its own CTR. A configurable share carry a *planted fatigue
//!   curve*: once the creative's exposure (average impressions per reached user) passes an onset level `f0`, its
//!   CTR decays as `ctr0 · exp(-λ (f − f0))`. The manifest records `f0`, `λ` and the moment onset happened.
//! - **Users** belong to campaign audiences that overlap, so a user meets several campaigns before converting.
//!   Audiences are sized so that creatives reach a realistic frequency (about six) by the end of the period,
//!   whatever the event count.
//! - **Traffic** follows a diurnal curve in each campaign's local time (peak in the evening, trough at night).
//! - **Journeys**: impression → (click with the creative's current CTR) → (conversion with the campaign's CVR
//!   after a delay); a small view-through conversion rate without a click.
//! - **Disorder**: a share of events is emitted out of order (seconds to two minutes behind) and a smaller share
//!   late (one to six hours behind, past any reasonable grace period). Their ids are in the manifest.
//!
//! Emission order is by *emit time*; every event keeps its true event time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use adstream_schemas::events::{
    AdClick, AdImpression, Campaign, CampaignStatus, CampaignTargets, Conversion, ConversionType,
    Creative, CreativeFormat, Device, Objective, Placement, Platform,
};
use chrono::{DateTime, Offset, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::Serialize;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const MICROS: f64 = 1_000_000.0;
/// Share of the impressions not clicked that lead to a (view-through) conversion.
const VIEW_THROUGH_RATE: f64 = 0.0003;
/// Creatives reach about this many impressions per reached user by the end of the period.
const TARGET_FREQUENCY: f64 = 6.0;
const TIME_ZONES: [&str; 8] = [
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Singapore",
];
const CURRENCIES: [&str; 9] = [
    "USD", "USD", "USD", "USD", "USD", "USD", "EUR", "EUR", "GBP",
];
const HEADLINE_WORDS: [&str; 12] = [
    "Save",
    "Today",
    "New",
    "Free shipping",
    "Limited",
    "Discover",
    "Upgrade",
    "Exclusive",
    "Now",
    "Deals",
    "Try",
    "Winter",
];

/// What to generate. Everything that changes the output is here, so equal configs give equal streams.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorConfig {
    /// Seed of the pseudo-random stream.
    pub seed: u64,
    /// Number of ad events and conversions to emit (campaign and creative records are extra).
    pub events: u64,
    /// Number of campaigns, spread round-robin over the four platforms.
    pub campaigns: usize,
    /// Start of the simulated period, UTC epoch millis.
    pub start_ms: i64,
    /// Length of the simulated period in days; traffic is spread over it.
    pub days: u32,
    /// Share of creatives with a planted fatigue curve.
    pub fatigued_creative_share: f64,
    /// Share of events emitted out of order (up to two minutes behind).
    pub out_of_order_share: f64,
    /// Share of events emitted late (one to six hours behind).
    pub late_share: f64,
    /// Keep the journeys of converting users in the manifest when `events` is at most this.
    pub journey_limit: u64,
    /// A CPA breach to plant on one campaign, if any.
    pub cpa_breach: Option<CpaBreach>,
}

/// A planted CPA breach: the campaign's CPA target is set to [`CPA_BREACH_TARGET_MARGIN`] times its expected CPA
/// (so that on ordinary days it stays well within it), and on one local day the campaign pays `cost_factor` times
/// its usual prices for the same impressions, clicks and conversions, so that day's CPA is `cost_factor /
/// CPA_BREACH_TARGET_MARGIN` times the target. Nothing else changes: the random stream is the same as without it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpaBreach {
    /// Index of the campaign (`<slug>-cmp-<index>`).
    pub campaign: usize,
    /// Day of the period, from 0, in the campaign's local time (its UTC offset at the start of the period).
    pub day: u32,
    /// Factor on the campaign's impression and click costs during that day.
    pub cost_factor: f64,
}

/// A `--cpa-breach` value that is not `CAMPAIGN:DAY:FACTOR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CPA breach '{text}': {reason} (expected CAMPAIGN:DAY:FACTOR, e.g. 3:2:4)")]
pub struct CpaBreachError {
    text: String,
    reason: &'static str,
}

impl std::str::FromStr for CpaBreach {
    type Err = CpaBreachError;

    /// `CAMPAIGN:DAY:FACTOR`: the campaign's index, the day of the period (both from 0) and the cost factor.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| CpaBreachError {
            text: text.to_owned(),
            reason,
        };
        let mut parts = text.split(':').map(str::trim);
        let (Some(campaign), Some(day), Some(factor), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(error("three parts are needed"));
        };
        let breach = CpaBreach {
            campaign: campaign
                .parse()
                .map_err(|_| error("the campaign is not an index"))?,
            day: day.parse().map_err(|_| error("the day is not a number"))?,
            cost_factor: factor
                .parse()
                .map_err(|_| error("the factor is not a number"))?,
        };
        if !(breach.cost_factor.is_finite() && breach.cost_factor > 0.0) {
            return Err(error("the factor must be positive"));
        }
        Ok(breach)
    }
}

/// How far above its expected CPA a campaign with a planted [`CpaBreach`] gets its target: three times. The
/// expectation leaves out that conversions come hours after their clicks and views, so a day credits about two
/// thirds of the conversions it expects (measured in `tests/alert_rules.rs`): an ordinary day's CPA lands near half
/// the target, and seldom comes near it even early in a day, with few conversions.
pub const CPA_BREACH_TARGET_MARGIN: f64 = 3.0;

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            events: 100_000,
            campaigns: 24,
            // 2026-11-01T00:00:00Z
            start_ms: 1_793_491_200_000,
            days: 7,
            fatigued_creative_share: 0.2,
            out_of_order_share: 0.01,
            late_share: 0.001,
            journey_limit: 2_000_000,
            cpa_breach: None,
        }
    }
}

/// One generated record with the correlation id that ties it to its causal chain (the impression that started
/// it, or the reference record itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The record.
    pub event: GeneratedEvent,
    /// Correlation id: the originating impression's id for impressions, clicks and conversions.
    pub correlation_id: String,
}

/// The kinds of record the generator produces.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneratedEvent {
    /// Campaign settings (reference data, compacted topic).
    Campaign(Campaign),
    /// Creative (reference data, compacted topic).
    Creative(Creative),
    /// An impression.
    Impression(AdImpression),
    /// A click.
    Click(AdClick),
    /// A conversion.
    Conversion(Conversion),
}

/// Ground truth written next to the generated data for later tests and evaluations.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The configuration that produced the data.
    pub config: GeneratorConfig,
    /// Emitted counts per kind.
    pub counts: Counts,
    /// Event time of the first and last emitted ad event.
    pub first_event_time_ms: Option<i64>,
    /// See `first_event_time_ms`.
    pub last_event_time_ms: Option<i64>,
    /// Ids of events emitted out of order (seconds behind).
    pub out_of_order_ids: Vec<String>,
    /// Ids of events emitted late (hours behind).
    pub late_ids: Vec<String>,
    /// Campaign parameters behind the data.
    pub campaigns: Vec<CampaignTruth>,
    /// Creative parameters, including planted fatigue.
    pub creatives: Vec<CreativeTruth>,
    /// Journeys of every user who converted, or `None` when `events` exceeds `journey_limit`.
    pub journeys: Option<Vec<Journey>>,
}

/// Emitted record counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Campaign records.
    pub campaigns: u64,
    /// Creative records.
    pub creatives: u64,
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Conversions.
    pub conversions: u64,
}

/// How the generator modelled one campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignTruth {
    /// Campaign id.
    pub campaign_id: String,
    /// Platform.
    pub platform: Platform,
    /// `CPC` or `CPM`.
    pub billing: &'static str,
    /// Base click-through rate.
    pub base_ctr: f64,
    /// Post-click conversion rate.
    pub cvr: f64,
    /// Expected spend per day in micros, from which the daily budget was drawn.
    pub expected_daily_spend_micros: i64,
    /// Number of users in the campaign's audience.
    pub audience_size: u64,
}

/// How the generator modelled one creative.
#[derive(Debug, Clone, Serialize)]
pub struct CreativeTruth {
    /// Creative id.
    pub creative_id: String,
    /// Campaign id.
    pub campaign_id: String,
    /// CTR before any fatigue.
    pub baseline_ctr: f64,
    /// Whether a fatigue curve was planted.
    pub fatigue_planted: bool,
    /// Exposure (impressions per reached user) at which decay starts.
    pub fatigue_onset_frequency: Option<f64>,
    /// Decay rate per unit of exposure.
    pub fatigue_lambda: Option<f64>,
    /// Event time at which exposure crossed the onset level; `None` if it never did (then it did not fatigue).
    pub fatigue_onset_ms: Option<i64>,
    /// Emitted impressions.
    pub impressions: u64,
    /// Emitted clicks.
    pub clicks: u64,
    /// Distinct users reached by emitted and pending impressions.
    pub reach: u64,
}

/// Touches and conversions per numeric user id, in emission order; kept only for runs small enough to list journeys.
type JourneyLog = BTreeMap<u64, (Vec<Touch>, Vec<JourneyConversion>)>;

/// A converting user's touches and conversions, in event-time order.
#[derive(Debug, Clone, Serialize)]
pub struct Journey {
    /// User id.
    pub user_id: String,
    /// Impressions and clicks.
    pub touches: Vec<Touch>,
    /// Conversions.
    pub conversions: Vec<JourneyConversion>,
}

/// One ad touch of a user.
#[derive(Debug, Clone, Serialize)]
pub struct Touch {
    /// `impression` or `click`.
    pub kind: &'static str,
    /// Event id.
    pub event_id: String,
    /// Event time.
    pub time_ms: i64,
    /// Campaign.
    pub campaign_id: String,
    /// Creative.
    pub creative_id: String,
}

/// One conversion of a user.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyConversion {
    /// Conversion id.
    pub conversion_id: String,
    /// Event time.
    pub time_ms: i64,
    /// Value in micros.
    pub value_micros: i64,
    /// Id of the impression whose click or view caused it.
    pub caused_by: String,
}

struct CampaignModel {
    record: Campaign,
    truth: CampaignTruth,
    cpm_micros: f64,
    cpc_micros: f64,
    view_through_rate: f64,
    median_order_value_micros: f64,
    tz_offset_hours: i32,
    share: f64,
    audience_start: u64,
    creatives: Vec<usize>,
}

struct CreativeModel {
    record: Creative,
    truth: CreativeTruth,
    served: u64,
    seen: Vec<u64>,
    audience_size: u64,
}

impl CreativeModel {
    /// Records that `user_offset` (index within the campaign audience) saw the creative; returns the exposure.
    fn expose(&mut self, user_offset: u64) -> f64 {
        let (word, bit) = ((user_offset / 64) as usize, user_offset % 64);
        if self.seen[word] & (1 << bit) == 0 {
            self.seen[word] |= 1 << bit;
            self.truth.reach += 1;
        }
        self.served += 1;
        self.served as f64 / self.truth.reach.max(1) as f64
    }

    fn current_ctr(&self, exposure: f64) -> f64 {
        match (
            self.truth.fatigue_onset_frequency,
            self.truth.fatigue_lambda,
        ) {
            (Some(f0), Some(lambda)) if exposure > f0 => {
                self.truth.baseline_ctr * (-lambda * (exposure - f0)).exp()
            }
            _ => self.truth.baseline_ctr,
        }
    }
}

struct Pending {
    emit_ms: i64,
    seq: u64,
    event: GeneratedEvent,
    correlation_id: String,
    disorder: Disorder,
    /// Index of the creative for impressions and clicks, to keep per-creative counts without a lookup.
    creative: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Disorder {
    InOrder,
    OutOfOrder,
    Late,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.emit_ms, self.seq) == (other.emit_ms, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.emit_ms, self.seq).cmp(&(other.emit_ms, other.seq))
    }
}

/// The generator: first yields every campaign and creative record, then ad events and conversions in emit order
/// until `events` have been yielded.
pub struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    /// Users are `u-00000000` up to this count; campaign audiences are wrapping ranges of it.
    user_pool: u64,
    campaigns: Vec<CampaignModel>,
    creatives: Vec<CreativeModel>,
    reference: std::vec::IntoIter<Generated>,
    /// Cumulative campaign weights per UTC hour of the period (diurnal curve in local time).
    hourly_weights: Vec<(f64, Vec<f64>)>,
    /// Impressions per millisecond per unit of weight.
    rate_per_weight_ms: f64,
    next_impression_ms: f64,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    emitted: u64,
    counts: Counts,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    out_of_order_ids: Vec<String>,
    late_ids: Vec<String>,
    touches: Option<JourneyLog>,
}

impl Generator {
    /// Builds the campaign and creative models for `config`. Deterministic in `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let campaign_count = config.campaigns.max(1);
        // Rough share of events that are impressions; used only to size budgets and audiences.
        let expected_impressions = config.events as f64 * 0.97;
        let days = f64::from(config.days.max(1));
        let mut campaigns = Vec::with_capacity(campaign_count);
        let mut creatives = Vec::new();
        let mut shares: Vec<f64> = (0..campaign_count)
            .map(|_| lognormal(&mut rng, 0.5))
            .collect();
        let total_share: f64 = shares.iter().sum();
        shares.iter_mut().for_each(|s| *s /= total_share);

        let mut audience_sizes = Vec::with_capacity(campaign_count);
        for (index, share) in shares.iter().copied().enumerate() {
            let platform = Platform::ALL[index % Platform::ALL.len()];
            let creative_count = rng.gen_range(3..=6usize);
            let campaign_impressions = expected_impressions * share;
            let audience =
                ((campaign_impressions / creative_count as f64 / TARGET_FREQUENCY).ceil() as u64)
                    .max(20);
            audience_sizes.push((platform, creative_count, audience));
        }
        // Campaign audiences are ranges of one user pool; the pool is smaller than their sum, so they overlap.
        let pool: u64 =
            ((audience_sizes.iter().map(|a| a.2).sum::<u64>() as f64) * 0.6).ceil() as u64;
        let pool = pool.max(audience_sizes.iter().map(|a| a.2).max().unwrap_or(1));

        for (index, (platform, creative_count, audience)) in audience_sizes.into_iter().enumerate()
        {
            let share = shares[index];
            let slug = platform.slug();
            let campaign_id = format!("{slug}-cmp-{index:04}");
            let (billing, base_ctr_median, cpm_usd, cpc_usd, objective) = match platform {
                Platform::GoogleAds => (
                    "CPC",
                    0.035,
                    0.0,
                    rng.gen_range(0.8..3.0),
                    Objective::Conversions,
                ),
                Platform::Linkedin => {
                    ("CPC", 0.006, 0.0, rng.gen_range(4.0..8.0), Objective::Leads)
                }
                Platform::Meta => (
                    "CPM",
                    0.012,
                    rng.gen_range(7.0..13.0),
                    0.0,
                    Objective::Conversions,
                ),
                _ => (
                    "CPM",
                    0.009,
                    rng.gen_range(5.0..10.0),
                    0.0,
                    Objective::AppInstalls,
                ),
            };
            let base_ctr = (base_ctr_median * lognormal(&mut rng, 0.3)).min(0.2);
            let cvr = rng.gen_range(0.02..0.06);
            let order_value_usd = rng.gen_range(30.0..140.0);
            let spend_per_impression = cpm_usd / 1000.0 + base_ctr * cpc_usd;
            let expected_daily_spend = expected_impressions * share / days * spend_per_impression;
            let daily_budget = (expected_daily_spend * rng.gen_range(0.8..1.4) * MICROS) as i64;
            let lifetime_budget = rng
                .gen_bool(0.3)
                .then(|| (expected_daily_spend * days * rng.gen_range(0.8..1.15) * MICROS) as i64);
            let time_zone = TIME_ZONES[rng.gen_range(0..TIME_ZONES.len())];
            let currency = CURRENCIES[rng.gen_range(0..CURRENCIES.len())];
            let tz_offset_hours = utc_offset_hours(time_zone, config.start_ms);
            let target_cpa_usd = match config.cpa_breach {
                Some(breach) if breach.campaign == index => {
                    expected_cpa_usd(spend_per_impression, base_ctr, cvr) * CPA_BREACH_TARGET_MARGIN
                }
                _ => order_value_usd / 2.5,
            };
            let targets = CampaignTargets {
                min_ctr: Some(round4(base_ctr * 0.7)),
                max_cpc_micros: (billing == "CPC").then_some((cpc_usd * 1.3 * MICROS) as i64),
                target_cpa_micros: Some((target_cpa_usd * MICROS) as i64),
                min_roas: Some(round4(rng.gen_range(1.5..3.0))),
                target_cpm_micros: (billing == "CPM").then_some((cpm_usd * 1.3 * MICROS) as i64),
            };
            let record = Campaign {
                campaign_id: campaign_id.clone(),
                platform,
                account_id: format!("{slug}-acct-{:02}", index / 8),
                name: format!(
                    "{} {} #{index}",
                    platform_name(platform),
                    objective_name(objective)
                ),
                objective,
                status: CampaignStatus::Active,
                currency: currency.to_string(),
                daily_budget_micros: Some(daily_budget),
                lifetime_budget_micros: lifetime_budget,
                start_time: config.start_ms - 30 * DAY_MS,
                end_time: rng
                    .gen_bool(0.5)
                    .then_some(config.start_ms + (i64::from(config.days) + 30) * DAY_MS),
                time_zone: time_zone.to_string(),
                targets,
                updated_at: config.start_ms,
            };
            let mut creative_indices = Vec::with_capacity(creative_count);
            for j in 0..creative_count {
                let creative_id = format!("{campaign_id}-cr-{j}");
                let planted = rng.gen_bool(config.fatigued_creative_share.clamp(0.0, 1.0));
                let baseline_ctr = (base_ctr * lognormal(&mut rng, 0.15)).min(0.25);
                let (onset, lambda) = if planted {
                    (
                        Some(round4(rng.gen_range(1.5..3.0))),
                        Some(round4(rng.gen_range(0.25..0.5))),
                    )
                } else {
                    (None, None)
                };
                creative_indices.push(creatives.len());
                creatives.push(CreativeModel {
                    record: Creative {
                        creative_id: creative_id.clone(),
                        campaign_id: campaign_id.clone(),
                        ad_group_id: format!("{campaign_id}-ag-{}", j % 2),
                        platform,
                        format: [
                            CreativeFormat::Image,
                            CreativeFormat::Video,
                            CreativeFormat::Carousel,
                        ][rng.gen_range(0..3)],
                        headline: format!(
                            "{} {}",
                            HEADLINE_WORDS[rng.gen_range(0..HEADLINE_WORDS.len())],
                            HEADLINE_WORDS[rng.gen_range(0..HEADLINE_WORDS.len())]
                        ),
                        created_at: config.start_ms - rng.gen_range(1..20) * DAY_MS,
                    },
                    truth: CreativeTruth {
                        creative_id,
                        campaign_id: campaign_id.clone(),
                        baseline_ctr,
                        fatigue_planted: planted,
                        fatigue_onset_frequency: onset,
                        fatigue_lambda: lambda,
                        fatigue_onset_ms: None,
                        impressions: 0,
                        clicks: 0,
                        reach: 0,
                    },
                    served: 0,
                    seen: vec![0; audience.div_ceil(64) as usize],
                    audience_size: audience,
                });
            }
            campaigns.push(CampaignModel {
                truth: CampaignTruth {
                    campaign_id,
                    platform,
                    billing,
                    base_ctr,
                    cvr,
                    expected_daily_spend_micros: (expected_daily_spend * MICROS) as i64,
                    audience_size: audience,
                },
                record,
                cpm_micros: cpm_usd * MICROS,
                cpc_micros: cpc_usd * MICROS,
                view_through_rate: VIEW_THROUGH_RATE,
                median_order_value_micros: order_value_usd * MICROS,
                tz_offset_hours,
                share,
                audience_start: rng.gen_range(0..pool),
                creatives: creative_indices,
            });
        }

        let hours = (config.days.max(1) * 24) as usize;
        let hourly_weights: Vec<(f64, Vec<f64>)> = (0..hours)
            .map(|hour| {
                let mut cumulative = Vec::with_capacity(campaigns.len());
                let mut total = 0.0;
                for campaign in &campaigns {
                    let local_hour =
                        (hour as i64 + i64::from(campaign.tz_offset_hours)).rem_euclid(24) as f64;
                    total += campaign.share * diurnal(local_hour);
                    cumulative.push(total);
                }
                (total, cumulative)
            })
            .collect();
        let weight_ms: f64 = hourly_weights
            .iter()
            .map(|(total, _)| total * HOUR_MS as f64)
            .sum();
        let rate_per_weight_ms = expected_impressions.max(1.0) / weight_ms;

        let mut reference = Vec::with_capacity(campaigns.len() + creatives.len());
        for campaign in &campaigns {
            reference.push(Generated {
                correlation_id: campaign.record.campaign_id.clone(),
                event: GeneratedEvent::Campaign(campaign.record.clone()),
            });
        }
        for creative in &creatives {
            reference.push(Generated {
                correlation_id: creative.record.creative_id.clone(),
                event: GeneratedEvent::Creative(creative.record.clone()),
            });
        }
        let touches = (config.events <= config.journey_limit).then(BTreeMap::new);
        Self {
            next_impression_ms: config.start_ms as f64,
            user_pool: pool,
            config,
            rng,
            campaigns,
            creatives,
            reference: reference.into_iter(),
            hourly_weights,
            rate_per_weight_ms,
            queue: BinaryHeap::new(),
            seq: 0,
            emitted: 0,
            counts: Counts::default(),
            first_ms: None,
            last_ms: None,
            out_of_order_ids: Vec::new(),
            late_ids: Vec::new(),
            touches,
        }
    }

    /// Ground truth for everything emitted so far; call after draining the generator.
    pub fn manifest(&self) -> Manifest {
        let journeys = self.touches.as_ref().map(|touches| {
            touches
                .iter()
                .filter(|(_, (_, conversions))| !conversions.is_empty())
                .map(|(user, (touches, conversions))| Journey {
                    user_id: user_id(*user),
                    touches: touches.clone(),
                    conversions: conversions.clone(),
                })
                .collect()
        });
        Manifest {
            config: self.config.clone(),
            counts: self.counts.clone(),
            first_event_time_ms: self.first_ms,
            last_event_time_ms: self.last_ms,
            out_of_order_ids: self.out_of_order_ids.clone(),
            late_ids: self.late_ids.clone(),
            campaigns: self.campaigns.iter().map(|c| c.truth.clone()).collect(),
            creatives: self.creatives.iter().map(|c| c.truth.clone()).collect(),
            journeys,
        }
    }

    /// Counts emitted so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn schedule(
        &mut self,
        event_ms: i64,
        event: GeneratedEvent,
        correlation_id: String,
        creative: Option<usize>,
    ) {
        let roll: f64 = self.rng.gen();
        let (disorder, emit_ms) = if roll < self.config.late_share {
            (
                Disorder::Late,
                event_ms + self.rng.gen_range(HOUR_MS..6 * HOUR_MS),
            )
        } else if roll < self.config.late_share + self.config.out_of_order_share {
            (
                Disorder::OutOfOrder,
                event_ms + self.rng.gen_range(1_000..120_000),
            )
        } else {
            (Disorder::InOrder, event_ms)
        };
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            emit_ms,
            seq: self.seq,
            event,
            correlation_id,
            disorder,
            creative,
        }));
    }

    /// The factor on the costs of campaign `campaign_index` at `event_ms`: the planted breach's on its local day,
    /// 1 otherwise.
    fn cost_factor(&self, campaign_index: usize, event_ms: i64) -> f64 {
        let Some(breach) = self.config.cpa_breach else {
            return 1.0;
        };
        let offset_ms = i64::from(self.campaigns[campaign_index].tz_offset_hours) * HOUR_MS;
        let local_day = (event_ms + offset_ms - self.config.start_ms).div_euclid(DAY_MS);
        if breach.campaign == campaign_index && local_day == i64::from(breach.day) {
            breach.cost_factor
        } else {
            1.0
        }
    }

    /// Draws the next impression (and schedules its click and conversion, if any).
    fn generate_impression(&mut self) {
        let now = self.next_impression_ms;
        let hour = (((now as i64) - self.config.start_ms) / HOUR_MS).max(0) as usize;
        let (total, cumulative) = &self.hourly_weights[hour % self.hourly_weights.len()];
        let (total, pick) = (*total, self.rng.gen::<f64>() * *total);
        let campaign_index = cumulative
            .partition_point(|w| *w < pick)
            .min(self.campaigns.len() - 1);
        self.next_impression_ms += exp1(&mut self.rng) / (self.rate_per_weight_ms * total);
        let event_ms = now as i64;

        let campaign = &self.campaigns[campaign_index];
        let creative_index = campaign.creatives[self.rng.gen_range(0..campaign.creatives.len())];
        let audience = self.creatives[creative_index].audience_size;
        let user_offset = self.rng.gen_range(0..audience);
        let user = (campaign.audience_start + user_offset) % self.user_pool;
        let exposure = self.creatives[creative_index].expose(user_offset);
        let ctr = {
            let creative = &mut self.creatives[creative_index];
            if let (Some(f0), None) = (
                creative.truth.fatigue_onset_frequency,
                creative.truth.fatigue_onset_ms,
            ) {
                if exposure >= f0 {
                    creative.truth.fatigue_onset_ms = Some(event_ms);
                }
            }
            creative.current_ctr(exposure)
        };
        let campaign = &self.campaigns[campaign_index];
        let cost_factor = self.cost_factor(campaign_index, event_ms);
        let creative = &self.creatives[creative_index].record;
        let noise = lognormal(&mut self.rng, 0.25);
        self.seq += 1;
        let impression_id = format!("imp-{:x}-{}", self.config.seed, self.seq);
        let device = [
            Device::Mobile,
            Device::Mobile,
            Device::Mobile,
            Device::Desktop,
            Device::Tablet,
        ][self.rng.gen_range(0..5)];
        let impression = AdImpression {
            event_id: impression_id.clone(),
            event_time: event_ms,
            platform: campaign.record.platform,
            account_id: campaign.record.account_id.clone(),
            campaign_id: campaign.record.campaign_id.clone(),
            ad_group_id: creative.ad_group_id.clone(),
            creative_id: creative.creative_id.clone(),
            user_id: Some(user_id(user)),
            placement: placement(campaign.record.platform),
            device,
            cost_micros: (campaign.cpm_micros / 1000.0 * noise * cost_factor) as i64,
            currency: campaign.record.currency.clone(),
        };
        let clicked = self.rng.gen_bool(ctr.clamp(0.0, 1.0));
        let view_through = !clicked && self.rng.gen_bool(campaign.view_through_rate);
        let mut click = None;
        let mut conversion_at = None;
        if clicked {
            let delay = (exp1(&mut self.rng) * 20_000.0) as i64 + 500;
            let cost_noise = lognormal(&mut self.rng, 0.3);
            self.seq += 1;
            click = Some(AdClick {
                event_id: format!("clk-{:x}-{}", self.config.seed, self.seq),
                event_time: event_ms + delay,
                platform: impression.platform,
                account_id: impression.account_id.clone(),
                campaign_id: impression.campaign_id.clone(),
                ad_group_id: impression.ad_group_id.clone(),
                creative_id: impression.creative_id.clone(),
                user_id: impression.user_id.clone(),
                impression_id: Some(impression_id.clone()),
                device,
                cost_micros: (campaign.cpc_micros * cost_noise * cost_factor) as i64,
                currency: impression.currency.clone(),
            });
            if self.rng.gen_bool(campaign.truth.cvr) {
                conversion_at = Some(
                    event_ms + delay + (exp1(&mut self.rng) * 3.0 * HOUR_MS as f64) as i64 + 1_000,
                );
            }
        } else if view_through {
            conversion_at =
                Some(event_ms + (exp1(&mut self.rng) * 12.0 * HOUR_MS as f64) as i64 + 60_000);
        }
        let conversion = conversion_at.map(|at| {
            let value_micros =
                (campaign.median_order_value_micros * lognormal(&mut self.rng, 0.5)) as i64;
            Conversion {
                conversion_id: format!("cv-{:x}-{}", self.config.seed, self.seq + 1),
                event_time: at,
                user_id: user_id(user),
                conversion_type: ConversionType::Purchase,
                value_micros,
                currency: campaign.record.currency.clone(),
            }
        });
        if conversion.is_some() {
            self.seq += 1;
        }
        self.schedule(
            event_ms,
            GeneratedEvent::Impression(impression),
            impression_id.clone(),
            Some(creative_index),
        );
        if let Some(click) = click {
            self.schedule(
                click.event_time,
                GeneratedEvent::Click(click),
                impression_id.clone(),
                Some(creative_index),
            );
        }
        if let Some(conversion) = conversion {
            self.schedule(
                conversion.event_time,
                GeneratedEvent::Conversion(conversion),
                impression_id,
                None,
            );
        }
    }

    fn record_emitted(&mut self, pending: &Pending) {
        let (id, time, user, touch) = match &pending.event {
            GeneratedEvent::Impression(e) => {
                self.counts.impressions += 1;
                if let Some(c) = pending.creative.and_then(|i| self.creatives.get_mut(i)) {
                    c.truth.impressions += 1;
                }
                (
                    &e.event_id,
                    e.event_time,
                    e.user_id.as_deref(),
                    Some(("impression", &e.campaign_id, &e.creative_id)),
                )
            }
            GeneratedEvent::Click(e) => {
                self.counts.clicks += 1;
                if let Some(c) = pending.creative.and_then(|i| self.creatives.get_mut(i)) {
                    c.truth.clicks += 1;
                }
                (
                    &e.event_id,
                    e.event_time,
                    e.user_id.as_deref(),
                    Some(("click", &e.campaign_id, &e.creative_id)),
                )
            }
            GeneratedEvent::Conversion(e) => {
                self.counts.conversions += 1;
                (
                    &e.conversion_id,
                    e.event_time,
                    Some(e.user_id.as_str()),
                    None,
                )
            }
            GeneratedEvent::Campaign(_) | GeneratedEvent::Creative(_) => return,
        };
        match pending.disorder {
            Disorder::InOrder => {}
            Disorder::OutOfOrder => self.out_of_order_ids.push(id.clone()),
            Disorder::Late => self.late_ids.push(id.clone()),
        }
        self.first_ms = Some(self.first_ms.map_or(time, |t| t.min(time)));
        self.last_ms = Some(self.last_ms.map_or(time, |t| t.max(time)));
        let (Some(touches), Some(user)) = (self.touches.as_mut(), user.and_then(parse_user_id))
        else {
            return;
        };
        let entry = touches.entry(user).or_default();
        match (&pending.event, touch) {
            (GeneratedEvent::Conversion(c), _) => entry.1.push(JourneyConversion {
                conversion_id: c.conversion_id.clone(),
                time_ms: c.event_time,
                value_micros: c.value_micros,
                caused_by: pending.correlation_id.clone(),
            }),
            (_, Some((kind, campaign_id, creative_id))) => entry.0.push(Touch {
                kind,
                event_id: id.clone(),
                time_ms: time,
                campaign_id: campaign_id.clone(),
                creative_id: creative_id.clone(),
            }),
            _ => {}
        }
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if let Some(reference) = self.reference.next() {
            match reference.event {
                GeneratedEvent::Campaign(_) => self.counts.campaigns += 1,
                _ => self.counts.creatives += 1,
            }
            return Some(reference);
        }
        if self.emitted >= self.config.events {
            return None;
        }
        loop {
            let due = self
                .queue
                .peek()
                .map(|Reverse(p)| p.emit_ms as f64 <= self.next_impression_ms);
            if due == Some(true) {
                let Reverse(pending) = self.queue.pop()?;
                self.record_emitted(&pending);
                self.emitted += 1;
                return Some(Generated {
                    event: pending.event,
                    correlation_id: pending.correlation_id,
                });
            }
            self.generate_impression();
        }
    }
}

/// Local-time traffic curve: peak around 20:00, trough around 04:00, never zero.
fn diurnal(local_hour: f64) -> f64 {
    0.6 + 0.4 * ((local_hour - 20.0) * std::f64::consts::TAU / 24.0).cos()
}

fn utc_offset_hours(time_zone: &str, at_ms: i64) -> i32 {
    let Ok(tz) = time_zone.parse::<chrono_tz::Tz>() else {
        return 0;
    };
    let Some(utc) = DateTime::<Utc>::from_timestamp_millis(at_ms) else {
        return 0;
    };
    tz.from_utc_datetime(&utc.naive_utc())
        .offset()
        .fix()
        .local_minus_utc()
        / 3600
}

fn user_id(index: u64) -> String {
    format!("u-{index:08}")
}

fn parse_user_id(id: &str) -> Option<u64> {
    id.strip_prefix("u-")?.parse().ok()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn placement(platform: Platform) -> Placement {
    match platform {
        Platform::GoogleAds => Placement::Search,
        Platform::Meta => Placement::Feed,
        Platform::Tiktok => Placement::Video,
        _ => Placement::Feed,
    }
}

fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::GoogleAds => "Google Ads",
        Platform::Meta => "Meta",
        Platform::Tiktok => "TikTok",
        Platform::Linkedin => "LinkedIn",
        Platform::Unknown => "Unknown",
    }
}

fn objective_name(objective: Objective) -> &'static str {
    match objective {
        Objective::Conversions => "conversions",
        Objective::Leads => "leads",
        Objective::AppInstalls => "app installs",
        _ => "reach",
    }
}

/// A standard exponential sample (mean 1).
fn exp1<R: Rng>(rng: &mut R) -> f64 {
    Exp1.sample(rng)
}

/// A log-normal multiplier with median 1: `exp(sigma · z)`, `z` standard normal.
/// The CPA a campaign can expect: its spend per impression over its conversions per impression, from clicks
/// (`ctr × cvr`) and from views ([`VIEW_THROUGH_RATE`] of the impressions not clicked).
fn expected_cpa_usd(spend_per_impression: f64, ctr: f64, cvr: f64) -> f64 {
    spend_per_impression / (ctr * cvr + (1.0 - ctr) * VIEW_THROUGH_RATE)
}

fn lognormal<R: Rng>(rng: &mut R, sigma: f64) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    (sigma * z).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn config(seed: u64, events: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            events,
            ..GeneratorConfig::default()
        }
    }

    fn id_of(event: &GeneratedEvent) -> &str {
        match event {
            GeneratedEvent::Campaign(c) => &c.campaign_id,
            GeneratedEvent::Creative(c) => &c.creative_id,
            GeneratedEvent::Impression(e) => &e.event_id,
            GeneratedEvent::Click(e) => &e.event_id,
            GeneratedEvent::Conversion(e) => &e.conversion_id,
        }
    }

    /// The cost of an impression or click, its campaign and event time; `None` for other records.
    fn cost(event: &GeneratedEvent) -> Option<(&str, i64, i64)> {
        match event {
            GeneratedEvent::Impression(e) => Some((&e.campaign_id, e.event_time, e.cost_micros)),
            GeneratedEvent::Click(e) => Some((&e.campaign_id, e.event_time, e.cost_micros)),
            _ => None,
        }
    }

    #[test]
    fn a_cpa_breach_reads_from_its_flag() {
        assert_eq!(
            "3:2:4".parse::<CpaBreach>(),
            Ok(CpaBreach {
                campaign: 3,
                day: 2,
                cost_factor: 4.0
            })
        );
        for bad in [
            "3:2", "a:2:4", "3:2:0", "3:2:-1", "3:2:4:5", "3:x:4", "3:2:inf",
        ] {
            let error = bad.parse::<CpaBreach>().expect_err(bad).to_string();
            assert!(error.contains("expected CAMPAIGN:DAY:FACTOR"), "{error}");
        }
    }

    #[test]
    fn a_planted_cpa_breach_raises_one_campaigns_costs_on_one_local_day_only() {
        let plain = config(5, 30_000);
        let breach = CpaBreach {
            campaign: 1,
            day: 2,
            cost_factor: 4.0,
        };
        let planted = GeneratorConfig {
            cpa_breach: Some(breach),
            ..plain.clone()
        };
        let a: Vec<Generated> = Generator::new(plain).collect();
        let b: Vec<Generated> = Generator::new(planted.clone()).collect();
        assert_eq!(a.len(), b.len(), "the same stream, apart from costs");
        let model = Generator::new(planted);
        let target = &model.campaigns[1];
        let offset = i64::from(target.tz_offset_hours) * HOUR_MS;
        let breach_day = model.config.start_ms + 2 * DAY_MS - offset;
        let (mut raised, mut kept) = (0, 0);
        for (x, y) in a.iter().zip(&b) {
            match (&x.event, &y.event) {
                (GeneratedEvent::Campaign(x), GeneratedEvent::Campaign(y)) => {
                    assert_eq!(x.campaign_id, y.campaign_id);
                    if x.campaign_id == target.record.campaign_id {
                        // The target moves to a multiple of the expected CPA.
                        assert_ne!(x.targets.target_cpa_micros, y.targets.target_cpa_micros);
                    } else {
                        assert_eq!(x, y);
                    }
                    continue;
                }
                _ => assert_eq!(id_of(&x.event), id_of(&y.event)),
            }
            let (Some((campaign, time, before)), Some((_, _, after))) =
                (cost(&x.event), cost(&y.event))
            else {
                assert_eq!(x, y);
                continue;
            };
            // A click's cost follows its impression's day; a click seconds after midnight is left out.
            let in_day = (breach_day + 60_000..breach_day + DAY_MS - 60_000).contains(&time);
            let outside = !(breach_day - 60_000..breach_day + DAY_MS + 60_000).contains(&time);
            if campaign == target.record.campaign_id && in_day {
                assert!(
                    (after - 4 * before).abs() <= 4,
                    "{before} -> {after} at {time}"
                );
                raised += 1;
            } else if campaign != target.record.campaign_id || outside {
                assert_eq!(before, after);
                kept += 1;
            }
        }
        assert!(
            raised > 100 && kept > 10_000,
            "{raised} raised, {kept} kept"
        );
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<Generated> = Generator::new(config(7, 5_000)).collect();
        let b: Vec<Generated> = Generator::new(config(7, 5_000)).collect();
        let c: Vec<Generated> = Generator::new(config(8, 5_000)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn emits_exactly_the_requested_events_with_unique_ids_and_reference_data_first() {
        let mut generator = Generator::new(config(3, 20_000));
        let all: Vec<Generated> = generator.by_ref().collect();
        let counts = generator.counts().clone();
        assert_eq!(
            counts.impressions + counts.clicks + counts.conversions,
            20_000
        );
        assert_eq!(
            all.len() as u64,
            20_000 + counts.campaigns + counts.creatives
        );
        assert_eq!(counts.campaigns, 24);
        let reference = (counts.campaigns + counts.creatives) as usize;
        assert!(all[..reference].iter().all(|g| matches!(
            g.event,
            GeneratedEvent::Campaign(_) | GeneratedEvent::Creative(_)
        )));
        let ids: HashSet<&str> = all.iter().map(|g| id_of(&g.event)).collect();
        assert_eq!(ids.len(), all.len(), "ids are unique");
        let platforms: HashSet<Platform> = all
            .iter()
            .filter_map(|g| match &g.event {
                GeneratedEvent::Campaign(c) => Some(c.platform),
                _ => None,
            })
            .collect();
        assert_eq!(platforms.len(), 4);
    }

    #[test]
    fn clicks_and_conversions_follow_their_impression_and_share_its_correlation_id() {
        let all: Vec<Generated> = Generator::new(config(11, 50_000)).collect();
        let impressions: std::collections::HashMap<&str, &AdImpression> = all
            .iter()
            .filter_map(|g| match &g.event {
                GeneratedEvent::Impression(i) => Some((i.event_id.as_str(), i)),
                _ => None,
            })
            .collect();
        let mut clicks = 0;
        for g in &all {
            if let GeneratedEvent::Click(click) = &g.event {
                let Some(imp) = click
                    .impression_id
                    .as_deref()
                    .and_then(|id| impressions.get(id))
                else {
                    continue;
                };
                assert!(click.event_time > imp.event_time);
                assert_eq!(click.campaign_id, imp.campaign_id);
                assert_eq!(g.correlation_id, imp.event_id);
                clicks += 1;
            }
        }
        assert!(clicks > 100, "{clicks}");
    }

    #[test]
    fn ctr_and_disorder_shares_are_realistic() {
        let mut generator = Generator::new(config(5, 200_000));
        generator.by_ref().for_each(drop);
        let m = generator.manifest();
        let ctr = m.counts.clicks as f64 / m.counts.impressions as f64;
        assert!((0.003..0.05).contains(&ctr), "overall CTR {ctr}");
        let conversions_per_click = m.counts.conversions as f64 / m.counts.clicks as f64;
        assert!(
            (0.01..0.15).contains(&conversions_per_click),
            "{conversions_per_click}"
        );
        let ooo = m.out_of_order_ids.len() as f64 / 200_000.0;
        let late = m.late_ids.len() as f64 / 200_000.0;
        assert!((0.007..0.013).contains(&ooo), "out-of-order share {ooo}");
        assert!((0.0005..0.0016).contains(&late), "late share {late}");
        let journeys = m.journeys.expect("journeys kept under the limit");
        assert!(!journeys.is_empty());
        let multi_campaign = journeys
            .iter()
            .filter(|j| {
                j.touches
                    .iter()
                    .map(|t| &t.campaign_id)
                    .collect::<HashSet<_>>()
                    .len()
                    > 1
            })
            .count();
        assert!(
            multi_campaign * 4 > journeys.len(),
            "most converting users meet several campaigns"
        );
    }

    /// The planted curve is visible in the data: a fatigued creative's CTR after onset is well below its CTR
    /// before onset, while healthy creatives keep theirs.
    #[test]
    fn planted_fatigue_shows_in_emitted_ctr() {
        let mut generator = Generator::new(config(21, 300_000));
        let all: Vec<Generated> = generator.by_ref().collect();
        let manifest = generator.manifest();
        let fatigued: Vec<&CreativeTruth> = manifest
            .creatives
            .iter()
            .filter(|c| c.fatigue_onset_ms.is_some())
            .collect();
        assert!(
            fatigued.len() >= 5,
            "some creatives fatigue: {}",
            fatigued.len()
        );
        let (mut before, mut after) = ((0u64, 0u64), (0u64, 0u64));
        for creative in &fatigued {
            let onset = creative.fatigue_onset_ms.unwrap_or(i64::MAX);
            for g in &all {
                let (id, time, click) = match &g.event {
                    GeneratedEvent::Impression(e) => (&e.creative_id, e.event_time, false),
                    GeneratedEvent::Click(e) => (&e.creative_id, e.event_time, true),
                    _ => continue,
                };
                if *id != creative.creative_id {
                    continue;
                }
                let bucket = if time < onset {
                    &mut before
                } else {
                    &mut after
                };
                if click {
                    bucket.1 += 1
                } else {
                    bucket.0 += 1
                }
            }
        }
        let ctr_before = before.1 as f64 / before.0 as f64;
        let ctr_after = after.1 as f64 / after.0 as f64;
        assert!(
            ctr_after < ctr_before * 0.8,
            "before {ctr_before} after {ctr_after}"
        );
    }
}
