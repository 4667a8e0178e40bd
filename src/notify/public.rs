//! What customers read on the web, as template variables in one language: the status
//! page, an incident's own page, and the history of past incidents. Reads the store;
//! writes nothing.
//!
//! Honest history: a day is measured only where tocsin watched (an hour with probe runs,
//! or an incident), so days before it watched a service are "no data", never 100%; time
//! in an incident is down; maintenance windows are shown apart and never count as down
//! (no incident opens in one).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use minijinja::Value;
use serde::Serialize;

use super::templates::{duration_text, local_time, update_context, val, zone};
use crate::config::{Config, Service};
use crate::incident::Status;
use crate::store::{Hour, IncidentRecord, Said, SharedStore, StoreError, hour_of};

/// Days of history on the status page.
pub const HISTORY_DAYS: u32 = 90;
/// Up to this many services, the status page gives each its card with 90 days of bars.
const EXPANDED_UP_TO: usize = 30;
/// Months on one page of `/history`.
pub const MONTHS_PER_PAGE: u32 = 3;
/// Hours of the response-time sparkline.
const SPARK_HOURS: i64 = 24;

/// What every public page is rendered for: a language, the page's zone, and how links
/// keep the language the reader chose (`?lang=` when chosen explicitly, else nothing).
pub struct View<'a> {
    pub config: &'a Config,
    pub lang: &'a str,
    /// `""` or `lang=pl`, added to the page's links.
    pub lang_param: String,
    pub now: SystemTime,
}

impl View<'_> {
    fn tz(&self) -> &str {
        &self.config.page_timezone
    }

    fn at(&self, t: SystemTime) -> String {
        local_time(t, self.tz(), self.lang)
    }

    /// `path` with the chosen language, if any.
    fn link(&self, path: &str) -> String {
        if self.lang_param.is_empty() {
            path.to_string()
        } else if path.contains('?') {
            format!("{path}&{}", self.lang_param)
        } else {
            format!("{path}?{}", self.lang_param)
        }
    }

    /// The variables every page has.
    fn common(&self) -> Value {
        minijinja::context! {
            language => self.lang,
            company => val(&self.config.company),
            generated => self.at(self.now),
            timezone => self.tz(),
            status_url => format!("{}/status", self.config.public_url),
            status_link => self.link("/status"),
            history_link => self.link("/history"),
            feed_link => "/feed.atom",
            subscribe_link => self
                .config
                .campaigns
                .subscriptions
                .enabled
                .then(|| self.link("/subscribe")),
        }
    }
}

/// An incident's public timeline, oldest first, for templates: `kind` (`opened`,
/// `update`, `eta`, `also_affected`, `recovered`), `at`, and what the kind needs.
pub fn public_timeline(view: &View, inc: &IncidentRecord) -> Vec<Value> {
    let config = view.config;
    inc.public_entries()
        .into_iter()
        .map(|e| {
            let at = view.at(e.at);
            match e.what {
                Said::Opened => minijinja::context! { kind => "opened", at },
                Said::Update(u) => minijinja::context! {
                    kind => "update",
                    at,
                    ..update_context(u, view.lang, &config.page_language)
                },
                Said::Eta(t) => minijinja::context! { kind => "eta", at, eta => view.at(t) },
                Said::AlsoAffected(s) => minijinja::context! {
                    kind => "also_affected", at, service => config.service_name(s)
                },
                Said::Recovered => minijinja::context! { kind => "recovered", at },
            }
        })
        .collect()
}

