//! Campaign alerts: budget pacing, budget reached and KPI targets, as a per-campaign state machine that emits
//! only changes of state, with the tier levels and severities as data ([`AlertRules`], from the job's settings).
//!
//! The job calls [`AlertState::evaluate`] for a campaign whenever its totals or watermark move, with the job's
//! [`AlertRules`], the campaign's settings from the compacted campaigns table and an [`Observation`] of its
//! current local day (and, for each local day the watermark passed since the last evaluation, one at that day's
//! last millisecond first). Each alert kind is either inactive or active at one [`Severity`]. An [`AlertChange`] is
//! emitted when an alert **starts**, **changes severity** (up or down) or **resolves** (a change with
//! `severity: None`). Evaluating the same observation again emits nothing, so evaluating more often than needed
//! never repeats an alert; with the state restored from its changelog, neither does re-processing after a restart.
//!
//! Money is in micros of the campaign's currency; messages show it in currency units with two decimals.
//!
//! # Rules
//!
//! Every rule measures one number and compares it with its **tiers** ([`Tiers`]): a list of levels, each with the
//! severity the alert has from that level on (inclusive), levels and severities both strictly increasing. The
//! highest tier reached decides the severity; below the first tier the alert is not active. Every change names the
//! rule and the tier that decided it (`cpa_above_target:tier2`, [`AlertChange::rule`]) and that tier's level.
//! The defaults ([`AlertRules::default`]) keep the levels adstream always used; their severities use seed 004's
//! four levels: `CRITICAL` only when a budget is spent (delivery stops or money is lost now), `HIGH` for what needs
//! action today, `MEDIUM` to watch, `LOW` for information.
//!
//! ## Pacing: `PACING_OVER`, `PACING_UNDER` (needs a daily budget; tiers `pacing_tiers`)
//!
//! - `elapsed share = (now − day start) / (day end − day start)`, clamped to [0, 1], over the campaign's *local* day
//!   (so a 23-hour or 25-hour day at a daylight-saving change is paced over its real length).
//! - `expected by now = daily budget × elapsed share`. The curve is linear; a diurnal curve (most spend in the
//!   afternoon and evening) is a later refinement, so expect some `PACING_UNDER` in the morning.
//! - `deviation = day spend / expected by now − 1`; the tiers apply to `|deviation|`. Default: from 10 % `LOW`,
//!   from 20 % `MEDIUM`, from 30 % `HIGH`.
//! - A positive deviation is `PACING_OVER`, a negative one `PACING_UNDER`. Only one of the two is active at a time:
//!   when the direction switches, the old direction's resolution is emitted before the new direction starts.
//! - During the first [`PACING_GRACE_MS`] (one hour) of the local day, pacing is not evaluated: the expected spend
//!   is too small for a ratio to mean anything. An alert that was active stays as it is until the hour is over,
//!   including one carried over from the previous day.
//!
//! ## Budget reached: `DAILY_BUDGET_REACHED`, `LIFETIME_BUDGET_REACHED` (tiers `budget_tiers`)
//!
//! - The current local day's spend is compared with the daily budget, the lifetime spend with the lifetime budget;
//!   the tiers apply to the share of the budget spent. Default: from 90 % `HIGH`, from 100 % `CRITICAL`.
//! - The comparison is exact in integer micros (levels are kept in millionths of the budget): 900.00 of 1000.00 is
//!   90 %, 899.999999 is not.
//! - Evaluated at any time of day. At a new local day the day totals start again from zero, so an active
//!   `DAILY_BUDGET_REACHED` resolves at the first evaluation of the new day.
//!
//! ## KPI targets: `CTR_BELOW_TARGET`, `CPC_ABOVE_TARGET`, `CPM_ABOVE_TARGET`, `ROAS_BELOW_TARGET`, `CPA_ABOVE_TARGET`
//!
//! Evaluated on the current local day's totals (KPIs as in [`super::kpi`]) against the campaign's targets, only
//! with enough evidence:
//!
//! | Alert               | Condition         | Evidence needed                                          | Tiers        |
//! |---------------------|-------------------|----------------------------------------------------------|--------------|
//! | `CTR_BELOW_TARGET`  | CTR < min CTR     | at least [`MIN_IMPRESSIONS_FOR_CTR`] (1000) impressions  | `ctr_tiers`  |
//! | `CPC_ABOVE_TARGET`  | CPC > max CPC     | at least [`MIN_CLICKS_FOR_CPC`] (20) clicks              | `cpc_tiers`  |
//! | `CPM_ABOVE_TARGET`  | CPM > target CPM  | at least [`MIN_IMPRESSIONS_FOR_CPM`] (1000) impressions  | `cpm_tiers`  |
//! | `ROAS_BELOW_TARGET` | ROAS < min ROAS   | spend > 0 and conversions > 0                            | `roas_tiers` |
//! | `CPA_ABOVE_TARGET`  | CPA > target CPA  | at least [`MIN_CONVERSIONS_FOR_CPA`] (5) conversions     | `cpa_tiers`  |
//!
//! - `miss = |observed − target| / target` on the wrong side of the target; the tiers apply to the miss, and a
//!   KPI on the right side of its target (or exactly on it) never fires, even with a tier at 0 %. Default: any miss
//!   `MEDIUM`, from 25 % `HIGH`. Example: min CTR 2 %, observed 1.6 % → 20 % miss → `MEDIUM`; observed 1.4 % →
//!   30 % miss → `HIGH`.
//! - With enough evidence and the target met, an active alert resolves. Without enough evidence (for example
//!   early in a new day) the state is kept as it is: not enough data is not good news.
//!
//! ## Common to all rules
//!
//! - Levels are inclusive ("from 20 %" means `|deviation| ≥ 0.20`). For the ratio rules (pacing, KPI targets) a
//!   ratio within [`THRESHOLD_TOLERANCE`] below a level counts as reaching it, so that spend of exactly 600.00
//!   against 500.00 expected is 20 % over even though `600 / 500 − 1` is `0.19999999999999996` in floating point.
//! - A budget or target that is missing, zero, negative or not finite counts as *not set*. When a setting is
//!   removed, the alerts that depend on it resolve (message "… no longer set", `threshold` 0).
//! - Within one evaluation, changes are appended in this order: pacing, daily budget, lifetime budget, CTR, CPC,
//!   CPM, ROAS, CPA.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use super::kpi::{Kpis, Totals};

/// Time from the start of the local day during which pacing is not evaluated (one hour, in milliseconds).
pub const PACING_GRACE_MS: i64 = 60 * 60 * 1000;
/// Impressions in the day needed before the CTR target is judged.
pub const MIN_IMPRESSIONS_FOR_CTR: u64 = 1_000;
/// Clicks in the day needed before the CPC target is judged.
pub const MIN_CLICKS_FOR_CPC: u64 = 20;
/// Impressions in the day needed before the CPM target is judged: the same evidence as CTR, as both are per
/// impression.
pub const MIN_IMPRESSIONS_FOR_CPM: u64 = 1_000;
/// Conversions (credited, so possibly fractional) in the day needed before the CPA target is judged: a day's
/// first conversion or two say little about what acquiring one costs.
pub const MIN_CONVERSIONS_FOR_CPA: f64 = 5.0;
/// How far below a level a computed ratio may be and still count as reaching it: a few units in the last
/// place of `f64` around 1, far below any difference a campaign manager could mean.
pub const THRESHOLD_TOLERANCE: f64 = 1e-12;

/// Tier levels are kept in millionths (1 % = 10,000), so that a budget level compares exactly in integers and a
/// level reads back as written.
const LEVEL_UNITS_PER_ONE: i64 = 1_000_000;
/// Decimals of a percentage a level can carry: millionths of one are ten-thousandths of a percent.
const LEVEL_PERCENT_DECIMALS: usize = 4;
/// The largest level accepted, 1,000,000 %: far beyond any useful level, and small enough that budget
/// comparisons in `i128` cannot overflow.
const MAX_LEVEL: i64 = 10_000 * LEVEL_UNITS_PER_ONE;

/// A campaign's budgets and KPI targets, as the compacted campaigns table holds them. `None` means not set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CampaignSettings {
    /// Budget per local day, in micros. Enables pacing and `DAILY_BUDGET_REACHED`.
    pub daily_budget_micros: Option<i64>,
    /// Budget over the campaign's life, in micros. Enables `LIFETIME_BUDGET_REACHED`.
    pub lifetime_budget_micros: Option<i64>,
    /// Minimum click-through rate, as a fraction (0.02 = 2 %). Enables `CTR_BELOW_TARGET`.
    pub min_ctr: Option<f64>,
    /// Maximum cost per click, in micros. Enables `CPC_ABOVE_TARGET`.
    pub max_cpc_micros: Option<i64>,
    /// Maximum cost per thousand impressions, in micros. Enables `CPM_ABOVE_TARGET`.
    pub target_cpm_micros: Option<i64>,
    /// Minimum return on ad spend, as a ratio (2.0 = revenue twice the spend). Enables `ROAS_BELOW_TARGET`.
    pub min_roas: Option<f64>,
    /// Target cost per acquisition (spend per credited conversion), in micros. Enables `CPA_ABOVE_TARGET`.
    pub target_cpa_micros: Option<i64>,
}

/// Where a campaign stands at one point of event time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The event-time watermark, in epoch milliseconds: how far the day has progressed.
    pub now_ms: i64,
    /// Start of the campaign's current local day (inclusive), in epoch milliseconds.
    pub day_start_ms: i64,
    /// End of the campaign's current local day (exclusive), in epoch milliseconds.
    pub day_end_ms: i64,
    /// Totals of the current local day so far.
    pub day: Totals,
    /// Spend since the campaign started, in micros.
    pub lifetime_spend_micros: i64,
}

pub use adstream_schemas::outputs::AlertKind;

