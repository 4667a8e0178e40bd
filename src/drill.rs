//! `tocsin drill`: rehearses the outage plan of one service. An outage is replayed on
//! simulated time through the real incident state machine and the real renderers, and
//! every action the plan would take is listed in order with its time and how many
//! people it reaches, with one rendered sample of each message and page. Nothing is
//! sent, no file is published and the store is not opened: this is how a company checks
//! that everyone knows the plan before the real outage.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audience;
use crate::campaign::Composer;
use crate::config::Config;
use crate::incident::{Action, Event, ServiceState, StaffMailKind, step};
use crate::links::{Link, LinkAction, Signer, expiry};
use crate::notify::staff::{ActionLinks, StaffNotice, render};
use crate::notify::templates::{Templates, duration_text, outages_context};
use crate::store::{CampaignInfo, CampaignKind, IncidentRecord, RecipientJob, TimelineEntry};
use crate::text::time::rfc3339 as rfc;

/// What to rehearse.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub service: String,
    /// Simulated start of the outage (the first failed probe run).
    pub start: SystemTime,
    /// On-call's estimate: recovery this long after the start, set `eta_after` after the
    /// incident opens. The outage then lasts exactly that long.
    pub eta: Option<Duration>,
    pub eta_after: Duration,
    /// On-call acknowledges this long after the incident opens (never when `None`).
    pub ack_after: Option<Duration>,
    /// How long the outage lasts without an ETA.
    pub duration: Option<Duration>,
    /// Where to write each sample in full (HTML pages, raw texts); none: print excerpts.
    pub out: Option<PathBuf>,
}

/// One decision of the rehearsal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Since the start of the outage.
    pub offset: Duration,
    /// What happens, in one line.
    pub what: String,
    /// Further lines: who is reached, what is published.
    pub details: Vec<String>,
}

