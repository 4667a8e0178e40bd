//! The incident state machine on simulated time: a full three-hour timeline, ack, ETA,
//! manual resolve, maintenance, canaries and flapping as table tests, and property tests
//! over random event sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tocsin::incident::{
    Action, Event, Flapping, Level, Policy, ServiceState, StaffMailKind, Status, Window, step,
};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn policy() -> Policy {
    Policy {
        service: "shop".into(),
        probes: vec!["home".into(), "db".into()],
        failure_threshold: 3,
        success_threshold: 2,
        customer_threshold: 3 * HOUR,
        update_every: Duration::from_secs(1800),
        next_update: Duration::from_secs(3600),
        remind_before: Duration::ZERO,
        levels: vec![
            Level {
                after: Duration::ZERO,
                to: vec!["oncall@example.com".into()],
                repeat_every: None,
            },
            Level {
                after: 15 * MIN,
                to: vec!["lead@example.com".into()],
                repeat_every: None,
            },
            Level {
                after: HOUR,
                to: vec!["staff@example.com".into(), "oncall@example.com".into()],
                repeat_every: None,
            },
        ],
        maintenance: vec![],
        flapping: Flapping::default(),
    }
}

/// Drives a machine and keeps every action with its time.
struct Sim {
    policy: Policy,
    state: ServiceState,
    now: SystemTime,
    log: Vec<(Duration, Action)>,
}

impl Sim {
    fn new(policy: Policy) -> Self {
        Sim {
            policy,
            state: ServiceState::new(),
            now: t0(),
            log: Vec::new(),
        }
    }
    fn at(&mut self, offset: Duration) -> &mut Self {
        assert!(t0() + offset >= self.now, "time only moves forward");
        self.now = t0() + offset;
        self
    }
    fn send(&mut self, e: Event) -> Vec<Action> {
        let (s, actions) = step(&self.state, &self.policy, e, self.now);
        self.state = s;
        let at = self.now.duration_since(t0()).unwrap();
        self.log.extend(actions.iter().cloned().map(|a| (at, a)));
        actions
    }
    fn probe(&mut self, name: &str, ok: bool) -> Vec<Action> {
        self.send(Event::Probe {
            probe: name.into(),
            ok,
            reason: (!ok).then_some(tocsin::probe::Reason::ConnectionRefused),
            confirmed: true,
        })
    }
    /// A tally of the locations' votes: failing, confirmed by a quorum or not.
    fn voted(&mut self, name: &str, ok: bool, confirmed: bool) -> Vec<Action> {
        self.send(Event::Probe {
            probe: name.into(),
            ok,
            reason: (!ok).then_some(tocsin::probe::Reason::Text {
                text: "failing from waw: connection refused; no recent result from fra, sto".into(),
            }),
            confirmed,
        })
    }
    /// Both probes report every 30 s from `from` until `to` (exclusive).
    fn run(&mut self, from: Duration, to: Duration, home_ok: bool, db_ok: bool) {
        let mut t = from;
        while t < to {
            self.at(t);
            self.probe("home", home_ok);
            self.probe("db", db_ok);
            self.send(Event::Tick);
            t += Duration::from_secs(30);
        }
    }
    fn status(&self) -> Status {
        self.state.status(&self.policy, self.now)
    }
}

fn kinds(log: &[(Duration, Action)]) -> Vec<(u64, String)> {
    log.iter()
        .map(|(t, a)| {
            let what = match a {
                Action::Open { .. } => "open".to_string(),
                Action::MailStaff { kind, level, .. } => format!("mail {kind:?} {level}"),
                Action::Acknowledged { by, .. } => format!("ack {by}"),
                Action::EtaSet { .. } => "eta".into(),
                Action::CustomerPhase { because_of_eta, .. } => {
                    format!("customers (eta: {because_of_eta})")
                }
                Action::CustomerUpdate { .. } => "customers update".into(),
                Action::Posted {
                    update, customers, ..
                } => format!("posted {} customers {customers}", update.state.as_str()),
                Action::AlsoAffected { root, affected, .. } => {
                    format!("also affected {root} {affected}")
                }
                Action::Resolve {
                    by,
                    customers,
                    staff,
                    ..
                } => format!(
                    "resolve by {by:?} customers {customers} staff {}",
                    staff.join(",")
                ),
            };
            (t.as_secs(), what)
        })
        .collect()
}

