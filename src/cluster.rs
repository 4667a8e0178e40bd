//! Several instances on one PostgreSQL store (`cluster:`), one of them deciding. Each
//! takes part through a lease kept in the database: the instance that holds it leads
//! (it runs the whole App: probes, decisions, mail, pages), the others stand by,
//! answering `/healthz`, `/readyz` (503) and `/metrics`, and one of them takes over
//! within about the lease once the leader stops renewing it (it died, hung, or lost the
//! database). The new leader resumes from the store, as after a restart: escalation
//! timers, campaigns half sent, pages.
//!
//! A leader learns it lost the lease from the database (a renewal refused) or from its
//! own clock (no renewal got through in time); it stops its App at once. Until then the
//! fence keeps it harmless: the store refuses its writes once another holds the lease,
//! and nothing is sent unless its lease surely runs ([`Leadership::holds`]).
//!
//! The lease is a row in the database, not a home-made consensus: PostgreSQL's own high
//! availability (a managed service, Patroni, CloudNativePG) is what keeps it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppError, Deps, Reload};
use crate::config::Config;
use crate::lease::Leadership;
use crate::metrics::Metrics;
use crate::store::{Sharing, SqlStore, StoreError};

/// What a standby shows of the cluster.
#[derive(Clone)]
struct Standby {
    location: String,
    leader: Arc<Mutex<Option<crate::store::Leader>>>,
    metrics: Arc<Metrics>,
    /// The status page file this host wrote when it last led.
    status_file: std::path::PathBuf,
}