/// The whole rehearsal.
#[derive(Debug, Clone)]
pub struct Drill {
    pub steps: Vec<Step>,
    /// Rendered samples: (title, text).
    pub samples: Vec<(String, String)>,
    pub ended: Option<Duration>,
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Runs the rehearsal of `scenario` under `config`.
pub fn run(config: &Config, templates: Arc<Templates>, sc: &Scenario) -> Result<Drill, String> {
    let service = config
        .services
        .iter()
        .find(|s| s.id == sc.service)
        .ok_or_else(|| {
            let ids: Vec<&str> = config.services.iter().map(|s| s.id.as_str()).collect();
            format!("no service `{}` (services: {})", sc.service, ids.join(", "))
        })?;
    let policy = config.policy(service);
    let context = config.context(Some(service));
    let longest = service.longest_interval();
    let lasts = match (sc.duration, sc.eta) {
        (Some(d), _) => d,
        // Back in time for the ETA: working again early enough for the success rounds
        // to confirm it by then.
        (None, Some(e)) => e.saturating_sub(longest * policy.success_threshold),
        (None, None) => policy.customer_threshold + Duration::from_secs(90 * 60),
    };
    let recover_at = sc.start + lasts;
    let give_up = recover_at + longest * (policy.success_threshold + 2) + Duration::from_secs(3600);

    // The audience as the campaign would take it (opt-outs live in the store, which a
    // drill does not open).
    let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
    let audience = service
        .audience
        .as_ref()
        .and_then(|a| config.audiences.get(a).map(|x| (a.clone(), x)));
    let followers = match &audience {
        Some((_, a)) => {
            let l = audience::load(a, &ids)?;
            let rows = l.recipients.len();
            let f: Vec<audience::Recipient> = l
                .recipients
                .into_iter()
                .filter(|r| r.follows(&service.id))
                .collect();
            Some((rows, l.errors.len(), f))
        }
        None => None,
    };

    let signer = Signer::new(b"tocsin drill: links in samples are not valid");
    let composer = Composer {
        templates: templates.clone(),
        signer: Arc::new(Signer::new(b"tocsin drill")),
        domain: "drill.invalid".into(),
    };

    let mut state = ServiceState::default();
    let mut steps = Vec::new();
    let mut samples: Vec<(String, String)> = Vec::new();
    let mut sampled = BTreeSet::new();
    let mut record: Option<IncidentRecord> = None;
    let mut opened_at: Option<SystemTime> = None;
    let mut told_customers = 0usize;
    let mut t = sc.start;
    let mut ended = None;
    let hooks = &config.webhooks;

    while t <= give_up && ended.is_none() {
        let offset = t.duration_since(sc.start).unwrap_or_default();
        let mut events = Vec::new();
        if let Some(o) = opened_at {
            let since = t.duration_since(o).unwrap_or_default();
            if sc.ack_after == Some(since) {
                events.push(Event::Ack {
                    by: "on-call".into(),
                });
            }
            if let Some(e) = sc.eta {
                if since == sc.eta_after {
                    events.push(Event::Eta {
                        eta: sc.start + e,
                        by: "on-call".into(),
                    });
                }
            }
        }
        for p in &service.probes {
            if offset.as_millis() % p.interval.as_millis().max(1) == 0 {
                let ok = t >= recover_at;
                events.push(Event::Probe {
                    probe: p.name.clone(),
                    ok,
                    reason: (!ok).then(|| crate::probe::Reason::Text {
                        text: "simulated failure (drill)".into(),
                    }),
                });
            }
        }
        if offset.as_secs() % 30 == 0 {
            events.push(Event::Tick);
        }
        for ev in events {
            let (next, actions) = step(&state, &policy, ev, t);
            state = next;
            for a in actions {
                let mut details = Vec::new();
                let what = match &a {
                    Action::Open {
                        started, reasons, ..
                    } => {
                        opened_at = Some(t);
                        let opened = crate::incident::TimelineEvent::Opened {
                            reasons: reasons.clone(),
                        };
                        let why = opened.failing();
                        record = Some(IncidentRecord {
                            id: 1,
                            service: service.id.clone(),
                            started: *started,
                            ended: None,
                            acked_by: None,
                            eta: None,
                            customer_phase: false,
                            promised_eta: None,
                            next_update: None,
                            timeline: vec![TimelineEntry {
                                at: t,
                                event: opened,
                            }],
                        });
                        details.push(format!(
                            "status page: {} is down, since {}",
                            service.name,
                            rfc(*started)
                        ));
                        format!(
                            "incident opened after {} failed rounds ({})",
                            policy.failure_threshold,
                            why.join("; ")
                        )
                    }
                    Action::MailStaff {
                        kind, level, to, ..
                    } => {
                        let label = match kind {
                            StaffMailKind::Opened => "incident opened",
                            StaffMailKind::Escalated => "escalated: not acknowledged",
                            StaffMailKind::Flapping => "flapping",
                            StaffMailKind::MonitorDown => "monitor's network down",
                        };
                        if let Some(r) = &record {
                            let key = format!("staff-{label}");
                            if sampled.insert(key) {
                                let links = ActionLinks {
                                    ack: signer.url(
                                        &config.public_url,
                                        &Link {
                                            incident: 1,
                                            action: LinkAction::Ack,
                                            expires: expiry(t),
                                            recipient: to.join(", "),
                                        },
                                    ),
                                    eta: signer.url(
                                        &config.public_url,
                                        &Link {
                                            incident: 1,
                                            action: LinkAction::Eta,
                                            expires: expiry(t),
                                            recipient: to.join(", "),
                                        },
                                    ),
                                };
                                let m = render(
                                    &context,
                                    r,
                                    &StaffNotice::Level {
                                        kind: *kind,
                                        level: *level,
                                    },
                                    to.clone(),
                                    Some(&links),
                                    t,
                                );
                                samples.push((
                                    format!("staff mail, level {level} ({label})"),
                                    format!(
                                        "To: {}\nSubject: {}\n\n{}",
                                        m.to.join(", "),
                                        m.subject,
                                        m.text
                                    ),
                                ));
                            }
                        }
                        format!(
                            "staff mail, level {level} ({label}) to {} ({} recipient{})",
                            to.join(", "),
                            to.len(),
                            if to.len() == 1 { "" } else { "s" }
                        )
                    }
                    Action::Acknowledged { by, .. } => {
                        if let Some(r) = &mut record {
                            r.acked_by = Some(by.clone());
                        }
                        format!("acknowledged by {by}: escalation stops")
                    }
                    Action::EtaSet { eta, by, .. } => {
                        if let Some(r) = &mut record {
                            r.eta = Some(*eta);
                        }
                        format!("ETA set by {by}: recovery expected at {}", rfc(*eta))
                    }
                    Action::CustomerPhase {
                        eta,
                        next_update,
                        because_of_eta,
                        ..
                    } => {
                        let r = record
                            .as_mut()
                            .ok_or("customer phase before the incident")?;
                        r.customer_phase = true;
                        r.promised_eta = *eta;
                        r.next_update = *next_update;
                        let r = r.clone();
                        let (n, mail) = customer_mails(
                            config,
                            &composer,
                            &followers,
                            audience.as_ref().map(|a| a.0.as_str()),
                            CampaignKind::Outage,
                            &r,
                            None,
                        );
                        told_customers = n;
                        details.push(mail.0);
                        if let Some(sample) = mail.1 {
                            samples.push(("customer mail: outage".into(), sample));
                        }
                        customer_side(config, &templates, &r, t, true, &mut details, &mut samples)?;
                        format!(
                            "customer phase: {}; customers are promised {}",
                            if *because_of_eta {
                                "the ETA is past the customer threshold"
                            } else {
                                "the outage reached the customer threshold"
                            },
                            promise(*eta, *next_update)
                        )
                    }
                    Action::CustomerUpdate {
                        eta, next_update, ..
                    } => {
                        let r = record.as_mut().ok_or("update before the incident")?;
                        r.promised_eta = *eta;
                        r.next_update = *next_update;
                        let r = r.clone();
                        let first = sampled.insert("update".to_string());
                        let (_, mail) = customer_mails(
                            config,
                            &composer,
                            &followers,
                            audience.as_ref().map(|a| a.0.as_str()),
                            CampaignKind::Update,
                            &r,
                            None,
                        );
                        details.push(mail.0.replace("outage mail", "update mail"));
                        if first {
                            if let Some(sample) = mail.1 {
                                samples.push(("customer mail: update".into(), sample));
                            }
                        }
                        customer_side(
                            config,
                            &templates,
                            &r,
                            t,
                            false,
                            &mut details,
                            &mut samples,
                        )?;
                        format!(
                            "update to customers: now promised {}",
                            promise(*eta, *next_update)
                        )
                    }
                    Action::Resolve {
                        started,
                        ended: at,
                        staff,
                        customers,
                        ..
                    } => {
                        ended = Some(at.duration_since(sc.start).unwrap_or_default());
                        let lasted = at.duration_since(*started).unwrap_or_default();
                        if let Some(r) = &mut record {
                            r.ended = Some(*at);
                            if !staff.is_empty() && sampled.insert("resolved".into()) {
                                let m = render(
                                    &context,
                                    r,
                                    &StaffNotice::Resolved {
                                        ended: *at,
                                        by: None,
                                    },
                                    staff.clone(),
                                    None,
                                    t,
                                );
                                samples.push((
                                    "staff mail: resolved".into(),
                                    format!(
                                        "To: {}\nSubject: {}\n\n{}",
                                        m.to.join(", "),
                                        m.subject,
                                        m.text
                                    ),
                                ));
                            }
                        }
                        if !staff.is_empty() {
                            details.push(format!(
                                "staff mail \"resolved\" to {} ({} recipient{})",
                                staff.join(", "),
                                staff.len(),
                                if staff.len() == 1 { "" } else { "s" }
                            ));
                        }
                        if *customers {
                            let code = service.compensation.as_ref().filter(|c| lasted >= c.after);
                            let r = record.clone().ok_or("recovery before the incident")?;
                            let (_, mail) = customer_mails(
                                config,
                                &composer,
                                &followers,
                                audience.as_ref().map(|a| a.0.as_str()),
                                CampaignKind::Recovery,
                                &r,
                                code.map(|_| "SAMPLE-CODE"),
                            );
                            details.push(format!(
                                "recovery mail to the {told_customers} customer(s) told of the outage"
                            ));
                            if let Some(c) = code {
                                let pool = audience::codes(&c.codes_csv)
                                    .map(|l| l.codes.len())
                                    .unwrap_or(0);
                                details.push(format!(
                                    "each with a compensation code (outage {} >= {}): {pool} code(s) in {}{}",
                                    duration_text(lasted),
                                    duration_text(c.after),
                                    c.codes_csv.display(),
                                    if pool < told_customers {
                                        format!(", {} short: staff would be told", told_customers - pool)
                                    } else {
                                        String::new()
                                    }
                                ));
                            }
                            if let Some(sample) = mail.1 {
                                samples.push(("customer mail: recovery".into(), sample));
                            }
                            details.push(format!(
                                "placeholder withdrawn: {}",
                                config
                                    .placeholder_dir
                                    .join(&service.id)
                                    .join("index.html")
                                    .display()
                            ));
                            if let Some(a) = &config.autoresponder {
                                details.push(format!(
                                    "autoresponder off: the previously active script restored in {} mailbox(es)",
                                    a.mailboxes.len()
                                ));
                            }
                            details.push(format!(
                                "hotline announcement withdrawn from {}{}",
                                config.hotline.dir.display(),
                                if config.hotline.hook.is_some() {
                                    " (hook told)"
                                } else {
                                    ""
                                }
                            ));
                        }
                        format!(
                            "recovered: {} good rounds; the outage lasted {}",
                            policy.success_threshold,
                            duration_text(lasted)
                        )
                    }
                };
                if let Some(ev) = a.event() {
                    let n = hooks.iter().filter(|h| h.events.contains(&ev)).count();
                    if n > 0 {
                        details.push(format!("webhook `{ev}` to {n} receiver(s)"));
                    }
                }
                steps.push(Step {
                    offset: t.duration_since(sc.start).unwrap_or_default(),
                    what,
                    details,
                });
            }
        }
        t += Duration::from_secs(1);
    }
    if let Some(dir) = &sc.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (i, (title, text)) in samples.iter().enumerate() {
            let ext = if text.trim_start().starts_with('<') {
                "html"
            } else {
                "txt"
            };
            let name: String = title
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let path = dir.join(format!("{:02}-{}.{ext}", i + 1, name.trim_matches('-')));
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(Drill {
        steps,
        samples,
        ended,
    })
}

fn promise(eta: Option<SystemTime>, next: Option<SystemTime>) -> String {
    match (eta, next) {
        (Some(e), _) => format!("recovery by {}", rfc(e)),
        (None, Some(n)) => format!("the next update by {}", rfc(n)),
        (None, None) => "nothing (this is a bug: report it)".into(),
    }
}

type Followers = Option<(usize, usize, Vec<audience::Recipient>)>;

/// The campaign line and a sample message for the first follower.
fn customer_mails(
    config: &Config,
    composer: &Composer,
    followers: &Followers,
    audience: Option<&str>,
    kind: CampaignKind,
    r: &IncidentRecord,
    code: Option<&str>,
) -> (usize, (String, Option<String>)) {
    let Some((rows, invalid, f)) = followers else {
        return (
            0,
            (
                "outage mail: the service has no audience, so no customer is mailed".into(),
                None,
            ),
        );
    };
    let n = f.len();
    let max = config.mail.max_campaign_size;
    let name = audience.unwrap_or("?");
    if n as u64 > max && kind == CampaignKind::Outage {
        return (
            0,
            (
                format!(
                    "outage mail REFUSED: {n} recipients in audience `{name}`, more than mail.max_campaign_size ({max}); no customer would be told"
                ),
                None,
            ),
        );
    }
    let line = format!(
        "outage mail to {n} customer(s) of audience `{name}` ({rows} valid row(s), {} not following {}{}; opt-outs are left out too)",
        rows - n,
        r.service,
        if *invalid > 0 {
            format!(", {invalid} invalid row(s) left out")
        } else {
            String::new()
        }
    );
    let sample = f.first().map(|c| {
        let info = CampaignInfo {
            id: 0,
            kind,
            service: r.service.clone(),
            incident: 1,
            started: r.started,
            ended: r.ended,
            eta: r.promised_eta,
            next_update: r.next_update,
        };
        let job = RecipientJob {
            id: 0,
            campaign: 0,
            email: c.email.clone(),
            name: c.name.clone(),
            language: c.language.clone(),
            timezone: c.timezone.clone(),
            vars: c.vars.clone(),
            attempts: 0,
            compensation: code.map(String::from),
        };
        match composer.compose(config, &info, &job) {
            Ok(m) => format!(
                "To: {} ({}, {})\nSubject: {}\n\n{}",
                c.email, c.language, c.timezone, m.subject, m.text
            ),
            Err(e) => format!("cannot render: {e}"),
        }
    });
    (n, (line, sample))
}

/// The placeholder, autoresponder and hotline as the customer phase would set them.
fn customer_side(
    config: &Config,
    templates: &Templates,
    r: &IncidentRecord,
    now: SystemTime,
    first: bool,
    details: &mut Vec<String>,
    samples: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let verb = if first { "published" } else { "replaced" };
    let page = crate::notify::pages::placeholder(templates, config, r, now)?;
    details.push(format!(
        "placeholder page {verb}: {}",
        config
            .placeholder_dir
            .join(&r.service)
            .join("index.html")
            .display()
    ));
    if first {
        samples.push(("placeholder page".into(), page));
    }
    let open = std::slice::from_ref(r);
    match &config.autoresponder {
        Some(a) => {
            let shown: Vec<&str> = a
                .mailboxes
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "(the login's own)"
                    } else {
                        m.as_str()
                    }
                })
                .collect();
            details.push(format!(
                "autoresponder {} in {} mailbox(es) over {}:{}: {}",
                if first { "on" } else { "text replaced" },
                a.mailboxes.len(),
                a.host,
                a.port,
                shown.join(", ")
            ));
            if first {
                let (script, _) =
                    crate::notify::autoreply::script(templates, config, a, open, None, now)?;
                samples.push(("autoresponder (Sieve script)".into(), script));
            }
        }
        None => {
            if first {
                details.push("autoresponder: not configured (`autoresponder:`)".into());
            }
        }
    }
    let h = &config.hotline;
    let langs: Vec<String> = if h.languages.is_empty() {
        templates.languages().iter().cloned().collect()
    } else {
        h.languages.clone()
    };
    details.push(format!(
        "hotline announcement {verb} in {}: {}{}",
        h.dir.display(),
        langs
            .iter()
            .map(|l| format!("{l}.txt"))
            .collect::<Vec<_>>()
            .join(", "),
        h.hook
            .as_ref()
            .map(|c| format!("; hook {} is run", c[0]))
            .unwrap_or_default()
    ));
    if first {
        let lang = &config.page_language;
        let ctx = outages_context(config, open, lang, &h.timezone, now);
        samples.push((
            format!("hotline announcement ({lang})"),
            templates.notice("hotline.txt", lang, &ctx)?,
        ));
    }
    Ok(())
}