#[test]
fn a_three_hour_outage_escalates_tells_customers_and_recovers() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 10 * MIN, true, true);
    assert_eq!(sim.status(), Status::Up);
    assert!(sim.log.is_empty());

    // The database stops answering at 10:00; the third failed run (10:60) opens it.
    sim.at(10 * MIN);
    sim.probe("db", false);
    assert_eq!(sim.status(), Status::Suspect);
    sim.run(
        10 * MIN + Duration::from_secs(30),
        3 * HOUR + 30 * MIN,
        true,
        false,
    );
    assert_eq!(sim.status(), Status::Down);
    sim.run(3 * HOUR + 30 * MIN, 3 * HOUR + 32 * MIN, true, true);
    assert_eq!(sim.status(), Status::Up);

    assert_eq!(
        kinds(&sim.log),
        vec![
            (660, "open".to_string()),
            (660, "mail Opened 0".into()),
            (1500, "mail Escalated 1".into()), // 10:00 + 15 min, at the next run
            (4200, "mail Escalated 2".into()), // 10:00 + 1 h
            (11400, "customers (eta: false)".into()), // 10:00 + 3 h
            (12630, "resolve by None customers true staff oncall@example.com,lead@example.com,staff@example.com".into()),
        ]
    );
    match &sim.log[0].1 {
        Action::Open {
            started, reasons, ..
        } => {
            assert_eq!(
                *started,
                t0() + 10 * MIN,
                "the outage began at the first failure"
            );
            assert_eq!(
                reasons.get("db").map(|r| r.to_string()).as_deref(),
                Some("connection refused")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn acknowledgement_stops_escalation_and_an_eta_past_the_threshold_starts_the_customer_phase_at_once()
 {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 2 * MIN, true, false);
    sim.at(5 * MIN);
    assert_eq!(
        kinds(
            &sim.send(Event::Ack { by: "anna".into() })
                .iter()
                .map(|a| (Duration::ZERO, a.clone()))
                .collect::<Vec<_>>()
        ),
        vec![(0, "ack anna".to_string())]
    );
    assert!(
        sim.send(Event::Ack { by: "bob".into() }).is_empty(),
        "acknowledged once"
    );
    sim.run(5 * MIN, 2 * HOUR, true, false);
    assert!(
        !kinds(&sim.log)
            .iter()
            .any(|(_, k)| k.starts_with("mail Escalated")),
        "{:?}",
        kinds(&sim.log)
    );

    // An ETA 2.5 h from now puts the expected end 2 h 30 past a start 2 h ago: beyond 3 h.
    sim.at(2 * HOUR);
    let actions = sim.send(Event::Eta {
        eta: sim.now + 150 * MIN,
        by: "anna".into(),
    });
    assert!(matches!(actions[0], Action::EtaSet { .. }));
    assert!(
        matches!(
            actions[1],
            Action::CustomerPhase {
                because_of_eta: true,
                eta: Some(_),
                ..
            }
        ),
        "{actions:?}"
    );
    // A later ETA change is an update to customers, once `update_every` (30 min) has
    // passed since they were last told; two changes in that time make one update.
    sim.at(2 * HOUR + 10 * MIN);
    let actions = sim.send(Event::Eta {
        eta: sim.now + 3 * HOUR,
        by: "anna".into(),
    });
    assert_eq!(actions.len(), 1, "held back: {actions:?}");
    sim.at(2 * HOUR + 20 * MIN);
    let last_eta = sim.now + 4 * HOUR;
    sim.send(Event::Eta {
        eta: last_eta,
        by: "anna".into(),
    });
    sim.at(2 * HOUR + 29 * MIN);
    assert!(sim.send(Event::Tick).is_empty());
    sim.at(2 * HOUR + 30 * MIN);
    assert_eq!(
        sim.send(Event::Tick),
        vec![Action::CustomerUpdate {
            id: 1,
            eta: Some(last_eta),
            next_update: None
        }]
    );
    sim.at(3 * HOUR);
    assert!(sim.send(Event::Tick).is_empty(), "told once");
}

#[test]
fn staff_are_reminded_once_before_each_promise_falls_due() {
    let mut sim = Sim::new(Policy {
        remind_before: 15 * MIN,
        ..policy()
    });
    // Customers are told at 3 h, promised an update at 4 h: staff hear at 3 h 45 min.
    sim.run(Duration::ZERO, 3 * HOUR + 50 * MIN, false, true);
    let due: Vec<(u64, Vec<String>)> = sim
        .log
        .iter()
        .filter_map(|(t, a)| match a {
            Action::MailStaff {
                kind: StaffMailKind::DueSoon,
                to,
                ..
            } => Some((t.as_secs() / 60, to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        due,
        vec![(
            225,
            vec![
                "oncall@example.com".to_string(),
                "lead@example.com".to_string(),
                "staff@example.com".to_string()
            ]
        )],
        "once, to everyone paged so far"
    );
    // A new ETA (5 h) moves the promise: one more reminder before it, none twice.
    sim.at(3 * HOUR + 55 * MIN);
    sim.send(Event::Eta {
        eta: t0() + 5 * HOUR,
        by: "anna".into(),
    });
    sim.run(3 * HOUR + 56 * MIN, 4 * HOUR + 59 * MIN, false, true);
    let count = |sim: &Sim| {
        sim.log
            .iter()
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::MailStaff {
                        kind: StaffMailKind::DueSoon,
                        ..
                    }
                )
            })
            .map(|(t, _)| t.as_secs() / 60)
            .collect::<Vec<_>>()
    };
    assert_eq!(count(&sim), vec![225, 285]);
    // Staff's own update, mailed just before the ETA, counts as an update: the generated
    // one for the broken ETA waits `update_every` (30 min) after it, promises the next
    // hour (6:29), and staff are reminded 15 min before that.
    sim.at(4 * HOUR + 59 * MIN);
    sim.send(Event::Update {
        update: tocsin::incident::PublicUpdate {
            state: tocsin::incident::UpdateState::Identified,
            text: "The disk array is rebuilt; an hour more.".into(),
            texts: BTreeMap::new(),
            by: "anna".into(),
        },
        notify: true,
    });
    sim.run(5 * HOUR, 6 * HOUR + 20 * MIN, false, true);
    assert_eq!(count(&sim), vec![225, 285, 374]);
    // Without remind_before, nothing.
    let mut quiet = Sim::new(policy());
    quiet.run(Duration::ZERO, 3 * HOUR + 50 * MIN, false, true);
    assert!(count(&quiet).is_empty());
}

#[test]
fn without_an_eta_customers_are_promised_an_update_and_get_it_on_time() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 3 * HOUR + MIN, false, true);
    let phase: Vec<&Action> = sim
        .log
        .iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, Action::CustomerPhase { .. }))
        .collect();
    // The failures began at t=0, so the phase starts at 3 h with a promise for 4 h.
    assert_eq!(
        phase,
        vec![&Action::CustomerPhase {
            id: 1,
            eta: None,
            next_update: Some(t0() + 4 * HOUR),
            because_of_eta: false
        }]
    );
    // Still down when the promised time comes: an update, promising the next hour.
    sim.run(3 * HOUR + MIN, 5 * HOUR + MIN, false, true);
    let updates: Vec<(u64, Action)> = sim
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::CustomerUpdate { .. }))
        .map(|(t, a)| (t.as_secs() / 60, a.clone()))
        .collect();
    assert_eq!(
        updates,
        vec![
            (
                240,
                Action::CustomerUpdate {
                    id: 1,
                    eta: None,
                    next_update: Some(t0() + 5 * HOUR)
                }
            ),
            (
                300,
                Action::CustomerUpdate {
                    id: 1,
                    eta: None,
                    next_update: Some(t0() + 6 * HOUR)
                }
            ),
        ]
    );
    // An ETA that passes while still down is a broken promise: customers hear at once.
    sim.at(5 * HOUR + 31 * MIN);
    sim.send(Event::Eta {
        eta: t0() + 5 * HOUR + 45 * MIN,
        by: "anna".into(),
    });
    sim.run(5 * HOUR + 31 * MIN, 6 * HOUR + 30 * MIN, false, true);
    let late: Vec<(u64, Option<SystemTime>, Option<SystemTime>)> = sim
        .log
        .iter()
        .filter_map(|(t, a)| match a {
            Action::CustomerUpdate {
                eta, next_update, ..
            } if t.as_secs() > 300 * 60 => Some((t.as_secs() / 60, *eta, *next_update)),
            _ => None,
        })
        .collect();
    assert_eq!(
        late,
        vec![
            (331, Some(t0() + 5 * HOUR + 45 * MIN), None),
            (361, None, Some(t0() + 7 * HOUR + MIN)),
        ],
        "the ETA change at 5:31 is told at once (30 min since 5:00); at 6:01 (30 min after the last update) the missed ETA"
    );
}

