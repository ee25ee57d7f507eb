//! Seen event ids: the store that lets a counting job skip an event produced twice.
//!
//! Platforms and pixels resend events, and a producer may send a record again after a timeout: exactly-once covers
//! Kafka's redelivery of one record, not two records carrying the same `event_id`. A [`SeenIds`] store remembers the
//! ids a job counted, per input partition, for as long as an event of that time could still be counted (the job's
//! lateness retention plus the longest window, its `horizon`): an id that comes again within that time is a
//! duplicate; an event older than that is already refused by the job's lateness rule, so nothing later can be
//! counted twice.
//!
//! **Compact.** An id is kept as the first 64 bits of SHA-256 over (scope, id), where the scope names what the id
//! identifies (the input and its key): 8 bytes per id whatever the id's length, in a hash set for membership and in
//! the list of its event-time bucket for expiry (see [`SeenIds::memory_bytes`]). Two distinct ids collide with
//! probability about n²/2⁶⁵ for n ids held (10⁻⁶ at 6 million), and a collision skips one event. SHA-256 rather
//! than a faster hash because the value is persisted: it must not change with the Rust version or the process.
//!
//! **Persisted like other state.** Ids are grouped in one-hour buckets of event time. At each commit, the ids a
//! bucket gained since the last commit go to the changelog as one record (key `<bucket start ms>/<chunk>`, value the
//! 8-byte hashes, little-endian), in the same transaction as the outputs and offsets, so a restored instance skips
//! exactly the ids whose events were counted in committed state. Writes are proportional to the new ids, not to the
//! ids held. A bucket expires as a whole once the watermark passes its end plus the horizon: its ids leave the set
//! and each of its chunks gets a tombstone.

use std::collections::{BTreeMap, HashSet};

use sha2::Digest;

use super::store::{
    put_partition_state, ChangelogSink, ChangelogStore, PartitionData, PartitionMap, StoreError,
};

/// Width of the event-time buckets in which ids are written and expire.
pub const BUCKET_MS: i64 = 3_600_000;

/// One partition's ids.
#[derive(Default)]
struct PartitionIds {
    /// Every id held, for membership (foldhash, randomly seeded: the ids come from input).
    seen: HashSet<u64, foldhash::fast::RandomState>,
    /// The ids by the event-time bucket of their first occurrence, for expiry and the changelog.
    buckets: BTreeMap<i64, Bucket>,
    /// (bucket start, chunks written) of buckets expired since the last flush: their chunks get tombstones.
    expired: Vec<(i64, u32)>,
}

/// The ids of one bucket.
#[derive(Default)]
struct Bucket {
    ids: Vec<u64>,
    /// `ids[..written]` are in the changelog.
    written: usize,
    /// Changelog records written for the bucket (keys `<bucket>/0` to `<bucket>/<chunks - 1>`).
    chunks: u32,
}

/// A store of seen event ids per partition with a changelog; see the module doc.
pub struct SeenIds {
    name: String,
    horizon_ms: i64,
    partitions: PartitionMap<PartitionIds>,
    scratch: Vec<u8>,
}

impl SeenIds {
    /// An empty store called `name` remembering an id until the watermark passes its event time plus `horizon_ms`
    /// (rounded up to the end of its hour bucket): at least as long as the job accepts an event of that time.
    pub fn new(name: impl Into<String>, horizon_ms: i64) -> SeenIds {
        SeenIds {
            name: name.into(),
            horizon_ms: horizon_ms.max(0),
            partitions: PartitionMap::default(),
            scratch: Vec::new(),
        }
    }

    /// Records id `id` of `scope` (what the id identifies, e.g. `["impression", <campaign id>]`) seen in
    /// `partition` with event time `event_time_ms`; false when it was seen already: the event is a duplicate.
    pub fn insert(&mut self, partition: i32, event_time_ms: i64, scope: &[&str], id: &str) -> bool {
        let hash = id_hash(scope, id);
        let state = self.partitions.entry(partition).or_default();
        if !state.seen.insert(hash) {
            return false;
        }
        let bucket = event_time_ms
            .div_euclid(BUCKET_MS)
            .saturating_mul(BUCKET_MS);
        state.buckets.entry(bucket).or_default().ids.push(hash);
        true
    }

