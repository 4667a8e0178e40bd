//! `tocsin drill`: rehearses the outage plan of one service. The real App (engine,
//! dispatcher and notifiers, campaign sender, pages, hotline) runs on paused time from
//! the scenario's start, its probes failing until the outage ends and on-call acting as
//! the scenario says; its store, pages and announcements live in a scratch directory and
//! its mail transports keep messages instead of sending them. Every decision is then
//! listed in order with its time and how many people it reached, with one sample of each
//! message and page as the App made it. Incident webhooks go through their real
//! notifier, which keeps each delivery instead of POSTing it; the parts that reach other
//! systems by other means (the autoresponder's mail server, the hotline hook, the page
//! webhook) are described from the config. Nothing is sent, no file is published and tocsin's own store is not
//! opened: this is how a company checks that everyone knows the plan before the real
//! outage.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Deps};
use crate::audience;
use crate::clock::{Clock, TokioClock};
use crate::config::{Config, Probe};
use crate::incident::{Action, Event, StaffMailKind};
use crate::notify::mail::{Mailer, Outgoing};
use crate::notify::templates::{Templates, duration_text};
use crate::notify::webhook::{Kept, Posted};
use crate::probe::{Outcome, Reason};
use crate::scheduler::Runner;
use crate::store::{CampaignKind, IncidentRecord, OutboxItem, SharedStore, SqlStore};
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

