//! adstream's stream processors.
//!
//! Layout:
//! - `window`           — event-time window assignment (tumbling, hopping, calendar hours and days in a time
//!   zone) and the lateness rule (on time, correction, expired). Pure.
//! - `watermark`        — per-partition event-time watermarks with idle-partition handling. Pure.
//! - `jobs`             — the job registry: every job's settings, ports (topics found in the topology by the
//!   records they carry) and constructor, defined once; the CLI, backtests and `topology describe` read it.
//! - `runtime`          — consume–process–produce with exactly-once transactions, state stores, the dead-letter
//!   format (written by the runtime, read by `adstream dlq`).
//! - `campaign_metrics` — the campaign-metrics job: KPI maths and alert rules (pure), and its operator.
//! - `attribution`      — multi-touch attribution: models (pure) and the two-stage job (repartition by user, credit).
//! - `fatigue`          — creative fatigue: hourly series, CUSUM change detection, Poisson decay fit, score and
//!   days remaining per creative, and its evaluation against planted ground truth. Pure.
//! - `reconciliation`   — platform-reported numbers (the connectors' `platform.reports`) against the events' own,
//!   per campaign and report window: the two-stage job (repartition by campaign, compare and alert).
//!
//! Domain logic here never imports rdkafka, so replays and backtests call the same code as the live jobs.

pub mod attribution;
pub mod campaign_metrics;
pub mod fatigue;
pub mod jobs;
pub mod reconciliation;
pub mod runtime;
pub mod watermark;
pub mod window;
