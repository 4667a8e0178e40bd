//! The running tocsin: builds every task from injected dependencies (clock, store, mail
//! transports, environment, probe runner) and runs them under one cancellation token.
//!
//! The spine, in the order a probe outcome travels:
//!
//! ```text
//! scheduler ─► recorder (metrics, latest results) ─► engine task (owns the states;
//!   step() per service; decisions and outbox in one store transaction)
//!        │ Handle in (staff commands, reloads)      │ Snapshot out (watch channel)
//!        ▼                                           ▼
//!   web API, signed links                 dispatcher (staff mail, campaign planning),
//!                                         webhooks, campaign sender, pages,
//!                                         autoresponder, hotline, maintenance planner
//! ```
//!
//! `main.rs` only reads the command line and the signals; tests build the same `App`
//! with their own clock, store and transports.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::campaign::Composer;
use crate::campaign::planner::Campaigns;
use crate::campaign::sender::Sender;
use crate::clock::{Clock, SteadyClock};
use crate::config::{self, Config, LiveConfig};
use crate::engine::{Engine, Handle, Link};
use crate::heartbeat::Heartbeats;
use crate::links::Signer;
use crate::metrics::Metrics;
use crate::notify::Follow;
use crate::notify::autoreply::Autoresponder;
use crate::notify::dispatch::Dispatcher;
use crate::notify::hotline::Hotline;
use crate::notify::mail::{MailError, Mailer};
use crate::notify::maintenance::Planner;
use crate::notify::pages::{PageSource, Pages};
use crate::notify::staff::StaffMail;
use crate::notify::templates::Templates;
use crate::notify::webhook::Webhooks;
use crate::scheduler::{self, Latest, LiveRunner, Report, Runner, Scheduler};
use crate::store::{PgOptions, SharedStore, SqlStore, StoreError};
use crate::web::{self, AppState};

/// How long a task that panicked waits before it is started again, so a task that panics
/// at once does not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Why tocsin cannot start, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Templates that do not compile, or an audience that cannot be read.
    #[error("templates or audiences are not usable (run `tocsin check`):\n{0}")]
    Templates(String),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The store cannot be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mail transport cannot be set up (a missing secret, a bad `from`).
    #[error(transparent)]
    Mail(#[from] MailError),
    /// Another part cannot be set up (autoresponder login, TLS, webhook secrets).
    #[error("{0}")]
    Setup(String),
    /// The HTTP server failed while serving.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// What the App is built from. `production` gives what `tocsin run` uses.
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub store: SharedStore,
    /// Staff mail.
    pub staff_mail: Arc<Mailer>,
    /// Customer campaigns: a transport (and connection pool) of their own, so staff mail
    /// never waits behind thousands of customer messages.
    pub campaign_mail: Arc<Mailer>,
    /// A dry run: incident webhooks are kept here instead of being POSTed (a drill).
    pub webhooks_kept: Option<Arc<crate::notify::webhook::Posted>>,
    /// A dry run: chat and paging channel messages are kept here instead of being sent.
    pub channels_kept: Option<Arc<crate::notify::channels::Posted>>,
    /// Heartbeat tokens and pings (the runner decides heartbeat probes from them).
    pub heartbeats: Arc<Heartbeats>,
    /// In a cluster, this instance's lease: nothing is sent unless it holds. None alone.
    pub leadership: Option<Arc<crate::lease::Leadership>>,
    /// In a cluster that votes (`cluster.locations`): this location's connections for
    /// its votes and the tally. The engine then decides from the tally.
    pub votes: Option<crate::votes::Connections>,
    pub runner: Arc<dyn Runner>,
}

/// The store the config names: PostgreSQL with `store:`, else the SQLite file in
/// `data_dir`.
pub fn open_store(config: &Config) -> Result<SqlStore, StoreError> {
    match &config.store {
        None => SqlStore::open_sqlite(&config.data_dir.join("tocsin.db")),
        Some(pg) => SqlStore::open_postgres(&pg_options(pg)),
    }
}

/// How to reach the PostgreSQL store.
pub fn pg_options(pg: &crate::config::PgStore) -> PgOptions {
    PgOptions {
        url: pg.url.clone(),
        password: pg.password.as_ref().map(|p| p.expose().to_string()),
        password_env: pg.password_env.clone(),
        timeout: std::time::Duration::from_secs(15),
    }
}

