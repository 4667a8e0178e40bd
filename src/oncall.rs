//! Who is reached: what an escalation level's `to:` entries mean (an address, a rotation,
//! a chat or paging channel), and rotations: whose turn it is at a given moment, with the
//! overrides staff set.
//!
//! Pure: time is an argument and the overrides are handed in (the engine reads them from
//! the store). This room knows nothing of mail, HTTP or the config file.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The kinds of channel a level may name as `KIND:NAME`.
pub const CHANNEL_KINDS: [&str; 10] = [
    "slack",
    "teams",
    "mattermost",
    "discord",
    "telegram",
    "ntfy",
    "matrix",
    "pagerduty",
    "opsgenie",
    "webhook",
];

/// One entry of an escalation level's `to:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A mail address.
    Address(&'a str),
    /// `rotation:NAME`: whoever is on call in that rotation at the moment.
    Rotation(&'a str),
    /// `KIND:NAME`: a channel of the `channels:` block (`slack:ops`, `pagerduty:main`).
    Channel { kind: &'a str, name: &'a str },
}

impl<'a> Target<'a> {
    /// An entry with an `@` is an address; `rotation:NAME` a rotation; any other
    /// `KIND:NAME` a channel (the config refuses a kind it does not know).
    pub fn parse(s: &'a str) -> Target<'a> {
        match s.split_once(':') {
            Some(("rotation", name)) if !s.contains('@') => Target::Rotation(name),
            Some((kind, name)) if !s.contains('@') => Target::Channel { kind, name },
            _ => Target::Address(s),
        }
    }
}

/// The mail addresses among `to` (rotations are resolved before a decision is taken, so
/// what is left besides addresses are channels).
pub fn addresses(to: &[String]) -> Vec<String> {
    to.iter()
        .filter(|t| matches!(Target::parse(t), Target::Address(_)))
        .cloned()
        .collect()
}

/// The channels among `to`, as written (`slack:ops`).
pub fn channels(to: &[String]) -> Vec<String> {
    to.iter()
        .filter(|t| matches!(Target::parse(t), Target::Channel { .. }))
        .cloned()
        .collect()
}

/// A rotation: members take turns of `every`, the first turn starting at `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub name: String,
    pub members: Vec<String>,
    pub every: Duration,
    pub start: SystemTime,
    /// A turn of whole days hands off at the same wall-clock time in this zone, summer
    /// time or not (09:00 in Warsaw stays 09:00).
    pub timezone: Tz,
}

/// Someone else takes a rotation's turns over `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Override {
    pub id: i64,
    pub rotation: String,
    pub who: String,
    #[serde(serialize_with = "crate::text::time::serialize_rfc3339")]
    pub from: SystemTime,
    #[serde(serialize_with = "crate::text::time::serialize_rfc3339")]
    pub until: SystemTime,
    /// Who set it.
    pub by: String,
}

/// Why someone is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Their turn: member `index` (from 0) of `of`.
    Turn { index: usize, of: usize },
    /// An override set by `by`.
    Override { id: i64, by: String },
}

/// Who is on call in a rotation, from when until when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub rotation: String,
    pub who: String,
    pub from: SystemTime,
    pub until: SystemTime,
    pub why: Why,
}

impl Shift {
    /// One line for a staff mail: who, in which rotation, until when and why.
    pub fn explain(&self, zone: &str) -> String {
        let until = crate::text::time::local(self.until, zone);
        match &self.why {
            Why::Turn { index, of } => format!(
                "{} (rotation {}: turn of member {} of {}, until {until})",
                self.who,
                self.rotation,
                index + 1,
                of
            ),
            Why::Override { id, by } => format!(
                "{} (rotation {}: override {id} set by {by}, until {until})",
                self.who, self.rotation
            ),
        }
    }
}

const DAY: u64 = 86_400;

