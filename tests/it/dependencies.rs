//! Dependencies end to end, in-process on a manual clock with mail written as `.eml`
//! files: a database and a shop that needs it fail together; one incident opens (the
//! database's), the shop is attached to it, and when customers are told each customer
//! gets one message: about the database if they follow it, else about the shop; the
//! recovery mail follows each the same way.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "dependencies-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_of_an_attached_service_are_told_once_through_the_root_incident() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // Ana follows the database, Bo the shop only, Cy both, Di something else.
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,services\nana@example.com,Ana,en,db\nbo@example.com,Bo,en,shop\ncy@example.com,Cy,en,db shop\ndi@example.com,Di,en,blog\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0
data_dir: ./var
allow_insecure_links: true
services:
  - id: db
    name: Database
    failure_threshold: 2
    customer_threshold: 1h
    escalation: default
    audience: customers
    probes:
      - {{ name: pg, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: shop
    name: Web shop
    failure_threshold: 1
    customer_threshold: 1h
    escalation: default
    audience: customers
    depends_on: [db]
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: blog
    escalation: default
    audience: customers
    probes:
      - {{ name: posts, interval: 1s, timeout: 500ms, tcp: {{ address: \"{target}\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
"
        ),
    )
    .unwrap();
    let tocsin = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let (port, clock) = (tocsin.port, tocsin.clock.clone());
    let explain = || format!("{:#?}", support::spooled(&d));

    up.store(false, Ordering::SeqCst);
    support::until(
        "the shop attached to the database's incident",
        Duration::from_secs(20),
        &explain,
        || {
            let open = tocsin.store.lock().incidents(true).unwrap();
            open.first().is_some_and(|i| !i.also_affected().is_empty())
        },
    )
    .await;
    let open = tocsin.store.lock().incidents(true).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].service, "db");
    // The threshold passes; the attached shop's customers are looked at again every 30 s.
    clock.advance(Duration::from_secs(3600));
    let outage =
        |m: &(String, String, String)| m.1.contains(" unavailable") && !m.1.starts_with("Update");
    // Each look moves the manual clock past the next 30 s retry.
    support::until(
        "three outage mails",
        Duration::from_secs(30),
        &explain,
        || {
            clock.advance(Duration::from_secs(31));
            support::spooled(&d).iter().filter(|m| outage(m)).count() >= 3
        },
    )
    .await;
    // More time passes: nothing more is sent.
    clock.advance(Duration::from_secs(93));
    tocsin.settled(&explain).await;
    let told: BTreeMap<String, Vec<String>> = support::spooled(&d)
        .into_iter()
        .filter(|m| outage(m))
        .fold(BTreeMap::new(), |mut acc, m| {
            acc.entry(m.0).or_default().push(m.1);
            acc
        });
    assert_eq!(told.len(), 3, "{told:#?}");
    assert_eq!(told["ana@example.com"].len(), 1);
    assert!(told["ana@example.com"][0].starts_with("Database is unavailable"));
    assert_eq!(told["cy@example.com"].len(), 1, "one message per customer");
    assert!(
        told["cy@example.com"][0].starts_with("Database and Web shop are unavailable"),
        "the subject names both: {told:#?}"
    );
    assert_eq!(told["bo@example.com"].len(), 1);
    assert!(
        told["bo@example.com"][0].starts_with("Web shop is unavailable"),
        "{told:#?}"
    );
    assert!(!told.contains_key("di@example.com"));
    // Cy uses the shop too: the database's mail says so; Ana's does not.
    let text_of = |who: &str| {
        support::spooled(&d)
            .into_iter()
            .find(|m| m.0 == who && outage(m))
            .map(|m| m.2)
            .unwrap_or_default()
    };
    assert!(
        text_of("cy@example.com").contains("This also affects Web shop, which you use too."),
        "{}",
        text_of("cy@example.com")
    );
    assert!(!text_of("ana@example.com").contains("also affects"));
    // Staff heard of the database only, with the shop listed under it.
    let staff: Vec<(String, String, String)> = support::spooled(&d)
        .into_iter()
        .filter(|m| m.0 == "oncall@example.com")
        .collect();
    assert_eq!(staff.len(), 1, "{staff:#?}");
    assert!(staff[0].1.contains("Database is DOWN"));

    // The status page shows the shop under the database's incident.
    let page = support::client()
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Also affected: Web shop."), "{page}");

    up.store(true, Ordering::SeqCst);
    let recovery = |m: &(String, String, String)| m.1.contains("is working again");
    support::until(
        "three recovery mails",
        Duration::from_secs(30),
        &explain,
        || support::spooled(&d).iter().filter(|m| recovery(m)).count() >= 3,
    )
    .await;
    let back: BTreeMap<String, String> = support::spooled(&d)
        .into_iter()
        .filter(|m| recovery(m))
        .map(|m| (m.0, m.1))
        .collect();
    assert_eq!(back.len(), 3, "{back:#?}");
    assert_eq!(back["bo@example.com"], "Web shop is working again");
    assert_eq!(back["cy@example.com"], "Database is working again");
    tocsin.stop().await;
}

/// The database's own campaign is refused (its audience is over the limit): the shop's
/// customers are told all the same, and do not wait for a campaign that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_service_s_customers_are_told_when_the_root_s_campaign_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("all.csv"),
        "email,name,language,services\nana@example.com,Ana,en,db\ncy@example.com,Cy,en,db\n",
    )
    .unwrap();
    std::fs::write(
        d.join("shop.csv"),
        "email,name,language,services\nbo@example.com,Bo,en,shop\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0
data_dir: ./var
allow_insecure_links: true
defaults: {{ failure_threshold: 1 }}
services:
  - id: db
    name: Database
    customer_threshold: 1h
    escalation: default
    audience: all
    probes:
      - {{ name: pg, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: shop
    name: Web shop
    customer_threshold: 1h
    escalation: default
    audience: shop
    depends_on: [db]
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  all: {{ csv: ./all.csv }}
  shop: {{ csv: ./shop.csv }}
mail:
  from: \"Example Status <status@example.com>\"
  max_campaign_size: 1
"
        ),
    )
    .unwrap();
    let tocsin = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let clock = tocsin.clock.clone();
    let explain = || format!("{:#?}", support::spooled(&d));
    up.store(false, Ordering::SeqCst);
    support::until(
        "the shop attached",
        Duration::from_secs(20),
        &explain,
        || {
            let open = tocsin.store.lock().incidents(true).unwrap();
            open.first().is_some_and(|i| !i.also_affected().is_empty())
        },
    )
    .await;
    clock.advance(Duration::from_secs(3600));
    support::until(
        "the shop's customer told",
        Duration::from_secs(30),
        &explain,
        || {
            // Each look moves the manual clock past the next 30 s retry.
            clock.advance(Duration::from_secs(31));
            support::spooled(&d)
                .iter()
                .any(|m| m.0 == "bo@example.com" && m.1.starts_with("Web shop is unavailable"))
        },
    )
    .await;
    assert!(
        !support::spooled(&d)
            .iter()
            .any(|m| m.0 == "ana@example.com"),
        "the database's campaign was refused whole"
    );
    tocsin.stop().await;
}
