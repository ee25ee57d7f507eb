//! A backtest's results for people and tools: the side-by-side table, Parquet files, a self-contained HTML report
//! with inline SVG plots, and one JSON record per strategy and campaign.
//!
//! Conversions and revenue are reported under both counterfactuals of removed touches, side by side: **naive**
//! (the attribution job's credits over the kept touches: a conversion is lost only when all its touches were
//! removed; columns `conversions`, `revenue_micros`, table `conv (naive)`) and **Markov** (each conversion that lost
//! campaigns from its journey survives with the probability of the chain fitted on the history; columns
//! `markov_*`, table `conv (Markov)`), see [`crate::journeys`]. Without pauses the two agree.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

use crate::engine::{Outcome, StrategyRun};
use crate::BacktestError;

/// Name of the total row.
const TOTAL: &str = "TOTAL";

fn money(micros: f64) -> String {
    format!("{:.2}", micros / 1e6)
}

fn optional(value: Option<f64>, scale: f64) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v / scale))
}

fn signed(value: f64) -> String {
    format!("{value:+.2}")
}

/// Every campaign of any run, then the total.
fn rows(runs: &[StrategyRun]) -> Vec<String> {
    let mut campaigns: BTreeSet<String> = BTreeSet::new();
    for run in runs {
        campaigns.extend(run.campaigns.keys().cloned());
    }
    campaigns
        .into_iter()
        .chain(std::iter::once(TOTAL.to_owned()))
        .collect()
}

fn outcome(run: &StrategyRun, row: &str) -> Outcome {
    if row == TOTAL {
        run.total
    } else {
        run.campaigns.get(row).copied().unwrap_or_default()
    }
}

/// The side-by-side table: per campaign and in total, each strategy's outcomes and its deltas against the first
/// strategy (spend; conversions and revenue under the naive and the Markov counterfactual).
pub fn comparison_table(runs: &[StrategyRun]) -> String {
    let mut out = String::new();
    let table = table_cells(runs);
    let Some(columns) = table.first().map(Vec::len) else {
        return out;
    };
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, width))| {
                if c < 2 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    for run in runs {
        for action in &run.actions {
            let _ = writeln!(
                out,
                "{}: {} {} at {}: {}",
                run.strategy.name(),
                action.kind,
                action.creative_id.as_deref().unwrap_or(&action.campaign_id),
                time(action.at_ms),
                action.reason
            );
        }
    }
    out
}

/// The comparison as cells: a header row, then one row per campaign (and the total) and strategy.
fn table_cells(runs: &[StrategyRun]) -> Vec<Vec<String>> {
    let header = [
        "campaign",
        "strategy",
        "spend",
        "Δspend",
        "impressions",
        "clicks",
        "conv (naive)",
        "Δconv (naive)",
        "conv (Markov)",
        "Δconv (Markov)",
        "revenue (naive)",
        "Δrevenue (naive)",
        "revenue (Markov)",
        "Δrevenue (Markov)",
        "CPA (naive)",
        "ROAS (naive)",
        "actions",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    let Some(first) = runs.first() else {
        return table;
    };
    for row in rows(runs) {
        let base = outcome(first, &row);
        for run in runs {
            let o = outcome(run, &row);
            let actions = run
                .actions
                .iter()
                .filter(|a| row == TOTAL || a.campaign_id == row)
                .count();
            table.push(vec![
                row.clone(),
                run.strategy.name().to_owned(),
                money(o.spend_micros as f64),
                signed((o.spend_micros - base.spend_micros) as f64 / 1e6),
                o.impressions.to_string(),
                o.clicks.to_string(),
                format!("{:.2}", o.conversions),
                signed(o.conversions - base.conversions),
                format!("{:.2}", o.markov_conversions),
                signed(o.markov_conversions - base.markov_conversions),
                money(o.revenue_micros),
                signed((o.revenue_micros - base.revenue_micros) / 1e6),
                money(o.markov_revenue_micros),
                signed((o.markov_revenue_micros - base.markov_revenue_micros) / 1e6),
                optional(o.cpa_micros(), 1e6),
                optional(o.roas(), 1.0),
                actions.to_string(),
            ]);
        }
    }
    table
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), BacktestError> {
    let error = |message: String| BacktestError::Write {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::create(path).map_err(|e| error(e.to_string()))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| error(e.to_string()))?;
    writer.write(batch).map_err(|e| error(e.to_string()))?;
    writer.close().map_err(|e| error(e.to_string()))?;
    Ok(())
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, BacktestError> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| {
                Field::new(
                    *name,
                    array.data_type().clone(),
                    array.null_count() > 0 || matches!(array.data_type(), DataType::Float64),
                )
            })
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| BacktestError::Write {
        path: "(batch)".to_owned(),
        message: e.to_string(),
    })
}

