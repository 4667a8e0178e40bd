//! Customer campaigns: from a customer-phase decision to one durable row per recipient
//! ([`plan`]), rendering each recipient's message ([`Composer`]), sending them under a
//! concurrency bound and a rate limit ([`sender`]), and the checks `tocsin check` runs on
//! audiences and templates ([`preflight`]).
//!
//! Who gets what: the outage mail goes to the service's audience (those following the
//! service, minus opt-outs); updates and the recovery mail go to exactly those the outage
//! mail reached. A campaign larger than `mail.max_campaign_size` is refused whole.

pub mod planner;
pub mod sender;

use std::sync::Arc;
use std::time::SystemTime;

use crate::audience;
use crate::config::{Config, ConfigError, Service};
use crate::incident::Action;
use crate::links::Signer;
use crate::notify::mail::Outgoing;
use crate::notify::templates::{Templates, duration_text, local_time, short_time, val};
use crate::store::{
    CampaignInfo, CampaignKind, NewRecipient, OutboxItem, RecipientJob, Store, StoreError,
};

/// Why a campaign could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Worth another try (the audience file cannot be read right now).
    #[error("{0}")]
    Transient(String),
    /// Will not work as configured; recorded on the incident.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What planning did.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// A campaign (new, or the one made the first time) with its id.
    Campaign(i64),
    /// A recovery campaign after an outage that earned compensation, `missing` of whose
    /// recipients got no code: the pool in `pool` ran out. They get the mail without one.
    ShortOfCodes {
        id: i64,
        missing: u64,
        pool: std::path::PathBuf,
    },
    /// Nothing to send: no audience, or nobody was mailed the outage.
    Nothing,
}

/// Turns the customer-side part of an outbox item into a campaign. Idempotent: the same
/// item planned twice gives the same campaign.
pub fn plan(
    store: &mut dyn Store,
    config: &Config,
    item: &OutboxItem,
    now: SystemTime,
) -> Result<Planned, PlanError> {
    let Some(incident) = item.incident else {
        return Ok(Planned::Nothing);
    };
    let kind = match &item.action {
        Action::CustomerPhase { .. } => CampaignKind::Outage,
        Action::CustomerUpdate { .. } => CampaignKind::Update,
        Action::Resolve {
            customers: true, ..
        } => CampaignKind::Recovery,
        _ => return Ok(Planned::Nothing),
    };
    if kind != CampaignKind::Outage {
        let pool = compensation_pool(store, config, item)?;
        let made = store.create_followup(item.id, incident, kind, pool.as_deref(), now)?;
        return Ok(match (made, pool) {
            (None, _) => Planned::Nothing,
            (Some(f), Some(pool)) if f.short_of_codes > 0 => Planned::ShortOfCodes {
                id: f.id,
                missing: f.short_of_codes,
                pool: pool.into(),
            },
            (Some(f), _) => Planned::Campaign(f.id),
        });
    }
    let Some(service) = config.services.iter().find(|s| s.id == item.service) else {
        return Ok(Planned::Nothing);
    };
    let Some((name, audience)) = service
        .audience
        .as_ref()
        .and_then(|a| config.audiences.get(a).map(|x| (a, x)))
    else {
        tracing::info!(service = %service.id, "customer phase: the service has no audience, so no campaign");
        return Ok(Planned::Nothing);
    };
    let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
    let loaded = audience::load(audience, &ids).map_err(PlanError::Transient)?;
    let file = audience::file_of(audience).display().to_string();
    let invalid = loaded.errors.len() as u64;
    for e in &loaded.errors {
        tracing::warn!(audience = %name, "{file}:{}: {}; this row is left out", e.line, e.message);
    }
    let note = loaded
        .errors
        .iter()
        .take(5)
        .map(|e| format!("{file}:{}: {}", e.line, e.message))
        .collect::<Vec<_>>()
        .join("\n");
    let recipients: Vec<NewRecipient> = loaded
        .recipients
        .into_iter()
        .filter(|r| r.follows(&service.id))
        .map(audience::Recipient::into_row)
        .collect();
    let max = config.mail.max_campaign_size;
    if recipients.len() as u64 > max {
        return Err(PlanError::Refused(format!(
            "audience `{name}` has {} recipients for {}, more than mail.max_campaign_size ({max}): no customer was mailed; raise the limit or narrow the audience",
            recipients.len(),
            service.id
        )));
    }
    let id = store.create_campaign(
        item.id,
        incident,
        &service.id,
        name,
        &recipients,
        invalid,
        &note,
        now,
    )?;
    Ok(Planned::Campaign(id))
}

