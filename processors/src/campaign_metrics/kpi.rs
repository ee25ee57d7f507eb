//! KPI maths for one campaign and window: CTR, CPC, CPM, CPA and ROAS from summed [`Totals`].
//!
//! | KPI  | Formula                    | Unit                              | Undefined (`None`) when |
//! |------|----------------------------|-----------------------------------|-------------------------|
//! | CTR  | clicks / impressions       | fraction (0.02 = 2 %)             | impressions = 0         |
//! | CPC  | spend / clicks             | micros per click                  | clicks = 0              |
//! | CPM  | spend × 1000 / impressions | micros per 1000 impressions       | impressions = 0         |
//! | CPA  | spend / conversions        | micros per conversion             | conversions = 0         |
//! | ROAS | revenue / spend            | ratio (2.0 = revenue is 2× spend) | spend = 0               |
//!
//! Money is in micros of the campaign's currency (1 unit = 1,000,000 micros), as on the events.
//!
//! **Division-by-zero rule.** A KPI whose denominator is zero is `None`, written to the output topics as Avro
//! `null`, never 0, NaN or infinity. A campaign with no clicks has no cost per click: writing 0 would tell a BI
//! tool that clicks were free, and an average of CPC over campaigns would then be pulled down by campaigns that
//! had no clicks at all. `null` says "not defined", which SQL aggregates (`AVG`, `SUM`) skip.
//!
//! The same holds whenever a KPI cannot be a finite number: an input that is NaN or infinite (a corrupt upstream
//! credit) or a denominator so small that the quotient overflows gives `None`, so NaN and infinity never reach an
//! output. Negative inputs (for example a refund that makes spend negative) give a finite negative KPI, which is
//! reported as it is.
//!
//! All arithmetic is in `f64`, so spend close to `i64::MAX` cannot overflow when multiplied by 1000 for CPM.

/// What one campaign did in one window: counts, spend and attributed conversions and revenue.
///
/// Conversions and revenue are `f64` because they are sums of attribution credits, which are fractional under the
/// linear and time-decay models.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// Impressions served.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Spend in micros: the sum of `cost_micros` over impressions and clicks.
    pub spend_micros: i64,
    /// Conversions credited to the campaign by the attribution job.
    pub conversions: f64,
    /// Conversion revenue credited to the campaign, in micros.
    pub revenue_micros: f64,
}

impl Totals {
    /// Adds `other` into `self` (merging two partial totals of the same campaign and window).
    ///
    /// Counts and spend saturate instead of wrapping or panicking: a corrupt record must not take the job down,
    /// and a saturated value is visibly wrong rather than silently small.
    pub fn add(&mut self, other: &Totals) {
        self.impressions = self.impressions.saturating_add(other.impressions);
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.spend_micros = self.spend_micros.saturating_add(other.spend_micros);
        self.conversions += other.conversions;
        self.revenue_micros += other.revenue_micros;
    }

    /// Counts one impression and what it cost (0 when the campaign is not billed on impressions).
    pub fn add_impression(&mut self, cost_micros: i64) {
        self.impressions = self.impressions.saturating_add(1);
        self.spend_micros = self.spend_micros.saturating_add(cost_micros);
    }

    /// Counts one click and what it cost (0 when the campaign is not billed on clicks).
    pub fn add_click(&mut self, cost_micros: i64) {
        self.clicks = self.clicks.saturating_add(1);
        self.spend_micros = self.spend_micros.saturating_add(cost_micros);
    }

    /// Adds one attribution credit: a (possibly fractional) conversion and its share of the revenue in micros.
    pub fn add_conversion_credit(&mut self, conversions: f64, revenue_micros: f64) {
        self.conversions += conversions;
        self.revenue_micros += revenue_micros;
    }
}

/// The KPIs of one [`Totals`]; each is `None` when it is not defined (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kpis {
    /// Click-through rate: clicks / impressions, as a fraction.
    pub ctr: Option<f64>,
    /// Cost per click in micros: spend / clicks.
    pub cpc_micros: Option<f64>,
    /// Cost per thousand impressions in micros: spend × 1000 / impressions.
    pub cpm_micros: Option<f64>,
    /// Cost per acquisition (conversion) in micros: spend / conversions.
    pub cpa_micros: Option<f64>,
    /// Return on ad spend: revenue / spend, as a ratio.
    pub roas: Option<f64>,
}