/// The bare address of a `To:` that may carry a display name.
fn address(to: &str) -> &str {
    match (to.rfind('<'), to.strip_suffix('>')) {
        (Some(i), Some(rest)) => &rest[i + 1..],
        _ => to,
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("+{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Fails the rehearsed service's probes until `recover_at`; every other probe passes.
/// Runs land on exact multiples of their interval, as the plan is read.
struct Simulated {
    service: String,
    recover_at: SystemTime,
}

impl Runner for Simulated {
    fn run(&self, probe: &Probe, now: SystemTime) -> BoxFuture<'static, Outcome> {
        let ok = probe.service != self.service || now >= self.recover_at;
        let outcome = Outcome {
            at: now,
            duration: Duration::ZERO,
            success: ok,
            reason: (!ok).then(|| Reason::Text {
                text: "simulated failure (drill)".into(),
            }),
            phases: Vec::new(),
            details: Default::default(),
        };
        Box::pin(std::future::ready(outcome))
    }

    fn aligned(&self) -> bool {
        true
    }
}

/// What the App did in the rehearsal: its decisions, every message it would have sent,
/// and the first page and announcement it published.
struct Rehearsal {
    decisions: Vec<OutboxItem>,
    staff: Vec<Outgoing>,
    customers: Vec<Outgoing>,
    /// Incident webhook deliveries, built and signed, not POSTed.
    hooks: Vec<Kept>,
    /// Chat and paging channel messages, built, not sent.
    chats: Vec<crate::notify::channels::Kept>,
    /// Staff commands the engine refused, with when.
    refused: Vec<(SystemTime, String)>,
    /// The incident as it stood when customers were first told.
    told: Option<IncidentRecord>,
    placeholder: Option<String>,
    hotline: Option<String>,
}

/// Runs the real App (engine, dispatcher and notifiers, campaign sender, pages, hotline)
/// on paused time from `sc.start` until the plan is carried out or `give_up`. Mail is
/// built and kept, not sent; the store, pages and announcements live in `scratch`; the
/// parts that reach other systems (webhooks, the autoresponder's mail server, the hotline
/// hook, the page webhook) are left out and described from the config instead; incident
/// webhooks go through their real notifier and are kept, not POSTed.
fn rehearse(
    config: &Config,
    sc: &Scenario,
    recover_at: SystemTime,
    give_up: SystemTime,
    scratch: &Path,
) -> Result<Rehearsal, String> {
    let mut cfg = config.clone();
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.data_dir = scratch.join("var");
    cfg.placeholder_dir = scratch.join("www");
    cfg.hotline.dir = scratch.join("hotline");
    cfg.hotline.hook = None;
    cfg.webhook = None;
    // Incident webhooks go through the real notifier, kept instead of POSTed; a dry run
    // needs no signing key.
    for w in &mut cfg.webhooks {
        w.secret
            .get_or_insert_with(|| crate::secret::Secret::new("drill"));
    }
    // Channels likewise: built by their real notifier and kept.
    let names: Vec<String> = cfg.channels.keys().cloned().collect();
    for name in names {
        if let Some(c) = cfg.channels.get_mut(&name) {
            let mut vendor = c.vendor.clone();
            vendor.fill_secrets(crate::secret::Secret::new("drill"));
            c.vendor = vendor;
        }
    }
    cfg.autoresponder = None;
    cfg.api_token = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start the rehearsal: {e}"))?;
    // The App's own log would only repeat the report.
    let quiet = tracing::Dispatch::none();
    tracing::dispatcher::with_default(&quiet, || {
        runtime.block_on(rehearse_on(&cfg, config, sc, recover_at, give_up))
    })
}

async fn rehearse_on(
    cfg: &Config,
    config: &Config,
    sc: &Scenario,
    recover_at: SystemTime,
    give_up: SystemTime,
) -> Result<Rehearsal, String> {
    let clock = Arc::new(TokioClock::new(sc.start));
    let base = tokio::time::Instant::now();
    let store = SharedStore::new(
        SqlStore::open_sqlite(&cfg.data_dir.join("tocsin.db")).map_err(|e| e.to_string())?,
    );
    let staff = Arc::new(Mailer::recording(&cfg.mail).map_err(|e| e.to_string())?);
    let customers = Arc::new(Mailer::recording(&cfg.mail).map_err(|e| e.to_string())?);
    let hooks = Arc::new(Posted::default());
    let chats = Arc::new(crate::notify::channels::Posted::default());
    let deps = Deps {
        clock: clock.clone(),
        store: store.clone(),
        staff_mail: staff.clone(),
        campaign_mail: customers.clone(),
        webhooks_kept: Some(hooks.clone()),
        channels_kept: Some(chats.clone()),
        // A rehearsal simulates heartbeats like any probe: the runner below decides them.
        heartbeats: crate::heartbeat::Heartbeats::new(store.clone(), clock.clone()),
        runner: Arc::new(Simulated {
            service: sc.service.clone(),
            recover_at,
        }),
        leadership: None,
        votes: None,
    };
    let app = App::build(cfg.clone(), &config.source, deps)
        .await
        .map_err(|e| e.to_string())?;
    let engine = app.engine();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run(cancel.clone()));

    let page = cfg.placeholder_dir.join(&sc.service).join("index.html");
    let announcement = cfg.hotline.dir.join(format!("{}.txt", cfg.page_language));
    let mut told = None;
    let mut placeholder = None;
    let mut hotline = None;
    let (mut acked, mut estimated) = (false, false);
    let mut refused = Vec::new();
    let mut counted = u64::MAX;
    let mut decisions = Vec::new();
    for second in 1u64.. {
        tokio::time::sleep_until(base + Duration::from_secs(second)).await;
        let now = clock.now();
        // The store is read again only after a new decision.
        let seen = engine.snapshot().decisions;
        if seen != counted {
            counted = seen;
            decisions = store.lock().decisions().map_err(|e| e.to_string())?;
        }
        let opened = decisions.iter().find_map(|d| match d.action {
            Action::Open { .. } if d.service == sc.service => Some(d.decided),
            _ => None,
        });
        let resolved = decisions
            .iter()
            .any(|d| d.service == sc.service && matches!(d.action, Action::Resolve { .. }));
        // On-call acts only while the incident is open; what the engine refuses (an ETA
        // already past) goes into the report as the engine said it.
        if let Some(o) = opened.filter(|_| !resolved) {
            let since = now.duration_since(o).unwrap_or_default();
            let mut acts = Vec::new();
            if !acked && sc.ack_after.is_some_and(|a| since >= a) {
                acked = true;
                let by = "on-call".to_string();
                acts.push(("acknowledgement", Event::Ack { by }));
            }
            if let Some(e) = sc.eta.filter(|_| !estimated && since >= sc.eta_after) {
                estimated = true;
                let by = "on-call".to_string();
                acts.push((
                    "ETA",
                    Event::Eta {
                        eta: sc.start + e,
                        by,
                    },
                ));
            }
            for (what, event) in acts {
                if let Err(e) = engine.command(&sc.service, event).await {
                    refused.push((now, format!("on-call's {what} refused: {e}")));
                }
            }
        }
        if told.is_none() && opened.is_some() {
            told = store
                .lock()
                .open_incident_of(&sc.service)
                .map_err(|e| e.to_string())?
                .filter(|i| i.customer_phase);
        }
        if placeholder.is_none() {
            placeholder = std::fs::read_to_string(&page).ok();
        }
        if hotline.is_none() {
            hotline = std::fs::read_to_string(&announcement).ok();
        }
        // Done once everything decided is carried out and taken down again.
        let settled = || -> Result<bool, String> {
            let st = store.lock();
            let pending = st.pending().map_err(|e| e.to_string())?.total();
            let sending = st.recipient_counts().map_err(|e| e.to_string())?.pending;
            Ok(pending == 0 && sending == 0 && !page.exists() && !announcement.exists())
        };
        if (resolved && settled()?) || now > give_up {
            break;
        }
    }
    cancel.cancel();
    let _ = running.await;
    let decisions = store.lock().decisions().map_err(|e| e.to_string())?;
    Ok(Rehearsal {
        decisions,
        staff: staff.recorded(),
        customers: customers.recorded(),
        hooks: hooks.all(),
        chats: chats.all(),
        refused,
        told,
        placeholder,
        hotline,
    })
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

    // The audience as the campaign takes it, for the report's counts.
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

    let scratch = tempfile::tempdir()
        .map_err(|e| format!("cannot make a scratch directory for the rehearsal: {e}"))?;
    let r = rehearse(config, sc, recover_at, give_up, scratch.path())?;
    let customer_mails = |kind: CampaignKind| -> Vec<&Outgoing> {
        r.customers
            .iter()
            .filter(|m| {
                m.headers.iter().any(|(k, v)| {
                    *k == "X-Tocsin-Campaign" && v.ends_with(&format!(" {}", kind.as_str()))
                })
            })
            .collect()
    };
    let sample_of = |kind: CampaignKind| -> Option<String> {
        let m = customer_mails(kind).into_iter().next()?;
        let to = m.to.first()?;
        let who = followers
            .as_ref()
            .and_then(|(_, _, f)| f.iter().find(|c| address(to) == c.email));
        let (lang, tz) = who
            .map(|c| (c.language.as_str(), c.timezone.as_str()))
            .unwrap_or(("?", "?"));
        Some(format!(
            "To: {to} ({lang}, {tz})\nSubject: {}\n\n{}",
            m.subject, m.text
        ))
    };
    let mut staff_mails = r.staff.iter().collect::<Vec<_>>();
    let mut take_staff = |to: &[String], resolved: bool| -> Option<&Outgoing> {
        let i = staff_mails.iter().position(|m| {
            m.to == to
                && !m.subject.contains("compensation codes ran out")
                && m.subject.contains("is UP again") == resolved
        })?;
        Some(staff_mails.remove(i))
    };
    let staff_sample = |m: &Outgoing| {
        format!(
            "To: {}\nSubject: {}\n\n{}",
            m.to.join(", "),
            m.subject,
            m.text
        )
    };

    let mut steps = Vec::new();
    let mut samples: Vec<(String, String)> = Vec::new();
    let mut sampled = BTreeSet::new();
    let mut told_customers = 0usize;
    let mut ended = None;
    let audience_name = audience.as_ref().map(|a| a.0.as_str());
    for d in r.decisions.iter().filter(|d| d.service == sc.service) {
        let t = d.decided;
        let mut details = Vec::new();
        let what = match &d.action {
            Action::AlsoAffected { .. } | Action::Posted { .. } => d.action.to_string(),
            Action::Open {
                started, reasons, ..
            } => {
                let opened = crate::incident::TimelineEvent::Opened {
                    reasons: reasons.clone(),
                };
                details.push(format!(
                    "status page: {} is down, since {}",
                    service.name,
                    rfc(*started)
                ));
                if service.escalation.is_none() {
                    details.push(
                        "staff: nobody is told (the service names no `escalation` policy)".into(),
                    );
                }
                format!(
                    "incident opened after {} failed rounds ({})",
                    policy.failure_threshold,
                    opened.failing().join("; ")
                )
            }
            Action::MailStaff {
                kind, level, to, ..
            } => {
                let label = match kind {
                    StaffMailKind::Opened => "incident opened",
                    StaffMailKind::Escalated => "escalated: not acknowledged",
                    StaffMailKind::Reminder => "reminder: still not acknowledged",
                    StaffMailKind::Flapping => "flapping",
                    StaffMailKind::MonitorDown => "monitor's network down",
                    StaffMailKind::MonitorFault => "monitor's own host in trouble",
                    StaffMailKind::TaskRestarted => "a task of tocsin restarted",
                    StaffMailKind::Locations => "locations changed",
                    StaffMailKind::DueSoon => "customers are owed an update soon",
                };
                if let Some(m) = take_staff(to, false) {
                    if sampled.insert(format!("staff-{label}")) {
                        samples.push((
                            format!("staff mail, level {level} ({label})"),
                            staff_sample(m),
                        ));
                    }
                }
                format!(
                    "staff mail, level {level} ({label}) to {} ({})",
                    to.join(", "),
                    reach(to)
                )
            }
            Action::Acknowledged { by, .. } => format!("acknowledged by {by}: escalation stops"),
            Action::EtaSet { eta, by, .. } => {
                format!("ETA set by {by}: recovery expected at {}", rfc(*eta))
            }
            Action::CustomerPhase {
                eta,
                next_update,
                because_of_eta,
                ..
            } => {
                let sent = customer_mails(CampaignKind::Outage).len();
                told_customers = sent;
                details.push(outage_line(
                    config,
                    &followers,
                    audience_name,
                    sent,
                    &sc.service,
                ));
                details.extend(attached_lines(config, service, &followers)?);
                if let Some(sample) = sample_of(CampaignKind::Outage) {
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
                let sent = customer_mails(CampaignKind::Update).len();
                details.push(
                    outage_line(config, &followers, audience_name, sent, &sc.service)
                        .replace("outage mail", "update mail"),
                );
                if sampled.insert("update".to_string()) {
                    if let Some(sample) = sample_of(CampaignKind::Update) {
                        samples.push(("customer mail: update".into(), sample));
                    }
                }
                customer_side(config, &templates, &r, t, false, &mut details, &mut samples)?;
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
                if !staff.is_empty() {
                    if let Some(m) = take_staff(staff, true) {
                        samples.push(("staff mail: resolved".into(), staff_sample(m)));
                    }
                    details.push(format!(
                        "staff mail \"resolved\" to {} ({})",
                        staff.join(", "),
                        reach(staff)
                    ));
                }
                if *customers {
                    details.push(format!(
                        "recovery mail to the {} told of the outage",
                        crate::text::count(told_customers as u64, "customer")
                    ));
                    if let Some(c) = service.compensation.as_ref().filter(|c| lasted >= c.after) {
                        let pool = audience::codes(&c.codes_csv)
                            .map(|l| l.codes.len())
                            .unwrap_or(0);
                        details.push(format!(
                            "each with a compensation code (outage {} >= {}): {} in {}{}",
                            duration_text(lasted),
                            duration_text(c.after),
                            crate::text::count(pool as u64, "code"),
                            c.codes_csv.display(),
                            if pool < told_customers {
                                format!(", {} short: staff would be told", told_customers - pool)
                            } else {
                                String::new()
                            }
                        ));
                    }
                    if let Some(sample) = sample_of(CampaignKind::Recovery) {
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
                            "autoresponder off: the previously active script restored in {}",
                            crate::text::counted(a.mailboxes.len() as u64, "mailbox", "mailboxes")
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
        let posted: Vec<&Kept> = r
            .hooks
            .iter()
            .filter(|h| h.decision == Some(d.id))
            .collect();
        if let (Some(ev), Some(first)) = (d.action.event(), posted.first()) {
            details.push(format!(
                "webhook `{ev}` to {}",
                crate::text::count(posted.len() as u64, "receiver")
            ));
            if sampled.insert("webhook".into()) {
                samples.push((
                    format!("webhook `{ev}` (JSON body, signed in X-Tocsin-Signature)"),
                    first.body.clone(),
                ));
            }
        }
        let chats: Vec<&str> = r
            .chats
            .iter()
            .filter(|c| c.decision == Some(d.id))
            .map(|c| c.channel.as_str())
            .collect();
        if !chats.is_empty() {
            details.push(format!("channels: {}", chats.join(", ")));
        }
        if let Some(ctx) = &d.context {
            if matches!(d.action, Action::MailStaff { .. }) {
                for line in &ctx.oncall {
                    details.push(format!("on call: {line}"));
                }
            }
        }
        steps.push(Step {
            offset: t.duration_since(sc.start).unwrap_or_default(),
            what,
            details,
        });
    }
    for (at, what) in &r.refused {
        steps.push(Step {
            offset: at.duration_since(sc.start).unwrap_or_default(),
            what: what.clone(),
            details: Vec::new(),
        });
    }
    steps.sort_by_key(|s| s.offset);
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

/// "2 recipients", or "1 recipient and 2 channels" when a level names channels.
fn reach(to: &[String]) -> String {
    let mailed = crate::oncall::addresses(to).len() as u64;
    let channels = crate::oncall::channels(to).len() as u64;
    if channels == 0 {
        crate::text::count(mailed, "recipient")
    } else {
        format!(
            "{} and {}",
            crate::text::count(mailed, "recipient"),
            crate::text::count(channels, "channel")
        )
    }
}

/// For each service that depends on `root` (directly or through a chain): how many more
/// customers are told, about it, if it fails with `root` (those following it whom no
/// earlier campaign of the incident reached).
fn attached_lines(
    config: &Config,
    root: &crate::config::Service,
    followers: &Followers,
) -> Result<Vec<String>, String> {
    let mut chain = vec![root.id.clone()];
    let mut i = 0;
    while i < chain.len() {
        let here = chain[i].clone();
        for s in &config.services {
            if s.depends_on.contains(&here) && !chain.contains(&s.id) {
                chain.push(s.id.clone());
            }
        }
        i += 1;
    }
    let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
    let mut told: BTreeSet<String> = followers
        .iter()
        .flat_map(|(_, _, f)| f.iter().map(|r| crate::store::address_key(&r.email)))
        .collect();
    let mut lines = Vec::new();
    for id in &chain[1..] {
        let Some(s) = config.services.iter().find(|s| s.id == *id) else {
            continue;
        };
        let Some(a) = s.audience.as_ref().and_then(|a| config.audiences.get(a)) else {
            lines.push(format!(
                "if {} fails with it: attached to this incident, no customer of its own (no audience)",
                s.name
            ));
            continue;
        };
        let more = audience::load(a, &ids)?
            .recipients
            .into_iter()
            .filter(|r| r.follows(&s.id))
            .filter(|r| told.insert(crate::store::address_key(&r.email)))
            .count();
        lines.push(format!(
            "if {} fails with it: attached to this incident; {} about {} (those following it whom no earlier mail reached)",
            s.name,
            crate::text::count(more as u64, "more customer"),
            s.name
        ));
    }
    Ok(lines)
}

/// The campaign line: how many customers the mail reached, out of what in the audience.
fn outage_line(
    config: &Config,
    followers: &Followers,
    audience: Option<&str>,
    sent: usize,
    service: &str,
) -> String {
    let Some((rows, invalid, f)) = followers else {
        return "outage mail: the service has no audience, so no customer is mailed".into();
    };
    let n = f.len();
    let max = config.mail.max_campaign_size;
    let name = audience.unwrap_or("?");
    if n as u64 > max {
        return format!(
            "outage mail REFUSED: {n} recipients in audience `{name}`, more than mail.max_campaign_size ({max}); no customer would be told"
        );
    }
    use crate::text::count;
    format!(
        "outage mail to {} of audience `{name}` ({}, {} not following {service}{}; opt-outs are left out too)",
        count(sent as u64, "customer"),
        count(*rows as u64, "valid row"),
        rows - n,
        if *invalid > 0 {
            format!(", {} left out", count(*invalid as u64, "invalid row"))
        } else {
            String::new()
        }
    )
}

/// The placeholder, autoresponder and hotline as the customer phase set them: the page and
/// announcement the App published in the rehearsal, the Sieve script it would install.
fn customer_side(
    config: &Config,
    templates: &Templates,
    r: &Rehearsal,
    now: SystemTime,
    first: bool,
    details: &mut Vec<String>,
    samples: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let verb = if first { "published" } else { "replaced" };
    let Some(told) = &r.told else {
        return Ok(());
    };
    details.push(format!(
        "placeholder page {verb}: {}",
        config
            .placeholder_dir
            .join(&told.service)
            .join("index.html")
            .display()
    ));
    if first {
        if let Some(page) = &r.placeholder {
            samples.push(("placeholder page".into(), page.clone()));
        }
    }
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
                "autoresponder {} in {} over {}:{}: {}",
                if first { "on" } else { "text replaced" },
                crate::text::counted(a.mailboxes.len() as u64, "mailbox", "mailboxes"),
                a.host,
                a.port,
                shown.join(", ")
            ));
            if first {
                let open = std::slice::from_ref(told);
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
        if let Some(text) = &r.hotline {
            samples.push((
                format!("hotline announcement ({})", config.page_language),
                text.clone(),
            ));
        }
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
        "Drill: {service} ({}) fails at {}. Nothing is sent, no file is published, tocsin's store is not opened.",
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
    let p = where_it_lands(path);
    [&config.placeholder_dir, &config.hotline.dir]
        .iter()
        .any(|d| p.starts_with(where_it_lands(d)))
}

/// The directory `path` names once created: each existing part resolved through its
/// links, `..` applied where it stands, the parts that do not exist yet kept as written
/// (creating them makes plain directories). So `new/../www` is `www`, and a link to a
/// published directory is that directory.
fn where_it_lands(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut at = PathBuf::new();
    for part in abs.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => at.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                if let Ok(real) = std::fs::canonicalize(&at) {
                    at = real;
                }
            }
        }
    }
    at
}
