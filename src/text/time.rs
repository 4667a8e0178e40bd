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

/// An RFC 3339 time (`2026-12-01T22:00:00Z`, or with an offset such as `+01:00`), from
/// 2000 to 2200.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let t = humantime::parse_rfc3339_weak(s.trim())
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(SystemTime::from)
        })
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time such as 2026-12-01T22:00:00Z"))?;
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

/// `2026-12-07 09:00 CET`: `t` as a clock in the IANA zone `zone` shows it (UTC for a
/// zone chrono-tz does not know; the config refuses those).
pub fn local(t: SystemTime, zone: &str) -> String {
    let zone: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
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

/// The furthest ETA taken.
const MAX_ETA: Duration = Duration::from_secs(366 * 86_400);

/// An ETA as on-call staff type it, at `now`, with wall-clock times in the IANA zone
/// `tz`: a duration from now (`4h`, `2h30m`, `90m`), a time of day (`14:00`: today, or
/// tomorrow once past), `today 14:00`, `tomorrow 09:00`, a date and time
/// (`2026-12-01 18:00`), or an RFC 3339 time. Never in the past, at most a year away.
pub fn parse_eta(s: &str, now: SystemTime, tz: &str) -> Result<SystemTime, String> {
    use chrono::{Duration as Days, NaiveDate, NaiveTime, TimeZone, Utc};
    let text = s.trim();
    let zone: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    let today = Utc
        .timestamp_opt(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            0,
        )
        .single()
        .map(|t| t.with_timezone(&zone).date_naive());
    let clock = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").ok();
    // A wall-clock time on a day in `zone`; a time the zone skips (a DST gap) is refused.
    let at = |day: NaiveDate, time: NaiveTime| -> Result<SystemTime, String> {
        zone.from_local_datetime(&day.and_time(time))
            .earliest()
            .map(SystemTime::from)
            .ok_or_else(|| format!("ETA `{s}` does not exist in {tz} (the clocks skip it)"))
    };
    let lower = text.to_ascii_lowercase();
    let t = if let Ok(d) = humantime::parse_duration(text) {
        now.checked_add(d).unwrap_or_else(latest)
    } else if let (Some(day), Some(time)) = (today, clock(text)) {
        let t = at(day, time)?;
        if t > now {
            t
        } else {
            at(day + Days::days(1), time)?
        }
    } else if let (Some(day), Some(time)) = (today, lower.strip_prefix("today ").and_then(clock)) {
        at(day, time)?
    } else if let (Some(day), Some(time)) = (today, lower.strip_prefix("tomorrow ").and_then(clock))
    {
        at(day + Days::days(1), time)?
    } else if let Ok(local) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M") {
        at(local.date(), local.time())?
    } else if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else {
        return Err(format!(
            "ETA `{s}` is not a time tocsin reads: write a duration from now (4h, 2h30m), a time in {tz} (14:00, tomorrow 09:00, 2026-12-01 18:00), or an RFC 3339 time (2026-12-01T18:00:00Z)"
        ));
    };
    if t <= now {
        return Err(format!("ETA `{s}` is not in the future"));
    }
    if t > now + MAX_ETA {
        return Err(format!(
            "ETA `{s}` is more than a year away: give the time recovery is expected, or none"
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eta_is_read_as_on_call_types_it() {
        // Sunday 29 November 2026, 13:30 in Warsaw (12:30 UTC).
        let now = parse_time("2026-11-29T12:30:00Z").unwrap();
        let eta = |s: &str| parse_eta(s, now, "Europe/Warsaw").map(rfc3339);
        assert_eq!(eta("4h").unwrap(), "2026-11-29T16:30:00Z");
        assert_eq!(eta("2h30m").unwrap(), "2026-11-29T15:00:00Z");
        assert_eq!(
            eta("14:00").unwrap(),
            "2026-11-29T13:00:00Z",
            "today, in Warsaw"
        );
        assert_eq!(
            eta("09:00").unwrap(),
            "2026-11-30T08:00:00Z",
            "past: tomorrow"
        );
        assert_eq!(eta("tomorrow 09:00").unwrap(), "2026-11-30T08:00:00Z");
        assert_eq!(eta("Today 18:15").unwrap(), "2026-11-29T17:15:00Z");
        assert_eq!(eta("2026-12-01 18:00").unwrap(), "2026-12-01T17:00:00Z");
        assert_eq!(eta("2026-12-01T18:00:00Z").unwrap(), "2026-12-01T18:00:00Z");
        assert!(
            eta("today 09:00")
                .unwrap_err()
                .contains("is not in the future")
        );
        assert!(eta("soon").unwrap_err().contains("14:00, tomorrow 09:00"));
        assert!(
            eta("2028-01-01 10:00")
                .unwrap_err()
                .contains("more than a year")
        );
        // 02:30 does not happen in Warsaw on 28 March 2027.
        let spring = parse_time("2027-03-27T12:00:00Z").unwrap();
        assert!(
            parse_eta("tomorrow 02:30", spring, "Europe/Warsaw")
                .unwrap_err()
                .contains("the clocks skip it")
        );
    }
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