/// One incident as the pages list it (the status page's open incidents, the incident
/// page, the history).
fn incident_summary(
    view: &View,
    inc: &IncidentRecord,
    statuses: &BTreeMap<String, Status>,
) -> Value {
    let now = view.now;
    let end = inc.ended.unwrap_or(now);
    let affected: Vec<String> = inc
        .also_affected()
        .iter()
        .map(|(s, _)| view.config.service_name(s))
        .collect();
    let state = match inc.ended {
        Some(_) => "resolved",
        None => match statuses.get(&inc.service) {
            Some(Status::Recovering) => "recovering",
            _ => "unavailable",
        },
    };
    minijinja::context! {
        id => inc.id,
        link => view.link(&format!("/incidents/{}", inc.id)),
        service => view.config.service_name(&inc.service),
        service_id => &inc.service,
        state => state,
        status => val(statuses.get(&inc.service).copied().unwrap_or(Status::Down)),
        started => view.at(inc.started),
        ended => inc.ended.map(|t| view.at(t)),
        duration => duration_text(end.duration_since(inc.started).unwrap_or_default()),
        affected => affected,
        eta => inc.promised_eta.or(inc.eta).filter(|e| *e > now && inc.ended.is_none()).map(|t| view.at(t)),
        next_update => inc.next_update.filter(|n| *n > now && inc.ended.is_none()).map(|t| view.at(t)),
        update => inc.latest_update().map(|u| update_context(u, view.lang, &view.config.page_language)),
        updates => public_timeline(view, inc),
    }
}

/// The page of one incident, or None when it is not public.
pub fn incident_context(
    view: &View,
    inc: &IncidentRecord,
    statuses: &BTreeMap<String, Status>,
) -> Option<Value> {
    if !view.config.shown_publicly(&inc.service, inc.customer_phase) {
        return None;
    }
    Some(minijinja::context! {
        incident => incident_summary(view, inc, statuses),
        open => inc.ended.is_none(),
        ..view.common()
    })
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(t: SystemTime, tz: &str) -> Month {
        let d = DateTime::<Utc>::from(t).with_timezone(&zone(tz));
        Month {
            year: d.year(),
            month: d.month(),
        }
    }

    /// `2026-11`; None for anything else.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        ((1970..=9999).contains(&year) && (1..=12).contains(&month) && y.len() == 4)
            .then_some(Month { year, month })
    }

    pub fn back(self, n: u32) -> Month {
        let i = self.year * 12 + self.month as i32 - 1 - n as i32;
        Month {
            year: i.div_euclid(12),
            month: i.rem_euclid(12) as u32 + 1,
        }
    }

    pub fn next(self) -> Month {
        let i = self.year * 12 + self.month as i32;
        Month {
            year: i.div_euclid(12),
            month: i.rem_euclid(12) as u32 + 1,
        }
    }

    /// Its first instant in `tz`.
    pub fn start(self, tz: &str) -> SystemTime {
        let day = NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default();
        midnight(day, tz)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The history page: `MONTHS_PER_PAGE` months ending with `last` (the current month when
/// None), newest first, each with its public incidents.
pub fn history_context(
    view: &View,
    store: &SharedStore,
    statuses: &BTreeMap<String, Status>,
    last: Option<Month>,
) -> Result<Value, StoreError> {
    let tz = view.tz();
    let current = Month::of(view.now, tz);
    let last = last.filter(|m| *m <= current).unwrap_or(current);
    let first = last.back(MONTHS_PER_PAGE - 1);
    let mut incidents = store
        .lock()
        .incidents_between(first.start(tz), last.next().start(tz))?;
    incidents.retain(|i| view.config.shown_publicly(&i.service, i.customer_phase));
    let mut months = Vec::new();
    for n in 0..MONTHS_PER_PAGE {
        let m = last.back(n);
        let (from, to) = (m.start(tz), m.next().start(tz));
        let items: Vec<Value> = incidents
            .iter()
            .filter(|i| i.started >= from && i.started < to)
            .map(|i| incident_summary(view, i, statuses))
            .collect();
        months.push(minijinja::context! {
            month => m.to_string(),
            name => month_name(m, view.lang),
            incidents => items,
        });
    }
    let older = first.back(1);
    let newer = (last < current).then(|| last.next().next().next().min(current));
    Ok(minijinja::context! {
        months => months,
        older_link => view.link(&format!("/history?month={older}")),
        newer_link => newer.map(|m| view.link(&format!("/history?month={m}"))),
        ..view.common()
    })
}

/// "November 2026", "listopad 2026", "november 2026".
fn month_name(m: Month, lang: &str) -> String {
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const PL: [&str; 12] = [
        "styczeń",
        "luty",
        "marzec",
        "kwiecień",
        "maj",
        "czerwiec",
        "lipiec",
        "sierpień",
        "wrzesień",
        "październik",
        "listopad",
        "grudzień",
    ];
    const SV: [&str; 12] = [
        "januari",
        "februari",
        "mars",
        "april",
        "maj",
        "juni",
        "juli",
        "augusti",
        "september",
        "oktober",
        "november",
        "december",
    ];
    let names = match lang.split('-').next().unwrap_or("en") {
        "pl" => &PL,
        "sv" => &SV,
        _ => &EN,
    };
    format!("{} {}", names[(m.month - 1) as usize], m.year)
}

/// The first instant of `day` in `tz` (the earliest, where summer time makes two).
fn midnight(day: NaiveDate, tz: &str) -> SystemTime {
    let z = zone(tz);
    let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match z.from_local_datetime(&local).earliest() {
        Some(t) => t.with_timezone(&Utc).into(),
        // A midnight skipped by a clock change: an hour later exists.
        None => (z
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&local)))
        .into(),
    }
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Serialize)]
struct Day {
    date: String,
    /// None: no data.
    uptime: Option<String>,
    /// `ok`, `minor`, `major`, `maintenance` or `none` (no data).
    level: &'static str,
}

