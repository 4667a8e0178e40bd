//! The store on real files, written against the `Store` trait: state and outbox in one
//! transaction, reopening after a restart, outbox bookkeeping; and the files the SQLite
//! backend must refuse without touching them. Every backend runs the trait's tests
//! (`backends`): the SQLite file and PostgreSQL.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::support::postgres::Postgres;
use tocsin::incident::{
    Action, Event, Flapping, Level, Policy, ServiceState, StaffMailKind, TimelineEvent, step,
};
use tocsin::probe::Reason;

use tocsin::incident::Context;
use tocsin::store::{Channel, IncidentStore, NewDelivery, SqlStore, Store, StoreError};

/// One backend's store for one test: the SQLite file in a directory, or a database on a
/// PostgreSQL server started for the test.
struct Backend {
    name: &'static str,
    dir: tempfile::TempDir,
    pg: Option<Postgres>,
}

impl Backend {
    /// Opens (or reopens, as a restarted process would) the store.
    fn open(&self) -> Box<dyn Store> {
        match &self.pg {
            None => Box::new(SqlStore::open_sqlite(&self.dir.path().join("tocsin.db")).unwrap()),
            Some(pg) => Box::new(
                SqlStore::open_postgres(&pg.options("tocsin"))
                    .unwrap_or_else(|e| panic!("{e}\n{}", pg.log())),
            ),
        }
    }
}

/// The backends the trait's tests run against, each fresh.
fn backends() -> Vec<Backend> {
    let pg = Postgres::start();
    pg.database("tocsin");
    vec![
        Backend {
            name: "sqlite",
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        },
        Backend {
            name: "postgres",
            dir: tempfile::tempdir().unwrap(),
            pg: Some(pg),
        },
    ]
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn policy() -> Policy {
    Policy {
        service: "shop".into(),
        probes: vec!["home".into()],
        failure_threshold: 2,
        success_threshold: 1,
        customer_threshold: Duration::from_secs(3 * 3600),
        update_every: Duration::from_secs(1800),
        next_update: Duration::from_secs(3600),
        remind_before: Duration::ZERO,
        levels: vec![Level {
            after: Duration::ZERO,
            to: vec!["oncall@example.com".into()],
            repeat_every: None,
        }],
        maintenance: vec![],
        flapping: Flapping::default(),
    }
}

/// What the engine writes with each decision about the shop.
fn context() -> Context {
    let p = policy();
    Context {
        service_name: "Web shop".into(),
        levels: p.levels,
        customer_threshold: p.customer_threshold,
        canaries: vec![],
        oncall: vec![],
    }
}

fn staff() -> NewDelivery {
    NewDelivery {
        channel: Channel::StaffMail,
        target: String::new(),
        after: std::time::Duration::ZERO,
    }
}

fn hook(url: &str) -> NewDelivery {
    NewDelivery {
        channel: Channel::Webhook,
        target: url.into(),
        after: std::time::Duration::ZERO,
    }
}

/// Runs `events` through the machine, committing after each step as the engine will.
fn drive(store: &mut dyn Store, state: &mut ServiceState, events: &[(u64, Event)]) {
    for (secs, e) in events {
        let now = t0() + Duration::from_secs(*secs);
        let (next, actions) = step(state, &policy(), e.clone(), now);
        store
            .commit("shop", &next, &actions, &context(), now)
            .unwrap();
        *state = next;
    }
}

fn fail() -> Event {
    Event::Probe {
        probe: "home".into(),
        ok: false,
        reason: Some(Reason::Status {
            got: 503,
            want: "200".into(),
        }),
        confirmed: true,
    }
}

/// The database holds the key that signs ack and unsubscribe links: it and its WAL are
/// the owner's alone, and `data_dir` may be passed through (to the pages nginx serves)
/// but not listed, even when it was made world-readable before.
#[test]
fn the_database_and_data_dir_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("tocsin.db");
    let mut store = SqlStore::open_sqlite(&db).unwrap();
    store.set_meta("written", "yes").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o711);
    assert_eq!(mode(&db), 0o600);
    let wal = data.join("tocsin.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
    drop(store);
    // A database made readable by hand is made private again at the next start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = SqlStore::open_sqlite(&db).unwrap();
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn an_open_incident_survives_a_restart_with_its_start_time_and_outbox() {
    for b in backends() {
        let backend = b.name;
        {
            let mut store = b.open();
            let mut state = ServiceState::new();
            drive(&mut *store, &mut state, &[(0, fail()), (30, fail())]);
            assert_eq!(
                store.pending().unwrap().decisions,
                2,
                "the opening and its mail are decided"
            );
        }
        // Restart: a new process opens the same file.
        let mut store = b.open();
        let states = store.load().unwrap();
        let state = &states["shop"];
        let inc = state.incident.as_ref().expect("still open");
        assert_eq!(
            inc.started,
            t0(),
            "the outage keeps its age across the restart"
        );
        let due = store.due(10).unwrap();
        assert_eq!(due.len(), 2);
        assert!(matches!(due[0].action, Action::Open { .. }));
        assert!(
            matches!(&due[1].action, Action::MailStaff { kind: StaffMailKind::Opened, to, .. } if to == &vec!["oncall@example.com".to_string()])
        );
        assert_eq!(
            due[1].context.as_ref(),
            Some(&context()),
            "decided with its context"
        );
        assert_eq!(due[1].decided, t0() + Duration::from_secs(30));
        let now = t0() + Duration::from_secs(31);
        store.fan_out(due[0].id, &[], now).unwrap();
        store.fan_out(due[1].id, &[staff()], now).unwrap();
        store.fan_out(due[1].id, &[staff(), staff()], now).unwrap();
        assert!(store.due(10).unwrap().is_empty(), "fanned out once");
        let deliveries = store.due_deliveries(now, None, 10).unwrap();
        assert_eq!(deliveries.len(), 1, "fanning out again adds nothing");
        assert_eq!(deliveries[0].decision.as_ref(), Some(&due[1]));
        assert_eq!(deliveries[0].incident, due[1].incident);
        store
            .delivered(deliveries[0].id, t0() + Duration::from_secs(32))
            .unwrap();
        drop(store);

        let store = b.open();
        assert_eq!(
            store.pending().unwrap().total(),
            0,
            "what was done is not done again"
        );
        let incidents = store.incidents(true).unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].service, "shop");
        assert_eq!(incidents[0].started, t0());
        let kinds: Vec<&str> = incidents[0].timeline.iter().map(|e| e.kind()).collect();
        assert_eq!(kinds, ["opened", "staff_mail"]);
        assert_eq!(
            incidents[0].timeline[0].detail(),
            "home: status 503, expected 200"
        );
        // Stored as data: the probe's typed reason travels into the timeline.
        match &incidents[0].timeline[0].event {
            TimelineEvent::Opened { reasons } => assert_eq!(
                reasons["home"],
                Reason::Status {
                    got: 503,
                    want: "200".into()
                }
            ),
            other => panic!("{backend}: {other:?}"),
        }
    }
}

