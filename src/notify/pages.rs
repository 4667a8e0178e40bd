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

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::public::{Month, View, history_context, incident_context, status_context};
use super::templates::{Templates, local_time, val};
use crate::clock::Clock;
use crate::config::{Config, LiveConfig};
use crate::engine::Handle;
use crate::metrics::Metrics;
use crate::store::{IncidentRecord, SharedStore};

/// Marks a directory as holding a tocsin placeholder (so only those are ever removed).
const MARKER: &str = ".tocsin-placeholder";
/// The status page as a file in `placeholder_dir`, as this host last wrote it.
pub const STATUS_FILE: &str = "status.html";
const PERIOD: Duration = Duration::from_secs(5);

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
pub struct StatusCache(Arc<std::sync::Mutex<HashMap<(String, String), CachedStatus>>>);

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
    pub fn status_page(&self, lang: &str, lang_param: &str) -> Result<StatusPage, String> {
        let config = self.config.get();
        let snapshot = self.engine.snapshot();
        let lang = self.templates.language(lang).to_string();
        let key = (lang.clone(), lang_param.to_string());
        let mut cached = self
            .status_cache
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        if let Some(c) = cached.get(&key).filter(|c| {
            Arc::ptr_eq(&c.snapshot, &snapshot)
                && Arc::ptr_eq(&c.config, &config)
                && now
                    .duration_since(c.made)
                    .is_ok_and(|age| age < Self::STATUS_FRESH)
        }) {
            return Ok(c.page.clone());
        }
        let view = View {
            now,
            ..self.view(&config, &lang, lang_param)
        };
        let ctx =
            status_context(&view, &snapshot.statuses, &self.store).map_err(|e| e.to_string())?;
        let body: Arc<str> = self.templates.page("status", &lang, &ctx)?.into();
        let made = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let previous = cached.get(&key).map(|c| c.page.etag.clone());
        let mut etag: Arc<str> = format!("\"{made:x}-{:x}-{lang}\"", snapshot.decisions).into();
        if previous.as_ref() == Some(&etag) {
            // A clock standing still (tests, a paused VM) must still give a new tag.
            etag = format!(
                "\"{made:x}-{:x}-{lang}-{}\"",
                snapshot.decisions,
                body.len()
            )
            .into();
        }
        let page = StatusPage { body, etag };
        cached.insert(
            key,
            CachedStatus {
                snapshot,
                config,
                made: now,
                page: page.clone(),
            },
        );
        Ok(page)
    }

    /// What a page is rendered for, now.
    fn view<'a>(&self, config: &'a Config, lang: &'a str, lang_param: &str) -> View<'a> {
        View {
            config,
            lang,
            lang_param: lang_param.to_string(),
            now: self.clock.now(),
        }
    }

    /// The page of incident `id` in `lang`: None when there is none, or it is not public.
    pub fn incident_page(
        &self,
        id: i64,
        lang: &str,
        lang_param: &str,
    ) -> Result<Option<String>, String> {
        let config = self.config.get();
        let Some(inc) = self.store.lock().incident(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let lang = self.templates.language(lang);
        let view = self.view(&config, lang, lang_param);
        let snapshot = self.engine.snapshot();
        match incident_context(&view, &inc, &snapshot.statuses) {
            Some(ctx) => self.templates.page("incident", lang, &ctx).map(Some),
            None => Ok(None),
        }
    }

    /// The history page ending with month `last` (the current one when None).
    pub fn history_page(
        &self,
        last: Option<Month>,
        lang: &str,
        lang_param: &str,
    ) -> Result<String, String> {
        let config = self.config.get();
        let lang = self.templates.language(lang);
        let view = self.view(&config, lang, lang_param);
        let snapshot = self.engine.snapshot();
        let ctx = history_context(&view, &self.store, &snapshot.statuses, last)
            .map_err(|e| e.to_string())?;
        self.templates.page("history", lang, &ctx)
    }

    /// The placeholder page of `incident`.
    pub fn placeholder(
        &self,
        config: &Config,
        incident: &IncidentRecord,
        lang: &str,
    ) -> Result<String, String> {
        placeholder(&self.templates, config, incident, lang, self.clock.now())
    }
}