/// Runs this instance in its cluster until `cancel`: standing by, leading when it holds
/// the lease, standing by again if it loses it. `reload` is set to the leading App's
/// reloader while there is one (SIGHUP reloads it).
pub async fn run(
    config: Config,
    path: &Path,
    cancel: CancellationToken,
    reload: Arc<Mutex<Option<Reload>>>,
) -> Result<(), AppError> {
    let cluster = config
        .cluster
        .clone()
        .expect("cluster::run is called for a cluster");
    let pg = config
        .store
        .as_ref()
        .expect("the config requires a store for a cluster");
    let lease = cluster.lease;
    let opts = crate::app::pg_options(pg);
    let me = config.location.clone();
    let instance = format!("{:016x}", rand::random::<u64>());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| format!("{} pid {}", h.trim(), std::process::id()))
        .unwrap_or_else(|_| format!("pid {}", std::process::id()));
    // Its own connection: the lease is renewed however busy the App's store is.
    let member = Arc::new(Mutex::new(SqlStore::open_postgres_as(
        &opts,
        Sharing::Member,
    )?));
    // Instances silent for three leases are gone: their location is free.
    let stale = lease * 3;
    let member_lock = || member.lock().unwrap_or_else(|e| e.into_inner());
    member_lock().register_instance(&me, &instance, &host, stale)?;
    tracing::info!(location = %me, lease = ?lease, "cluster member: standing by until this instance holds the lease");
    let every = lease / 3;
    let leadership = Leadership::new();
    // In a cluster that votes, this location's results go to the store whether it leads
    // or stands by, on connections of their own.
    let votes = if cluster.votes() {
        let open = || -> Result<Arc<Mutex<SqlStore>>, StoreError> {
            Ok(Arc::new(Mutex::new(SqlStore::open_postgres_as(
                &opts,
                Sharing::Member,
            )?)))
        };
        Some(crate::votes::Connections {
            location: me.clone(),
            writer: open()?,
            reader: open()?,
        })
    } else {
        None
    };
    let mut last_token = 0;
    let mut watch = StoreWatch::new(&config, lease)?;
    let result = loop {
        // Standing by.
        let standby = Standby {
            location: me.clone(),
            leader: Arc::default(),
            metrics: Arc::new(Metrics::new()),
            status_file: config
                .placeholder_dir
                .join(crate::notify::pages::STATUS_FILE),
        };
        standby.metrics.leadership(false, 0);
        let serving = CancellationToken::new();
        let probing = votes
            .as_ref()
            .map(|v| probe_here(&config, v, standby.metrics.clone(), serving.clone()));
        let mirroring = mirror_files(&config, &opts, standby.metrics.clone(), serving.clone());
        let server = {
            let listener = match tokio::net::TcpListener::bind(config.listen).await {
                Ok(l) => l,
                Err(e) => {
                    break Err(AppError::Listen {
                        addr: config.listen,
                        source: e,
                    });
                }
            };
            let router = standby_router(standby.clone());
            let stop = serving.clone();
            tokio::spawn(async move {
                crate::web::serve::serve(
                    listener,
                    router,
                    crate::web::serve::Limits::for_open_files(1024),
                    stop,
                )
                .await
            })
        };
        let mut token = None;
        while token.is_none() {
            let sent = Instant::now();
            let claimed = {
                let m = member_lock();
                take_part(&m, &me, &instance, &host, stale, None, lease)
                    .and_then(|t| Ok((t, m.leader()?)))
            };
            match &claimed {
                Ok((_, leader)) => {
                    watch
                        .seen_up(leader.as_ref().map(|l| l.holder.as_str()), &me)
                        .await
                }
                Err(StoreError::LocationTaken { .. }) => {}
                Err(_) => watch.seen_down(&me).await,
            }
            match claimed {
                Ok((Some(t), _)) => {
                    leadership.grant(t, sent + lease * 9 / 10);
                    token = Some(t);
                }
                Ok((None, leader)) => {
                    standby.metrics.store_up(true);
                    if let Some(l) = leader.as_ref().filter(|l| l.token != last_token) {
                        last_token = l.token;
                        standby.metrics.leader_changed();
                    }
                    standby
                        .metrics
                        .leadership(false, leader.as_ref().map_or(0, |l| l.token));
                    *standby.leader.lock().unwrap_or_else(|e| e.into_inner()) = leader;
                }
                Err(e @ StoreError::LocationTaken { .. }) => {
                    serving.cancel();
                    let _ = server.await;
                    return Err(e.into());
                }
                Err(e) => {
                    standby.metrics.store_up(false);
                    tracing::error!(error = %e, "cluster: cannot reach the store to take part; trying again");
                }
            }
            if token.is_none() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }
        serving.cancel();
        let _ = server.await;
        if let Some(p) = probing {
            p.await;
        }
        if let Some(m) = mirroring {
            let _ = m.await;
        }
        let Some(token) = token else {
            break Ok(());
        };

        // Leading.
        tracing::info!(location = %me, token, "this instance leads: deciding and sending");
        last_token = token;
        watch.led = true;
        let app = match lead(&config, path, &leadership, token, votes.clone()).await {
            Ok(app) => app,
            Err(e) => {
                leadership.lose();
                let _ = member_lock().release_lease(&me, token);
                break Err(e);
            }
        };
        *reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(app.reloader());
        let term = cancel.child_token();
        // Renewed on a thread of its own: however long the App's tasks keep the runtime's
        // threads busy (a campaign of 100,000 expanded, a slow disk), the lease is kept
        // on time, and lost only when the database says so or cannot be reached.
        let (stop_renewing, stopped) = std::sync::mpsc::channel::<()>();
        let renewing = {
            let (member, leadership, term, me) =
                (member.clone(), leadership.clone(), term.clone(), me.clone());
            let (instance, host, metrics) = (instance.clone(), host.clone(), app.metrics());
            std::thread::Builder::new()
                .name("tocsin-lease".into())
                .spawn(move || {
                    loop {
                        match stopped.recv_timeout(every) {
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        let sent = Instant::now();
                        let renewed = take_part(
                            &member.lock().unwrap_or_else(|e| e.into_inner()),
                            &me,
                            &instance,
                            &host,
                            stale,
                            Some(token),
                            lease,
                        );
                        tracing::debug!(location = %me, token, ?renewed, took = ?sent.elapsed(), "lease renewal");
                        match renewed {
                            Ok(Some(t)) if t == token => {
                                leadership.grant(t, sent + lease * 9 / 10);
                            }
                            Ok(other) => {
                                tracing::warn!(location = %me, token, now = ?other, "the lease was taken over: this instance stops leading");
                                break;
                            }
                            Err(e) if leadership.holds() => {
                                tracing::error!(error = %e, "cluster: cannot renew the lease; trying again while it runs");
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cluster: the lease ran out unrenewed: this instance stops leading");
                                break;
                            }
                        }
                    }
                    leadership.lose();
                    metrics.leadership(false, token);
                    term.cancel();
                })
                .map_err(|e| AppError::Setup(format!("cannot start the lease's thread: {e}")))?
        };
        let ran = app.run(term.clone()).await;
        *reload.lock().unwrap_or_else(|e| e.into_inner()) = None;
        term.cancel();
        drop(stop_renewing);
        let _ = tokio::task::spawn_blocking(move || renewing.join()).await;
        if let Err(e) = ran {
            leadership.lose();
            let _ = member_lock().release_lease(&me, token);
            break Err(e);
        }
        if cancel.is_cancelled() {
            // A clean stop hands over at once instead of after the lease.
            if leadership.holds() {
                if let Err(e) = member_lock().release_lease(&me, token) {
                    tracing::warn!(error = %e, "cluster: cannot hand the lease over; it runs out by itself");
                }
            }
            leadership.lose();
            break Ok(());
        }
        tracing::info!(location = %me, "standing by again");
    };
    let _ = member_lock().unregister_instance(&me, &instance);
    result
}

