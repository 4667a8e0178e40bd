//! The `tocsin` command line: `run` (the default), `check`, `probe`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use tocsin::app::{App, Deps};
use tocsin::cli::campaign::CampaignCmd;
use tocsin::cli::heartbeat::HeartbeatCmd;
use tocsin::cli::incident::IncidentCmd;
use tocsin::cli::maintenance::MaintenanceCmd;
use tocsin::cli::oncall::OncallCmd;
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{self, Config};
use tocsin::probe;

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
    /// Bad audience rows are warnings (they are left out or mended, and everyone else is
    /// mailed), errors only with --strict.
    Check {
        /// Treat bad audience rows as errors (for a CRM export checked before upload).
        #[arg(long)]
        strict: bool,
    },
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
    /// On-call rotations of the running tocsin: who is on call, overrides.
    Oncall {
        #[command(subcommand)]
        cmd: OncallCmd,
    },
    /// Heartbeats (push monitors) of the running tocsin: list, with each one's ping URL.
    Heartbeat {
        #[command(subcommand)]
        cmd: HeartbeatCmd,
    },
    /// The store: move the SQLite file into PostgreSQL.
    Store {
        #[command(subcommand)]
        cmd: tocsin::cli::store::StoreCmd,
    },
    /// Rehearse a service's outage plan on simulated time: every action in order, when,
    /// to how many, with a sample of each message and page. Sends nothing.
    Drill {
        /// The service whose outage is rehearsed.
        #[arg(long)]
        service: String,
        /// On-call's estimate: recovery this long after the outage starts (e.g. 5h).
        #[arg(long, value_parser = tocsin::text::time::parse_duration)]
        eta: Option<std::time::Duration>,
        /// When on-call sets the ETA, after the incident opens.
        #[arg(long, default_value = "10m", value_parser = tocsin::text::time::parse_duration)]
        eta_after: std::time::Duration,
        /// On-call acknowledges this long after the incident opens (default: nobody does).
        #[arg(long, value_parser = tocsin::text::time::parse_duration)]
        ack_after: Option<std::time::Duration>,
        /// How long the outage lasts without an ETA (default: the customer threshold
        /// plus 90 minutes).
        #[arg(long, value_parser = tocsin::text::time::parse_duration)]
        duration: Option<std::time::Duration>,
        /// When the outage starts, RFC 3339 (default: now).
        #[arg(long, value_parser = tocsin::text::time::parse_time)]
        start: Option<std::time::SystemTime>,
        /// Also write every sample in full (HTML pages, texts) to this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ask the running tocsin's /healthz: exit 0 while it serves, 1 otherwise (for
    /// container health checks).
    Health {
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = tocsin::text::time::parse_duration)]
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
                "{}: {} found; nothing was started",
                cli.config.display(),
                tocsin::text::count(n as u64, "error")
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
        Command::Check { strict } => {
            let found = tocsin::campaign::preflight(&config);
            for w in &found.warnings {
                eprintln!("warning: {w}");
            }
            if !strict {
                // A bad row never stops the monitor: the unit runs `check` before start.
                for r in &found.rows {
                    eprintln!("warning: {r}");
                }
                if !found.rows.is_empty() {
                    eprintln!(
                        "warning: {} left out (everyone else is mailed; `check --strict` makes them errors)",
                        tocsin::text::count(found.rows.len() as u64, "audience row")
                    );
                }
            }
            let rows: &[_] = if strict { &found.rows } else { &[] };
            let errors: Vec<_> = found
                .templates
                .iter()
                .chain(&found.codes)
                .chain(rows)
                .collect();
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{}: {} found in templates or audiences",
                    cli.config.display(),
                    tocsin::text::count(errors.len() as u64, "error")
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            let n = config.probes().count();
            println!(
                "{}: valid ({}, {})",
                cli.config.display(),
                tocsin::text::count(config.services.len() as u64, "service"),
                tocsin::text::count(n as u64, "probe")
            );
            for c in config.channels.values() {
                let missing: Vec<String> = c
                    .vendor
                    .secrets()
                    .iter()
                    .filter(|s| s.value.is_none())
                    .map(|s| format!("${}", s.var))
                    .collect();
                println!(
                    "channel {}: {}{}",
                    c.target(),
                    c.vendor.redacted(),
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} not set: `tocsin run` refuses to start without it)",
                            missing.join(", ")
                        )
                    }
                );
            }
            let now = std::time::SystemTime::now();
            for r in config.rotations.values() {
                let on = r.on_call(&[], now);
                let next = r.next(&[], now);
                println!(
                    "rotation {}: {} on call until {}, then {} (overrides set through the API not counted)",
                    r.name,
                    on.who,
                    tocsin::text::time::local(on.until, r.timezone.name()),
                    next.who
                );
            }
            ExitCode::SUCCESS
        }
        Command::Probe { name } => runtime.block_on(probe_once(&config, &name)),
        Command::Incident { cmd } => {
            outcome(runtime.block_on(tocsin::cli::incident::run(&config, cmd)))
        }
        Command::Campaign { cmd } => {
            outcome(runtime.block_on(tocsin::cli::campaign::run(&config, cmd)))
        }
        Command::Oncall { cmd } => {
            outcome(runtime.block_on(tocsin::cli::oncall::run(&config, cmd)))
        }
        Command::Maintenance { cmd } => {
            outcome(runtime.block_on(tocsin::cli::maintenance::run(&config, cmd)))
        }
        Command::Store { cmd } => outcome(tocsin::cli::store::run(&config, cmd)),
        Command::Heartbeat { cmd } => {
            outcome(runtime.block_on(tocsin::cli::heartbeat::run(&config, cmd)))
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
    // Colour only for a person at a terminal (and never with NO_COLOR): a journal, a file
    // or a pipe gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
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
        println!(
            "  rcode      {r}, {} answer, {} authority, {} additional records",
            d.dns_answers.unwrap_or(0),
            d.dns_authority.unwrap_or(0),
            d.dns_additional.unwrap_or(0)
        );
    }
    if let Some(sent) = d.icmp_sent {
        let mut line = format!(
            "  echo       {} of {sent} answered",
            d.icmp_received.unwrap_or(0)
        );
        if let Some(rtt) = d.icmp_rtt {
            line += &format!(", mean rtt {:.3} ms", rtt.as_secs_f64() * 1e3);
        }
        if let Some(h) = d.icmp_hop_limit {
            line += &format!(", hop limit {h}");
        }
        println!("{line}");
    }
    if let Some(code) = d.grpc_status_code {
        println!(
            "  grpc       status {code}, {}",
            d.grpc_serving_status
                .as_deref()
                .unwrap_or("no serving status")
        );
    }
    if let Some(v) = &d.tls_version {
        println!("  tls        {v}");
    }
    if let Some(ip) = d.ip_protocol {
        println!("  address    IPv{ip}");
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

/// `tocsin run`: the App on the production dependencies, SIGHUP to reload, SIGTERM or
/// Ctrl-C to stop.
async fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Every descriptor the hard limit allows: probes, clients, the store and mail share
    // them, and running out must not look like an outage.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(
            open_files = n,
            "file descriptor limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let cancel = CancellationToken::new();
    if config.cluster.is_some() {
        let reload: Arc<Mutex<Option<tocsin::app::Reload>>> = Arc::default();
        signals(cancel.clone(), reload.clone())?;
        tocsin::cluster::run(config, path, cancel, reload).await?;
        return Ok(());
    }
    let deps = Deps::production(&config)?;
    let app = App::build(config, path, deps).await?;
    let reload = app.reloader();
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let stop = cancel.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => reload.reload(),
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        stop.cancel();
    });
    app.run(cancel).await?;
    Ok(())
}

/// SIGHUP reloads the leading App's config (`reload`, while there is one); SIGTERM and
/// Ctrl-C stop.
fn signals(
    cancel: CancellationToken,
    reload: Arc<Mutex<Option<tocsin::app::Reload>>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    if let Some(r) = reload.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        r.reload();
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        cancel.cancel();
    });
    Ok(())
}