/// The rehearsal as text: the plan in order, then the samples.
pub fn report(config: &Config, sc: &Scenario, d: &Drill) -> String {
    let mut out = String::new();
    let service = config
        .services
        .iter()
        .find(|s| s.id == sc.service)
        .map(|s| s.name.as_str())
        .unwrap_or(&sc.service);
    let _ = writeln!(
        out,
        "Drill: {service} ({}) fails at {}. Nothing is sent, no file is published, the store is not opened.",
        sc.service,
        rfc(sc.start)
    );
    let mut plan = Vec::new();
    if let Some(e) = sc.eta {
        plan.push(format!(
            "{} after the incident opens, on-call expects recovery {} after the start",
            duration_text(sc.eta_after),
            duration_text(e)
        ));
    }
    match sc.ack_after {
        Some(a) => plan.push(format!(
            "on-call acknowledges {} after it opens",
            duration_text(a)
        )),
        None => plan.push("nobody acknowledges".into()),
    }
    let _ = writeln!(out, "Scenario: {}.\n", plan.join("; "));
    for s in &d.steps {
        let _ = writeln!(out, "{:>9}  {}", clock(s.offset), s.what);
        for x in &s.details {
            let _ = writeln!(out, "{:>9}    - {x}", "");
        }
    }
    match d.ended {
        Some(e) => {
            let _ = writeln!(
                out,
                "\nThe plan ends at {} with everything taken down.",
                clock(e)
            );
        }
        None => {
            let _ = writeln!(out, "\nThe incident did not close within the drill.");
        }
    }
    for (title, text) in &d.samples {
        let _ = writeln!(out, "\n---- sample: {title}");
        let shown = if text.trim_start().starts_with('<') {
            visible_text(text)
        } else {
            text.clone()
        };
        for line in shown.lines() {
            let _ = writeln!(out, "| {line}");
        }
    }
    if let Some(dir) = &sc.out {
        let _ = writeln!(out, "\nSamples written in full to {}.", dir.display());
    }
    out
}

/// The words a reader of an HTML page sees (for the report; the page itself is kept
/// whole with `--out`). Written here because it only has to be readable, not exact.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    for skip in ["<style", "<script", "<head"] {
        while let Some(i) = rest.find(skip) {
            let close = format!("</{}>", &skip[1..]);
            match rest[i..].find(&close) {
                Some(j) => {
                    out.push_str(&rest[..i]);
                    rest = &rest[i + j + close.len()..];
                }
                None => break,
            }
        }
    }
    out.push_str(rest);
    let mut text = String::new();
    let mut in_tag = false;
    for c in out.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push('\n');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `path` lies inside a directory tocsin publishes to (a drill must not write there).
pub fn inside_published(config: &Config, path: &Path) -> bool {
    // Existing paths resolved through links; others made absolute as written.
    let abs = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let p = abs(path);
    [&config.placeholder_dir, &config.hotline.dir]
        .iter()
        .any(|d| p.starts_with(abs(d)))
}