/// A service's days, oldest first, and its uptime over the last 90 and 30 days (None:
/// no data at all).
struct Record {
    days: Vec<Day>,
    uptime90: Option<f64>,
    uptime30: Option<f64>,
}

/// Measures each of `days` (local day starts, and the end of the last) from the service's
/// recorded hours, its outages and its maintenance windows, up to `now`.
fn measure(
    bounds: &[SystemTime],
    hours: &BTreeMap<i64, Hour>,
    outages: &[(i64, i64)],
    windows: &[(i64, i64)],
    now: SystemTime,
) -> Record {
    let now = secs(now);
    let overlap = |a: i64, b: i64, spans: &[(i64, i64)]| -> i64 {
        spans
            .iter()
            .map(|(x, y)| (b.min(*y) - a.max(*x)).max(0))
            .sum()
    };
    let mut days = Vec::new();
    let mut totals = Vec::new();
    for w in bounds.windows(2) {
        let (start, end) = (secs(w[0]), secs(w[1]).min(now));
        let date = DateTime::<Utc>::from(w[0] + Duration::from_secs(43_200))
            .format("%Y-%m-%d")
            .to_string();
        let (mut watched, mut down) = (0i64, 0i64);
        if end > start {
            // Each hour of the day was watched if probes ran in it, or an incident
            // covered it (tocsin was watching, whatever the probes could write).
            let mut h = start - start.rem_euclid(3600);
            while h < end {
                let (a, b) = (h.max(start), (h + 3600).min(end));
                let ran = hours.get(&h).is_some_and(|x| x.runs > 0);
                if ran || overlap(a, b, outages) > 0 {
                    watched += b - a;
                    down += overlap(a, b, outages).min(b - a);
                }
                h += 3600;
            }
        }
        let maintenance = end > start && overlap(start, end, windows) > 0;
        let (uptime, level) = if watched == 0 {
            (None, if maintenance { "maintenance" } else { "none" })
        } else {
            let pct = 100.0 * (watched - down) as f64 / watched as f64;
            let level = if down == 0 {
                if maintenance { "maintenance" } else { "ok" }
            } else if pct >= 99.0 {
                "minor"
            } else {
                "major"
            };
            (Some(pct), level)
        };
        totals.push((watched, down));
        days.push(Day {
            date,
            uptime: uptime.map(|p| format!("{p:.2}")),
            level,
        });
    }
    let over = |last: usize| {
        let (w, d) = totals
            .iter()
            .rev()
            .take(last)
            .fold((0i64, 0i64), |(w, d), (a, b)| (w + a, d + b));
        (w > 0).then(|| 100.0 * (w - d) as f64 / w as f64)
    };
    Record {
        uptime90: over(days.len()),
        uptime30: over(30),
        days,
    }
}

