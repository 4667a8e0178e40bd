//! Three `tocsin run` processes as three locations voting on one PostgreSQL
//! (`cluster.locations`), each probing a real target of its own (what the target looks
//! like from that location), with a real SMTP server: a failure seen from one location
//! opens nothing, seen from two it opens an incident that names them; a location in a
//! network namespace that reaches PostgreSQL but not the target votes "failing", and cut
//! off from PostgreSQL goes absent and is reported, once each way; with too few
//! locations left, a failure reaches staff marked unconfirmed and never customers.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support;
use crate::support::postgres::Postgres;

const TOKEN: &str = "votes-test-token";

use support::instance::Instance as Node;

/// `location`'s config: the shared store at `store`, the service's probe aimed at
/// `target` (the target as this location sees it).
fn node(dir: &Path, location: &'static str, store: &str, target: &str, smtp: u16) -> Node {
    let port = support::free_port();
    let cfg = dir.join(format!("{location}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: {data}
allow_insecure_links: true
store: {store}
location: {location}
cluster:
  lease: 3s
  locations: [waw, fra, sto]
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 8s
    audience: customers
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: {csv} }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp}\"
  allow_plain: true
  timeout: 5s
",
            data = dir.join(format!("var-{location}")).display(),
            csv = dir.join("customers.csv").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("customers.csv"),
        "email,name\nann@example.com,Ann\nbob@example.com,Bob\n",
    )
    .unwrap();
    Node::new(
        location,
        port,
        cfg,
        &[("RUST_LOG", "info"), ("TOCSIN_API_TOKEN", TOKEN)],
    )
}

/// Waits until `location`'s standing on the leader is `up`.
async fn location_up(leader: &Node, location: &str, up: bool, within: Duration, nodes: &[&Node]) {
    let series = format!("tocsin_location_up{{location=\"{location}\"}}");
    support::until_metric(leader.port, &series, within, &|| logs(nodes), |v| {
        v == if up { 1.0 } else { 0.0 }
    })
    .await;
}