    /// Forgets the ids of every partition whose watermark (from `watermark_of`) passed their bucket's end plus
    /// the horizon; their changelog records get tombstones at the next flush.
    pub fn expire(&mut self, watermark_of: impl Fn(i32) -> Option<i64>) {
        let keep = BUCKET_MS.saturating_add(self.horizon_ms);
        for (partition, state) in &mut self.partitions {
            let Some(watermark) = watermark_of(*partition) else {
                continue;
            };
            while let Some(entry) = state.buckets.first_entry() {
                if entry.key().saturating_add(keep) > watermark {
                    break;
                }
                let (start, bucket) = entry.remove_entry();
                for id in &bucket.ids {
                    state.seen.remove(id);
                }
                if bucket.chunks > 0 {
                    state.expired.push((start, bucket.chunks));
                }
            }
        }
    }

    /// Bytes of memory the ids take (hash set slots with their control bytes, and the buckets' lists), an
    /// estimate from the collections' capacities.
    pub fn memory_bytes(&self) -> usize {
        self.partitions
            .values()
            .map(|state| {
                let set = state.seen.capacity() * (std::mem::size_of::<u64>() + 1);
                let lists: usize = state
                    .buckets
                    .values()
                    .map(|b| b.ids.capacity() * std::mem::size_of::<u64>())
                    .sum();
                set + lists
            })
            .sum()
    }
}

