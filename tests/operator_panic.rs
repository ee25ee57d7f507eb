//! An operator that panics must stop its job, not leave it hanging.
//!
//! Regression test: a panic in `on_commit` (the reconciliation job's overflow before its first watermark, fixed)
//! unwound through the runtime, whose consumer, closing on the way out, asked the rebalance hook to commit the
//! revoked partitions — which ran the panicking operator again, inside librdkafka's callback. The job neither
//! finished nor processed anything: alive to a supervisor, dead to its partitions.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_processors::runtime::{
    self, ChangelogStore, CodecError, Context, DecodeError, InputSpec, Operator, OutputSpec,
    Record, RuntimeConfig,
};

use common::recompute::{create_topics, kafka, produce_generated_events};
use common::{start_registry, unique};

/// Reads impressions and panics at the first commit after it read one.
struct PanicsOnCommit {
    input: String,
    records: u64,
}

impl Operator for PanicsOnCommit {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::stream(&self.input)]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        Vec::new()
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        Vec::new()
    }

    fn set_output_schema_ids(&mut self, _ids: &[u32]) -> Result<(), CodecError> {
        Ok(())
    }

    fn process(&mut self, _record: &Record<'_>, _ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        self.records += 1;
        Ok(())
    }

    fn on_commit(&mut self, _ctx: &mut Context<'_>) {
        if self.records > 0 {
            panic!("an operator bug");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_operator_stops_its_job() {
    let registry = start_registry("panic").await;
    let prefix = unique("panic");
    let topics = create_topics(&prefix).await;
    produce_generated_events(&registry.url, &topics.events, 5, 500).await;

    let mut config = RuntimeConfig::new(&format!("{prefix}-job"), kafka(), &registry.url);
    config.commit_interval = Duration::from_millis(200);
    let operator = PanicsOnCommit {
        input: topics.events.impressions.clone(),
        records: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let shutdown = stop.clone();
    let worker =
        std::thread::spawn(move || runtime::run(config, Box::new(operator), shutdown, handle));

    let deadline = Instant::now() + Duration::from_secs(90);
    while !worker.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = worker.is_finished();
    // Never leave a hung job behind the test, whatever it found.
    stop.store(true, Ordering::Relaxed);
    assert!(
        finished,
        "the job neither stopped nor recovered within 90 s of its operator's panic"
    );
    assert!(
        worker.join().is_err(),
        "the operator's panic reaches the job's thread"
    );
}
