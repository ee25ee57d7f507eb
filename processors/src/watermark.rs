//! Per-partition event-time watermarks with idle partitions.
//!
//! A task reads several partitions (of one or more input topics), each roughly ordered by event time but at its
//! own pace. The task's watermark — the event time up to which it assumes it has seen everything — is what the
//! lateness rule in [`crate::window`] compares windows against, so it must not run ahead of a slow partition
//! (that would finalize windows the slow partition still has events for), yet must not stall forever behind a
//! partition that simply receives no traffic.
//!
//! # Rule
//!
//! - Each tracked partition remembers the highest event time it has seen and the wall-clock time of its last
//!   activity (assignment or event).
//! - A partition is **idle** when it has had no event for longer than the idle timeout (wall clock, strictly
//!   greater). Idle partitions do not hold the watermark back. Any event makes the partition active again.
//! - The candidate watermark is the minimum, over active partitions, of their highest event time. An active
//!   partition that has not seen any event yet holds the watermark where it is.
//! - If no partition is active (all idle), the candidate is the highest event time over all partitions.
//! - The watermark never goes backwards: [`PartitionWatermarks::current`] returns the maximum of the candidate and
//!   the last value it returned, so a partition that is assigned or wakes up with older data does not move it
//!   back. It is `None` until some partition has seen an event.
//!
//! Wall-clock time is always passed in (`now_ms`), never read here, so live runs, tests and backtests behave
//! the same; callers should pass a monotonic clock.
//!
//! Partitions are identified by a caller-chosen key `K` (for a task reading several topics, e.g. `(u32, i32)`
//! for topic index and partition number).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// What the watermark tracks about one partition.
#[derive(Debug, Clone, Copy)]
struct PartitionProgress {
    /// Highest event time seen on the partition; `None` until its first event.
    max_event_time_ms: Option<i64>,
    /// Wall-clock time of the partition's assignment or latest event.
    last_activity_ms: i64,
}

/// The watermark of a task over the partitions it consumes; see the module documentation for the rule.
#[derive(Debug, Clone)]
pub struct PartitionWatermarks<K> {
    idle_timeout_ms: i64,
    partitions: HashMap<K, PartitionProgress>,
    /// The last watermark returned by `current`, which later values never go below.
    emitted_ms: Option<i64>,
}

impl<K: Copy + Eq + Hash> PartitionWatermarks<K> {
    /// Tracks no partitions yet. A partition without events for longer than `idle_timeout` (wall clock) stops
    /// holding the watermark back. The timeout is taken in whole milliseconds; one too large for `i64`
    /// milliseconds means partitions never become idle.
    pub fn new(idle_timeout: Duration) -> Self {
        PartitionWatermarks {
            idle_timeout_ms: i64::try_from(idle_timeout.as_millis()).unwrap_or(i64::MAX),
            partitions: HashMap::new(),
            emitted_ms: None,
        }
    }

    /// Starts tracking `partition`, assigned at wall-clock `now_ms`. Until it sees an event it holds the watermark
    /// where it is, for at most the idle timeout. Assigning a partition that is already tracked changes nothing.
    pub fn assign(&mut self, partition: K, now_ms: i64) {
        self.partitions
            .entry(partition)
            .or_insert(PartitionProgress {
                max_event_time_ms: None,
                last_activity_ms: now_ms,
            });
    }

    /// Stops tracking `partition`; it no longer holds the watermark back. Revoking an untracked partition changes
    /// nothing. The watermark already returned stays.
    pub fn revoke(&mut self, partition: K) {
        self.partitions.remove(&partition);
    }

    /// Records an event with `event_time_ms` read from `partition` at wall-clock `now_ms`, which makes the
    /// partition active. Returns `false`, and records nothing, if the partition is not assigned (for example a
    /// record still buffered from a partition revoked in a rebalance). O(1), does not allocate.
    pub fn observe(&mut self, partition: K, event_time_ms: i64, now_ms: i64) -> bool {
        let Some(progress) = self.partitions.get_mut(&partition) else {
            return false;
        };
        progress.max_event_time_ms = Some(
            progress
                .max_event_time_ms
                .map_or(event_time_ms, |max| max.max(event_time_ms)),
        );
        progress.last_activity_ms = now_ms;
        true
    }

    /// Keeps `partition` active at wall-clock `now_ms` without an event: the caller knows it still has records to
    /// deliver (it lags behind its end), so a pause in delivery (a broker restart, a slow fetch) is a stall, not
    /// idleness, and must not let the other partitions move the watermark past its backlog.
    pub fn mark_active(&mut self, partition: K, now_ms: i64) {
        if let Some(progress) = self.partitions.get_mut(&partition) {
            progress.last_activity_ms = progress.last_activity_ms.max(now_ms);
        }
    }