#[test]
fn ack_eta_customer_phase_and_resolution_are_recorded_with_their_outbox() {
    for b in backends() {
        let mut store = b.open();
        let mut state = ServiceState::new();
        let eta = t0() + Duration::from_secs(5 * 3600);
        drive(
            &mut *store,
            &mut state,
            &[
                (0, fail()),
                (30, fail()),
                (60, Event::Ack { by: "anna".into() }),
                (
                    90,
                    Event::Eta {
                        eta,
                        by: "anna".into(),
                    },
                ),
                (
                    120,
                    Event::Probe {
                        probe: "home".into(),
                        ok: true,
                        reason: None,
                        confirmed: true,
                    },
                ),
            ],
        );
        let inc = &store.incidents(false).unwrap()[0];
        assert_eq!(inc.acked_by.as_deref(), Some("anna"));
        assert_eq!(inc.eta, Some(eta));
        assert!(inc.customer_phase);
        assert_eq!(inc.ended, Some(t0() + Duration::from_secs(120)));
        let kinds: Vec<&str> = inc.timeline.iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            [
                "opened",
                "staff_mail",
                "acknowledged",
                "eta",
                "customer_phase",
                "resolved"
            ]
        );
        let due = store.due(10).unwrap();
        let actions: Vec<&str> = due
            .iter()
            .map(|i| match i.action {
                Action::Open { .. } => "open",
                Action::MailStaff { .. } => "staff",
                Action::Acknowledged { .. } => "ack",
                Action::EtaSet { .. } => "eta",
                Action::CustomerPhase { .. } => "customers",
                Action::CustomerUpdate { .. } => "update",
                Action::Posted { .. } => "posted",
                Action::AlsoAffected { .. } => "also affected",
                Action::Resolve { .. } => "resolve",
            })
            .collect();
        assert_eq!(
            actions,
            ["open", "staff", "ack", "eta", "customers", "resolve"]
        );
        let incident = due[0].incident.expect("the incident's id");
        assert!(due.iter().all(|d| d.incident == Some(incident)));
        assert!(store.incidents(true).unwrap().is_empty());
    }
}

