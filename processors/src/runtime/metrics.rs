//! What a running job exports: counters, lag, latency histograms, restore progress and readiness, rendered in the
//! Prometheus text format.
//!
//! The poll loop counts into plain fields it owns (no atomics or locks per record) and publishes a copy into
//! [`JobMetrics`] at every commit; the HTTP endpoint renders the last published copy. Consumer lag comes from
//! librdkafka's statistics callback.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86400.0,
];

/// A cumulative latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation in seconds (negative values count as 0: clocks of producers may run ahead).
    pub fn observe(&mut self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// The smallest bucket bound below which at least `quantile` of the observations fall (None when empty or
    /// above every bound).
    pub fn quantile_bound(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let wanted = (quantile * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return LATENCY_BUCKETS.get(index).copied();
            }
        }
        None
    }
}

/// Counters of one run, owned by the poll loop and published at commits.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Records consumed per input topic.
    pub records_in: BTreeMap<String, u64>,
    /// Records produced per output, dead-letter, late and changelog topic.
    pub records_out: BTreeMap<String, u64>,
    /// Dead letters per (source topic, class).
    pub dead_letters: BTreeMap<(String, String), u64>,
    /// Late (expired) records per source topic.
    pub late: BTreeMap<String, u64>,
    /// Committed transactions (or at-least-once commits).
    pub commits: u64,
    /// Aborted transactions.
    pub aborts: u64,
    /// Changelog and table records restored.
    pub restored: u64,
    /// Wall-clock seconds spent restoring state and tables.
    pub restore_seconds: f64,
    /// Tasks taken over from their standby copies instead of restored from the changelogs.
    pub standby_promotions: u64,
    /// Event time → commit latency of processed records.
    pub event_time_latency: Histogram,
    /// Broker append time → commit latency, for inputs whose timestamps are `LogAppendTime`.
    pub append_time_latency: Histogram,
    /// Poll → commit latency: how long a record's effects waited in the open transaction.
    pub processing_latency: Histogram,
    /// How long each commit took, from emitting what was due to the transaction's (or the offsets') commit: with
    /// the commit interval, what a record waits before readers see it.
    pub commit_duration: Histogram,
    /// Event-time watermark per task (partition number), epoch millis.
    pub watermarks: BTreeMap<i32, i64>,
    /// Operator counters: (name, help, value).
    pub job: Vec<(&'static str, &'static str, u64)>,
}

/// Where this member stands on one input partition, from librdkafka's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputLag {
    /// Records behind the partition's last stable offset: what `read_committed` can deliver now.
    pub records: i64,
    /// A transaction is open past the last stable offset (its high watermark is beyond it): records may be
    /// waiting in it even when `records` is 0.
    pub open_transaction: bool,
}

impl InputLag {
    /// The partition has records still to deliver, now or once an open transaction ends.
    pub fn has_more(&self) -> bool {
        self.records > 0 || self.open_transaction
    }
}

/// Shared between the job and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct JobMetrics {
    published: Mutex<Counters>,
    lag: Mutex<BTreeMap<(String, i32), InputLag>>,
    restoring: AtomicBool,
    ready: AtomicBool,
    /// Runs started again in the same process after an error new clients clear (see `RuntimeError`).
    restarts: AtomicU64,
    /// When the job's poll loop last came round, in milliseconds of [`monotonic_ms`] plus one; 0 while the job is
    /// not in its loop (starting, restarting, stopped).
    last_turn: AtomicU64,
}

/// Milliseconds of a monotonic clock shared by the process.
fn monotonic_ms(now: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| now);
    u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

impl JobMetrics {
    /// Replaces the published counters.
    pub fn publish(&self, counters: &Counters) {
        if let Ok(mut published) = self.published.lock() {
            published.clone_from(counters);
        }
    }

    /// Replaces every partition's lag with `lags`, a complete snapshot: a partition not in it is no longer
    /// consumed here and drops out.
    pub fn replace_lag(&self, lags: BTreeMap<(String, i32), InputLag>) {
        if let Ok(mut held) = self.lag.lock() {
            *held = lags;
        }
    }

