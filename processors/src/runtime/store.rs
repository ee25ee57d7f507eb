//! Keyed state stores backed by compacted changelog topics.
//!
//! A [`KeyedStore`] holds, per input partition, a map from key to value in memory. Every change marks the key
//! dirty; at each commit the runtime drains the dirty keys into the store's changelog topic (same partition as the
//! input partition, inside the same Kafka transaction as the outputs and the consumer offsets), values as JSON by
//! default and deletions as tombstones. On assignment the runtime replays the changelog partition (read_committed)
//! into the store before the partition's first record is processed, so a restarted instance continues exactly
//! where the last committed transaction left off. A store whose values are large writes them with a compact codec
//! of its own instead ([`ValueCodec`]).
//!
//! Dirty tracking makes the changelog write per commit proportional to the keys changed, not to the records
//! processed: a window updated by a million events is written once per commit interval.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a changelog record could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("store {store}: changelog record for key '{key}' does not decode: {message}")]
pub struct StoreError {
    /// Store name.
    pub store: String,
    /// The record's key, lossily as text.
    pub key: String,
    /// The decoder's message.
    pub message: String,
}

/// How a store writes its values to its changelog and reads them back.
pub trait ValueCodec<V> {
    /// Appends the encoding of `value` to `out`.
    fn encode(value: &V, out: &mut Vec<u8>);
    /// Decodes a changelog value; the message says what is wrong.
    fn decode(bytes: &[u8]) -> Result<V, String>;
}

/// Values as JSON, which any tool reads: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonValues;

impl<V: Serialize + DeserializeOwned> ValueCodec<V> for JsonValues {
    fn encode(value: &V, out: &mut Vec<u8>) {
        // Serializing plain data structs to JSON in memory cannot fail.
        let _ = serde_json::to_writer(out, value);
    }

    fn decode(bytes: &[u8]) -> Result<V, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Receives changelog records: (partition, key, value or None for a deletion).
pub type ChangelogSink<'a> = dyn FnMut(i32, &[u8], Option<&[u8]>) + 'a;

/// One partition's state taken out of a store ([`ChangelogStore::take_partition`]), opaque to the runtime.
pub type PartitionData = Box<dyn std::any::Any + Send>;

/// A store's state per partition. Every record looks its partition up here, at least once per store: foldhash
/// costs a fraction of std's SipHash for an `i32`.
pub(crate) type PartitionMap<State> = HashMap<i32, State, foldhash::fast::RandomState>;

/// [`ChangelogStore::put_partition`] for a store keeping its partitions as `State` in a map.
pub(crate) fn put_partition_state<State: Send + 'static>(
    partitions: &mut PartitionMap<State>,
    partition: i32,
    data: PartitionData,
) -> Result<(), PartitionData> {
    let state = data.downcast::<State>()?;
    partitions.insert(partition, *state);
    Ok(())
}