/// How urgent an active alert is: the contract's severity, of which the rules use the four firing levels `Low`,
/// `Medium`, `High` and `Critical` (ordered from least to most urgent); an inactive alert is `None`, written as
/// `Resolved`.
pub use adstream_schemas::outputs::AlertSeverity as Severity;

/// A tier list or rule set that cannot be used; the message names the value and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A tier list that does not parse or breaks an ordering rule.
    #[error("tiers '{text}': {reason}")]
    Tiers {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting of `alert_rules` that cannot be used.
    #[error("alert_rules.{setting}: {reason}")]
    Setting {
        /// The setting's name (`pacing_tiers`, …).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// One tier of a rule: from `level` on (inclusive) the alert is at `severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The level in millionths of the rule's measure (250,000 = 25 %).
    level: i64,
    /// The severity from this level on.
    pub severity: Severity,
}

impl Tier {
    /// The level as a fraction (0.25 = 25 %).
    pub fn level(&self) -> f64 {
        self.level as f64 / LEVEL_UNITS_PER_ONE as f64
    }
}

/// A rule's tiers, written `LEVEL%:SEVERITY,…` (`10%:low,20%:medium,30%:high`): levels strictly increasing,
/// severities (`low`, `medium`, `high`, `critical`) strictly increasing, at least one tier. The same text is the
/// flag's value and the YAML value (see [`AlertRules`]), and both are checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers(Vec<Tier>);

impl Tiers {
    /// The tiers, lowest level first.
    pub fn tiers(&self) -> &[Tier] {
        &self.0
    }

    /// Index of the highest tier whose level `measure` reaches (within [`THRESHOLD_TOLERANCE`]).
    fn reached_by_ratio(&self, measure: f64) -> Option<usize> {
        self.0
            .iter()
            .rposition(|tier| reaches(measure, tier.level()))
    }

    /// Index of the highest tier whose level `spend_micros` reaches as a share of `budget_micros`, exactly.
    fn reached_by_spend(&self, spend_micros: i64, budget_micros: i64) -> Option<usize> {
        self.0
            .iter()
            .rposition(|tier| spent_at_least(spend_micros, budget_micros, tier.level))
    }

    fn parse_level(text: &str) -> Result<i64, String> {
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("level '{text}' must be a percentage like 25%"))?
            .trim();
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(format!(
                "level '{text}' must be a non-negative number of percent"
            ));
        }
        if fraction.len() > LEVEL_PERCENT_DECIMALS {
            return Err(format!(
                "level '{text}' has more than {LEVEL_PERCENT_DECIMALS} decimals"
            ));
        }
        let too_large = || format!("level '{text}' is above {}%", MAX_LEVEL / 10_000);
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        let fraction: i64 = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<LEVEL_PERCENT_DECIMALS$}")
                .parse()
                .map_err(|_| too_large())?
        };
        let level = whole
            .checked_mul(10_000)
            .and_then(|l| l.checked_add(fraction))
            .filter(|l| *l <= MAX_LEVEL)
            .ok_or_else(too_large)?;
        Ok(level)
    }

    fn parse_severity(text: &str) -> Result<Severity, String> {
        let severity = text.trim();
        Severity::FIRING
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(severity))
            .ok_or_else(|| {
                format!("severity '{severity}' is not one of low, medium, high, critical")
            })
    }
}

impl FromStr for Tiers {
    type Err = RulesError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| RulesError::Tiers {
            text: text.to_owned(),
            reason,
        };
        let mut tiers: Vec<Tier> = Vec::new();
        for part in text.split(',') {
            let (level, severity) = part
                .split_once(':')
                .ok_or_else(|| error(format!("'{}' is not LEVEL%:SEVERITY", part.trim())))?;
            let tier = Tier {
                level: Tiers::parse_level(level).map_err(error)?,
                severity: Tiers::parse_severity(severity).map_err(error)?,
            };
            if let Some(last) = tiers.last() {
                if tier.level <= last.level {
                    return Err(error("levels must increase from tier to tier".into()));
                }
                if tier.severity <= last.severity {
                    return Err(error("severities must increase from tier to tier".into()));
                }
            }
            tiers.push(tier);
        }
        Ok(Tiers(tiers))
    }
}

impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tier) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let (whole, fraction) = (tier.level / 10_000, tier.level % 10_000);
            if fraction == 0 {
                write!(f, "{whole}%")?;
            } else {
                let decimals = format!("{fraction:04}");
                write!(f, "{whole}.{}%", decimals.trim_end_matches('0'))?;
            }
            write!(f, ":{}", tier.severity.as_str().to_ascii_lowercase())?;
        }
        Ok(())
    }
}

impl Serialize for Tiers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Tiers from a literal known to be valid (the defaults).
fn tiers(text: &str) -> Tiers {
    match text.parse() {
        Ok(tiers) => tiers,
        Err(e) => unreachable!("default tiers do not parse: {e}"),
    }
}

/// Default [`AlertRules::pacing_tiers`].
pub const DEFAULT_PACING_TIERS: &str = "10%:low,20%:medium,30%:high";
/// Default [`AlertRules::budget_tiers`].
pub const DEFAULT_BUDGET_TIERS: &str = "90%:high,100%:critical";
/// Default tiers of every KPI target rule.
pub const DEFAULT_KPI_TIERS: &str = "0%:medium,25%:high";

/// The alert rules' tiers: the levels and severities of every rule, as the job's settings give them
/// (`adstream process campaign-metrics --cpa-tiers 0%:medium,50%:critical`, or `alert_rules:` in YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(try_from = "AlertRulesText")]
pub struct AlertRules {
    /// Tiers of PACING_OVER and PACING_UNDER over |day spend / spend expected by now − 1|, as LEVEL%:SEVERITY,…
    /// (levels above 0 %).
    #[arg(long, default_value_t = tiers(DEFAULT_PACING_TIERS))]
    pub pacing_tiers: Tiers,
    /// Tiers of DAILY_BUDGET_REACHED and LIFETIME_BUDGET_REACHED over the share of the budget spent (levels above
    /// 0 %).
    #[arg(long, default_value_t = tiers(DEFAULT_BUDGET_TIERS))]
    pub budget_tiers: Tiers,
    /// Tiers of CTR_BELOW_TARGET over the miss, (target − CTR) / target; 0% fires on any miss.
    #[arg(long, default_value_t = tiers(DEFAULT_KPI_TIERS))]
    pub ctr_tiers: Tiers,
    /// Tiers of CPC_ABOVE_TARGET over the miss, (CPC − target) / target; 0% fires on any miss.
    #[arg(long, default_value_t = tiers(DEFAULT_KPI_TIERS))]
    pub cpc_tiers: Tiers,
    /// Tiers of CPM_ABOVE_TARGET over the miss, (CPM − target) / target; 0% fires on any miss.
    #[arg(long, default_value_t = tiers(DEFAULT_KPI_TIERS))]
    pub cpm_tiers: Tiers,
    /// Tiers of ROAS_BELOW_TARGET over the miss, (target − ROAS) / target; 0% fires on any miss.
    #[arg(long, default_value_t = tiers(DEFAULT_KPI_TIERS))]
    pub roas_tiers: Tiers,
    /// Tiers of CPA_ABOVE_TARGET over the miss, (CPA − target) / target; 0% fires on any miss.
    #[arg(long, default_value_t = tiers(DEFAULT_KPI_TIERS))]
    pub cpa_tiers: Tiers,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            pacing_tiers: tiers(DEFAULT_PACING_TIERS),
            budget_tiers: tiers(DEFAULT_BUDGET_TIERS),
            ctr_tiers: tiers(DEFAULT_KPI_TIERS),
            cpc_tiers: tiers(DEFAULT_KPI_TIERS),
            cpm_tiers: tiers(DEFAULT_KPI_TIERS),
            roas_tiers: tiers(DEFAULT_KPI_TIERS),
            cpa_tiers: tiers(DEFAULT_KPI_TIERS),
        }
    }
}

/// [`AlertRules`] as YAML holds them, each tier list as text: read first, so that an error names the setting.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AlertRulesText {
    pacing_tiers: String,
    budget_tiers: String,
    ctr_tiers: String,
    cpc_tiers: String,
    cpm_tiers: String,
    roas_tiers: String,
    cpa_tiers: String,
}

impl Default for AlertRulesText {
    fn default() -> Self {
        AlertRulesText {
            pacing_tiers: DEFAULT_PACING_TIERS.to_owned(),
            budget_tiers: DEFAULT_BUDGET_TIERS.to_owned(),
            ctr_tiers: DEFAULT_KPI_TIERS.to_owned(),
            cpc_tiers: DEFAULT_KPI_TIERS.to_owned(),
            cpm_tiers: DEFAULT_KPI_TIERS.to_owned(),
            roas_tiers: DEFAULT_KPI_TIERS.to_owned(),
            cpa_tiers: DEFAULT_KPI_TIERS.to_owned(),
        }
    }
}

impl TryFrom<AlertRulesText> for AlertRules {
    type Error = RulesError;

    fn try_from(text: AlertRulesText) -> Result<Self, Self::Error> {
        let parse = |setting: &'static str, text: &str| {
            text.parse::<Tiers>().map_err(|e| RulesError::Setting {
                setting,
                reason: e.to_string(),
            })
        };
        let rules = AlertRules {
            pacing_tiers: parse("pacing_tiers", &text.pacing_tiers)?,
            budget_tiers: parse("budget_tiers", &text.budget_tiers)?,
            ctr_tiers: parse("ctr_tiers", &text.ctr_tiers)?,
            cpc_tiers: parse("cpc_tiers", &text.cpc_tiers)?,
            cpm_tiers: parse("cpm_tiers", &text.cpm_tiers)?,
            roas_tiers: parse("roas_tiers", &text.roas_tiers)?,
            cpa_tiers: parse("cpa_tiers", &text.cpa_tiers)?,
        };
        rules.validate()?;
        Ok(rules)
    }
}

