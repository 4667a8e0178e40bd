//! Audiences (who a campaign may reach) and campaign templates and pacing.

use super::cx::*;

#[derive(Debug, Clone)]
pub struct Campaigns {
    /// Replaces or adds to the shipped templates.
    pub templates: Option<PathBuf>,
    pub update_every: Duration,
    pub next_update: Duration,
    /// Outages starting within this long of each other are merged per customer.
    pub merge_window: Duration,
    /// One recovery message per service (`each`) instead of one when the last is back.
    pub recovery_each: bool,
    /// Staff are reminded this long before an update falls due; zero: never.
    pub remind_before: Duration,
    pub subscriptions: Subscriptions,
}

/// Self-service subscriptions on the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    pub enabled: bool,
    pub per_ip_per_hour: u32,
    pub per_address_per_day: u32,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            enabled: false,
            per_ip_per_hour: 5,
            per_address_per_day: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Audience {
    Csv(PathBuf),
    Yaml(PathBuf),
}

pub(super) fn resolve_audiences(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawAudience>,
) -> BTreeMap<String, Audience> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let ap = Path::root().key("audiences").key(name);
        if name == "subscribers" {
            cx.err(
                &ap,
                "the audience name `subscribers` is tocsin's own (customers who subscribed on the status page): rename this audience",
            );
            continue;
        }
        let (key, file, kind): (&str, &str, fn(PathBuf) -> Audience) = match (&a.csv, &a.yaml) {
            (Some(c), None) => ("csv", c, Audience::Csv),
            (None, Some(y)) => ("yaml", y, Audience::Yaml),
            (Some(_), Some(_)) => {
                cx.err(
                    &ap.key("yaml"),
                    format!("audience `{name}` has both `csv` and `yaml`: keep one"),
                );
                continue;
            }
            (None, None) => {
                cx.err(
                    &ap,
                    format!("audience `{name}` needs `csv` or `yaml` (the file of recipients)"),
                );
                continue;
            }
        };
        let path = cx.file(file);
        if !path.is_file() {
            cx.err(
                &ap.key(key),
                format!("audience file `{}` does not exist", path.display()),
            );
            continue;
        }
        out.insert(name.clone(), kind(path));
    }
    out
}

pub(super) fn resolve_campaigns(cx: &mut Ctx, raw: Option<&RawCampaigns>) -> Campaigns {
    let cp = Path::root().key("campaigns");
    let mut c = Campaigns {
        templates: None,
        update_every: DEFAULT_UPDATE_EVERY,
        next_update: DEFAULT_NEXT_UPDATE,
        merge_window: Duration::from_secs(120),
        recovery_each: false,
        remind_before: Duration::from_secs(15 * 60),
        subscriptions: Subscriptions::default(),
    };
    let Some(r) = raw else { return c };
    if let Some(s) = &r.merge_window {
        if let Some(d) = cx.duration(&cp.key("merge_window"), s) {
            if d > Duration::from_secs(3600) {
                cx.err(
                    &cp.key("merge_window"),
                    format!("`merge_window` ({}) is longer than 1h: customers would wait that long to hear of an outage; use at most 1h", fmt_dur(d)),
                );
            }
            c.merge_window = d;
        }
    }
    match r.recovery.as_deref() {
        None | Some("last") => {}
        Some("each") => c.recovery_each = true,
        Some(other) => cx.err(
            &cp.key("recovery"),
            format!("unknown `recovery: {other}`: use `last` (one message when every merged service is back) or `each` (one per service)"),
        ),
    }
    if let Some(d) = r
        .remind_before
        .as_deref()
        .and_then(|s| cx.duration(&cp.key("remind_before"), s))
    {
        c.remind_before = d;
    }
    if let Some(sub) = &r.subscriptions {
        let sp = cp.key("subscriptions");
        c.subscriptions.enabled = sub.enabled.unwrap_or(true);
        for (key, given, into) in [
            (
                "per_ip_per_hour",
                sub.per_ip_per_hour,
                &mut c.subscriptions.per_ip_per_hour,
            ),
            (
                "per_address_per_day",
                sub.per_address_per_day,
                &mut c.subscriptions.per_address_per_day,
            ),
        ] {
            match given {
                Some(0) => cx.err(
                    &sp.key(key),
                    format!(
                        "`{key}` is 0: nobody could subscribe; give at least 1, or `enabled: false`"
                    ),
                ),
                Some(n) => *into = n,
                None => {}
            }
        }
    }
    if let Some(t) = &r.templates {
        let dir = cx.file(t);
        if dir.is_dir() {
            c.templates = Some(dir);
        } else {
            cx.err(
                &cp.key("templates"),
                format!("template directory `{}` does not exist", dir.display()),
            );
        }
    }
    if let Some(d) = r
        .update_every
        .as_deref()
        .and_then(|s| cx.positive_duration(&cp.key("update_every"), s))
    {
        c.update_every = d;
    }
    if let Some(d) = r
        .next_update
        .as_deref()
        .and_then(|s| cx.positive_duration(&cp.key("next_update"), s))
    {
        c.next_update = d;
    }
    if c.next_update < c.update_every {
        let at = if r.next_update.is_some() {
            "next_update"
        } else {
            "update_every"
        };
        cx.err(&cp.key(at), format!("`next_update` ({}) is shorter than `update_every` ({}): the promised update could not be sent in time", fmt_dur(c.next_update), fmt_dur(c.update_every)));
    }
    c
}