/// The local day starts of the last `HISTORY_DAYS` days in `tz`, and tomorrow's.
fn day_bounds(now: SystemTime, tz: &str) -> Vec<SystemTime> {
    let today = DateTime::<Utc>::from(now)
        .with_timezone(&zone(tz))
        .date_naive();
    (0..=HISTORY_DAYS)
        .map(|i| {
            let d = today - chrono::Duration::days(i64::from(HISTORY_DAYS) - 1 - i64::from(i));
            midnight(d, tz)
        })
        .collect()
}

/// A service's outages within `[from, now]`, as Unix-second spans.
fn outages_of(
    history: &[crate::store::Span],
    id: &str,
    from: SystemTime,
    now: SystemTime,
) -> Vec<(i64, i64)> {
    history
        .iter()
        .filter(|(s, ..)| s == id)
        .map(|(_, st, en, _)| (secs((*st).max(from)), secs(en.unwrap_or(now).min(now))))
        .filter(|(a, b)| b > a)
        .collect()
}

/// A service's maintenance windows, as Unix-second spans.
fn windows_of(config: &Config, id: &str) -> Vec<(i64, i64)> {
    config
        .maintenance
        .iter()
        .filter(|m| m.service == id)
        .map(|m| (secs(m.start), secs(m.start + m.duration)))
        .collect()
}

/// The uptime of `service` over the last 30 days, in percent (None: no data), as the
/// badge shows it.
pub fn uptime30(
    config: &Config,
    store: &SharedStore,
    service: &Service,
    now: SystemTime,
) -> Result<Option<f64>, StoreError> {
    let bounds = day_bounds(now, &config.page_timezone);
    let from = bounds[bounds.len() - 31];
    let (hours, mut history) = {
        let s = store.lock();
        (s.probe_hours(&service.id, from)?, s.incidents_since(from)?)
    };
    history.retain(|(s, _, _, told)| config.shown_publicly(s, *told));
    let r = measure(
        &bounds[bounds.len() - 31..],
        &hours,
        &outages_of(&history, &service.id, from, now),
        &windows_of(config, &service.id),
        now,
    );
    Ok(r.uptime30)
}

/// The mean response time of each of the last 24 hours, as a sparkline, and the last
/// hour's mean in milliseconds.
fn sparkline(hours: &BTreeMap<i64, Hour>, now: SystemTime, label: &str) -> (String, Option<u64>) {
    let last = hour_of(now);
    let points: Vec<Option<f64>> = (0..SPARK_HOURS)
        .map(|i| {
            hours
                .get(&(last - (SPARK_HOURS - 1 - i) * 3600))
                .and_then(Hour::mean_ms)
        })
        .collect();
    let latest = points
        .iter()
        .rev()
        .flatten()
        .next()
        .map(|v| v.round() as u64);
    (crate::text::svg::sparkline(&points, 96, 20, label), latest)
}