impl AlertRules {
    /// Checks what [`Tiers`] cannot check alone: a pacing or budget tier at 0 % would fire on a campaign exactly
    /// on pace, or with nothing spent.
    pub fn validate(&self) -> Result<(), RulesError> {
        for (setting, tiers) in [
            ("pacing_tiers", &self.pacing_tiers),
            ("budget_tiers", &self.budget_tiers),
        ] {
            if tiers.0.first().is_some_and(|tier| tier.level == 0) {
                return Err(RulesError::Setting {
                    setting,
                    reason: format!("the first level must be above 0%, got '{tiers}'"),
                });
            }
        }
        Ok(())
    }

    /// Tier `index` of the rule behind `kind`, with its index; `None` for no tier.
    fn tier(&self, kind: AlertKind, index: Verdict) -> Option<(usize, Tier)> {
        let index = index?;
        let tier = *self.tiers_of(kind)?.0.get(index)?;
        Some((index, tier))
    }

    /// The tiers of the rule behind `kind`; `None` for `Unknown`.
    pub fn tiers_of(&self, kind: AlertKind) -> Option<&Tiers> {
        Some(match kind {
            AlertKind::PacingOver | AlertKind::PacingUnder => &self.pacing_tiers,
            AlertKind::DailyBudgetReached | AlertKind::LifetimeBudgetReached => &self.budget_tiers,
            AlertKind::CtrBelowTarget => &self.ctr_tiers,
            AlertKind::CpcAboveTarget => &self.cpc_tiers,
            AlertKind::CpmAboveTarget => &self.cpm_tiers,
            AlertKind::RoasBelowTarget => &self.roas_tiers,
            AlertKind::CpaAboveTarget => &self.cpa_tiers,
            AlertKind::Unknown => return None,
        })
    }
}

/// One change of an alert's state: it started, changed severity, or resolved.
///
/// `observed` and `threshold` are in the same unit, so `observed / threshold` is meaningful:
/// pacing — day spend and spend expected by now (micros); budget reached — spend and budget (micros);
/// CTR — observed and minimum CTR (fractions); CPC, CPM, CPA — observed and target (micros); ROAS — observed and
/// minimum ROAS (ratios). When the alert resolves because its setting was removed, `threshold` is 0, and so is
/// `observed` if the KPI is not defined.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    /// What the alert is about.
    pub kind: AlertKind,
    /// The new severity; `None` means the alert resolved.
    pub severity: Option<Severity>,
    /// The severity before this change; `None` means the alert was not active.
    pub previous: Option<Severity>,
    /// Index (from 0) of the tier of the rule that decided the new severity; `None` for a resolution.
    pub tier: Option<usize>,
    /// That tier's level as a fraction of the rule's measure (0.25 = 25 %); 0 for a resolution.
    pub rule_level: f64,
    /// The value that was judged (see the type doc for units).
    pub observed: f64,
    /// The value it was judged against (see the type doc for units).
    pub threshold: f64,
    /// One readable line with the numbers, in currency units and percentages; resolutions start with "resolved: ".
    pub message: String,
}

impl AlertChange {
    /// The rule and tier that decided the change: `<rule>:tier<N>` (N from 1) when firing, `<rule>:resolved` on a
    /// resolution; the rule is the kind in lower case (`cpa_above_target`).
    pub fn rule(&self) -> String {
        let rule = self.kind.as_str().to_ascii_lowercase();
        match self.tier {
            Some(index) => format!("{rule}:tier{}", index + 1),
            None => format!("{rule}:resolved"),
        }
    }
}

/// The alert state of one campaign: which alerts are active, at which severity.
///
/// Small and serializable so the job can keep it in a state store; missing fields deserialize as inactive, so
/// alert kinds can be added without migrating stored state (and stored `INFO`/`WARNING` read as `LOW`/`MEDIUM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertState {
    pacing_over: Option<Severity>,
    pacing_under: Option<Severity>,
    daily_budget_reached: Option<Severity>,
    lifetime_budget_reached: Option<Severity>,
    ctr_below_target: Option<Severity>,
    cpc_above_target: Option<Severity>,
    cpm_above_target: Option<Severity>,
    roas_below_target: Option<Severity>,
    cpa_above_target: Option<Severity>,
}

/// A rule's verdict: the tier reached, or `None` when the alert should not be active.
type Verdict = Option<usize>;

impl AlertState {
    /// The severity at which `kind` is active, or `None` when it is not.
    pub fn active(&self, kind: AlertKind) -> Option<Severity> {
        match kind {
            AlertKind::PacingOver => self.pacing_over,
            AlertKind::PacingUnder => self.pacing_under,
            AlertKind::DailyBudgetReached => self.daily_budget_reached,
            AlertKind::LifetimeBudgetReached => self.lifetime_budget_reached,
            AlertKind::CtrBelowTarget => self.ctr_below_target,
            AlertKind::CpcAboveTarget => self.cpc_above_target,
            AlertKind::CpmAboveTarget => self.cpm_above_target,
            AlertKind::RoasBelowTarget => self.roas_below_target,
            AlertKind::CpaAboveTarget => self.cpa_above_target,
            AlertKind::Unknown => None,
        }
    }

    /// Applies `rules` (see the module doc) to `observation` and appends to `out` the alerts that started,
    /// changed severity or resolved since the last evaluation. Allocates only for the changes it appends.
    pub fn evaluate(
        &mut self,
        rules: &AlertRules,
        settings: &CampaignSettings,
        observation: &Observation,
        out: &mut Vec<AlertChange>,
    ) {
        self.evaluate_pacing(rules, settings, observation, out);
        self.evaluate_budget(
            rules,
            AlertKind::DailyBudgetReached,
            settings.daily_budget_micros,
            observation.day.spend_micros,
            BudgetLabels {
                spend: "day spend",
                budget: "daily budget",
            },
            out,
        );
        self.evaluate_budget(
            rules,
            AlertKind::LifetimeBudgetReached,
            settings.lifetime_budget_micros,
            observation.lifetime_spend_micros,
            BudgetLabels {
                spend: "lifetime spend",
                budget: "lifetime budget",
            },
            out,
        );
        self.evaluate_kpi_targets(rules, settings, &observation.day, out);
    }

    fn evaluate_pacing(
        &mut self,
        rules: &AlertRules,
        settings: &CampaignSettings,
        observation: &Observation,
        out: &mut Vec<AlertChange>,
    ) {
        let spend = observation.day.spend_micros as f64;
        let Some(daily_budget) = positive_budget(settings.daily_budget_micros) else {
            for kind in [AlertKind::PacingOver, AlertKind::PacingUnder] {
                self.transition(
                    kind,
                    None,
                    spend,
                    0.0,
                    || "daily budget no longer set".to_owned(),
                    out,
                );
            }
            return;
        };
        let day_length_ms = observation
            .day_end_ms
            .saturating_sub(observation.day_start_ms);
        let elapsed_ms = observation.now_ms.saturating_sub(observation.day_start_ms);
        // An empty or inverted day cannot be paced; keeping the state is safer than resolving on bad input.
        if day_length_ms <= 0 || elapsed_ms < PACING_GRACE_MS {
            return;
        }
        let elapsed_share = (elapsed_ms as f64 / day_length_ms as f64).clamp(0.0, 1.0);
        // Positive: the budget is positive and at least the grace hour of a non-empty day has elapsed.
        let expected = daily_budget as f64 * elapsed_share;
        let deviation = spend / expected - 1.0;
        let tier = rules.pacing_tiers.reached_by_ratio(deviation.abs());
        let (over, under) = if deviation > 0.0 {
            (tier, None)
        } else {
            (None, tier)
        };
        // Resolve the old direction before starting the new one, so a reader never sees both active.
        let in_order = if over.is_some() {
            [
                (AlertKind::PacingUnder, under),
                (AlertKind::PacingOver, over),
            ]
        } else {
            [
                (AlertKind::PacingOver, over),
                (AlertKind::PacingUnder, under),
            ]
        };
        for (kind, verdict) in in_order {
            self.transition(
                kind,
                rules.tier(kind, verdict),
                spend,
                expected,
                || {
                    format!(
                        "spend {} is {:.0}% {} the {} expected by now (daily budget {})",
                        Money(spend),
                        deviation.abs() * 100.0,
                        if deviation > 0.0 { "above" } else { "below" },
                        Money(expected),
                        Money(daily_budget as f64),
                    )
                },
                out,
            );
        }
    }

    fn evaluate_budget(
        &mut self,
        rules: &AlertRules,
        kind: AlertKind,
        budget_micros: Option<i64>,
        spend_micros: i64,
        labels: BudgetLabels,
        out: &mut Vec<AlertChange>,
    ) {
        let spend = spend_micros as f64;
        let Some(budget) = positive_budget(budget_micros) else {
            self.transition(
                kind,
                None,
                spend,
                0.0,
                || format!("{} no longer set", labels.budget),
                out,
            );
            return;
        };
        let verdict = rules.budget_tiers.reached_by_spend(spend_micros, budget);
        let budget = budget as f64;
        self.transition(
            kind,
            rules.tier(kind, verdict),
            spend,
            budget,
            || {
                format!(
                    "{} {} is {:.0}% of the {} {}",
                    labels.spend,
                    Money(spend),
                    spend / budget * 100.0,
                    labels.budget,
                    Money(budget),
                )
            },
            out,
        );
    }

