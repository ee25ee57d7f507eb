//! A restore must hold the task's last commit, even when the changelog's last stable offset stands before it.
//!
//! Regression test for the state loss the chaos run found (windows restarting from zero after a takeover): an
//! instance that dies inside a transaction leaves it open on the changelog partitions it wrote to, and until the
//! transaction times out the last stable offset stays before it. The partition's next owner commits behind
//! that open transaction; when the task moves again, a restore that read `read_committed` "to the end" stopped at
//! the last stable offset and missed those commits, while the consumer resumed after their offsets: their records
//! were lost from the state. The restore now reads until the changelog holds the checkpoint of the task's last
//! commit (numbered in the committed offsets' metadata), waiting at the end until it does.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_processors::runtime::{
    self, ChangelogStore, CodecError, Context, DecodeError, InputSpec, KeyedStore, Operator,
    OutputSpec, Record, RuntimeConfig,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

use common::recompute::{kafka, read_committed_messages};
use common::{start_registry, unique};

/// The key the operator counts records under.
const COUNT_KEY: &str = "records";

/// Counts the records of one input in a store.
struct CountRecords {
    input: String,
    counts: KeyedStore<String, u64>,
}

impl Operator for CountRecords {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::stream(&self.input)]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        Vec::new()
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        vec![&mut self.counts]
    }

    fn set_output_schema_ids(&mut self, _ids: &[u32]) -> Result<(), CodecError> {
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, _ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        *self
            .counts
            .get_or_insert_with(record.partition, &COUNT_KEY.to_owned(), || 0) += 1;
        Ok(())
    }

    fn on_commit(&mut self, _ctx: &mut Context<'_>) {}
}

/// Runs the counting job over everything in `input` and waits until it stops at the end of its input.
fn run_to_end(application_id: &str, input: &str, registry: &str) {
    let mut config = RuntimeConfig::new(application_id, kafka(), registry);
    config.commit_interval = Duration::from_millis(200);
    config.exit_at_end_of_input = true;
    let operator = CountRecords {
        input: input.to_owned(),
        counts: KeyedStore::new("counts"),
    };
    let handle = tokio::runtime::Handle::current();
    let summary = runtime::run(
        config,
        Box::new(operator),
        Arc::new(AtomicBool::new(false)),
        handle,
    )
    .expect("the job runs to the end of its input");
    assert!(summary.records > 0, "the job read records");
}

fn produce(input: &str, records: usize) {
    let producer: BaseProducer = kafka().create().expect("producer");
    for n in 0..records {
        let key = n.to_string();
        producer
            .send(BaseRecord::to(input).key(&key).payload("x"))
            .expect("enqueued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

/// The committed count in the changelog (its newest record under the count key).
fn committed_count(changelog: &str) -> u64 {
    read_committed_messages(changelog)
        .iter()
        .filter(|m| m.key() == Some(COUNT_KEY.as_bytes()))
        .filter_map(|m| m.payload())
        .filter_map(|value| serde_json::from_slice(value).ok())
        .next_back()
        .expect("the changelog holds a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reads_commits_behind_a_dead_instances_open_transaction() {
    let registry = start_registry("restore-checkpoint").await;
    let prefix = unique("restore-checkpoint");
    let input = format!("{prefix}.input");
    let application_id = format!("{prefix}-job");
    let changelog = runtime::changelog_topic(&application_id, "counts");
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(&input, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("input topic");

    let registry_url = registry.url.clone();
    let (application, topic, url) = (application_id.clone(), input.clone(), registry_url.clone());
    produce(&input, 300);
    tokio::task::spawn_blocking(move || run_to_end(&application, &topic, &url))
        .await
        .expect("first run");
    assert_eq!(committed_count(&changelog), 300);

    // An instance that died inside a transaction on the changelog partition: its transaction stays open, and the
    // partition's last stable offset stays before it, until it is aborted.
    let mut zombie_config = kafka();
    zombie_config
        .set("transactional.id", format!("{prefix}-dead-instance"))
        .set("transaction.timeout.ms", "60000");
    let zombie: BaseProducer = zombie_config.create().expect("producer");
    zombie
        .init_transactions(Duration::from_secs(30))
        .expect("init");
    zombie.begin_transaction().expect("begin");
    zombie
        .send(
            BaseRecord::to(&changelog)
                .partition(0)
                .key(COUNT_KEY)
                .payload("1000000"),
        )
        .expect("enqueued");
    zombie.flush(Duration::from_secs(30)).expect("flushed");

    // The next owner commits behind the open transaction: its commits are made, but not readable yet.
    produce(&input, 200);
    let (application, topic, url) = (application_id.clone(), input.clone(), registry_url.clone());
    tokio::task::spawn_blocking(move || run_to_end(&application, &topic, &url))
        .await
        .expect("second run");

    // The task moves again while the transaction is still open; it is aborted (as its timeout would) 5 s later.
    produce(&input, 100);
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        zombie
            .abort_transaction(Duration::from_secs(30))
            .expect("abort");
    });
    let started = Instant::now();
    let (application, topic, url) = (application_id.clone(), input.clone(), registry_url.clone());
    tokio::task::spawn_blocking(move || run_to_end(&application, &topic, &url))
        .await
        .expect("third run");
    aborter.join().expect("aborted");
    eprintln!("third run took {:.1} s", started.elapsed().as_secs_f64());

    assert_eq!(
        committed_count(&changelog),
        600,
        "every record counted once: the second run's commits behind the open transaction were restored"
    );
}

/// A read waiting at the end for records that never come gives up after its stall timeout, counted from the last
/// record or end of partition, and says how far it got: the stall clock is read only after polls that bring
/// nothing, never per record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_waits_at_the_end_stalls_after_its_timeout() {
    use adstream_kafka::read::{self, ReadError, ReadOptions};
    use rdkafka::consumer::BaseConsumer;

    let topic = unique("read-stall");
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("topic");
    tokio::task::spawn_blocking(move || {
        produce(&topic, 50);
        let consumer: BaseConsumer = read::reader_config(&kafka(), &unique("read-stall"), true)
            .create()
            .expect("consumer");
        let options = ReadOptions {
            stall_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
            ..ReadOptions::default()
        };
        let started = Instant::now();
        // Partition 0 ends when it ends; partition 1 waits for records that never come.
        let outcome = read::read_until(
            &consumer,
            &topic,
            &[0, 1],
            &options,
            |_| Ok::<(), String>(()),
            |partition| partition == 0,
        );
        let waited = started.elapsed();
        match outcome {
            Err(ReadError::Stalled { open, read, .. }) => {
                assert_eq!(open, vec![1]);
                assert_eq!(read, 50);
            }
            other => panic!("expected a stall, got {other:?}"),
        }
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(20),
            "stalled after {waited:?}"
        );
    })
    .await
    .expect("read");
}
