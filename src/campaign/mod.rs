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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::audience;
use crate::config::{Config, ConfigError, Service};
use crate::incident::Action;
use crate::links::Signer;
use crate::notify::mail::Outgoing;
use crate::notify::templates::{
    Templates, duration_text, local_time, short_time, update_context, val,
};
use crate::store::{
    Batch, CampaignInfo, CampaignKind, Expanded, OutboxItem, RecipientJob, SharedStore, Store,
    StoreError, address_key,
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
    /// Not yet: a service attached to an incident whose customers are not told yet (or
    /// whose campaign is still being read): asked again after this long.
    Later(std::time::Duration),
}

/// How often the customers of an attached service are looked at again while the root
/// incident has not reached its customer phase.
pub const ATTACHED_AGAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The recipient variable naming the attached services a customer of the root also uses
/// (the templates' `also_affected`); not a customer column.
const ALSO_AFFECTED: &str = "also_affected";

/// Turns the customer-side part of an outbox item into a campaign. Idempotent: the same
/// item planned twice gives the same campaign.
pub fn plan(
    store: &SharedStore,
    config: &Config,
    item: &OutboxItem,
    now: SystemTime,
) -> Result<Planned, PlanError> {
    let Some(incident) = item.incident else {
        return Ok(Planned::Nothing);
    };
    if let Action::AlsoAffected { affected: true, .. } = &item.action {
        return plan_attached(store, config, item, incident, now);
    }
    let kind = match &item.action {
        Action::CustomerPhase { .. } => CampaignKind::Outage,
        Action::CustomerUpdate { .. }
        | Action::Posted {
            customers: true, ..
        } => CampaignKind::Update,
        Action::Resolve {
            customers: true, ..
        } => CampaignKind::Recovery,
        _ => return Ok(Planned::Nothing),
    };
    if kind != CampaignKind::Outage {
        let mut store = store.lock();
        let pool = compensation_pool(&mut **store, config, item)?;
        let made = store.create_followup(
            item.id,
            incident,
            kind,
            pool.as_deref(),
            !config.campaigns.recovery_each,
            now,
        )?;
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
    // Services attached to the incident by now: the customers who use one of them too
    // are told so in this mail.
    let attached: Vec<(String, String)> = match store.lock().incident(incident)? {
        Some(inc) => inc
            .also_affected()
            .into_iter()
            .filter_map(|(id, _)| {
                let s = config.services.iter().find(|s| s.id == id)?;
                Some((s.id.clone(), s.name.clone()))
            })
            .collect(),
        None => Vec::new(),
    };
    outage_campaign(store, config, item, incident, now, &[], &attached)
}

/// Opens (or goes on with) the outage campaign decided by `item` about its service and
/// expands it whole, leaving out everyone in the campaigns `exclude`, and naming to each
/// recipient the services of `also` (id, name) they use too.
fn outage_campaign(
    store: &SharedStore,
    config: &Config,
    item: &OutboxItem,
    incident: i64,
    now: SystemTime,
    exclude: &[i64],
    also: &[(String, String)],
) -> Result<Planned, PlanError> {
    let Some(service) = config.services.iter().find(|s| s.id == item.service) else {
        return Ok(Planned::Nothing);
    };
    let file = service
        .audience
        .as_ref()
        .and_then(|a| config.audiences.get(a).map(|x| (a.as_str(), x)));
    let subscribed = !store.lock().subscribers_of(&service.id)?.is_empty();
    let name = match file {
        Some((name, _)) => name,
        None if subscribed => audience::SUBSCRIBERS,
        None => {
            tracing::info!(service = %service.id, "customer phase: the service has no audience and no subscriber, so no campaign");
            return Ok(Planned::Nothing);
        }
    };
    let opened = store
        .lock()
        .open_campaign(item.id, incident, &service.id, name, now)?;
    let exclude: Vec<i64> = exclude
        .iter()
        .copied()
        .filter(|c| *c != opened.id)
        .collect();
    let within = config.campaigns.merge_window;
    // Held while another outage reaches its customers at about the same time (its
    // customer phase began within the window, or is due within it), so that a customer of
    // both gets one message; a lone outage goes at once.
    let hold = !within.is_zero()
        && store.lock().incidents(true)?.iter().any(|i| {
            if i.service == service.id {
                return false;
            }
            let began = i
                .timeline
                .iter()
                .find(|e| e.kind() == "customer_phase")
                .map(|e| e.at);
            match began {
                Some(t) => t + within >= now,
                None => config
                    .services
                    .iter()
                    .find(|s| s.id == i.service)
                    .is_some_and(|s| i.started + s.customer_threshold <= now + within),
            }
        });
    match expand(
        store,
        config,
        service,
        name,
        file.map(|(_, a)| a),
        &opened,
        &exclude,
        also,
        hold,
        usize::MAX,
    )? {
        Expansion::Done => Ok(Planned::Campaign(opened.id)),
        Expansion::Stopped => Ok(Planned::Nothing),
        Expansion::Paused => unreachable!("every batch was written"),
    }
}

/// A service attached to `incident` (it depends on the incident's service and fails with
/// it): once the incident's customers are told, its own customers are told too, by a
/// campaign about it, leaving out everyone the incident's campaigns reached already (one
/// message per customer). Its updates and recovery mail follow the incident's.
fn plan_attached(
    store: &SharedStore,
    config: &Config,
    item: &OutboxItem,
    incident: i64,
    now: SystemTime,
) -> Result<Planned, PlanError> {
    let Some(root) = store.lock().incident(incident)? else {
        return Ok(Planned::Nothing);
    };
    if root.ended.is_some() || !root.also_affected().iter().any(|(s, _)| *s == item.service) {
        // Over, or the service works again: nothing to tell its customers.
        return Ok(Planned::Nothing);
    }
    if !root.customer_phase {
        return Ok(Planned::Later(ATTACHED_AGAIN));
    }
    let campaigns = store.lock().outage_campaigns(incident)?;
    let root_has_audience = config
        .services
        .iter()
        .find(|s| s.id == root.service)
        .is_some_and(|s| s.audience.is_some());
    let mine = campaigns.iter().any(|(_, _, s)| *s == item.service);
    // The incident's own campaign must be read whole first, so that nobody it reaches is
    // mailed twice.
    let reading = campaigns
        .iter()
        .any(|(_, done, s)| !done && *s != item.service);
    // A root campaign refused (over mail.max_campaign_size) will never come: this
    // service's customers are told without waiting for it.
    let awaited =
        root_has_audience && campaigns.is_empty() && !store.lock().outage_refused(incident)?;
    if !mine && (reading || awaited) {
        return Ok(Planned::Later(ATTACHED_AGAIN));
    }
    let others: Vec<i64> = campaigns.iter().map(|(id, _, _)| *id).collect();
    outage_campaign(store, config, item, incident, now, &others, &[])
}

/// Recipients written to the store in one transaction while a campaign is expanded, and
/// audience rows read at most before where reading stopped is saved.
const BATCH: usize = 10_000;
const SCAN: usize = 50_000;

/// Expands an outage campaign from its audience, a batch at a time: those following the
/// service, each address once (the first row of it that follows the service), minus
/// opt-outs. The store is taken only to write a batch, so a million rows keep neither
/// the engine waiting nor the rows in memory (a 16-byte digest per address is kept to
/// merge repeated addresses). Goes on where an earlier, interrupted expansion stopped.
/// Writes at most `batches` batches (what a crash leaves behind, for the tests). Nobody
/// in the campaigns `exclude` is added (they were told by another campaign of the same
/// incident); a recipient who also uses services of `also` (id, name) gets their names
/// as `also_affected`.
#[allow(clippy::too_many_arguments)]
fn expand(
    store: &SharedStore,
    config: &Config,
    service: &Service,
    name: &str,
    audience: Option<&crate::config::Audience>,
    opened: &crate::store::Opened,
    exclude: &[i64],
    also: &[(String, String)],
    hold: bool,
    batches: usize,
) -> Result<Expansion, PlanError> {
    let Some(saved) = &opened.expansion else {
        return Ok(Expansion::Done);
    };
    let id = opened.id;
    let from: Option<audience::Cursor> = serde_json::from_str(saved).ok();
    let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
    let mut rows = match audience {
        Some(a) => {
            Some(audience::Rows::open(a, &ids, from.as_ref()).map_err(PlanError::Transient)?)
        }
        None => None,
    };
    // Those who subscribed on the status page come after the file, in the last batch.
    let subscribers = store.lock().subscribers_of(&service.id)?;
    let resumed = match &rows {
        Some(r) => from.as_ref().is_some_and(|c| c.file == r.cursor().file),
        None => false,
    };
    let mut seen: HashSet<u128> = HashSet::new();
    for other in exclude {
        store.lock().campaign_addresses(*other, &mut |email| {
            seen.insert(audience::digest(&address_key(email)));
        })?;
    }
    let (mut followers, mut invalid) = (0u64, 0u64);
    if resumed {
        store.lock().campaign_addresses(id, &mut |email| {
            seen.insert(audience::digest(&address_key(email)));
        })?;
        followers = opened.recipients + opened.opted_out;
        invalid = opened.invalid;
        tracing::info!(service = %service.id, campaign = id, recipients = opened.recipients, "customer campaign: going on with the expansion where it stopped");
    } else if opened.recipients + opened.opted_out + opened.invalid > 0 {
        tracing::warn!(service = %service.id, campaign = id, "customer campaign: the audience file changed while it was read; reading it again from the start");
        store.lock().restart_expansion(id)?;
    }
    let names: std::collections::BTreeMap<String, String> = config
        .services
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let merge = crate::store::Merge {
        within: config.campaigns.merge_window,
        hold,
        names: &names,
    };
    let file = audience
        .map(|a| audience::file_of(a).display().to_string())
        .unwrap_or_else(|| audience::SUBSCRIBERS.to_string());
    let max = config.mail.max_campaign_size;
    let mut batch = Vec::with_capacity(BATCH);
    let mut notes = Vec::new();
    for _ in 0..batches {
        batch.clear();
        notes.clear();
        let mut left_out = 0u64;
        let mut read = 0;
        let mut ended = true;
        for item in rows.iter_mut().flatten() {
            read += 1;
            match item {
                audience::Item::Bad(e) => {
                    tracing::warn!(audience = %name, "{file}:{}: {}; this row is left out", e.line, e.message);
                    if invalid + left_out < 5 {
                        notes.push(format!("{file}:{}: {}", e.line, e.message));
                    }
                    left_out += 1;
                }
                audience::Item::Row(r, _) => {
                    if r.follows(&service.id)
                        && seen.insert(audience::digest(&address_key(&r.email)))
                    {
                        followers += 1;
                        let uses: Vec<&str> = also
                            .iter()
                            .filter(|(id, _)| r.follows(id))
                            .map(|(_, n)| n.as_str())
                            .collect();
                        let mut row = r.into_row();
                        if !uses.is_empty() {
                            row.vars.insert(ALSO_AFFECTED.into(), uses.join(", "));
                        }
                        batch.push(row);
                    }
                }
            }
            if batch.len() >= BATCH || read >= SCAN {
                ended = false;
                break;
            }
        }
        if ended {
            for r in &subscribers {
                if seen.insert(audience::digest(&address_key(&r.email))) {
                    followers += 1;
                    batch.push(r.clone());
                }
            }
        }
        invalid += left_out;
        if followers > max {
            store.lock().drop_campaign(id)?;
            return Err(PlanError::Refused(format!(
                "audience `{name}` has at least {followers} recipients for {}, more than mail.max_campaign_size ({max}): no customer was mailed; raise the limit or narrow the audience",
                service.id
            )));
        }
        let cursor = match (&rows, ended) {
            (Some(r), false) => {
                Some(serde_json::to_string(&r.cursor()).expect("a cursor is plain data"))
            }
            _ => None,
        };
        let done = store.lock().expand_campaign(
            id,
            &Batch {
                recipients: &batch,
                invalid: left_out,
                notes: &notes,
                expansion: cursor.as_deref(),
                merge: Some(&merge),
            },
        )?;
        if done == Expanded::Stopped {
            tracing::info!(service = %service.id, campaign = id, "customer campaign: the service recovered before it was complete; nothing of it is sent");
            return Ok(Expansion::Stopped);
        }
        if ended {
            return Ok(Expansion::Done);
        }
    }
    Ok(Expansion::Paused)
}

enum Expansion {
    Done,
    /// The incident recovered before the campaign was complete.
    Stopped,
    /// Stopped after the batches it was given.
    Paused,
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
        // Links carry the customer's language: the pages they open speak it.
        let unsubscribe = format!(
            "{}&lang={lang}",
            self.signer.unsubscribe_url(&config.public_url, &job.email)
        );
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
        let ctx = minijinja::context! {
            stop_url => format!("{}&lang={lang}", self.signer.stop_url(&config.public_url, &job.email, &info.service)),
            manage_url => format!("{}&lang={lang}", self.signer.manage_url(&config.public_url, &job.email)),
            ..ctx
        };
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
    // Attached services (they depend on this one) are named in the outage message only:
    // whether they work again when it does is theirs to say.
    let mut also: Vec<String> = customer
        .remove(ALSO_AFFECTED)
        .into_iter()
        .filter(|a| !a.is_empty() && info.kind == CampaignKind::Outage)
        .collect();
    // Services that went down with this one, told in this one message. A recovery names
    // them only when it waits for the last of them (`campaigns.recovery: last`); an
    // update is about its own service.
    if let Some(group) = customer.remove(crate::store::GROUP) {
        let named = match info.kind {
            CampaignKind::Outage => true,
            CampaignKind::Recovery => !config.campaigns.recovery_each,
            _ => false,
        };
        let group: Vec<(String, String)> = serde_json::from_str(&group).unwrap_or_default();
        if named {
            also.extend(
                group
                    .into_iter()
                    .filter(|(id, _)| *id != service_id)
                    .map(|(_, n)| n),
            );
        }
    }
    let also_affected = (!also.is_empty()).then(|| also.join(", "));
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
        status_url => format!("{}/status?lang={lang}", config.public_url),
        incident_url => (info.incident > 0).then(|| format!("{}/incidents/{}?lang={lang}", config.public_url, info.incident)),
        unsubscribe_url => unsubscribe_url,
        compensation_code => compensation_code,
        also_affected => also_affected,
        update => info.update.as_ref().map(|u| update_context(u, lang, &config.page_language)),
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
        warnings.extend(t.warnings().iter().map(|i| ConfigError {
            file: i.file.clone(),
            pos: crate::config::locate::Pos {
                line: i.line,
                col: 1,
            },
            message: i.message.clone(),
        }));
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
    // Each service's followers, for the compensation pools below.
    let mut followers: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (name, a) in &config.audiences {
        let file = audience::file_of(a).display().to_string();
        let at = |line: usize, col: usize, message: String| ConfigError {
            file: file.clone(),
            pos: crate::config::locate::Pos { line, col },
            message,
        };
        match audience::survey(a, &ids) {
            Err(e) => rows.push(at(1, 1, e)),
            Ok(l) => {
                rows.extend(l.errors.into_iter().map(|e| at(e.line, e.col, e.message)));
                warnings.extend(l.warnings.into_iter().map(|e| at(e.line, e.col, e.message)));
                if let Some(t) = &templates {
                    // One remark per language, at its first row.
                    for (lang, (line, n)) in &l.languages {
                        if t.language(lang) == "en" && !lang.starts_with("en") {
                            warnings.push(at(
                                *line,
                                1,
                                format!(
                                    "language `{lang}` has no templates: {} will get English (add {lang}/ to campaigns.templates)", crate::text::count(*n as u64, "recipient")
                                ),
                            ));
                        }
                    }
                }
                for (s, n) in config.services.iter().zip(&l.followers) {
                    if s.audience.as_deref() == Some(name) {
                        followers.insert(&s.id, *n);
                    }
                }
                let size = config
                    .services
                    .iter()
                    .zip(&l.followers)
                    .filter(|(s, _)| s.audience.as_deref() == Some(name))
                    .map(|(_, n)| *n)
                    .max()
                    .unwrap_or(0);
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
                } else if let Some((service, n)) = config
                    .services
                    .iter()
                    .filter(|x| {
                        x.compensation
                            .as_ref()
                            .is_some_and(|k| k.codes_csv == c.codes_csv)
                    })
                    .filter_map(|x| followers.get(x.id.as_str()).map(|n| (&x.id, *n)))
                    .max_by_key(|(_, n)| *n)
                    .filter(|(_, n)| *n > l.codes.len() as u64)
                {
                    warnings.push(at(1, 1, format!(
                        "holds {} codes, fewer than the {n} customers of `{service}`: after a long outage {} of them would get no code; add codes to the file",
                        l.codes.len(),
                        n - l.codes.len() as u64
                    )));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Context, ServiceState};
    use crate::store::SqlStore;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Writes `rows` as the audience (a header first), and makes a store with an open
    /// incident of `shop` whose customer phase was decided. Returns that decision.
    fn setup(dir: &std::path::Path, rows: &str) -> (SharedStore, Config, OutboxItem) {
        std::fs::write(
            dir.join("customers.csv"),
            format!("email,name,services\n{rows}"),
        )
        .unwrap();
        let config = crate::config::parse(
            "allow_insecure_links: true\nservices:\n  - id: shop\n    audience: customers\n    probes:\n      - { name: p, tcp: { address: \"127.0.0.1:9\" } }\n  - id: api\n    probes:\n      - { name: q, tcp: { address: \"127.0.0.1:9\" } }\naudiences:\n  customers: { csv: ./customers.csv }\nmail: { from: \"Status <status@example.com>\", max_campaign_size: 30000 }\n",
            &dir.join("probes.yaml"),
        )
        .unwrap();
        let store = SharedStore::new(SqlStore::open_sqlite(&dir.join("t.db")).unwrap());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let actions = [
            Action::Open {
                id: 1,
                started: t0,
                reasons: BTreeMap::new(),
            },
            Action::CustomerPhase {
                id: 1,
                eta: None,
                next_update: Some(t0 + Duration::from_secs(3600)),
                because_of_eta: false,
            },
        ];
        store
            .lock()
            .commit(
                "shop",
                &ServiceState::new(),
                &actions,
                &Context::default(),
                t0,
            )
            .unwrap();
        let item = store
            .lock()
            .decisions()
            .unwrap()
            .into_iter()
            .find(|d| matches!(d.action, Action::CustomerPhase { .. }))
            .unwrap();
        (store, config, item)
    }

    /// `n` customers following the shop, one following only the API, a bad row, and the
    /// first customer again in capitals.
    fn customers(n: usize) -> String {
        let mut rows = String::new();
        for i in 0..n {
            rows.push_str(&format!("c{i}@example.com,Customer {i},shop\n"));
            if i == 7 {
                rows.push_str("api@example.com,Only API,api\nnot-an-address,X,\n");
            }
        }
        rows.push_str("C0@Example.com,Customer zero again,\n");
        rows
    }

    /// Expands one batch, as a process killed after its first commit leaves it.
    fn one_batch(store: &SharedStore, config: &Config, item: &OutboxItem) -> i64 {
        let service = &config.services[0];
        let audience = &config.audiences["customers"];
        let opened = store
            .lock()
            .open_campaign(item.id, 1, "shop", "customers", SystemTime::now())
            .unwrap();
        let paused = expand(
            store,
            config,
            service,
            "customers",
            Some(audience),
            &opened,
            &[],
            &[],
            false,
            1,
        );
        assert!(matches!(paused, Ok(Expansion::Paused)));
        opened.id
    }

    fn addresses(store: &SharedStore, campaign: i64) -> Vec<String> {
        let mut all = Vec::new();
        store
            .lock()
            .campaign_addresses(campaign, &mut |e| all.push(e.to_string()))
            .unwrap();
        all
    }

    #[test]
    fn an_interrupted_expansion_goes_on_where_it_stopped_and_sends_nothing_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config, item) = setup(dir.path(), &customers(25_000));
        let id = one_batch(&store, &config, &item);
        let first = addresses(&store, id);
        assert_eq!(first.len(), BATCH);
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(
            store
                .lock()
                .due_recipients(later, 0, 10)
                .unwrap()
                .is_empty(),
            "nothing of a campaign being expanded is sent"
        );
        assert_eq!(store.lock().next_recipient_due().unwrap(), None);
        let listed = store.lock().campaigns(None, SystemTime::now()).unwrap();
        assert!(listed[0].expanding);

        // The restart: the same decision planned again.
        let planned = plan(&store, &config, &item, SystemTime::now()).unwrap();
        assert_eq!(planned, Planned::Campaign(id));
        let all = addresses(&store, id);
        assert_eq!(
            all.len(),
            25_000,
            "each follower once, C0@Example.com merged"
        );
        assert!(
            all[..BATCH] == first[..],
            "the first batch was kept, not redone"
        );
        assert!(!all.iter().any(|a| a == "api@example.com"));
        let listed = store.lock().campaigns(None, SystemTime::now()).unwrap();
        let c = &listed[0];
        assert!(!c.expanding);
        assert_eq!((c.invalid, c.opted_out, c.counts.pending), (1, 0, 25_000));
        assert!(
            c.note.contains("customers.csv:11: `not-an-address`"),
            "{}",
            c.note
        );
        assert_eq!(store.lock().due_recipients(later, 0, 10).unwrap().len(), 10);
        // Planned a third time: the same campaign, nothing added.
        assert_eq!(
            plan(&store, &config, &item, SystemTime::now()).unwrap(),
            Planned::Campaign(id)
        );
        assert_eq!(addresses(&store, id).len(), 25_000);
    }

    #[test]
    fn an_audience_replaced_during_the_expansion_is_read_again_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config, item) = setup(dir.path(), &customers(15_000));
        let id = one_batch(&store, &config, &item);
        store
            .lock()
            .opt_out("c1@example.com", SystemTime::now())
            .unwrap();
        std::fs::write(
            dir.path().join("customers.csv"),
            "email,name,services\nc1@example.com,One,shop\nnew@example.com,New,shop\n",
        )
        .unwrap();
        plan(&store, &config, &item, SystemTime::now()).unwrap();
        assert_eq!(addresses(&store, id), ["new@example.com"]);
        let c = &store.lock().campaigns(None, SystemTime::now()).unwrap()[0];
        assert_eq!((c.invalid, c.opted_out), (0, 1));
    }

    #[test]
    fn an_expansion_stops_when_the_incident_recovered_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config, item) = setup(dir.path(), &customers(15_000));
        let id = one_batch(&store, &config, &item);
        let t = SystemTime::now();
        let recovery = store
            .lock()
            .create_followup(item.id + 1000, 1, CampaignKind::Recovery, None, true, t)
            .unwrap();
        assert!(recovery.is_some());
        assert_eq!(
            plan(&store, &config, &item, t).unwrap(),
            Planned::Nothing,
            "the outage mail is not completed after the recovery"
        );
        let listed = store.lock().campaigns(None, t).unwrap();
        let outage = listed.iter().find(|c| c.id == id).unwrap();
        assert!(!outage.expanding);
        assert_eq!(outage.counts.pending, 0);
        assert_eq!(outage.counts.cancelled, BATCH as u64);
        let later = t + Duration::from_secs(3600);
        assert!(
            store
                .lock()
                .due_recipients(later, 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_campaign_over_the_limit_is_refused_whole_even_after_batches_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let (store, config, item) = setup(dir.path(), &customers(30_001));
        let id = one_batch(&store, &config, &item);
        let e = plan(&store, &config, &item, SystemTime::now()).unwrap_err();
        assert!(
            e.to_string().contains(
                "has at least 30001 recipients for shop, more than mail.max_campaign_size (30000)"
            ),
            "{e}"
        );
        assert!(addresses(&store, id).is_empty());
        assert!(
            store
                .lock()
                .campaigns(None, SystemTime::now())
                .unwrap()
                .is_empty()
        );
    }

    mod attached {
        use super::*;
        use proptest::prelude::*;

        const SERVICES: [&str; 4] = ["db", "s1", "s2", "s3"];

        /// A database and three services that need it: s1 and s3 share the database's
        /// audience, s2 has its own.
        const CONFIG: &str = "allow_insecure_links: true
services:
  - { id: db, audience: a, probes: [{ name: p0, tcp: { address: \"127.0.0.1:9\" } }] }
  - { id: s1, audience: a, depends_on: [db], probes: [{ name: p1, tcp: { address: \"127.0.0.1:9\" } }] }
  - { id: s2, audience: b, depends_on: [db], probes: [{ name: p2, tcp: { address: \"127.0.0.1:9\" } }] }
  - { id: s3, audience: a, depends_on: [s1], probes: [{ name: p3, tcp: { address: \"127.0.0.1:9\" } }] }
audiences:
  a: { csv: ./a.csv }
  b: { csv: ./b.csv }
mail: { from: \"Status <status@example.com>\" }
";

        /// A row: which of 10 addresses, whether it is in file `a` (else `b`), and which
        /// services it follows (none listed: every one).
        fn rows() -> impl Strategy<Value = Vec<(u8, bool, Vec<bool>)>> {
            proptest::collection::vec(
                (
                    0u8..10,
                    any::<bool>(),
                    proptest::collection::vec(any::<bool>(), 4),
                ),
                0..30,
            )
        }

        fn csv(rows: &[(u8, bool, Vec<bool>)], in_a: bool) -> String {
            let mut out = String::from("email,name,services\n");
            for (who, a, follows) in rows.iter().filter(|r| r.1 == in_a) {
                let _ = a;
                let list: Vec<&str> = SERVICES
                    .iter()
                    .zip(follows)
                    .filter(|(_, f)| **f)
                    .map(|(s, _)| *s)
                    .collect();
                out.push_str(&format!("c{who}@example.com,C{who},{}\n", list.join(" ")));
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            /// Whoever follows an affected service, in that service's audience, is told
            /// once, by one campaign of the incident; nobody else is.
            #[test]
            fn every_follower_of_an_affected_service_is_told_exactly_once(
                rows in rows(),
                attached in proptest::collection::vec(any::<bool>(), 3),
                reversed in any::<bool>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("a.csv"), csv(&rows, true)).unwrap();
                std::fs::write(dir.path().join("b.csv"), csv(&rows, false)).unwrap();
                let config = crate::config::parse(CONFIG, &dir.path().join("probes.yaml")).unwrap();
                let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
                let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
                store.lock().commit("db", &ServiceState::new(), &[
                    Action::Open { id: 1, started: t0, reasons: BTreeMap::new() },
                    Action::CustomerPhase { id: 1, eta: None, next_update: Some(t0 + Duration::from_secs(3600)), because_of_eta: false },
                ], &Context::default(), t0).unwrap();
                let mut affected: Vec<&str> = vec!["db"];
                for (s, on) in SERVICES[1..].iter().zip(&attached) {
                    if *on {
                        affected.push(s);
                        store.lock().commit(s, &ServiceState::new(), &[Action::AlsoAffected {
                            root: "db".into(), affected: true, reasons: BTreeMap::new(),
                        }], &Context::default(), t0).unwrap();
                    }
                }
                let mut decisions = store.lock().decisions().unwrap();
                decisions.retain(|d| matches!(d.action, Action::CustomerPhase { .. } | Action::AlsoAffected { .. }));
                // The root's campaign first (the others wait for it), the attached in
                // either order.
                let (root, mut others): (Vec<_>, Vec<_>) = decisions.into_iter().partition(|d| d.service == "db");
                if reversed {
                    others.reverse();
                }
                for d in root.iter().chain(&others) {
                    let planned = plan(&store, &config, d, t0);
                    prop_assert!(planned.is_ok(), "{planned:?}");
                    prop_assert!(!matches!(planned, Ok(Planned::Later(_))));
                }
                // Who must be told: a row following an affected service whose audience is
                // the row's file.
                let mut want: std::collections::BTreeSet<String> = Default::default();
                for (who, in_a, follows) in &rows {
                    let every = follows.iter().all(|f| !f);
                    for (i, s) in SERVICES.iter().enumerate() {
                        let audience_a = *s != "s2";
                        if affected.contains(s) && audience_a == *in_a && (every || follows[i]) {
                            want.insert(format!("c{who}@example.com"));
                        }
                    }
                }
                let mut got: Vec<String> = Vec::new();
                let campaigns = store.lock().outage_campaigns(1).unwrap();
                for (id, done, _) in campaigns {
                    prop_assert!(done);
                    store.lock().campaign_addresses(id, &mut |e| got.push(e.to_string())).unwrap();
                }
                let once: std::collections::BTreeSet<String> = got.iter().cloned().collect();
                prop_assert_eq!(once.len(), got.len(), "one message per customer: {:?}", got);
                prop_assert_eq!(once, want);
            }
        }
    }
}