    fn evaluate_kpi_targets(
        &mut self,
        rules: &AlertRules,
        settings: &CampaignSettings,
        day: &Totals,
        out: &mut Vec<AlertChange>,
    ) {
        let kpis = Kpis::of(day);

        let ctr_evidence = day.impressions >= MIN_IMPRESSIONS_FOR_CTR;
        self.evaluate_kpi_target(
            rules,
            KpiTarget {
                kind: AlertKind::CtrBelowTarget,
                goal: Goal::AtLeast,
                target: positive_target(settings.min_ctr),
                value: kpis.ctr,
                enough_evidence: ctr_evidence,
                setting_name: "minimum CTR",
            },
            |ctr, min_ctr, miss| {
                format!(
                    "CTR {:.2}% {} the {:.2}% minimum ({} clicks from {} impressions)",
                    ctr * 100.0,
                    Judgement {
                        miss,
                        goal: Goal::AtLeast
                    },
                    min_ctr * 100.0,
                    day.clicks,
                    day.impressions,
                )
            },
            out,
        );

        let cpc_evidence = day.clicks >= MIN_CLICKS_FOR_CPC;
        self.evaluate_kpi_target(
            rules,
            KpiTarget {
                kind: AlertKind::CpcAboveTarget,
                goal: Goal::AtMost,
                target: positive_budget(settings.max_cpc_micros).map(|max_cpc| max_cpc as f64),
                value: kpis.cpc_micros,
                enough_evidence: cpc_evidence,
                setting_name: "maximum CPC",
            },
            |cpc, max_cpc, miss| {
                format!(
                    "CPC {} {} the {} maximum (spend {} over {} clicks)",
                    Money(cpc),
                    Judgement {
                        miss,
                        goal: Goal::AtMost
                    },
                    Money(max_cpc),
                    Money(day.spend_micros as f64),
                    day.clicks,
                )
            },
            out,
        );

        let cpm_evidence = day.impressions >= MIN_IMPRESSIONS_FOR_CPM;
        self.evaluate_kpi_target(
            rules,
            KpiTarget {
                kind: AlertKind::CpmAboveTarget,
                goal: Goal::AtMost,
                target: positive_budget(settings.target_cpm_micros).map(|cpm| cpm as f64),
                value: kpis.cpm_micros,
                enough_evidence: cpm_evidence,
                setting_name: "target CPM",
            },
            |cpm, target_cpm, miss| {
                format!(
                    "CPM {} {} the {} target (spend {} over {} impressions)",
                    Money(cpm),
                    Judgement {
                        miss,
                        goal: Goal::AtMost
                    },
                    Money(target_cpm),
                    Money(day.spend_micros as f64),
                    day.impressions,
                )
            },
            out,
        );

        let roas_evidence = day.spend_micros > 0 && day.conversions > 0.0;
        self.evaluate_kpi_target(
            rules,
            KpiTarget {
                kind: AlertKind::RoasBelowTarget,
                goal: Goal::AtLeast,
                target: positive_target(settings.min_roas),
                value: kpis.roas,
                enough_evidence: roas_evidence,
                setting_name: "minimum ROAS",
            },
            |roas, min_roas, miss| {
                format!(
                    "ROAS {roas:.2} {} the {min_roas:.2} minimum (revenue {} on spend {})",
                    Judgement {
                        miss,
                        goal: Goal::AtLeast
                    },
                    Money(day.revenue_micros),
                    Money(day.spend_micros as f64),
                )
            },
            out,
        );

        let cpa_evidence = day.conversions >= MIN_CONVERSIONS_FOR_CPA;
        self.evaluate_kpi_target(
            rules,
            KpiTarget {
                kind: AlertKind::CpaAboveTarget,
                goal: Goal::AtMost,
                target: positive_budget(settings.target_cpa_micros).map(|cpa| cpa as f64),
                value: kpis.cpa_micros,
                enough_evidence: cpa_evidence,
                setting_name: "target CPA",
            },
            |cpa, target_cpa, miss| {
                format!(
                    "CPA {} {} the {} target (spend {} over {:.1} conversions)",
                    Money(cpa),
                    Judgement {
                        miss,
                        goal: Goal::AtMost
                    },
                    Money(target_cpa),
                    Money(day.spend_micros as f64),
                    day.conversions,
                )
            },
            out,
        );
    }

    /// `describe(observed, target, miss)` writes the message; it runs only when there is a change to report.
    fn evaluate_kpi_target(
        &mut self,
        rules: &AlertRules,
        kpi: KpiTarget,
        describe: impl FnOnce(f64, f64, f64) -> String,
        out: &mut Vec<AlertChange>,
    ) {
        let Some(target) = kpi.target else {
            let observed = kpi.value.unwrap_or(0.0);
            self.transition(
                kpi.kind,
                None,
                observed,
                0.0,
                || format!("{} no longer set", kpi.setting_name),
                out,
            );
            return;
        };
        // Too little data (or a KPI that is not defined) says nothing either way: keep the current state.
        let Some(observed) = kpi.value.filter(|_| kpi.enough_evidence) else {
            return;
        };
        let miss = match kpi.goal {
            Goal::AtLeast => (target - observed) / target,
            Goal::AtMost => (observed - target) / target,
        };
        // On the right side of the target nothing fires, whatever the tiers: a tier at 0 % means "any miss".
        let verdict = if miss <= THRESHOLD_TOLERANCE {
            None
        } else {
            rules
                .tiers_of(kpi.kind)
                .and_then(|tiers| tiers.reached_by_ratio(miss))
        };
        self.transition(
            kpi.kind,
            rules.tier(kpi.kind, verdict),
            observed,
            target,
            || describe(observed, target, miss),
            out,
        );
    }

    /// Moves `kind` to the severity of `tier` of its rule (with the tier's index; inactive for `None`) and
    /// reports it, unless it is already there.
    fn transition(
        &mut self,
        kind: AlertKind,
        tier: Option<(usize, Tier)>,
        observed: f64,
        threshold: f64,
        describe: impl FnOnce() -> String,
        out: &mut Vec<AlertChange>,
    ) {
        let target = tier.map(|(_, tier)| tier.severity);
        let Some(slot) = self.slot_mut(kind) else {
            return;
        };
        let previous = *slot;
        if previous == target {
            return;
        }
        *slot = target;
        let description = describe();
        let message = match target {
            Some(_) => description,
            None => format!("resolved: {description}"),
        };
        out.push(AlertChange {
            kind,
            severity: target,
            previous,
            tier: tier.map(|(index, _)| index),
            rule_level: tier.map_or(0.0, |(_, tier)| tier.level()),
            observed,
            threshold,
            message,
        });
    }

    /// The state of `kind`; None for a kind the rules never raise (`Unknown`, a symbol from a newer writer).
    fn slot_mut(&mut self, kind: AlertKind) -> Option<&mut Option<Severity>> {
        Some(match kind {
            AlertKind::PacingOver => &mut self.pacing_over,
            AlertKind::PacingUnder => &mut self.pacing_under,
            AlertKind::DailyBudgetReached => &mut self.daily_budget_reached,
            AlertKind::LifetimeBudgetReached => &mut self.lifetime_budget_reached,
            AlertKind::CtrBelowTarget => &mut self.ctr_below_target,
            AlertKind::CpcAboveTarget => &mut self.cpc_above_target,
            AlertKind::CpmAboveTarget => &mut self.cpm_above_target,
            AlertKind::RoasBelowTarget => &mut self.roas_below_target,
            AlertKind::CpaAboveTarget => &mut self.cpa_above_target,
            AlertKind::Unknown => return None,
        })
    }
}

/// The words a budget-reached message uses for its spend and its budget.
struct BudgetLabels {
    spend: &'static str,
    budget: &'static str,
}

/// Which side of its target a KPI should be on.
#[derive(Clone, Copy)]
enum Goal {
    /// The KPI should be at least the target (CTR, ROAS).
    AtLeast,
    /// The KPI should be at most the target (CPC, CPM, CPA).
    AtMost,
}

/// One KPI target rule, ready to evaluate.
struct KpiTarget {
    kind: AlertKind,
    goal: Goal,
    /// The target when it is set (positive and finite).
    target: Option<f64>,
    /// The day's KPI, `None` when not defined.
    value: Option<f64>,
    enough_evidence: bool,
    /// How a message names the setting when it is removed.
    setting_name: &'static str,
}

/// The budget when it is set and positive: a zero or negative budget cannot be paced or reached meaningfully.
fn positive_budget(budget_micros: Option<i64>) -> Option<i64> {
    budget_micros.filter(|budget| *budget > 0)
}

/// The target when it is set, positive and finite: a miss relative to any other target is not a number.
fn positive_target(target: Option<f64>) -> Option<f64> {
    target.filter(|target| target.is_finite() && *target > 0.0)
}

/// Whether `spend_micros` is at least `level` millionths of `budget_micros`, exactly: in `i128` the products
/// cannot overflow (a level is at most [`MAX_LEVEL`]), so no rounding decides whether a budget is reached.
fn spent_at_least(spend_micros: i64, budget_micros: i64, level: i64) -> bool {
    i128::from(spend_micros) * i128::from(LEVEL_UNITS_PER_ONE)
        >= i128::from(budget_micros) * i128::from(level)
}

/// Whether `ratio` has reached the inclusive `threshold`, forgiving floating-point noise just below it.
fn reaches(ratio: f64, threshold: f64) -> bool {
    ratio >= threshold - THRESHOLD_TOLERANCE
}

/// Micros shown in currency units with two decimals, written straight into the message without a temporary.
struct Money(f64);

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0 / 1_000_000.0)
    }
}

