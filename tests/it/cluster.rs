//! Several `tocsin run` processes on one PostgreSQL (`cluster:`, the three locations
//! voting), with a real target, a real SMTP server and a real webhook receiver: one
//! instance leads and the others stand by; a leader SIGKILLed in the middle of a
//! 5,000-recipient campaign is replaced and the campaign finished, each customer told
//! once (or within the stated in-flight bound); a leader SIGSTOPped past its lease sends
//! and records nothing when it wakes; the store gone is told once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::postgres::{PASSWORD, Postgres};

const TOKEN: &str = "cluster-test-token";
const LEASE: &str = "3s";

use support::instance::Instance as Node;

/// Writes `location`'s config (its own port and data_dir, the shared store) and starts it.
#[allow(clippy::too_many_arguments)]
fn node(
    dir: &Path,
    location: &'static str,
    store: &str,
    target: std::net::SocketAddr,
    smtp: u16,
    hook: Option<std::net::SocketAddr>,
    rate: u32,
) -> Node {
    let port = support::free_port();
    let hooks = hook
        .map(|h| {
            format!("webhooks:\n  - {{ url: \"http://{h}/hook\", secret_env: HOOK_SECRET }}\n")
        })
        .unwrap_or_default();
    let cfg = dir.join(format!("{location}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: {data}
allow_insecure_links: true
store: {store}
location: {location}
cluster: {{ lease: {LEASE}, locations: [waw, fra, sto] }}
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 1h
    audience: customers
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
    - {{ after: 20s, to: [lead@example.com] }}
audiences:
  customers: {{ csv: {csv} }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp}\"
  allow_plain: true
  timeout: 5s
  max_per_second: {rate}
  connections: 4
  max_campaign_size: 10000
{hooks}",
            data = dir.join(format!("var-{location}")).display(),
            csv = dir.join("customers.csv").display(),
        ),
    )
    .unwrap();
    let mut n = Node::new(
        location,
        port,
        cfg,
        &[
            ("RUST_LOG", "info,tocsin::cluster=debug"),
            ("TOCSIN_API_TOKEN", TOKEN),
            ("HOOK_SECRET", "hook-secret"),
        ],
    );
    n.start(None);
    n
}

fn customers(dir: &Path, n: usize) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("c{i}@example.com,Customer {i}\n"));
    }
    std::fs::write(dir.join("customers.csv"), csv).unwrap();
}

/// Waits until exactly one of `nodes` leads; its index.
async fn leader(nodes: &[&Node], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut leading = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if n.leads().await {
                leading.push(i);
            }
        }
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(
            leading.len() < 2,
            "two leaders at once: {:?}",
            leading
                .iter()
                .map(|&i| nodes[i].location)
                .collect::<Vec<_>>()
        );
        assert!(
            Instant::now() < deadline,
            "no leader among {:?}:\n{}",
            nodes.iter().map(|n| n.location).collect::<Vec<_>>(),
            nodes
                .iter()
                .map(|n| n.log())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (recipient, subject) → how many times the SMTP server received it.
fn tally(smtp: &support::Smtp) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for line in smtp.subjects() {
        let (to, subject) = line.split_once(" | ").unwrap_or((&line, ""));
        *m.entry((to.trim().to_string(), subject.trim().to_string()))
            .or_insert(0) += 1;
    }
    m
}

async fn api_eta(port: u16) -> bool {
    support::api_post(
        port,
        "/api/v1/incidents/shop/eta",
        TOKEN,
        serde_json::json!({"eta": "3h", "by": "test"}),
    )
    .await
}

