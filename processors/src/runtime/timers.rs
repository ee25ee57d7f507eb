//! Timers: callbacks an operator schedules on stream time or on wall-clock time, Kafka Streams' punctuators.
//!
//! A [`Timers`] store holds, per task (input partition), at most one timer per (domain, key) with the time it is
//! due. [`Timers::due`] takes out the timers whose time has come: on [`TimeDomain::StreamTime`] when the task's
//! watermark reached the due time, on [`TimeDomain::WallClock`] when the clock did (the wall clock live, the
//! simulation's event-time clock in a simulation or backtest, like every `now` an operator sees). An operator calls
//! it from [`super::Operator::on_commit`], which the runtime calls at every commit whether or not records arrived,
//! and handles each fired timer there (re-scheduling it if it repeats), so a timer can act on a key that receives no
//! input.
//!
//! Timers are state like any other: every change goes to the store's changelog (key `s/<key>` or `w/<key>`, value
//! the due time in epoch milliseconds as text, a tombstone when it fires or is cancelled) in the commit's
//! transaction, and a restored task gets its timers back with their due times, after a SIGKILL as after a
//! rebalance. A timer that came due while the job was down fires at the first commit after the restore.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::store::{
    put_partition_state, ChangelogSink, ChangelogStore, PartitionData, PartitionMap, StoreError,
};

/// Which clock a timer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// The task's event-time watermark.
    StreamTime,
    /// The wall clock (the event-time clock in a simulation).
    WallClock,
}

impl TimeDomain {
    fn prefix(self) -> &'static str {
        match self {
            TimeDomain::StreamTime => "s/",
            TimeDomain::WallClock => "w/",
        }
    }
}

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The task it belongs to.
    pub partition: i32,
    /// Its clock.
    pub domain: TimeDomain,
    /// Its key.
    pub key: String,
    /// When it was due (epoch millis).
    pub due_ms: i64,
}

/// One task's timers.
#[derive(Default)]
struct PartitionTimers {
    due: HashMap<(TimeDomain, String), i64>,
    /// (domain, due, key): the first due first.
    queue: BTreeSet<(TimeDomain, i64, String)>,
    /// Timers changed since the last flush.
    dirty: HashSet<(TimeDomain, String)>,
}

impl PartitionTimers {
    fn remove(&mut self, domain: TimeDomain, key: &str) -> Option<i64> {
        let owned = (domain, key.to_owned());
        let due = self.due.remove(&owned)?;
        self.queue.remove(&(domain, due, owned.1.clone()));
        self.dirty.insert(owned);
        Some(due)
    }
}

/// A store of timers per task with a changelog; see the module doc.
pub struct Timers {
    name: String,
    partitions: PartitionMap<PartitionTimers>,
}

impl Timers {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Timers {
        Timers {
            name: name.into(),
            partitions: PartitionMap::default(),
        }
    }

    /// Sets timer `key` of `domain` in task `partition` to `due_ms`, replacing the one it had.
    pub fn schedule(&mut self, partition: i32, domain: TimeDomain, key: &str, due_ms: i64) {
        let state = self.partitions.entry(partition).or_default();
        state.remove(domain, key);
        state.due.insert((domain, key.to_owned()), due_ms);
        state.queue.insert((domain, due_ms, key.to_owned()));
        state.dirty.insert((domain, key.to_owned()));
    }

    /// When timer `key` of `domain` in task `partition` is due, if it is set.
    pub fn get(&self, partition: i32, domain: TimeDomain, key: &str) -> Option<i64> {
        self.partitions
            .get(&partition)?
            .due
            .get(&(domain, key.to_owned()))
            .copied()
    }

    /// Removes timer `key` of `domain` in task `partition`; returns when it was due.
    pub fn cancel(&mut self, partition: i32, domain: TimeDomain, key: &str) -> Option<i64> {
        self.partitions.get_mut(&partition)?.remove(domain, key)
    }

    /// Takes out every timer that came due: stream-time timers of a task whose watermark (from `watermark_of`)
    /// reached them, wall-clock timers `now_ms` reached; by task, then domain, then due time.
    pub fn due(&mut self, watermark_of: impl Fn(i32) -> Option<i64>, now_ms: i64) -> Vec<Fired> {
        let mut fired = Vec::new();
        let mut partitions: Vec<i32> = self.partitions.keys().copied().collect();
        partitions.sort_unstable();
        for partition in partitions {
            let watermark = watermark_of(partition);
            let Some(state) = self.partitions.get_mut(&partition) else {
                continue;
            };
            for (domain, now) in [
                (TimeDomain::StreamTime, watermark),
                (TimeDomain::WallClock, Some(now_ms)),
            ] {
                let Some(now) = now else {
                    continue;
                };
                while let Some((_, due_ms, key)) = state
                    .queue
                    .range((domain, i64::MIN, String::new())..)
                    .next()
                    .filter(|(d, due, _)| *d == domain && *due <= now)
                    .cloned()
                {
                    state.remove(domain, &key);
                    fired.push(Fired {
                        partition,
                        domain,
                        key,
                        due_ms,
                    });
                }
            }
        }
        fired
    }

    /// Timers held, over all tasks.
    pub fn count(&self) -> usize {
        self.partitions.values().map(|state| state.due.len()).sum()
    }
}

impl ChangelogStore for Timers {
    fn name(&self) -> &str {
        &self.name
    }

