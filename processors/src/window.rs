//! Event-time windows and the lateness rule.
//!
//! Every windowed job (campaign metrics per hour and day, fatigue, backtests) has to agree on two things: which
//! windows an event belongs to, and what happens to an event that arrives after its window was reported. Both
//! live here, as pure functions of event time and watermark, so live jobs and replays give the same answer.
//!
//! # Time
//!
//! Instants are `i64` milliseconds since the Unix epoch (UTC); negative values (before 1970) are valid. Windows
//! are half-open `[start_ms, end_ms)`. Where a window would reach past the `i64` range its bounds are clipped to
//! `i64::MIN` / `i64::MAX`.
//!
//! # Window kinds
//!
//! - [`WindowSpec`]: fixed-size tumbling and hopping windows aligned to the epoch. A hopping window of size `S`
//!   advancing by `A` starts at every multiple of `A`; an event belongs to every such window whose range
//!   contains it (`ceil(S/A)` or `floor(S/A)` windows when `S` is not a multiple of `A`).
//! - [`calendar_window`]: the local calendar hour or day of an event in an IANA time zone, as UTC instants.
//!   - A **day** runs from the first instant of the event's local date to the first instant of the next local
//!     date: 24 hours normally, 23 or 25 hours on daylight-saving change days (23.5 hours on Lord Howe Island).
//!     When local midnight is skipped by a DST gap (America/Santiago on 2026-09-06 jumps from 00:00 to 01:00),
//!     the day starts at the first instant that exists on that date (01:00 local). When local midnight occurs
//!     twice (America/Havana on 2026-11-01 falls back from 01:00 to 00:00), the day starts at its first occurrence.
//!   - An **hour** is the local clock hour containing the event, so in a zone with a half-hour offset
//!     (Asia/Kolkata, +05:30) hour windows start at :30 UTC. At a fall-back transition the repeated local hour
//!     gives two distinct windows (America/New_York on 2026-11-01: 01:00 EDT and 01:00 EST). Hour windows are
//!     also cut at every offset transition, so that hour windows never overlap and always tile the timeline: in
//!     a zone whose clocks move by 30 minutes (Australia/Lord_Howe), the hour in which the clock jumps from
//!     02:00 to 02:30 yields a 30-minute window `[02:30, 03:00)`, and when the clock falls back from 02:00 to
//!     01:30 the repeated half hour `[01:30, 02:00)` is its own 30-minute window.
//!   - Time-zone rules come from chrono-tz (the IANA database it embeds). Its tables end with the year 2099 and
//!     stay on the last offset after that; instants outside chrono's range (about ±262,000 years) use the offset
//!     at the nearest instant chrono can represent.
//!
//! # Lateness
//!
//! A [`Lateness`] rule has a grace period and a retention, both measured from a window's end, with
//! `0 <= grace <= retention`. Against the task's current watermark (see [`crate::watermark`]):
//!
//! - A window's row is **final** once `watermark >= end + grace`.
//! - A record for a window whose row is not final yet is [`Arrival::OnTime`]: it updates the window normally.
//! - A record arriving when `end + grace <= watermark < end + retention` is a [`Arrival::Correction`]: the
//!   window's state still exists, so its row is updated again and re-emitted under the same key (the output is a
//!   compacted topic, so readers see the corrected value), and the correction is counted.
//! - A record arriving when `watermark >= end + retention` is [`Arrival::Expired`]: the window's state is gone,
//!   so the record goes to `late.<topic>` with a reason instead of being dropped.
//! - Before the task has a watermark (`None`) every record is on time and no window is final or expired.
//!
//! `grace == retention` turns corrections off: rows become final and expired at the same moment.

use std::time::Duration;

use chrono::{DateTime, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

const MILLIS_PER_HOUR: i64 = 3_600_000;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// Instants inside this range are resolved with the time-zone database. The three-day margin keeps every lookup
/// a window needs (the next local midnight: up to a day plus the largest UTC offset, under 26 hours, away) inside
/// chrono's representable range.
const TZ_LOOKUP_MIN_MS: i64 = DateTime::<Utc>::MIN_UTC.timestamp_millis() + 3 * MILLIS_PER_DAY;
const TZ_LOOKUP_MAX_MS: i64 = DateTime::<Utc>::MAX_UTC.timestamp_millis() - 3 * MILLIS_PER_DAY;

/// Why a window or lateness parameter was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The parameter is zero where a positive duration is required.
    #[error("{parameter} must be greater than zero")]
    NotPositive {
        /// Which parameter, e.g. "window size".
        parameter: &'static str,
    },
    /// The parameter has a sub-millisecond part; event times have millisecond resolution, so it would be
    /// truncated silently.
    #[error("{parameter} must be a whole number of milliseconds, got {duration:?}")]
    NotWholeMilliseconds {
        /// Which parameter, e.g. "window size".
        parameter: &'static str,
        /// The rejected value.
        duration: Duration,
    },
    /// The parameter does not fit in `i64` milliseconds (about 292 million years).
    #[error("{parameter} is too large: {duration:?} does not fit in i64 milliseconds")]
    TooLarge {
        /// Which parameter, e.g. "window size".
        parameter: &'static str,
        /// The rejected value.
        duration: Duration,
    },
    /// A hopping window advances by more than its size, which would leave gaps no window covers.
    #[error("hop advance ({advance_ms} ms) must not exceed the window size ({size_ms} ms)")]
    AdvanceExceedsSize {
        /// The requested advance.
        advance_ms: i64,
        /// The requested window size.
        size_ms: i64,
    },
    /// The grace period is longer than the retention, so window state would be gone before the row is final.
    #[error("grace period ({grace_ms} ms) must not exceed retention ({retention_ms} ms)")]
    GraceExceedsRetention {
        /// The requested grace period.
        grace_ms: i64,
        /// The requested retention.
        retention_ms: i64,
    },
}