/// The code pool a recovery earns: the service's codes file (its codes loaded into the
/// store) when the outage lasted at least `compensation.after`.
fn compensation_pool(
    store: &mut dyn Store,
    config: &Config,
    item: &OutboxItem,
) -> Result<Option<String>, PlanError> {
    let Action::Resolve {
        started,
        ended,
        customers: true,
        ..
    } = &item.action
    else {
        return Ok(None);
    };
    let Some(c) = config
        .services
        .iter()
        .find(|s| s.id == item.service)
        .and_then(|s| s.compensation.as_ref())
    else {
        return Ok(None);
    };
    if ended.duration_since(*started).unwrap_or_default() < c.after {
        return Ok(None);
    }
    let pool = c.codes_csv.display().to_string();
    let loaded = audience::codes(&c.codes_csv).map_err(PlanError::Transient)?;
    for e in &loaded.errors {
        tracing::warn!("{pool}:{}: {}; this code is left out", e.line, e.message);
    }
    let left = store.load_codes(&pool, &loaded.codes)?;
    tracing::info!(service = %item.service, pool = %pool, unused = left, "compensation codes for the recovery mail");
    Ok(Some(pool))
}

/// Renders campaign messages.
pub struct Composer {
    pub templates: Arc<Templates>,
    pub signer: Arc<Signer>,
    /// Domain of the sender, for Message-IDs.
    pub domain: String,
}

impl Composer {
    /// The message `job`'s recipient gets from campaign `info`, under `config`.
    pub fn compose(
        &self,
        config: &Config,
        info: &CampaignInfo,
        job: &RecipientJob,
    ) -> Result<Outgoing, String> {
        let service = config.services.iter().find(|s| s.id == info.service);
        let lang = self.templates.language(&job.language).to_string();
        let tz = job.timezone.as_str();
        let unsubscribe = self.signer.unsubscribe_url(&config.public_url, &job.email);
        let ctx = context(
            config,
            service,
            &info.service,
            info,
            &lang,
            tz,
            &job.name,
            &job.email,
            &job.vars,
            job.compensation.as_deref(),
            unsubscribe.clone(),
        );
        let r = self.templates.mail(info.kind, &lang, &ctx)?;
        let mut unsubscribe_header = format!("<{unsubscribe}>");
        if let Some(to) = &config.mail.unsubscribe_address {
            unsubscribe_header.push_str(&format!(", <mailto:{to}?subject=unsubscribe>"));
        }
        let service_name = service.map(|s| s.name.as_str()).unwrap_or(&info.service);
        Ok(Outgoing {
            to: vec![recipient(&job.name, &job.email)],
            subject: r.subject,
            text: r.text,
            html: r.html,
            headers: vec![
                ("List-Unsubscribe", unsubscribe_header),
                (
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_string(),
                ),
                (
                    "List-Id",
                    list_id(service_name, &info.service, &self.domain),
                ),
                // Gmail's feedback loop groups complaints by these fields.
                (
                    "Feedback-ID",
                    format!("{}:{}:{}:tocsin", info.id, info.kind.as_str(), info.service),
                ),
                (
                    "X-Tocsin-Campaign",
                    format!("{} {}", info.id, info.kind.as_str()),
                ),
            ],
            message_id: Some(format!(
                "tocsin.{}.{}.{}@{}",
                info.id,
                job.id,
                self.signer.message_tag(info.id, job.id),
                self.domain
            )),
        })
    }
}

/// `To:` with the customer's name when it is known (lettre quotes and encodes it).
fn recipient(name: &str, email: &str) -> String {
    match email.parse::<lettre::Address>() {
        Ok(a) if !name.trim().is_empty() => {
            lettre::message::Mailbox::new(Some(name.trim().to_string()), a).to_string()
        }
        _ => email.to_string(),
    }
}

