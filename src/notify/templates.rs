//! Templates for customer mails and pages (minijinja): `<lang>/{outage,update,recovery}`
//! `.{subject,txt,html}`, `<lang>/{placeholder,status}.html`, and the autoresponder's and
//! hotline's `<lang>/{autoreply.subject,autoreply.txt,hotline.txt}`, shipped for en, pl and sv
//! and embedded in the binary. A `campaigns.templates` directory replaces any of them file
//! by file, and adds languages. HTML is escaped automatically; subjects are one line.
//!
//! Loading checks every template: syntax, and that outage and update messages can never
//! be vague: rendered with an ETA they must state it, rendered without one they must state
//! the next-update time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Locale, Utc};
use minijinja::Environment;
use serde::Serialize;

use crate::store::CampaignKind;

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// The templates in the binary: (name, text).
const SHIPPED: &[(&str, &str)] = shipped!(
    "_mail.html",
    "_page.html",
    "en/outage.subject",
    "en/outage.txt",
    "en/outage.html",
    "en/update.subject",
    "en/update.txt",
    "en/update.html",
    "en/recovery.subject",
    "en/recovery.txt",
    "en/recovery.html",
    "en/placeholder.html",
    "en/status.html",
    "en/_timeline.html",
    "en/incident.html",
    "en/history.html",
    "en/unsubscribe.html",
    "en/subscribe.html",
    "en/subscription.html",
    "en/confirm.subject",
    "en/confirm.txt",
    "en/confirm.html",
    "en/autoreply.subject",
    "en/autoreply.txt",
    "en/hotline.txt",
    "en/maintenance.subject",
    "en/maintenance.txt",
    "en/maintenance.html",
    "pl/outage.subject",
    "pl/outage.txt",
    "pl/outage.html",
    "pl/update.subject",
    "pl/update.txt",
    "pl/update.html",
    "pl/recovery.subject",
    "pl/recovery.txt",
    "pl/recovery.html",
    "pl/placeholder.html",
    "pl/status.html",
    "pl/_timeline.html",
    "pl/incident.html",
    "pl/history.html",
    "pl/unsubscribe.html",
    "pl/subscribe.html",
    "pl/subscription.html",
    "pl/confirm.subject",
    "pl/confirm.txt",
    "pl/confirm.html",
    "pl/autoreply.subject",
    "pl/autoreply.txt",
    "pl/hotline.txt",
    "pl/maintenance.subject",
    "pl/maintenance.txt",
    "pl/maintenance.html",
    "sv/outage.subject",
    "sv/outage.txt",
    "sv/outage.html",
    "sv/update.subject",
    "sv/update.txt",
    "sv/update.html",
    "sv/recovery.subject",
    "sv/recovery.txt",
    "sv/recovery.html",
    "sv/placeholder.html",
    "sv/status.html",
    "sv/_timeline.html",
    "sv/incident.html",
    "sv/history.html",
    "sv/unsubscribe.html",
    "sv/subscribe.html",
    "sv/subscription.html",
    "sv/confirm.subject",
    "sv/confirm.txt",
    "sv/confirm.html",
    "sv/autoreply.subject",
    "sv/autoreply.txt",
    "sv/hotline.txt",
    "sv/maintenance.subject",
    "sv/maintenance.txt",
    "sv/maintenance.html",
);

/// Every file a language needs.
pub const PER_LANGUAGE: [&str; 17] = [
    "outage.subject",
    "outage.txt",
    "outage.html",
    "update.subject",
    "update.txt",
    "update.html",
    "recovery.subject",
    "recovery.txt",
    "recovery.html",
    "placeholder.html",
    "status.html",
    "autoreply.subject",
    "autoreply.txt",
    "hotline.txt",
    "maintenance.subject",
    "maintenance.txt",
    "maintenance.html",
];

/// A template that cannot be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateIssue {
    /// The file (the override's path, or `templates/<name> (built in)`).
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for TemplateIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:1: {}", self.file, self.line, self.message)
    }
}

