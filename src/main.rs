//! The `tocsin` command line: `run` (the default), `check`, `probe`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{self, Config};
use tocsin::metrics::Metrics;
use tocsin::probe;
use tocsin::scheduler::{self, Latest, LiveRunner, Scheduler};
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
            let n = config.probes().count();
            println!(
                "{}: valid ({} services, {n} probes)",
                cli.config.display(),
                config.services.len()
            );
            ExitCode::SUCCESS
        }
        Command::Probe { name } => runtime.block_on(probe_once(&config, &name)),
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    metrics.config_loaded(true, clock.now());
    let latest = Arc::new(Latest::default());
    let shutdown = CancellationToken::new();

    let (tx, rx) = mpsc::channel(1024);
    let recorder = tokio::spawn(scheduler::record(rx, metrics.clone(), latest.clone()));
    let mut sched = Scheduler::new(
        tx,
        metrics.clone(),
        clock.clone(),
        Arc::new(LiveRunner),
        shutdown.child_token(),
    );
    let listen = config.listen;
    // Bind first: a port in use stops tocsin before any probe runs.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let changes = sched.apply(&config);
    tracing::info!(probes = changes.added.len(), services = config.services.len(), %listen, config = %path.display(), "tocsin started");
    let shared = Arc::new(RwLock::new(Arc::new(config)));

    let state = AppState {
        config: shared.clone(),
        metrics: metrics.clone(),
        latest: latest.clone(),
        clock: clock.clone(),
    };
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, web::app(state))
            .with_graceful_shutdown(server_stop.cancelled_owned())
            .await
    });

    signals(
        path,
        &shutdown,
        &mut sched,
        &shared,
        &metrics,
        &latest,
        clock.as_ref(),
    )
    .await?;

    tracing::info!("shutting down: finishing probes in flight");
    sched.stop().await;
    let _ = recorder.await;
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGHUP (reload) until SIGTERM or Ctrl-C (shutdown).
async fn signals(
    path: &Path,
    shutdown: &CancellationToken,
    sched: &mut Scheduler,
    shared: &Arc<RwLock<Arc<Config>>>,
    metrics: &Metrics,
    latest: &Latest,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(path, sched, shared, metrics, latest, clock),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    shutdown.cancel();
    Ok(())
}

fn reload(
    path: &Path,
    sched: &mut Scheduler,
    shared: &Arc<RwLock<Arc<Config>>>,
    metrics: &Metrics,
    latest: &Latest,
    clock: &dyn Clock,
) {
    match config::load(path) {
        Err(errors) => {
            metrics.config_loaded(false, clock.now());
            for e in &errors.0 {
                tracing::error!(error = %e, "configuration refused; the previous configuration keeps running");
            }
        }
        Ok(new) => {
            let old = shared.read().unwrap_or_else(|e| e.into_inner()).clone();
            if new.listen != old.listen {
                tracing::warn!(old = %old.listen, new = %new.listen, "`listen` changes take effect at the next restart");
            }
            let changes = sched.apply(&new);
            for (service, probe) in &changes.removed {
                metrics.forget(service, probe);
                latest.forget(service, probe);
            }
            metrics.config_loaded(true, clock.now());
            tracing::info!(added = ?changes.added, changed = ?changes.changed, removed = changes.removed.len(), kept = changes.kept, "configuration reloaded");
            *shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        }
    }
}
