//! Grouped staff notices, in-process on a manual clock with mail written as `.eml`
//! files: three services of one policy that go down together get one mail listing them
//! all, with one link that acknowledges all three; their recoveries are one mail too. A
//! service that goes down alone is mailed at once.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "grouping-test-token";

fn config(target: std::net::SocketAddr, lone: std::net::SocketAddr) -> String {
    let mut y = String::from(
        "listen: 127.0.0.1:0\ndata_dir: ./var\nallow_insecure_links: true\nservices:\n",
    );
    for (id, name) in [
        ("shop", "Web shop"),
        ("api", "Public API"),
        ("pay", "Payments"),
    ] {
        y.push_str(&format!(
            "  - id: {id}
    name: {name}
    failure_threshold: 2
    success_threshold: 1
    escalation: default
    probes:
      - {{ name: {id}-http, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
"
        ));
    }
    y.push_str(&format!(
        "  - id: blog
    failure_threshold: 2
    escalation: other
    probes:
      - {{ name: blog-http, interval: 1s, timeout: 500ms, http: {{ url: \"http://{lone}/\", body_contains: \"Add to cart\" }} }}
escalation:
  group_wait: 30s
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
  other:
    - {{ after: 0m, to: [blog@example.com] }}
"
    ));
    y
}

/// The spooled staff mails as (To, Subject, text), oldest first.
fn mails(dir: &std::path::Path) -> Vec<(String, String, String)> {
    support::spooled(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_down_together_share_one_mail_and_one_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (target, up) = support::switchable_target().await;
    let (lone, lone_up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(&cfg, config(target, lone)).unwrap();
    let tocsin = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let (port, clock) = (tocsin.port, tocsin.clock.clone());
    let explain = || format!("{:#?}", mails(&d));

    // A lone outage of another policy is mailed at once, no waiting.
    lone_up.store(false, Ordering::SeqCst);
    support::until(
        "the blog's mail, at once",
        Duration::from_secs(20),
        &explain,
        || mails(&d).iter().any(|m| m.0 == "blog@example.com"),
    )
    .await;

    up.store(false, Ordering::SeqCst);
    support::until("four incidents", Duration::from_secs(20), &explain, || {
        tocsin.store.lock().incidents(true).unwrap().len() == 4
    })
    .await;
    // They wait for each other: nothing for the shop's policy yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !mails(&d).iter().any(|m| m.0 == "oncall@example.com"),
        "{}",
        explain()
    );
    clock.advance(Duration::from_secs(31));
    support::until(
        "one grouped mail",
        Duration::from_secs(20),
        &explain,
        || mails(&d).iter().any(|m| m.0 == "oncall@example.com"),
    )
    .await;
    tocsin.settled(&explain).await;
    let staff: Vec<(String, String, String)> = mails(&d)
        .into_iter()
        .filter(|m| m.0 == "oncall@example.com")
        .collect();
    assert_eq!(staff.len(), 1, "{staff:#?}");
    let (_, subject, text) = &staff[0];
    assert!(
        subject.starts_with("[tocsin] 3 services are DOWN: "),
        "{subject}"
    );
    for name in ["Web shop", "Public API", "Payments"] {
        assert!(subject.contains(name), "{subject}");
        assert!(text.contains(&format!("──── {name} ────")), "{text}");
    }
    assert_eq!(
        text.matches("Acknowledge (stops escalation): ").count(),
        3,
        "{text}"
    );
    let all = text
        .lines()
        .find_map(|l| l.strip_prefix("Acknowledge all 3 (stops their escalation): "))
        .expect("an acknowledge-all link")
        .trim()
        .to_string();

    // The link shows what it does, then its POST acknowledges all three.
    let path = all
        .split_once("/act?")
        .map(|(_, q)| format!("/act?{q}"))
        .unwrap();
    let url = format!("http://127.0.0.1:{port}{path}");
    let page = support::client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Acknowledge 3 incidents?"), "{page}");
    let done = support::client().post(&url).send().await.unwrap();
    assert!(done.status().is_success());
    let done = done.text().await.unwrap();
    assert_eq!(done.matches("): acknowledged</li>").count(), 3, "{done}");
    let open = tocsin.store.lock().incidents(true).unwrap();
    let acked: Vec<&str> = open
        .iter()
        .filter(|i| i.service != "blog")
        .filter_map(|i| i.acked_by.as_deref())
        .collect();
    assert_eq!(acked.len(), 3, "{open:#?}");
    assert!(acked.iter().all(|b| b.starts_with("oncall@example.com")));
    // A forged group (one incident added) is refused.
    let forged = url.replacen("&g=", "&g=99,", 1);
    let refused = support::client().get(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 403);

    // Back together: one "UP again" mail.
    up.store(true, Ordering::SeqCst);
    support::until(
        "three recoveries",
        Duration::from_secs(20),
        &explain,
        || tocsin.store.lock().incidents(true).unwrap().len() == 1,
    )
    .await;
    clock.advance(Duration::from_secs(31));
    support::until(
        "one grouped recovery mail",
        Duration::from_secs(20),
        &explain,
        || mails(&d).iter().any(|m| m.1.contains("UP again")),
    )
    .await;
    tocsin.settled(&explain).await;
    let up_again: Vec<String> = mails(&d)
        .into_iter()
        .filter(|m| m.0 == "oncall@example.com" && m.1.contains("UP again"))
        .map(|m| m.1)
        .collect();
    assert_eq!(up_again.len(), 1, "{up_again:#?}");
    assert!(
        up_again[0].starts_with("[tocsin] 3 services are UP again: "),
        "{up_again:?}"
    );
    assert!(tocsin.store.lock().pending().unwrap().total() == 0);
    tocsin.stop().await;
}