/// "is 20% below" / "is 30% above" when a KPI misses its target, "meets" / "is within" when it does not.
struct Judgement {
    miss: f64,
    goal: Goal,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missed = self.miss > THRESHOLD_TOLERANCE;
        match (self.goal, missed) {
            (Goal::AtLeast, true) => write!(f, "is {:.0}% below", self.miss * 100.0),
            (Goal::AtMost, true) => write!(f, "is {:.0}% above", self.miss * 100.0),
            (Goal::AtLeast, false) => f.write_str("meets"),
            (Goal::AtMost, false) => f.write_str("is within"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 60 * 60 * 1000;
    /// 2024-06-01T00:00 in Europe/Paris (UTC+2), a 24-hour local day.
    const DAY_START_MS: i64 = 1_717_192_800_000;
    const DAY_END_MS: i64 = DAY_START_MS + 24 * HOUR_MS;
    const UNIT: i64 = 1_000_000;

    fn daily_budget(units: i64) -> CampaignSettings {
        CampaignSettings {
            daily_budget_micros: Some(units * UNIT),
            ..CampaignSettings::default()
        }
    }

    /// An observation `elapsed_ms` into the 2024-06-01 day with the given day spend and nothing else.
    fn at(elapsed_ms: i64, spend_micros: i64) -> Observation {
        Observation {
            now_ms: DAY_START_MS + elapsed_ms,
            day_start_ms: DAY_START_MS,
            day_end_ms: DAY_END_MS,
            day: Totals {
                spend_micros,
                ..Totals::default()
            },
            lifetime_spend_micros: spend_micros,
        }
    }

    fn with_day(mut observation: Observation, day: Totals) -> Observation {
        observation.day = day;
        observation
    }

    fn evaluate(
        state: &mut AlertState,
        settings: &CampaignSettings,
        observation: &Observation,
    ) -> Vec<AlertChange> {
        let mut out = Vec::new();
        state.evaluate(&AlertRules::default(), settings, observation, &mut out);
        out
    }

    fn only(changes: &[AlertChange], kind: AlertKind) -> Vec<AlertChange> {
        changes
            .iter()
            .filter(|change| change.kind == kind)
            .cloned()
            .collect()
    }

    /// (kind, new severity, previous severity) of each change, for compact assertions.
    fn transitions(
        changes: &[AlertChange],
    ) -> Vec<(AlertKind, Option<Severity>, Option<Severity>)> {
        changes
            .iter()
            .map(|change| (change.kind, change.severity, change.previous))
            .collect()
    }

    use AlertKind::*;
    use Severity::*;

    #[test]
    fn pacing_starts_escalates_deescalates_and_resolves() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        let noon = 12 * HOUR_MS; // half the day: 500.00 expected

        // 540.00 is 8 % above: within tolerance.
        assert!(evaluate(&mut state, &settings, &at(noon, 540 * UNIT)).is_empty());

        // 560.00 is 12 % above: LOW starts.
        let changes = evaluate(&mut state, &settings, &at(noon, 560 * UNIT));
        assert_eq!(transitions(&changes), [(PacingOver, Some(Low), None)]);
        assert_eq!(changes[0].observed, 560e6);
        assert_eq!(changes[0].threshold, 500e6);
        assert_eq!(
            changes[0].message,
            "spend 560.00 is 12% above the 500.00 expected by now (daily budget 1000.00)"
        );

        // 612.40 is 22.48 % above: MEDIUM.
        let changes = evaluate(&mut state, &settings, &at(noon, 612_400_000));
        assert_eq!(
            transitions(&changes),
            [(PacingOver, Some(Medium), Some(Low))]
        );
        assert_eq!(
            changes[0].message,
            "spend 612.40 is 22% above the 500.00 expected by now (daily budget 1000.00)"
        );

        // 660.00 is 32 % above: HIGH.
        let changes = evaluate(&mut state, &settings, &at(noon, 660 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(PacingOver, Some(High), Some(Medium))]
        );

        // Later in the day the same overspend weighs less against the larger expected spend:
        // at 16:00, 666.67 expected; 800.00 is 20 % above → back to MEDIUM.
        let changes = evaluate(&mut state, &settings, &at(16 * HOUR_MS, 800 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(PacingOver, Some(Medium), Some(High))]
        );

        // At 20:00, 833.33 expected; 880.00 is 5.6 % above → resolved.
        let changes = evaluate(&mut state, &settings, &at(20 * HOUR_MS, 880 * UNIT));
        assert_eq!(transitions(&changes), [(PacingOver, None, Some(Medium))]);
        assert_eq!(
            changes[0].message,
            "resolved: spend 880.00 is 6% above the 833.33 expected by now (daily budget 1000.00)"
        );
        assert_eq!(state, AlertState::default());
    }

    #[test]
    fn pacing_tiers_are_inclusive_at_exactly_10_20_and_30_percent() {
        let settings = daily_budget(1_000);
        let noon = 12 * HOUR_MS;
        let tier = |spend_units: i64| {
            let mut state = AlertState::default();
            transitions(&evaluate(
                &mut state,
                &settings,
                &at(noon, spend_units * UNIT),
            ))
        };
        // 1.2 − 1 is 0.19999999999999996 in f64; the tolerance makes exactly 20 % count as 20 %.
        assert_eq!(tier(550), [(PacingOver, Some(Low), None)]);
        assert_eq!(tier(600), [(PacingOver, Some(Medium), None)]);
        assert_eq!(tier(650), [(PacingOver, Some(High), None)]);
        assert_eq!(tier(450), [(PacingUnder, Some(Low), None)]);
        assert_eq!(tier(400), [(PacingUnder, Some(Medium), None)]);
        assert_eq!(tier(350), [(PacingUnder, Some(High), None)]);
        // Just inside the band: 9.8 % either way.
        assert!(tier(549).is_empty());
        assert!(tier(451).is_empty());
    }

    #[test]
    fn pacing_direction_switch_resolves_the_other_direction_first() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        let noon = 12 * HOUR_MS;

        evaluate(&mut state, &settings, &at(noon, 620 * UNIT)); // 24 % over: MEDIUM
        assert_eq!(state.active(PacingOver), Some(Medium));

        // At 20:00, 833.33 expected; 620.00 is 25.6 % under: over resolves, then under starts.
        let changes = evaluate(&mut state, &settings, &at(20 * HOUR_MS, 620 * UNIT));
        assert_eq!(
            transitions(&changes),
            [
                (PacingOver, None, Some(Medium)),
                (PacingUnder, Some(Medium), None)
            ]
        );
        assert_eq!(
            changes[1].message,
            "spend 620.00 is 26% below the 833.33 expected by now (daily budget 1000.00)"
        );

        // A burst puts it 32 % over at 20:00 (1100.00 vs 833.33): under resolves, then over starts as HIGH.
        // (1100.00 is also past the daily budget, which is not what this test is about.)
        let changes = evaluate(&mut state, &settings, &at(20 * HOUR_MS, 1_100 * UNIT));
        let pacing: Vec<_> = changes
            .into_iter()
            .filter(|change| matches!(change.kind, PacingOver | PacingUnder))
            .collect();
        assert_eq!(
            transitions(&pacing),
            [
                (PacingUnder, None, Some(Medium)),
                (PacingOver, Some(High), None)
            ]
        );
    }

    #[test]
    fn pacing_is_not_evaluated_in_the_first_hour_of_the_local_day() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();

        // Nothing spent 59 minutes into the day: 100 % under, but too early to say.
        assert!(evaluate(&mut state, &settings, &at(HOUR_MS - 60_000, 0)).is_empty());

        // Yesterday ended 40 % under pace...
        let yesterday = Observation {
            now_ms: DAY_START_MS - 1,
            day_start_ms: DAY_START_MS - 24 * HOUR_MS,
            day_end_ms: DAY_START_MS,
            day: Totals {
                spend_micros: 600 * UNIT,
                ..Totals::default()
            },
            lifetime_spend_micros: 600 * UNIT,
        };
        let changes = evaluate(&mut state, &settings, &yesterday);
        assert_eq!(transitions(&changes), [(PacingUnder, Some(High), None)]);

        // ...and in the first hour of today the alert stays as it is.
        assert!(evaluate(&mut state, &settings, &at(30 * 60_000, 20 * UNIT)).is_empty());
        assert_eq!(state.active(PacingUnder), Some(High));