/// A half-open range of event time `[start_ms, end_ms)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First instant inside the window.
    pub start_ms: i64,
    /// First instant after the window.
    pub end_ms: i64,
}

/// The calendar unit of a [`calendar_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// The local clock hour (cut at offset transitions, see the module documentation).
    Hour,
    /// The local calendar date, midnight to midnight.
    Day,
}

impl Granularity {
    /// The name used in output topic names and tables: `"hourly"` or `"daily"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hourly",
            Granularity::Day => "daily",
        }
    }
}

/// The local calendar hour or day of `tz` that contains `event_time_ms`, as UTC instants.
///
/// See the module documentation for DST gaps, repeated hours and 30-minute shifts. Does not allocate; costs three
/// time-zone lookups (about 100-160 ns), plus a short search when a transition falls inside the hour. Per-record
/// callers should use [`CalendarWindows`], which skips the lookups while events stay in the same window.
pub fn calendar_window(granularity: Granularity, event_time_ms: i64, tz: Tz) -> Window {
    if !(TZ_LOOKUP_MIN_MS..=TZ_LOOKUP_MAX_MS).contains(&event_time_ms) {
        return fixed_offset_window(granularity, event_time_ms, utc_offset_ms(tz, event_time_ms));
    }
    match granularity {
        Granularity::Hour => local_hour_window(event_time_ms, tz),
        Granularity::Day => local_day_window(event_time_ms, tz),
    }
}

/// [`calendar_window`] for one granularity and zone, remembering the last window it returned.
///
/// Events of a partition mostly arrive in event-time order, so consecutive events usually fall in the same hour
/// or day; for those, [`CalendarWindows::window`] is two comparisons instead of three time-zone lookups. This is
/// exact because calendar windows tile the timeline: every instant inside a window maps to that same window.
#[derive(Debug, Clone, Copy)]
pub struct CalendarWindows {
    granularity: Granularity,
    tz: Tz,
    last: Option<Window>,
}

impl CalendarWindows {
    /// Windows of `granularity` in `tz`, with nothing remembered yet.
    pub fn new(granularity: Granularity, tz: Tz) -> Self {
        CalendarWindows {
            granularity,
            tz,
            last: None,
        }
    }

    /// The window containing `event_time_ms`; same result as [`calendar_window`].
    pub fn window(&mut self, event_time_ms: i64) -> Window {
        if let Some(last) = self
            .last
            .filter(|last| last.start_ms <= event_time_ms && event_time_ms < last.end_ms)
        {
            return last;
        }
        let window = calendar_window(self.granularity, event_time_ms, self.tz);
        self.last = Some(window);
        window
    }
}

/// The UTC offset (local minus UTC) of `tz` at `instant_ms`. Instants outside chrono's range use the offset at
/// the nearest representable instant.
fn utc_offset_ms(tz: Tz, instant_ms: i64) -> i64 {
    let instant = DateTime::from_timestamp_millis(instant_ms).unwrap_or(if instant_ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    offset_ms(tz.offset_from_utc_datetime(&instant.naive_utc()))
}

fn offset_ms(offset: impl Offset) -> i64 {
    i64::from(offset.fix().local_minus_utc()) * 1000
}

fn local_hour_window(event_time_ms: i64, tz: Tz) -> Window {
    let offset = utc_offset_ms(tz, event_time_ms);
    let local_ms = event_time_ms + offset;
    let hour_start_ms = local_ms - local_ms.rem_euclid(MILLIS_PER_HOUR) - offset;
    let hour_end_ms = hour_start_ms + MILLIS_PER_HOUR;
    // If the offset changes inside this local hour, the instants on the other side of the change read a
    // different hour (or the same hour a second time), so the window stops at the change.
    let start_ms = if utc_offset_ms(tz, hour_start_ms) == offset {
        hour_start_ms
    } else {
        offset_transition_ms(tz, hour_start_ms, event_time_ms)
    };
    let last_ms = hour_end_ms - 1;
    let end_ms = if utc_offset_ms(tz, last_ms) == offset {
        hour_end_ms
    } else {
        offset_transition_ms(tz, event_time_ms, last_ms)
    };
    Window { start_ms, end_ms }
}

/// The first instant in `(before_ms, after_ms]` that has the offset of `after_ms`, given that `before_ms` has a
/// different one. Assumes a single transition in between, which holds within the hour this is used for.
fn offset_transition_ms(tz: Tz, before_ms: i64, after_ms: i64) -> i64 {
    let target_offset = utc_offset_ms(tz, after_ms);
    let (mut before, mut after) = (before_ms, after_ms);
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if utc_offset_ms(tz, middle) == target_offset {
            after = middle;
        } else {
            before = middle;
        }
    }
    after
}

