//! What the commands that read topics as tables share on the command line: the scan flags and the progress
//! printed on stderr. Not a command.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_query::source::{KafkaSource, ScanProgress};
use anyhow::Result;
use clap::Args;

use crate::config::Settings;

/// Scan settings shared by the commands that read topics as tables.
#[derive(Args, Clone)]
pub struct ScanArgs {
    /// How late (behind newer records of its partition) a record may have been written and still be found by a
    /// time-range query on `_timestamp`.
    #[arg(long, default_value_t = 24)]
    pub max_lateness_hours: u64,
}

impl ScanArgs {
    /// A Kafka source with the settings' client config and registry.
    pub fn open_source(&self, settings: &Settings) -> Result<Arc<KafkaSource>> {
        Ok(adstream_query::session::open_source(
            settings.kafka_config(),
            &settings.registry,
            Duration::from_secs(self.max_lateness_hours.saturating_mul(3600)),
        )?)
    }
}

/// Prints the progress of the running scans on stderr every two seconds until dropped.
pub struct ProgressPrinter {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressPrinter {
    /// Starts printing `progress` under `label`.
    pub fn start(label: &str, progress: Arc<ScanProgress>) -> ProgressPrinter {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let label = label.to_owned();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut next = Duration::from_secs(2);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() >= next {
                    next += Duration::from_secs(2);
                    let (fetched, planned) = progress.snapshot();
                    let percent = if planned > 0 {
                        format!(" ({:.0}%)", 100.0 * fetched as f64 / planned as f64)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "{label}: {fetched} of up to {planned} records read{percent}, {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        });
        ProgressPrinter {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressPrinter {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