impl Kpis {
    /// Computes the KPIs of `totals`; a KPI with a zero denominator or a non-finite result is `None`.
    pub fn of(totals: &Totals) -> Kpis {
        let impressions = totals.impressions as f64;
        let clicks = totals.clicks as f64;
        let spend = totals.spend_micros as f64;
        Kpis {
            ctr: defined_ratio(clicks, impressions),
            cpc_micros: defined_ratio(spend, clicks),
            cpm_micros: defined_ratio(spend * 1000.0, impressions),
            cpa_micros: defined_ratio(spend, totals.conversions),
            roas: defined_ratio(totals.revenue_micros, spend),
        }
    }
}

/// `numerator / denominator` when both are finite, the denominator is not zero and the quotient is finite.
fn defined_ratio(numerator: f64, denominator: f64) -> Option<f64> {
    // A finite quotient of an infinite input (spend / infinite conversions = 0) would still be a made-up number.
    if !numerator.is_finite() || !denominator.is_finite() || denominator == 0.0 {
        return None;
    }
    let ratio = numerator / denominator;
    ratio.is_finite().then_some(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(
        impressions: u64,
        clicks: u64,
        spend_micros: i64,
        conversions: f64,
        revenue_micros: f64,
    ) -> Totals {
        Totals {
            impressions,
            clicks,
            spend_micros,
            conversions,
            revenue_micros,
        }
    }

    #[test]
    fn hand_computed_kpis() {
        // 10,000 impressions, 250 clicks, spend 500.00, 12.5 conversions, revenue 1,750.00.
        let kpis = Kpis::of(&totals(10_000, 250, 500_000_000, 12.5, 1_750_000_000.0));
        assert_eq!(kpis.ctr, Some(0.025)); // 250 / 10,000
        assert_eq!(kpis.cpc_micros, Some(2_000_000.0)); // 500.00 / 250 = 2.00
        assert_eq!(kpis.cpm_micros, Some(50_000_000.0)); // 500.00 × 1000 / 10,000 = 50.00
        assert_eq!(kpis.cpa_micros, Some(40_000_000.0)); // 500.00 / 12.5 = 40.00
        assert_eq!(kpis.roas, Some(3.5)); // 1,750.00 / 500.00
    }

    #[test]
    fn fractional_conversions_from_linear_credits() {
        // Three conversions each split over 4 touchpoints give this campaign 0.75 conversions.
        let kpis = Kpis::of(&totals(100, 3, 30_000_000, 0.75, 45_000_000.0));
        assert_eq!(kpis.cpa_micros, Some(40_000_000.0)); // 30.00 / 0.75 = 40.00
        assert_eq!(kpis.roas, Some(1.5)); // 45.00 / 30.00
    }

    #[test]
    fn all_zero_totals_define_no_kpi() {
        let kpis = Kpis::of(&Totals::default());
        assert_eq!(
            kpis,
            Kpis {
                ctr: None,
                cpc_micros: None,
                cpm_micros: None,
                cpa_micros: None,
                roas: None
            }
        );
    }

    #[test]
    fn zero_impressions_leaves_ctr_and_cpm_undefined() {
        // Clicks without impressions happen when the impression was in an earlier window.
        let kpis = Kpis::of(&totals(0, 4, 8_000_000, 1.0, 20_000_000.0));
        assert_eq!(kpis.ctr, None);
        assert_eq!(kpis.cpm_micros, None);
        assert_eq!(kpis.cpc_micros, Some(2_000_000.0));
        assert_eq!(kpis.cpa_micros, Some(8_000_000.0));
        assert_eq!(kpis.roas, Some(2.5));
    }

    #[test]
    fn zero_clicks_leaves_cpc_undefined_and_ctr_zero() {
        let kpis = Kpis::of(&totals(2_000, 0, 4_000_000, 0.0, 0.0));
        assert_eq!(kpis.cpc_micros, None);
        // A click-through rate of 0 is defined and true: there were impressions and nobody clicked.
        assert_eq!(kpis.ctr, Some(0.0));
        assert_eq!(kpis.cpm_micros, Some(2_000_000.0)); // 4.00 × 1000 / 2000
    }

    #[test]
    fn zero_conversions_leaves_cpa_undefined() {
        let kpis = Kpis::of(&totals(1_000, 10, 5_000_000, 0.0, 0.0));
        assert_eq!(kpis.cpa_micros, None);
        assert_eq!(kpis.roas, Some(0.0));
    }

    #[test]
    fn zero_spend_leaves_roas_undefined_and_costs_zero() {
        let kpis = Kpis::of(&totals(1_000, 10, 0, 2.0, 90_000_000.0));
        assert_eq!(kpis.roas, None);
        assert_eq!(kpis.cpc_micros, Some(0.0));
        assert_eq!(kpis.cpm_micros, Some(0.0));
        assert_eq!(kpis.cpa_micros, Some(0.0));
    }

    #[test]
    fn negative_zero_conversions_count_as_zero() {
        // A credit and its reversal can sum to -0.0; that is still "no conversions", not -infinity.
        let kpis = Kpis::of(&totals(1_000, 10, 5_000_000, -0.0, 0.0));
        assert_eq!(kpis.cpa_micros, None);
    }

    #[test]
    fn spend_near_the_i64_limit_does_not_overflow_cpm() {
        let spend = i64::MAX / 1000;
        let kpis = Kpis::of(&totals(1, 1, spend, 1.0, 0.0));
        // In integers spend × 1000 would be at the edge of i64; in f64 it is simply spend × 1000.
        let expected_cpm = spend as f64 * 1000.0;
        assert_eq!(kpis.cpm_micros, Some(expected_cpm));
        assert_eq!(kpis.cpc_micros, Some(spend as f64));

        let at_limit = Kpis::of(&totals(1, 1, i64::MAX, 1.0, 0.0));
        assert_eq!(at_limit.cpm_micros, Some(i64::MAX as f64 * 1000.0));
    }

    #[test]
    fn negative_spend_gives_a_finite_negative_kpi() {
        // A refund larger than the window's charges: reported as it is, not hidden.
        let kpis = Kpis::of(&totals(1_000, 10, -5_000_000, 1.0, 10_000_000.0));
        assert_eq!(kpis.cpc_micros, Some(-500_000.0));
        assert_eq!(kpis.roas, Some(-2.0));
    }

    #[test]
    fn non_finite_inputs_give_none_not_nan() {
        let nan_credits = Kpis::of(&totals(1_000, 10, 5_000_000, f64::NAN, f64::NAN));
        assert_eq!(nan_credits.cpa_micros, None);
        assert_eq!(nan_credits.roas, None);

        let infinite_credits =
            Kpis::of(&totals(1_000, 10, 5_000_000, f64::INFINITY, f64::INFINITY));
        // spend / infinity would be a finite 0, but a KPI of a corrupt input is not defined.
        assert_eq!(infinite_credits.cpa_micros, None);
        assert_eq!(infinite_credits.roas, None);
        // The KPIs that do not read the corrupt credits are unaffected.
        assert_eq!(infinite_credits.cpc_micros, Some(500_000.0));

        // A denominator so small that the quotient overflows to infinity.
        let tiny_credit = Kpis::of(&totals(1_000, 10, i64::MAX, f64::MIN_POSITIVE, 0.0));
        assert_eq!(tiny_credit.cpa_micros, None);
    }

    #[test]
    fn add_merges_totals() {
        let mut sum = totals(100, 5, 1_000_000, 0.5, 2_000_000.0);
        sum.add(&totals(300, 7, 2_500_000, 0.25, 1_000_000.0));
        assert_eq!(sum, totals(400, 12, 3_500_000, 0.75, 3_000_000.0));
    }

    #[test]
    fn add_saturates_instead_of_overflowing() {
        let mut sum = totals(u64::MAX, u64::MAX, i64::MAX, 0.0, 0.0);
        sum.add(&totals(1, 1, 1, 0.0, 0.0));
        assert_eq!(sum.impressions, u64::MAX);
        assert_eq!(sum.clicks, u64::MAX);
        assert_eq!(sum.spend_micros, i64::MAX);

        let mut most_negative = totals(0, 0, i64::MIN, 0.0, 0.0);
        most_negative.add_click(-1);
        assert_eq!(most_negative.spend_micros, i64::MIN);
    }

    #[test]
    fn per_event_adders() {
        let mut day = Totals::default();
        day.add_impression(1_500); // CPM-billed impression: 1.50 per thousand
        day.add_impression(1_500);
        day.add_click(0); // clicks are free on a CPM campaign
        day.add_conversion_credit(0.5, 20_000_000.0);
        day.add_conversion_credit(0.25, 10_000_000.0);
        assert_eq!(day, totals(2, 1, 3_000, 0.75, 30_000_000.0));
    }
}
