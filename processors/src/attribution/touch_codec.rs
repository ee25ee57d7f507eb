//! The changelog encoding of a user's touches: compact binary, because it is most of attribution's state and every
//! commit rewrites the value of each user it touched.
//!
//! JSON spent about 120 bytes a touch (field names, the campaign and creative ids spelled out in every touch, times
//! as 13 digits). Here a user's value lists its distinct campaign and creative ids once, then each touch as:
//! - which of the user's (campaign, creative) pairs it is, and its kind, in one varint;
//! - its time as a varint delta from the previous touch's (touches are in time order);
//! - its id as the length of the prefix it shares with the previous touch's id and the rest (ids of one platform
//!   share a prefix: `imp-2a-1180…`); when both rests are decimal counters of one length (a prefix and a sequence
//!   number, the generator's and many systems' ids), the difference of the counters instead.
//!
//! Layout (varints are LEB128; signed values zigzag-encoded):
//!
//! ```text
//! 0x01                                   format version; JSON values (older changelogs) start with '{'
//! flags                                  bit 0: attributed_until_ms follows, bit 1: closed_until_ms follows
//! [attributed_until_ms] [closed_until_ms]  signed varints
//! n_strings, then each: len, UTF-8 bytes   the user's campaign and creative ids
//! n_ads, then each: campaign, creative     indexes into the strings
//! n_touches, then each: ad << 1 | click, time delta (signed), then the id:
//!   shared prefix len << 1 | 0, suffix len, suffix bytes      or
//!   shared prefix len << 1 | 1, counter delta (signed)
//! ```
//!
//! Decoding checks every length and index against what is there: a changelog record is input like any other.

use std::collections::HashMap;
use std::sync::Arc;

use super::models::TouchKind;
use super::operator::{StoredTouch, UserTouches};
use crate::runtime::binary::{decode_compact_or_json, put_bytes, put_signed, put_unsigned, Reader};
use crate::runtime::ValueCodec;

/// The first byte of a value in this format.
const VERSION: u8 = 1;
const HAS_ATTRIBUTED_UNTIL: u8 = 1;
const HAS_CLOSED_UNTIL: u8 = 2;

/// [`UserTouches`] in the compact format above; reads the JSON of older changelogs too.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactTouches;

impl ValueCodec<UserTouches> for CompactTouches {
    fn encode(value: &UserTouches, out: &mut Vec<u8>) {
        out.push(VERSION);
        let mut flags = 0;
        if value.attributed_until_ms.is_some() {
            flags |= HAS_ATTRIBUTED_UNTIL;
        }
        if value.closed_until_ms.is_some() {
            flags |= HAS_CLOSED_UNTIL;
        }
        out.push(flags);
        for time in [value.attributed_until_ms, value.closed_until_ms]
            .into_iter()
            .flatten()
        {
            put_signed(out, time);
        }
        // The user's strings and (campaign, creative) pairs, in order of first use.
        let mut strings: Vec<&str> = Vec::new();
        let mut string_index: HashMap<&str, u64> = HashMap::new();
        let mut ads: Vec<(u64, u64)> = Vec::new();
        let mut ad_index: HashMap<(u64, u64), u64> = HashMap::new();
        let mut touch_ads = Vec::with_capacity(value.touches.len());
        for touch in &value.touches {
            let ad = (
                intern(&touch.campaign, &mut strings, &mut string_index),
                intern(&touch.creative, &mut strings, &mut string_index),
            );
            let index = *ad_index.entry(ad).or_insert_with(|| {
                ads.push(ad);
                ads.len() as u64 - 1
            });
            touch_ads.push(index);
        }
        put_unsigned(out, strings.len() as u64);
        for s in &strings {
            put_bytes(out, s.as_bytes());
        }
        put_unsigned(out, ads.len() as u64);
        for (campaign, creative) in &ads {
            put_unsigned(out, *campaign);
            put_unsigned(out, *creative);
        }
        put_unsigned(out, value.touches.len() as u64);
        let mut previous_time = 0i64;
        let mut previous_id: &[u8] = &[];
        for (touch, ad) in value.touches.iter().zip(touch_ads) {
            put_unsigned(out, (ad << 1) | u64::from(touch.kind == TouchKind::Click));
            put_signed(out, touch.t.wrapping_sub(previous_time));
            previous_time = touch.t;
            let id = touch.id.as_bytes();
            let shared = id
                .iter()
                .zip(previous_id)
                .take_while(|(a, b)| a == b)
                .count();
            match (counter(&id[shared..]), counter(&previous_id[shared..])) {
                (Some(now), Some(before)) if id.len() == previous_id.len() => {
                    put_unsigned(out, ((shared as u64) << 1) | 1);
                    put_signed(out, now.wrapping_sub(before));
                }
                _ => {
                    put_unsigned(out, (shared as u64) << 1);
                    put_bytes(out, &id[shared..]);
                }
            }
            previous_id = id;
        }
    }