/// The first 64 bits of SHA-256 over each part of `scope` followed by a zero byte, then `id`.
fn id_hash(scope: &[&str], id: &str) -> u64 {
    let mut hasher = sha2::Sha256::new();
    for part in scope {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// `<bucket start>/<chunk>`.
fn chunk_key(bucket: i64, chunk: u32) -> Vec<u8> {
    format!("{bucket}/{chunk}").into_bytes()
}

fn parse_chunk_key(key: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(key).ok()?;
    let (bucket, chunk) = text.split_once('/')?;
    Some((bucket.parse().ok()?, chunk.parse().ok()?))
}

impl ChangelogStore for SeenIds {
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
        let (start, chunk) =
            parse_chunk_key(key).ok_or_else(|| error("key is not <bucket ms>/<chunk>"))?;
        let state = self.partitions.entry(partition).or_default();
        match value {
            Some(bytes) => {
                if bytes.len() % 8 != 0 {
                    return Err(error("value is not a list of 8-byte ids"));
                }
                let bucket = state.buckets.entry(start).or_default();
                for raw in bytes.chunks_exact(8) {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(raw);
                    let id = u64::from_le_bytes(id);
                    if state.seen.insert(id) {
                        bucket.ids.push(id);
                    }
                }
                bucket.written = bucket.ids.len();
                bucket.chunks = bucket.chunks.max(chunk.saturating_add(1));
            }
            None => {
                // A bucket expires whole: its first tombstone removes it, the others find nothing.
                if let Some(bucket) = state.buckets.remove(&start) {
                    for id in &bucket.ids {
                        state.seen.remove(id);
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut ChangelogSink<'_>) {
        for (partition, state) in &mut self.partitions {
            for (start, chunks) in state.expired.drain(..) {
                for chunk in 0..chunks {
                    sink(*partition, &chunk_key(start, chunk), None);
                }
            }
            for (start, bucket) in &mut state.buckets {
                if bucket.written == bucket.ids.len() {
                    continue;
                }
                self.scratch.clear();
                for id in &bucket.ids[bucket.written..] {
                    self.scratch.extend_from_slice(&id.to_le_bytes());
                }
                sink(
                    *partition,
                    &chunk_key(*start, bucket.chunks),
                    Some(&self.scratch),
                );
                bucket.written = bucket.ids.len();
                bucket.chunks += 1;
            }
        }
    }

    fn discard_changes(&mut self) -> u64 {
        let mut changed = 0;
        for state in self.partitions.values_mut() {
            changed += state.expired.len() as u64;
            state.expired.clear();
            for bucket in state.buckets.values_mut() {
                if bucket.written < bucket.ids.len() {
                    bucket.written = bucket.ids.len();
                    changed += 1;
                }
            }
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
        self.partitions.values().map(|state| state.seen.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_709_546_400_000;
    const HOUR: i64 = BUCKET_MS;

    type Log = Vec<(i32, Vec<u8>, Option<Vec<u8>>)>;

    fn flush_into(store: &mut SeenIds, log: &mut Log) {
        store.flush(&mut |p, k, v| log.push((p, k.to_vec(), v.map(<[u8]>::to_vec))));
    }

    fn restored(log: &Log, horizon_ms: i64) -> SeenIds {
        let mut store = SeenIds::new("seen", horizon_ms);
        for (p, k, v) in log {
            store.restore(*p, k, v.as_deref()).expect("restores");
        }
        store
    }

    #[test]
    fn a_second_copy_is_a_duplicate_in_its_scope_and_partition_only() {
        let mut store = SeenIds::new("seen", HOUR);
        assert!(store.insert(0, T0, &["impression", "c1"], "e1"));
        assert!(!store.insert(0, T0, &["impression", "c1"], "e1"));
        // A copy with another event time is the same event.
        assert!(!store.insert(0, T0 + 5 * HOUR, &["impression", "c1"], "e1"));
        assert!(store.insert(0, T0, &["click", "c1"], "e1"), "another scope");
        assert!(
            store.insert(1, T0, &["impression", "c1"], "e1"),
            "another task"
        );
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn ids_leave_after_their_bucket_end_plus_horizon_and_the_changelog_follows() {
        let horizon = 2 * HOUR;
        let mut store = SeenIds::new("seen", horizon);
        let mut log = Log::new();
        assert!(store.insert(0, T0 + 10, &["s"], "old"));
        assert!(store.insert(0, T0 + HOUR + 10, &["s"], "new"));
        flush_into(&mut store, &mut log);
        assert!(store.insert(0, T0 + 20, &["s"], "old-2"));
        flush_into(&mut store, &mut log);
        assert_eq!(
            log.len(),
            3,
            "one record per bucket and commit with new ids"
        );
        let mut nothing = 0;
        store.flush(&mut |_, _, _| nothing += 1);
        assert_eq!(nothing, 0, "a flush without new ids writes nothing");

        // One millisecond before the first bucket's end plus the horizon: everything is kept.
        let first_end = T0 + HOUR + horizon;
        store.expire(|_| Some(first_end - 1));
        assert!(!store.insert(0, T0 + 10, &["s"], "old"));
        store.expire(|_| Some(first_end));
        assert_eq!(store.len(), 1, "the first bucket left");
        flush_into(&mut store, &mut log);
        let tombstones: Vec<&Vec<u8>> = log
            .iter()
            .filter(|(_, _, v)| v.is_none())
            .map(|(_, k, _)| k)
            .collect();
        assert_eq!(
            tombstones,
            vec![&chunk_key(T0, 0), &chunk_key(T0, 1)],
            "every chunk of the expired bucket"
        );

        let mut back = restored(&log, horizon);
        assert_eq!(back.len(), 1);
        assert!(
            !back.insert(0, T0 + HOUR + 10, &["s"], "new"),
            "kept id restored"
        );
        assert!(
            back.insert(0, T0 + 10, &["s"], "old"),
            "expired id forgotten"
        );
    }

    #[test]
    fn restore_continues_the_chunk_numbering() {
        let mut store = SeenIds::new("seen", HOUR);
        let mut log = Log::new();
        store.insert(3, T0, &["s"], "a");
        flush_into(&mut store, &mut log);
        let mut back = restored(&log, HOUR);
        back.insert(3, T0, &["s"], "b");
        flush_into(&mut back, &mut log);
        assert_eq!(
            log.last().map(|(_, k, _)| k.clone()),
            Some(chunk_key(T0, 1))
        );
        let again = restored(&log, HOUR);
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn a_foreign_changelog_record_is_an_error_not_a_panic() {
        let mut store = SeenIds::new("seen", HOUR);
        assert!(store.restore(0, b"nonsense", Some(&[0; 8])).is_err());
        let err = store
            .restore(0, b"0/0", Some(&[1, 2, 3]))
            .expect_err("not whole ids");
        assert!(err.to_string().contains("store seen"), "{err}");
    }

    /// Measures the memory per id held (printed; run with `--nocapture`) and bounds it.
    #[test]
    fn an_id_takes_a_few_tens_of_bytes() {
        let mut store = SeenIds::new("seen", 48 * HOUR);
        let n = 200_000;
        for i in 0..n {
            store.insert(
                0,
                T0 + i * 1_000,
                &["impression", "c1"],
                &format!("evt-{i:012}"),
            );
        }
        let per_id = store.memory_bytes() as f64 / n as f64;
        let mut changelog = 0usize;
        store.flush(&mut |_, _, v| changelog += v.map_or(0, <[u8]>::len));
        println!(
            "seen ids: {n} ids over {} hour buckets, {per_id:.1} bytes per id in memory, {:.1} in the changelog",
            store.partitions[&0].buckets.len(),
            changelog as f64 / n as f64
        );
        assert_eq!(changelog, 8 * n as usize);
        assert!(per_id <= 40.0, "{per_id} bytes per id");
    }
}