impl Rotation {
    /// When turn `k` starts (turn 0 at `start`; negative turns run before it, so a
    /// rotation that starts next week already has someone on call today).
    pub fn handoff(&self, k: i64) -> SystemTime {
        let every = self.every.as_secs();
        if every > 0 && every % DAY == 0 {
            let start: DateTime<Utc> = self.start.into();
            let local: NaiveDateTime = start.with_timezone(&self.timezone).naive_local();
            let days = (every / DAY) as i64 * k;
            let naive = local + chrono::Duration::days(days);
            let at = self
                .timezone
                .from_local_datetime(&naive)
                .earliest()
                // The wall-clock time does not exist that day (clocks jump forward over
                // it): the hand-off is an hour later, when it would have been.
                .or_else(|| {
                    self.timezone
                        .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                        .earliest()
                });
            match at {
                Some(t) => t.with_timezone(&Utc).into(),
                None => shift(self.start, self.every, k),
            }
        } else {
            shift(self.start, self.every, k)
        }
    }

    /// The turn that holds `t`: its number, start and end.
    fn turn(&self, t: SystemTime) -> (i64, SystemTime, SystemTime) {
        let every = self.every.as_secs().max(1) as i64;
        let offset = signed_secs(self.start, t);
        let mut k = offset.div_euclid(every);
        // Summer time moves day-long turns by an hour: step to the turn that holds t.
        while self.handoff(k + 1) <= t {
            k += 1;
        }
        while self.handoff(k) > t {
            k -= 1;
        }
        (k, self.handoff(k), self.handoff(k + 1))
    }

    /// Who is on call at `t`: the latest override that covers it, else the member whose
    /// turn it is. `until` is when that changes (the turn's end, or an override's start
    /// or end).
    pub fn on_call(&self, overrides: &[Override], t: SystemTime) -> Shift {
        let mine = || overrides.iter().filter(|o| o.rotation == self.name);
        if let Some(o) = mine()
            .filter(|o| o.from <= t && t < o.until)
            .max_by_key(|o| o.id)
        {
            // A later override starting inside this one takes over from its start.
            let until = mine()
                .filter(|x| x.id > o.id && x.from > t && x.from < o.until)
                .map(|x| x.from)
                .min()
                .unwrap_or(o.until);
            return Shift {
                rotation: self.name.clone(),
                who: o.who.clone(),
                from: o.from,
                until,
                why: Why::Override {
                    id: o.id,
                    by: o.by.clone(),
                },
            };
        }
        let (k, from, end) = self.turn(t);
        let n = self.members.len().max(1);
        let index = k.rem_euclid(n as i64) as usize;
        let until = mine()
            .map(|o| o.from)
            .filter(|f| *f > t && *f < end)
            .min()
            .unwrap_or(end);
        Shift {
            rotation: self.name.clone(),
            who: self.members.get(index).cloned().unwrap_or_default(),
            from,
            until,
            why: Why::Turn { index, of: n },
        }
    }

    /// The shift after the one on at `t`.
    pub fn next(&self, overrides: &[Override], t: SystemTime) -> Shift {
        let now = self.on_call(overrides, t);
        self.on_call(overrides, now.until)
    }
}

fn shift(t: SystemTime, every: Duration, k: i64) -> SystemTime {
    let by = Duration::from_secs(every.as_secs().saturating_mul(k.unsigned_abs()));
    if k >= 0 { t + by } else { t - by }
}