/// Writes `outcomes.parquet` (strategy × campaign, and a `TOTAL` row per strategy), `actions.parquet` and
/// `timeline.parquet` (per strategy and UTC hour) into `dir`.
pub fn write_parquet_files(dir: &Path, runs: &[StrategyRun]) -> Result<(), BacktestError> {
    let mut strategy = Vec::new();
    let mut campaign = Vec::new();
    let mut o = Vec::new();
    for run in runs {
        for row in rows(runs) {
            strategy.push(run.strategy.name().to_owned());
            o.push(outcome(run, &row));
            campaign.push(row);
        }
    }
    write_parquet(
        &dir.join("outcomes.parquet"),
        &batch(outcome_columns(strategy, Some(campaign), None, &o))?,
    )?;

    let actions: Vec<(&str, &super::Action)> = runs
        .iter()
        .flat_map(|r| r.actions.iter().map(move |a| (r.strategy.name(), a)))
        .collect();
    write_parquet(
        &dir.join("actions.parquet"),
        &batch(vec![
            (
                "strategy",
                Arc::new(StringArray::from_iter_values(
                    actions.iter().map(|(s, _)| *s),
                )) as ArrayRef,
            ),
            (
                "at_ms",
                Arc::new(Int64Array::from_iter_values(
                    actions.iter().map(|(_, a)| a.at_ms),
                )),
            ),
            (
                "until_ms",
                Arc::new(Int64Array::from_iter(
                    actions.iter().map(|(_, a)| a.until_ms),
                )),
            ),
            (
                "action",
                Arc::new(StringArray::from_iter_values(
                    actions.iter().map(|(_, a)| a.kind),
                )),
            ),
            (
                "campaign_id",
                Arc::new(StringArray::from_iter_values(
                    actions.iter().map(|(_, a)| a.campaign_id.as_str()),
                )),
            ),
            (
                "creative_id",
                Arc::new(StringArray::from_iter(
                    actions.iter().map(|(_, a)| a.creative_id.as_deref()),
                )),
            ),
            (
                "score",
                Arc::new(Float64Array::from_iter(
                    actions.iter().map(|(_, a)| a.score),
                )),
            ),
            (
                "reason",
                Arc::new(StringArray::from_iter_values(
                    actions.iter().map(|(_, a)| a.reason.as_str()),
                )),
            ),
        ])?,
    )?;

    let mut strategy = Vec::new();
    let mut hours = Vec::new();
    let mut o = Vec::new();
    for run in runs {
        for (hour, outcome) in &run.hourly {
            strategy.push(run.strategy.name().to_owned());
            hours.push(*hour);
            o.push(*outcome);
        }
    }
    write_parquet(
        &dir.join("timeline.parquet"),
        &batch(outcome_columns(strategy, None, Some(hours), &o))?,
    )
}