fn local_day_window(event_time_ms: i64, tz: Tz) -> Window {
    let local_ms = event_time_ms + utc_offset_ms(tz, event_time_ms);
    let local_midnight_ms = local_ms - local_ms.rem_euclid(MILLIS_PER_DAY);
    Window {
        start_ms: first_instant_of_local_day(tz, local_midnight_ms),
        end_ms: first_instant_of_local_day(tz, local_midnight_ms + MILLIS_PER_DAY),
    }
}

/// The first UTC instant whose local reading in `tz` is on or after the local midnight `local_midnight_ms`
/// (milliseconds since 1970-01-01T00:00 local).
fn first_instant_of_local_day(tz: Tz, local_midnight_ms: i64) -> i64 {
    // Callers stay inside TZ_LOOKUP_MIN_MS..=TZ_LOOKUP_MAX_MS, so this conversion succeeds; the fallback only
    // keeps the function total.
    let Some(local_midnight) =
        DateTime::from_timestamp_millis(local_midnight_ms).map(|dt| dt.naive_utc())
    else {
        return local_midnight_ms - utc_offset_ms(tz, local_midnight_ms);
    };
    match tz.offset_from_local_datetime(&local_midnight) {
        LocalResult::Single(offset) => local_midnight_ms - offset_ms(offset),
        // Midnight happens twice (clocks fell back to 00:00); the day starts at the first time.
        LocalResult::Ambiguous(first, second) => {
            (local_midnight_ms - offset_ms(first)).min(local_midnight_ms - offset_ms(second))
        }
        // Midnight is skipped; the day starts when the clock jumps over it. chrono-tz always knows where a gap
        // ends (the last time span is unbounded), so the fallback is never taken.
        LocalResult::None => GapInfo::new(&local_midnight, &tz)
            .and_then(|gap| gap.end)
            .map_or(
                local_midnight_ms - utc_offset_ms(tz, local_midnight_ms),
                |first_after_gap| first_after_gap.timestamp_millis(),
            ),
    }
}

/// Calendar windows for instants beyond the time-zone database's range: the offset is treated as constant.
/// Computed in i128 because the window may reach past the i64 range, then clipped.
fn fixed_offset_window(granularity: Granularity, event_time_ms: i64, offset_ms: i64) -> Window {
    let unit_ms = match granularity {
        Granularity::Hour => MILLIS_PER_HOUR,
        Granularity::Day => MILLIS_PER_DAY,
    };
    let local_ms = i128::from(event_time_ms) + i128::from(offset_ms);
    let start_ms = local_ms - local_ms.rem_euclid(i128::from(unit_ms)) - i128::from(offset_ms);
    Window {
        start_ms: clip_to_i64(start_ms),
        end_ms: clip_to_i64(start_ms + i128::from(unit_ms)),
    }
}

fn clip_to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Fixed-size windows aligned to the Unix epoch. Build with [`WindowSpec::tumbling`] or [`WindowSpec::hopping`],
/// which guarantee `size_ms > 0` and `0 < advance_ms <= size_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Non-overlapping windows `[k*size, (k+1)*size)`; each instant is in exactly one.
    #[non_exhaustive]
    Tumbling {
        /// Window length in milliseconds.
        size_ms: i64,
    },
    /// Overlapping windows `[k*advance, k*advance + size)`.
    #[non_exhaustive]
    Hopping {
        /// Window length in milliseconds.
        size_ms: i64,
        /// Distance between consecutive window starts in milliseconds.
        advance_ms: i64,
    },
}

impl WindowSpec {
    /// Tumbling windows of `size`, which must be a positive whole number of milliseconds that fits in `i64`.
    pub fn tumbling(size: Duration) -> Result<Self, WindowError> {
        let size_ms = positive_millis("window size", size)?;
        Ok(WindowSpec::Tumbling { size_ms })
    }

    /// Hopping windows of `size` starting every `advance`; both must be positive whole numbers of milliseconds
    /// that fit in `i64`, and `advance <= size`. `size` need not be a multiple of `advance`.
    pub fn hopping(size: Duration, advance: Duration) -> Result<Self, WindowError> {
        let size_ms = positive_millis("window size", size)?;
        let advance_ms = positive_millis("hop advance", advance)?;
        if advance_ms > size_ms {
            return Err(WindowError::AdvanceExceedsSize {
                advance_ms,
                size_ms,
            });
        }
        Ok(WindowSpec::Hopping {
            size_ms,
            advance_ms,
        })
    }