impl Deps {
    /// The system clock, the store (the SQLite file in `data_dir`, or PostgreSQL), the
    /// transports of `mail` with the secrets the config read, and live probes.
    pub fn production(config: &Config) -> Result<Deps, AppError> {
        Deps::production_with(config, open_store(config)?, None)
    }

    /// [`Deps::production`] on `store`, for the leader of a cluster (`leadership`).
    pub fn production_with(
        config: &Config,
        store: SqlStore,
        leadership: Option<Arc<crate::lease::Leadership>>,
    ) -> Result<Deps, AppError> {
        let store = SharedStore::new(store);
        // Steady: a step of the system clock is no outage (see SteadyClock).
        let clock: Arc<dyn Clock> = Arc::new(SteadyClock::new());
        let heartbeats = Heartbeats::new(store.clone(), clock.clone());
        Ok(Deps {
            clock,
            store,
            staff_mail: Arc::new(Mailer::new(&config.mail, &config.data_dir)?),
            campaign_mail: Arc::new(Mailer::new(&config.mail, &config.data_dir)?),
            webhooks_kept: None,
            channels_kept: None,
            runner: Arc::new(heartbeats.runner(LiveRunner::default())),
            leadership,
            votes: None,
            heartbeats,
        })
    }
}

/// Asks a running App to read its config file again (SIGHUP in `main.rs`).
#[derive(Clone, Default)]
pub struct Reload(Arc<Notify>);

impl Reload {
    pub fn reload(&self) {
        self.0.notify_one();
    }
}

/// A built tocsin, ready to run.
pub struct App {
    path: PathBuf,
    config: LiveConfig,
    deps: Deps,
    metrics: Arc<Metrics>,
    latest: Arc<Latest>,
    listener: tokio::net::TcpListener,
    /// `internal_listen`, when configured.
    internal: Option<tokio::net::TcpListener>,
    templates: Arc<Templates>,
    signer: Arc<Signer>,
    link: Link,
    reload: Reload,
    /// Woken by the API when a maintenance window is added or cancelled.
    maintenance_ready: Arc<Notify>,
    sieve: Option<crate::notify::autoreply::Credentials>,
    sieve_tls: Arc<rustls::ClientConfig>,
    hooks_http: reqwest::Client,
}

