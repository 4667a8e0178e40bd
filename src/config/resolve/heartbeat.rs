//! Heartbeat probes: when pings are expected (`period`, or `schedule` in `timezone`) and
//! how late they may be (`grace`).

use std::str::FromStr;

use super::cx::*;
use crate::probe::heartbeat::{Expect, HeartbeatCheck};

/// Without `grace`: a ping may be five minutes late.
const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);

pub(super) fn heartbeat_check(
    cx: &mut Ctx,
    p: &Path,
    h: &RawHeartbeat,
    need_target: bool,
) -> Option<HeartbeatCheck> {
    if !need_target {
        cx.err(
            p,
            "a heartbeat is decided by the pings a job sends, so it cannot be a `/probe` module: move it under a service's probes",
        );
        return None;
    }
    let grace = match &h.grace {
        Some(g) => cx.positive_duration(&p.key("grace"), g),
        None => Some(DEFAULT_GRACE),
    };
    let expect = match (&h.period, &h.schedule) {
        (Some(period), None) => {
            if h.timezone.is_some() {
                cx.err(
                    &p.key("timezone"),
                    "`timezone` applies to a `schedule`; a `period` needs none",
                );
            }
            cx.positive_duration(&p.key("period"), period)
                .map(Expect::Every)
        }
        (None, Some(schedule)) => {
            let tz = match h
                .timezone
                .as_deref()
                .unwrap_or("UTC")
                .parse::<chrono_tz::Tz>()
            {
                Ok(tz) => Some(tz),
                Err(_) => {
                    let tz = h.timezone.as_deref().unwrap_or_default();
                    let names: Vec<String> = chrono_tz::TZ_VARIANTS
                        .iter()
                        .map(|z| z.name().to_string())
                        .collect();
                    let msg = match nearest(tz, &names) {
                        Some(best) => format!("unknown time zone `{tz}`, did you mean `{best}`?"),
                        None => format!(
                            "`timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{tz}`"
                        ),
                    };
                    cx.err(&p.key("timezone"), msg);
                    None
                }
            };
            let cron = match croner::Cron::from_str(schedule) {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.err(
                        &p.key("schedule"),
                        format!("`schedule` is not a cron expression such as \"0 3 * * *\" (minute hour day month weekday): {e}"),
                    );
                    None
                }
            };
            match (cron, tz) {
                (Some(cron), Some(tz)) => Some(Expect::Cron {
                    cron: Arc::new(cron),
                    source: schedule.clone(),
                    tz,
                }),
                _ => None,
            }
        }
        (Some(_), Some(_)) => {
            cx.err(
                &p.key("schedule"),
                "give `period` or `schedule`, not both: a ping every period, or after each scheduled run",
            );
            None
        }
        (None, None) => {
            cx.err(
                p,
                "needs `period` (a ping at least this often, such as 1h) or `schedule` (a cron expression such as \"0 3 * * *\")",
            );
            None
        }
    };
    Some(HeartbeatCheck {
        expect: expect?,
        grace: grace?,
    })
}