    /// The task's watermark at wall-clock `now_ms`: `None` until some partition has seen an event, and never lower
    /// than a value returned before. O(number of partitions).
    pub fn current(&mut self, now_ms: i64) -> Option<i64> {
        let mut any_active = false;
        let mut active_without_events = false;
        let mut slowest_active_ms: Option<i64> = None;
        let mut fastest_ms: Option<i64> = None;
        for progress in self.partitions.values() {
            // `Option` orders `None` below every `Some`, so this ignores partitions without events.
            fastest_ms = fastest_ms.max(progress.max_event_time_ms);
            if now_ms.saturating_sub(progress.last_activity_ms) > self.idle_timeout_ms {
                continue;
            }
            any_active = true;
            match progress.max_event_time_ms {
                Some(max_ms) => {
                    slowest_active_ms =
                        Some(slowest_active_ms.map_or(max_ms, |slowest| slowest.min(max_ms)))
                }
                None => active_without_events = true,
            }
        }
        let candidate_ms = if !any_active {
            fastest_ms
        } else if active_without_events {
            None
        } else {
            slowest_active_ms
        };
        self.emitted_ms = self.emitted_ms.max(candidate_ms);
        self.emitted_ms
    }

    /// The task resumes where an earlier owner's watermark was (persisted with its last commit): the watermark
    /// never goes below `watermark_ms`, so that a restart or a hand-over does not make events the task already
    /// judged late (and whose windows it dropped) count again.
    pub fn resume_at(&mut self, watermark_ms: i64) {
        self.emitted_ms = self.emitted_ms.max(Some(watermark_ms));
    }

    /// Every partition has delivered all it will (the input was read to its end): the watermark moves to the
    /// highest event time seen on any partition, as if all were idle, and stays at least there.
    pub fn finish(&mut self) -> Option<i64> {
        let fastest_ms = self
            .partitions
            .values()
            .filter_map(|p| p.max_event_time_ms)
            .max();
        self.emitted_ms = self.emitted_ms.max(fastest_ms);
        self.emitted_ms
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lagging_partition_kept_active_holds_the_watermark_through_a_stall() {
        let mut w = super::PartitionWatermarks::new(std::time::Duration::from_secs(30));
        w.assign(0, 0);
        w.assign(1, 0);
        w.observe(0, 1_000, 0);
        w.observe(1, 9_000, 0);
        // 60 s without records from either; partition 0 still has a backlog.
        w.mark_active(0, 60_000);
        assert_eq!(
            w.current(60_000),
            Some(1_000),
            "the stalled partition with a backlog holds it"
        );
        // Without the mark both would be idle and the watermark would jump to 9 000.
        assert_eq!(w.current(200_000), Some(9_000));
    }

    #[test]
    fn finishing_moves_the_watermark_past_a_sparse_partition() {
        let mut w = super::PartitionWatermarks::new(std::time::Duration::from_secs(30));
        w.assign(0, 0);
        w.assign(1, 0);
        w.observe(0, 1_000, 0);
        w.observe(1, 9_000, 0);
        assert_eq!(
            w.current(0),
            Some(1_000),
            "the sparse partition holds it while active"
        );
        assert_eq!(w.finish(), Some(9_000));
        assert_eq!(w.current(0), Some(9_000), "and it never goes back");
    }

    use super::*;

    const IDLE_TIMEOUT_MS: i64 = 10_000;

    fn watermarks() -> PartitionWatermarks<(u32, i32)> {
        PartitionWatermarks::new(Duration::from_millis(IDLE_TIMEOUT_MS as u64))
    }

    const SLOW: (u32, i32) = (0, 1);
    const FAST: (u32, i32) = (0, 0);
    const OTHER_TOPIC: (u32, i32) = (1, 0);

    #[test]
    fn no_events_means_no_watermark() {
        let mut wm = watermarks();
        assert_eq!(wm.current(0), None);
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        assert_eq!(wm.current(5_000), None);
        // Even once they are idle, partitions without events give no watermark.
        assert_eq!(wm.current(60_000), None);
    }

    #[test]
    fn slow_partition_holds_the_watermark() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        assert!(wm.observe(FAST, 1_000, 0));
        // SLOW has no event yet and is not idle: it holds the watermark, which has no value yet.
        assert_eq!(wm.current(100), None);
        assert!(wm.observe(SLOW, 2_000, 200));
        assert!(wm.observe(FAST, 5_000, 300));
        assert_eq!(wm.current(400), Some(2_000));
        // Older events do not lower a partition's maximum.
        assert!(wm.observe(FAST, 3_000, 500));
        assert_eq!(wm.current(600), Some(2_000));
    }

