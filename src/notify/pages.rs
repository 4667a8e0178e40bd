//! Pages: the placeholder that stands in for a service's website while customers are
//! told of an outage, and the status page, written as static files so nginx can serve
//! them even when tocsin is down.
//!
//! Level-triggered: [`Pages::reconcile`] makes the files match the store (a placeholder
//! for every open incident in its customer phase, none for anything else), so a crash,
//! restart or missed event never leaves a placeholder behind or one missing. Files are
//! replaced atomically (write, fsync, rename) and readable by the web server (0644).
//! The optional webhook is told of each service's placeholder state until it accepts it;
//! the last state it accepted is kept in the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::templates::{Templates, duration_text, local_time, val};
use crate::clock::Clock;
use crate::config::{Config, LiveConfig};
use crate::engine::Handle;
use crate::incident::Status;
use crate::metrics::Metrics;
use crate::store::{IncidentRecord, SharedStore, StoreError};

/// Marks a directory as holding a tocsin placeholder (so only those are ever removed).
const MARKER: &str = ".tocsin-placeholder";
const STATUS_FILE: &str = "status.html";
const PERIOD: Duration = Duration::from_secs(5);
const HISTORY_DAYS: u64 = 90;
/// Up to this many services, the status page gives each its card with 90 days of bars.
const EXPANDED_UP_TO: usize = 30;

/// What the status and placeholder pages are made from.
#[derive(Clone)]
pub struct PageSource {
    pub engine: Handle,
    pub store: SharedStore,
    pub templates: Arc<Templates>,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    /// The status page last made, reused while nothing it shows can have changed.
    pub status_cache: StatusCache,
}

/// The last status page: made from one engine snapshot and one config, at one time.
/// During an outage customers reload the page by the thousand; each rendering reads 90
/// days of incidents under the store's lock, which the campaign sender needs too.
#[derive(Clone, Default)]
pub struct StatusCache(Arc<std::sync::Mutex<Option<CachedStatus>>>);

struct CachedStatus {
    snapshot: Arc<crate::engine::Snapshot>,
    config: Arc<Config>,
    made: SystemTime,
    page: StatusPage,
}

/// A rendered status page and its entity tag.
#[derive(Clone)]
pub struct StatusPage {
    pub body: Arc<str>,
    /// Quoted, as the `ETag` header carries it; it changes with every rendering.
    pub etag: Arc<str>,
}

impl PageSource {
    /// How long a status page is served again at most: its times are to the minute.
    const STATUS_FRESH: Duration = Duration::from_secs(30);

    /// The status page as HTML, now: the one made last while the engine has decided
    /// nothing new, the config is the same and it is under 30 seconds old. One caller
    /// renders while the others wait for its page (the cache's lock is held meanwhile),
    /// so a crowd arriving after a change costs one rendering. Blocking: call it from a
    /// blocking thread.
    pub fn status_page(&self) -> Result<StatusPage, String> {
        let config = self.config.get();
        let snapshot = self.engine.snapshot();
        let mut cached = self
            .status_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        if let Some(c) = cached.as_ref().filter(|c| {
            Arc::ptr_eq(&c.snapshot, &snapshot)
                && Arc::ptr_eq(&c.config, &config)
                && now
                    .duration_since(c.made)
                    .is_ok_and(|age| age < Self::STATUS_FRESH)
        }) {
            return Ok(c.page.clone());
        }
        let ctx = status_context(&config, &snapshot.statuses, &self.store, now)
            .map_err(|e| e.to_string())?;
        let body: Arc<str> = self
            .templates
            .page("status", &config.page_language, &ctx)?
            .into();
        let made = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let previous = cached.as_ref().map(|c| c.page.etag.clone());
        let mut etag: Arc<str> = format!("\"{made:x}-{:x}\"", snapshot.decisions).into();
        if previous.as_ref() == Some(&etag) {
            // A clock standing still (tests, a paused VM) must still give a new tag.
            etag = format!("\"{made:x}-{:x}-{}\"", snapshot.decisions, body.len()).into();
        }
        let page = StatusPage { body, etag };
        *cached = Some(CachedStatus {
            snapshot,
            config,
            made: now,
            page: page.clone(),
        });
        Ok(page)
    }

    /// The placeholder page of `incident`.
    pub fn placeholder(
        &self,
        config: &Config,
        incident: &IncidentRecord,
    ) -> Result<String, String> {
        placeholder(&self.templates, config, incident, self.clock.now())
    }
}