#[test]
fn no_update_goes_out_while_the_canary_guard_holds() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 3 * HOUR + MIN, false, true);
    sim.at(3 * HOUR + 2 * MIN);
    sim.send(Event::Canary { down: true });
    sim.run(3 * HOUR + 2 * MIN, 4 * HOUR + 30 * MIN, false, true);
    assert!(
        !sim.log
            .iter()
            .any(|(_, a)| matches!(a, Action::CustomerUpdate { .. })),
        "held while blind"
    );
    sim.at(4 * HOUR + 30 * MIN);
    sim.send(Event::Canary { down: false });
    assert!(
        sim.log
            .iter()
            .any(|(t, a)| *t == 4 * HOUR + 30 * MIN && matches!(a, Action::CustomerUpdate { .. }))
    );
}

#[test]
fn a_short_eta_does_not_start_the_customer_phase_and_a_past_one_is_ignored() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 2 * MIN, false, true);
    sim.at(10 * MIN);
    let a = sim.send(Event::Eta {
        eta: sim.now + HOUR,
        by: "x".into(),
    });
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(
        sim.send(Event::Eta {
            eta: sim.now - MIN,
            by: "x".into()
        })
        .is_empty()
    );
}

#[test]
fn staff_resolve_closes_at_once_and_a_still_failing_service_must_fail_again() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 2 * MIN, false, true);
    sim.at(3 * MIN);
    let a = sim.send(Event::Resolve { by: "anna".into() });
    assert!(matches!(&a[0], Action::Resolve { by: Some(b), customers: false, .. } if b == "anna"));
    assert_eq!(sim.status(), Status::Up);
    sim.at(3 * MIN + Duration::from_secs(30));
    assert!(sim.probe("home", false).is_empty());
    sim.at(3 * MIN + Duration::from_secs(60));
    assert!(sim.probe("home", false).is_empty());
    sim.at(3 * MIN + Duration::from_secs(90));
    assert!(matches!(
        sim.probe("home", false)[0],
        Action::Open { id: 2, .. }
    ));
}