    fn decode(bytes: &[u8]) -> Result<UserTouches, String> {
        decode_compact_or_json(bytes, VERSION, "touches", user_touches)
    }
}

/// The index of `s` among the user's strings, added at the end when new.
fn intern<'v>(s: &'v str, strings: &mut Vec<&'v str>, index: &mut HashMap<&'v str, u64>) -> u64 {
    *index.entry(s).or_insert_with(|| {
        strings.push(s);
        strings.len() as u64 - 1
    })
}

/// The value of `digits` when it is a decimal counter: 1 to 18 ASCII digits (so that any two differ by an `i64`).
fn counter(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
    )
}

/// Decodes the value after its format byte.
fn user_touches(mut reader: Reader<'_>) -> Result<UserTouches, String> {
    let flags = reader.byte()?;
    if flags & !(HAS_ATTRIBUTED_UNTIL | HAS_CLOSED_UNTIL) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let attributed_until_ms = if flags & HAS_ATTRIBUTED_UNTIL != 0 {
        Some(reader.signed()?)
    } else {
        None
    };
    let closed_until_ms = if flags & HAS_CLOSED_UNTIL != 0 {
        Some(reader.signed()?)
    } else {
        None
    };
    let n_strings = reader.count()?;
    // Each of the user's names once, shared by its touches.
    let mut strings: Vec<Arc<str>> = Vec::with_capacity(n_strings);
    for _ in 0..n_strings {
        strings.push(Arc::from(reader.str("string")?));
    }
    let n_ads = reader.count()?;
    let mut ads = Vec::with_capacity(n_ads);
    for _ in 0..n_ads {
        let campaign = reader.index(strings.len())?;
        let creative = reader.index(strings.len())?;
        ads.push((&strings[campaign], &strings[creative]));
    }
    let n_touches = reader.count()?;
    let mut touches = Vec::with_capacity(n_touches);
    let mut time = 0i64;
    let mut id: Vec<u8> = Vec::new();
    for _ in 0..n_touches {
        let header = reader.unsigned()?;
        let ad = usize::try_from(header >> 1)
            .ok()
            .and_then(|i| ads.get(i))
            .ok_or_else(|| format!("touch names pair {} of {}", header >> 1, ads.len()))?;
        time = time.wrapping_add(reader.signed()?);
        let prefix = reader.unsigned()?;
        let shared = usize::try_from(prefix >> 1).unwrap_or(usize::MAX);
        if shared > id.len() {
            return Err(format!(
                "id shares {shared} bytes of a {}-byte id",
                id.len()
            ));
        }
        if prefix & 1 == 1 {
            let digits = id.len() - shared;
            let before = counter(&id[shared..])
                .ok_or_else(|| "a counter id after an id that does not end in one".to_owned())?;
            let now = before.wrapping_add(reader.signed()?);
            let text = format!("{now:0digits$}");
            if now < 0 || text.len() != digits {
                return Err(format!("counter {now} does not fit {digits} digits"));
            }
            id.truncate(shared);
            id.extend_from_slice(text.as_bytes());
        } else {
            id.truncate(shared);
            id.extend_from_slice(reader.bytes()?);
        }
        let text = std::str::from_utf8(&id).map_err(|e| format!("touch id: {e}"))?;
        touches.push(StoredTouch {
            id: Box::from(text),
            kind: if header & 1 == 1 {
                TouchKind::Click
            } else {
                TouchKind::View
            },
            t: time,
            campaign: Arc::clone(ad.0),
            creative: Arc::clone(ad.1),
        });
    }
    reader.finish("last touch")?;
    Ok(UserTouches {
        touches,
        attributed_until_ms,
        closed_until_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(id: &str, kind: TouchKind, t: i64, campaign: &str, creative: &str) -> StoredTouch {
        StoredTouch {
            id: id.into(),
            kind,
            t,
            campaign: campaign.into(),
            creative: creative.into(),
        }
    }

    fn sample() -> UserTouches {
        UserTouches {
            touches: vec![
                touch(
                    "imp-2a-118001",
                    TouchKind::View,
                    1_793_500_000_000,
                    "google-cmp-0000",
                    "cr-1",
                ),
                touch(
                    "imp-2a-118057",
                    TouchKind::View,
                    1_793_500_360_000,
                    "google-cmp-0000",
                    "cr-1",
                ),
                touch(
                    "clk-2a-118058",
                    TouchKind::Click,
                    1_793_500_361_500,
                    "google-cmp-0000",
                    "cr-1",
                ),
                touch(
                    "imp-2a-120999",
                    TouchKind::View,
                    1_793_503_000_000,
                    "meta-cmp-0001",
                    "cr-7",
                ),
                // Same time as the previous touch, and an id that is a prefix of the previous one.
                touch(
                    "imp-2a-12",
                    TouchKind::View,
                    1_793_503_000_000,
                    "meta-cmp-0001",
                    "cr-1",
                ),
                touch(
                    "ünïcode-id",
                    TouchKind::Click,
                    1_793_600_000_000,
                    "tiktok-cmp-0002",
                    "ü",
                ),
                // Counters: up, down, with leading zeros, and one longer than the previous.
                touch(
                    "ev-0099",
                    TouchKind::View,
                    1_793_600_000_001,
                    "tiktok-cmp-0002",
                    "ü",
                ),
                touch(
                    "ev-0100",
                    TouchKind::View,
                    1_793_600_000_002,
                    "tiktok-cmp-0002",
                    "ü",
                ),
                touch(
                    "ev-0007",
                    TouchKind::View,
                    1_793_600_000_003,
                    "tiktok-cmp-0002",
                    "ü",
                ),
                touch(
                    "ev-10000",
                    TouchKind::View,
                    1_793_600_000_004,
                    "tiktok-cmp-0002",
                    "ü",
                ),
            ],
            attributed_until_ms: Some(1_793_500_400_000),
            closed_until_ms: None,
        }
    }

    fn encode(value: &UserTouches) -> Vec<u8> {
        let mut out = Vec::new();
        CompactTouches::encode(value, &mut out);
        out
    }

    #[test]
    fn touches_round_trip_and_take_a_fraction_of_their_json() {
        let value = sample();
        let bytes = encode(&value);
        assert_eq!(CompactTouches::decode(&bytes).unwrap(), value);
        let json = serde_json::to_vec(&value).unwrap();
        assert!(
            bytes.len() * 3 < json.len(),
            "{} bytes against {} of JSON",
            bytes.len(),
            json.len()
        );
        let empty = UserTouches::default();
        assert_eq!(CompactTouches::decode(&encode(&empty)).unwrap(), empty);
        let closed = UserTouches {
            closed_until_ms: Some(-5),
            ..UserTouches::default()
        };
        assert_eq!(CompactTouches::decode(&encode(&closed)).unwrap(), closed);
    }

    #[test]
    fn a_decoded_user_shares_each_name_between_its_touches() {
        let decoded = CompactTouches::decode(&encode(&sample())).unwrap();
        for (a, b) in decoded.touches.iter().zip(&decoded.touches[1..]) {
            if a.campaign == b.campaign {
                assert!(
                    Arc::ptr_eq(&a.campaign, &b.campaign),
                    "{} copied",
                    a.campaign
                );
            }
        }
        assert!(decoded
            .touches
            .windows(2)
            .any(|w| w[0].campaign == w[1].campaign));
    }

    #[test]
    fn names_are_shared_and_their_table_bounded() {
        use super::super::operator::Names;
        let mut names = Names::default();
        let first = names.get("cmp-1");
        assert!(Arc::ptr_eq(&first, &names.get("cmp-1")));
        // Hostile input naming a new creative in every record: the table starts over rather than growing.
        for n in 0..Names::LIMIT {
            names.get(&format!("creative-{n}"));
        }
        let again = names.get("cmp-1");
        assert_eq!(again, first);
        assert!(!Arc::ptr_eq(&first, &again), "the table kept every name");
    }

    #[test]
    fn the_json_of_older_changelogs_still_decodes() {
        let value = sample();
        let json = serde_json::to_vec(&value).unwrap();
        assert_eq!(CompactTouches::decode(&json).unwrap(), value);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        crate::runtime::binary::assert_rejects_damage(&encode(&sample()), CompactTouches::decode);
        assert!(CompactTouches::decode(&[VERSION, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(CompactTouches::decode(&[0x02]).is_err());
    }
}
