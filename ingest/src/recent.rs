//! The idempotency window: which (source, id) pairs were accepted lately, and which are being produced now.
//!
//! CloudEvents makes `source` + `id` unique per event, so a second event with the same pair is the same event
//! sent again (a client retrying after a timeout, a pixel firing twice). Within the window it is acknowledged
//! and not produced again. Each pair is kept as a 64-bit hash under a per-process random key (an attacker who
//! does not know the key cannot make two pairs collide on purpose; by chance, one collision in ~10^13 pairs at a
//! million remembered): about 60 bytes per remembered id with the map's and the expiry queue's overhead.
//!
//! A pair is *in flight* from the moment its request claims it until the broker's answer: a concurrent
//! duplicate cannot be acknowledged yet (the first copy may still fail) and is told to retry (`409`).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// The key of one (source, id) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKey(u64);

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: now in flight, for this request to produce.
    New,
    /// Accepted within the window: acknowledge, do not produce.
    Duplicate,
    /// Another request is producing it right now.
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Accepted { until: Instant },
}

/// The remembered pairs.
#[derive(Debug)]
pub struct RecentIds {
    hasher: RandomState,
    window: Duration,
    capacity: usize,
    states: HashMap<EventKey, State>,
    /// Accepted pairs in acceptance order, with their expiry: the oldest are forgotten first.
    accepted: VecDeque<(EventKey, Instant)>,
    evictions: u64,
}

impl RecentIds {
    /// Remembers accepted pairs for `window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> RecentIds {
        RecentIds {
            hasher: RandomState::new(),
            window,
            capacity: capacity.max(1),
            states: HashMap::new(),
            accepted: VecDeque::new(),
            evictions: 0,
        }
    }

    /// The key of `source` + `id` (length-prefixed, so ("ab", "c") and ("a", "bc") differ).
    pub fn key(&self, source: &str, id: &str) -> EventKey {
        EventKey(self.hasher.hash_one((source.len(), source, id.len(), id)))
    }

    /// Claims `key` for producing, if nobody has it.
    pub fn claim(&mut self, key: EventKey, now: Instant) -> Claim {
        self.expire(now);
        match self.states.entry(key) {
            Entry::Vacant(vacant) => {
                vacant.insert(State::InFlight);
                Claim::New
            }
            Entry::Occupied(occupied) => match occupied.get() {
                State::InFlight => Claim::InFlight,
                State::Accepted { .. } => Claim::Duplicate,
            },
        }
    }

    /// The broker has `key`: remember it as accepted for the window.
    pub fn accepted(&mut self, key: EventKey, now: Instant) {
        let until = now + self.window;
        self.states.insert(key, State::Accepted { until });
        self.accepted.push_back((key, until));
        while self.accepted.len() > self.capacity {
            if let Some((oldest, until)) = self.accepted.pop_front() {
                self.forget(oldest, until);
                self.evictions += 1;
            }
        }
    }

    /// Producing `key` failed (or was never tried): forget the claim so a retry can produce it.
    pub fn release(&mut self, key: EventKey) {
        if self.states.get(&key) == Some(&State::InFlight) {
            self.states.remove(&key);
        }
    }

    /// Accepted pairs forgotten before their window ended because the capacity was reached.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Pairs remembered now (accepted and in flight).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, until)) = self.accepted.front() {
            if until > now {
                break;
            }
            self.accepted.pop_front();
            self.forget(key, until);
        }
    }

    /// Forgets `key` if it is still the acceptance that expires at `until` (a pair accepted again later, after
    /// expiring, has a newer entry further back in the queue).
    fn forget(&mut self, key: EventKey, until: Instant) {
        if self.states.get(&key) == Some(&State::Accepted { until }) {
            self.states.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_new_then_in_flight_then_a_duplicate_until_the_window_ends() {
        let mut recent = RecentIds::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        let key = recent.key("/shop", "e1");
        assert_eq!(recent.claim(key, t0), Claim::New);
        assert_eq!(recent.claim(key, t0), Claim::InFlight);
        recent.accepted(key, t0);
        assert_eq!(
            recent.claim(key, t0 + Duration::from_secs(59)),
            Claim::Duplicate
        );
        assert_eq!(recent.claim(key, t0 + Duration::from_secs(60)), Claim::New);
    }

    #[test]
    fn a_released_claim_can_be_produced_by_a_retry() {
        let mut recent = RecentIds::new(Duration::from_secs(60), 100);
        let now = Instant::now();
        let key = recent.key("/shop", "e1");
        assert_eq!(recent.claim(key, now), Claim::New);
        recent.release(key);
        assert_eq!(recent.claim(key, now), Claim::New);
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn source_and_id_both_make_the_key() {
        let recent = RecentIds::new(Duration::from_secs(60), 100);
        assert_ne!(recent.key("/a", "1"), recent.key("/b", "1"));
        assert_ne!(recent.key("ab", "c"), recent.key("a", "bc"));
        assert_eq!(recent.key("/a", "1"), recent.key("/a", "1"));
    }

    #[test]
    fn past_capacity_the_oldest_are_forgotten_and_counted() {
        let mut recent = RecentIds::new(Duration::from_secs(600), 2);
        let now = Instant::now();
        let keys: Vec<EventKey> = (0..3).map(|i| recent.key("/s", &i.to_string())).collect();
        for key in &keys {
            assert_eq!(recent.claim(*key, now), Claim::New);
            recent.accepted(*key, now);
        }
        assert_eq!(recent.evictions(), 1);
        assert_eq!(recent.claim(keys[0], now), Claim::New, "oldest forgotten");
        assert_eq!(recent.claim(keys[2], now), Claim::Duplicate);
    }
}