    #[test]
    fn idle_partition_releases_and_reactivated_partition_does_not_regress() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        wm.observe(SLOW, 2_000, 0);
        wm.observe(FAST, 9_000, 10_000);
        // SLOW's last event was at wall clock 0: at exactly the timeout it still holds...
        assert_eq!(wm.current(10_000), Some(2_000));
        // ...one millisecond later it is idle and the watermark follows FAST.
        assert_eq!(wm.current(10_001), Some(9_000));
        // SLOW wakes up with older data: it is active again, but the watermark does not go back.
        wm.observe(SLOW, 3_000, 12_000);
        assert_eq!(wm.current(12_000), Some(9_000));
        wm.observe(FAST, 20_000, 13_000);
        assert_eq!(wm.current(13_000), Some(9_000));
        // Once SLOW overtakes the previous watermark, it holds the watermark again.
        wm.observe(SLOW, 15_000, 14_000);
        assert_eq!(wm.current(14_000), Some(15_000));
    }

    #[test]
    fn revoke_releases_the_hold() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        wm.observe(FAST, 5_000, 0);
        wm.observe(SLOW, 1_000, 0);
        assert_eq!(wm.current(0), Some(1_000));
        wm.revoke(SLOW);
        assert_eq!(wm.current(0), Some(5_000));
        // Events from the revoked partition are not counted.
        assert!(!wm.observe(SLOW, 100, 1));
        assert_eq!(wm.current(1), Some(5_000));
        // Revoking everything keeps the last watermark.
        wm.revoke(FAST);
        assert_eq!(wm.current(2), Some(5_000));
    }

    #[test]
    fn all_idle_gives_the_maximum() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        wm.assign(OTHER_TOPIC, 0);
        wm.observe(FAST, 7_000, 0);
        wm.observe(SLOW, 4_000, 0);
        assert_eq!(wm.current(0), None);
        // All three idle (OTHER_TOPIC never saw an event): the highest maximum wins.
        assert_eq!(wm.current(20_000), Some(7_000));
    }

    #[test]
    fn newly_assigned_partition_holds_until_it_sees_an_event_or_goes_idle() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.observe(FAST, 5_000, 0);
        assert_eq!(wm.current(0), Some(5_000));
        wm.assign(SLOW, 1_000);
        wm.observe(FAST, 8_000, 2_000);
        assert_eq!(wm.current(2_000), Some(5_000));
        assert_eq!(wm.current(11_000), Some(5_000));
        // SLOW was assigned at 1_000 and saw nothing: idle after 11_000.
        assert_eq!(wm.current(11_001), Some(8_000));
    }

    #[test]
    fn newly_assigned_partition_with_older_data_does_not_move_the_watermark_back() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.observe(FAST, 5_000, 0);
        assert_eq!(wm.current(0), Some(5_000));
        wm.assign(OTHER_TOPIC, 100);
        wm.observe(OTHER_TOPIC, 1_000, 100);
        assert_eq!(wm.current(100), Some(5_000));
        wm.observe(OTHER_TOPIC, 6_000, 200);
        wm.observe(FAST, 7_000, 200);
        assert_eq!(wm.current(200), Some(6_000));
    }

    #[test]
    fn reassigning_a_tracked_partition_keeps_its_progress() {
        let mut wm = watermarks();
        wm.assign(FAST, 0);
        wm.observe(FAST, 5_000, 0);
        wm.assign(FAST, 50_000);
        // Still idle since wall clock 0, so with no other partition its maximum is the watermark.
        assert_eq!(wm.current(50_000), Some(5_000));
        wm.assign(SLOW, 50_000);
        wm.observe(SLOW, 6_000, 50_000);
        assert_eq!(wm.current(50_000), Some(6_000));
    }

    #[test]
    fn observe_on_unassigned_partition_is_rejected() {
        let mut wm = watermarks();
        assert!(!wm.observe(FAST, 1_000, 0));
        assert_eq!(wm.current(0), None);
    }

    #[test]
    fn huge_idle_timeout_never_idles() {
        let mut wm = PartitionWatermarks::new(Duration::MAX);
        wm.assign(FAST, 0);
        wm.assign(SLOW, 0);
        wm.observe(FAST, 5_000, 0);
        assert_eq!(wm.current(i64::MAX), None);
    }
}