/// The placeholder page of `incident` at `now`.
pub fn placeholder(
    templates: &Templates,
    config: &Config,
    incident: &IncidentRecord,
    now: SystemTime,
) -> Result<String, String> {
    {
        let lang = config.page_language.as_str();
        let tz = config.page_timezone.as_str();
        let service = config.services.iter().find(|s| s.id == incident.service);
        // What customers may be told: the kind of trouble, never the probe's own text.
        let problem = incident
            .timeline
            .iter()
            .filter_map(|e| e.event.problem())
            .max()
            .unwrap_or(crate::probe::Problem::Unreachable);
        let ctx = minijinja::context! {
            language => lang,
            service => minijinja::context! {
                id => &incident.service,
                name => service.map(|s| s.name.as_str()).unwrap_or(&incident.service),
            },
            company => val(&config.company),
            problem => problem.as_str(),
            started => local_time(incident.started, tz, lang),
            eta => incident.promised_eta.map(|t| local_time(t, tz, lang)),
            next_update => incident.next_update.map(|t| local_time(t, tz, lang)),
            status_url => format!("{}/status", config.public_url),
            generated => local_time(now, tz, lang),
            timezone => tz,
        };
        templates.page("placeholder", lang, &ctx)
    }
}

#[derive(Serialize)]
struct Day<'a> {
    date: &'a str,
    uptime: String,
    level: &'static str,
}