    /// Appends to `out`, in ascending start order, every window that contains `event_time_ms`. Does not clear
    /// `out` and allocates only if `out` lacks capacity.
    pub fn assign(&self, event_time_ms: i64, out: &mut Vec<Window>) {
        let (size_ms, advance_ms) = match *self {
            WindowSpec::Tumbling { size_ms } => (size_ms, size_ms),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
            } => (size_ms, advance_ms),
        };
        let offset_in_hop = event_time_ms.rem_euclid(advance_ms);
        // Windows starting in (t - size, t] contain t; with r = t - latest start, that is (size - 1 - r) / advance
        // earlier starts plus the latest. Always 1 for tumbling windows.
        let window_count = (size_ms - 1 - offset_in_hop) / advance_ms + 1;
        // i128: starts near i64::MIN and ends near i64::MAX may lie outside the i64 range before clipping.
        let latest_start = i128::from(event_time_ms) - i128::from(offset_in_hop);
        let mut start = latest_start - i128::from(window_count - 1) * i128::from(advance_ms);
        while start <= latest_start {
            out.push(Window {
                start_ms: clip_to_i64(start),
                end_ms: clip_to_i64(start + i128::from(size_ms)),
            });
            start += i128::from(advance_ms);
        }
    }
}

/// `duration` in milliseconds, rejecting sub-millisecond parts and values that do not fit in `i64`.
fn whole_millis(parameter: &'static str, duration: Duration) -> Result<i64, WindowError> {
    if duration.subsec_nanos() != duration.subsec_millis() * 1_000_000 {
        return Err(WindowError::NotWholeMilliseconds {
            parameter,
            duration,
        });
    }
    i64::try_from(duration.as_millis()).map_err(|_| WindowError::TooLarge {
        parameter,
        duration,
    })
}

fn positive_millis(parameter: &'static str, duration: Duration) -> Result<i64, WindowError> {
    let millis = whole_millis(parameter, duration)?;
    if millis == 0 {
        return Err(WindowError::NotPositive { parameter });
    }
    Ok(millis)
}

/// How a record relates to its window's lifecycle; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arrival {
    /// The window's row is not final yet; the record updates it normally.
    OnTime,
    /// The row was final but the state is retained; the row is updated and re-emitted, and counted as a correction.
    Correction,
    /// The window's state is gone; the record goes to `late.<topic>` with a reason.
    Expired,
}

/// The lateness rule: grace period and retention, both measured from a window's end. Build with
/// [`Lateness::new`], which guarantees `0 <= grace_ms <= retention_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Lateness {
    /// How long after a window's end (in watermark time) records still count as on time.
    pub grace_ms: i64,
    /// How long after a window's end (in watermark time) the window's state is kept for corrections.
    pub retention_ms: i64,
}

impl Lateness {
    /// A rule with the given grace period and retention: whole milliseconds that fit in `i64`, with
    /// `grace <= retention` (equal values disable corrections).
    pub fn new(grace: Duration, retention: Duration) -> Result<Self, WindowError> {
        let grace_ms = whole_millis("grace period", grace)?;
        let retention_ms = whole_millis("retention", retention)?;
        if grace_ms > retention_ms {
            return Err(WindowError::GraceExceedsRetention {
                grace_ms,
                retention_ms,
            });
        }
        Ok(Lateness {
            grace_ms,
            retention_ms,
        })
    }

    /// Classifies a record for `window` arriving when the task's watermark is `watermark_ms`.
    pub fn classify(&self, window: Window, watermark_ms: Option<i64>) -> Arrival {
        if self.is_expired(window, watermark_ms) {
            Arrival::Expired
        } else if self.is_final(window, watermark_ms) {
            Arrival::Correction
        } else {
            Arrival::OnTime
        }
    }

    /// Whether `window`'s row is final: the watermark has reached `end + grace`.
    pub fn is_final(&self, window: Window, watermark_ms: Option<i64>) -> bool {
        watermark_ms
            .is_some_and(|watermark| watermark >= window.end_ms.saturating_add(self.grace_ms))
    }