#[test]
fn maintenance_opens_nothing_and_an_outage_outlasting_it_is_timed_from_its_end() {
    let mut p = policy();
    p.maintenance = vec![Window {
        start: t0() + 10 * MIN,
        end: t0() + 70 * MIN,
    }];
    let mut sim = Sim::new(p);
    sim.run(10 * MIN, 70 * MIN, false, true);
    assert!(sim.log.is_empty(), "{:?}", kinds(&sim.log));
    assert_eq!(sim.status(), Status::Maintenance);
    sim.run(70 * MIN, 72 * MIN, false, true);
    match &sim.log[0].1 {
        Action::Open { started, .. } => assert_eq!(
            *started,
            t0() + 70 * MIN,
            "from the window's end, not its start"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn while_the_canaries_are_down_nothing_opens_and_customers_hear_nothing() {
    let mut sim = Sim::new(policy());
    sim.send(Event::Canary { down: true });
    sim.run(Duration::ZERO, 10 * MIN, false, false);
    assert!(sim.log.is_empty());
    sim.at(10 * MIN);
    sim.send(Event::Canary { down: false });
    sim.run(10 * MIN, 11 * MIN, false, false);
    assert!(matches!(sim.log[0].1, Action::Open { .. }));
    // The canaries fail again after the incident opened: the customer phase waits.
    sim.at(11 * MIN);
    sim.send(Event::Canary { down: true });
    sim.run(11 * MIN, 4 * HOUR, false, false);
    assert!(
        !kinds(&sim.log)
            .iter()
            .any(|(_, k)| k.starts_with("customers"))
    );
    sim.at(4 * HOUR);
    let a = sim.send(Event::Canary { down: false });
    assert!(
        matches!(a.last(), Some(Action::CustomerPhase { .. })),
        "{a:?}"
    );
}

#[test]
fn flapping_holds_the_service_and_tells_staff_once() {
    let mut p = policy();
    p.probes = vec!["home".into()];
    p.failure_threshold = 1;
    p.success_threshold = 1;
    let mut sim = Sim::new(p);
    let mut t = Duration::ZERO;
    for i in 0..60 {
        sim.at(t);
        sim.probe("home", i % 2 == 0);
        t += Duration::from_secs(30);
    }
    let log = kinds(&sim.log);
    assert_eq!(
        log.iter().filter(|(_, k)| k == "mail Flapping 0").count(),
        1,
        "{log:?}"
    );
    let opens = log.iter().filter(|(_, k)| k == "open").count();
    assert!(
        opens <= 11,
        "flips before the history filled, then held: {opens}"
    );
    // Stable again: flapping ends and the service settles.
    for _ in 0..30 {
        sim.at(t);
        sim.probe("home", true);
        t += Duration::from_secs(30);
    }
    assert!(!sim.state.flapping);
    assert_eq!(sim.status(), Status::Up);
}

// ------------------------------------------------------------------ properties

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Probe(u8, bool),
    Ack,
    Eta(u64),
    Resolve,
    Canary(bool),
    /// 0: clear, 1: a dependency failing, 2: a dependency's incident open.
    Upstream(u8),
    /// Staff post an update: its state (3: resolved), and whether to mail it.
    Update(u8, bool),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (1u64..1800).prop_map(Step::Wait),
            8 => (0u8..2, proptest::bool::weighted(0.6)).prop_map(|(p, ok)| Step::Probe(p, ok)),
            1 => Just(Step::Ack),
            1 => (0u64..20_000).prop_map(Step::Eta),
            1 => Just(Step::Resolve),
            1 => proptest::bool::weighted(0.2).prop_map(Step::Canary),
            1 => (0u8..3).prop_map(Step::Upstream),
            1 => (0u8..4, proptest::bool::ANY).prop_map(|(s, n)| Step::Update(s, n)),
        ],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn decisions_are_consistent_over_any_sequence(seq in steps()) {
        let p = reminding(30 * MIN);
        let mut state = ServiceState::new();
        let mut now = t0();
        let mut open: Option<(u64, SystemTime)> = None;
        let mut seen_ids = BTreeSet::new();
        let mut mailed_levels: BTreeSet<(u64, usize)> = BTreeSet::new();
        let mut customer_phase: BTreeSet<u64> = BTreeSet::new();
        let mut acked: BTreeMap<u64, bool> = BTreeMap::new();
        let mut eta: Option<SystemTime> = None;
        let mut canary_down = false;
        let mut events: Vec<Event> = seq.iter().filter_map(|s| match s {
            Step::Wait(_) => None,
            Step::Probe(i, ok) => Some(Event::Probe { probe: p.probes[*i as usize].clone(), ok: *ok, reason: None, confirmed: true }),
            Step::Ack => Some(Event::Ack { by: "a".into() }),
            Step::Eta(secs) => Some(Event::Eta { eta: SystemTime::UNIX_EPOCH + Duration::from_secs(*secs), by: "a".into() }), // rebased below
            Step::Resolve => Some(Event::Resolve { by: "a".into() }),
            Step::Canary(down) => Some(Event::Canary { down: *down }),
            Step::Upstream(u) => Some(Event::Upstream(match u {
                0 => tocsin::incident::Upstream::Clear,
                1 => tocsin::incident::Upstream::Failing("db".into()),
                _ => tocsin::incident::Upstream::Down("db".into()),
            })),
            Step::Update(state, notify) => Some(Event::Update {
                update: tocsin::incident::PublicUpdate {
                    state: tocsin::incident::UpdateState::ALL[*state as usize],
                    text: "We found the cause.".into(),
                    texts: BTreeMap::new(),
                    by: "a".into(),
                },
                notify: *notify,
            }),
        }).collect();
        // Then everything recovers for long enough to end any incident and any flapping.
        events.push(Event::Canary { down: false });
        events.push(Event::Upstream(tocsin::incident::Upstream::Clear));
        let settle = events.len();
        for _ in 0..30 {
            for probe in &p.probes {
                events.push(Event::Probe { probe: probe.clone(), ok: true, reason: None, confirmed: true });
            }
        }
        let mut waits = seq.iter().filter_map(|s| if let Step::Wait(w) = s { Some(*w) } else { None }).cycle();
        for (n, mut e) in events.into_iter().enumerate() {
            now += Duration::from_secs(if n < settle { waits.next().unwrap_or(30) } else { 30 });
            if let Event::Eta { eta: ref mut at, .. } = e {
                *at = now + at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            }
            if let Event::Canary { down } = e { canary_down = down; }
            let (next, actions) = step(&state, &p, e.clone(), now);
            for a in &actions {
                match a {
                    Action::Open { id, started, .. } => {
                        prop_assert_eq!(&next.upstream, &tocsin::incident::Upstream::Clear, "never an incident while a dependency is down or failing toward one");
                        prop_assert!(open.is_none(), "never two open incidents");
                        prop_assert!(seen_ids.insert(*id), "ids are never reused");
                        prop_assert!(!canary_down, "nothing opens while the canaries are down");
                        prop_assert!(*started <= now);
                        open = Some((*id, *started));
                        eta = None;
                    }
                    Action::MailStaff { id: Some(id), kind: StaffMailKind::Reminder, level, .. } => {
                        prop_assert_eq!(Some(*id), open.map(|o| o.0));
                        prop_assert_eq!(*level, p.levels.len() - 1, "reminders go to the last level");
                        prop_assert!(mailed_levels.contains(&(*id, *level)), "after the last level was mailed");
                        prop_assert!(!acked.get(id).copied().unwrap_or(false), "no reminder after ack");
                    }
                    Action::MailStaff { id: Some(id), kind, level, .. } if *kind != StaffMailKind::Flapping => {
                        prop_assert_eq!(Some(*id), open.map(|o| o.0));
                        prop_assert!(mailed_levels.insert((*id, *level)), "each level mailed once");
                        prop_assert!(*level == 0 || mailed_levels.contains(&(*id, level - 1)), "levels in order");
                        prop_assert!(!acked.get(id).copied().unwrap_or(false), "no escalation after ack");
                        let (_, started) = open.unwrap();
                        prop_assert!(now.duration_since(started).unwrap() >= p.levels[*level].after);
                    }
                    Action::MailStaff { .. } => {}
                    Action::AlsoAffected { root, affected, .. } => {
                        prop_assert!(open.is_none(), "attached only without an incident of its own");
                        if *affected {
                            prop_assert_eq!(&next.upstream, &tocsin::incident::Upstream::Down(root.clone()));
                            prop_assert_eq!(next.attached.as_ref(), Some(root));
                        }
                    }
                    Action::Acknowledged { id, .. } => { acked.insert(*id, true); }
                    Action::EtaSet { eta: e, .. } => { eta = Some(*e); }
                    Action::CustomerPhase { id, .. } => {
                        prop_assert_eq!(Some(*id), open.map(|o| o.0));
                        prop_assert!(customer_phase.insert(*id), "the customer phase starts once");
                        prop_assert!(!canary_down, "customers hear nothing while the canaries are down");
                        let (_, started) = open.unwrap();
                        let age = now.duration_since(started).unwrap();
                        let justified = eta.is_some_and(|e| e.duration_since(started).unwrap_or_default() >= p.customer_threshold);
                        prop_assert!(age >= p.customer_threshold || justified, "never before the threshold without an ETA that justifies it");
                    }
                    Action::CustomerUpdate { id, .. } => prop_assert!(customer_phase.contains(id)),
                    Action::Posted { id, update, customers, eta: promised, next_update } => {
                        prop_assert_eq!(Some(*id), open.map(|o| o.0), "an update belongs to the open incident");
                        let Event::Update { notify, .. } = &e else { unreachable!() };
                        let resolving = update.state == tocsin::incident::UpdateState::Resolved;
                        prop_assert_eq!(*customers, *notify && customer_phase.contains(id) && !resolving && !canary_down,
                            "mailed exactly when asked, once customers were told, unless it resolves (the recovery mail carries it)");
                        prop_assert_eq!(*customers, promised.is_some() || next_update.is_some(), "a mailed update makes a promise");
                        if resolving {
                            prop_assert!(actions.iter().any(|a| matches!(a, Action::Resolve { id: r, .. } if r == id)), "a resolving update resolves");
                        }
                    }
                    Action::Resolve { id, started, customers, .. } => {
                        prop_assert_eq!(Some((*id, *started)), open, "recovery follows an opened incident");
                        prop_assert_eq!(*customers, customer_phase.contains(id));
                        open = None;
                    }
                }
            }
            state = next;
        }
        prop_assert!(open.is_none(), "after a long healthy spell every incident is resolved");
        prop_assert!(state.incident.is_none());
        prop_assert!(state.attached.is_none(), "and nothing stays attached");
    }
}

/// The log and the drill write decisions as one readable line: RFC 3339 times, field
/// names in words, never Rust's `Debug` (`SystemTime { tv_sec: ... }`).
#[test]
fn a_decision_reads_as_one_line_with_rfc_3339_times() {
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_950_000 + s);
    let lines: Vec<String> = [
        Action::Open {
            id: 4,
            started: at(0),
            reasons: [("home".to_string(), tocsin::probe::Reason::ConnectionRefused)].into(),
        },
        Action::MailStaff {
            id: Some(4),
            kind: tocsin::incident::StaffMailKind::Escalated,
            level: 1,
            to: vec!["lead@example.com".into()],
        },
        Action::CustomerPhase {
            id: 4,
            eta: Some(at(3 * 3600)),
            next_update: None,
            because_of_eta: true,
        },
        Action::Resolve {
            id: 4,
            started: at(0),
            ended: at(5400),
            by: Some("alice".into()),
            staff: vec!["oncall@example.com".into()],
            customers: true,
        },
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    assert_eq!(
        lines,
        [
            "incident 4 opened, failing since 2026-11-29T11:00:00Z; home: connection refused",
            "staff mail (escalated, level 1, incident 4) to lead@example.com",
            "incident 4: customers are told (the ETA is past the threshold), recovery expected by 2026-11-29T14:00:00Z",
            "incident 4 resolved at 2026-11-29T12:30:00Z after 1h 30m by alice; staff told: oncall@example.com; customers told",
        ]
    );
}

/// The policy with reminders at its last level every `every`.
fn reminding(every: Duration) -> Policy {
    let mut p = policy();
    p.levels.last_mut().unwrap().repeat_every = Some(every);
    p
}

#[test]
fn the_last_level_is_reminded_until_acknowledged() {
    let mut sim = Sim::new(reminding(4 * HOUR));
    // Down from 0:00, opened at 1:00 (three failed runs); level 1 at 0:15 and level 2 at
    // 1:00 after the start; reminders at 5:00 and 9:00; acknowledged at 10:00: none at
    // 13:00.
    sim.run(Duration::ZERO, 10 * HOUR, true, false);
    sim.at(10 * HOUR);
    sim.send(Event::Ack { by: "anna".into() });
    sim.run(10 * HOUR, 14 * HOUR, true, false);
    let mails: Vec<(u64, String)> = kinds(&sim.log)
        .into_iter()
        .filter(|(_, k)| k.starts_with("mail"))
        .collect();
    assert_eq!(
        mails,
        [
            (60, "mail Opened 0".to_string()),
            (15 * 60, "mail Escalated 1".to_string()),
            (3600, "mail Escalated 2".to_string()),
            (5 * 3600, "mail Reminder 2".to_string()),
            (9 * 3600, "mail Reminder 2".to_string()),
        ]
    );
    let reminder = sim
        .log
        .iter()
        .find_map(|(_, a)| match a {
            Action::MailStaff {
                kind: StaffMailKind::Reminder,
                to,
                ..
            } => Some(to.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(reminder, ["staff@example.com", "oncall@example.com"]);
}

#[test]
fn after_a_long_pause_one_reminder_is_sent_not_every_missed_one() {
    let mut sim = Sim::new(reminding(HOUR));
    sim.run(Duration::ZERO, 2 * HOUR + 30 * MIN, true, false);
    let before = sim.log.len();
    // Nothing steps the machine for ten hours (tocsin was stopped).
    sim.at(12 * HOUR + 30 * MIN);
    let reminders = |actions: Vec<Action>| {
        actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::MailStaff {
                        kind: StaffMailKind::Reminder,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(reminders(sim.send(Event::Tick)), 1);
    // The next one an hour after the last that fell due (12:00 + 1h), not at once.
    sim.at(12 * HOUR + 59 * MIN);
    assert_eq!(reminders(sim.send(Event::Tick)), 0);
    sim.at(13 * HOUR);
    assert_eq!(reminders(sim.send(Event::Tick)), 1);
    assert!(sim.log.len() > before);
}

#[test]
fn acknowledging_and_setting_an_eta_name_everyone_told() {
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 20 * MIN, true, false);
    let acked = sim.send(Event::Ack { by: "anna".into() });
    match &acked[..] {
        [Action::Acknowledged { staff, .. }] => {
            assert_eq!(staff, &["oncall@example.com", "lead@example.com"])
        }
        other => panic!("{other:?}"),
    }
    let eta = sim.send(Event::Eta {
        eta: sim.now + HOUR,
        by: "anna".into(),
    });
    assert!(
        matches!(&eta[..], [Action::EtaSet { staff, .. }] if staff.len() == 2),
        "{eta:?}"
    );
}

// ------------------------------------------------------------------ dependencies

fn upstream(u: tocsin::incident::Upstream) -> Event {
    Event::Upstream(u)
}

#[test]
fn a_failure_while_a_dependency_is_down_is_attached_to_its_incident() {
    use tocsin::incident::Upstream;
    let mut sim = Sim::new(policy());
    sim.send(upstream(Upstream::Down("db".into())));
    sim.run(Duration::ZERO, 10 * MIN, false, true);
    assert_eq!(sim.status(), Status::Affected);
    assert!(sim.state.incident.is_none());
    let log = kinds(&sim.log);
    assert!(
        log.iter()
            .all(|(_, k)| !k.starts_with("open") && !k.starts_with("mail")),
        "{log:?}"
    );
    let attached: Vec<&Action> = sim
        .log
        .iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, Action::AlsoAffected { .. }))
        .collect();
    assert_eq!(attached.len(), 1, "told once: {attached:?}");
    assert!(
        matches!(attached[0], Action::AlsoAffected { root, affected: true, reasons } if root == "db" && reasons.contains_key("home"))
    );
    // It recovers while the database is still down: detached, said once.
    sim.run(10 * MIN, 12 * MIN, true, true);
    assert_eq!(sim.status(), Status::Up);
    assert!(matches!(
        sim.log.last(),
        Some((
            _,
            Action::AlsoAffected {
                affected: false,
                ..
            }
        ))
    ));
    // Hours on, the database back: nothing of its own ever opened.
    sim.at(5 * HOUR);
    sim.send(upstream(Upstream::Clear));
    assert!(sim.state.incident.is_none());
}

#[test]
fn still_failing_when_the_root_recovers_it_opens_its_own_incident_timed_from_its_first_failure() {
    use tocsin::incident::Upstream;
    let mut sim = Sim::new(policy());
    sim.send(upstream(Upstream::Down("db".into())));
    sim.run(Duration::ZERO, 40 * MIN, false, true);
    sim.at(40 * MIN);
    let actions = sim.send(upstream(Upstream::Clear));
    match &actions[..] {
        [
            Action::Open { started, .. },
            Action::MailStaff {
                kind: StaffMailKind::Opened,
                ..
            },
            ..,
        ] => {
            assert_eq!(*started, t0(), "from its first failure, 40 minutes ago")
        }
        other => panic!("{other:?}"),
    }
    // Its escalation counts from that start: level 1 (15 min) is due at once.
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::MailStaff {
                kind: StaffMailKind::Escalated,
                level: 1,
                ..
            }
        )),
        "{actions:?}"
    );
}