/// The status page's variables.
pub fn status_context(
    config: &Config,
    statuses: &BTreeMap<String, Status>,
    store: &SharedStore,
    now: SystemTime,
) -> Result<minijinja::Value, StoreError> {
    let lang = config.page_language.as_str();
    let tz = config.page_timezone.as_str();
    let at = |t: SystemTime| local_time(t, tz, lang);
    let day = 86_400u64;
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let today = now_s - now_s % day;
    let first = today - (HISTORY_DAYS - 1) * day;
    let (mut open, mut history) = {
        let s = store.lock();
        (
            s.incidents(true)?,
            s.incidents_since(SystemTime::UNIX_EPOCH + Duration::from_secs(first))?,
        )
    };
    // A service shown from its customer phase only (`public_from: customer`): an
    // incident its customers were never told of appears nowhere on the page.
    open.retain(|i| config.shown_publicly(&i.service, i.customer_phase));
    history.retain(|(service, _, _, told)| config.shown_publicly(service, *told));
    let name_of = |id: &str| config.service_name(id);
    // Each service's outages within the window, gathered once: the page of 10,000
    // services must not scan every incident for every service and day.
    let mut spans: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for (svc, st, en, _) in &history {
        let a = secs_of(*st).max(first);
        let b = en.map(secs_of).unwrap_or(now_s).min(now_s);
        if b > a {
            spans.entry(svc.as_str()).or_default().push((a, b));
        }
    }
    let dates: Vec<String> = (0..HISTORY_DAYS)
        .map(|d| {
            chrono::DateTime::<chrono::Utc>::from(
                SystemTime::UNIX_EPOCH + Duration::from_secs(first + d * day),
            )
            .format("%Y-%m-%d")
            .to_string()
        })
        .collect();
    // A few services are shown each with its card; many are shown with a card only when
    // something is or was wrong, the rest by name in collapsed groups.
    let expanded = config.services.len() <= EXPANDED_UP_TO;
    let mut cards = Vec::new();
    let mut quiet: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    let mut quiet_index: HashMap<Option<&str>, usize> = HashMap::new();
    for s in &config.services {
        let status = statuses.get(&s.id).copied().unwrap_or(Status::Up);
        let own = spans.get(s.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if !expanded && status == Status::Up && own.is_empty() {
            let g = s.group.as_deref();
            let i = *quiet_index.entry(g).or_insert_with(|| {
                quiet.push((g, Vec::new()));
                quiet.len() - 1
            });
            quiet[i].1.push(&s.name);
            continue;
        }
        let mut days = Vec::with_capacity(dates.len());
        let (mut down_total, mut span_total) = (0u64, 0u64);
        for (d, date) in (0..HISTORY_DAYS).zip(&dates) {
            let start = first + d * day;
            let end = (start + day).min(now_s.max(start));
            let span = end - start;
            let down: u64 = own
                .iter()
                .map(|(a, b)| (*b).min(end).saturating_sub((*a).max(start)))
                .sum::<u64>()
                .min(span);
            down_total += down;
            span_total += span;
            let pct = if span == 0 {
                100.0
            } else {
                100.0 * (span - down) as f64 / span as f64
            };
            days.push(Day {
                date,
                uptime: format!("{pct:.2}"),
                level: if down == 0 {
                    "ok"
                } else if pct >= 99.0 {
                    "minor"
                } else {
                    "major"
                },
            });
        }
        let uptime = if span_total == 0 {
            100.0
        } else {
            100.0 * (span_total - down_total) as f64 / span_total as f64
        };
        let bad_days: Vec<&Day> = days.iter().filter(|d| d.level != "ok").collect();
        cards.push((
            status != Status::Up,
            minijinja::context! {
                id => &s.id,
                name => &s.name,
                group => &s.group,
                status => val(status),
                uptime => format!("{uptime:.2}"),
                bad_days => val(&bad_days),
                days => val(&days),
            },
        ));
    }
    // Problems first; otherwise in the file's order.
    if !expanded {
        cards.sort_by_key(|(problem, _)| !*problem);
    }
    let services: Vec<minijinja::Value> = cards.into_iter().map(|(_, c)| c).collect();
    // Named groups in the file's order, the ungrouped last.
    quiet.sort_by_key(|(g, _)| g.is_none());
    let quiet: Vec<minijinja::Value> = quiet
        .into_iter()
        .map(|(group, names)| {
            minijinja::context! {
                group => val(group),
                count => names.len(),
                names => val(&names),
            }
        })
        .collect();
    let incidents: Vec<minijinja::Value> = open
        .iter()
        .map(|i| {
            // What customers may read: the opening and each new expected time, once
            // (staff's ETA and the promise made to customers are the same news), never
            // staff bookkeeping such as who acknowledged or that customers were mailed.
            let mut said: Option<SystemTime> = None;
            let updates: Vec<minijinja::Value> = i
                .timeline
                .iter()
                .filter_map(|e| {
                    let kind = match e.kind() {
                        "opened" => "opened",
                        "eta" | "customer_phase" | "customer_update" => {
                            let eta = e.event.eta().filter(|t| Some(*t) != said)?;
                            said = Some(eta);
                            "eta"
                        }
                        _ => return None,
                    };
                    Some(minijinja::context! {
                        at => at(e.at),
                        kind => kind,
                        eta => e.event.eta().map(at),
                    })
                })
                .collect();
            // Services that depend on this one and fail with it.
            let affected: Vec<String> = i.also_affected().iter().map(|(s, _)| name_of(s)).collect();
            minijinja::context! {
                id => i.id,
                service => name_of(&i.service),
                affected => affected,
                status => val(statuses.get(&i.service).copied().unwrap_or(Status::Down)),
                started => at(i.started),
                eta => i.promised_eta.or(i.eta).filter(|e| *e > now).map(at),
                next_update => i.next_update.filter(|n| *n > now).map(at),
                updates => updates,
            }
        })
        .collect();
    let maintenance: Vec<minijinja::Value> = config
        .maintenance
        .iter()
        .filter(|m| m.start + m.duration > now)
        .map(|m| {
            minijinja::context! {
                service => name_of(&m.service),
                start => at(m.start),
                end => at(m.start + m.duration),
                now => m.start <= now,
                note => &m.note,
            }
        })
        .collect();
    let week = now - Duration::from_secs(7 * day);
    let mut recent: Vec<&crate::store::Span> = history
        .iter()
        .filter(|(_, _, ended, _)| ended.is_some_and(|e| e >= week))
        .collect();
    recent.sort_by_key(|(_, started, _, _)| std::cmp::Reverse(*started));
    let resolved: Vec<minijinja::Value> = recent
        .into_iter()
        .take(10)
        .map(|(service, started, ended, _)| {
            let ended = ended.unwrap_or(now);
            minijinja::context! {
                service => name_of(service),
                started => at(*started),
                duration => duration_text(ended.duration_since(*started).unwrap_or_default()),
            }
        })
        .collect();
    let overall = if !incidents.is_empty() {
        "degraded"
    } else if statuses.values().any(|s| *s == Status::Maintenance) {
        "maintenance"
    } else {
        "ok"
    };
    Ok(minijinja::context! {
        language => lang,
        company => val(&config.company),
        overall => overall,
        services => services,
        quiet => quiet,
        incidents => incidents,
        maintenance => maintenance,
        resolved => resolved,
        generated => at(now),
        timezone => tz,
        status_url => format!("{}/status", config.public_url),
    })
}

fn secs_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Keeps the files in `placeholder_dir` matching the store.
#[derive(Clone)]
pub struct Pages {
    pub source: PageSource,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<Notify>,
    pub http: reqwest::Client,
}

impl Pages {
    pub async fn run(self, cancel: CancellationToken) {
        let mut engine = self.source.engine.subscribe();
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::error!(error = %e, "pages: cannot bring the published pages up to date; retrying");
            }
            if !super::pause(&cancel, &mut engine, Some(&self.ready), PERIOD).await {
                return;
            }
        }
    }

    /// One pass: placeholders, the status file, the webhook.
    pub async fn reconcile(&self) -> Result<(), String> {
        let config = self.source.config.get();
        let dir = &config.placeholder_dir;
        public_dir(dir)?;
        let open = super::told(&self.source.store)?;
        let mut wanted = BTreeSet::new();
        for inc in &open {
            if !safe_id(&inc.service) {
                continue;
            }
            wanted.insert(inc.service.clone());
            let html = self.source.placeholder(&config, inc)?;
            let sdir = dir.join(&inc.service);
            public_dir(&sdir)?;
            write_if_changed(&sdir.join(MARKER), b"")?;
            let page = sdir.join("index.html");
            let new = !page.exists();
            // Its times move on each minute: a change is logged, a refresh is not.
            if write_if_changed(&page, html.as_bytes())? {
                if new {
                    tracing::info!(service = %inc.service, path = %page.display(), "placeholder published");
                } else {
                    tracing::debug!(service = %inc.service, path = %page.display(), "placeholder refreshed");
                }
            }
        }
        // Withdraw every placeholder tocsin made that is no longer wanted.
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.join(MARKER).exists() && !wanted.contains(&name) {
                match std::fs::remove_file(p.join("index.html")) {
                    Ok(()) => tracing::info!(service = %name, "placeholder withdrawn"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(format!(
                            "cannot remove {}: {e}",
                            p.join("index.html").display()
                        ));
                    }
                }
                let _ = std::fs::remove_file(p.join(MARKER));
                let _ = std::fs::remove_dir(&p);
            }
        }
        self.metrics.placeholder_pages(wanted.len());
        let source = self.source.clone();
        let status = tokio::task::spawn_blocking(move || source.status_page())
            .await
            .map_err(|e| format!("the status page's rendering failed: {e}"))??;
        write_if_changed(&dir.join(STATUS_FILE), status.body.as_bytes())?;
        if let Some(hook) = &config.webhook {
            self.tell_webhook(&config, hook, &wanted).await;
        }
        Ok(())
    }

    async fn tell_webhook(
        &self,
        config: &Config,
        hook: &crate::config::Webhook,
        published: &BTreeSet<String>,
    ) {
        let token = hook.token.as_ref().map(|t| t.expose().to_string());
        for s in &config.services {
            let state = if published.contains(&s.id) {
                "published"
            } else {
                "withdrawn"
            };
            let key = format!("webhook:{}", s.id);
            let told = self.source.store.lock().meta(&key).ok().flatten();
            // Nothing to say about a service that never had a placeholder.
            if told.as_deref() == Some(state) || (told.is_none() && state == "withdrawn") {
                continue;
            }
            let body = serde_json::json!({
                "event": if state == "published" { "placeholder_published" } else { "placeholder_withdrawn" },
                "service": s.id,
                "service_name": s.name,
                "path": format!("{}/index.html", s.id),
                "status_url": format!("{}/status", config.public_url),
            });
            let mut req = self
                .http
                .post(hook.url.clone())
                .timeout(Duration::from_secs(10))
                .json(&body);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = self.source.store.lock().set_meta(&key, state);
                    tracing::info!(service = %s.id, state, "page webhook told");
                }
                Ok(r) => {
                    self.metrics.webhook_failed();
                    tracing::warn!(service = %s.id, status = %r.status(), "page webhook refused; will retry");
                }
                Err(e) => {
                    self.metrics.webhook_failed();
                    tracing::warn!(service = %s.id, error = %e, "page webhook unreachable; will retry");
                }
            }
        }
    }
}

fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Replaces `path` with `content` atomically when it differs; true when written.
pub fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool, String> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tocsin-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(content).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(fail)?;
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// Creates a directory of published pages readable by the web server. tocsin may run
/// with a umask that keeps its state private (the systemd unit sets 0027); mkdir applies
/// the umask, so the mode is set afterwards. Pages themselves are written 0644.
fn public_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} readable: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn page_directories_are_readable_by_the_web_server_whatever_the_umask_made_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("www/shop");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        public_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let fresh = tmp.path().join("www/api");
        public_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
}