/// RFC 2919: one list per service, named at the sender's domain; the service's name as
/// its phrase when it can be written as plain ASCII.
fn list_id(name: &str, id: &str, domain: &str) -> String {
    let label = format!("{id}.{domain}");
    if name
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ')
    {
        format!("\"{name}\" <{label}>")
    } else {
        format!("<{label}>")
    }
}

#[allow(clippy::too_many_arguments)]
fn context(
    config: &Config,
    service: Option<&Service>,
    service_id: &str,
    info: &CampaignInfo,
    lang: &str,
    tz: &str,
    name: &str,
    email: &str,
    vars: &std::collections::BTreeMap<String, String>,
    compensation_code: Option<&str>,
    unsubscribe_url: String,
) -> minijinja::Value {
    let mut customer = vars.clone();
    customer.insert("name".into(), name.to_string());
    customer.insert("email".into(), email.to_string());
    let ended = info.ended.unwrap_or(info.started);
    minijinja::context! {
        language => lang,
        customer => customer,
        service => minijinja::context! {
            id => service_id,
            name => service.map(|s| s.name.as_str()).unwrap_or(service_id),
        },
        company => val(&config.company),
        started => local_time(info.started, tz, lang),
        eta => info.eta.map(|t| local_time(t, tz, lang)),
        eta_time => info.eta.map(|t| short_time(t, tz, lang)),
        next_update => info.next_update.map(|t| local_time(t, tz, lang)),
        next_update_time => info.next_update.map(|t| short_time(t, tz, lang)),
        ended => local_time(ended, tz, lang),
        duration => duration_text(ended.duration_since(info.started).unwrap_or_default()),
        status_url => format!("{}/status", config.public_url),
        unsubscribe_url => unsubscribe_url,
        compensation_code => compensation_code,
        // Planned maintenance: the window, and whether this is the completion notice.
        window_start => local_time(info.started, tz, lang),
        window_end => local_time(ended, tz, lang),
        window_duration => duration_text(ended.duration_since(info.started).unwrap_or_default()),
        completed => info.kind == CampaignKind::MaintenanceDone,
        note => info.window_note.as_deref(),
    }
}

/// What `tocsin check` (and start-up) found beyond the config file itself.
#[derive(Default)]
pub struct Preflight {
    /// Unusable templates (syntax, or a message that could be vague): tocsin refuses to
    /// start or reload with them.
    pub templates: Vec<ConfigError>,
    /// Audience rows left out (bad address, header injection, unknown zone...): `check`
    /// fails on them; a running tocsin logs them and mails everyone else.
    pub rows: Vec<ConfigError>,
    /// Compensation code files' bad rows: errors (a code given out twice, or a pool
    /// that cannot be read, is the company's promise broken).
    pub codes: Vec<ConfigError>,
    /// Accepted with a remark: merged duplicates, languages that fall back to English.
    pub warnings: Vec<ConfigError>,
    /// The templates, when they loaded.
    pub loaded: Option<Templates>,
}