/// The placeholder page of `incident` at `now`.
pub fn placeholder(
    templates: &Templates,
    config: &Config,
    incident: &IncidentRecord,
    lang: &str,
    now: SystemTime,
) -> Result<String, String> {
    {
        let lang = templates.language(lang);
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
            status_url => format!("{}/status?lang={lang}", config.public_url),
            incident_url => format!("{}/incidents/{}?lang={lang}", config.public_url, incident.id),
            update => incident.latest_update().map(|u| super::templates::update_context(u, lang, &config.page_language)),
            generated => local_time(now, tz, lang),
            timezone => tz,
        };
        templates.page("placeholder", lang, &ctx)
    }
}

/// Keeps the files in `placeholder_dir` matching the store.
#[derive(Clone)]
pub struct Pages {
    pub source: PageSource,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<Notify>,
    pub http: reqwest::Client,
    /// A standby of a cluster: it keeps its own copy of the placeholders from the store
    /// (its web server reads them), and leaves the status file and the page webhook to
    /// the leader, which has the engine's statuses and alone calls out.
    pub files_only: bool,
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
            let sdir = dir.join(&inc.service);
            public_dir(&sdir)?;
            write_if_changed(&sdir.join(MARKER), b"")?;
            // `index.html` in the page's language, and `index.<lang>.html` in each one
            // (the nginx snippet picks by Accept-Language); the per-language files first,
            // so that a web server choosing one never finds it missing once the page is up.
            let mut files: Vec<(String, String)> = self
                .source
                .templates
                .languages()
                .iter()
                .map(|l| (format!("index.{l}.html"), l.clone()))
                .collect();
            files.push(("index.html".into(), config.page_language.clone()));
            for (file, lang) in files {
                let html = self.source.placeholder(&config, inc, &lang)?;
                let page = sdir.join(&file);
                let new = !page.exists();
                // Its times move on each minute: a change is logged, a refresh is not.
                if write_if_changed(&page, html.as_bytes())? {
                    if new && file == "index.html" {
                        tracing::info!(service = %inc.service, path = %page.display(), "placeholder published");
                    } else {
                        tracing::debug!(service = %inc.service, path = %page.display(), "placeholder refreshed");
                    }
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
                // `index.html` first: the page is gone the moment it is.
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
                let pages = std::fs::read_dir(&p)
                    .map_err(|e| format!("cannot list {}: {e}", p.display()))?;
                for f in pages.flatten() {
                    let n = f.file_name().to_string_lossy().to_string();
                    if n.starts_with("index.") && n.ends_with(".html") {
                        std::fs::remove_file(f.path())
                            .map_err(|e| format!("cannot remove {}: {e}", f.path().display()))?;
                    }
                }
                let _ = std::fs::remove_file(p.join(MARKER));
                let _ = std::fs::remove_dir(&p);
            }
        }
        self.metrics.placeholder_pages(wanted.len());
        if self.files_only {
            return Ok(());
        }
        // The status page as files too (nginx serves them while tocsin is down): in the
        // page's language, and in each one as `status.<lang>.html`.
        let mut langs: Vec<(String, String)> = self
            .source
            .templates
            .languages()
            .iter()
            .map(|l| (format!("status.{l}.html"), l.clone()))
            .collect();
        langs.push((STATUS_FILE.into(), config.page_language.clone()));
        for (file, lang) in langs {
            let source = self.source.clone();
            let status = tokio::task::spawn_blocking(move || source.status_page(&lang, ""))
                .await
                .map_err(|e| format!("the status page's rendering failed: {e}"))??;
            write_if_changed(&dir.join(file), status.body.as_bytes())?;
        }
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