    /// Whether `window`'s state may be dropped: the watermark has reached `end + retention`.
    pub fn is_expired(&self, window: Window, watermark_ms: Option<i64>) -> bool {
        watermark_ms
            .is_some_and(|watermark| watermark >= window.end_ms.saturating_add(self.retention_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = MILLIS_PER_HOUR;
    const MINUTE: i64 = 60_000;

    fn tz(name: &str) -> Tz {
        name.parse().expect("test uses a valid IANA zone name")
    }

    fn window(start_ms: i64, end_ms: i64) -> Window {
        Window { start_ms, end_ms }
    }

    fn hour(event_time_ms: i64, zone: &str) -> Window {
        calendar_window(Granularity::Hour, event_time_ms, tz(zone))
    }

    fn day(event_time_ms: i64, zone: &str) -> Window {
        calendar_window(Granularity::Day, event_time_ms, tz(zone))
    }

    fn assigned(spec: WindowSpec, event_time_ms: i64) -> Vec<Window> {
        let mut out = Vec::new();
        spec.assign(event_time_ms, &mut out);
        out
    }

    // Expected instants below were computed independently with GNU date and the system tzdata, e.g.
    // `TZ=America/New_York date -d '2026-03-09 00:00' +%s` = 1773028800.

    #[test]
    fn granularity_names() {
        assert_eq!(Granularity::Hour.as_str(), "hourly");
        assert_eq!(Granularity::Day.as_str(), "daily");
    }

    #[test]
    fn utc_hour_and_day() {
        // 2026-03-08T14:25:36.789Z
        let t = 1_772_979_936_789;
        assert_eq!(hour(t, "UTC"), window(1_772_978_400_000, 1_772_982_000_000));
        assert_eq!(day(t, "UTC"), window(1_772_928_000_000, 1_773_014_400_000));
        // Exactly on a boundary the instant starts the window.
        assert_eq!(
            hour(1_772_978_400_000, "UTC"),
            window(1_772_978_400_000, 1_772_982_000_000)
        );
        assert_eq!(
            day(1_772_928_000_000, "UTC"),
            window(1_772_928_000_000, 1_773_014_400_000)
        );
        // One millisecond earlier belongs to the previous window.
        assert_eq!(
            day(1_772_927_999_999, "UTC"),
            window(1_772_841_600_000, 1_772_928_000_000)
        );
    }

    #[test]
    fn negative_timestamps() {
        assert_eq!(hour(-1, "UTC"), window(-HOUR, 0));
        assert_eq!(day(-1, "UTC"), window(-MILLIS_PER_DAY, 0));
        // 1969-12-31T23:30Z is 18:30 EST on 1969-12-31.
        let t = -30 * MINUTE;
        assert_eq!(hour(t, "America/New_York"), window(-HOUR, 0));
        assert_eq!(day(t, "America/New_York"), window(-68_400_000, 18_000_000));
        // 1900-01-01T00:00Z in UTC.
        assert_eq!(
            day(-2_208_988_800_000, "UTC"),
            window(-2_208_988_800_000, -2_208_902_400_000)
        );
    }

    #[test]
    fn new_york_spring_forward_day_is_23_hours() {
        // 2026-03-08: 00:00 EST = 05:00Z; 2026-03-09 00:00 EDT = 04:00Z.
        let day_window = window(1_772_946_000_000, 1_773_028_800_000);
        assert_eq!(day_window.end_ms - day_window.start_ms, 23 * HOUR);
        assert_eq!(day(1_772_946_000_000, "America/New_York"), day_window);
        assert_eq!(day(1_773_028_799_999, "America/New_York"), day_window);
        // 01:30 EST (06:30Z) is in [06:00Z, 07:00Z); 03:30 EDT (07:30Z) is in [07:00Z, 08:00Z).
        assert_eq!(
            hour(1_772_951_400_000, "America/New_York"),
            window(1_772_949_600_000, 1_772_953_200_000)
        );
        assert_eq!(
            hour(1_772_953_200_000 + 30 * MINUTE, "America/New_York"),
            window(1_772_953_200_000, 1_772_956_800_000)
        );
    }

    #[test]
    fn new_york_fall_back_day_is_25_hours_with_two_one_oclock_hours() {
        // 2026-11-01: 00:00 EDT = 04:00Z; 2026-11-02 00:00 EST = 05:00Z.
        let day_window = window(1_793_505_600_000, 1_793_595_600_000);
        assert_eq!(day_window.end_ms - day_window.start_ms, 25 * HOUR);
        assert_eq!(
            day(1_793_505_600_000 + 12 * HOUR, "America/New_York"),
            day_window
        );
        // 01:30 EDT = 05:30Z and 01:30 EST = 06:30Z read the same local time but are different windows.
        let first_one_oclock = window(1_793_509_200_000, 1_793_512_800_000); // [05:00Z, 06:00Z)
        let second_one_oclock = window(1_793_512_800_000, 1_793_516_400_000); // [06:00Z, 07:00Z)
        assert_eq!(
            hour(1_793_511_000_000, "America/New_York"),
            first_one_oclock
        );
        assert_eq!(
            hour(1_793_514_600_000, "America/New_York"),
            second_one_oclock
        );
        assert_eq!(
            hour(1_793_512_799_999, "America/New_York"),
            first_one_oclock
        );
        assert_eq!(
            hour(1_793_512_800_000, "America/New_York"),
            second_one_oclock
        );
    }

    #[test]
    fn kolkata_hours_start_at_half_past_utc() {
        // 2026-01-15T10:00Z is 15:30 IST; the 15:00 IST hour is [09:30Z, 10:30Z).
        assert_eq!(
            hour(1_768_471_200_000, "Asia/Kolkata"),
            window(1_768_469_400_000, 1_768_473_000_000)
        );
        // The IST day 2026-01-15 runs from 2026-01-14T18:30Z.
        assert_eq!(
            day(1_768_471_200_000, "Asia/Kolkata"),
            window(1_768_415_400_000, 1_768_501_800_000)
        );
    }

    #[test]
    fn santiago_day_starts_at_one_when_midnight_is_skipped() {
        // 2026-09-06 00:00 -04 does not exist: the clock jumps to 01:00 -03 at 04:00Z. The day runs to
        // 2026-09-07 00:00 -03 = 03:00Z, 23 hours.
        let skipped_day = window(1_788_667_200_000, 1_788_750_000_000);
        assert_eq!(day(1_788_667_200_000, "America/Santiago"), skipped_day);
        assert_eq!(
            day(1_788_667_200_000 + 10 * HOUR, "America/Santiago"),
            skipped_day
        );
        // The day before ends where the skipped day starts: 2026-09-05 00:00 -04 = 04:00Z.
        assert_eq!(
            day(1_788_667_199_999, "America/Santiago"),
            window(1_788_580_800_000, 1_788_667_200_000)
        );
        // Its first hour is 01:00-02:00 -03 = [04:00Z, 05:00Z).
        assert_eq!(
            hour(1_788_667_200_000, "America/Santiago"),
            window(1_788_667_200_000, 1_788_670_800_000)
        );
    }

    #[test]
    fn havana_day_starts_at_first_of_two_midnights() {
        // 2026-11-01: clocks fall back from 01:00 CDT to 00:00 CST at 05:00Z, so midnight happens at 04:00Z and
        // again at 05:00Z. The day starts at the first and ends at 2026-11-02 00:00 CST = 05:00Z: 25 hours.
        let long_day = window(1_793_505_600_000, 1_793_595_600_000);
        assert_eq!(day(1_793_505_600_000, "America/Havana"), long_day);
        assert_eq!(
            day(1_793_509_200_000 + 30 * MINUTE, "America/Havana"),
            long_day
        );
        // Havana also skips midnight on 2026-03-08: the day starts at 01:00 CDT = 05:00Z.
        assert_eq!(
            day(1_772_946_000_000 + HOUR, "America/Havana"),
            window(1_772_946_000_000, 1_773_028_800_000)
        );
    }

    #[test]
    fn cairo_falls_back_at_midnight_into_the_previous_day() {
        // 2026-10-30 00:00 +03 becomes 2026-10-29 23:00 +02 at 21:00Z, so 2026-10-29 has 25 hours: from
        // 2026-10-28T21:00Z to the only 2026-10-30 00:00 (+02) = 2026-10-29T22:00Z.
        let long_day = window(1_793_221_200_000, 1_793_311_200_000);
        assert_eq!(
            day(1_793_307_600_000 + 30 * MINUTE, "Africa/Cairo"),
            long_day
        );
        assert_eq!(day(1_793_311_200_000 - 1, "Africa/Cairo"), long_day);
    }

    #[test]
    fn lord_howe_half_hour_shifts_give_half_hour_windows() {
        let zone = "Australia/Lord_Howe";
        // Spring, 2026-10-03T15:30Z: 02:00 +10:30 becomes 02:30 +11.
        let spring = 1_791_041_400_000;
        // 01:40 +10:30 is in the full 01:00 hour [14:30Z, 15:30Z).
        assert_eq!(
            hour(spring - 20 * MINUTE, zone),
            window(spring - HOUR, spring)
        );
        // 02:45 +11 is in the 02:00 hour, of which only [02:30, 03:00) exists: [15:30Z, 16:00Z).
        assert_eq!(
            hour(spring + 15 * MINUTE, zone),
            window(spring, spring + 30 * MINUTE)
        );
        assert_eq!(hour(spring, zone), window(spring, spring + 30 * MINUTE));
        assert_eq!(
            hour(spring + 30 * MINUTE, zone),
            window(spring + 30 * MINUTE, spring + 90 * MINUTE)
        );
        // That local day (2026-10-04) runs from 00:00 +10:30 = 2026-10-03T13:30Z to 00:00 +11 = 13:00Z: 23.5 h.
        assert_eq!(
            day(spring, zone),
            window(1_791_034_200_000, 1_791_118_800_000)
        );

        // Autumn, 2026-04-04T15:00Z: 02:00 +11 becomes 01:30 +10:30.
        let autumn = 1_775_314_800_000;
        // 01:45 +11 is in the full 01:00 hour [14:00Z, 15:00Z).
        assert_eq!(
            hour(autumn - 15 * MINUTE, zone),
            window(autumn - HOUR, autumn)
        );
        // The repeated 01:30-02:00 (+10:30) is its own half-hour window [15:00Z, 15:30Z).
        assert_eq!(
            hour(autumn + 10 * MINUTE, zone),
            window(autumn, autumn + 30 * MINUTE)
        );
        // 02:10 +10:30 is a full hour again: [15:30Z, 16:30Z).
        assert_eq!(
            hour(autumn + 40 * MINUTE, zone),
            window(autumn + 30 * MINUTE, autumn + 90 * MINUTE)
        );
    }

    #[test]
    fn calendar_windows_tile_across_transitions() {
        // Walking from each window's end to the next must never skip or overlap an instant, including across the
        // transitions tested above (2026-03-01 to 2026-12-01 covers all of them).
        for zone in [
            "America/New_York",
            "America/Santiago",
            "America/Havana",
            "Australia/Lord_Howe",
            "Africa/Cairo",
        ] {
            for granularity in [Granularity::Hour, Granularity::Day] {
                let mut instant = 1_772_323_200_000; // 2026-03-01T00:00Z
                let mut previous = calendar_window(granularity, instant, tz(zone));
                while instant < 1_796_083_200_000 {
                    instant = previous.end_ms;
                    let next = calendar_window(granularity, instant, tz(zone));
                    assert_eq!(
                        next.start_ms, previous.end_ms,
                        "{zone} {granularity:?} after {previous:?}"
                    );
                    assert!(
                        next.end_ms > next.start_ms,
                        "{zone} {granularity:?} empty {next:?}"
                    );
                    assert_eq!(
                        calendar_window(granularity, next.end_ms - 1, tz(zone)),
                        next
                    );
                    previous = next;
                }
            }
        }
    }

    #[test]
    fn remembered_windows_match_calendar_window() {
        // Out of order, across New York's fall-back hour, and back again.
        let instants = [
            1_793_511_000_000, // 01:30 EDT
            1_793_511_600_000, // 01:40 EDT, same window
            1_793_514_600_000, // 01:30 EST
            1_793_511_000_000, // back to 01:30 EDT
            1_793_505_599_999, // 23:59:59.999 EDT the day before
            1_793_595_600_000, // 2026-11-02 00:00 EST
        ];
        for granularity in [Granularity::Hour, Granularity::Day] {
            let mut windows = CalendarWindows::new(granularity, tz("America/New_York"));
            for instant in instants {
                assert_eq!(
                    windows.window(instant),
                    calendar_window(granularity, instant, tz("America/New_York"))
                );
            }
        }
        let mut hours = CalendarWindows::new(Granularity::Hour, tz("America/New_York"));
        assert_eq!(
            hours.window(1_793_511_000_000),
            window(1_793_509_200_000, 1_793_512_800_000)
        );
        assert_eq!(
            hours.window(1_793_512_800_000),
            window(1_793_512_800_000, 1_793_516_400_000)
        );
    }

    #[test]
    fn instants_beyond_the_time_zone_database_use_the_edge_offset_and_are_clipped() {
        // i64::MIN is 775_808 ms before a UTC hour boundary; that hour's start is below i64::MIN.
        assert_eq!(hour(i64::MIN, "UTC"), window(i64::MIN, i64::MIN + 775_808));
        // After 2099 New York stays on EST (-05:00); the local day containing i64::MAX starts 7_975_807 ms
        // before it and ends past it.
        assert_eq!(
            day(i64::MAX, "America/New_York"),
            window(i64::MAX - 7_975_807, i64::MAX)
        );
        // Before its first transition Kolkata is on local mean time, +05:53:28.
        assert_eq!(
            hour(i64::MIN + 1, "Asia/Kolkata"),
            window(i64::MIN, i64::MIN + 1_167_808)
        );
    }

    #[test]
    fn tumbling_assignment_at_boundaries() {
        let spec = WindowSpec::tumbling(Duration::from_secs(60)).expect("valid size");
        assert_eq!(assigned(spec, 0), vec![window(0, 60_000)]);
        assert_eq!(assigned(spec, 59_999), vec![window(0, 60_000)]);
        assert_eq!(assigned(spec, 60_000), vec![window(60_000, 120_000)]);
        assert_eq!(assigned(spec, -1), vec![window(-60_000, 0)]);
        assert_eq!(assigned(spec, -60_000), vec![window(-60_000, 0)]);
        assert_eq!(assigned(spec, -60_001), vec![window(-120_000, -60_000)]);
    }

    #[test]
    fn assign_appends_without_clearing() {
        let spec = WindowSpec::tumbling(Duration::from_millis(10)).expect("valid size");
        let mut out = vec![window(1, 2)];
        spec.assign(25, &mut out);
        assert_eq!(out, vec![window(1, 2), window(20, 30)]);
    }

    #[test]
    fn hopping_assignment_when_size_is_a_multiple_of_advance() {
        let spec = WindowSpec::hopping(Duration::from_millis(30), Duration::from_millis(10))
            .expect("valid");
        assert_eq!(
            assigned(spec, 25),
            vec![window(0, 30), window(10, 40), window(20, 50)]
        );
        // On a start boundary the window starting there is included and the one ending there is not.
        assert_eq!(
            assigned(spec, 30),
            vec![window(10, 40), window(20, 50), window(30, 60)]
        );
        assert_eq!(
            assigned(spec, -5),
            vec![window(-30, 0), window(-20, 10), window(-10, 20)]
        );
        let advance_equals_size =
            WindowSpec::hopping(Duration::from_millis(10), Duration::from_millis(10))
                .expect("valid");
        assert_eq!(assigned(advance_equals_size, 10), vec![window(10, 20)]);
    }

    #[test]
    fn hopping_assignment_when_size_is_not_a_multiple_of_advance() {
        // Size 25, advance 10: windows [10k, 10k+25). t = 24 is in [0,25), [10,35), [20,45): three windows;
        // t = 25 is no longer in [0,25): two windows (ceil(25/10) = 3, floor = 2).
        let spec = WindowSpec::hopping(Duration::from_millis(25), Duration::from_millis(10))
            .expect("valid");
        assert_eq!(
            assigned(spec, 24),
            vec![window(0, 25), window(10, 35), window(20, 45)]
        );
        assert_eq!(assigned(spec, 25), vec![window(10, 35), window(20, 45)]);
        assert_eq!(assigned(spec, 29), vec![window(10, 35), window(20, 45)]);
        assert_eq!(
            assigned(spec, 30),
            vec![window(10, 35), window(20, 45), window(30, 55)]
        );
        assert_eq!(assigned(spec, -1), vec![window(-20, 5), window(-10, 15)]);
    }

    #[test]
    fn assignment_near_the_i64_limits_is_clipped() {
        let spec = WindowSpec::tumbling(Duration::from_millis(1000)).expect("valid");
        // i64::MAX = ...807: the window [..000, ..000 + 1000) reaches past i64::MAX.
        assert_eq!(
            assigned(spec, i64::MAX),
            vec![window(i64::MAX - 807, i64::MAX)]
        );
        // i64::MIN = -...808 is 192 ms past a multiple of 1000, so its window starts 192 ms below i64::MIN.
        assert_eq!(
            assigned(spec, i64::MIN),
            vec![window(i64::MIN, i64::MIN + 808)]
        );
    }

    #[test]
    fn constructor_errors() {
        assert_eq!(
            WindowSpec::tumbling(Duration::ZERO),
            Err(WindowError::NotPositive {
                parameter: "window size"
            })
        );
        assert_eq!(
            WindowSpec::tumbling(Duration::from_micros(1500)),
            Err(WindowError::NotWholeMilliseconds {
                parameter: "window size",
                duration: Duration::from_micros(1500)
            })
        );
        assert_eq!(
            WindowSpec::tumbling(Duration::from_secs(u64::MAX)),
            Err(WindowError::TooLarge {
                parameter: "window size",
                duration: Duration::from_secs(u64::MAX)
            })
        );
        // i64::MAX milliseconds fits; one more does not.
        assert!(WindowSpec::tumbling(Duration::from_millis(i64::MAX as u64)).is_ok());
        assert!(matches!(
            WindowSpec::tumbling(Duration::from_millis(i64::MAX as u64 + 1)),
            Err(WindowError::TooLarge { .. })
        ));
        assert_eq!(
            WindowSpec::hopping(Duration::from_millis(10), Duration::ZERO),
            Err(WindowError::NotPositive {
                parameter: "hop advance"
            })
        );
        assert_eq!(
            WindowSpec::hopping(Duration::from_millis(10), Duration::from_millis(11)),
            Err(WindowError::AdvanceExceedsSize {
                advance_ms: 11,
                size_ms: 10
            })
        );
        assert_eq!(
            Lateness::new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(WindowError::GraceExceedsRetention {
                grace_ms: 2000,
                retention_ms: 1000
            })
        );
        assert!(matches!(
            Lateness::new(Duration::from_nanos(1), Duration::from_secs(1)),
            Err(WindowError::NotWholeMilliseconds {
                parameter: "grace period",
                ..
            })
        ));
        assert_eq!(
            WindowError::AdvanceExceedsSize {
                advance_ms: 11,
                size_ms: 10
            }
            .to_string(),
            "hop advance (11 ms) must not exceed the window size (10 ms)"
        );
    }

    #[test]
    fn lateness_boundaries() {
        let rule =
            Lateness::new(Duration::from_millis(100), Duration::from_millis(1000)).expect("valid");
        let w = window(0, 5000);
        // No watermark yet: everything is on time, nothing final or expired.
        assert_eq!(rule.classify(w, None), Arrival::OnTime);
        assert!(!rule.is_final(w, None));
        assert!(!rule.is_expired(w, None));
        // Final at end + grace = 5100.
        assert_eq!(rule.classify(w, Some(5099)), Arrival::OnTime);
        assert!(!rule.is_final(w, Some(5099)));
        assert_eq!(rule.classify(w, Some(5100)), Arrival::Correction);
        assert!(rule.is_final(w, Some(5100)));
        assert!(!rule.is_expired(w, Some(5100)));
        // Expired at end + retention = 6000.
        assert_eq!(rule.classify(w, Some(5999)), Arrival::Correction);
        assert!(!rule.is_expired(w, Some(5999)));
        assert_eq!(rule.classify(w, Some(6000)), Arrival::Expired);
        assert!(rule.is_expired(w, Some(6000)));
        assert!(rule.is_final(w, Some(6000)));
    }

    #[test]
    fn lateness_with_equal_grace_and_retention_has_no_corrections() {
        let rule = Lateness::new(Duration::ZERO, Duration::ZERO).expect("valid");
        let w = window(-2000, -1000);
        assert_eq!(rule.classify(w, Some(-1001)), Arrival::OnTime);
        assert_eq!(rule.classify(w, Some(-1000)), Arrival::Expired);
    }

    #[test]
    fn lateness_saturates_near_i64_max() {
        let rule =
            Lateness::new(Duration::from_secs(60), Duration::from_secs(3600)).expect("valid");
        let w = window(i64::MAX - 10, i64::MAX);
        assert_eq!(rule.classify(w, Some(i64::MAX - 1)), Arrival::OnTime);
        assert_eq!(rule.classify(w, Some(i64::MAX)), Arrival::Expired);
    }
}
