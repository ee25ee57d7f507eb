//! The campaign-metrics job: per campaign and window, counts, spend, conversions, revenue and KPIs; alerts on
//! budgets, pacing and KPI targets.
//!
//! - `kpi`    — KPI maths (CTR, CPC, CPM, CPA, ROAS) with the division-by-zero rule. Pure.
//! - `alerts`   — alert rules as a state machine that emits on a change of state. Pure.
//! - `operator` — the job on the runtime: windows, lateness, emission.
//! - `window_codec` — the compact changelog encoding of a window row.
//! - `job`      — its settings, ports and constructor for the job registry.

pub mod alerts;
pub mod job;
pub mod kpi;
pub mod operator;
pub mod window_codec;

pub use operator::{CampaignMetricsConfig, CampaignMetricsCounters, CampaignMetricsJob, EmitMode};
