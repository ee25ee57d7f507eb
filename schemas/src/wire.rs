//! Confluent's wire format for a record value: magic byte `0`, the writer schema's registry id as a big-endian
//! `u32`, then the Avro binary datum. Pure framing: encoding the datum and resolving the id are the callers' job
//! (they need a schema registry client, which this crate does not depend on).

/// The first byte of every framed value.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the frame header: magic byte plus the 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Why a value is not a Confluent wire-format frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the 5-byte header.
    #[error("value of {0} bytes is shorter than the 5-byte Confluent wire header")]
    TooShort(usize),
    /// The first byte is not the magic byte 0.
    #[error("magic byte is {0:#04x}, expected 0x00 (not Confluent wire format)")]
    BadMagic(u8),
}

/// The 5-byte header of a value written with schema `schema_id`.
pub fn header(schema_id: u32) -> [u8; HEADER_LEN] {
    let id = schema_id.to_be_bytes();
    [MAGIC_BYTE, id[0], id[1], id[2], id[3]]
}

/// Appends the header of schema `schema_id` to `out`; the caller then appends the Avro datum.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&header(schema_id));
}

/// A whole frame: the header of `schema_id` followed by `datum`.
pub fn encode(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + datum.len());
    write_header(schema_id, &mut frame);
    frame.extend_from_slice(datum);
    frame
}

/// Splits a frame into its schema id and its Avro datum (possibly empty). A value shorter than the header is
/// [`FrameError::TooShort`] whatever its first byte; otherwise a first byte other than 0 is
/// [`FrameError::BadMagic`].
pub fn split(frame: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(FrameError::TooShort(frame.len()));
    }
    if frame[0] != MAGIC_BYTE {
        return Err(FrameError::BadMagic(frame[0]));
    }
    let id = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
    Ok((id, &frame[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_magic_byte_big_endian_id_then_datum() {
        let frame = encode(0x0102_0304, b"avro");
        assert_eq!(frame, b"\x00\x01\x02\x03\x04avro");
        assert_eq!(split(&frame), Ok((0x0102_0304, &b"avro"[..])));
        let mut out = vec![9];
        write_header(7, &mut out);
        assert_eq!(out, [9, 0, 0, 0, 0, 7]);
    }

    #[test]
    fn an_empty_datum_splits_and_short_or_foreign_values_do_not() {
        assert_eq!(split(&header(42)), Ok((42, &[][..])));
        assert_eq!(split(b""), Err(FrameError::TooShort(0)));
        assert_eq!(split(b"\x01\x00"), Err(FrameError::TooShort(2)));
        assert_eq!(split(b"{\"a\":1}"), Err(FrameError::BadMagic(b'{')));
        assert_eq!(
            FrameError::BadMagic(0x7b).to_string(),
            "magic byte is 0x7b, expected 0x00 (not Confluent wire format)"
        );
    }
}