impl App {
    /// Checks everything that can refuse to start before any probe runs, binds `listen`
    /// and reads what the store holds (the link key, the maintenance windows added through
    /// the API). `path` is the config file, read again on reload.
    pub async fn build(config: Config, path: &Path, deps: Deps) -> Result<App, AppError> {
        let metrics = Arc::new(Metrics::new());
        metrics.config_loaded(true, deps.clock.now());
        // Alone, an instance leads; in a cluster, the runner sets the lease's token.
        metrics.leadership(true, 0);
        let found = crate::campaign::preflight(&config);
        for w in &found.warnings {
            tracing::warn!("{w}");
        }
        for e in &found.rows {
            tracing::warn!("{e}");
        }
        for e in &found.codes {
            tracing::error!("{e}; this code is not given out");
        }
        if !found.templates.is_empty() {
            let text: Vec<String> = found.templates.iter().map(|e| e.to_string()).collect();
            return Err(AppError::Templates(text.join("\n")));
        }
        let templates = Arc::new(
            found
                .loaded
                .ok_or_else(|| AppError::Templates("templates did not load".into()))?,
        );
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Listen {
                addr: config.listen,
                source,
            })?;
        let internal = match config.internal_listen {
            None => None,
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| AppError::Listen { addr, source })?,
            ),
        };
        let signer = Arc::new(Signer::new(&deps.store.lock().link_key()?));
        // Maintenance windows added through the API join those of the file.
        let windows = deps.store.lock().windows(deps.clock.now())?;
        let config = config.with_api_windows(windows);
        let sieve = match &config.autoresponder {
            Some(a) => Some(crate::notify::autoreply::Credentials::of(a).map_err(AppError::Setup)?),
            None => None,
        };
        let sieve_tls = crate::notify::autoreply::tls_config(config.autoresponder.as_ref())
            .map_err(AppError::Setup)?;
        crate::notify::webhook::check_secrets(&config).map_err(AppError::Setup)?;
        crate::notify::channels::check_secrets(&config).map_err(AppError::Setup)?;
        // One client for tocsin's outgoing webhooks (page publisher and incident receivers).
        let hooks_http = reqwest::Client::builder()
            .use_preconfigured_tls(
                crate::probe::tls::client_config_with_roots()
                    .map_err(|e| AppError::Setup(format!("cannot set up TLS for webhooks: {e}")))?,
            )
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::Setup(format!("cannot build the webhook client: {e}")))?;
        Ok(App {
            path: path.to_path_buf(),
            config: LiveConfig::new(config),
            deps,
            metrics,
            latest: Arc::new(Latest::default()),
            listener,
            internal,
            templates,
            signer,
            link: Link::new(),
            reload: Reload::default(),
            maintenance_ready: Arc::new(Notify::new()),
            sieve,
            sieve_tls,
            hooks_http,
        })
    }

    /// The address the HTTP endpoints are served on (a test binds port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The engine's handle: what the API uses, and what a test drives.
    pub fn engine(&self) -> Handle {
        self.link.handle()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Asks the running App to read its config file again.
    pub fn reloader(&self) -> Reload {
        self.reload.clone()
    }

    /// Runs every task until `cancel` fires, then stops them in order: no new probe run
    /// starts and runs in flight finish; every result that came in is decided and stored;
    /// then the notifiers stop (the item in hand finished, the rest left in the outbox for
    /// the next start) and the HTTP server drains.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), AppError> {
        let App {
            path,
            config,
            deps,
            metrics,
            latest,
            listener,
            internal,
            templates,
            signer,
            link,
            reload,
            maintenance_ready,
            sieve,
            sieve_tls,
            hooks_http,
        } = self;
        let clock = deps.clock.clone();
        let store = deps.store.clone();
        let handle = link.handle();
        let current = config.get();

        // Probe reports: scheduler → recorder → engine; in a cluster that votes,
        // scheduler → recorder → this location's votes, and the tally → engine.
        let (tx, rx) = mpsc::channel::<Report>(1024);
        let (engine_tx, engine_rx) = mpsc::channel::<Report>(1024);
        let mut front =
            Supervisor::new(metrics.clone()).telling(store.clone(), config.clone(), clock.clone());
        let rx = Arc::new(Mutex::new(rx));
        let board = Arc::new(crate::votes::Board::default());
        let recorded = match &deps.votes {
            None => engine_tx.clone(),
            Some(c) => {
                let (votes_tx, votes_rx) = mpsc::channel::<Report>(1024);
                let votes_rx = Arc::new(Mutex::new(votes_rx));
                let (c, metrics, engine_tx, stop) = (
                    c.clone(),
                    metrics.clone(),
                    engine_tx.clone(),
                    cancel.clone(),
                );
                let canaries = crate::votes::canaries_at(&current, &c.location);
                front.spawn("votes", move || {
                    let writer = crate::votes::Writer {
                        location: c.location.clone(),
                        store: c.writer.clone(),
                        metrics: metrics.clone(),
                        canaries,
                        passthrough: Some(engine_tx.clone()),
                    };
                    let (rx, stop) = (votes_rx.clone(), stop.clone());
                    async move {
                        let mut rx = rx.lock().await;
                        writer.run(&mut rx, stop).await
                    }
                });
                votes_tx
            }
        };
        if let Some(c) = &deps.votes {
            let tallier = (
                config.clone(),
                c.reader.clone(),
                store.clone(),
                clock.clone(),
                engine_tx.clone(),
                board.clone(),
                metrics.clone(),
                cancel.clone(),
            );
            front.spawn("tally", move || {
                let (config, votes, store, clock, engine, board, metrics, stop) = tallier.clone();
                let t = crate::votes::Tallier {
                    config,
                    votes,
                    store,
                    clock,
                    engine,
                    board,
                    metrics,
                };
                t.run(stop)
            });
        }
        {
            let (metrics, latest) = (metrics.clone(), latest.clone());
            front.spawn("recorder", move || {
                let (rx, metrics, latest, forward) = (
                    rx.clone(),
                    metrics.clone(),
                    latest.clone(),
                    recorded.clone(),
                );
                async move {
                    let mut rx = rx.lock().await;
                    scheduler::record(&mut rx, metrics, latest, Some(forward)).await
                }
            });
        }
        let drain = CancellationToken::new();
        {
            let engine_rx = Arc::new(Mutex::new(engine_rx));
            let (config, store, clock, link, metrics, drain) = (
                config.clone(),
                store.clone(),
                clock.clone(),
                link.clone(),
                metrics.clone(),
                drain.clone(),
            );
            front.spawn("engine", move || {
                let current = config.get();
                let (engine_rx, store, clock, link, metrics, drain) = (
                    engine_rx.clone(),
                    store.clone(),
                    clock.clone(),
                    link.clone(),
                    metrics.clone(),
                    drain.clone(),
                );
                async move {
                    // Resumes from the store, as after a restart of the process.
                    let engine = loop {
                        match Engine::attach(&current, store.clone(), clock.clone(), link.clone()) {
                            Ok(e) => break e,
                            Err(e) => {
                                tracing::error!(error = %e, "incident engine: cannot read the store; trying again");
                                tokio::select! {
                                    _ = drain.cancelled() => return,
                                    _ = tokio::time::sleep(RESTART_DELAY) => {}
                                }
                            }
                        }
                    };
                    let mut reports = engine_rx.lock().await;
                    engine.run(&mut reports, metrics, drain).await
                }
            });
        }

        // The followers of the engine, each carrying out one kind of work.
        let stop = CancellationToken::new();
        let mut back =
            Supervisor::new(metrics.clone()).telling(store.clone(), config.clone(), clock.clone());
        let campaign_ready = Arc::new(Notify::new());
        let composer = Arc::new(Composer {
            templates: templates.clone(),
            signer: signer.clone(),
            domain: deps.campaign_mail.from_domain(),
        });
        let page_source = PageSource {
            engine: handle.clone(),
            store: store.clone(),
            templates: templates.clone(),
            config: config.clone(),
            clock: clock.clone(),
            status_cache: Default::default(),
        };
        let pages = Pages {
            source: page_source.clone(),
            metrics: metrics.clone(),
            ready: Arc::new(Notify::new()),
            http: hooks_http.clone(),
            files_only: false,
        };
        // The notifiers the dispatcher hands each decision to.
        let staff_mail = StaffMail {
            store: store.clone(),
            mailer: deps.staff_mail.clone(),
            config: config.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            signer: signer.clone(),
            engine: Some(handle.subscribe()),
        };
        let campaigns = Campaigns {
            store: store.clone(),
            config: config.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            staff_mail: deps.staff_mail.clone(),
            campaign_ready: campaign_ready.clone(),
            pages_ready: pages.ready.clone(),
        };
        let webhooks = Webhooks {
            config: config.clone(),
            metrics: metrics.clone(),
            http: hooks_http.clone(),
            record: deps.webhooks_kept.clone(),
        };
        let channels = crate::notify::channels::Channels {
            store: store.clone(),
            config: config.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            signer: signer.clone(),
            http: hooks_http,
            record: deps.channels_kept.clone(),
        };
        let dispatcher = Dispatcher {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            engine: handle.subscribe(),
            notifiers: vec![
                Arc::new(campaigns),
                Arc::new(staff_mail),
                Arc::new(webhooks),
                Arc::new(channels),
            ],
            leadership: deps.leadership.clone(),
        };
        let sender = Sender {
            store: store.clone(),
            mailer: deps.campaign_mail.clone(),
            composer: composer.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            ready: campaign_ready.clone(),
            engine: handle.clone(),
            leadership: deps.leadership.clone(),
        };
        let follow = Follow {
            store: store.clone(),
            templates: templates.clone(),
            config: config.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            changes: handle.subscribe(),
        };
        let autoresponder = Autoresponder {
            follow: follow.clone(),
            credentials: sieve,
            tls: sieve_tls,
            failures: Default::default(),
        };
        let hotline = Hotline {
            follow,
            retry: None,
            files_only: false,
        };
        let planner = Planner {
            store: store.clone(),
            engine: handle.clone(),
            config: config.clone(),
            clock: clock.clone(),
            ready: maintenance_ready.clone(),
            campaign_ready: campaign_ready.clone(),
        };
        back.spawn_each("dispatcher", &stop, dispatcher, Dispatcher::run);
        back.spawn_each("campaigns", &stop, sender, Sender::run);
        back.spawn_each("pages", &stop, pages, Pages::run);
        back.spawn_each("autoresponder", &stop, autoresponder, Autoresponder::run);
        back.spawn_each("hotline", &stop, hotline, Hotline::run);
        back.spawn_each("maintenance", &stop, planner, Planner::run);

        // Tokens before the first run: a heartbeat probe reads its record.
        if let Err(e) = deps.heartbeats.sync(&current) {
            return Err(AppError::Setup(format!(
                "cannot keep the heartbeat tokens: {e}"
            )));
        }
        let mut sched = Scheduler::new(
            tx,
            metrics.clone(),
            clock.clone(),
            deps.runner.clone(),
            cancel.child_token(),
        );
        if let Some(c) = &deps.votes {
            let me = c.location.clone();
            sched = sched.only(move |p| p.runs_at(&me));
        }
        let added = sched.apply(&current).added.len();
        tracing::info!(
            probes = added,
            services = current.services.len(),
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            config = %path.display(),
            db = %current.data_dir.join("tocsin.db").display(),
            "tocsin started"
        );

        let state = web_state(
            &current,
            &config,
            &deps,
            &metrics,
            &latest,
            &handle,
            &signer,
            page_source,
            composer,
            maintenance_ready,
            board.clone(),
        );
        let server_stop = cancel.clone();
        let limits = web::serve::Limits::for_open_files(
            rlimit::Resource::NOFILE
                .get()
                .map(|(soft, _)| soft)
                .unwrap_or(1024),
        );
        let server = tokio::spawn(async move {
            match internal {
                None => web::serve::serve(listener, web::app(state), limits, server_stop).await,
                Some(inside) => {
                    let public = web::router(state.clone(), web::Side::Public);
                    let private = web::router(state, web::Side::Internal);
                    let (a, b) = tokio::join!(
                        web::serve::serve(listener, public, limits, server_stop.clone()),
                        web::serve::serve(inside, private, limits, server_stop),
                    );
                    a.and(b)
                }
            }
        });

        let mut reloading = Reloading {
            path,
            config,
            metrics: metrics.clone(),
            latest,
            engine: handle,
            clock,
            store,
            heartbeats: deps.heartbeats.clone(),
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = reload.0.notified() => reloading.reload(&mut sched).await,
            }
        }

        tracing::info!("shutting down: finishing probes in flight");
        sched.stop().await;
        // The recorder ends when the last probe task is gone; then the engine decides
        // what is still queued. Only then do the followers stop.
        front.wait_for("recorder").await;
        drain.cancel();
        front.join_all().await;
        stop.cancel();
        back.join_all().await;
        let served = server
            .await
            .map_err(|e| AppError::Setup(format!("HTTP server task failed: {e}")))?;
        served.map_err(AppError::Serve)?;
        tracing::info!("stopped");
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn web_state(
    current: &Config,
    config: &LiveConfig,
    deps: &Deps,
    metrics: &Arc<Metrics>,
    latest: &Arc<Latest>,
    handle: &Handle,
    signer: &Arc<Signer>,
    pages: PageSource,
    composer: Arc<Composer>,
    maintenance_ready: Arc<Notify>,
    board: Arc<crate::votes::Board>,
) -> AppState {
    let token_env = current.api_token_env.clone();
    let token = current
        .api_token
        .clone()
        .filter(|t| !t.expose().trim().is_empty());
    if token.is_none() {
        tracing::warn!(variable = %token_env, "the incident API is disabled until this environment variable holds a token");
    }
    let incidents = crate::web::api::IncidentApi {
        engine: handle.clone(),
        store: deps.store.clone(),
        token,
        token_env,
        clock: deps.clock.clone(),
        signer: signer.clone(),
        config: config.clone(),
        languages: Arc::new(pages.templates.languages().iter().cloned().collect()),
    };
    AppState {
        config: config.clone(),
        metrics: metrics.clone(),
        latest: latest.clone(),
        clock: deps.clock.clone(),
        public: Some(crate::web::public::Public {
            pages,
            signer: signer.clone(),
            store: deps.store.clone(),
            clock: deps.clock.clone(),
            mailer: Some(deps.campaign_mail.clone()),
        }),
        campaigns: Some(crate::web::campaigns::CampaignApi {
            api: incidents.clone(),
            composer,
            mailer: deps.campaign_mail.clone(),
            config: config.clone(),
        }),
        maintenance: Some(crate::web::maintenance::MaintenanceApi {
            api: incidents.clone(),
            config: config.clone(),
            ready: maintenance_ready,
        }),
        incidents: Some(incidents),
        heartbeats: Some(deps.heartbeats.clone()),
        votes: deps.votes.as_ref().map(|_| board),
    }
}

