//! Times as tocsin writes them where machines read them: RFC 3339 in UTC, whole seconds.
//! (Times for people, in their zone and language, are the templates' business.)

use std::time::SystemTime;

/// `2026-11-29T14:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
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
    fn whole_seconds_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_700);
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
    }
}