#[test]
fn a_dependency_failing_toward_an_incident_holds_the_opening() {
    use tocsin::incident::Upstream;
    let mut sim = Sim::new(policy());
    // The database fails too but has not opened yet: likely the same outage, seen sooner.
    sim.send(upstream(Upstream::Failing("db".into())));
    sim.run(Duration::ZERO, 3 * MIN, false, true);
    assert!(sim.state.incident.is_none());
    assert_eq!(sim.status(), Status::Suspect);
    // The database opens its incident: attached.
    sim.at(3 * MIN);
    sim.send(upstream(Upstream::Down("db".into())));
    assert_eq!(sim.status(), Status::Affected);
    // Or, another time, the database recovers without one: this opens at once.
    let mut other = Sim::new(policy());
    other.send(upstream(Upstream::Failing("db".into())));
    other.run(Duration::ZERO, 3 * MIN, false, true);
    other.at(3 * MIN);
    let opened = other.send(upstream(Upstream::Clear));
    assert!(
        matches!(opened.first(), Some(Action::Open { started, .. }) if *started == t0()),
        "{opened:?}"
    );
}

#[test]
fn an_incident_already_open_stays_when_a_dependency_goes_down() {
    use tocsin::incident::Upstream;
    let mut sim = Sim::new(policy());
    sim.run(Duration::ZERO, 5 * MIN, false, true);
    assert!(sim.state.incident.is_some());
    sim.send(upstream(Upstream::Down("db".into())));
    sim.run(5 * MIN, 10 * MIN, false, true);
    assert!(sim.state.incident.is_some());
    assert_eq!(sim.status(), Status::Down);
}

