//! Standby replicas (Kafka Streams' `num.standby.replicas`): warm copies of the state of the tasks an instance does
//! not own, so that taking a task over restores only what its last owner committed since, not its whole changelog.
//!
//! A follower thread reads every partition of the job's changelogs (`read_committed`, from the beginning, then on as
//! they grow) into the stores of a second instance of the operator, which serves only as their container. Records
//! of the tasks the instance owns are skipped: their state is the running operator's. The follower notes the newest
//! checkpoint of every changelog partition (see [`super::checkpoint`]).
//!
//! - **Promotion** (a task is assigned): once the follower has read the checkpoint of the task's last commit in
//!   every changelog, the task's state moves from the standby stores into the operator's, whole, and the follower
//!   skips the task from then on. A follower that is not there within the wait falls back to a full restore.
//! - **Demotion** (a task is revoked, after its commit): its state moves back into the standby stores, and the
//!   follower applies the task's records again. Records it read (and skipped) before the move are already in the
//!   state; records it reads after the move that the state already holds set keys to the values they have, so the
//!   copy converges to the changelog as the follower reads on, and a promotion waits for the checkpoint anyway.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use adstream_kafka::{is_transient_consumer_error, read, QuietEof};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::checkpoint::{self, CHECKPOINT_KEY};
use super::{ChangelogStore, Operator, RuntimeConfig};

/// How long one poll of the follower waits.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why the standby could not start.
#[derive(Debug, thiserror::Error)]
#[error("standby: {0}")]
pub struct StandbyError(String);

/// What the follower thread and the job thread share.
struct Shared {
    /// The second operator instance whose stores hold the standby copies.
    operator: Box<dyn Operator>,
    /// Store index per changelog topic, in [`Operator::stores`] order.
    topics: Vec<String>,
    /// Newest checkpoint read per (store index, partition).
    checkpoints: HashMap<(usize, i32), u64>,
    /// Tasks the instance owns: the follower skips their records.
    active: BTreeSet<i32>,
    /// Tasks whose copy cannot be trusted (a record it could not apply): a promotion restores them in full.
    broken: BTreeSet<i32>,
    /// Changelog records applied to the copies.
    applied: u64,
}