/// What the runtime needs from any store: restore, flush, drop a partition.
pub trait ChangelogStore {
    /// Store name; the changelog topic is `<application id>-<name>-changelog`.
    fn name(&self) -> &str;
    /// Applies one changelog record during restore (None = tombstone).
    fn restore(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// Hands every key changed since the last flush to `sink` (partition, key, value or None for a deletion) and
    /// forgets that they were changed.
    fn flush(&mut self, sink: &mut ChangelogSink<'_>);
    /// Forgets which keys changed since the last flush without serializing them (nothing will read their
    /// changelog, as in a simulation); returns how many there were.
    fn discard_changes(&mut self) -> u64;
    /// Forgets a partition's state (revoked, or about to be restored again after an aborted transaction).
    fn drop_partition(&mut self, partition: i32);
    /// Takes a partition's state out of the store, whole (None when it holds nothing for it): a standby copy
    /// becomes the task's state, or the other way round, without a copy.
    fn take_partition(&mut self, partition: i32) -> Option<PartitionData>;
    /// Puts a partition's state that [`ChangelogStore::take_partition`] took out of a store of the same type into
    /// this one, replacing what it held; hands it back when it is of another type.
    fn put_partition(&mut self, partition: i32, data: PartitionData) -> Result<(), PartitionData>;
    /// Number of keys held, over all partitions.
    fn len(&self) -> usize;
    /// Whether the store holds no keys.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A store key: written to the changelog as UTF-8 text.
pub trait StoreKey: Clone + Eq + Hash {
    /// The changelog key.
    fn to_bytes(&self) -> Vec<u8>;
    /// Parses a changelog key; None if it is not one of ours.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl StoreKey for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }
}

/// One partition's keys and which of them changed. Every record looks its keys up here: foldhash, randomly seeded
/// per process like std's SipHash (keys come from input records), costs a fraction of SipHash per lookup.
///
/// Values are boxed: growing the map moves each entry, and a restore grows it from empty to every key. With values
/// of a few hundred bytes inline (a window row is 210), the doublings of a million-key restore moved and
/// page-faulted about a gigabyte, over a third of the restore's time, and the final table held half its buckets
/// empty at full value size. Boxed, an entry is the key and a pointer.
struct PartitionState<K, V> {
    entries: HashMap<K, Box<V>, foldhash::fast::RandomState>,
    dirty: HashSet<K, foldhash::fast::RandomState>,
}

impl<K, V> Default for PartitionState<K, V> {
    fn default() -> Self {
        PartitionState {
            entries: HashMap::default(),
            dirty: HashSet::default(),
        }
    }
}

/// An in-memory keyed store per partition with a changelog whose values `C` encodes; see the module doc.
pub struct KeyedStore<K, V, C = JsonValues> {
    name: String,
    partitions: PartitionMap<PartitionState<K, V>>,
    scratch: Vec<u8>,
    codec: PhantomData<fn() -> C>,
}

impl<K: StoreKey, V, C: ValueCodec<V>> KeyedStore<K, V, C> {
    /// An empty store called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        KeyedStore {
            name: name.into(),
            partitions: PartitionMap::default(),
            scratch: Vec::new(),
            codec: PhantomData,
        }
    }

    /// The value of `key` in `partition`.
    pub fn get<Q>(&self, partition: i32, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.partitions
            .get(&partition)?
            .entries
            .get(key)
            .map(|value| &**value)
    }

    /// The value of `key` in `partition`, to change it; marks the key changed.
    pub fn get_mut<Q>(&mut self, partition: i32, key: &Q) -> Option<&mut V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let state = self.partitions.get_mut(&partition)?;
        let value = state.entries.get_mut(key)?;
        if !state.dirty.contains(key) {
            state.dirty.insert(key.to_owned());
        }
        Some(&mut **value)
    }

    /// The value of `key`, inserted with `default()` when absent; marks the key changed. Clones the key only
    /// when it is new to the store or to the set of changed keys (the hot path of a busy key allocates nothing).
    pub fn get_or_insert_with<Q>(
        &mut self,
        partition: i32,
        key: &Q,
        default: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let state = self.partitions.entry(partition).or_default();
        if !state.dirty.contains(key) {
            state.dirty.insert(key.to_owned());
        }
        if !state.entries.contains_key(key) {
            state.entries.insert(key.to_owned(), Box::new(default()));
        }
        state
            .entries
            .get_mut(key)
            .expect("the key was inserted just above")
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, partition: i32, key: K, value: V) {
        let state = self.partitions.entry(partition).or_default();
        state.dirty.insert(key.clone());
        state.entries.insert(key, Box::new(value));
    }

    /// Removes `key`; the changelog gets a tombstone.
    pub fn delete<Q>(&mut self, partition: i32, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let state = self.partitions.get_mut(&partition)?;
        let removed = state.entries.remove(key).map(|value| *value);
        if removed.is_some() {
            state.dirty.insert(key.to_owned());
        }
        removed
    }

