//! Audiences (who a campaign may reach) and campaign templates and pacing.

use super::cx::*;

#[derive(Debug, Clone)]
pub struct Campaigns {
    /// Replaces or adds to the shipped templates.
    pub templates: Option<PathBuf>,
    pub update_every: Duration,
    pub next_update: Duration,
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
    };
    let Some(r) = raw else { return c };
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
