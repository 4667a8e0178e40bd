//! The engine and the dispatcher together, mail written as `.eml` files: the canary guard
//! tells staff once that the monitor's own network is down, and holds every incident.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tocsin::clock::SystemClock;
use tocsin::config::{self, Config, LiveConfig};
use tocsin::engine::Engine;
use tocsin::links::Signer;
use tocsin::metrics::Metrics;
use tocsin::notify::dispatch::Dispatcher;
use tocsin::notify::mail::Mailer;
use tocsin::notify::staff::StaffMail;
use tocsin::probe::{Outcome, Reason};
use tocsin::scheduler::Report;
use tocsin::store::{SharedStore, SqlStore};

const YAML: &str = "services:
  - id: shop
    name: Web shop
    failure_threshold: 1
    escalation: default
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:9\" } }
  - id: self
    probes:
      - { name: gateway, canary: true, tcp: { address: \"127.0.0.1:9\" } }
      - { name: resolver, canary: true, tcp: { address: \"127.0.0.1:9\" } }
escalation:
  default:
    - { after: 0m, to: [oncall@example.com] }
";

/// The engine on a fresh store in a scratch directory, and the dispatcher with the staff
/// mail notifier writing `.eml` files there.
struct Bench {
    dir: tempfile::TempDir,
    cfg: Config,
    engine: Engine,
    metrics: Arc<Metrics>,
    dispatcher: Dispatcher,
}

fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(YAML, &dir.path().join("probes.yaml")).unwrap();
    let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
    let engine = Engine::new(&cfg, store.clone(), Arc::new(SystemClock)).unwrap();
    let metrics = Arc::new(Metrics::new());
    let staff_mail = StaffMail {
        store: store.clone(),
        mailer: Arc::new(Mailer::new(&cfg.mail, dir.path()).unwrap()),
        config: LiveConfig::new(cfg.clone()),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        signer: Arc::new(Signer::new(b"test key, 32 bytes long, exactly")),
        engine: None,
    };
    let dispatcher = Dispatcher {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        engine: engine.handle().subscribe(),
        notifiers: vec![Arc::new(staff_mail)],
        leadership: None,
    };
    Bench {
        dir,
        cfg,
        engine,
        metrics,
        dispatcher,
    }
}

fn report(cfg: &Config, name: &str, ok: bool) -> Report {
    let probe = cfg.probes().find(|p| p.name == name).unwrap().clone();
    let outcome = Outcome {
        at: SystemTime::now(),
        duration: Duration::from_millis(1),
        success: ok,
        reason: (!ok).then_some(Reason::ConnectionRefused),
        phases: vec![],
        details: Default::default(),
    };
    Report {
        probe,
        outcome,
        lag: Duration::ZERO,
        confirmed: true,
    }
}

fn eml_subjects(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<String> = entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn when_every_canary_fails_staff_hear_once_and_no_incident_opens() {
    let Bench {
        dir,
        cfg,
        mut engine,
        metrics: _,
        dispatcher,
    } = bench();

    // One canary failing is not enough; both failing is the monitor's own outage.
    engine.report(&report(&cfg, "gateway", false)).unwrap();
    engine.report(&report(&cfg, "resolver", true)).unwrap();
    engine.report(&report(&cfg, "resolver", false)).unwrap();
    engine.report(&report(&cfg, "resolver", false)).unwrap();
    // Meanwhile the shop looks down too: no incident may open.
    engine.report(&report(&cfg, "home", false)).unwrap();
    dispatcher.drain().await.unwrap();
    let mail = dir.path().join("mail");
    assert_eq!(
        eml_subjects(&mail),
        ["[tocsin] tocsin's own network is down: outages cannot be seen"]
    );
    assert!(engine.state("shop").unwrap().incident.is_none());
    let eml = std::fs::read_to_string(
        std::fs::read_dir(&mail)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(eml.contains("To: oncall@example.com"), "{eml}");
    assert!(eml.contains("self/gateway, self/resolver"), "{eml}");

    // A canary passes again: the shop's outage now opens an incident, mailed as usual.
    engine.report(&report(&cfg, "gateway", true)).unwrap();
    engine.report(&report(&cfg, "home", false)).unwrap();
    dispatcher.drain().await.unwrap();
    let subjects = eml_subjects(&mail);
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects.contains(&"[tocsin] Web shop is DOWN".to_string()),
        "{subjects:?}"
    );
}

/// A probe that fails because the monitor itself has no file descriptor left (a real
/// EMFILE, from a lowered limit) is the monitor's fault: no incident opens however often
/// it happens, staff are told once, and the probe's own series are left alone.
#[tokio::test]
async fn a_probe_failing_for_want_of_descriptors_opens_no_incident_and_staff_hear_once() {
    let Bench {
        dir,
        cfg,
        mut engine,
        metrics,
        dispatcher,
    } = bench();
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut probe = cfg.probes().find(|p| p.name == "home").unwrap().clone();
    let mut check = probe.check.clone();
    if let tocsin::probe::Check::Tcp(t) = &mut check {
        t.address = target.local_addr().unwrap().to_string();
    }
    std::sync::Arc::make_mut(&mut probe).check = check.clone();

    // No descriptor left for this process (nextest runs each test in its own process).
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::Resource::NOFILE.set(open + 8, hard).unwrap();
    let mut hogs = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hogs.push(f);
    }
    let outcome = tocsin::probe::run(&check, Duration::from_secs(5), SystemTime::now()).await;
    drop(hogs);
    rlimit::Resource::NOFILE.set(soft, hard).unwrap();
    assert!(
        matches!(&outcome.reason, Some(Reason::MonitorFault { cause, .. }) if cause == "emfile"),
        "{:?}",
        outcome.reason
    );
    assert_eq!(
        outcome.reason.as_ref().unwrap().to_string(),
        "tocsin's own host is out of file descriptors: Too many open files (os error 24) (a monitor fault, not the target's)"
    );
    let report = Report {
        probe,
        outcome,
        lag: Duration::ZERO,
        confirmed: true,
    };
    for _ in 0..5 {
        engine.report(&report).unwrap();
        metrics.observe(&report.probe, &report.outcome);
    }
    assert!(engine.state("shop").unwrap().incident.is_none());
    dispatcher.drain().await.unwrap();
    assert_eq!(
        eml_subjects(&dir.path().join("mail")),
        ["[tocsin] tocsin's own host is in trouble: outages may go unseen"]
    );
    let text = metrics.render();
    assert!(
        text.contains("tocsin_monitor_fault{cause=\"emfile\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tocsin_monitor_faults_total{cause=\"emfile\"} 5"),
        "{text}"
    );
    assert!(
        !text.contains("probe_success{probe=\"home\""),
        "no verdict on the target: {text}"
    );
}

/// A database, a cache that needs it, and thirty services that need the cache or the
/// database directly.
fn dependencies_yaml() -> String {
    let mut y = String::from(
        "services:
  - id: db
    name: Database
    failure_threshold: 2
    escalation: default
    probes:
      - { name: pg, tcp: { address: \"127.0.0.1:9\" } }
  - id: cache
    failure_threshold: 2
    escalation: default
    depends_on: [db]
    probes:
      - { name: redis, tcp: { address: \"127.0.0.1:9\" } }
",
    );
    for i in 0..30 {
        let on = if i % 2 == 0 { "cache" } else { "db" };
        y.push_str(&format!(
            "  - id: app{i}
    failure_threshold: 1
    escalation: default
    depends_on: [{on}]
    probes:
      - {{ name: http{i}, tcp: {{ address: \"127.0.0.1:9\" }} }}
"
        ));
    }
    y.push_str(
        "escalation:
  default:
    - { after: 0m, to: [oncall@example.com] }
",
    );
    y
}

#[tokio::test]
async fn a_database_outage_with_thirty_dependent_services_is_one_incident() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(&dependencies_yaml(), &dir.path().join("probes.yaml")).unwrap();
    let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
    let mut engine = Engine::new(&cfg, store.clone(), Arc::new(SystemClock)).unwrap();
    // The applications notice first (their threshold is one failure), the database a
    // moment later: none of them opens an incident of its own.
    engine.report(&report(&cfg, "pg", false)).unwrap();
    for i in 0..30 {
        engine
            .report(&report(&cfg, &format!("http{i}"), false))
            .unwrap();
    }
    engine.report(&report(&cfg, "redis", false)).unwrap();
    engine.report(&report(&cfg, "redis", false)).unwrap();
    engine.report(&report(&cfg, "pg", false)).unwrap();
    for i in 0..30 {
        engine
            .report(&report(&cfg, &format!("http{i}"), false))
            .unwrap();
    }
    let open = store.lock().incidents(true).unwrap();
    assert_eq!(
        open.iter().map(|i| i.service.as_str()).collect::<Vec<_>>(),
        ["db"],
        "one incident"
    );
    let affected = open[0].also_affected();
    assert_eq!(affected.len(), 31, "{affected:?}");
    assert!(
        affected.iter().any(|(s, line)| s == "app3"
            && line.starts_with("app3 fails too (http3: connection refused"))
    );
    let staff: Vec<String> = store
        .lock()
        .due(500)
        .unwrap()
        .iter()
        .filter(|d| matches!(d.action, tocsin::incident::Action::MailStaff { .. }))
        .map(|d| d.service.clone())
        .collect();
    assert_eq!(staff, ["db"], "one staff mail");
    assert_eq!(
        engine.statuses(SystemTime::now())["app4"],
        tocsin::incident::Status::Affected
    );

    // The database and all but one application recover; app7 still fails: its own
    // incident opens, timed from its first failure.
    let first_failure = SystemTime::now();
    for _ in 0..2 {
        engine.report(&report(&cfg, "pg", true)).unwrap();
        engine.report(&report(&cfg, "redis", true)).unwrap();
        for i in (0..30).filter(|i| *i != 7) {
            engine
                .report(&report(&cfg, &format!("http{i}"), true))
                .unwrap();
        }
    }
    let open = store.lock().incidents(true).unwrap();
    assert_eq!(
        open.iter().map(|i| i.service.as_str()).collect::<Vec<_>>(),
        ["app7"]
    );
    assert!(
        open[0].started < first_failure,
        "timed from its first failure"
    );
    let db = store.lock().incidents(false).unwrap();
    let db = db.iter().find(|i| i.service == "db").unwrap();
    assert!(db.ended.is_some());
}

#[test]
fn a_dependency_cycle_is_refused_with_the_cycle_spelled_out() {
    let yaml = "services:
  - id: a
    depends_on: [b]
    probes: [{ name: pa, tcp: { address: \"127.0.0.1:9\" } }]
  - id: b
    depends_on: [c, b, nowhere]
    probes: [{ name: pb, tcp: { address: \"127.0.0.1:9\" } }]
  - id: c
    depends_on: [a]
    probes: [{ name: pc, tcp: { address: \"127.0.0.1:9\" } }]
";
    let dir = tempfile::tempdir().unwrap();
    let errs = config::parse(yaml, &dir.path().join("probes.yaml")).unwrap_err();
    let msgs: Vec<String> = errs
        .0
        .iter()
        .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))
        .collect();
    assert_eq!(
        msgs,
        [
            "3:17: dependencies go round in a circle: a → b → c → a; a service cannot need what needs it, remove one of these",
            "6:21: service `b` cannot depend on itself",
            "6:24: unknown service `nowhere`: define it under `services` (defined: a, b, c)",
        ]
    );
}

/// A dependent's faster probe sees the outage first: it waits to hear from what it needs
/// before opening an incident of its own.
#[tokio::test]
async fn a_dependent_failing_first_waits_to_hear_from_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(&dependencies_yaml(), &dir.path().join("probes.yaml")).unwrap();
    let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
    let mut engine = Engine::new(&cfg, store.clone(), Arc::new(SystemClock)).unwrap();
    // app1 needs the database directly; its threshold is one failure.
    engine.report(&report(&cfg, "http1", false)).unwrap();
    assert!(store.lock().incidents(true).unwrap().is_empty(), "it waits");
    // The database's next result fails: attached once the database opens.
    engine.report(&report(&cfg, "pg", false)).unwrap();
    engine.report(&report(&cfg, "pg", false)).unwrap();
    let open = store.lock().incidents(true).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].service, "db");
    assert_eq!(open[0].also_affected().len(), 1, "{open:?}");

    // Another time: the database answers and stays up, so app3's failure is its own.
    let dir = tempfile::tempdir().unwrap();
    let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
    let mut engine = Engine::new(&cfg, store.clone(), Arc::new(SystemClock)).unwrap();
    let before = SystemTime::now();
    engine.report(&report(&cfg, "http3", false)).unwrap();
    assert!(store.lock().incidents(true).unwrap().is_empty(), "it waits");
    engine.report(&report(&cfg, "pg", true)).unwrap();
    let open = store.lock().incidents(true).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].service, "app3");
    assert!(open[0].started >= before, "timed from its first failure");
}