    /// Every (partition, key, value) held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &K, &V)> {
        self.partitions
            .iter()
            .flat_map(|(p, s)| s.entries.iter().map(move |(k, v)| (*p, k, &**v)))
    }
}

impl<K, V, C> ChangelogStore for KeyedStore<K, V, C>
where
    K: StoreKey + Send + 'static,
    V: Send + 'static,
    C: ValueCodec<V>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn restore(
        &mut self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let error = |message: String| StoreError {
            store: self.name.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            message,
        };
        let parsed =
            K::from_bytes(key).ok_or_else(|| error("key is not a key of this store".into()))?;
        let state = self.partitions.entry(partition).or_default();
        match value {
            Some(bytes) => {
                let decoded = C::decode(bytes).map_err(error)?;
                state.entries.insert(parsed, Box::new(decoded));
            }
            None => {
                state.entries.remove(&parsed);
            }
        }
        Ok(())
    }

    fn flush(&mut self, sink: &mut ChangelogSink<'_>) {
        for (partition, state) in &mut self.partitions {
            for key in state.dirty.drain() {
                let key_bytes = key.to_bytes();
                match state.entries.get(&key) {
                    Some(value) => {
                        self.scratch.clear();
                        C::encode(value, &mut self.scratch);
                        sink(*partition, &key_bytes, Some(&self.scratch));
                    }
                    None => sink(*partition, &key_bytes, None),
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
        self.partitions.values().map(|s| s.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_writes_each_changed_key_once_and_restore_rebuilds_the_store() {
        let mut store: KeyedStore<String, u64> = KeyedStore::new("counts");
        for _ in 0..1000 {
            *store.get_or_insert_with(1, &"a".to_string(), || 0) += 1;
        }
        store.put(2, "b".into(), 7);
        store.put(2, "gone".into(), 1);
        let mut log = Vec::new();
        store.flush(&mut |p, k, v| log.push((p, k.to_vec(), v.map(<[u8]>::to_vec))));
        assert_eq!(log.len(), 3, "one record per changed key, not per update");
        store.delete(2, &"gone".to_string());
        store.flush(&mut |p, k, v| log.push((p, k.to_vec(), v.map(<[u8]>::to_vec))));
        assert_eq!(log.last(), Some(&(2, b"gone".to_vec(), None)));
        let mut nothing = 0;
        store.flush(&mut |_, _, _| nothing += 1);
        assert_eq!(nothing, 0, "a flush without changes writes nothing");
        // Discarding counts the changed keys and forgets them, like a flush that writes nowhere.
        store.put(1, "a".into(), 1000);
        store.put(2, "c".into(), 3);
        assert_eq!(store.discard_changes(), 2);
        store.flush(&mut |_, _, _| nothing += 1);
        assert_eq!(nothing, 0, "discarded changes are not flushed later");
        store.put(2, "c".into(), 3);
        store.delete(2, &"c".to_string());
        store.flush(&mut |p, k, v| log.push((p, k.to_vec(), v.map(<[u8]>::to_vec))));
        assert_eq!(log.last(), Some(&(2, b"c".to_vec(), None)));

        let mut restored: KeyedStore<String, u64> = KeyedStore::new("counts");
        for (p, k, v) in &log {
            restored.restore(*p, k, v.as_deref()).expect("restores");
        }
        assert_eq!(restored.get(1, "a"), Some(&1000));
        assert_eq!(restored.get(2, "b"), Some(&7));
        assert_eq!(restored.get(2, "gone"), None);
        assert_eq!(restored.len(), 2);
    }

    #[test]
    fn a_foreign_changelog_record_is_an_error_not_a_panic() {
        let mut store: KeyedStore<String, u64> = KeyedStore::new("counts");
        let err = store
            .restore(0, b"k", Some(b"not json"))
            .expect_err("must fail");
        assert!(err.to_string().contains("store counts"), "{err}");
    }
}
