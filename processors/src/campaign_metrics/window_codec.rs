//! The changelog encoding of a window row: compact binary, because the `windows` store is most of the job's state
//! and a restore decodes every row of it before the first record is processed.
//!
//! As JSON a row was about 360 bytes (seventeen field names, times as 13 digits, floats as text), and decoding it
//! was most of a restore's time on the job thread. Here a row is 75 to 95 bytes: its strings, its times and counters
//! as varints, and its two credit sums only when there are any.
//!
//! Layout (varints are LEB128; signed values zigzag-encoded; strings are a length and UTF-8 bytes):
//!
//! ```text
//! 0x01                      format version; JSON values (older changelogs) start with '{'
//! flags                     bit 0: daily, bit 1: final, bit 2: the credit sums follow
//! platform                  0 Google Ads, 1 Meta, 2 TikTok, 3 LinkedIn, 4 unknown
//! start_ms                  signed
//! end_ms - start_ms         signed
//! campaign_id, time_zone, account_id, currency      strings
//! impressions, clicks       unsigned
//! spend_micros              signed
//! [conversions, revenue_micros]                     f64, little-endian
//! corrections, revision     unsigned
//! correlation_id            string
//! ```

use adstream_schemas::events::Platform;

use super::operator::WindowRow;
use crate::runtime::binary::{
    decode_compact_or_json, put_bytes, put_f64, put_signed, put_unsigned, Reader,
};
use crate::runtime::ValueCodec;

/// The first byte of a value in this format.
const VERSION: u8 = 1;
const DAILY: u8 = 1;
const FINAL: u8 = 2;
const HAS_CREDITS: u8 = 4;

/// [`WindowRow`]s in the compact format above; reads the JSON of older changelogs too.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactWindowRows;

impl ValueCodec<WindowRow> for CompactWindowRows {
    fn encode(row: &WindowRow, out: &mut Vec<u8>) {
        out.push(VERSION);
        // Credits are rare next to impressions and clicks; `-0.0` must come back as it went, so only a positive
        // zero is left out.
        let has_credits = row.conversions.to_bits() != 0 || row.revenue_micros.to_bits() != 0;
        let mut flags = 0;
        if row.daily {
            flags |= DAILY;
        }
        if row.is_final {
            flags |= FINAL;
        }
        if has_credits {
            flags |= HAS_CREDITS;
        }
        out.push(flags);
        out.push(platform_code(row.platform));
        put_signed(out, row.start_ms);
        put_signed(out, row.end_ms.wrapping_sub(row.start_ms));
        for text in [
            &row.campaign_id,
            &row.time_zone,
            &row.account_id,
            &row.currency,
        ] {
            put_bytes(out, text.as_bytes());
        }
        put_unsigned(out, row.impressions);
        put_unsigned(out, row.clicks);
        put_signed(out, row.spend_micros);
        if has_credits {
            put_f64(out, row.conversions);
            put_f64(out, row.revenue_micros);
        }
        put_unsigned(out, row.corrections);
        put_unsigned(out, row.revision);
        put_bytes(out, row.correlation_id.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<WindowRow, String> {
        decode_compact_or_json(bytes, VERSION, "window row", window_row)
    }
}

/// Decodes the value after its format byte.
fn window_row(mut reader: Reader<'_>) -> Result<WindowRow, String> {
    let flags = reader.byte()?;
    if flags & !(DAILY | FINAL | HAS_CREDITS) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let platform = platform_of(reader.byte()?)?;
    let start_ms = reader.signed()?;
    let end_ms = start_ms.wrapping_add(reader.signed()?);
    let campaign_id = reader.str("campaign id")?.to_owned();
    let time_zone = reader.str("time zone")?.to_owned();
    let account_id = reader.str("account id")?.to_owned();
    let currency = reader.str("currency")?.to_owned();
    let impressions = reader.unsigned()?;
    let clicks = reader.unsigned()?;
    let spend_micros = reader.signed()?;
    let (conversions, revenue_micros) = if flags & HAS_CREDITS != 0 {
        (reader.f64()?, reader.f64()?)
    } else {
        (0.0, 0.0)
    };
    let corrections = reader.unsigned()?;
    let revision = reader.unsigned()?;
    let correlation_id = reader.str("correlation id")?.to_owned();
    reader.finish("window row")?;
    Ok(WindowRow {
        campaign_id,
        daily: flags & DAILY != 0,
        start_ms,
        end_ms,
        time_zone,
        platform,
        account_id,
        currency,
        impressions,
        clicks,
        spend_micros,
        conversions,
        revenue_micros,
        is_final: flags & FINAL != 0,
        corrections,
        revision,
        correlation_id,
    })
}

fn platform_code(platform: Platform) -> u8 {
    match platform {
        Platform::GoogleAds => 0,
        Platform::Meta => 1,
        Platform::Tiktok => 2,
        Platform::Linkedin => 3,
        Platform::Unknown => 4,
    }
}

fn platform_of(code: u8) -> Result<Platform, String> {
    Ok(match code {
        0 => Platform::GoogleAds,
        1 => Platform::Meta,
        2 => Platform::Tiktok,
        3 => Platform::Linkedin,
        4 => Platform::Unknown,
        other => return Err(format!("unknown platform code {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> WindowRow {
        WindowRow {
            campaign_id: "google-1180".into(),
            daily: true,
            start_ms: 1_764_547_200_000,
            end_ms: 1_764_633_600_000,
            time_zone: "America/New_York".into(),
            platform: Platform::Tiktok,
            account_id: "acct-7".into(),
            currency: "USD".into(),
            impressions: 120_345,
            clicks: 2_101,
            spend_micros: 98_765_432,
            conversions: 12.75,
            revenue_micros: 1_234_567.5,
            is_final: true,
            corrections: 3,
            revision: 41,
            correlation_id: "imp-2a-000118".into(),
        }
    }

    fn encode(row: &WindowRow) -> Vec<u8> {
        let mut out = Vec::new();
        CompactWindowRows::encode(row, &mut out);
        out
    }

    #[test]
    fn rows_round_trip_in_a_fraction_of_their_json() {
        let with_credits = row();
        let without_credits = WindowRow {
            daily: false,
            is_final: false,
            conversions: 0.0,
            revenue_micros: 0.0,
            platform: Platform::Unknown,
            end_ms: with_credits.start_ms - 1,
            ..row()
        };
        let negative_zero = WindowRow {
            conversions: -0.0,
            ..row()
        };
        for row in [with_credits, without_credits, negative_zero] {
            let bytes = encode(&row);
            let decoded = CompactWindowRows::decode(&bytes).unwrap();
            assert_eq!(decoded, row);
            assert_eq!(decoded.conversions.to_bits(), row.conversions.to_bits());
            let json = serde_json::to_vec(&row).unwrap();
            assert!(
                bytes.len() * 3 < json.len(),
                "{} vs {}",
                bytes.len(),
                json.len()
            );
        }
    }

    #[test]
    fn the_json_of_older_changelogs_still_decodes() {
        let json = serde_json::to_vec(&row()).unwrap();
        assert_eq!(CompactWindowRows::decode(&json).unwrap(), row());
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        crate::runtime::binary::assert_rejects_damage(&encode(&row()), CompactWindowRows::decode);
        assert!(CompactWindowRows::decode(&[VERSION, 8, 0]).is_err());
        assert!(CompactWindowRows::decode(&[VERSION, 0, 5]).is_err());
        assert!(CompactWindowRows::decode(&[0x02]).is_err());
    }
}
