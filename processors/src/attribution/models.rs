//! Placeholder of the rule models while the full module is written on its own branch (replaced at merge).

use serde::{Deserialize, Serialize};

/// How a user met the ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TouchKind {
    /// An impression.
    View,
    /// A click.
    Click,
}

/// One touch of a journey.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Touch {
    /// Event time.
    pub time_ms: i64,
    /// Kind.
    pub kind: TouchKind,
}

/// The rule models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleModel {
    /// Last.
    LastTouch,
    /// First.
    FirstTouch,
    /// Linear.
    Linear,
    /// Time decay.
    TimeDecay,
    /// 40/20/40.
    PositionBased,
}

impl RuleModel {
    /// All.
    pub const ALL: [RuleModel; 5] = [
        RuleModel::LastTouch,
        RuleModel::FirstTouch,
        RuleModel::Linear,
        RuleModel::TimeDecay,
        RuleModel::PositionBased,
    ];
}

/// Settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSettings {
    /// Half-life.
    pub half_life_ms: i64,
    /// Views count.
    pub count_views: bool,
    /// View weight.
    pub view_weight: f64,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            half_life_ms: 7 * 86_400_000,
            count_views: true,
            view_weight: 1.0,
        }
    }
}

/// Shares per touch.
pub fn rule_shares(
    model: RuleModel,
    touches: &[Touch],
    conversion_time_ms: i64,
    settings: &RuleSettings,
) -> Vec<f64> {
    let eligible: Vec<usize> = (0..touches.len())
        .filter(|i| settings.count_views || touches[*i].kind == TouchKind::Click)
        .collect();
    let mut shares = vec![0.0; touches.len()];
    let n = eligible.len();
    if n == 0 {
        return shares;
    }
    for (rank, i) in eligible.iter().enumerate() {
        shares[*i] = match model {
            RuleModel::LastTouch => f64::from(u8::from(rank == n - 1)),
            RuleModel::FirstTouch => f64::from(u8::from(rank == 0)),
            RuleModel::Linear => 1.0,
            RuleModel::TimeDecay => 0.5f64.powf(
                (conversion_time_ms - touches[*i].time_ms) as f64 / settings.half_life_ms as f64,
            ),
            RuleModel::PositionBased => match n {
                1 => 1.0,
                2 => 0.5,
                _ if rank == 0 || rank == n - 1 => 0.4,
                _ => 0.2 / (n - 2) as f64,
            },
        } * if touches[*i].kind == TouchKind::View {
            settings.view_weight
        } else {
            1.0
        };
    }
    let total: f64 = shares.iter().sum();
    if total > 0.0 {
        shares.iter_mut().for_each(|s| *s /= total);
    }
    shares
}