    /// The last known lag of one partition (from librdkafka's statistics, refreshed every few seconds).
    pub fn lag(&self, topic: &str, partition: i32) -> Option<InputLag> {
        self.lag
            .lock()
            .ok()?
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Forgets the lag of partitions no longer owned.
    pub fn clear_lag(&self) {
        if let Ok(mut lags) = self.lag.lock() {
            lags.clear();
        }
    }

    /// Marks a restore as running or finished. A restore runs inside a poll of the loop; its end counts as a turn.
    pub fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Relaxed);
        if !restoring && self.last_turn.load(Ordering::Relaxed) != 0 {
            self.turned(Instant::now());
        }
    }

    /// The job's poll loop came round at `now`.
    pub fn turned(&self, now: Instant) {
        self.last_turn
            .store(monotonic_ms(now).saturating_add(1), Ordering::Relaxed);
    }

    /// The job left its poll loop.
    pub fn left_loop(&self) {
        self.last_turn.store(0, Ordering::Relaxed);
    }

    /// How long the job's poll loop has not come round, while it is in the loop and not restoring.
    pub fn since_last_turn(&self) -> Option<Duration> {
        let last = self.last_turn.load(Ordering::Relaxed);
        if last == 0 || self.restoring.load(Ordering::Relaxed) {
            return None;
        }
        let now = monotonic_ms(Instant::now());
        Some(Duration::from_millis(now.saturating_sub(last - 1)))
    }

    /// How long the job's poll loop has been stuck, when that is longer than `limit`: a call into the Kafka
    /// client that does not return (see `bounded`) or an operator that does not finish a record.
    pub fn stalled(&self, limit: Duration) -> Option<Duration> {
        self.since_last_turn().filter(|age| *age > limit)
    }

    /// Marks the job ready (assigned and restored) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the job has partitions, restored, and is processing.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.restoring.load(Ordering::Relaxed)
    }

    /// Counts a run started again in the same process after an error.
    pub fn record_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs started again in the same process after an error.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// A copy of the last published counters.
    pub fn snapshot(&self) -> Counters {
        self.published.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The Prometheus text exposition of everything, labelled with the job's application id.
    pub fn render(&self, application_id: &str) -> String {
        let c = self.snapshot();
        let mut out = String::new();
        let job = escape(application_id);
        let _ = writeln!(out, "# HELP adstream_records_in_total Records consumed per input topic.\n# TYPE adstream_records_in_total counter");
        for (topic, n) in &c.records_in {
            let _ = writeln!(
                out,
                "adstream_records_in_total{{job=\"{job}\",topic=\"{}\"}} {n}",
                escape(topic)
            );
        }
        let _ = writeln!(out, "# HELP adstream_records_out_total Records produced per topic (outputs, dead letters, late records, changelogs).\n# TYPE adstream_records_out_total counter");
        for (topic, n) in &c.records_out {
            let _ = writeln!(
                out,
                "adstream_records_out_total{{job=\"{job}\",topic=\"{}\"}} {n}",
                escape(topic)
            );
        }
        let _ = writeln!(out, "# HELP adstream_dead_letters_total Records sent to dlq.<topic>, by source topic and error class.\n# TYPE adstream_dead_letters_total counter");
        for ((topic, class), n) in &c.dead_letters {
            let _ = writeln!(
                out,
                "adstream_dead_letters_total{{job=\"{job}\",topic=\"{}\",class=\"{}\"}} {n}",
                escape(topic),
                escape(class)
            );
        }
        let _ = writeln!(out, "# HELP adstream_late_records_total Records past their window's retention, sent to late.<topic>.\n# TYPE adstream_late_records_total counter");
        for (topic, n) in &c.late {
            let _ = writeln!(
                out,
                "adstream_late_records_total{{job=\"{job}\",topic=\"{}\"}} {n}",
                escape(topic)
            );
        }
        let _ = writeln!(out, "# HELP adstream_transactions_total Transactions by outcome.\n# TYPE adstream_transactions_total counter");
        let _ = writeln!(
            out,
            "adstream_transactions_total{{job=\"{job}\",outcome=\"commit\"}} {}",
            c.commits
        );
        let _ = writeln!(
            out,
            "adstream_transactions_total{{job=\"{job}\",outcome=\"abort\"}} {}",
            c.aborts
        );
        let _ = writeln!(out, "# HELP adstream_restored_records_total Changelog and table records restored.\n# TYPE adstream_restored_records_total counter");
        let _ = writeln!(
            out,
            "adstream_restored_records_total{{job=\"{job}\"}} {}",
            c.restored
        );
        let _ = writeln!(out, "# HELP adstream_restore_seconds_total Wall-clock seconds spent restoring state and tables before processing.\n# TYPE adstream_restore_seconds_total counter");
        let _ = writeln!(
            out,
            "adstream_restore_seconds_total{{job=\"{job}\"}} {:.3}",
            c.restore_seconds
        );
        let _ = writeln!(out, "# HELP adstream_standby_promotions_total Tasks taken over from their standby copies instead of restored from the changelogs.\n# TYPE adstream_standby_promotions_total counter");
        let _ = writeln!(
            out,
            "adstream_standby_promotions_total{{job=\"{job}\"}} {}",
            c.standby_promotions
        );
        let _ = writeln!(out, "# HELP adstream_job_restarts_total Runs started again in the same process after an error that new Kafka clients clear (a fenced or fatal client, an unknown commit outcome).\n# TYPE adstream_job_restarts_total counter");
        let _ = writeln!(
            out,
            "adstream_job_restarts_total{{job=\"{job}\"}} {}",
            self.restarts()
        );
        let _ = writeln!(out, "# HELP adstream_restoring Whether a restore is running.\n# TYPE adstream_restoring gauge");
        let _ = writeln!(
            out,
            "adstream_restoring{{job=\"{job}\"}} {}",
            u8::from(self.restoring.load(Ordering::Relaxed))
        );
        let _ = writeln!(out, "# HELP adstream_poll_loop_age_seconds Time since the job's poll loop last came round (0 outside the loop and while restoring); /healthz fails past --stall-timeout-secs.\n# TYPE adstream_poll_loop_age_seconds gauge");
        let _ = writeln!(
            out,
            "adstream_poll_loop_age_seconds{{job=\"{job}\"}} {}",
            self.since_last_turn().unwrap_or_default().as_secs_f64()
        );
        let _ = writeln!(out, "# HELP adstream_ready Whether the job is assigned, restored and processing.\n# TYPE adstream_ready gauge");
        let _ = writeln!(
            out,
            "adstream_ready{{job=\"{job}\"}} {}",
            u8::from(self.is_ready())
        );
        let _ = writeln!(out, "# HELP adstream_consumer_lag Records behind the end of each input partition.\n# TYPE adstream_consumer_lag gauge");
        if let Ok(lags) = self.lag.lock() {
            for ((topic, partition), lag) in lags.iter() {
                let _ = writeln!(
                    out,
                    "adstream_consumer_lag{{job=\"{job}\",topic=\"{}\",partition=\"{partition}\"}} {}",
                    escape(topic),
                    lag.records
                );
            }
        }
        for (name, help, histogram) in [
            ("adstream_event_time_latency_seconds", "Event time to the commit that made the record's effects visible.", &c.event_time_latency),
            ("adstream_append_time_latency_seconds", "Broker append time (LogAppendTime inputs) to the commit that made the record's effects visible.", &c.append_time_latency),
            ("adstream_processing_latency_seconds", "Poll to the commit that made the record's effects visible.", &c.processing_latency),
            ("adstream_commit_duration_seconds", "Time a commit took: due output, changelogs, offsets and the transaction's commit.", &c.commit_duration),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.counts.iter()) {
                cumulative += count;
                let _ = writeln!(out, "{name}_bucket{{job=\"{job}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{job=\"{job}\",le=\"+Inf\"}} {}", histogram.count);
            let _ = writeln!(out, "{name}_sum{{job=\"{job}\"}} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{{job=\"{job}\"}} {}", histogram.count);
        }
        let _ = writeln!(out, "# HELP adstream_watermark_ms Event-time watermark of each task (partition number), epoch millis.\n# TYPE adstream_watermark_ms gauge");
        for (partition, watermark) in &c.watermarks {
            let _ = writeln!(
                out,
                "adstream_watermark_ms{{job=\"{job}\",task=\"{partition}\"}} {watermark}"
            );
        }
        for (name, help, value) in &c.job {
            let _ = writeln!(
                out,
                "# HELP adstream_job_{name}_total {help}\n# TYPE adstream_job_{name}_total counter"
            );
            let _ = writeln!(out, "adstream_job_{name}_total{{job=\"{job}\"}} {value}");
        }
        out
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One Prometheus text exposition out of several jobs' (each from [`JobMetrics::render`]): the samples of each
/// metric family are grouped under one `# HELP`/`# TYPE` header, as the format requires, in first-seen order.
pub fn merge_expositions(texts: impl IntoIterator<Item = String>) -> String {
    // (header lines, sample lines) per family name.
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for text in texts {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            let header = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "));
            if let Some(rest) = header {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let index = match families.iter().position(|(n, _, _)| n == name) {
                    Some(index) => index,
                    None => {
                        families.push((name.to_owned(), Vec::new(), Vec::new()));
                        families.len() - 1
                    }
                };
                let headers = &mut families[index].1;
                if !headers.iter().any(|h| h == line) {
                    headers.push(line.to_owned());
                }
                current = Some(index);
            } else if let Some(index) = current {
                families[index].2.push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for (_, headers, samples) in families {
        for line in headers.iter().chain(&samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_coming_round_is_stalled_but_not_while_restoring_or_outside_it() {
        let metrics = JobMetrics::default();
        let limit = Duration::from_millis(50);
        assert_eq!(metrics.stalled(limit), None, "not in the loop yet");
        metrics.turned(Instant::now());
        assert_eq!(metrics.stalled(limit), None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(metrics.stalled(limit).is_some_and(|age| age > limit));
        metrics.set_restoring(true);
        assert_eq!(metrics.stalled(limit), None, "a restore runs inside a poll");
        metrics.set_restoring(false);
        assert_eq!(
            metrics.stalled(limit),
            None,
            "the end of a restore counts as a turn"
        );
        std::thread::sleep(Duration::from_millis(80));
        assert!(metrics.stalled(limit).is_some());
        metrics.left_loop();
        assert_eq!(metrics.stalled(limit), None);
        assert!(metrics
            .render("j")
            .contains("adstream_poll_loop_age_seconds{job=\"j\"} 0\n"));
    }

    #[test]
    fn expositions_of_several_jobs_share_one_header_per_family() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total{job=\"a\"} 1\n# HELP y Y.\n# TYPE y gauge\ny{job=\"a\"} 2\n";
        let b = a.replace("job=\"a\"", "job=\"b\"");
        assert_eq!(
            merge_expositions([a.to_owned(), b]),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{job=\"a\"} 1\nx_total{job=\"b\"} 1\n\
             # HELP y Y.\n# TYPE y gauge\ny{job=\"a\"} 2\ny{job=\"b\"} 2\n"
        );
    }

    #[test]
    fn histogram_buckets_and_quantiles() {
        let mut h = Histogram::default();
        for ms in [1.0, 2.0, 20.0, 200.0, 2000.0] {
            h.observe(ms / 1000.0);
        }
        h.observe(-1.0);
        assert_eq!(h.count, 6);
        assert_eq!(h.counts[0], 3, "-1 ms, 1 ms and 2 ms fall under 5 ms");
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(0.99), Some(2.5));
        assert_eq!(Histogram::default().quantile_bound(0.5), None);
    }

    #[test]
    fn rendering_is_prometheus_text() {
        let metrics = JobMetrics::default();
        let mut c = Counters::default();
        c.records_in.insert("ads.clicks".into(), 7);
        c.dead_letters
            .insert(("ads.clicks".into(), "bad-magic-byte".into()), 2);
        c.event_time_latency.observe(0.02);
        c.job
            .push(("corrections", "Events that corrected a final row.", 3));
        metrics.publish(&c);
        let lag = |records| InputLag {
            records,
            open_transaction: false,
        };
        metrics.replace_lag(BTreeMap::from([(("ads.clicks".to_owned(), 0), lag(7))]));
        // A later snapshot without partition 0 (revoked since) drops it.
        metrics.replace_lag(BTreeMap::from([(("ads.clicks".to_owned(), 1), lag(42))]));
        let text = metrics.render("campaign-metrics");
        assert!(
            !text.contains("partition=\"0\""),
            "a partition no longer consumed kept its lag:\n{text}"
        );
        for line in [
            "adstream_records_in_total{job=\"campaign-metrics\",topic=\"ads.clicks\"} 7",
            "adstream_dead_letters_total{job=\"campaign-metrics\",topic=\"ads.clicks\",class=\"bad-magic-byte\"} 2",
            "adstream_consumer_lag{job=\"campaign-metrics\",topic=\"ads.clicks\",partition=\"1\"} 42",
            "adstream_event_time_latency_seconds_bucket{job=\"campaign-metrics\",le=\"0.025\"} 1",
            "adstream_event_time_latency_seconds_count{job=\"campaign-metrics\"} 1",
            "adstream_job_corrections_total{job=\"campaign-metrics\"} 3",
            "adstream_ready{job=\"campaign-metrics\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