/// The status page's variables.
pub fn status_context(
    view: &View,
    statuses: &BTreeMap<String, Status>,
    store: &SharedStore,
) -> Result<Value, StoreError> {
    let config = view.config;
    let now = view.now;
    let bounds = day_bounds(now, view.tz());
    let first = bounds[0];
    let (mut open, mut history) = {
        let s = store.lock();
        (s.incidents(true)?, s.incidents_since(first)?)
    };
    // A service shown from its customer phase only (`public_from: customer`): an
    // incident its customers were never told of appears nowhere on the page.
    open.retain(|i| config.shown_publicly(&i.service, i.customer_phase));
    history.retain(|(service, _, _, told)| config.shown_publicly(service, *told));
    let mut troubled: HashMap<&str, bool> = HashMap::new();
    for (svc, ..) in &history {
        troubled.insert(svc.as_str(), true);
    }
    // A few services are shown each with its card; many are shown with a card only when
    // something is or was wrong, the rest by name in collapsed groups.
    let expanded = config.services.len() <= EXPANDED_UP_TO;
    let mut cards: Vec<(bool, Option<&str>, Value)> = Vec::new();
    let mut quiet: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    let mut quiet_index: HashMap<Option<&str>, usize> = HashMap::new();
    for s in &config.services {
        let status = statuses.get(&s.id).copied().unwrap_or(Status::Up);
        if !expanded && status == Status::Up && !troubled.contains_key(s.id.as_str()) {
            let g = s.group.as_deref();
            let i = *quiet_index.entry(g).or_insert_with(|| {
                quiet.push((g, Vec::new()));
                quiet.len() - 1
            });
            quiet[i].1.push(&s.name);
            continue;
        }
        let hours = store.lock().probe_hours(&s.id, first)?;
        let r = measure(
            &bounds,
            &hours,
            &outages_of(&history, &s.id, first, now),
            &windows_of(config, &s.id),
            now,
        );
        let (spark, latest_ms) = sparkline(
            &hours,
            now,
            &format!("{}: response time, last 24 hours", s.name),
        );
        let bad_days: Vec<&Day> = r
            .days
            .iter()
            .filter(|d| d.level == "minor" || d.level == "major")
            .collect();
        let watched_days = r.days.iter().filter(|d| d.uptime.is_some()).count();
        cards.push((
            status != Status::Up,
            s.group.as_deref(),
            minijinja::context! {
                id => &s.id,
                name => &s.name,
                group => &s.group,
                status => val(status),
                uptime => r.uptime90.map(|u| format!("{u:.2}")),
                uptime30 => r.uptime30.map(|u| format!("{u:.2}")),
                watched_days => watched_days,
                bad_days => val(&bad_days),
                days => val(&r.days),
                sparkline => Value::from_safe_string(spark),
                response_ms => latest_ms,
                badge => format!("/badge/{}/status.svg", s.id),
            },
        ));
    }
    // Problems first; otherwise in the file's order.
    if !expanded {
        cards.sort_by_key(|(problem, ..)| !*problem);
    }
    // Groups in the order the file first names them; services of no group last.
    let mut order: Vec<Option<&str>> = Vec::new();
    for (_, g, _) in &cards {
        if !order.contains(g) {
            order.push(*g);
        }
    }
    order.sort_by_key(|g| g.is_none());
    let groups: Vec<Value> = order
        .iter()
        .map(|g| {
            let members: Vec<&Value> = cards
                .iter()
                .filter(|(_, x, _)| x == g)
                .map(|(.., c)| c)
                .collect();
            let down = members
                .iter()
                .filter(|c| c.get_attr("status").is_ok_and(|s| s.as_str() != Some("up")))
                .count();
            minijinja::context! {
                name => g,
                services => val(&members),
                down => down,
            }
        })
        .collect();
    let services: Vec<Value> = cards.into_iter().map(|(.., c)| c).collect();
    quiet.sort_by_key(|(g, _)| g.is_none());
    let quiet: Vec<Value> = quiet
        .into_iter()
        .map(|(group, names)| {
            minijinja::context! {
                group => val(group),
                count => names.len(),
                names => val(&names),
            }
        })
        .collect();
    let incidents: Vec<Value> = open
        .iter()
        .map(|i| incident_summary(view, i, statuses))
        .collect();
    let maintenance: Vec<Value> = config
        .maintenance
        .iter()
        .filter(|m| m.start + m.duration > now)
        .map(|m| {
            minijinja::context! {
                service => config.service_name(&m.service),
                start => view.at(m.start),
                end => view.at(m.start + m.duration),
                now => m.start <= now,
                note => &m.note,
            }
        })
        .collect();
    let week = now - Duration::from_secs(7 * 86_400);
    let mut recent: Vec<&IncidentRecord> = Vec::new();
    let past = store.lock().incidents_between(week, now)?;
    for i in past
        .iter()
        .filter(|i| i.ended.is_some() && config.shown_publicly(&i.service, i.customer_phase))
    {
        recent.push(i);
    }
    let resolved: Vec<Value> = recent
        .into_iter()
        .take(10)
        .map(|i| incident_summary(view, i, statuses))
        .collect();
    let overall = if !incidents.is_empty() {
        "degraded"
    } else if statuses.values().any(|s| *s == Status::Maintenance) {
        "maintenance"
    } else {
        "ok"
    };
    Ok(minijinja::context! {
        overall => overall,
        services => services,
        groups => groups,
        quiet => quiet,
        incidents => incidents,
        maintenance => maintenance,
        resolved => resolved,
        ..view.common()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
    }

    #[test]
    fn days_before_anything_was_watched_have_no_data_and_outages_count_only_where_watched() {
        let day = 86_400;
        let bounds: Vec<SystemTime> = (0..=3).map(|d| at(d * day)).collect();
        // Day 0: nothing recorded. Day 1: probes ran all day, an hour's outage. Day 2:
        // probes ran only in its first hour, then a maintenance window.
        let mut hours = BTreeMap::new();
        for h in 24..48 {
            hours.insert(
                h * 3600,
                Hour {
                    runs: 60,
                    ..Hour::default()
                },
            );
        }
        hours.insert(
            48 * 3600,
            Hour {
                runs: 60,
                ..Hour::default()
            },
        );
        let r = measure(
            &bounds,
            &hours,
            &[(day + 3600, day + 7200)],
            &[(2 * day + 7200, 2 * day + 9000)],
            at(3 * day),
        );
        assert_eq!(r.days[0].level, "none");
        assert_eq!(r.days[0].uptime, None);
        assert_eq!(r.days[1].level, "major");
        assert_eq!(r.days[1].uptime.as_deref(), Some("95.83"));
        assert_eq!(
            r.days[2].level, "maintenance",
            "maintenance is apart, not downtime"
        );
        assert_eq!(r.days[2].uptime.as_deref(), Some("100.00"));
        // 90 days: the watched 25 hours, one of them down.
        assert_eq!(format!("{:.2}", r.uptime90.unwrap()), "96.00");
        let none = measure(&bounds, &BTreeMap::new(), &[], &[], at(3 * day));
        assert_eq!(none.uptime90, None, "never 100% without data");
    }

    #[test]
    fn months_step_back_and_forth_across_years() {
        let m = Month::parse("2026-01").unwrap();
        assert_eq!(m.back(1).to_string(), "2025-12");
        assert_eq!(m.back(13).to_string(), "2024-12");
        assert_eq!(m.back(1).next(), m);
        for bad in ["2026-13", "2026-00", "26-01", "2026", "x-y", "2026-1-1"] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        assert_eq!(month_name(m, "pl"), "styczeń 2026");
        assert_eq!(month_name(m.back(2), "sv"), "november 2025");
    }

    #[test]
    fn a_day_starts_at_local_midnight_across_summer_time() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let t = midnight(d, "Europe/Warsaw");
        assert_eq!(crate::text::time::rfc3339(t), "2026-03-28T23:00:00Z");
        let t = midnight(d.succ_opt().unwrap(), "Europe/Warsaw");
        assert_eq!(crate::text::time::rfc3339(t), "2026-03-29T22:00:00Z");
    }
}