/// Three locations: one leads, the others stand by (and say who leads). The leader is
/// SIGKILLed in the middle of the campaign to 5,000 customers: another takes over within
/// the lease and a probe interval or two, and finishes it. Every customer is told; a
/// customer told twice can only be one whose message was in flight when the leader died
/// (at most the workers' messages and the results not yet written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_takes_over_a_killed_leader_and_finishes_its_campaign() {
    const N: usize = 5_000;
    let pg = Postgres::start();
    let store = pg.database("tocsin");
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    customers(dir.path(), N);
    let mut nodes: Vec<Node> = ["waw", "fra", "sto"]
        .into_iter()
        .map(|l| node(dir.path(), l, &store, target, smtp.port, None, 250))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let first = leader(&all, Duration::from_secs(30)).await;
    // The standbys say who leads, and are not ready for traffic (once they serve: one
    // may still be connecting to the database when another already leads).
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != first) {
        let readyz = || async {
            support::client()
                .get(format!("http://127.0.0.1:{}/readyz", n.port))
                .send()
                .await
                .ok()
        };
        support::until_async(
            &format!("{} serving", n.location),
            Duration::from_secs(30),
            &|| n.log(),
            || async { readyz().await.is_some() },
        )
        .await;
        let r = readyz().await.unwrap();
        assert_eq!(r.status(), 503, "{}", nodes[i].location);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["leader"]["location"], nodes[first].location, "{body}");
    }

    up.store(false, Ordering::SeqCst);
    let lead_port = nodes[first].port;
    let logs: Vec<PathBuf> = nodes.iter().map(|n| n.cfg.with_extension("log")).collect();
    let explain = || {
        logs.iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    support::until_async(
        "the customer phase",
        Duration::from_secs(30),
        &explain,
        || api_eta(lead_port),
    )
    .await;
    let at_kill = smtp.wait_count(1_500, Duration::from_secs(90)).await;
    assert!(at_kill >= 1_500, "sending started: {at_kill}");
    let now_leading = leader(&all, Duration::from_secs(10)).await;
    assert_eq!(
        now_leading,
        first,
        "the lease stayed with the first leader under the campaign's load\n{}",
        explain()
    );
    let killed = Instant::now();
    nodes[first].signal("-KILL");
    let _ = nodes[first].proc.take().unwrap().0.wait();
    let rest: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, n)| n)
        .collect();
    leader(&rest, Duration::from_secs(30)).await;
    let failover = killed.elapsed();
    let resumed = smtp.wait_count(at_kill + 1, Duration::from_secs(30)).await;
    let first_send = killed.elapsed();
    assert!(resumed > at_kill, "the new leader sends");

    // Everyone, then nothing more.
    let deadline = Instant::now() + Duration::from_secs(120);
    let told = loop {
        let t = tally(&smtp);
        let told: BTreeMap<&String, usize> = t
            .iter()
            .filter(|((to, subject), _)| to.starts_with('c') && !subject.contains("[tocsin]"))
            .map(|((to, _), n)| (to, *n))
            .fold(BTreeMap::new(), |mut m, (to, n)| {
                *m.entry(to).or_insert(0) += n;
                m
            });
        if told.len() >= N || Instant::now() > deadline {
            break told
                .into_iter()
                .map(|(k, v)| (k.clone(), v))
                .collect::<BTreeMap<_, _>>();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(told.len(), N, "every customer is told\n{}", explain());
    let twice: usize = told.values().map(|n| n - 1).sum();
    let bound = 4 + tocsin::campaign::sender::UNRECORDED;
    eprintln!(
        "figures: failover (SIGKILL to new leader) {:.1} s, to its first send {:.1} s; \
         customers told twice {twice} (bound {bound}); sent before the kill {at_kill}",
        failover.as_secs_f64(),
        first_send.as_secs_f64()
    );
    assert!(
        twice <= bound,
        "{twice} told twice, over the in-flight bound {bound}"
    );
    let staff = tally(&smtp);
    assert_eq!(
        staff.get(&(
            "oncall@example.com".to_string(),
            "[tocsin] Web shop is DOWN".to_string()
        )),
        Some(&1),
        "staff are told once, by one instance: {staff:#?}"
    );
}

/// The leader is SIGSTOPped for longer than its lease. The standby takes over and sends
/// the escalation that falls due meanwhile. When the old leader wakes (SIGCONT), it
/// learns from its own clock and the database that it no longer leads, and stands by:
/// the SMTP server and the webhook receiver got every message and every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_sends_and_records_nothing_when_it_wakes() {
    let pg = Postgres::start();
    let store = pg.database("tocsin");
    let smtp = support::Smtp::start(None);
    let (hook, heads) = support::recording_http(|_| {
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
    })
    .await;
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    customers(dir.path(), 0);
    let nodes: Vec<Node> = ["waw", "fra"]
        .into_iter()
        .map(|l| node(dir.path(), l, &store, target, smtp.port, Some(hook), 100))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let first = leader(&all, Duration::from_secs(30)).await;
    let other = 1 - first;
    let logs: Vec<PathBuf> = nodes.iter().map(|n| n.cfg.with_extension("log")).collect();
    let explain = || {
        logs.iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    up.store(false, Ordering::SeqCst);
    let down = (
        "oncall@example.com".to_string(),
        "[tocsin] Web shop is DOWN".to_string(),
    );
    support::until(
        "the first staff mail",
        Duration::from_secs(20),
        &explain,
        || tally(&smtp).contains_key(&down),
    )
    .await;
    // The pause comes once the leader has recorded what it sent: a mail sent but not yet
    // recorded when a leader stops is the stated exception (sent again by the next one),
    // and this test is about what a paused leader does after it wakes.
    support::until_metric(
        nodes[first].port,
        "tocsin_outbox_pending",
        Duration::from_secs(20),
        &explain,
        |v| v == 0.0,
    )
    .await;
    support::until_metric(
        nodes[first].port,
        "tocsin_webhook_pending",
        Duration::from_secs(20),
        &explain,
        |v| v == 0.0,
    )
    .await;

    nodes[first].signal("-STOP");
    let paused = Instant::now();
    let only: Vec<&Node> = vec![&nodes[other]];
    leader(&only, Duration::from_secs(20)).await;
    let takeover = paused.elapsed();
    // The second level falls due 20 s after the opening: the new leader sends it.
    let lead = (
        "lead@example.com".to_string(),
        "[tocsin] Web shop is DOWN, unacknowledged (escalation level 1)".to_string(),
    );
    support::until("the escalation", Duration::from_secs(40), &explain, || {
        tally(&smtp).contains_key(&lead)
    })
    .await;

    nodes[first].signal("-CONT");
    support::until_async(
        "the old leader to stand by",
        Duration::from_secs(20),
        &explain,
        || {
            let port = nodes[first].port;
            async move { support::metric(port, "tocsin_leader").await == Some(0.0) }
        },
    )
    .await;
    assert!(nodes[other].leads().await, "one leader: {}", explain());
    // The recovery, from the leader of now.
    up.store(true, Ordering::SeqCst);
    let explain_mail = || format!("{:#?}\n{}", tally(&smtp), explain());
    let recovered = |who: &str| {
        tally(&smtp)
            .keys()
            .any(|(to, s)| to.contains(who) && s.contains("is UP again"))
    };
    support::until(
        "the recovery mails",
        Duration::from_secs(30),
        &explain_mail,
        || recovered("lead@example.com") && recovered("oncall@example.com"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = tally(&smtp);
    eprintln!(
        "figures: takeover after SIGSTOP {:.1} s; mails {t:?}",
        takeover.as_secs_f64()
    );
    for (k, n) in &t {
        assert_eq!(*n, 1, "{k:?} received {n} times: {t:#?}\n{}", explain());
    }
    assert!(t.contains_key(&down) && t.contains_key(&lead), "{t:#?}");
    // Every webhook delivery once: no id twice.
    let heads = heads.lock().unwrap().clone();
    let mut ids: Vec<String> = heads
        .iter()
        .filter_map(|h| {
            h.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("x-tocsin-delivery:"))
                .map(|l| l.to_string())
        })
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert!(n >= 2, "the opening and the recovery at least: {heads:#?}");
    assert_eq!(ids.len(), n, "a webhook delivery was repeated: {heads:#?}");
    // It woke with the escalation due and tried to record it: the store refused.
    assert!(
        nodes[first].log().contains("stops leading")
            && nodes[first].log().contains("no longer leads"),
        "{}",
        nodes[first].log()
    );
}

/// What a cluster refuses: a second instance with a location already running, and an
/// instance alone (no `cluster:`) on a database a cluster uses; each says what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_of_one_location_and_a_lone_one_on_a_cluster_s_database_are_refused() {
    let pg = Postgres::start();
    let store = pg.database("tocsin");
    let smtp = support::Smtp::start(None);
    let (target, _up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    customers(dir.path(), 0);
    let waw = node(dir.path(), "waw", &store, target, smtp.port, None, 100);
    leader(&[&waw], Duration::from_secs(30)).await;

    let twin_dir = dir.path().join("twin");
    std::fs::create_dir(&twin_dir).unwrap();
    std::fs::copy(
        dir.path().join("customers.csv"),
        twin_dir.join("customers.csv"),
    )
    .unwrap();
    let mut twin = node(&twin_dir, "waw", &store, target, smtp.port, None, 100);
    let status = twin.proc.take().unwrap().0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", twin.log());
    assert!(
        twin.log()
            .contains("location `waw` is already in use by another running tocsin")
            && twin.log().contains("give each instance its own `location`"),
        "{}",
        twin.log()
    );

    // The same database without `cluster:`: refused while the cluster uses it.
    let alone = dir.path().join("alone.yaml");
    std::fs::write(
        &alone,
        std::fs::read_to_string(&waw.cfg)
            .unwrap()
            .replace(
                &format!("cluster: {{ lease: {LEASE}, locations: [waw, fra, sto] }}\n"),
                "",
            )
            .replace(
                &format!("listen: 127.0.0.1:{}", waw.port),
                &format!("listen: 127.0.0.1:{}", support::free_port()),
            ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["run", "--config"])
        .arg(&alone)
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is in use by another process"), "{err}");
}

/// PostgreSQL gone under a cluster: the instance that led last tells staff once (the
/// outbox is in the database, so the mail goes straight out), the others say nothing;
/// with it back, staff hear so once, and the cluster leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_hear_once_from_the_last_leader_that_the_store_is_gone_and_once_that_it_is_back() {
    let mut pg = Postgres::start();
    let store = pg.database("tocsin");
    let smtp = support::Smtp::start(None);
    let (target, _up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    customers(dir.path(), 0);
    let waw = node(dir.path(), "waw", &store, target, smtp.port, None, 100);
    leader(&[&waw], Duration::from_secs(30)).await;
    let fra = node(dir.path(), "fra", &store, target, smtp.port, None, 100);
    support::until_metric(
        fra.port,
        "tocsin_fencing_token",
        Duration::from_secs(30),
        &|| fra.log(),
        |t| t >= 1.0,
    )
    .await;

    pg.stop();
    let gone = "the store (PostgreSQL) cannot be reached";
    smtp.wait_for_text(gone, 1, Duration::from_secs(40)).await;
    support::until_metric(
        waw.port,
        "tocsin_store_up",
        Duration::from_secs(30),
        &|| waw.log(),
        |v| v == 0.0,
    )
    .await;
    // No leader now: the instance that led serves the last status page it wrote; the
    // one that never led says it has none.
    let page = |port: u16| async move {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    let (code, body) = page(waw.port).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Web shop"), "{body}");
    assert_eq!(page(fra.port).await.0, 503);
    pg.resume();
    smtp.wait_for_text("the store (PostgreSQL) is back", 1, Duration::from_secs(40))
        .await;
    leader(&[&waw, &fra], Duration::from_secs(30)).await;
    let subjects = smtp.subjects();
    let told: Vec<_> = subjects
        .iter()
        .filter(|s| s.contains("[tocsin] the store"))
        .collect();
    assert_eq!(
        told,
        [
            &format!("oncall@example.com | [tocsin] {gone}"),
            &"oncall@example.com | [tocsin] the store (PostgreSQL) is back".to_string(),
        ],
        "{}\n----\n{}",
        waw.log(),
        fra.log()
    );
    let mail = smtp
        .mails()
        .into_iter()
        .find(|m| m.contains("cannot be reached"))
        .unwrap();
    assert!(mail.contains("tocsin at waw, which led last"), "{mail}");
}
