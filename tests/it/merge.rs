//! One customer, one message, in-process on a manual clock: three services that go down
//! together reach a customer who follows all three in one outage message naming them
//! all; the recovery message comes once, when the last is back (`recovery: last`), or
//! once per service (`recovery: each`); everyone else hears of exactly their services.

use crate::support;

use std::collections::BTreeMap;

use std::sync::atomic::Ordering;
use std::time::Duration;
use tocsin::clock::Clock;

const TOKEN: &str = "merge-token";

fn config(targets: &[std::net::SocketAddr], recovery: &str) -> String {
    let mut services = String::new();
    for (id, (name, t)) in ["a", "b", "c"]
        .iter()
        .zip(["Web shop", "Payments", "Mobile app"].iter().zip(targets))
    {
        services.push_str(&format!(
            "  - id: {id}
    name: {name}
    customer_threshold: 1h
    audience: customers
    probes:
      - {{ name: home-{id}, interval: 1s, timeout: 500ms, http: {{ url: \"http://{t}/\", body_contains: \"Add to cart\" }} }}
"
        ));
    }
    format!(
        "listen: 127.0.0.1:0
data_dir: ./var
public_url: http://127.0.0.1
allow_insecure_links: true
defaults: {{ failure_threshold: 1, success_threshold: 1 }}
services:
{services}audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
campaigns:
  recovery: {recovery}
"
    )
}

/// Subjects each customer got, in no particular order.
fn told(d: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    support::spooled(d)
        .into_iter()
        .fold(BTreeMap::new(), |mut acc, m| {
            acc.entry(m.0).or_default().push(m.1);
            acc
        })
}

async fn start(
    recovery: &str,
) -> (
    tempfile::TempDir,
    support::InProcess,
    Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "email,services\nx@example.com,a b c\ny@example.com,a\nz@example.com,b c\n",
    )
    .unwrap();
    let mut targets = Vec::new();
    let mut switches = Vec::new();
    for _ in 0..3 {
        let (t, up) = support::switchable_target().await;
        targets.push(t);
        switches.push(up);
    }
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(&cfg, config(&targets, recovery)).unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    (dir, app, switches)
}

/// All three down together, past the threshold and the merge window.
async fn all_down(
    d: &std::path::Path,
    app: &support::InProcess,
    switches: &[std::sync::Arc<std::sync::atomic::AtomicBool>],
) {
    for s in switches {
        s.store(false, Ordering::SeqCst);
    }
    support::until(
        "three incidents",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().len() == 3,
    )
    .await;
    app.clock.advance(Duration::from_secs(3601));
    let explain = || format!("{:#?}", told(d));
    support::until("the campaigns", Duration::from_secs(20), &explain, || {
        app.store
            .lock()
            .campaigns(None, app.clock.now())
            .unwrap()
            .len()
            == 3
    })
    .await;
    app.clock.advance(Duration::from_secs(121));
    support::until(
        "three outage messages",
        Duration::from_secs(20),
        &explain,
        || told(d).len() == 3,
    )
    .await;
    app.settled(&explain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_services_down_together_make_one_message_and_one_recovery_per_customer() {
    let (dir, app, switches) = start("last").await;
    let d = dir.path();
    all_down(d, &app, &switches).await;
    let t = told(d);
    assert_eq!(t["x@example.com"].len(), 1, "{t:#?}");
    let x = &t["x@example.com"][0];
    for name in ["Web shop", "Payments", "Mobile app"] {
        assert!(x.contains(name), "the one message names all three: {x}");
    }
    assert_eq!(
        t["y@example.com"],
        vec!["Web shop is unavailable"],
        "{t:#?}"
    );
    assert_eq!(t["z@example.com"].len(), 1, "{t:#?}");
    assert!(
        t["z@example.com"][0].contains("Payments") && t["z@example.com"][0].contains("Mobile app")
    );
    assert!(!t["z@example.com"][0].contains("Web shop"));
    // The body says so too.
    let body = support::spooled(d)
        .into_iter()
        .find(|m| m.0 == "x@example.com")
        .unwrap()
        .2;
    assert!(body.contains("This also affects"), "{body}");

    // The shop is back first: y hears of it; x, whose message named two more still down,
    // does not yet.
    switches[0].store(true, Ordering::SeqCst);
    support::until(
        "the shop recovered",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().len() == 2,
    )
    .await;
    support::until(
        "y's recovery",
        Duration::from_secs(20),
        &|| format!("{:#?}", told(d)),
        || told(d)["y@example.com"].len() == 2,
    )
    .await;
    app.settled(&|| format!("{:#?}", told(d))).await;
    assert_eq!(told(d)["x@example.com"].len(), 1, "{:#?}", told(d));
    // The rest come back: x and z get one recovery message each, naming what they followed.
    switches[1].store(true, Ordering::SeqCst);
    switches[2].store(true, Ordering::SeqCst);
    support::until(
        "all recovered",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().is_empty(),
    )
    .await;
    support::until(
        "the last recoveries",
        Duration::from_secs(20),
        &|| format!("{:#?}", told(d)),
        || {
            let t = told(d);
            t["x@example.com"].len() == 2 && t["z@example.com"].len() == 2
        },
    )
    .await;
    app.settled(&|| format!("{:#?}", told(d))).await;
    let t = told(d);
    assert_eq!(
        t["x@example.com"].len(),
        2,
        "one outage, one recovery: {t:#?}"
    );
    assert_eq!(t["y@example.com"].len(), 2, "{t:#?}");
    assert_eq!(t["z@example.com"].len(), 2, "{t:#?}");
    let x_back = t["x@example.com"]
        .iter()
        .find(|s| s.contains("working again"))
        .unwrap();
    assert!(x_back.contains(" and "), "names the others: {x_back}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recovery_each_every_service_s_return_is_its_own_message() {
    let (dir, app, switches) = start("each").await;
    let d = dir.path();
    all_down(d, &app, &switches).await;
    assert_eq!(told(d)["x@example.com"].len(), 1, "{:#?}", told(d));
    for s in &switches {
        s.store(true, Ordering::SeqCst);
    }
    support::until(
        "x told of each return",
        Duration::from_secs(20),
        &|| format!("{:#?}", told(d)),
        || told(d)["x@example.com"].len() == 4,
    )
    .await;
    app.settled(&|| format!("{:#?}", told(d))).await;
    let t = told(d);
    let back: Vec<&String> = t["x@example.com"]
        .iter()
        .filter(|s| s.contains("working again"))
        .collect();
    assert_eq!(back.len(), 3, "{t:#?}");
    assert!(
        back.iter().all(|s| !s.contains(" and ")),
        "each names its own service: {back:?}"
    );
    app.stop().await;
}