    fn restore(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let error = |message: &str| StoreError {
            store: self.name.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            message: message.to_owned(),
        };
        let text = std::str::from_utf8(key).map_err(|_| error("key is not UTF-8"))?;
        let (domain, timer) =
            if let Some(timer) = text.strip_prefix(TimeDomain::StreamTime.prefix()) {
                (TimeDomain::StreamTime, timer)
            } else if let Some(timer) = text.strip_prefix(TimeDomain::WallClock.prefix()) {
                (TimeDomain::WallClock, timer)
            } else {
                return Err(error("key is not s/<key> or w/<key>"));
            };
        let state = self.partitions.entry(partition).or_default();
        state.remove(domain, timer);
        if let Some(value) = value {
            let due_ms: i64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| error("value is not a time in epoch millis"))?;
            state.due.insert((domain, timer.to_owned()), due_ms);
            state.queue.insert((domain, due_ms, timer.to_owned()));
        }
        // Restored, not changed: nothing to write back.
        state.dirty.remove(&(domain, timer.to_owned()));
        Ok(())
    }

    fn flush(&mut self, sink: &mut ChangelogSink<'_>) {
        for (partition, state) in &mut self.partitions {
            for (domain, key) in state.dirty.drain() {
                let changelog_key = format!("{}{key}", domain.prefix());
                match state.due.get(&(domain, key)) {
                    Some(due) => sink(
                        *partition,
                        changelog_key.as_bytes(),
                        Some(due.to_string().as_bytes()),
                    ),
                    None => sink(*partition, changelog_key.as_bytes(), None),
                }
            }
        }
    }

    fn discard_changes(&mut self) -> u64 {
        let mut changed = 0;
        for state in self.partitions.values_mut() {
            changed += state.dirty.len() as u64;
            state.dirty.clear();
        }
        changed
    }

    fn drop_partition(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    fn take_partition(&mut self, partition: i32) -> Option<PartitionData> {
        let state = self.partitions.remove(&partition)?;
        Some(Box::new(state))
    }

    fn put_partition(&mut self, partition: i32, data: PartitionData) -> Result<(), PartitionData> {
        put_partition_state(&mut self.partitions, partition, data)
    }

    fn len(&self) -> usize {
        self.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Vec<(i32, Vec<u8>, Option<Vec<u8>>)>;

    fn flush_into(timers: &mut Timers, log: &mut Log) {
        timers.flush(&mut |p, k, v| log.push((p, k.to_vec(), v.map(<[u8]>::to_vec))));
    }

    #[test]
    fn timers_fire_once_their_clock_reaches_them_in_due_order() {
        let mut timers = Timers::new("timers");
        timers.schedule(0, TimeDomain::StreamTime, "b", 200);
        timers.schedule(0, TimeDomain::StreamTime, "a", 100);
        timers.schedule(0, TimeDomain::StreamTime, "later", 900);
        timers.schedule(0, TimeDomain::WallClock, "w", 50);
        timers.schedule(1, TimeDomain::StreamTime, "other-task", 100);
        // Rescheduling replaces.
        timers.schedule(0, TimeDomain::StreamTime, "a", 150);
        assert_eq!(timers.count(), 5);
        let fired = timers.due(|p| (p == 0).then_some(200), 10);
        let names: Vec<(&str, i64)> = fired.iter().map(|f| (f.key.as_str(), f.due_ms)).collect();
        assert_eq!(
            names,
            [("a", 150), ("b", 200)],
            "task 1 has no watermark yet"
        );
        assert!(
            timers.due(|p| (p == 0).then_some(200), 10).is_empty(),
            "once"
        );
        let wall = timers.due(|_| None, 50);
        assert_eq!(wall.len(), 1);
        assert_eq!(wall[0].domain, TimeDomain::WallClock);
        assert_eq!(timers.get(0, TimeDomain::StreamTime, "later"), Some(900));
        assert_eq!(timers.cancel(0, TimeDomain::StreamTime, "later"), Some(900));
        assert_eq!(timers.count(), 1);
    }

    #[test]
    fn the_changelog_restores_pending_timers_and_forgets_fired_ones() {
        let mut timers = Timers::new("timers");
        let mut log = Log::new();
        timers.schedule(2, TimeDomain::StreamTime, "cmp-1", 1_000);
        timers.schedule(2, TimeDomain::StreamTime, "cmp-2", 5_000);
        timers.schedule(2, TimeDomain::WallClock, "cmp-1", 7_000);
        flush_into(&mut timers, &mut log);
        assert_eq!(log.len(), 3);
        let fired = timers.due(|_| Some(1_000), 0);
        assert_eq!(fired.len(), 1);
        timers.schedule(2, TimeDomain::StreamTime, "cmp-1", 2_000);
        flush_into(&mut timers, &mut log);
        let mut nothing = 0;
        timers.flush(&mut |_, _, _| nothing += 1);
        assert_eq!(nothing, 0, "a flush without changes writes nothing");

        let mut restored = Timers::new("timers");
        for (p, k, v) in &log {
            restored.restore(*p, k, v.as_deref()).expect("restores");
        }
        assert_eq!(restored.count(), 3);
        assert_eq!(
            restored.get(2, TimeDomain::StreamTime, "cmp-1"),
            Some(2_000)
        );
        assert_eq!(restored.get(2, TimeDomain::WallClock, "cmp-1"), Some(7_000));
        restored.flush(&mut |_, _, _| nothing += 1);
        assert_eq!(nothing, 0, "restoring changes nothing to write back");
        let fired = restored.due(|_| Some(5_000), 7_000);
        assert_eq!(fired.len(), 3);
    }

    #[test]
    fn a_foreign_changelog_record_is_an_error_not_a_panic() {
        let mut timers = Timers::new("timers");
        assert!(timers.restore(0, b"x/key", Some(b"1")).is_err());
        let err = timers
            .restore(0, b"s/key", Some(b"soon"))
            .expect_err("not a time");
        assert!(err.to_string().contains("store timers"), "{err}");
    }
}