fn signed_secs(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        crate::text::time::parse_time(s).unwrap()
    }

    fn primary() -> Rotation {
        Rotation {
            name: "primary".into(),
            members: vec!["anna@ops.example".into(), "piotr@ops.example".into()],
            every: Duration::from_secs(7 * DAY),
            start: at("2026-03-23T09:00:00+01:00"),
            timezone: "Europe/Warsaw".parse().unwrap(),
        }
    }

    #[test]
    fn targets_are_told_apart_by_their_prefix() {
        assert_eq!(
            Target::parse("oncall@example.com"),
            Target::Address("oncall@example.com")
        );
        assert_eq!(
            Target::parse("rotation:primary"),
            Target::Rotation("primary")
        );
        assert_eq!(
            Target::parse("slack:ops"),
            Target::Channel {
                kind: "slack",
                name: "ops"
            }
        );
        let to: Vec<String> = ["a@x.example", "slack:ops", "pagerduty:main"]
            .map(String::from)
            .into();
        assert_eq!(addresses(&to), ["a@x.example"]);
        assert_eq!(channels(&to), ["slack:ops", "pagerduty:main"]);
    }

    #[test]
    fn weekly_turns_hand_off_at_the_same_local_time_across_summer_time() {
        let r = primary();
        // Summer time starts in Warsaw on 29 March 2026: the hand-off of 30 March is
        // still 09:00 local, which is now 07:00 UTC instead of 08:00.
        let s = r.on_call(&[], at("2026-03-25T12:00:00Z"));
        assert_eq!(s.who, "anna@ops.example");
        assert_eq!(s.until, at("2026-03-30T07:00:00Z"));
        let s = r.on_call(&[], at("2026-03-30T07:30:00Z"));
        assert_eq!(s.who, "piotr@ops.example");
        assert_eq!(s.from, at("2026-03-30T09:00:00+02:00"));
        assert_eq!(s.why, Why::Turn { index: 1, of: 2 });
        // A minute before that hand-off, Anna still.
        assert_eq!(
            r.on_call(&[], at("2026-03-30T06:59:00Z")).who,
            "anna@ops.example"
        );
        // Many weeks on, in winter again.
        let s = r.on_call(&[], at("2026-12-01T10:00:00+01:00"));
        assert_eq!(s.from, at("2026-11-30T09:00:00+01:00"));
        assert_eq!(s.until, at("2026-12-07T09:00:00+01:00"));
    }

    #[test]
    fn before_its_start_the_turns_run_backwards() {
        let r = primary();
        let s = r.on_call(&[], at("2026-03-20T12:00:00+01:00"));
        assert_eq!(s.who, "piotr@ops.example");
        assert_eq!(s.until, r.start);
    }

    #[test]
    fn turns_shorter_than_a_day_run_in_absolute_time() {
        let r = Rotation {
            every: Duration::from_secs(12 * 3600),
            ..primary()
        };
        assert_eq!(
            r.on_call(&[], at("2026-03-23T20:59:00+01:00")).who,
            "anna@ops.example"
        );
        assert_eq!(
            r.on_call(&[], at("2026-03-23T21:00:00+01:00")).who,
            "piotr@ops.example"
        );
    }

    #[test]
    fn an_override_takes_over_and_hands_back() {
        let r = primary();
        let o = Override {
            id: 1,
            rotation: "primary".into(),
            who: "ewa@ops.example".into(),
            from: at("2026-03-24T18:00:00+01:00"),
            until: at("2026-03-25T08:00:00+01:00"),
            by: "anna".into(),
        };
        let other = Override {
            id: 2,
            rotation: "secondary".into(),
            ..o.clone()
        };
        let overrides = [o.clone(), other];
        let before = r.on_call(&overrides, at("2026-03-24T12:00:00+01:00"));
        assert_eq!(before.who, "anna@ops.example");
        assert_eq!(
            before.until, o.from,
            "the turn ends where the override starts"
        );
        let during = r.on_call(&overrides, at("2026-03-24T23:00:00+01:00"));
        assert_eq!(during.who, "ewa@ops.example");
        assert_eq!(
            during.why,
            Why::Override {
                id: 1,
                by: "anna".into()
            }
        );
        assert_eq!(during.until, o.until);
        assert_eq!(
            r.next(&overrides, at("2026-03-24T23:00:00+01:00")).who,
            "anna@ops.example"
        );
        assert_eq!(
            r.on_call(&overrides, o.until).who,
            "anna@ops.example",
            "the end is not covered"
        );
    }
}