/// Staff hear once that the store cannot be reached, and once that it is back, by mail
/// sent straight from here (the outbox is in the store). The instance that led last tells:
/// with the store gone, the instances cannot agree on anything else, and the last leader
/// is the one that most likely still runs and reaches the mail server.
struct StoreWatch {
    mailer: Option<crate::notify::mail::Mailer>,
    to: Vec<String>,
    /// Unreachable for this long before staff hear of it: a lease (a failover of the
    /// database itself usually takes less).
    after: std::time::Duration,
    /// This instance led last (no other leader seen since).
    led: bool,
    down_since: Option<Instant>,
    told: bool,
}

impl StoreWatch {
    fn new(config: &Config, lease: std::time::Duration) -> Result<StoreWatch, AppError> {
        let to = config.first_responders();
        let mailer = if to.is_empty() {
            None
        } else {
            Some(crate::notify::mail::Mailer::new(
                &config.mail,
                &config.data_dir,
            )?)
        };
        Ok(StoreWatch {
            mailer,
            to,
            after: lease,
            led: false,
            down_since: None,
            told: false,
        })
    }

    async fn seen_up(&mut self, leader: Option<&str>, me: &str) {
        if leader.is_some_and(|l| l != me) {
            self.led = false;
        }
        self.down_since = None;
        if self.told {
            self.told = false;
            self.tell(me, false).await;
        }
    }

    async fn seen_down(&mut self, me: &str) {
        let since = *self.down_since.get_or_insert_with(Instant::now);
        if self.led && !self.told && since.elapsed() >= self.after {
            self.told = true;
            self.tell(me, true).await;
        }
    }

    async fn tell(&self, me: &str, down: bool) {
        let Some(mailer) = &self.mailer else {
            return;
        };
        let (subject, text) = if down {
            (
                "[tocsin] the store (PostgreSQL) cannot be reached".to_string(),
                format!(
                    "tocsin at {me}, which led last, cannot reach its PostgreSQL store.\n\
                     Until it can, no incident is decided, no mail, page or webhook goes out,\n\
                     and no location's results are counted: nothing is done that cannot be\n\
                     recorded first. Probes keep running; when the store is back, the leader\n\
                     resumes from what it holds, with nothing lost.\n\n\
                     Check the database and its failover (tocsin_store_up is 0 meanwhile).\n"
                ),
            )
        } else {
            (
                "[tocsin] the store (PostgreSQL) is back".to_string(),
                format!("tocsin at {me} reaches its PostgreSQL store again; the leader resumes.\n"),
            )
        };
        let msg = crate::notify::mail::Outgoing {
            to: self.to.clone(),
            html: crate::notify::staff::html(&subject, "", &text),
            subject,
            text,
            ..Default::default()
        };
        match mailer.send(&msg).await {
            Ok(()) => tracing::warn!(down, "staff told of the store"),
            Err(e) => tracing::error!(error = %e, "cannot tell staff of the store"),
        }
    }
}

/// One round of taking part: says this instance still runs at `me`, then renews the
/// lease of `token` (or, without one, tries to take it). The token held after it, if any.
fn take_part(
    m: &SqlStore,
    me: &str,
    instance: &str,
    host: &str,
    stale: std::time::Duration,
    token: Option<i64>,
    lease: std::time::Duration,
) -> Result<Option<i64>, StoreError> {
    m.register_instance(me, instance, host, stale)?;
    m.claim_lease(me, token, lease)
}

/// The App of a leader: the store fenced by its lease, sends gated by it.
async fn lead(
    config: &Config,
    path: &Path,
    leadership: &Arc<Leadership>,
    token: i64,
    votes: Option<crate::votes::Connections>,
) -> Result<App, AppError> {
    let pg = config.store.as_ref().expect("a cluster has a store");
    let store = SqlStore::open_postgres_as(
        &crate::app::pg_options(pg),
        Sharing::Fenced {
            holder: config.location.clone(),
            token: leadership.token_cell(),
            lease: config
                .cluster
                .as_ref()
                .map_or(std::time::Duration::from_secs(15), |c| c.lease),
        },
    )?;
    let mut deps = Deps::production_with(config, store, Some(leadership.clone()))?;
    deps.votes = votes;
    let app = App::build(config.clone(), path, deps).await?;
    app.metrics().leadership(true, token);
    app.metrics().leader_changed();
    Ok(app)
}

