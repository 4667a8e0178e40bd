//! The `tocsin` command line: `run` (the default), `check`, `probe`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin::campaign::Composer;
use tocsin::campaign::sender::Sender;
use tocsin::cli::campaign::CampaignCmd;
use tocsin::cli::incident::IncidentCmd;
use tocsin::cli::maintenance::MaintenanceCmd;
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{self, Config};
use tocsin::engine::Engine;
use tocsin::links::Signer;
use tocsin::metrics::Metrics;
use tocsin::notify::dispatch::Dispatcher;
use tocsin::notify::mail::Mailer;
use tocsin::notify::pages::{PageSource, Pages};
use tocsin::probe;
use tocsin::probe::Secret;
use tocsin::scheduler::{self, Latest, LiveRunner, Scheduler};
use tocsin::store::SqliteStore;
use tocsin::web::api::IncidentApi;
use tocsin::web::campaigns::CampaignApi;
use tocsin::web::public::Public;
use tocsin::web::{self, AppState};

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Uptime monitor that carries out the outage communication plan"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "probes.yaml",
        env = "TOCSIN_CONFIG"
    )]
    config: PathBuf,
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Probe on schedule and serve /metrics, /healthz, /api and /probe (the default).
    Run,
    /// Validate the configuration: exit 0 when valid, 2 with FILE:LINE:COL errors when not.
    Check,
    /// Run one probe once and print its outcome: exit 0 on success, 1 on failure.
    Probe {
        /// The probe's name (or service/name).
        name: String,
    },
    /// Incidents of the running tocsin: list, show, ack, eta, resolve.
    Incident {
        #[command(subcommand)]
        cmd: IncidentCmd,
    },
    /// Customer campaigns of the running tocsin: list, status, preview.
    Campaign {
        #[command(subcommand)]
        cmd: CampaignCmd,
    },
    /// Planned maintenance of the running tocsin: list, add, cancel.
    Maintenance {
        #[command(subcommand)]
        cmd: MaintenanceCmd,
    },
    /// Rehearse a service's outage plan on simulated time: every action in order, when,
    /// to how many, with a sample of each message and page. Sends nothing.
    Drill {
        /// The service whose outage is rehearsed.
        #[arg(long)]
        service: String,
        /// On-call's estimate: recovery this long after the outage starts (e.g. 5h).
        #[arg(long, value_parser = humantime::parse_duration)]
        eta: Option<std::time::Duration>,
        /// When on-call sets the ETA, after the incident opens.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        eta_after: std::time::Duration,
        /// On-call acknowledges this long after the incident opens (default: nobody does).
        #[arg(long, value_parser = humantime::parse_duration)]
        ack_after: Option<std::time::Duration>,
        /// How long the outage lasts without an ETA (default: the customer threshold
        /// plus 90 minutes).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// When the outage starts, RFC 3339 (default: now).
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        start: Option<std::time::SystemTime>,
        /// Also write every sample in full (HTML pages, texts) to this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ask the running tocsin's /healthz: exit 0 while it serves, 1 otherwise (for
    /// container health checks).
    Health {
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            let n = errors.0.len();
            eprintln!(
                "{}: {n} error{} found; nothing was started",
                cli.config.display(),
                if n == 1 { "" } else { "s" }
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            let found = tocsin::campaign::preflight(&config);
            for w in &found.warnings {
                eprintln!("warning: {w}");
            }
            let errors: Vec<_> = found.templates.iter().chain(&found.rows).collect();
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{}: {} error{} found in templates or audiences",
                    cli.config.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let n = config.probes().count();
            println!(
                "{}: valid ({} services, {n} probes)",
                cli.config.display(),
                config.services.len()
            );
            ExitCode::SUCCESS
        }
        Command::Probe { name } => runtime.block_on(probe_once(&config, &name)),
        Command::Incident { cmd } => {
            outcome(runtime.block_on(tocsin::cli::incident::run(&config, cmd)))
        }
        Command::Campaign { cmd } => {
            outcome(runtime.block_on(tocsin::cli::campaign::run(&config, cmd)))
        }
        Command::Maintenance { cmd } => {
            outcome(runtime.block_on(tocsin::cli::maintenance::run(&config, cmd)))
        }
        Command::Drill {
            service,
            eta,
            eta_after,
            ack_after,
            duration,
            start,
            out,
        } => drill(
            &config,
            tocsin::drill::Scenario {
                service,
                start: start.unwrap_or_else(|| {
                    // Whole seconds, so the report's times read cleanly.
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs())
                }),
                eta,
                eta_after,
                ack_after,
                duration,
                out,
            },
        ),
        Command::Health { timeout } => {
            outcome(runtime.block_on(tocsin::cli::health::run(&config, timeout)))
        }
        Command::Run => match runtime.block_on(run(config, &cli.config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tocsin: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn probe_once(config: &Config, name: &str) -> ExitCode {
    let Some(p) = config.find_probe(name) else {
        let names: Vec<String> = config.probes().map(|p| p.name.clone()).collect();
        eprintln!(
            "no probe named `{name}` in {}; probes: {}",
            config.source.display(),
            names.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let o = probe::run(&p.check, p.timeout, SystemClock.now()).await;
    let verdict = match &o.reason {
        None => "ok".to_string(),
        Some(r) => format!("FAILED: {r}"),
    };
    println!(
        "{}/{} ({} {}): {verdict}",
        p.service,
        p.name,
        p.check.kind(),
        p.check.target()
    );
    println!("  duration   {:>9.3} ms", o.duration.as_secs_f64() * 1e3);
    for (phase, d) in &o.phases {
        println!("  {:<10} {:>9.3} ms", phase.as_str(), d.as_secs_f64() * 1e3);
    }
    let d = &o.details;
    if let Some(s) = d.http_status {
        println!(
            "  status     {s} ({})",
            d.http_version.as_deref().unwrap_or("?")
        );
    }
    if let Some(r) = d.redirects.filter(|r| *r > 0) {
        println!("  redirects  {r}");
    }
    if let Some(b) = d.body_bytes {
        println!("  body       {b} bytes read");
    }
    if let Some(t) = d.cert_not_after {
        let days = (t - unix_now()) as f64 / 86_400.0;
        println!(
            "  cert       expires {} ({days:.1} days)",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64)
            )
        );
    }
    if let Some(r) = d.dns_rcode {
        println!("  rcode      {r}, {} answers", d.dns_answers.unwrap_or(0));
    }
    if o.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// A command's answer on standard output (exit 0), or its refusal on standard error
/// (exit 1).
fn outcome(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tocsin: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn drill(config: &Config, sc: tocsin::drill::Scenario) -> ExitCode {
    if let Some(out) = &sc.out {
        if tocsin::drill::inside_published(config, out) {
            eprintln!(
                "tocsin: --out {} is inside a directory tocsin publishes; a drill writes nowhere customers can see: choose another directory",
                out.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let templates =
        match tocsin::notify::templates::Templates::load(config.campaigns.templates.as_deref()) {
            Ok(t) => std::sync::Arc::new(t),
            Err(issues) => {
                for i in issues {
                    eprintln!("{i}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    match tocsin::drill::run(config, templates, &sc) {
        Ok(d) => {
            print!("{}", tocsin::drill::report(config, &sc, &d));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tocsin: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What `run` keeps going, and what a reload updates.
struct Running {
    path: PathBuf,
    sched: Scheduler,
    config: Arc<RwLock<Arc<Config>>>,
    metrics: Arc<Metrics>,
    latest: Arc<Latest>,
    engine: Arc<Mutex<Engine>>,
    clock: Arc<dyn Clock>,
    /// Holds the maintenance windows added through the API, kept across reloads.
    store: Arc<Mutex<SqliteStore>>,
}

async fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(true, clock.now());
    let latest = Arc::new(Latest::default());
    let shutdown = CancellationToken::new();

    // Everything that can refuse to start does so before any probe runs.
    let found = tocsin::campaign::preflight(&config);
    for w in &found.warnings {
        tracing::warn!("{w}");
    }
    for e in &found.rows {
        tracing::error!("{e}; this row is left out of campaigns");
    }
    if !found.templates.is_empty() {
        let text: Vec<String> = found.templates.iter().map(|e| e.to_string()).collect();
        anyhow::bail!(
            "templates or audiences are not usable (run `tocsin check`):\n{}",
            text.join("\n")
        );
    }
    let templates = Arc::new(found.loaded.context("templates did not load")?);
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let db = config.data_dir.join("tocsin.db");
    let mut opened = SqliteStore::open(&db)?;
    let signer = Arc::new(Signer::new(&opened.link_key()?));
    // Maintenance windows added through the API join those of the file.
    let windows = opened.windows(clock.now())?;
    let config = config.with_api_windows(windows);
    let store = Arc::new(Mutex::new(opened));
    let mailer = Mailer::new(&config.mail, &config.data_dir, &|k| std::env::var(k).ok())?;
    // Campaigns get their own transport (and connection pool), so staff mail never
    // waits behind thousands of customer messages.
    let campaign_mailer = Arc::new(Mailer::new(&config.mail, &config.data_dir, &|k| {
        std::env::var(k).ok()
    })?);
    let sieve_credentials = match &config.autoresponder {
        Some(a) => Some(
            tocsin::notify::autoreply::Credentials::from_env(a, &|k| std::env::var(k).ok())
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        None => None,
    };
    let sieve_tls = tocsin::notify::autoreply::tls_config(config.autoresponder.as_ref())
        .map_err(|e| anyhow::anyhow!(e))?;
    tocsin::notify::webhook::check_secrets(&config, &|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!(e))?;
    let engine = Engine::new(&config, store.clone(), clock.clone())?;
    let changes = engine.changes.clone();
    let webhooks_ready = engine.webhooks_ready.clone();
    let outbox_ready = engine.outbox_ready.clone();
    let decided = engine.decided.clone();
    let canary_guard = engine.canary_guard.clone();
    let engine = Arc::new(Mutex::new(engine));

    let (tx, rx) = mpsc::channel(1024);
    let (engine_tx, engine_rx) = mpsc::channel(1024);
    let recorder = tokio::spawn(scheduler::record(
        rx,
        metrics.clone(),
        latest.clone(),
        Some(engine_tx),
    ));
    let engine_task = tokio::spawn(drive_engine(engine.clone(), engine_rx, metrics.clone()));
    let shared = Arc::new(RwLock::new(Arc::new(config)));
    let store_for_api = store.clone();
    let store_for_customer_side = store.clone();
    let store_for_reload = store.clone();
    let campaign_ready = Arc::new(tokio::sync::Notify::new());
    let campaign_ready_for_planner = campaign_ready.clone();
    let composer = Arc::new(Composer {
        templates: templates.clone(),
        signer: signer.clone(),
        domain: campaign_mailer.from_domain(),
    });
    let sender = Sender {
        store: store.clone(),
        mailer: campaign_mailer.clone(),
        composer: composer.clone(),
        config: shared.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        ready: campaign_ready.clone(),
        canary_down: canary_guard,
    };
    let page_source = PageSource {
        engine: engine.clone(),
        store: store.clone(),
        templates: templates.clone(),
        config: shared.clone(),
        clock: clock.clone(),
    };
    // One client for tocsin's outgoing webhooks (page publisher and incident receivers).
    let hooks_http = reqwest::Client::builder()
        .use_preconfigured_tls(
            tocsin::probe::tls::client_config_with_roots()
                .context("cannot set up TLS for webhooks")?,
        )
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the webhook client")?;
    let pages = Pages {
        source: page_source.clone(),
        metrics: metrics.clone(),
        ready: decided,
        http: hooks_http.clone(),
    };
    let pages_ready = pages.ready.clone();
    let dispatcher = Dispatcher {
        store,
        mailer,
        config: shared.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        ready: outbox_ready,
        signer: signer.clone(),
        campaign_ready,
        pages_ready,
    };
    let dispatch_stop = CancellationToken::new();
    let dispatch_task = tokio::spawn(dispatcher.run(dispatch_stop.clone()));
    let sender_task = tokio::spawn(sender.run(dispatch_stop.clone()));
    let pages_task = tokio::spawn(pages.run(dispatch_stop.clone()));
    let autoresponder = tocsin::notify::autoreply::Autoresponder {
        store: store_for_customer_side.clone(),
        templates: templates.clone(),
        config: shared.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        changes: changes.subscribe(),
        credentials: sieve_credentials,
        tls: sieve_tls,
        failures: Default::default(),
    };
    let autoresponder_task = tokio::spawn(autoresponder.run(dispatch_stop.clone()));
    let hotline = tocsin::notify::hotline::Hotline {
        store: store_for_customer_side.clone(),
        templates: templates.clone(),
        config: shared.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        changes: changes.subscribe(),
        retry: None,
    };
    let hotline_task = tokio::spawn(hotline.run(dispatch_stop.clone()));
    let webhooks = tocsin::notify::webhook::WebhookSender {
        store: store_for_customer_side.clone(),
        config: shared.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        ready: webhooks_ready,
        http: hooks_http,
    };
    let webhooks_task = tokio::spawn(webhooks.run(dispatch_stop.clone()));
    let maintenance_ready = Arc::new(tokio::sync::Notify::new());
    let planner = tocsin::notify::maintenance::Planner {
        store: store_for_customer_side.clone(),
        engine: engine.clone(),
        config: shared.clone(),
        clock: clock.clone(),
        ready: maintenance_ready.clone(),
        campaign_ready: campaign_ready_for_planner,
    };
    let planner_task = tokio::spawn(planner.run(dispatch_stop.clone()));

    let mut sched = Scheduler::new(
        tx,
        metrics.clone(),
        clock.clone(),
        Arc::new(LiveRunner),
        shutdown.child_token(),
    );
    let current = shared.read().unwrap_or_else(|e| e.into_inner()).clone();
    let changes = sched.apply(&current);
    tracing::info!(probes = changes.added.len(), services = current.services.len(), %listen, config = %path.display(), db = %db.display(), "tocsin started");

    let token_env = current.api_token_env.clone();
    let token = std::env::var(&token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(Secret);
    if token.is_none() {
        tracing::warn!(variable = %token_env, "the incident API is disabled until this environment variable holds a token");
    }
    let incidents = IncidentApi {
        engine: engine.clone(),
        store: store_for_api,
        token,
        token_env,
        clock: clock.clone(),
        signer,
    };
    let maintenance_api = incidents.clone();
    let public = Public {
        pages: page_source,
        signer: incidents.signer.clone(),
        store: incidents.store.clone(),
        clock: clock.clone(),
    };
    let campaigns = CampaignApi {
        api: incidents.clone(),
        composer,
        mailer: campaign_mailer,
        config: shared.clone(),
    };
    let state = AppState {
        config: shared.clone(),
        metrics: metrics.clone(),
        latest: latest.clone(),
        clock: clock.clone(),
        incidents: Some(incidents),
        campaigns: Some(campaigns),
        public: Some(public),
        maintenance: Some(tocsin::web::maintenance::MaintenanceApi {
            api: maintenance_api,
            config: shared.clone(),
            ready: maintenance_ready,
        }),
    };
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, web::app(state))
            .with_graceful_shutdown(server_stop.cancelled_owned())
            .await
    });

    let mut running = Running {
        path: path.to_path_buf(),
        sched,
        config: shared,
        metrics,
        latest,
        engine,
        clock,
        store: store_for_reload,
    };
    signals(&mut running).await?;
    shutdown.cancel();

    tracing::info!("shutting down: finishing probes in flight");
    running.sched.stop().await;
    // The recorder ends when the last probe task is gone, the engine when the recorder is;
    // every result that came in is decided and stored before the dispatcher stops.
    let _ = recorder.await;
    let _ = engine_task.await;
    dispatch_stop.cancel();
    let _ = dispatch_task.await;
    let _ = sender_task.await;
    let _ = pages_task.await;
    let _ = autoresponder_task.await;
    let _ = hotline_task.await;
    let _ = webhooks_task.await;
    let _ = planner_task.await;
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Feeds reports to the engine and ticks it every second, until the reports end.
async fn drive_engine(
    engine: Arc<Mutex<Engine>>,
    mut reports: mpsc::Receiver<scheduler::Report>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let result = tokio::select! {
            r = reports.recv() => match r {
                Some(report) => engine.lock().unwrap_or_else(|e| e.into_inner()).report(&report),
                None => return,
            },
            _ = tick.tick() => {
                let mut e = engine.lock().unwrap_or_else(|e| e.into_inner());
                e.export(&metrics);
                e.tick()
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "incident engine: the decision could not be stored and will be taken again");
        }
    }
}

/// Waits for SIGHUP (reload) until SIGTERM or Ctrl-C (shutdown).
async fn signals(running: &mut Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(running),
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn reload(r: &mut Running) {
    match config::load(&r.path) {
        Err(errors) => {
            r.metrics.config_loaded(false, r.clock.now());
            for e in &errors.0 {
                tracing::error!(error = %e, "configuration refused; the previous configuration keeps running");
            }
        }
        Ok(new) => {
            let stored = r
                .store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .windows(r.clock.now());
            let windows = match stored {
                Ok(w) => w,
                Err(e) => {
                    r.metrics.config_loaded(false, r.clock.now());
                    tracing::error!(error = %e, "configuration refused: cannot read the maintenance windows; the previous configuration keeps running");
                    return;
                }
            };
            let new = new.with_api_windows(windows);
            let found = tocsin::campaign::preflight(&new);
            if !found.templates.is_empty() {
                r.metrics.config_loaded(false, r.clock.now());
                for e in &found.templates {
                    tracing::error!(error = %e, "configuration refused; the previous configuration keeps running");
                }
                return;
            }
            let old = r.config.read().unwrap_or_else(|e| e.into_inner()).clone();
            for (what, changed) in [
                ("listen", new.listen != old.listen),
                ("data_dir", new.data_dir != old.data_dir),
                // The login is read from the environment at start-up.
                (
                    "autoresponder",
                    new.autoresponder
                        .as_ref()
                        .map(|a| (&a.user_env, &a.password_env))
                        != old
                            .autoresponder
                            .as_ref()
                            .map(|a| (&a.user_env, &a.password_env)),
                ),
            ] {
                if changed {
                    tracing::warn!(
                        key = what,
                        "this key's change takes effect at the next restart"
                    );
                }
            }
            let changes = r.sched.apply(&new);
            for (service, probe) in &changes.removed {
                r.metrics.forget(service, probe);
                r.latest.forget(service, probe);
            }
            r.engine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reconfigure(&new);
            r.metrics.config_loaded(true, r.clock.now());
            tracing::info!(added = ?changes.added, changed = ?changes.changed, removed = changes.removed.len(), kept = changes.kept, "configuration reloaded");
            *r.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        }
    }
}
