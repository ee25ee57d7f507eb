//! Drains a [`Generator`] into an [`EventProducer`] with optional rate limiting and periodic progress.

use std::time::{Duration, Instant};

use crate::generator::{GeneratedEvent, Generator};
use crate::producer::{EventProducer, ProduceError};

/// Records encoded per encoder build; encoders resolve their schema once per batch.
const BATCH: usize = 4096;

/// Options of a generation run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Target rate in records per second; `None` produces as fast as the broker accepts.
    pub rate: Option<f64>,
    /// How often to report progress.
    pub progress_every: Duration,
    /// How long the final flush may wait for outstanding deliveries: longer than the producer's message timeout,
    /// so that a record still retrying through a broker failover reports its own outcome.
    pub flush_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            rate: None,
            progress_every: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(150),
        }
    }
}

/// Progress of a run, passed to the progress callback and returned at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Records handed to the producer (reference data included).
    pub sent: u64,
    /// Records acknowledged by the broker.
    pub delivered: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Sent records per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Produces everything `generator` yields. Blocking: call it from a blocking context. Returns after every record
/// is acknowledged, or an error naming what was not.
pub fn produce_generated(
    producer: &EventProducer,
    generator: &mut Generator,
    options: &RunOptions,
    mut on_progress: impl FnMut(Progress),
) -> Result<Progress, ProduceError> {
    let started = Instant::now();
    let mut last_report = started;
    let mut buffer = Vec::with_capacity(512);
    let mut sent = 0u64;
    let mut done = false;
    while !done {
        let encoders = producer.schemas.encoders()?;
        for _ in 0..BATCH {
            let Some(generated) = generator.next() else {
                done = true;
                break;
            };
            let correlation = generated.correlation_id.as_str();
            match &generated.event {
                GeneratedEvent::Impression(e) => {
                    producer.send(&encoders.impressions, e, correlation, &mut buffer)?
                }
                GeneratedEvent::Click(e) => {
                    producer.send(&encoders.clicks, e, correlation, &mut buffer)?
                }
                GeneratedEvent::Conversion(e) => {
                    producer.send(&encoders.conversions, e, correlation, &mut buffer)?
                }
                GeneratedEvent::Campaign(e) => {
                    producer.send(&encoders.campaigns, e, correlation, &mut buffer)?
                }
                GeneratedEvent::Creative(e) => {
                    producer.send(&encoders.creatives, e, correlation, &mut buffer)?
                }
            }
            sent += 1;
        }
        if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        if last_report.elapsed() >= options.progress_every {
            last_report = Instant::now();
            on_progress(Progress {
                sent,
                delivered: producer.stats().delivered(),
                elapsed: started.elapsed(),
            });
        }
    }
    let delivered = producer.flush(options.flush_timeout)?;
    Ok(Progress {
        sent,
        delivered,
        elapsed: started.elapsed(),
    })
}