#[test]
fn retries_wait_and_permanent_failures_stop() {
    for b in backends() {
        let mut store = b.open();
        let mut state = ServiceState::new();
        drive(&mut *store, &mut state, &[(0, fail()), (30, fail())]);
        let mail = store.due(10).unwrap()[1].id;
        let now = t0() + Duration::from_secs(30);
        store.fan_out(mail, &[staff()], now).unwrap();
        let id = store.due_deliveries(now, None, 10).unwrap()[0].id;
        store
            .retry_delivery(id, "421 try later", t0() + Duration::from_secs(90))
            .unwrap();
        assert!(
            store
                .due_deliveries(t0() + Duration::from_secs(60), None, 10)
                .unwrap()
                .is_empty(),
            "not before its retry time"
        );
        let again = store
            .due_deliveries(t0() + Duration::from_secs(90), None, 10)
            .unwrap();
        assert_eq!(again[0].attempts, 1);
        store
            .delivery_failed(id, "550 no such user", t0() + Duration::from_secs(91))
            .unwrap();
        assert!(
            store
                .due_deliveries(t0() + Duration::from_secs(9999), None, 10)
                .unwrap()
                .is_empty()
        );
        let timeline = &store.incidents(false).unwrap()[0].timeline;
        let last = timeline.last().unwrap();
        assert_eq!(
            (last.kind(), last.detail().as_str()),
            ("delivery_failed", "550 no such user"),
            "visible in the API"
        );
    }
}

#[test]
fn each_webhook_receiver_hears_of_transitions_in_order() {
    for b in backends() {
        let mut store = b.open();
        let mut state = ServiceState::new();
        drive(
            &mut *store,
            &mut state,
            &[
                (0, fail()),
                (30, fail()),
                (60, Event::Ack { by: "anna".into() }),
            ],
        );
        let now = t0() + Duration::from_secs(61);
        for d in store.due(10).unwrap() {
            store
                .fan_out(
                    d.id,
                    &[hook("https://a.test/"), hook("https://b.test/")],
                    now,
                )
                .unwrap();
        }
        let pending = store.pending().unwrap();
        assert_eq!(pending.decisions, 0);
        assert_eq!(pending.of(Channel::Webhook), 6);
        let due = store.due_deliveries(now, None, 10).unwrap();
        let targets: Vec<&str> = due.iter().map(|d| d.target.as_str()).collect();
        assert_eq!(
            targets,
            ["https://a.test/", "https://b.test/"],
            "only each receiver's oldest"
        );
        // a.test is down: it holds up its own queue, not b.test's.
        store
            .retry_delivery(due[0].id, "503", t0() + Duration::from_secs(600))
            .unwrap();
        store.delivered(due[1].id, now).unwrap();
        let next = store.due_deliveries(now, None, 10).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].target, "https://b.test/");
        assert!(matches!(
            next[0].decision.as_ref().unwrap().action,
            Action::MailStaff { .. }
        ));
        store
            .delivery_failed(due[0].id, "answered 410: gone", now)
            .unwrap();
        let last = store.incidents(false).unwrap()[0]
            .timeline
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (last.kind(), last.detail()),
            (
                "webhook_failed",
                "https://a.test/: answered 410: gone".to_string()
            )
        );
    }
}

#[test]
fn a_failing_commit_writes_nothing() {
    for b in backends() {
        let mut store = b.open();
        let mut state = ServiceState::new();
        drive(&mut *store, &mut state, &[(0, fail()), (30, fail())]);
        // Opening incident 1 again breaks the (service, seq) uniqueness half-way through.
        let mut other = state.clone();
        other.next_id = 99;
        let dup = vec![
            Action::MailStaff {
                id: None,
                kind: StaffMailKind::Flapping,
                level: 0,
                to: vec!["x@example.com".into()],
            },
            Action::Open {
                id: 1,
                started: t0(),
                reasons: BTreeMap::new(),
            },
        ];
        assert!(
            store
                .commit(
                    "shop",
                    &other,
                    &dup,
                    &context(),
                    t0() + Duration::from_secs(40)
                )
                .is_err()
        );
        assert_eq!(
            store.load().unwrap()["shop"].next_id,
            state.next_id,
            "the state was not saved"
        );
        assert_eq!(
            store.pending().unwrap().decisions,
            2,
            "the first action's outbox row was rolled back"
        );
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    let junk =
        b"these are not the bytes of an SQLite database, and must stay exactly so".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SqlStore::open_sqlite(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
    assert!(
        err.to_string().contains("is not a tocsin database")
            && err.to_string().contains("it was not modified"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), junk);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "not even its mode");
}

#[test]
fn a_database_in_use_by_another_tocsin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    let _first = SqlStore::open_sqlite(&path).unwrap();
    let err = SqlStore::open_sqlite(&path)
        .err()
        .expect("second open refused");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tocsin.db");
    drop(SqlStore::open_sqlite(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqlStore::open_sqlite(&path).err().expect("refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}