pub struct Templates {
    env: Environment<'static>,
    languages: BTreeSet<String>,
    /// What works but customers would miss (`tocsin check` prints them).
    warnings: Vec<TemplateIssue>,
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Templates {
    /// Loads the shipped templates and the overrides in `dir`, and checks them all.
    pub fn load(dir: Option<&Path>) -> Result<Templates, Vec<TemplateIssue>> {
        let mut sources: BTreeMap<String, (String, String)> = SHIPPED
            .iter()
            .map(|(n, t)| {
                (
                    n.to_string(),
                    (t.to_string(), format!("templates/{n} (built in)")),
                )
            })
            .collect();
        let mut issues = Vec::new();
        if let Some(dir) = dir {
            for (name, path) in files_under(dir) {
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        sources.insert(name, (text, path.display().to_string()));
                    }
                    Err(e) => issues.push(TemplateIssue {
                        file: path.display().to_string(),
                        line: 1,
                        message: format!("cannot read: {e}"),
                    }),
                }
            }
        }
        let languages: BTreeSet<String> = sources
            .keys()
            .filter_map(|n| n.split_once('/').map(|(l, _)| l.to_string()))
            .collect();
        let mut env = Environment::new();
        // A render may take this many instructions: far more than any message or page
        // needs, far less than a template looping without end would use (tocsin check
        // would hang on it, and a campaign with it).
        env.set_fuel(Some(FUEL));
        env.add_filter("genitive", genitive);
        let files: BTreeMap<String, String> = sources
            .iter()
            .map(|(n, (_, f))| (n.clone(), f.clone()))
            .collect();
        for (name, (text, file)) in sources {
            if let Err(e) = env.add_template_owned(name, text) {
                issues.push(TemplateIssue {
                    file,
                    line: e.line().unwrap_or(1),
                    message: e.to_string(),
                });
            }
        }
        for lang in &languages {
            for f in PER_LANGUAGE {
                let name = format!("{lang}/{f}");
                if !files.contains_key(&name) {
                    issues.push(TemplateIssue {
                        file: dir
                            .map(|d| d.join(&name).display().to_string())
                            .unwrap_or(name.clone()),
                        line: 1,
                        message: format!(
                            "language `{lang}` lacks `{f}`: every language needs {}",
                            PER_LANGUAGE.join(", ")
                        ),
                    });
                }
            }
        }
        let mut t = Templates {
            env,
            languages,
            warnings: Vec::new(),
        };
        if issues.is_empty() {
            issues.extend(t.check(&files));
            t.warnings = t.missing_update_text(&files);
        }
        if issues.is_empty() {
            Ok(t)
        } else {
            Err(issues)
        }
    }

    /// What the templates leave out that customers would miss.
    pub fn warnings(&self) -> &[TemplateIssue] {
        &self.warnings
    }

    /// Each customer mail that never shows staff's own update (`update.text`), as the
    /// outage, update and recovery mails should once staff have written one.
    fn missing_update_text(&self, files: &BTreeMap<String, String>) -> Vec<TemplateIssue> {
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_942_125_420);
        let next = started + Duration::from_secs(3600);
        let words = "Q7 the disk array is being rebuilt ZX";
        let mut out = Vec::new();
        for lang in &self.languages {
            let ctx = minijinja::context! {
                update => minijinja::context! { state => "identified", text => words },
                ..sample(lang, "UTC", started, None, Some(next))
            };
            for kind in ["outage", "update", "recovery"] {
                for ext in ["txt", "html"] {
                    let name = format!("{lang}/{kind}.{ext}");
                    let shown = self
                        .env
                        .get_template(&name)
                        .and_then(|t| t.render(&ctx))
                        .is_ok_and(|text| text.contains(words));
                    if !shown {
                        out.push(TemplateIssue {
                            file: files.get(&name).cloned().unwrap_or(name),
                            line: 1,
                            message: "this customer mail never shows staff's update ({{ update.text }}): what staff write for customers would not reach them by mail".into(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether the template `name` (`pl/confirm.txt`) exists.
    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    /// The languages templates exist for.
    pub fn languages(&self) -> &BTreeSet<String> {
        &self.languages
    }

    /// `want` when templates exist for it, else its base language (`pt` for `pt-BR`),
    /// else English.
    pub fn language<'a>(&'a self, want: &'a str) -> &'a str {
        if self.languages.contains(want) {
            return want;
        }
        let base = want.split('-').next().unwrap_or("en");
        if self.languages.contains(base) {
            base
        } else {
            "en"
        }
    }

    /// Renders the mail of `kind` in `lang` (falling back as [`Templates::language`]).
    pub fn mail<S: Serialize>(
        &self,
        kind: CampaignKind,
        lang: &str,
        ctx: &S,
    ) -> Result<Rendered, String> {
        let lang = self.language(lang);
        let render = |ext: &str| {
            let name = format!("{lang}/{}.{ext}", kind.template());
            self.env
                .get_template(&name)
                .and_then(|t| t.render(val(ctx)))
                .map_err(|e| format!("{name}: {e}"))
        };
        let subject = render("subject")?;
        Ok(Rendered {
            // One line, whatever the variables held: no header can be smuggled in.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: render("txt")?,
            html: render("html")?,
        })
    }

    /// Renders the page `name` (`placeholder`, `status`, `incident`, `history`,
    /// `unsubscribe`) in `lang`; a language of its own that lacks one of the later pages
    /// (they came after it was written) gets the English one.
    pub fn page<S: Serialize>(&self, name: &str, lang: &str, ctx: &S) -> Result<String, String> {
        let own = format!("{}/{name}.html", self.language(lang));
        let name = if self.env.get_template(&own).is_ok() {
            own
        } else {
            format!("en/{name}.html")
        };
        self.env
            .get_template(&name)
            .and_then(|t| t.render(val(ctx)))
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Renders a plain-text notice (`autoreply.subject`, `autoreply.txt`,
    /// `hotline.txt`) in `lang`, falling back as [`Templates::language`].
    pub fn notice<S: Serialize>(&self, name: &str, lang: &str, ctx: &S) -> Result<String, String> {
        let name = format!("{}/{name}", self.language(lang));
        self.env
            .get_template(&name)
            .and_then(|t| t.render(val(ctx)))
            .map_err(|e| format!("{name}: {e}"))
    }

    /// Renders every language's outage and update mails with an ETA and without one, and
    /// refuses any that leaves out what it promises. Pages and recovery mails must render.
    fn check(&self, files: &BTreeMap<String, String>) -> Vec<TemplateIssue> {
        let mut issues = Vec::new();
        // Unusual instants, so that a match cannot be a coincidence.
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_942_125_420); // in July 2031
        let eta = started + Duration::from_secs(3 * 86_400 + 2 * 3600 + 23 * 60);
        let next = started + Duration::from_secs(86_400 + 4 * 3600 + 41 * 60);
        let tz = "Asia/Kathmandu";
        for lang in &self.languages {
            for kind in [CampaignKind::Outage, CampaignKind::Update] {
                for (with_eta, want) in [(true, eta), (false, next)] {
                    let ctx = sample(lang, tz, started, with_eta.then_some(eta), Some(next));
                    let clock = local_clock(want, tz);
                    for ext in ["txt", "html"] {
                        let name = format!("{lang}/{}.{ext}", kind.as_str());
                        match self.env.get_template(&name).and_then(|t| t.render(&ctx)) {
                            Err(e) => issues.push(issue(files, &name, &e)),
                            Ok(text) if !text.contains(&clock) => issues.push(TemplateIssue {
                                file: files[&name].clone(),
                                line: 1,
                                message: if with_eta {
                                    "with an ETA set, this message does not state it: use {{ eta }} (or {{ eta_time }}) where no ETA is known it must state {{ next_update }}".into()
                                } else {
                                    "without an ETA, this message does not commit to a next-update time: use {{ next_update }} when {{ eta }} is empty, never leave customers with \"we don't know\"".into()
                                },
                            }),
                            Ok(_) => {}
                        }
                    }
                }
            }
            // The autoresponder and the hotline speak of every outage at once; each must
            // state its ETA or, without one, the next-update time.
            for (with_eta, want) in [(true, eta), (false, next)] {
                let ctx = notice_sample(lang, tz, started, with_eta.then_some(eta), next);
                let clock = local_clock(want, tz);
                for name in ["autoreply.txt", "hotline.txt"] {
                    let name = format!("{lang}/{name}");
                    match self.env.get_template(&name).and_then(|t| t.render(&ctx)) {
                        Err(e) => issues.push(issue(files, &name, &e)),
                        Ok(text) if !text.contains(&clock) => issues.push(TemplateIssue {
                            file: files[&name].clone(),
                            line: 1,
                            message: "this notice does not state each outage's ETA (`o.eta`) or, without one, its next-update time (`o.next_update`)".into(),
                        }),
                        Ok(_) => {}
                    }
                }
                let name = format!("{lang}/autoreply.subject");
                if let Err(e) = self.env.get_template(&name).and_then(|t| t.render(&ctx)) {
                    issues.push(issue(files, &name, &e));
                }
            }
            // A maintenance notice states the window; the completion notice renders.
            let window = minijinja::context! {
                window_start => local_time(started, tz, lang),
                window_end => local_time(eta, tz, lang),
                window_duration => "3 d 2 h",
                completed => false,
                ..sample(lang, tz, started, None, Some(next))
            };
            for ext in ["txt", "html"] {
                let name = format!("{lang}/maintenance.{ext}");
                match self.env.get_template(&name).and_then(|t| t.render(&window)) {
                    Err(e) => issues.push(issue(files, &name, &e)),
                    Ok(text)
                        if !text.contains(&local_clock(started, tz))
                            || !text.contains(&local_clock(eta, tz)) =>
                    {
                        issues.push(TemplateIssue {
                            file: files[&name].clone(),
                            line: 1,
                            message: "this maintenance notice does not state when the window starts and ends: use {{ window_start }} and {{ window_end }}".into(),
                        })
                    }
                    Ok(_) => {}
                }
            }
            let done = minijinja::context! { completed => true, ..window.clone() };
            for ext in ["subject", "txt", "html"] {
                let name = format!("{lang}/maintenance.{ext}");
                for ctx in [&window, &done] {
                    if let Err(e) = self.env.get_template(&name).and_then(|t| t.render(ctx)) {
                        issues.push(issue(files, &name, &e));
                    }
                }
            }
            // A recovery that earned compensation must show the code.
            let with_code = minijinja::context! {
                compensation_code => "K7Q2-XW9D",
                ..sample(lang, tz, started, None, Some(next))
            };
            for ext in ["txt", "html"] {
                let name = format!("{lang}/recovery.{ext}");
                match self.env.get_template(&name).and_then(|t| t.render(&with_code)) {
                    Err(e) => issues.push(issue(files, &name, &e)),
                    Ok(text) if !text.contains("K7Q2-XW9D") => issues.push(TemplateIssue {
                        file: files[&name].clone(),
                        line: 1,
                        message: "this recovery message never shows {{ compensation_code }}: customers owed a code would not get it".into(),
                    }),
                    Ok(_) => {}
                }
            }
            let ctx = sample(lang, tz, started, None, Some(next));
            for name in [
                "recovery.subject",
                "recovery.txt",
                "recovery.html",
                "outage.subject",
                "update.subject",
            ] {
                let name = format!("{lang}/{name}");
                if let Err(e) = self.env.get_template(&name).and_then(|t| t.render(&ctx)) {
                    issues.push(issue(files, &name, &e));
                }
            }
            let ctx = page_sample(ctx, started, next, tz, lang);
            for page in [
                "placeholder",
                "status",
                "incident",
                "history",
                "unsubscribe",
            ] {
                let own = format!("{lang}/{page}.html");
                // The later pages fall back to English where a language lacks them.
                let name = if files.contains_key(&own) {
                    own
                } else {
                    format!("en/{page}.html")
                };
                if let Err(e) = self.env.get_template(&name).and_then(|t| t.render(&ctx)) {
                    issues.push(issue(files, &name, &e));
                }
            }
        }
        issues
    }
}

/// Instructions one render may run (minijinja's fuel).
const FUEL: u64 = 20_000_000;

fn issue(files: &BTreeMap<String, String>, name: &str, e: &minijinja::Error) -> TemplateIssue {
    // Errors inside a parent template (`{% extends %}`) name that one.
    let at = e.name().unwrap_or(name);
    TemplateIssue {
        file: files.get(at).cloned().unwrap_or_else(|| at.to_string()),
        line: e.line().unwrap_or(1),
        message: format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// The autoresponder's and hotline's context: every incident customers are being told
/// of, with times in `tz` and `lang`.
///
/// Unlike mail campaigns, which are throttled by `campaigns.update_every`, these follow
/// the latest ETA at once: a future ETA staff set is stated even before the next update
/// mail goes out.
pub fn outages_context(
    config: &crate::config::Config,
    incidents: &[crate::store::IncidentRecord],
    lang: &str,
    tz: &str,
    now: SystemTime,
) -> minijinja::Value {
    let outages: Vec<minijinja::Value> = incidents
        .iter()
        .map(|i| {
            let eta = i.eta.filter(|t| *t > now).or(i.promised_eta);
            let name = config
                .services
                .iter()
                .find(|s| s.id == i.service)
                .map(|s| s.name.as_str())
                .unwrap_or(&i.service);
            minijinja::context! {
                service => name,
                service_id => &i.service,
                started => local_time(i.started, tz, lang),
                eta => eta.map(|t| local_time(t, tz, lang)),
                eta_time => eta.map(|t| short_time(t, tz, lang)),
                next_update => i.next_update.map(|t| local_time(t, tz, lang)),
                next_update_time => i.next_update.map(|t| short_time(t, tz, lang)),
                update => i
                    .timeline
                    .iter()
                    .rev()
                    .find_map(|e| e.event.update())
                    .map(|u| update_context(u, lang, &config.page_language)),
            }
        })
        .collect();
    minijinja::context! {
        language => lang,
        outages => outages,
        company => val(&config.company),
        status_url => format!("{}/status", config.public_url),
    }
}

/// Staff's update as a customer template shows it: the text in the reader's language, or
/// the default language's with `written_in` naming it (the template frames it).
pub fn update_context(
    u: &crate::incident::PublicUpdate,
    lang: &str,
    default: &str,
) -> minijinja::Value {
    let (text, written_in) = u.text_for(lang, default);
    minijinja::context! {
        state => u.state.as_str(),
        text => text,
        written_in => written_in,
    }
}

/// The public pages' variables for checking, over the mail sample `base`: an open
/// incident with one entry of each kind, a service card, a month of history.
fn page_sample(
    base: minijinja::Value,
    started: SystemTime,
    next: SystemTime,
    tz: &str,
    lang: &str,
) -> minijinja::Value {
    let at = |t| local_time(t, tz, lang);
    let incident = minijinja::context! {
        id => 7,
        link => "/incidents/7",
        service => "Web shop",
        service_id => "shop",
        state => "unavailable",
        status => "down",
        started => at(started),
        ended => at(next),
        duration => "3 h",
        affected => vec!["Mobile app"],
        eta => at(next),
        next_update => at(next),
        update => minijinja::context! { state => "identified", text => "The database is restored.", written_in => "en" },
        updates => vec![
            minijinja::context! { kind => "opened", at => at(started) },
            minijinja::context! { kind => "update", at => at(started), state => "identified", text => "The database is restored.", written_in => "en" },
            minijinja::context! { kind => "eta", at => at(started), eta => at(next) },
            minijinja::context! { kind => "also_affected", at => at(started), service => "Mobile app" },
            minijinja::context! { kind => "recovered", at => at(next) },
        ],
    };
    let card = minijinja::context! {
        id => "shop", name => "Web shop", group => "Shop", status => "down",
        uptime => "99.50", uptime30 => "99.10", watched_days => 12,
        days => vec![minijinja::context! { date => "2031-07-17", uptime => "99.50", level => "minor" }],
        bad_days => vec![minijinja::context! { date => "2031-07-17", uptime => "99.50", level => "minor" }],
        sparkline => minijinja::Value::from_safe_string("<svg></svg>".into()),
        response_ms => 120,
    };
    minijinja::context! {
        incident => incident.clone(),
        open => true,
        incidents => vec![incident.clone()],
        resolved => vec![incident.clone()],
        services => vec![card.clone()],
        groups => vec![minijinja::context! { name => "Shop", services => vec![card], down => 1 }],
        months => vec![minijinja::context! { month => "2031-07", name => "July 2031", incidents => vec![incident] }],
        older_link => "/history?month=2031-04",
        newer_link => "/history?month=2031-10",
        step => "confirm",
        email => "ana@example.com",
        action => "/unsubscribe?e=ana%40example.com&s=00",
        status_link => "/status",
        history_link => "/history",
        feed_link => "/feed.atom",
        overall => "degraded",
        ..base
    }
}

/// The autoresponder's and hotline's context for checking: one outage.
fn notice_sample(
    lang: &str,
    tz: &str,
    started: SystemTime,
    eta: Option<SystemTime>,
    next: SystemTime,
) -> minijinja::Value {
    minijinja::context! {
        language => lang,
        outages => vec![minijinja::context! {
            service => "Web shop",
            started => local_time(started, tz, lang),
            eta => eta.map(|t| local_time(t, tz, lang)),
            eta_time => eta.map(|t| short_time(t, tz, lang)),
            next_update => local_time(next, tz, lang),
            next_update_time => short_time(next, tz, lang),
        }],
        company => val(crate::config::Company {
            name: "Example".into(),
            phone: Some("+1 555 0100".into()),
            email: Some("help@example.com".into()),
            website: Some("https://example.com".into()),
        }),
        status_url => "https://status.example.com/status",
    }
}

/// A context with every variable the shipped templates use, for checking.
fn sample(
    lang: &str,
    tz: &str,
    started: SystemTime,
    eta: Option<SystemTime>,
    next: Option<SystemTime>,
) -> minijinja::Value {
    let ended = started + Duration::from_secs(4 * 3600 + 7 * 60);
    minijinja::context! {
        language => lang,
        customer => minijinja::context! { name => "Ana", email => "ana@example.com" },
        service => minijinja::context! { id => "shop", name => "Web shop" },
        company => val(crate::config::Company {
            name: "Example".into(),
            phone: Some("+1 555 0100".into()),
            email: Some("help@example.com".into()),
            website: Some("https://example.com".into()),
        }),
        started => local_time(started, tz, lang),
        eta => eta.map(|t| local_time(t, tz, lang)),
        eta_time => eta.map(|t| short_time(t, tz, lang)),
        next_update => next.map(|t| local_time(t, tz, lang)),
        next_update_time => next.map(|t| short_time(t, tz, lang)),
        ended => local_time(ended, tz, lang),
        duration => duration_text(Duration::from_secs(4 * 3600 + 7 * 60)),
        status_url => "https://status.example.com/status",
        unsubscribe_url => "https://status.example.com/unsubscribe?t=x",
        problem => "unreachable",
        generated => local_time(started, tz, lang),
        timezone => tz,
        overall => "degraded",
        services => Vec::<minijinja::Value>::new(),
        incidents => Vec::<minijinja::Value>::new(),
        maintenance => Vec::<minijinja::Value>::new(),
        resolved => Vec::<minijinja::Value>::new(),
    }
}

/// Every file under `dir`, named by its path relative to it with `/`.
fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((name, p));
            }
        }
    }
    out.sort();
    out
}

/// A template value from anything serializable.
pub fn val<S: Serialize>(s: S) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(s))
}

/// The zone named `tz` (IANA), UTC for a name it is not.
pub(super) fn zone(tz: &str) -> chrono_tz::Tz {
    tz.parse().unwrap_or(chrono_tz::UTC)
}

fn locale(lang: &str) -> (Locale, &'static str) {
    match lang.split('-').next().unwrap_or("en") {
        "pl" => (Locale::pl_PL, "%A, %-d %B %Y, %H:%M %Z"),
        "sv" => (Locale::sv_SE, "%A %-d %B %Y kl. %H:%M %Z"),
        "de" => (Locale::de_DE, "%A, %-d. %B %Y, %H:%M %Z"),
        "fr" => (Locale::fr_FR, "%A %-d %B %Y, %H:%M %Z"),
        "es" => (Locale::es_ES, "%A %-d de %B de %Y, %H:%M %Z"),
        _ => (Locale::en_GB, "%A %-d %B %Y, %H:%M %Z"),
    }
}

/// A Polish time as it reads after `od` and `do` ("since", "until"), which take the
/// genitive: "od poniedziałku, 23 listopada 2026, 14:00 CET", never "od poniedziałek".
/// Only the weekday changes (the month is written in the genitive already, and the day
/// as a number); any other text, and times in other languages, come back as they are.
/// By hand: chrono names weekdays in the nominative only, and ICU4X's date formatter
/// has no case either.
pub fn genitive(time: String) -> String {
    const DAYS: [(&str, &str); 7] = [
        ("poniedziałek", "poniedziałku"),
        ("wtorek", "wtorku"),
        ("środa", "środy"),
        ("czwartek", "czwartku"),
        ("piątek", "piątku"),
        ("sobota", "soboty"),
        ("niedziela", "niedzieli"),
    ];
    for (nominative, genitive) in DAYS {
        if let Some(rest) = time.strip_prefix(nominative) {
            if rest.starts_with(',') {
                return format!("{genitive}{rest}");
            }
        }
    }
    time
}

/// `t` in the time zone `tz` (IANA; UTC when unknown), worded in `lang`:
/// "Monday 23 November 2026, 14:00 CET", "poniedziałek, 23 listopada 2026, 14:00 CET".
pub fn local_time(t: SystemTime, tz: &str, lang: &str) -> String {
    let (loc, fmt) = locale(lang);
    DateTime::<Utc>::from(t)
        .with_timezone(&zone(tz))
        .format_localized(fmt, loc)
        .to_string()
}

/// `t` shortly, for subject lines: the day, the clock and the zone, in `lang`
/// ("29 Nov, 20:40 CET", "29 lis, 20:40 CET", "29 nov. kl. 20:40 CET"): a time alone does
/// not say which day, nor in which zone.
pub fn short_time(t: SystemTime, tz: &str, lang: &str) -> String {
    let (loc, fmt) = match lang.split('-').next().unwrap_or("en") {
        "pl" => (Locale::pl_PL, "%-d %b, %H:%M %Z"),
        "sv" => (Locale::sv_SE, "%-d %b kl. %H:%M %Z"),
        "de" => (Locale::de_DE, "%-d. %b, %H:%M %Z"),
        "fr" => (Locale::fr_FR, "%-d %b, %H:%M %Z"),
        "es" => (Locale::es_ES, "%-d %b, %H:%M %Z"),
        _ => (Locale::en_GB, "%-d %b, %H:%M %Z"),
    };
    DateTime::<Utc>::from(t)
        .with_timezone(&zone(tz))
        .format_localized(fmt, loc)
        .to_string()
}

/// The wall-clock time `HH:MM` of `t` in `tz`.
pub fn local_clock(t: SystemTime, tz: &str) -> String {
    DateTime::<Utc>::from(t)
        .with_timezone(&zone(tz))
        .format("%H:%M")
        .to_string()
}

/// "3 h 12 min", "45 min", "2 d 4 h": understood in every shipped language.
pub fn duration_text(d: Duration) -> String {
    let m = d.as_secs().div_ceil(60);
    let (days, h, min) = (m / 1440, m / 60 % 24, m % 60);
    match (days, h, min) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_and_in_the_recipients_language() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_438_800); // 2026-11-23 13:00 UTC
        assert_eq!(
            local_time(t, "Europe/Warsaw", "en"),
            "Monday 23 November 2026, 14:00 CET"
        );
        assert_eq!(
            local_time(t, "Europe/Warsaw", "pl"),
            "poniedziałek, 23 listopada 2026, 14:00 CET"
        );
        assert_eq!(
            local_time(t, "Europe/Stockholm", "sv"),
            "måndag 23 november 2026 kl. 14:00 CET"
        );
        assert_eq!(
            local_time(t, "America/New_York", "en"),
            "Monday 23 November 2026, 08:00 EST"
        );
        assert_eq!(local_clock(t, "Nowhere/Else"), "13:00");
        assert_eq!(
            duration_text(Duration::from_secs(3 * 3600 + 11 * 60 + 5)),
            "3 h 12 min"
        );
        assert_eq!(duration_text(Duration::from_secs(50 * 3600)), "2 d 2 h");
    }

    #[test]
    fn the_shipped_templates_load_and_commit_to_a_time() {
        let t = Templates::load(None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            t.languages().iter().cloned().collect::<Vec<_>>(),
            ["en", "pl", "sv"]
        );
        assert_eq!(t.language("pl"), "pl");
        assert_eq!(t.language("sv-FI"), "sv");
        assert_eq!(t.language("de"), "en");
    }

    /// Every shipped template of `lang` rendered with times on one day, `day` days after
    /// a Monday: (name, text).
    fn rendered(t: &Templates, lang: &str, day: u64) -> Vec<(String, String)> {
        // Monday 23 November 2026, 13:00 UTC.
        let monday = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_438_800);
        let started = monday + Duration::from_secs(day * 86_400);
        let later = started + Duration::from_secs(7 * 86_400 + 3600);
        let tz = "Europe/Warsaw";
        let mut out = Vec::new();
        let mut render = |name: String, ctx: &minijinja::Value| {
            let text = t
                .env
                .get_template(&name)
                .and_then(|x| x.render(ctx))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, text));
        };
        for (eta, next) in [(Some(later), Some(later)), (None, Some(later))] {
            let ctx = sample(lang, tz, started, eta, next);
            for kind in ["outage", "update", "recovery"] {
                for ext in ["txt", "html", "subject"] {
                    render(format!("{lang}/{kind}.{ext}"), &ctx);
                }
            }
            render(format!("{lang}/placeholder.html"), &ctx);
            let notice = notice_sample(lang, tz, started, eta, later);
            render(format!("{lang}/autoreply.txt"), &notice);
            render(format!("{lang}/hotline.txt"), &notice);
        }
        for completed in [false, true] {
            let window = minijinja::context! {
                window_start => local_time(started, tz, lang),
                window_end => local_time(later, tz, lang),
                window_duration => "7 d 1 h",
                completed => completed,
                ..sample(lang, tz, started, None, Some(later))
            };
            for ext in ["txt", "html", "subject"] {
                render(format!("{lang}/maintenance.{ext}"), &window);
            }
        }
        let page = minijinja::context! {
            incidents => vec![minijinja::context! {
                service => "Web shop",
                affected => Vec::<String>::new(),
                status => "down",
                started => local_time(started, tz, lang),
                eta => local_time(later, tz, lang),
                updates => vec![minijinja::context! { at => local_time(started, tz, lang), kind => "eta", eta => local_time(later, tz, lang) }],
            }],
            maintenance => vec![minijinja::context! {
                service => "Web shop", start => local_time(started, tz, lang), end => local_time(later, tz, lang), now => false, note => "",
            }],
            resolved => vec![minijinja::context! { service => "Web shop", started => local_time(started, tz, lang), duration => "1 h" }],
            ..sample(lang, tz, started, Some(later), Some(later))
        };
        render(format!("{lang}/status.html"), &page);
        // The other public pages, with an incident open and over, and the subscription's
        // confirmation mail.
        let pages = page_sample(
            sample(lang, tz, started, Some(later), Some(later)),
            started,
            later,
            tz,
            lang,
        );
        for name in ["status", "incident", "history", "subscribe", "subscription"] {
            render(format!("{lang}/{name}.html"), &pages);
        }
        render(
            format!("{lang}/incident.html"),
            &minijinja::context! { open => false, ..pages.clone() },
        );
        let confirm = minijinja::context! {
            email => "ana@example.com",
            services => vec!["Web shop"],
            confirm_url => "https://status.example.com/subscribe/confirm?e=x",
            valid_until => local_time(later, tz, lang),
            ..sample(lang, tz, started, None, Some(later))
        };
        for ext in ["txt", "html", "subject"] {
            render(format!("{lang}/confirm.{ext}"), &confirm);
        }
        out
    }

    #[test]
    fn every_template_puts_each_date_in_the_case_its_sentence_needs() {
        let t = Templates::load(None).unwrap_or_else(|e| panic!("{e:?}"));
        let nominative = [
            "poniedziałek",
            "wtorek",
            "środa",
            "czwartek",
            "piątek",
            "sobota",
            "niedziela",
        ];
        let genitive = [
            "poniedziałku",
            "wtorku",
            "środy",
            "czwartku",
            "piątku",
            "soboty",
            "niedzieli",
        ];
        // `od` and `do` take the genitive; a date right after `najpóźniej` would need a
        // preposition.
        let wrong = regex::Regex::new(&format!(
            r"\b(od|Od|do|najpóźniej) ({})\b",
            nominative.join("|")
        ))
        .unwrap();
        for day in 0..7 {
            let mut seen_genitive = false;
            for (name, text) in rendered(&t, "pl", day) {
                assert!(
                    !wrong.is_match(&text),
                    "{name}: {}",
                    wrong.find(&text).unwrap().as_str()
                );
                seen_genitive |= text.contains(&format!("od {},", genitive[day as usize]));
            }
            assert!(
                seen_genitive,
                "day {day}: `od {},` somewhere",
                genitive[day as usize]
            );
            for (name, text) in rendered(&t, "en", day) {
                assert!(!text.contains("is working again since"), "{name}: {text}");
                assert!(!text.contains("since on "), "{name}");
            }
            for (name, text) in rendered(&t, "sv", day) {
                // Swedish takes the weekday as it is after `sedan`, `senast` and `till`;
                // the time always comes with `kl.`.
                assert!(!text.contains(" kl. kl."), "{name}");
            }
        }
        // Subject lines name the day and the zone with the time, never a bare clock.
        for lang in ["en", "pl", "sv"] {
            for (name, text) in rendered(&t, lang, 2) {
                if name.ends_with(".subject") && text.chars().any(|c| c.is_ascii_digit()) {
                    assert!(
                        text.contains("CET") || text.contains("CEST"),
                        "{name}: {text}"
                    );
                }
            }
        }
        assert_eq!(
            genitive_of("środa, 25 listopada 2026, 14:00 CET"),
            "środy, 25 listopada 2026, 14:00 CET"
        );
        assert_eq!(
            genitive_of("Wednesday 25 November 2026, 14:00 CET"),
            "Wednesday 25 November 2026, 14:00 CET"
        );
        assert_eq!(genitive_of("25 lis, 14:00 CET"), "25 lis, 14:00 CET");
    }

    fn genitive_of(s: &str) -> String {
        genitive(s.to_string())
    }
}