/// Checks templates (syntax, and that no message can be vague) and audience files
/// (every row).
pub fn preflight(config: &Config) -> Preflight {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut codes = Vec::new();
    let mut warnings = config.warnings.clone();
    let templates = match Templates::load(config.campaigns.templates.as_deref()) {
        Ok(t) => Some(t),
        Err(issues) => {
            errors.extend(issues.into_iter().map(|i| ConfigError {
                file: i.file,
                pos: crate::config::locate::Pos {
                    line: i.line,
                    col: 1,
                },
                message: i.message,
            }));
            None
        }
    };
    if let Some(t) = &templates {
        if !t.languages().contains(&config.page_language) {
            warnings.push(ConfigError {
                file: config.source.display().to_string(),
                pos: crate::config::locate::Pos { line: 1, col: 1 },
                message: format!(
                    "pages.language `{}` has no templates; pages are in English",
                    config.page_language
                ),
            });
        }
    }
    let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
    for (name, a) in &config.audiences {
        let file = audience::file_of(a).display().to_string();
        let at = |line: usize, col: usize, message: String| ConfigError {
            file: file.clone(),
            pos: crate::config::locate::Pos { line, col },
            message,
        };
        match audience::load(a, &ids) {
            Err(e) => rows.push(at(1, 1, e)),
            Ok(l) => {
                rows.extend(l.errors.into_iter().map(|e| at(e.line, e.col, e.message)));
                warnings.extend(l.warnings.into_iter().map(|e| at(e.line, e.col, e.message)));
                if let Some(t) = &templates {
                    // One remark per language, at its first row.
                    let mut fallback: std::collections::BTreeMap<&str, (usize, usize)> =
                        Default::default();
                    for r in &l.recipients {
                        if t.language(&r.language) == "en" && !r.language.starts_with("en") {
                            let e = fallback.entry(r.language.as_str()).or_insert((r.line, 0));
                            e.1 += 1;
                        }
                    }
                    for (lang, (line, n)) in fallback {
                        warnings.push(at(
                            line,
                            1,
                            format!(
                                "language `{lang}` has no templates: {} will get English (add {lang}/ to campaigns.templates)", crate::text::count(n as u64, "recipient")
                            ),
                        ));
                    }
                }
                let size = config
                    .services
                    .iter()
                    .filter(|s| s.audience.as_deref() == Some(name))
                    .map(|s| l.recipients.iter().filter(|r| r.follows(&s.id)).count())
                    .max()
                    .unwrap_or(0) as u64;
                if size > config.mail.max_campaign_size {
                    warnings.push(at(1, 1, format!("audience `{name}` would send {size} mails for one service, more than mail.max_campaign_size ({}): that campaign would be refused", config.mail.max_campaign_size)));
                }
            }
        }
    }
    let mut pools = std::collections::BTreeSet::new();
    for s in &config.services {
        let Some(c) = &s.compensation else { continue };
        if !pools.insert(c.codes_csv.clone()) {
            continue;
        }
        let file = c.codes_csv.display().to_string();
        let at = |line: usize, col: usize, message: String| ConfigError {
            file: file.clone(),
            pos: crate::config::locate::Pos { line, col },
            message,
        };
        match audience::codes(&c.codes_csv) {
            Err(e) => codes.push(at(1, 1, e)),
            Ok(l) => {
                if l.codes.is_empty() && l.errors.is_empty() {
                    warnings.push(at(1, 1, "holds no codes: recovery mails after a long outage would carry none (staff are told when that happens)".into()));
                }
                codes.extend(l.errors.into_iter().map(|e| at(e.line, e.col, e.message)));
            }
        }
    }
    Preflight {
        templates: errors,
        codes,
        rows,
        warnings,
        loaded: templates,
    }
}

/// What one recipient of the service's audience would get from campaign `info`.
pub fn preview(
    config: &Config,
    composer: &Composer,
    info: &CampaignInfo,
    email: &str,
) -> Result<Outgoing, String> {
    let job = {
        let service = config
            .services
            .iter()
            .find(|s| s.id == info.service)
            .ok_or_else(|| format!("no service `{}`", info.service))?;
        let audience = service
            .audience
            .as_ref()
            .and_then(|a| config.audiences.get(a))
            .ok_or_else(|| format!("service `{}` has no audience", service.id))?;
        let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
        let loaded = audience::load(audience, &ids)?;
        let key = crate::store::address_key(email);
        let r = loaded
                .recipients
                .into_iter()
                .find(|r| crate::store::address_key(&r.email) == key)
                .ok_or_else(|| {
                    format!(
                        "{email} is not in the audience of {} (or its row is invalid: run `tocsin check`)",
                        service.id
                    )
                })?;
        if !r.follows(&service.id) {
            return Err(format!(
                "{email} does not follow {} (services: {})",
                service.id,
                r.services.join(", ")
            ));
        }
        RecipientJob {
            id: 0,
            campaign: info.id,
            email: r.email,
            name: r.name,
            language: r.language,
            timezone: r.timezone,
            vars: r.vars,
            attempts: 0,
            compensation: (info.kind == CampaignKind::Recovery)
                .then(|| {
                    config
                        .services
                        .iter()
                        .find(|s| s.id == info.service)
                        .and_then(|s| s.compensation.as_ref())
                        .map(|_| "SAMPLE-CODE".to_string())
                })
                .flatten(),
        }
    };
    composer.compose(config, info, &job)
}
