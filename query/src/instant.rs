//! Moments as people write them: RFC 3339, a date or epoch milliseconds, as the time bounds of queries, replays,
//! state rebuilds and backtests.

/// Text that names no moment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time: give RFC 3339 (2026-11-02T12:00:00Z), a date (2026-11-02) or epoch milliseconds")]
pub struct InstantError(pub String);

/// Epoch milliseconds of `text`: RFC 3339 (`2026-11-02T12:00:00Z`), a date (`2026-11-02`, midnight UTC) or epoch
/// milliseconds.
pub fn parse_instant(text: &str) -> Result<i64, InstantError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc().timestamp_millis());
        }
    }
    Err(InstantError(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_millis_rfc3339_or_dates() {
        assert_eq!(parse_instant("1000"), Ok(1000));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_instant("1970-01-02"), Ok(86_400_000));
        assert!(parse_instant("yesterday")
            .unwrap_err()
            .to_string()
            .starts_with("\"yesterday\" is not a time"));
    }
}