/// What a reload updates.
struct Reloading {
    path: PathBuf,
    config: LiveConfig,
    metrics: Arc<Metrics>,
    latest: Arc<Latest>,
    engine: Handle,
    clock: Arc<dyn Clock>,
    /// Holds the maintenance windows added through the API, kept across reloads.
    store: SharedStore,
    heartbeats: Arc<Heartbeats>,
}

impl Reloading {
    /// Reads and checks the file again. A bad file is refused with every error logged, and
    /// the previous config keeps running.
    async fn reload(&mut self, sched: &mut Scheduler) {
        let new = match config::load(&self.path) {
            Ok(new) => new,
            Err(errors) => {
                self.metrics.config_loaded(false, self.clock.now());
                for e in &errors.0 {
                    tracing::error!(error = %e, "configuration refused; the previous configuration keeps running");
                }
                return;
            }
        };
        let stored = self.store.lock().windows(self.clock.now());
        let windows = match stored {
            Ok(w) => w,
            Err(e) => {
                self.metrics.config_loaded(false, self.clock.now());
                tracing::error!(error = %e, "configuration refused: cannot read the maintenance windows; the previous configuration keeps running");
                return;
            }
        };
        let new = new.with_api_windows(windows);
        let found = crate::campaign::preflight(&new);
        if !found.templates.is_empty() {
            self.metrics.config_loaded(false, self.clock.now());
            for e in &found.templates {
                tracing::error!(error = %e, "configuration refused; the previous configuration keeps running");
            }
            return;
        }
        let old = self.config.get();
        for (what, changed) in [
            ("listen", new.listen != old.listen),
            ("data_dir", new.data_dir != old.data_dir),
            // The login is taken at start-up.
            (
                "autoresponder",
                new.autoresponder
                    .as_ref()
                    .map(|a| (&a.user_env, &a.password_env, &a.user, &a.password))
                    != old
                        .autoresponder
                        .as_ref()
                        .map(|a| (&a.user_env, &a.password_env, &a.user, &a.password)),
            ),
        ] {
            if changed {
                tracing::warn!(
                    key = what,
                    "this key's change takes effect at the next restart"
                );
            }
        }
        if let Err(e) = self.heartbeats.sync(&new) {
            self.metrics.config_loaded(false, self.clock.now());
            tracing::error!(error = %e, "configuration refused: cannot keep the heartbeat tokens; the previous configuration keeps running");
            return;
        }
        let changes = sched.apply(&new);
        for (service, probe) in &changes.removed {
            self.metrics.forget(service, probe);
            self.latest.forget(service, probe);
        }
        let new = Arc::new(new);
        self.engine.reconfigure(new.clone()).await;
        self.metrics.config_loaded(true, self.clock.now());
        tracing::info!(added = ?changes.added, changed = ?changes.changed, removed = changes.removed.len(), kept = changes.kept, "configuration reloaded");
        self.config.set(new);
    }
}

