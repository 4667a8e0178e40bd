//! Times as tocsin writes them where machines read them: RFC 3339 in UTC, whole seconds.
//! (Times for people, in their zone and language, are the templates' business.)

use std::time::{Duration, SystemTime};

/// The longest duration tocsin takes anywhere (config, API, CLI, the link form): ten
/// years. Every time it computes from one stays within what it can write down.
pub const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);
/// The earliest and latest times tocsin takes, as Unix seconds: 2000-01-01 and
/// 2200-01-01 (see [`earliest`] and [`latest`]).
const EARLIEST_SECS: u64 = 946_684_800;
const LATEST_SECS: u64 = 7_258_118_400;

pub fn earliest() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EARLIEST_SECS)
}

pub fn latest() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(LATEST_SECS)
}

/// A duration as people write it (`30s`, `15m`, `3h`, `1h30m`, `2d`), at most [`LONGEST`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid duration `{s}`: add a unit, e.g. `30s`, `15m`, `3h`, `500ms`"
        ));
    }
    let d = humantime::parse_duration(t).map_err(|_| {
        format!("invalid duration `{s}`: use a number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `3h`, `500ms`")
    })?;
    if d > LONGEST {
        return Err(format!(
            "duration `{s}` is longer than ten years, the longest tocsin takes"
        ));
    }
    Ok(d)
}

/// An RFC 3339 time (`2026-12-01T22:00:00Z`, or with an offset), from 2000 to 2200.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let t = humantime::parse_rfc3339_weak(s.trim())
        .map_err(|_| format!("`{s}` is not an RFC 3339 time such as 2026-12-01T22:00:00Z"))?;
    if !(earliest()..latest()).contains(&t) {
        return Err(format!(
            "`{s}` is outside the years 2000 to 2199, the times tocsin takes"
        ));
    }
    Ok(t)
}

/// `2026-11-29T14:00:00Z`. Never panics: a time past the year 9999 (which no input can
/// give, see [`latest`]) is written as that year's last second.
pub fn rfc3339(t: SystemTime) -> String {
    let last = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    humantime::format_rfc3339_seconds(t.clamp(SystemTime::UNIX_EPOCH, last)).to_string()
}

/// Serde: a time as an RFC 3339 string.
pub fn serialize_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// Serde: an optional time as an RFC 3339 string or null.
pub fn serialize_rfc3339_opt<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn out_of_range_durations_and_times_are_refused_and_never_panic() {
        assert_eq!(
            parse_duration("300000y").unwrap_err(),
            "duration `300000y` is longer than ten years, the longest tocsin takes"
        );
        assert!(parse_duration("10000y").is_err());
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(
            parse_time("9999-12-31T22:00:00Z").unwrap_err(),
            "`9999-12-31T22:00:00Z` is outside the years 2000 to 2199, the times tocsin takes"
        );
        assert!(parse_time("2026-12-01T22:00:00Z").is_ok());
        // Whatever the arithmetic elsewhere, writing a time down does not panic.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn whole_seconds_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_700);
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
    }
}