        // At exactly 01:00 pacing is evaluated again: 41.67 expected, 40.00 spent is 4 % under → resolved.
        let changes = evaluate(&mut state, &settings, &at(HOUR_MS, 40 * UNIT));
        assert_eq!(transitions(&changes), [(PacingUnder, None, Some(High))]);
    }

    #[test]
    fn pacing_uses_the_real_length_of_a_daylight_saving_day() {
        // 2024-03-31 in Europe/Paris has 23 hours.
        let day_start_ms = 1_711_839_600_000;
        let day_end_ms = 1_711_922_400_000;
        assert_eq!(day_end_ms - day_start_ms, 23 * HOUR_MS);
        let observation = |elapsed_ms: i64, spend_micros: i64| Observation {
            now_ms: day_start_ms + elapsed_ms,
            day_start_ms,
            day_end_ms,
            day: Totals {
                spend_micros,
                ..Totals::default()
            },
            lifetime_spend_micros: spend_micros,
        };
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        // 11.5 hours is half of this day: 500.00 expected, so 500.00 is on pace (on a 24-hour day it would be 4 % over).
        assert!(evaluate(
            &mut state,
            &settings,
            &observation(23 * HOUR_MS / 2, 500 * UNIT)
        )
        .is_empty());
        // 560.00 is 12 % over.
        let changes = evaluate(
            &mut state,
            &settings,
            &observation(23 * HOUR_MS / 2, 560 * UNIT),
        );
        assert_eq!(transitions(&changes), [(PacingOver, Some(Low), None)]);
        assert_eq!(changes[0].threshold, 500e6);
    }

    #[test]
    fn pacing_after_the_end_of_the_day_expects_the_whole_budget() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        // A watermark past the day's end clamps the elapsed share to 1: 1000.00 expected, 800.00 is 20 % under.
        let changes = evaluate(&mut state, &settings, &at(30 * HOUR_MS, 800 * UNIT));
        assert_eq!(transitions(&changes), [(PacingUnder, Some(Medium), None)]);
        assert_eq!(changes[0].threshold, 1_000e6);
    }

    #[test]
    fn daily_budget_reached_at_exactly_90_and_100_percent() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        let evening = 23 * HOUR_MS;
        let daily = |state: &mut AlertState, spend_micros: i64| {
            only(
                &evaluate(state, &settings, &at(evening, spend_micros)),
                DailyBudgetReached,
            )
        };

        assert!(daily(&mut state, 900 * UNIT - 1).is_empty());

        let changes = daily(&mut state, 900 * UNIT);
        assert_eq!(
            transitions(&changes),
            [(DailyBudgetReached, Some(High), None)]
        );
        assert_eq!(
            changes[0].message,
            "day spend 900.00 is 90% of the daily budget 1000.00"
        );
        assert_eq!(
            (changes[0].observed, changes[0].threshold),
            (900e6, 1_000e6)
        );

        assert!(daily(&mut state, 1_000 * UNIT - 1).is_empty());

        let changes = daily(&mut state, 1_000 * UNIT);
        assert_eq!(
            transitions(&changes),
            [(DailyBudgetReached, Some(Critical), Some(High))]
        );
        assert_eq!(
            changes[0].message,
            "day spend 1000.00 is 100% of the daily budget 1000.00"
        );

        assert!(daily(&mut state, 1_250 * UNIT).is_empty());
    }

    #[test]
    fn daily_budget_alert_resolves_on_the_new_local_day() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        let spent_out = only(
            &evaluate(&mut state, &settings, &at(22 * HOUR_MS, 1_000 * UNIT)),
            DailyBudgetReached,
        );
        assert_eq!(
            transitions(&spent_out),
            [(DailyBudgetReached, Some(Critical), None)]
        );

        // The next day, 10 minutes in, its totals restart: 12.00 spent is 1.2 % of the budget.
        let next_day = Observation {
            now_ms: DAY_END_MS + 10 * 60_000,
            day_start_ms: DAY_END_MS,
            day_end_ms: DAY_END_MS + 24 * HOUR_MS,
            day: Totals {
                spend_micros: 12 * UNIT,
                ..Totals::default()
            },
            lifetime_spend_micros: 1_012 * UNIT,
        };
        let changes = evaluate(&mut state, &settings, &next_day);
        // Within the first hour: pacing is left alone, only the budget alert resolves.
        assert_eq!(
            transitions(&changes),
            [(DailyBudgetReached, None, Some(Critical))]
        );
        assert_eq!(
            changes[0].message,
            "resolved: day spend 12.00 is 1% of the daily budget 1000.00"
        );
    }

    #[test]
    fn lifetime_budget_reached_at_exactly_90_and_100_percent() {
        let settings = CampaignSettings {
            lifetime_budget_micros: Some(10_000 * UNIT),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();
        let lifetime = |state: &mut AlertState, lifetime_spend_micros: i64| {
            let mut observation = at(12 * HOUR_MS, 0);
            observation.lifetime_spend_micros = lifetime_spend_micros;
            evaluate(state, &settings, &observation)
        };

        assert!(lifetime(&mut state, 8_999 * UNIT).is_empty());
        let changes = lifetime(&mut state, 9_000 * UNIT);
        assert_eq!(
            transitions(&changes),
            [(LifetimeBudgetReached, Some(High), None)]
        );
        assert_eq!(
            changes[0].message,
            "lifetime spend 9000.00 is 90% of the lifetime budget 10000.00"
        );
        let changes = lifetime(&mut state, 10_000 * UNIT);
        assert_eq!(
            transitions(&changes),
            [(LifetimeBudgetReached, Some(Critical), Some(High))]
        );
        // The lifetime budget is raised to 20,000.00: 50 % spent, resolved.
        let raised = CampaignSettings {
            lifetime_budget_micros: Some(20_000 * UNIT),
            ..settings
        };
        let mut observation = at(12 * HOUR_MS, 0);
        observation.lifetime_spend_micros = 10_000 * UNIT;
        let changes = evaluate(&mut state, &raised, &observation);
        assert_eq!(
            transitions(&changes),
            [(LifetimeBudgetReached, None, Some(Critical))]
        );
    }

    fn ctr_day(impressions: u64, clicks: u64) -> Observation {
        with_day(
            at(12 * HOUR_MS, 0),
            Totals {
                impressions,
                clicks,
                ..Totals::default()
            },
        )
    }

    #[test]
    fn ctr_below_target_tiers_and_resolution() {
        let settings = CampaignSettings {
            min_ctr: Some(0.02),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();

        // 16 / 1000 = 1.6 %, 20 % below 2 %: MEDIUM.
        let changes = evaluate(&mut state, &settings, &ctr_day(1_000, 16));
        assert_eq!(
            transitions(&changes),
            [(CtrBelowTarget, Some(Medium), None)]
        );
        assert_eq!(
            changes[0].message,
            "CTR 1.60% is 20% below the 2.00% minimum (16 clicks from 1000 impressions)"
        );
        assert_eq!((changes[0].observed, changes[0].threshold), (0.016, 0.02));

        // 14 / 1000 = 1.4 %, 30 % below: HIGH.
        let changes = evaluate(&mut state, &settings, &ctr_day(1_000, 14));
        assert_eq!(
            transitions(&changes),
            [(CtrBelowTarget, Some(High), Some(Medium))]
        );

        // 17 / 1000 = 1.7 %, 15 % below: back to MEDIUM.
        let changes = evaluate(&mut state, &settings, &ctr_day(1_000, 17));
        assert_eq!(
            transitions(&changes),
            [(CtrBelowTarget, Some(Medium), Some(High))]
        );

        // 20 / 1000 = 2 % exactly: the minimum is met, resolved.
        let changes = evaluate(&mut state, &settings, &ctr_day(1_000, 20));
        assert_eq!(
            transitions(&changes),
            [(CtrBelowTarget, None, Some(Medium))]
        );
        assert_eq!(
            changes[0].message,
            "resolved: CTR 2.00% meets the 2.00% minimum (20 clicks from 1000 impressions)"
        );
    }

    #[test]
    fn ctr_miss_of_exactly_25_percent_is_critical() {
        let settings = CampaignSettings {
            min_ctr: Some(0.02),
            ..CampaignSettings::default()
        };
        // 15 / 1000 = 1.5 %, 25 % below 2 %.
        let changes = evaluate(&mut AlertState::default(), &settings, &ctr_day(1_000, 15));
        assert_eq!(transitions(&changes), [(CtrBelowTarget, Some(High), None)]);
    }

    #[test]
    fn ctr_needs_1000_impressions_and_keeps_its_state_without_them() {
        let settings = CampaignSettings {
            min_ctr: Some(0.02),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();
        // 0 clicks in 999 impressions: not enough evidence to judge.
        assert!(evaluate(&mut state, &settings, &ctr_day(999, 0)).is_empty());

        evaluate(&mut state, &settings, &ctr_day(1_000, 10)); // 1 %: HIGH
        assert_eq!(state.active(CtrBelowTarget), Some(High));
        // A new day starts with few impressions, all clicked: not enough evidence, the alert is kept.
        assert!(evaluate(&mut state, &settings, &ctr_day(50, 50)).is_empty());
        assert_eq!(state.active(CtrBelowTarget), Some(High));
    }

    fn cpc_day(clicks: u64, spend_micros: i64) -> Observation {
        with_day(
            at(12 * HOUR_MS, spend_micros),
            Totals {
                impressions: 10_000,
                clicks,
                spend_micros,
                ..Totals::default()
            },
        )
    }

    #[test]
    fn cpc_above_target_tiers_evidence_and_resolution() {
        let settings = CampaignSettings {
            max_cpc_micros: Some(UNIT),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();

        // 19 clicks at 5.00 each: far above, but not enough clicks to judge.
        assert!(evaluate(&mut state, &settings, &cpc_day(19, 95 * UNIT)).is_empty());

        // 20 clicks for 24.00 = 1.20 per click, 20 % above 1.00: MEDIUM.
        let changes = evaluate(&mut state, &settings, &cpc_day(20, 24 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpcAboveTarget, Some(Medium), None)]
        );
        assert_eq!(
            changes[0].message,
            "CPC 1.20 is 20% above the 1.00 maximum (spend 24.00 over 20 clicks)"
        );
        assert_eq!(
            (changes[0].observed, changes[0].threshold),
            (1_200_000.0, 1_000_000.0)
        );

        // 25.00 / 20 = 1.25, exactly 25 % above: HIGH.
        let changes = evaluate(&mut state, &settings, &cpc_day(20, 25 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpcAboveTarget, Some(High), Some(Medium))]
        );

        // 22.00 / 20 = 1.10, 10 % above: MEDIUM.
        let changes = evaluate(&mut state, &settings, &cpc_day(20, 22 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpcAboveTarget, Some(Medium), Some(High))]
        );

        // 20.00 / 20 = 1.00, at the maximum: resolved.
        let changes = evaluate(&mut state, &settings, &cpc_day(20, 20 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpcAboveTarget, None, Some(Medium))]
        );
        assert_eq!(
            changes[0].message,
            "resolved: CPC 1.00 is within the 1.00 maximum (spend 20.00 over 20 clicks)"
        );
    }

    fn roas_day(spend_micros: i64, conversions: f64, revenue_micros: f64) -> Observation {
        with_day(
            at(12 * HOUR_MS, spend_micros),
            Totals {
                impressions: 10_000,
                clicks: 100,
                spend_micros,
                conversions,
                revenue_micros,
            },
        )
    }

    #[test]
    fn roas_below_target_tiers_evidence_and_resolution() {
        let settings = CampaignSettings {
            min_roas: Some(2.0),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();

        // Spend but no conversions yet: ROAS would be 0, but there is no evidence to judge.
        assert!(evaluate(&mut state, &settings, &roas_day(100 * UNIT, 0.0, 0.0)).is_empty());

        // 2.5 conversions worth 150.00 on 100.00 spend: ROAS 1.5, 25 % below 2.0: HIGH.
        let changes = evaluate(&mut state, &settings, &roas_day(100 * UNIT, 2.5, 150e6));
        assert_eq!(transitions(&changes), [(RoasBelowTarget, Some(High), None)]);
        assert_eq!(
            changes[0].message,
            "ROAS 1.50 is 25% below the 2.00 minimum (revenue 150.00 on spend 100.00)"
        );
        assert_eq!((changes[0].observed, changes[0].threshold), (1.5, 2.0));

        // Revenue 170.00: ROAS 1.7, 15 % below: MEDIUM.
        let changes = evaluate(&mut state, &settings, &roas_day(100 * UNIT, 3.0, 170e6));
        assert_eq!(
            transitions(&changes),
            [(RoasBelowTarget, Some(Medium), Some(High))]
        );

        // A new day with no spend yet: no evidence, the alert is kept.
        assert!(evaluate(&mut state, &settings, &roas_day(0, 0.0, 0.0)).is_empty());

        // Revenue 250.00 on 100.00: ROAS 2.5, resolved.
        let changes = evaluate(&mut state, &settings, &roas_day(100 * UNIT, 4.0, 250e6));
        assert_eq!(
            transitions(&changes),
            [(RoasBelowTarget, None, Some(Medium))]
        );
        assert_eq!(
            changes[0].message,
            "resolved: ROAS 2.50 meets the 2.00 minimum (revenue 250.00 on spend 100.00)"
        );
    }

    fn cpa_day(spend_micros: i64, conversions: f64) -> Observation {
        with_day(
            at(12 * HOUR_MS, spend_micros),
            Totals {
                impressions: 10_000,
                clicks: 100,
                spend_micros,
                conversions,
                revenue_micros: 0.0,
            },
        )
    }

    #[test]
    fn cpa_above_target_fires_escalates_and_resolves() {
        let settings = CampaignSettings {
            target_cpa_micros: Some(20 * UNIT),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();

        // 4 conversions at 30.00 each: above target, but too few conversions to judge.
        assert!(evaluate(&mut state, &settings, &cpa_day(120 * UNIT, 4.0)).is_empty());

        // 5 conversions for 120.00: CPA 24.00, 20 % above 20.00: MEDIUM.
        let changes = evaluate(&mut state, &settings, &cpa_day(120 * UNIT, 5.0));
        assert_eq!(
            transitions(&changes),
            [(CpaAboveTarget, Some(Medium), None)]
        );
        assert_eq!(
            changes[0].message,
            "CPA 24.00 is 20% above the 20.00 target (spend 120.00 over 5.0 conversions)"
        );
        assert_eq!(
            (changes[0].observed, changes[0].threshold),
            (24_000_000.0, 20_000_000.0)
        );

        // 200.00 over 8: CPA 25.00, exactly 25 % above: HIGH.
        let changes = evaluate(&mut state, &settings, &cpa_day(200 * UNIT, 8.0));
        assert_eq!(
            transitions(&changes),
            [(CpaAboveTarget, Some(High), Some(Medium))]
        );

        // 200.00 over 10: CPA 20.00, on target: resolved.
        let changes = evaluate(&mut state, &settings, &cpa_day(200 * UNIT, 10.0));
        assert_eq!(transitions(&changes), [(CpaAboveTarget, None, Some(High))]);

        // The target removed: an active alert resolves, naming why.
        let mut state = AlertState::default();
        evaluate(&mut state, &settings, &cpa_day(300 * UNIT, 10.0));
        let changes = evaluate(
            &mut state,
            &CampaignSettings::default(),
            &cpa_day(300 * UNIT, 10.0),
        );
        assert_eq!(transitions(&changes), [(CpaAboveTarget, None, Some(High))]);
        assert!(changes[0].message.contains("target CPA no longer set"));
    }

    fn everything_set() -> CampaignSettings {
        CampaignSettings {
            daily_budget_micros: Some(1_000 * UNIT),
            lifetime_budget_micros: Some(10_000 * UNIT),
            min_ctr: Some(0.02),
            max_cpc_micros: Some(UNIT),
            min_roas: Some(2.0),
            target_cpm_micros: None,
            target_cpa_micros: None,
        }
    }

    /// At noon: 950.00 spent (90 % over pace, 95 % of the day's budget), lifetime 10,000.00, CTR 1 %, CPC 1.90,
    /// ROAS 0.5 — every rule fires.
    fn everything_wrong() -> Observation {
        let mut observation = with_day(
            at(12 * HOUR_MS, 0),
            Totals {
                impressions: 50_000,
                clicks: 500,
                spend_micros: 950 * UNIT,
                conversions: 5.0,
                revenue_micros: 475e6,
            },
        );
        observation.lifetime_spend_micros = 10_000 * UNIT;
        observation
    }

    #[test]
    fn every_rule_fires_in_the_documented_order() {
        let changes = evaluate(
            &mut AlertState::default(),
            &everything_set(),
            &everything_wrong(),
        );
        assert_eq!(
            transitions(&changes),
            [
                (PacingOver, Some(High), None),
                (DailyBudgetReached, Some(High), None),
                (LifetimeBudgetReached, Some(Critical), None),
                (CtrBelowTarget, Some(High), None),
                (CpcAboveTarget, Some(High), None),
                (RoasBelowTarget, Some(High), None),
            ]
        );
    }

    #[test]
    fn evaluating_the_same_observation_twice_emits_nothing_the_second_time() {
        let mut state = AlertState::default();
        let settings = everything_set();
        let observation = everything_wrong();
        assert_eq!(evaluate(&mut state, &settings, &observation).len(), 6);
        let after_first = state;
        assert!(evaluate(&mut state, &settings, &observation).is_empty());
        assert_eq!(state, after_first);

        let calm = roas_day(100 * UNIT, 4.0, 250e6);
        assert!(!evaluate(&mut state, &settings, &calm).is_empty());
        assert!(evaluate(&mut state, &settings, &calm).is_empty());
    }

    #[test]
    fn no_settings_no_alerts() {
        let mut state = AlertState::default();
        let settings = CampaignSettings::default();
        for observation in [everything_wrong(), at(0, 0), at(12 * HOUR_MS, i64::MAX)] {
            assert!(evaluate(&mut state, &settings, &observation).is_empty());
        }
        assert_eq!(state, AlertState::default());
    }

    #[test]
    fn zero_negative_and_non_finite_settings_count_as_not_set() {
        let settings = CampaignSettings {
            daily_budget_micros: Some(0),
            lifetime_budget_micros: Some(-1),
            min_ctr: Some(f64::NAN),
            max_cpc_micros: Some(0),
            min_roas: Some(f64::INFINITY),
            target_cpm_micros: Some(0),
            target_cpa_micros: Some(-5),
        };
        assert!(evaluate(&mut AlertState::default(), &settings, &everything_wrong()).is_empty());
    }

    #[test]
    fn removing_a_setting_resolves_its_alerts() {
        let mut state = AlertState::default();
        evaluate(&mut state, &everything_set(), &everything_wrong());
        let changes = evaluate(
            &mut state,
            &CampaignSettings::default(),
            &everything_wrong(),
        );
        assert_eq!(
            transitions(&changes),
            [
                (PacingOver, None, Some(High)),
                (DailyBudgetReached, None, Some(High)),
                (LifetimeBudgetReached, None, Some(Critical)),
                (CtrBelowTarget, None, Some(High)),
                (CpcAboveTarget, None, Some(High)),
                (RoasBelowTarget, None, Some(High)),
            ]
        );
        assert_eq!(changes[0].message, "resolved: daily budget no longer set");
        assert_eq!(
            changes[2].message,
            "resolved: lifetime budget no longer set"
        );
        assert_eq!(changes[4].message, "resolved: maximum CPC no longer set");
        assert!(changes.iter().all(|change| change.threshold == 0.0));
        // The CTR is still reported: 500 / 50,000.
        assert_eq!(changes[3].observed, 0.01);
        assert_eq!(state, AlertState::default());
    }

    #[test]
    fn extreme_and_inverted_inputs_do_not_panic() {
        let settings = CampaignSettings {
            daily_budget_micros: Some(i64::MAX),
            lifetime_budget_micros: Some(1),
            min_ctr: Some(f64::MIN_POSITIVE),
            max_cpc_micros: Some(i64::MAX),
            min_roas: Some(f64::MAX),
            target_cpm_micros: Some(1),
            target_cpa_micros: Some(1),
        };
        let extremes = [
            (i64::MIN, i64::MAX, i64::MIN, i64::MIN),
            (i64::MAX, i64::MIN, i64::MAX, i64::MAX),
            (0, 0, 0, 0),
            (DAY_END_MS, DAY_END_MS, DAY_START_MS, -5),
        ];
        for (now_ms, day_start_ms, day_end_ms, spend_micros) in extremes {
            let observation = Observation {
                now_ms,
                day_start_ms,
                day_end_ms,
                day: Totals {
                    impressions: u64::MAX,
                    clicks: u64::MAX,
                    spend_micros,
                    conversions: f64::NAN,
                    revenue_micros: f64::INFINITY,
                },
                lifetime_spend_micros: spend_micros,
            };
            let mut state = AlertState::default();
            for change in evaluate(&mut state, &settings, &observation) {
                assert!(
                    change.observed.is_finite() && change.threshold.is_finite(),
                    "{change:?}"
                );
            }
        }
    }

    #[test]
    fn an_inverted_day_leaves_pacing_as_it_is() {
        let settings = daily_budget(1_000);
        let mut state = AlertState::default();
        evaluate(&mut state, &settings, &at(12 * HOUR_MS, 700 * UNIT)); // 40 % over: HIGH
        let mut inverted = at(12 * HOUR_MS, 0);
        inverted.day_end_ms = inverted.day_start_ms;
        assert!(only(&evaluate(&mut state, &settings, &inverted), PacingOver).is_empty());
        assert_eq!(state.active(PacingOver), Some(High));
    }

    #[test]
    fn names_are_stable_and_severities_ordered() {
        let names: Vec<_> = [
            PacingOver,
            PacingUnder,
            DailyBudgetReached,
            LifetimeBudgetReached,
            CtrBelowTarget,
            CpcAboveTarget,
            CpmAboveTarget,
            RoasBelowTarget,
            CpaAboveTarget,
        ]
        .map(AlertKind::as_str)
        .to_vec();
        assert_eq!(
            names,
            [
                "PACING_OVER",
                "PACING_UNDER",
                "DAILY_BUDGET_REACHED",
                "LIFETIME_BUDGET_REACHED",
                "CTR_BELOW_TARGET",
                "CPC_ABOVE_TARGET",
                "CPM_ABOVE_TARGET",
                "ROAS_BELOW_TARGET",
                "CPA_ABOVE_TARGET"
            ]
        );
        assert_eq!(
            Severity::FIRING.map(Severity::as_str),
            ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
        );
        assert!(Low < Medium && Medium < High && High < Critical);
    }

    #[test]
    fn state_stored_with_the_legacy_severities_reads_as_low_and_medium() {
        let stored: AlertState = serde_json::from_str(
            r#"{"pacing_over":"INFO","ctr_below_target":"WARNING","daily_budget_reached":"CRITICAL"}"#,
        )
        .expect("old state reads");
        assert_eq!(stored.active(PacingOver), Some(Low));
        assert_eq!(stored.active(CtrBelowTarget), Some(Medium));
        assert_eq!(stored.active(DailyBudgetReached), Some(Critical));
        assert_eq!(stored.active(CpmAboveTarget), None);
    }

    fn cpm_day(impressions: u64, spend_micros: i64) -> Observation {
        with_day(
            at(12 * HOUR_MS, spend_micros),
            Totals {
                impressions,
                clicks: 10,
                spend_micros,
                ..Totals::default()
            },
        )
    }

    #[test]
    fn cpm_above_target_tiers_evidence_and_resolution() {
        let settings = CampaignSettings {
            target_cpm_micros: Some(10 * UNIT),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();

        // 999 impressions at 20.00 CPM: far above, but too few impressions to judge.
        assert!(evaluate(&mut state, &settings, &cpm_day(999, 19_980_000)).is_empty());

        // 2,000 impressions for 22.00: CPM 11.00, 10 % above 10.00: MEDIUM (tier 1).
        let changes = evaluate(&mut state, &settings, &cpm_day(2_000, 22 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpmAboveTarget, Some(Medium), None)]
        );
        assert_eq!(
            changes[0].message,
            "CPM 11.00 is 10% above the 10.00 target (spend 22.00 over 2000 impressions)"
        );
        assert_eq!(
            (changes[0].observed, changes[0].threshold),
            (11_000_000.0, 10_000_000.0)
        );
        assert_eq!(
            (changes[0].rule().as_str(), changes[0].rule_level),
            ("cpm_above_target:tier1", 0.0)
        );

        // 25.00 for 2,000: CPM 12.50, exactly 25 % above: HIGH (tier 2).
        let changes = evaluate(&mut state, &settings, &cpm_day(2_000, 25 * UNIT));
        assert_eq!(
            transitions(&changes),
            [(CpmAboveTarget, Some(High), Some(Medium))]
        );
        assert_eq!(
            (changes[0].rule().as_str(), changes[0].rule_level),
            ("cpm_above_target:tier2", 0.25)
        );

        // 20.00 for 2,000: CPM 10.00, on target: resolved.
        let changes = evaluate(&mut state, &settings, &cpm_day(2_000, 20 * UNIT));
        assert_eq!(transitions(&changes), [(CpmAboveTarget, None, Some(High))]);
        assert_eq!(
            (changes[0].rule().as_str(), changes[0].rule_level),
            ("cpm_above_target:resolved", 0.0)
        );
    }

    #[test]
    fn configured_tiers_decide_the_severity_rule_and_level() {
        let rules = AlertRules {
            cpa_tiers: "10%:low,50%:critical".parse().expect("tiers"),
            budget_tiers: "50%:medium,80%:high,120%:critical".parse().expect("tiers"),
            ..AlertRules::default()
        };
        let settings = CampaignSettings {
            target_cpa_micros: Some(20 * UNIT),
            daily_budget_micros: Some(1_000 * UNIT),
            ..CampaignSettings::default()
        };
        let run = |state: &mut AlertState, observation: &Observation| {
            let mut out = Vec::new();
            state.evaluate(&rules, &settings, observation, &mut out);
            out
        };
        let mut state = AlertState::default();
        // CPA 24.00 against 20.00: 20 % above, the first configured tier (the default would say MEDIUM).
        let mut noon = cpa_day(120 * UNIT, 5.0);
        let changes = only(&run(&mut state, &noon), CpaAboveTarget);
        assert_eq!(transitions(&changes), [(CpaAboveTarget, Some(Low), None)]);
        assert_eq!(changes[0].rule(), "cpa_above_target:tier1");
        assert_eq!(changes[0].rule_level, 0.1);
        // CPA 30.00: 50 % above: CRITICAL (the default would say HIGH).
        noon = cpa_day(150 * UNIT, 5.0);
        let changes = only(&run(&mut state, &noon), CpaAboveTarget);
        assert_eq!(
            transitions(&changes),
            [(CpaAboveTarget, Some(Critical), Some(Low))]
        );
        assert_eq!(
            (changes[0].rule().as_str(), changes[0].rule_level),
            ("cpa_above_target:tier2", 0.5)
        );
        // 1,100.00 of a 1,000.00 budget: 110 %, the configured second tier (HIGH), not yet the third.
        let changes = only(
            &run(&mut state, &at(23 * HOUR_MS, 1_100 * UNIT)),
            DailyBudgetReached,
        );
        assert_eq!(
            transitions(&changes),
            [(DailyBudgetReached, Some(High), None)]
        );
        assert_eq!(changes[0].rule(), "daily_budget_reached:tier2");
        // Exactly 1,200.00 is 120 %: CRITICAL, compared exactly in micros.
        assert!(only(
            &run(&mut state, &at(23 * HOUR_MS, 1_200 * UNIT - 1)),
            DailyBudgetReached
        )
        .is_empty());
        let changes = only(
            &run(&mut state, &at(23 * HOUR_MS, 1_200 * UNIT)),
            DailyBudgetReached,
        );
        assert_eq!(
            transitions(&changes),
            [(DailyBudgetReached, Some(Critical), Some(High))]
        );
    }

    #[test]
    fn a_kpi_tier_at_zero_fires_on_any_miss_but_not_on_target() {
        let rules = AlertRules {
            cpa_tiers: "0%:high".parse().expect("tiers"),
            ..AlertRules::default()
        };
        let settings = CampaignSettings {
            target_cpa_micros: Some(20 * UNIT),
            ..CampaignSettings::default()
        };
        let mut state = AlertState::default();
        let mut out = Vec::new();
        state.evaluate(&rules, &settings, &cpa_day(100 * UNIT, 5.0), &mut out);
        assert!(out.is_empty(), "on target: {out:?}");
        state.evaluate(&rules, &settings, &cpa_day(101 * UNIT, 5.0), &mut out);
        assert_eq!(transitions(&out), [(CpaAboveTarget, Some(High), None)]);
    }

    #[test]
    fn tiers_read_back_as_written_and_the_defaults_keep_the_old_levels() {
        let rules = AlertRules::default();
        assert_eq!(
            rules.pacing_tiers.to_string(),
            "10%:low,20%:medium,30%:high"
        );
        assert_eq!(rules.budget_tiers.to_string(), "90%:high,100%:critical");
        assert_eq!(rules.cpa_tiers.to_string(), "0%:medium,25%:high");
        let levels: Vec<f64> = rules.pacing_tiers.tiers().iter().map(Tier::level).collect();
        assert_eq!(levels, [0.1, 0.2, 0.3]);
        let tiers: Tiers = " 12.5% : LOW , 100.0001%:Critical".parse().expect("tiers");
        assert_eq!(tiers.to_string(), "12.5%:low,100.0001%:critical");
        assert_eq!(tiers.tiers()[0].level(), 0.125);
        assert_eq!(rules.validate(), Ok(()));
    }

    #[test]
    fn bad_tiers_are_refused_with_the_reason() {
        let refused = |text: &str| match text.parse::<Tiers>() {
            Ok(tiers) => panic!("'{text}' was accepted as {tiers}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            refused("20%:low,10%:medium"),
            "tiers '20%:low,10%:medium': levels must increase from tier to tier"
        );
        assert_eq!(
            refused("10%:high,20%:medium"),
            "tiers '10%:high,20%:medium': severities must increase from tier to tier"
        );
        assert!(refused("10:low").contains("must be a percentage like 25%"));
        assert!(refused("-5%:low").contains("non-negative number of percent"));
        assert!(refused("10%:warning").contains("not one of low, medium, high, critical"));
        assert!(refused("10%:resolved").contains("not one of"));
        assert!(refused("10%").contains("is not LEVEL%:SEVERITY"));
        assert!(refused("").contains("is not LEVEL%:SEVERITY"));
        assert!(refused("1.00001%:low").contains("more than 4 decimals"));
        assert!(refused("99999999999999999999%:low").contains("above 1000000%"));

        let zero_pacing = AlertRules {
            pacing_tiers: "0%:low".parse().expect("parses"),
            ..AlertRules::default()
        };
        assert_eq!(
            zero_pacing.validate().map_err(|e| e.to_string()),
            Err(
                "alert_rules.pacing_tiers: the first level must be above 0%, got '0%:low'"
                    .to_owned()
            )
        );
    }
}
