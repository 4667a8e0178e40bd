//! tocsin on PostgreSQL, a real server started by each test (support::postgres): an
//! outage through the database going away and a restart, `tocsin store migrate` from the
//! SQLite file, and every database tocsin cannot use refused with the fix.

use std::time::Duration;

use crate::support;
use crate::support::postgres::{PASSWORD, Postgres};
use tocsin::store::{
    CampaignStore, HistoryStore, IncidentStore, MaintenanceStore, OutboxStore, Sharing, SqlStore,
};

/// The shop with a two-level escalation (lead after 30 minutes), mail as `.eml` files.
fn config(dir: &std::path::Path, port: u16, target: std::net::SocketAddr, store: &str) -> String {
    config_with(dir, port, target, "escalation: default", store)
}

fn config_with(
    dir: &std::path::Path,
    port: u16,
    target: std::net::SocketAddr,
    shop: &str,
    more: &str,
) -> String {
    support::shop_config(
        port,
        target,
        shop,
        &format!(
            "escalation:\n  default:\n    - {{ after: 0m, to: [oncall@example.com] }}\n    - {{ after: 30m, to: [lead@example.com] }}\nmail:\n  from: \"Example Status <status@example.com>\"\n{more}"
        ),
    )
    .replace(
        "data_dir: ./var",
        &format!("data_dir: {}", dir.join("var").display()),
    )
}

/// Whether the shop has an open incident (false while the store cannot say).
fn shop_open(app: &support::InProcess) -> bool {
    app.store
        .lock()
        .open_incident_of("shop")
        .ok()
        .flatten()
        .is_some()
}

fn subjects(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = support::spooled(dir)
        .into_iter()
        .map(|(to, subject, _)| (to, subject))
        .collect();
    v.sort();
    v
}