/// Runs tasks and starts again one that panicked: logged, counted in
/// `tocsin_task_restarts_total{task}`, never silently lost.
struct Supervisor {
    set: JoinSet<&'static str>,
    metrics: Arc<Metrics>,
    /// Tells staff of a restart (once per task and run), when set.
    tell: Option<Tell>,
}

/// Tells staff that `task` restarted after saying `what`.
type Tell = Arc<dyn Fn(&'static str, &str) + Send + Sync>;

impl Supervisor {
    fn new(metrics: Arc<Metrics>) -> Supervisor {
        Supervisor {
            set: JoinSet::new(),
            metrics,
            tell: None,
        }
    }

    /// Staff hear of the first restart of each task: a task that dies and comes back
    /// has lost what it was doing, which may need a look (a page left up, a hook).
    fn telling(mut self, store: SharedStore, config: LiveConfig, clock: Arc<dyn Clock>) -> Self {
        let told = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::<
            &'static str,
        >::new()));
        self.tell = Some(Arc::new(move |task, what| {
            if !told.lock().unwrap_or_else(|e| e.into_inner()).insert(task) {
                return;
            }
            let c = config.get();
            let to = c.first_responders();
            if to.is_empty() {
                return;
            }
            let action = crate::incident::Action::MailStaff {
                id: None,
                kind: crate::incident::StaffMailKind::TaskRestarted,
                level: 0,
                to,
            };
            let context = crate::store::Context {
                canaries: vec![format!("{task}: {what}")],
                ..Default::default()
            };
            if let Err(e) = store.lock().enqueue(&action, &context, clock.now()) {
                tracing::error!(error = %e, task, "cannot tell staff of the restart");
            }
        }));
        self
    }

    /// Runs `make()` until it returns; a panic starts it again after a short delay.
    fn spawn<F, Fut>(&mut self, task: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let metrics = self.metrics.clone();
        let tell = self.tell.clone();
        // Every supervised task has its series from the start, at zero.
        metrics.task_started(task);
        self.set.spawn(async move {
            loop {
                match tokio::spawn(make()).await {
                    Ok(()) => return task,
                    Err(e) if e.is_panic() => {
                        let payload = e.into_panic();
                        let what = payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "(no message)".into());
                        metrics.task_restarted(task);
                        tracing::error!(task, panic = %what, "task panicked; starting it again");
                        if let Some(tell) = &tell {
                            tell(task, &what);
                        }
                        tokio::time::sleep(RESTART_DELAY).await;
                    }
                    Err(_) => return task,
                }
            }
        });
    }

    /// A follower: a fresh copy of `template` runs `run` until `stop`.
    fn spawn_each<T, Fut>(
        &mut self,
        task: &'static str,
        stop: &CancellationToken,
        template: T,
        run: fn(T, CancellationToken) -> Fut,
    ) where
        T: Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = stop.clone();
        self.spawn(task, move || run(template.clone(), stop.clone()));
    }

    /// Waits until the task named `task` has ended (the others keep running).
    async fn wait_for(&mut self, task: &'static str) {
        while let Some(done) = self.set.join_next().await {
            match done {
                Ok(t) if t == task => return,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "a supervisor ended abnormally"),
            }
        }
    }

    async fn join_all(&mut self) {
        while let Some(done) = self.set.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a supervisor ended abnormally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A task that panics is started again and counted; one that returns is not.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_counted() {
        let metrics = Arc::new(Metrics::new());
        let mut sup = Supervisor::new(metrics.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        sup.spawn("flaky", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        });
        sup.join_all().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a clean end"
        );
        assert!(
            metrics
                .render()
                .contains("tocsin_task_restarts_total{task=\"flaky\"} 2"),
            "{}",
            metrics.render()
        );
    }

    /// Staff hear of a task's first restart, once however often it panics.
    #[tokio::test(start_paused = true)]
    async fn staff_hear_once_of_a_task_that_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::parse(
            "services:\n  - id: s\n    escalation: default\n    probes:\n      - { name: p, tcp: { address: \"127.0.0.1:9\" } }\nescalation:\n  default:\n    - { after: 0m, to: [oncall@example.com] }\n",
            &dir.path().join("probes.yaml"),
        )
        .unwrap();
        let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let mut sup = Supervisor::new(metrics).telling(store.clone(), LiveConfig::new(cfg), clock);
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        sup.spawn("pages", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("index out of range");
                }
            }
        });
        sup.join_all().await;
        let told = store.lock().decisions().unwrap();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(
            matches!(
                told[0].action,
                crate::incident::Action::MailStaff {
                    kind: crate::incident::StaffMailKind::TaskRestarted,
                    ..
                }
            ),
            "{:?}",
            told[0].action
        );
        let context = told[0].context.clone().unwrap();
        assert_eq!(context.canaries, ["pages: index out of range"]);
    }
}
