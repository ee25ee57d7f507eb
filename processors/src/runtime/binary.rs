//! The pieces the compact changelog encodings are written with: LEB128 varints (signed ones zigzag-encoded),
//! length-prefixed bytes, little-endian floats, and a [`Reader`] that checks every length and count against the
//! bytes left. A changelog record is input like any other: a value that lies about its lengths is an error, never a
//! panic or an allocation the record cannot back.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{JsonValues, ValueCodec};

/// The rule every compact changelog encoding follows: a value whose first byte is the format's `version` is read by
/// `compact` from the byte after it, and one that starts with `{` is the JSON an older changelog holds; anything
/// else is an error naming `what`.
pub(crate) fn decode_compact_or_json<V: Serialize + DeserializeOwned>(
    bytes: &[u8],
    version: u8,
    what: &str,
    compact: impl FnOnce(Reader<'_>) -> Result<V, String>,
) -> Result<V, String> {
    match bytes.first() {
        Some(&first) if first == version => compact(Reader::new(bytes, 1)),
        Some(b'{') => JsonValues::decode(bytes),
        Some(other) => Err(format!("unknown {what} format {other:#04x}")),
        None => Err("empty value".into()),
    }
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzag-encoded, so that small negative numbers take few bytes too.
pub(crate) fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends the length of `bytes`, then `bytes`.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_unsigned(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends `value`'s eight bytes, little-endian.
pub(crate) fn put_f64(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A cursor over an encoded value; every read checks what is left, and says where it failed.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from byte `at` (past a format byte the caller has checked).
    pub(crate) fn new(bytes: &'a [u8], at: usize) -> Reader<'a> {
        Reader {
            bytes,
            at: at.min(bytes.len()),
        }
    }

    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("value ends at byte {}", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    pub(crate) fn unsigned(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!(
            "varint longer than 10 bytes before byte {}",
            self.at
        ))
    }

    pub(crate) fn signed(&mut self) -> Result<i64, String> {
        let raw = self.unsigned()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A count of items that take at least a byte each: never more than the bytes left (so a hostile count cannot
    /// make the decoder reserve memory).
    pub(crate) fn count(&mut self) -> Result<usize, String> {
        let count = self.unsigned()?;
        let left = self.bytes.len() - self.at;
        usize::try_from(count)
            .ok()
            .filter(|c| *c <= left)
            .ok_or_else(|| format!("{count} items in {left} bytes"))
    }

    /// An index into a list of `len` items.
    pub(crate) fn index(&mut self, len: usize) -> Result<usize, String> {
        let index = self.unsigned()?;
        usize::try_from(index)
            .ok()
            .filter(|i| *i < len)
            .ok_or_else(|| format!("index {index} of {len} strings"))
    }

    /// Length-prefixed bytes, borrowed.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.count()?;
        let bytes = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(bytes)
    }

    /// Length-prefixed UTF-8 text, borrowed; `what` names it in the error.
    pub(crate) fn str(&mut self, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|e| format!("{what}: {e}"))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, String> {
        let end = self.at + 8;
        let bytes: [u8; 8] = self
            .bytes
            .get(self.at..end)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("value ends inside a float at byte {}", self.at))?;
        self.at = end;
        Ok(f64::from_le_bytes(bytes))
    }

    /// Fails when bytes are left after the value: a value is read whole or not at all.
    pub(crate) fn finish(&self, what: &str) -> Result<(), String> {
        if self.at != self.bytes.len() {
            return Err(format!(
                "{} bytes after the {what}",
                self.bytes.len() - self.at
            ));
        }
        Ok(())
    }
}

/// Checks a decoder against every truncation of a valid encoding (each must fail), every one-byte corruption (each
/// may decode to something else or fail, never panic or reserve what the bytes cannot hold) and a trailing byte.
#[cfg(test)]
pub(crate) fn assert_rejects_damage<T>(valid: &[u8], decode: impl Fn(&[u8]) -> Result<T, String>) {
    for len in 0..valid.len() {
        assert!(decode(&valid[..len]).is_err(), "{len} bytes");
    }
    for at in 0..valid.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut corrupt = valid.to_vec();
            corrupt[at] ^= flip;
            let _ = decode(&corrupt);
        }
    }
    let mut trailing = valid.to_vec();
    trailing.push(0);
    assert!(decode(&trailing).is_err(), "a trailing byte");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_at_their_extremes() {
        let mut out = Vec::new();
        let unsigned = [0, 1, 127, 128, 300, u64::MAX];
        let signed = [0, -1, 1, -64, 64, i64::MIN, i64::MAX];
        let floats = [0.0, -2.5, f64::MAX, f64::MIN_POSITIVE];
        for v in unsigned {
            put_unsigned(&mut out, v);
        }
        for v in signed {
            put_signed(&mut out, v);
        }
        for v in floats {
            put_f64(&mut out, v);
        }
        put_bytes(&mut out, b"abc");
        let mut reader = Reader::new(&out, 0);
        for v in unsigned {
            assert_eq!(reader.unsigned().unwrap(), v);
        }
        for v in signed {
            assert_eq!(reader.signed().unwrap(), v);
        }
        for v in floats {
            assert_eq!(reader.f64().unwrap(), v);
        }
        assert_eq!(reader.str("text").unwrap(), "abc");
        reader.finish("test").unwrap();
    }

    #[test]
    fn lengths_beyond_the_value_are_errors() {
        // A length of 2^62 with three bytes behind it.
        let mut out = Vec::new();
        put_unsigned(&mut out, 1 << 62);
        out.extend_from_slice(b"abc");
        assert!(Reader::new(&out, 0).bytes().is_err());
        assert!(Reader::new(&[0xff; 11], 0).unsigned().is_err());
        assert!(Reader::new(&[1, 2, 3], 0).f64().is_err());
        assert!(Reader::new(&[0xff, 0xfe], 0).str("text").is_err());
        assert!(Reader::new(&[1, 0xff], 0).str("text").is_err());
        let mut reader = Reader::new(&[5, 1], 0);
        assert!(reader.index(5).is_err());
        assert_eq!(reader.index(5).unwrap(), 1);
        assert!(reader.finish("test").is_ok());
        assert!(Reader::new(&[1], 0).finish("test").is_err());
    }
}
