//! The reconciliation job: what the ad platforms report (`platform.reports`, written by `adstream connect run`)
//! against what adstream counted from its own impression and click events, per campaign and report window.
//!
//! Two stages, like attribution: [`repartition`] re-keys the platform's rows (keyed per ad and window) by
//! adstream's campaign id (`<platform slug>-<platform campaign id>`, the id the events carry) into an internal
//! topic co-partitioned with the events; [`operator`] keeps, per campaign, the events' counts per UTC hour and the
//! latest report row per ad and window, and writes one comparison row per window (compacted) plus an alert row
//! whenever a window's status turns MISMATCHED or stops being it.
//!
//! A window is judged only once it is final: the platforms restate recent numbers (late conversions,
//! invalid-click refunds) for days, so a window stays PENDING until the task's event time passes its end plus the
//! restatement look-back (default 7 days, like the connectors' own look-back). `job.rs` holds the settings.

pub mod job;
pub mod operator;
pub mod repartition;