fn logs(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("== {}\n{}", n.location, n.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The leader's view of the probe `home`: its votes' summary.
async fn summary(leader: &Node) -> String {
    let rows = support::api_get(leader.port, "/api/v1/probes", TOKEN).await;
    let rows: serde_json::Value = serde_json::from_str(&rows).unwrap_or_default();
    rows[0]["votes"]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_summary(leader: &Node, want: &str, nodes: &[&Node]) {
    support::until_async(
        &format!("the leader's tally to read {want:?}"),
        Duration::from_secs(30),
        &|| logs(nodes),
        || async { summary(leader).await == want },
    )
    .await;
}

/// Staff mails so far (subject, text), in arrival order.
fn mails(smtp: &support::Smtp) -> Vec<(String, String, String)> {
    smtp.mails()
        .iter()
        .filter_map(|raw| {
            let m = mail_parser::MessageParser::default().parse(raw.as_bytes())?;
            let to = raw
                .lines()
                .find_map(|l| l.strip_prefix("X-Envelope-To: "))
                .unwrap_or_default()
                .to_string();
            Some((
                to,
                m.subject().unwrap_or_default().to_string(),
                m.body_text(0).unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

async fn targets() -> Vec<(std::net::SocketAddr, Arc<AtomicBool>)> {
    let mut t = Vec::new();
    for _ in 0..3 {
        t.push(support::switchable_target().await);
    }
    t
}

/// One location failing is outvoted; two open the incident, and staff mail, the API and
/// the CLI name both; customers are told once the threshold passes. With two locations
/// gone, the one left opens an unconfirmed incident for staff and customers hear nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_counts_only_when_a_quorum_of_locations_sees_it() {
    let pg = Postgres::start();
    let url = pg.database("votes");
    let smtp = support::Smtp::start(None);
    let dir = tempfile::tempdir().unwrap();
    let t = targets().await;
    let mut waw = node(dir.path(), "waw", &url, &t[0].0.to_string(), smtp.port);
    let mut fra = node(dir.path(), "fra", &url, &t[1].0.to_string(), smtp.port);
    let mut sto = node(dir.path(), "sto", &url, &t[2].0.to_string(), smtp.port);
    // waw starts first and leads.
    waw.start(None);
    support::until_async("waw leads", Duration::from_secs(30), &|| waw.log(), || {
        waw.leads()
    })
    .await;
    fra.start(None);
    sto.start(None);
    for l in ["waw", "fra", "sto"] {
        location_up(&waw, l, true, Duration::from_secs(30), &[&waw, &fra, &sto]).await;
    }
    wait_summary(&waw, "ok from waw, fra, sto", &[&waw, &fra, &sto]).await;

    // Failing as seen from waw only: outvoted, for well past the failure threshold.
    t[0].1.store(false, Ordering::SeqCst);
    wait_summary(
        &waw,
        "failing from waw: status 503, expected 200-399; ok from fra, sto",
        &[&waw, &fra, &sto],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        mails(&smtp).is_empty(),
        "one location alone opened something: {:?}",
        mails(&smtp)
    );

    // From fra too: a quorum (2 of 3).
    t[1].1.store(false, Ordering::SeqCst);
    smtp.wait_for_text("is DOWN", 1, Duration::from_secs(30))
        .await;
    let down: Vec<_> = mails(&smtp)
        .into_iter()
        .filter(|(_, s, _)| s.contains("is DOWN"))
        .collect();
    assert_eq!(down.len(), 1, "{down:?}");
    assert!(
        down[0]
            .2
            .contains("failing from waw, fra: status 503, expected 200-399; ok from sto"),
        "the staff mail does not name the locations:\n{}",
        down[0].2
    );
    assert!(!down[0].2.contains("unconfirmed"), "{}", down[0].2);
    let shown = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["incident", "show", "shop", "--config"])
        .arg(&waw.cfg)
        .env("TOCSIN_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("failing from waw, fra"),
        "`tocsin incident show` does not name the locations:\n{shown}"
    );
    // Confirmed: customers are told after the threshold (8 s), and every location puts
    // the placeholder and the hotline announcement in place on its own host.
    smtp.wait_for_text("ann@example.com", 1, Duration::from_secs(30))
        .await;
    let files = |n: &Node| {
        let var = dir.path().join(format!("var-{}", n.location));
        [var.join("www/shop/index.html"), var.join("hotline/en.txt")]
    };
    for n in [&waw, &fra, &sto] {
        for f in files(n) {
            support::until(
                &format!("{} on {}", f.display(), n.location),
                Duration::from_secs(20),
                &|| logs(&[&waw, &fra, &sto]),
                || f.exists(),
            )
            .await;
        }
    }

    // Back everywhere: resolved, customers told of the recovery.
    t[0].1.store(true, Ordering::SeqCst);
    t[1].1.store(true, Ordering::SeqCst);
    smtp.wait_for_text("UP again", 1, Duration::from_secs(30))
        .await;
    smtp.wait_for_text("ann@example.com", 2, Duration::from_secs(30))
        .await;
    for n in [&waw, &fra, &sto] {
        for f in files(n) {
            support::until(
                &format!("{} withdrawn on {}", f.display(), n.location),
                Duration::from_secs(20),
                &|| logs(&[&waw, &fra, &sto]),
                || !f.exists(),
            )
            .await;
        }
    }

    // fra and sto gone: absent, staff told once. waw alone sees a failure: unconfirmed.
    fra.kill();
    sto.kill();
    // One notice or two (they may fall a second apart), each absence told.
    let absent = |smtp: &support::Smtp, loc: &str| {
        mails(smtp)
            .iter()
            .filter(|(_, s, _)| s.contains(&format!("{loc} is absent")))
            .count()
    };
    support::until(
        "fra and sto reported absent",
        Duration::from_secs(40),
        &|| format!("{:#?}", smtp.subjects()),
        || absent(&smtp, "fra") == 1 && absent(&smtp, "sto") == 1,
    )
    .await;
    let customers_before = smtp
        .subjects()
        .iter()
        .filter(|s| s.contains("ann@example.com"))
        .count();
    t[0].1.store(false, Ordering::SeqCst);
    smtp.wait_for_text("is DOWN", 2, Duration::from_secs(30))
        .await;
    let second = mails(&smtp)
        .into_iter()
        .filter(|(_, s, _)| s.contains("is DOWN"))
        .nth(1)
        .unwrap();
    assert!(
        second
            .2
            .contains("unconfirmed: 1 of the 2 locations a quorum needs"),
        "the staff mail does not say the incident is unconfirmed:\n{}",
        second.2
    );
    // Twice the customer threshold: still nothing to customers.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let customers_after = smtp
        .subjects()
        .iter()
        .filter(|s| s.contains("ann@example.com"))
        .count();
    assert_eq!(
        customers_before,
        customers_after,
        "customers were told of an unconfirmed failure: {:#?}",
        smtp.subjects()
    );
    // Each absence was told once, not again at every read.
    assert_eq!(
        (absent(&smtp, "fra"), absent(&smtp, "sto")),
        (1, 1),
        "{:#?}",
        smtp.subjects()
    );
    drop(waw);
}

/// A location in a network namespace of its own reaches PostgreSQL over a veth link but
/// not the target (it listens on the host's loopback): its vote is "failing", and opens
/// nothing against two that see the target. Cut off from PostgreSQL (the link down), it
/// goes absent and staff are told; with the link back, it is back, told once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_location_is_outvoted_and_one_cut_off_is_reported() {
    let ns = support::netns::Netns::linked();
    let (root_addr, _) = ns.link.clone().unwrap();
    let mut pg = Postgres::start();
    pg.also_listen(&root_addr);
    let url = pg.database("partition");
    let smtp = support::Smtp::start(None);
    let dir = tempfile::tempdir().unwrap();
    let t = targets().await;
    let mut waw = node(dir.path(), "waw", &url, &t[0].0.to_string(), smtp.port);
    let mut fra = node(dir.path(), "fra", &url, &t[1].0.to_string(), smtp.port);
    // sto aims at the same target as waw, which it cannot reach from its namespace.
    let mut sto = node(
        dir.path(),
        "sto",
        &pg.url_at(&root_addr, "partition"),
        &t[0].0.to_string(),
        smtp.port,
    );
    waw.start(None);
    support::until_async("waw leads", Duration::from_secs(30), &|| waw.log(), || {
        waw.leads()
    })
    .await;
    fra.start(None);
    sto.start(Some(&ns.name));
    let all = [&waw, &fra, &sto];
    for l in ["waw", "fra", "sto"] {
        location_up(&waw, l, true, Duration::from_secs(30), &all).await;
    }
    wait_summary(
        &waw,
        "failing from sto: connection refused; ok from waw, fra",
        &all,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(mails(&smtp).is_empty(), "{:?}", mails(&smtp));

    // The link down: sto cannot write; absent after its silence window, told once.
    let veth = ns_veth(&ns);
    link(&veth, "down");
    smtp.wait_for_text("sto is absent", 1, Duration::from_secs(40))
        .await;
    location_up(&waw, "sto", false, Duration::from_secs(5), &all).await;
    wait_summary(&waw, "ok from waw, fra; no recent result from sto", &all).await;

    // Back: told once.
    link(&veth, "up");
    smtp.wait_for_text("sto is back", 1, Duration::from_secs(60))
        .await;
    location_up(&waw, "sto", true, Duration::from_secs(5), &all).await;
    let notices: Vec<_> = mails(&smtp)
        .into_iter()
        .map(|(to, s, _)| format!("{to} | {s}"))
        .collect();
    assert_eq!(
        notices,
        [
            "oncall@example.com | [tocsin] locations: sto is absent (no results lately)",
            "oncall@example.com | [tocsin] locations: sto is back",
        ],
        "{}",
        logs(&all)
    );
    drop(sto);
}

/// The root side of `ns`'s veth pair.
fn ns_veth(ns: &support::netns::Netns) -> String {
    ns.veth_name().expect("a linked namespace")
}

fn link(dev: &str, state: &str) {
    let ok = Command::new("ip")
        .args(["link", "set", dev, state])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip link set {dev} {state}");
}