/// A failure too few locations could confirm opens an incident for staff, never tells
/// customers however long it lasts; once a quorum confirms it, customers are told at once
/// (the threshold is long past), and the run it confirmed stays confirmed.
#[test]
fn an_unconfirmed_failure_reaches_staff_never_customers() {
    let mut sim = Sim::new(policy());
    let mut t = Duration::ZERO;
    while t < 5 * HOUR {
        sim.at(t);
        sim.voted("home", false, false);
        sim.send(Event::Tick);
        t += Duration::from_secs(30);
    }
    let k = kinds(&sim.log);
    assert_eq!(k[0], (60, "open".to_string()), "{k:?}");
    assert!(k.iter().any(|(_, w)| w == "mail Escalated 2"), "{k:?}");
    assert!(!k.iter().any(|(_, w)| w.starts_with("customers")), "{k:?}");
    let inc = sim.state.incident.as_ref().unwrap();
    assert!(!inc.confirmed);
    assert!(
        inc.reasons["home"]
            .to_string()
            .contains("no recent result from fra, sto")
    );

    // A quorum sees it now: customers hear of it on this tick.
    sim.at(5 * HOUR);
    let out = sim.voted("home", false, true);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CustomerPhase { .. })),
        "{out:?}"
    );
    assert!(sim.state.incident.as_ref().unwrap().confirmed);
    // Locations lost again later do not take it back.
    sim.at(5 * HOUR + 30 * Duration::from_secs(1));
    sim.voted("home", false, false);
    assert!(sim.state.incident.as_ref().unwrap().confirmed);
}

/// A run that began unconfirmed and was confirmed before the threshold opens a confirmed
/// incident; states stored before votes existed read as confirmed.
#[test]
fn a_confirmed_run_opens_a_confirmed_incident_and_old_states_read_confirmed() {
    let mut sim = Sim::new(policy());
    sim.at(Duration::ZERO);
    sim.voted("home", false, false);
    sim.at(Duration::from_secs(30));
    sim.voted("home", false, true);
    sim.at(Duration::from_secs(60));
    sim.voted("home", false, false);
    let inc = sim.state.incident.as_ref().expect("opened");
    assert!(inc.confirmed);
    sim.at(3 * HOUR);
    let out = sim.send(Event::Tick);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CustomerPhase { .. })),
        "{out:?}"
    );

    let mut json = serde_json::to_value(&sim.state).unwrap();
    json["incident"]
        .as_object_mut()
        .unwrap()
        .remove("confirmed");
    let back: ServiceState = serde_json::from_value(json).unwrap();
    assert!(back.incident.unwrap().confirmed);
}