/// The standby copies and the thread that keeps them warm; see the module doc.
pub(crate) struct Standby {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Starts following the changelogs `topics` (one per store of `operator`, in order), each with `partitions`
    /// partitions.
    pub fn start(
        config: &RuntimeConfig,
        operator: Box<dyn Operator>,
        topics: Vec<String>,
        partitions: i32,
    ) -> Result<Standby, StandbyError> {
        let client = read::reader_config(
            &config.kafka,
            &format!("{}-standby", config.application_id),
            true,
        );
        let consumer: BaseConsumer<QuietEof> = client
            .create_with_context(QuietEof)
            .map_err(|e| StandbyError(format!("consumer: {e}")))?;
        let mut assignment = TopicPartitionList::new();
        for topic in &topics {
            for partition in 0..partitions {
                assignment
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .map_err(|e| StandbyError(format!("{topic}: {e}")))?;
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| StandbyError(format!("assign: {e}")))?;
        let shared = Arc::new(Mutex::new(Shared {
            operator,
            topics,
            checkpoints: HashMap::new(),
            active: BTreeSet::new(),
            broken: BTreeSet::new(),
            applied: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name("standby".into())
                .spawn(move || {
                    let _entered = span.enter();
                    follow(&consumer, &shared, &stop);
                })
                .map_err(|e| StandbyError(format!("thread: {e}")))?
        };
        info!(partitions, "standby: following the changelogs");
        Ok(Standby {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in a store's restore poisons the lock; the copies are then of no use, and the promotion after
        // the panic falls back to a full restore because the follower is gone (it stops waiting).
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves task `partition`'s standby copy into `stores` (the running operator's, in the same order) once the
    /// follower has read the checkpoint of commit `number` (> 0) in every changelog, waiting up to `wait`. Returns
    /// false (and moves nothing) when the copy is not there in time or cannot be trusted, or the task is owned here
    /// already (its copy is not kept): restore it from the changelogs, after [`Standby::activate`].
    pub fn promote(
        &self,
        partition: i32,
        number: u64,
        mut stores: Vec<&mut dyn ChangelogStore>,
        wait: Duration,
    ) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let following = self.thread.as_ref().is_some_and(|t| !t.is_finished());
            let mut shared = self.lock();
            if number == 0
                || !following
                || shared.broken.contains(&partition)
                || shared.active.contains(&partition)
            {
                return false;
            }
            let caught_up = (0..shared.topics.len()).all(|store| {
                shared
                    .checkpoints
                    .get(&(store, partition))
                    .is_some_and(|read| *read >= number)
            });
            if caught_up {
                let mut moved = true;
                for (store, standby) in stores.iter_mut().zip(shared.operator.stores()) {
                    store.drop_partition(partition);
                    if let Some(data) = standby.take_partition(partition) {
                        // Both come from the same job's constructor: another type would be a bug.
                        moved &= store.put_partition(partition, data).is_ok();
                    }
                }
                if !moved {
                    for store in &mut stores {
                        store.drop_partition(partition);
                    }
                    return false;
                }
                shared.active.insert(partition);
                return true;
            }
            drop(shared);
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves task `partition`'s state out of `stores` (after its last commit, when it is handed over) into the
    /// standby copies, which the follower keeps warm from then on.
    pub fn demote(&self, partition: i32, mut stores: Vec<&mut dyn ChangelogStore>) {
        let mut shared = self.lock();
        let mut moved = true;
        for (store, standby) in stores.iter_mut().zip(shared.operator.stores()) {
            standby.drop_partition(partition);
            if let Some(data) = store.take_partition(partition) {
                moved &= standby.put_partition(partition, data).is_ok();
            }
        }
        // The state moved in is the task's as committed: a good copy, whatever the follower met before.
        if moved {
            shared.broken.remove(&partition);
        } else {
            shared.broken.insert(partition);
        }
        shared.active.remove(&partition);
    }

    /// Task `partition` is restored from its changelogs instead of its copy: the copy is dropped, and the follower
    /// skips the task while it is owned here.
    pub fn activate(&self, partition: i32) {
        let mut shared = self.lock();
        for copy in shared.operator.stores() {
            copy.drop_partition(partition);
        }
        shared.active.insert(partition);
    }

    /// Changelog records applied to the copies so far.
    pub fn applied(&self) -> u64 {
        self.lock().applied
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The follower thread: reads the changelogs into the copies until `stop`.
fn follow(consumer: &BaseConsumer<QuietEof>, shared: &Mutex<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let message = match consumer.poll(POLL_INTERVAL) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(error)) if is_transient_consumer_error(&error) => {
                warn!(%error, "standby: while following the changelogs");
                continue;
            }
            Some(Err(error)) => {
                warn!(%error, "standby: the follower stops; take-overs restore in full");
                return;
            }
            Some(Ok(message)) => message,
        };
        let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        let Some(store) = shared.topics.iter().position(|t| t == message.topic()) else {
            continue;
        };
        let partition = message.partition();
        if message.key() == Some(CHECKPOINT_KEY) {
            match checkpoint::parse_checkpoint(message.payload()) {
                Some(number) => {
                    shared.checkpoints.insert((store, partition), number);
                }
                None => {
                    shared.broken.insert(partition);
                }
            }
            continue;
        }
        if shared.active.contains(&partition) || shared.broken.contains(&partition) {
            continue;
        }
        let key = message.key().unwrap_or_default();
        let applied = shared
            .operator
            .stores()
            .into_iter()
            .nth(store)
            .map(|copy| copy.restore(partition, key, message.payload()));
        match applied {
            Some(Ok(())) => shared.applied += 1,
            Some(Err(error)) => {
                warn!(%error, partition, "standby: a changelog record does not apply; the task's copy is dropped");
                for copy in shared.operator.stores() {
                    copy.drop_partition(partition);
                }
                shared.broken.insert(partition);
            }
            None => {}
        }
    }
}