/// PostgreSQL stops in the middle of an outage, for longer than the first escalation
/// level waits. While it is gone nothing is decided or sent (it could not be recorded),
/// `tocsin_store_up` says so, and the monitor keeps probing; when it is back the lead is
/// mailed once, nobody twice. A restart of tocsin then resumes the same incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_goes_on_through_the_database_going_away_and_a_restart() {
    let mut pg = Postgres::start();
    let url = pg.database("tocsin");
    let dir = tempfile::tempdir().unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        config(dir.path(), port, target, &format!("store: {url}\n")),
    )
    .unwrap();
    let env = [("PGPASSWORD", PASSWORD)];
    let app = support::InProcess::start(&cfg, &env).await;
    support::runs(port, "shop", "success", 2, &String::new).await;
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let log = pg.log_path();
    let explain = || {
        format!(
            "{:?}\n{}",
            subjects(dir.path()),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    support::until("the incident", Duration::from_secs(20), &explain, || {
        shop_open(&app)
    })
    .await;
    app.settled(&explain).await;
    let started = app
        .store
        .lock()
        .open_incident_of("shop")
        .unwrap()
        .unwrap()
        .started;
    assert_eq!(
        subjects(dir.path()),
        [(
            "oncall@example.com".to_string(),
            "[tocsin] Web shop is DOWN".to_string()
        )]
    );
    assert_eq!(
        support::metric(port, "tocsin_store_up").await,
        Some(1.0),
        "the store answers"
    );

    pg.stop();
    support::until_metric(
        port,
        "tocsin_store_up",
        Duration::from_secs(20),
        &explain,
        |v| v == 0.0,
    )
    .await;
    app.clock.advance(Duration::from_secs(31 * 60));
    support::runs(port, "shop", "failure", 3, &explain).await;
    assert_eq!(
        subjects(dir.path()).len(),
        1,
        "nothing is sent that could not be recorded first"
    );

    pg.resume();
    support::until("the lead's mail", Duration::from_secs(30), &explain, || {
        subjects(dir.path()).len() == 2
    })
    .await;
    app.settled(&explain).await;
    assert_eq!(
        subjects(dir.path()),
        [
            (
                "lead@example.com".to_string(),
                "[tocsin] Web shop is DOWN, unacknowledged (escalation level 1)".to_string()
            ),
            (
                "oncall@example.com".to_string(),
                "[tocsin] Web shop is DOWN".to_string()
            ),
        ],
        "the decision held back while the database was gone is made once"
    );
    support::until_metric(
        port,
        "tocsin_store_up",
        Duration::from_secs(20),
        &explain,
        |v| v == 1.0,
    )
    .await;
    app.stop().await;

    // A new process on the same database: the same incident, its start and its
    // escalation kept, nothing sent again.
    let app = support::InProcess::start(&cfg, &env).await;
    let inc = app
        .store
        .lock()
        .open_incident_of("shop")
        .unwrap()
        .expect("still open");
    assert_eq!(inc.started, started);
    support::runs(port, "shop", "failure", 2, &explain).await;
    app.settled(&explain).await;
    assert_eq!(subjects(dir.path()).len(), 2, "{:?}", subjects(dir.path()));
    app.stop().await;
}

/// Runs `tocsin run` on `cfg` until it exits (it must, within 30 s); its stderr.
fn refused(cfg: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.args(["run", "--config"])
        .arg(cfg)
        .env_remove("PGPASSWORD")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tocsin run did not refuse {}", cfg.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each database tocsin cannot use stops `tocsin run` at once, with a message that names
/// the database and the fix; none of them is written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tocsin_cannot_use_is_refused_with_the_fix() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (target, _up) = support::switchable_target().await;
    let port = support::free_port();
    let written = std::cell::Cell::new(0);
    let write = |store: &str| {
        written.set(written.get() + 1);
        let cfg = dir.path().join(format!("probes{}.yaml", written.get()));
        std::fs::write(&cfg, config(dir.path(), port, target, store)).unwrap();
        cfg
    };
    let good = [("PGPASSWORD", PASSWORD)];

    // Nobody listens there.
    let closed = support::free_port();
    let err = refused(
        &write(&format!(
            "store: postgres://tocsin@127.0.0.1:{closed}/tocsin\n"
        )),
        &good,
    );
    assert!(
        err.contains(&format!(
            "cannot connect to PostgreSQL at postgres://127.0.0.1:{closed}/tocsin"
        )) && err.contains("refused"),
        "{err}"
    );

    let url = pg.database("tocsin");
    let cfg = write(&format!("store: {url}\n"));
    // A wrong password, and none at all.
    let err = refused(&cfg, &[("PGPASSWORD", "wrong")]);
    assert!(
        err.contains("password authentication failed")
            && err.contains("check the password in the environment variable PGPASSWORD"),
        "{err}"
    );
    let err = refused(&cfg, &[]);
    assert!(
        err.contains(
            "the server asks for a password: put it in the environment variable PGPASSWORD"
        ),
        "{err}"
    );
    // The variable the config names is the one read.
    let other = write(&format!(
        "store: {url}\nstore_password_env: TOCSIN_PG_PASSWORD\n"
    ));
    let err = refused(&other, &[("PGPASSWORD", PASSWORD)]);
    assert!(err.contains("TOCSIN_PG_PASSWORD"), "{err}");

    // Another tocsin holds the database.
    {
        let _first = SqlStore::open_postgres(&pg.options("tocsin")).unwrap();
        let err = refused(&cfg, &good);
        assert!(
            err.contains(&format!(
                "postgres://127.0.0.1:{}/tocsin is in use by another process",
                pg.port
            )),
            "{err}"
        );
    }

    // Written by a newer tocsin.
    pg.psql("tocsin", "UPDATE tocsin_schema SET version = 99");
    let err = refused(&cfg, &good);
    assert!(
        err.contains(
            "has schema version 99, newer than this tocsin understands (20); upgrade tocsin"
        ),
        "{err}"
    );

    // A database that holds someone else's tables.
    pg.database("shared");
    pg.psql("shared", "CREATE TABLE customers (id int)");
    let err = refused(&write(&format!("store: {}\n", pg.url("shared"))), &good);
    assert!(
        err.contains(
            "its schema holds 1 tables that are not tocsin's; give tocsin a database of its own"
        ),
        "{err}"
    );
    assert_eq!(
        pg.psql(
            "shared",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "1",
        "nothing was created there"
    );
}

/// `tocsin store migrate` moves a store that has lived (an open incident with its
/// timeline and outbox, a campaign with its recipients, an opt-out, a maintenance window,
/// the link key, probe history) into PostgreSQL; what it copied reads back the same, a
/// second run is refused, and tocsin started on PostgreSQL carries on the same incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_copies_everything_and_tocsin_carries_on() {
    let pg = Postgres::start();
    let url = pg.database("tocsin");
    let dir = tempfile::tempdir().unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,name\nana@example.com,Ana\nbo@example.com,Bo\ncy@example.com,Cy\n",
    )
    .unwrap();
    let shop = "escalation: default\naudience: customers\ncustomer_threshold: 1h";
    let customers = format!(
        "audiences:\n  customers: {{ csv: {} }}\n",
        dir.path().join("customers.csv").display()
    );
    std::fs::write(
        &cfg,
        config_with(dir.path(), port, target, shop, &customers),
    )
    .unwrap();
    let migrate = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["store", "migrate", "--config"])
            .arg(&cfg)
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap()
    };

    let app = support::InProcess::start(&cfg, &[]).await;
    support::runs(port, "shop", "success", 2, &String::new).await;
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    support::until(
        "the incident",
        Duration::from_secs(20),
        &String::new,
        || shop_open(&app),
    )
    .await;
    app.settled(&String::new).await;
    // Past the customer threshold: a campaign to the three customers.
    app.clock.advance(Duration::from_secs(3700));
    support::until(
        "the customers' mail",
        Duration::from_secs(20),
        &String::new,
        || {
            support::spooled(dir.path())
                .iter()
                .filter(|(to, _, _)| to.ends_with("@example.com") && !to.starts_with("oncall"))
                .count()
                >= 3
        },
    )
    .await;
    app.settled(&String::new).await;
    {
        let mut s = app.store.lock();
        s.opt_out("gone@example.com", support::epoch()).unwrap();
        s.add_window(
            &tocsin::config::Maintenance {
                id: None,
                service: "shop".into(),
                start: support::epoch() + Duration::from_secs(86_400),
                duration: Duration::from_secs(3600),
                announce_before: vec![Duration::from_secs(3600)],
                note: "Database upgrade".into(),
            },
            "ops",
            support::epoch(),
        )
        .unwrap();
    }
    // While it runs, the file is in use: nothing is copied.
    let out = migrate(&["--to", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;

    let out = migrate(&["--to", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("to postgres://127.0.0.1:{}/tocsin", pg.port))
            && stdout.contains("incidents")
            && stdout.contains("set `store: "),
        "{stdout}"
    );

    let mut old = SqlStore::open_sqlite(&dir.path().join("var/tocsin.db")).unwrap();
    let mut new = SqlStore::open_postgres(&pg.options("tocsin")).unwrap();
    let now = support::epoch() + Duration::from_secs(60);
    assert_eq!(old.incidents(false).unwrap(), new.incidents(false).unwrap());
    assert_eq!(old.decisions().unwrap(), new.decisions().unwrap());
    assert_eq!(
        old.campaigns(None, now).unwrap(),
        new.campaigns(None, now).unwrap()
    );
    assert_eq!(
        format!("{:?}", old.windows(now).unwrap()),
        format!("{:?}", new.windows(now).unwrap())
    );
    assert_eq!(
        old.link_key().unwrap(),
        new.link_key().unwrap(),
        "links already mailed keep working"
    );
    assert!(new.opted_out("gone@example.com").unwrap());
    let since = support::epoch() - Duration::from_secs(3600);
    assert_eq!(
        old.probe_hours("shop", since).unwrap(),
        new.probe_hours("shop", since).unwrap()
    );
    assert!(!new.incidents(false).unwrap().is_empty());
    let campaigns = new.campaigns(None, now).unwrap();
    assert_eq!(campaigns.len(), 1, "{campaigns:?}");
    assert_eq!(campaigns[0].counts.sent, 3);
    assert_eq!(
        old.recipient_counts().unwrap(),
        new.recipient_counts().unwrap()
    );
    drop((old, new));

    // Twice is refused: nothing is mixed or overwritten.
    let out = migrate(&["--to", &url]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty: ") && err.contains("migrate into a new, empty database"),
        "{err}"
    );
    // A password on the command line is refused too.
    let out = migrate(&[
        "--to",
        &format!("postgres://tocsin:{PASSWORD}@127.0.0.1:{}/x", pg.port),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to carries a password"));

    // tocsin on PostgreSQL: the same incident goes on, and nothing is sent again.
    let before = support::spooled(dir.path()).len();
    std::fs::write(
        &cfg,
        config_with(
            dir.path(),
            port,
            target,
            shop,
            &format!("{customers}store: {url}\n"),
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[("PGPASSWORD", PASSWORD)]).await;
    support::runs(port, "shop", "failure", 2, &String::new).await;
    app.settled(&String::new).await;
    assert_eq!(app.store.lock().incidents(false).unwrap().len(), 1);
    assert_eq!(support::spooled(dir.path()).len(), before);
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    support::until(
        "the recovery",
        Duration::from_secs(20),
        &String::new,
        || !shop_open(&app),
    )
    .await;
    app.stop().await;
}

/// The instances of a cluster starting together on an empty database: one creates the
/// tables, the others wait for it and find them tocsin's (a look at the tables outside
/// the lock once took another's fresh tables for someone else's, and refused to start).
#[test]
fn instances_starting_together_on_an_empty_database_all_open_it() {
    let pg = Postgres::start();
    for round in 0..5 {
        let db = format!("together{round}");
        pg.database(&db);
        let opts = pg.options(&db);
        let start = std::sync::Arc::new(std::sync::Barrier::new(12));
        // Staggered by 4 ms: some instance looks while the first one's tables commit.
        let opened: Vec<Result<(), String>> = (0..12u64)
            .map(|i| {
                let (opts, start) = (opts.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    std::thread::sleep(Duration::from_millis(4 * i));
                    SqlStore::open_postgres_as(&opts, Sharing::Member)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(
            opened.iter().all(Result::is_ok),
            "round {round}: {opened:?}"
        );
    }
}