fn outcome_columns(
    strategy: Vec<String>,
    campaign: Option<Vec<String>>,
    hour: Option<Vec<i64>>,
    o: &[Outcome],
) -> Vec<(&'static str, ArrayRef)> {
    let mut columns: Vec<(&'static str, ArrayRef)> =
        vec![("strategy", Arc::new(StringArray::from(strategy)))];
    if let Some(campaign) = campaign {
        columns.push(("campaign_id", Arc::new(StringArray::from(campaign))));
    }
    if let Some(hour) = hour {
        columns.push(("hour_start_ms", Arc::new(Int64Array::from(hour))));
    }
    columns.extend([
        (
            "impressions",
            Arc::new(UInt64Array::from_iter_values(
                o.iter().map(|x| x.impressions),
            )) as ArrayRef,
        ),
        (
            "clicks",
            Arc::new(UInt64Array::from_iter_values(o.iter().map(|x| x.clicks))),
        ),
        (
            "spend_micros",
            Arc::new(Int64Array::from_iter_values(
                o.iter().map(|x| x.spend_micros),
            )),
        ),
        (
            "conversions",
            Arc::new(Float64Array::from_iter_values(
                o.iter().map(|x| x.conversions),
            )),
        ),
        (
            "revenue_micros",
            Arc::new(Float64Array::from_iter_values(
                o.iter().map(|x| x.revenue_micros),
            )),
        ),
        (
            "cpa_micros",
            Arc::new(Float64Array::from_iter(o.iter().map(Outcome::cpa_micros))),
        ),
        (
            "roas",
            Arc::new(Float64Array::from_iter(o.iter().map(Outcome::roas))),
        ),
        (
            "markov_conversions",
            Arc::new(Float64Array::from_iter_values(
                o.iter().map(|x| x.markov_conversions),
            )),
        ),
        (
            "markov_revenue_micros",
            Arc::new(Float64Array::from_iter_values(
                o.iter().map(|x| x.markov_revenue_micros),
            )),
        ),
        (
            "markov_cpa_micros",
            Arc::new(Float64Array::from_iter(
                o.iter().map(Outcome::markov_cpa_micros),
            )),
        ),
        (
            "markov_roas",
            Arc::new(Float64Array::from_iter(o.iter().map(Outcome::markov_roas))),
        ),
    ]);
    columns
}

/// One JSON record per strategy and campaign (and total), keyed `<strategy>|<campaign>`, for `--to-topic`.
pub fn outcome_records(runs: &[StrategyRun], from_ms: i64, to_ms: i64) -> Vec<(String, String)> {
    let mut records = Vec::new();
    for run in runs {
        for row in rows(runs) {
            let o = outcome(run, &row);
            let value = serde_json::json!({
                "strategy": run.strategy.name(),
                "campaign_id": row,
                "from_ms": from_ms,
                "to_ms": to_ms,
                "impressions": o.impressions,
                "clicks": o.clicks,
                "spend_micros": o.spend_micros,
                "conversions": o.conversions,
                "revenue_micros": o.revenue_micros,
                "cpa_micros": o.cpa_micros(),
                "roas": o.roas(),
                "markov_conversions": o.markov_conversions,
                "markov_revenue_micros": o.markov_revenue_micros,
                "markov_cpa_micros": o.markov_cpa_micros(),
                "markov_roas": o.markov_roas(),
                "actions": run.actions.iter().filter(|a| row == TOTAL || a.campaign_id == row).count(),
            });
            records.push((format!("{}|{row}", run.strategy.name()), value.to_string()));
        }
    }
    records
}

/// Colours of the strategies' lines and bars, in order.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line plot of the cumulative `value` of each run's hourly outcomes.
fn cumulative_plot(runs: &[StrategyRun], title: &str, value: impl Fn(&Outcome) -> f64) -> String {
    let (width, height, left, bottom) = (760.0, 300.0, 70.0, 40.0);
    let series: Vec<Vec<(i64, f64)>> = runs
        .iter()
        .map(|run| {
            let mut sum = 0.0;
            run.hourly
                .iter()
                .map(|(hour, o)| {
                    sum += value(o) / 1e6;
                    (*hour, sum)
                })
                .collect()
        })
        .collect();
    let points = series.iter().flatten();
    let t0 = points.clone().map(|p| p.0).min().unwrap_or(0);
    let t1 = points.clone().map(|p| p.0).max().unwrap_or(1).max(t0 + 1);
    let top = points.map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (width - left - 10.0);
    let y = |v: f64| height - bottom - v / top * (height - bottom - 20.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\"><title>{}</title>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"28\" font-size=\"11\" text-anchor=\"end\">{top:.0}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        escape(title),
        height - bottom,
        width - 10.0,
        height - bottom,
        height - bottom,
        left,
        height - bottom + 16.0,
        time(t0),
        width - 10.0,
        height - bottom + 16.0,
        time(t1),
        left - 4.0,
        left - 4.0,
        height - bottom,
    );
    for (i, (run, points)) in runs.iter().zip(&series).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{colour}\">{}</text>",
            path.join(" "),
            left + 10.0,
            36.0 + 14.0 * i as f64,
            escape(run.strategy.name())
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars of each later strategy's per-campaign delta of `value` against the first strategy.
fn delta_bars(runs: &[StrategyRun], title: &str, value: impl Fn(&Outcome) -> f64) -> String {
    let campaigns: Vec<String> = rows(runs).into_iter().filter(|r| r != TOTAL).collect();
    let Some(first) = runs.first() else {
        return String::new();
    };
    let value = &value;
    let bars: Vec<(usize, &String, f64)> = campaigns
        .iter()
        .flat_map(|c| {
            let base = value(&outcome(first, c));
            runs.iter()
                .enumerate()
                .skip(1)
                .map(move |(i, run)| (i, c, (value(&outcome(run, c)) - base) / 1e6))
        })
        .collect();
    let (width, row, left) = (760.0, 16.0, 220.0);
    let height = 40.0 + row * bars.len().max(1) as f64;
    let span = bars
        .iter()
        .map(|b| b.2.abs())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let zero = left + (width - left - 20.0) / 2.0;
    let scale = (width - left - 30.0) / 2.0 / span;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\"><title>{}</title>\
         <line x1=\"{zero}\" y1=\"20\" x2=\"{zero}\" y2=\"{}\" stroke=\"#333\"/>",
        escape(title),
        height - 10.0
    );
    for (n, (i, campaign, delta)) in bars.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let y = 24.0 + row * n as f64;
        let (x, w) = if *delta < 0.0 {
            (zero + delta * scale, -delta * scale)
        } else {
            (zero, delta * scale)
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{} ({})</text>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"><title>{delta:+.2}</title></rect>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\">{delta:+.2}</text>",
            left - 6.0,
            y + row - 5.0,
            escape(campaign),
            escape(runs[*i].strategy.name()),
            row - 4.0,
            width - 60.0,
            y + row - 5.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The self-contained HTML report: the table, cumulative spend and attributed revenue per strategy, per-campaign
/// deltas against the first strategy, and the actions.
pub fn html_report(runs: &[StrategyRun], from_ms: i64, to_ms: i64) -> String {
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>adstream backtest</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}\
         h2{margin-top:1.6em}</style></head><body>",
    );
    let names: Vec<String> = runs.iter().map(|r| escape(r.strategy.name())).collect();
    let _ = write!(
        html,
        "<h1>Backtest {} – {}</h1><p>Strategies: {}. Deltas are against <b>{}</b>.</p>",
        time(from_ms),
        time(to_ms),
        names.join(", "),
        names.first().map_or("", String::as_str)
    );
    html.push_str(
        "<h2>Outcomes</h2><p>Conversions and revenue under two counterfactuals of removed touches: \
         <b>naive</b>, a conversion is lost only when all its touches were removed, and the others are credited \
         whole to the touches kept; <b>Markov</b>, a conversion whose journey lost campaigns survives with the \
         probability of the first-order Markov chain fitted on the backtest's history (one minus the removal \
         effect of the campaigns it lost), so its expected conversions and revenue are fractional; the row \
         <i>(no kept touch)</i> holds those expected for conversions none of whose touches was kept.</p><table>",
    );
    for (n, row) in table_cells(runs).iter().enumerate() {
        let tag = if n == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<{tag}>{}</{tag}>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html.push_str("<h2>Cumulative spend over time</h2>");
    html.push_str(&cumulative_plot(runs, "cumulative spend", |o| {
        o.spend_micros as f64
    }));
    html.push_str("<h2>Cumulative attributed revenue over time</h2>");
    html.push_str(&cumulative_plot(
        runs,
        "cumulative attributed revenue (naive)",
        |o| o.revenue_micros,
    ));
    html.push_str("<h2>Cumulative expected revenue over time, Markov counterfactual</h2>");
    html.push_str(&cumulative_plot(
        runs,
        "cumulative expected revenue (Markov)",
        |o| o.markov_revenue_micros,
    ));
    if runs.len() > 1 {
        html.push_str("<h2>Spend per campaign, delta against the first strategy</h2>");
        html.push_str(&delta_bars(runs, "spend delta", |o| o.spend_micros as f64));
        html.push_str(
            "<h2>Attributed revenue per campaign (naive), delta against the first strategy</h2>",
        );
        html.push_str(&delta_bars(runs, "revenue delta (naive)", |o| {
            o.revenue_micros
        }));
        html.push_str(
            "<h2>Expected revenue per campaign (Markov), delta against the first strategy</h2>",
        );
        html.push_str(&delta_bars(runs, "revenue delta (Markov)", |o| {
            o.markov_revenue_micros
        }));
    }
    html.push_str("<h2>Actions</h2><table><tr><th>strategy</th><th>time</th><th>action</th><th>campaign</th><th>creative</th><th>until</th><th>reason</th></tr>");
    for run in runs {
        for a in &run.actions {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(run.strategy.name()),
                time(a.at_ms),
                a.kind,
                escape(&a.campaign_id),
                escape(a.creative_id.as_deref().unwrap_or("")),
                a.until_ms.map(time).unwrap_or_default(),
                escape(&a.reason)
            );
        }
    }
    html.push_str("</table></body></html>\n");
    html
}

/// Writes the Parquet files and `report.html` into `dir` (created if missing).
pub fn write_outputs(
    dir: &Path,
    runs: &[StrategyRun],
    from_ms: i64,
    to_ms: i64,
) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(|e| BacktestError::Write {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    write_parquet_files(dir, runs)?;
    let path = dir.join("report.html");
    std::fs::write(&path, html_report(runs, from_ms, to_ms)).map_err(|e| BacktestError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