/// A standby's share of the probing: the probes its location votes on, run and written
/// as its votes until `stop`. (Heartbeats are judged by the leader, which gets the pings.)
fn probe_here(
    config: &Config,
    votes: &crate::votes::Connections,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + use<> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (results_tx, mut results_rx) = tokio::sync::mpsc::channel(1024);
    let me = votes.location.clone();
    let mut sched = crate::scheduler::Scheduler::new(
        tx,
        metrics.clone(),
        Arc::new(crate::clock::SteadyClock::new()),
        Arc::new(crate::scheduler::LiveRunner::default()),
        stop.child_token(),
    )
    .only(move |p| p.votes.is_some() && p.runs_at(&me));
    sched.apply(config);
    let recorder = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let latest = Arc::new(crate::scheduler::Latest::default());
            crate::scheduler::record(&mut rx, metrics, latest, Some(results_tx)).await
        })
    };
    let writer = crate::votes::Writer {
        location: votes.location.clone(),
        store: votes.writer.clone(),
        metrics,
        canaries: crate::votes::canaries_at(config, &votes.location),
        passthrough: None,
    };
    let writing = {
        let stop = stop.clone();
        tokio::spawn(async move { writer.run(&mut results_rx, stop).await })
    };
    let running = tokio::spawn(async move {
        stop.cancelled().await;
        sched.stop().await;
    });
    async move {
        let _ = running.await;
        let _ = recorder.await;
        let _ = writing.await;
    }
}

/// A standby's copy of the placeholder pages and hotline files, kept from the store like
/// the leader's (the web server and the phone system on this host read the local copy);
/// the leader alone calls the page webhook and the hotline hook. None when this instance
/// cannot read the templates or reach the store (logged: the leader's copy stands).
fn mirror_files(
    config: &Config,
    opts: &crate::store::PgOptions,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let templates = match crate::notify::templates::Templates::load(
        config.campaigns.templates.as_deref(),
    ) {
        Ok(t) => Arc::new(t),
        Err(issues) => {
            let e: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
            tracing::error!(error = %e.join("; "), "standby: cannot load the templates; placeholders and hotline files are kept by the leader only");
            return None;
        }
    };
    let store = match SqlStore::open_postgres_as(opts, Sharing::Member) {
        Ok(s) => crate::store::SharedStore::new(s),
        Err(e) => {
            tracing::error!(error = %e, "standby: cannot reach the store; placeholders and hotline files are kept by the leader only");
            return None;
        }
    };
    let config = crate::config::LiveConfig::new(config.clone());
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SteadyClock::new());
    // No engine runs here: its snapshot never changes, and the followers pass on their
    // period alone.
    let link = crate::engine::Link::new();
    let pages = crate::notify::pages::Pages {
        source: crate::notify::pages::PageSource {
            engine: link.handle(),
            store: store.clone(),
            templates: templates.clone(),
            config: config.clone(),
            clock: clock.clone(),
            status_cache: Default::default(),
        },
        metrics: metrics.clone(),
        ready: Arc::default(),
        // Never used: a standby calls no webhook. (A default client would also need a
        // process-wide TLS provider, which tocsin does not install.)
        http: reqwest::Client::builder()
            .use_preconfigured_tls(crate::probe::tls::client_config_with_roots().ok()?)
            .build()
            .ok()?,
        files_only: true,
    };
    let hotline = crate::notify::hotline::Hotline {
        follow: crate::notify::Follow {
            store,
            templates,
            config,
            clock,
            metrics,
            changes: link.handle().subscribe(),
        },
        retry: None,
        files_only: true,
    };
    Some(tokio::spawn(async move {
        let _link = link;
        tokio::join!(pages.run(stop.clone()), hotline.run(stop));
    }))
}

fn standby_router(s: Standby) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(s)
}

/// The last status page this host wrote while it led: with no leader (the database
/// gone), customers who reach this instance still see the last known state, not an error.
async fn status(State(s): State<Standby>) -> Response {
    match tokio::fs::read(&s.status_file).await {
        Ok(page) => (
            [
                (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (axum::http::header::CACHE_CONTROL, "no-cache"),
            ],
            page,
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "this instance stands by and has no status page of its own yet; the leader serves it\n",
        )
            .into_response(),
    }
}

fn leader_json(s: &Standby) -> serde_json::Value {
    let leader = s.leader.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match leader {
        Some(l) if l.live => serde_json::json!({ "location": l.holder, "token": l.token }),
        _ => serde_json::Value::Null,
    }
}

/// A standby is healthy (it runs and takes part): liveness checks pass.
async fn healthz(State(s): State<Standby>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "role": "standby",
        "location": s.location,
        "leader": leader_json(&s),
    }))
    .into_response()
}

/// A standby is not ready: a load balancer sends customers to the leader.
async fn readyz(State(s): State<Standby>) -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "status": "standby",
            "location": s.location,
            "leader": leader_json(&s),
        })),
    )
        .into_response()
}

async fn metrics(State(s): State<Standby>) -> Response {
    let mut out = String::new();
    s.metrics
        .render_chunks(crate::config::PerProbe::All, 256 * 1024, &mut |piece| {
            out.push_str(&piece);
            true
        });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
