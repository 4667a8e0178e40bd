//! The feeds and the summary, in-process on a manual clock: read back by a real feed
//! reader (Python's feedparser, installed by scripts/test.sh), the JSON against its
//! documented shape, each with an `ETag` that gives 304.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "feeds-test-token";

/// feedparser's reading of `body`: (bozo, feed title, [(entry title, id, text)]).
fn parse(body: &str) -> serde_json::Value {
    let script = "import sys, json, feedparser\n\
        f = feedparser.parse(sys.stdin.read())\n\
        print(json.dumps({'bozo': f.bozo, 'version': f.version, 'title': f.feed.get('title'),\n\
          'entries': [[e.get('title'), e.get('id'), e.get('summary') or e.get('content', [{}])[0].get('value')] for e in f.entries]}))";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with feedparser (scripts/test.sh installs python3-feedparser)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_and_the_summary_say_what_the_status_page_says() {
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0
data_dir: ./var
public_url: http://127.0.0.1
allow_insecure_links: true
defaults: {{ failure_threshold: 1, success_threshold: 1 }}
company: {{ name: \"Example & Co\" }}
services:
  - id: shop
    name: Web <shop>
    group: Sales
    customer_threshold: 1h
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: api
    name: API
    probes:
      - {{ name: ping, interval: 1s, timeout: 500ms, tcp: {{ address: \"{target}\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
maintenance:
  - {{ service: api, start: \"2027-01-20T22:00:00Z\", duration: 2h, note: \"Database upgrade\" }}
"
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let base = format!("http://127.0.0.1:{}", app.port);
    up.store(false, Ordering::SeqCst);
    support::until(
        "the incidents",
        Duration::from_secs(20),
        &String::new,
        || !app.store.lock().incidents(true).unwrap().is_empty(),
    )
    .await;
    assert!(
        support::api_post(
            app.port,
            "/api/v1/incidents/shop/eta",
            TOKEN,
            serde_json::json!({"eta": "4h", "by": "anna"})
        )
        .await
    );

    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { support::client().get(url).send().await.unwrap() }
    };
    let atom = get("/feed.atom").await;
    assert_eq!(atom.status(), 200);
    assert_eq!(
        atom.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    assert!(atom.headers().contains_key("last-modified"));
    let etag = atom.headers()["etag"].to_str().unwrap().to_string();
    let atom = atom.text().await.unwrap();
    let read = parse(&atom);
    assert_eq!(read["bozo"], false, "{atom}");
    assert_eq!(read["version"], "atom10");
    assert_eq!(read["title"], "Example & Co status");
    let entries = read["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{read}");
    let incident = entries
        .iter()
        .find(|e| e[0] == "Web <shop>: unavailable")
        .expect("the incident");
    assert!(
        incident[1]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1/status#incident-")
    );
    let text = incident[2].as_str().unwrap();
    assert!(
        text.contains("We are investigating a problem with Web <shop>."),
        "{text}"
    );
    assert!(text.contains("We now expect it back by"), "{text}");
    assert!(
        !text.contains("anna") && !text.contains("acknowledged"),
        "{text}"
    );
    assert!(entries.iter().any(|e| {
        e[0] == "Planned maintenance: API"
            && e[2]
                .as_str()
                .unwrap()
                .contains("from 2027-01-20T22:00:00Z to 2027-01-21T00:00:00Z. Database upgrade")
    }));
    let again = support::client()
        .get(format!("{base}/feed.atom"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let rss = get("/feed.rss").await.text().await.unwrap();
    let read = parse(&rss);
    assert_eq!(read["bozo"], false, "{rss}");
    assert_eq!(read["version"], "rss20");
    assert_eq!(read["entries"].as_array().unwrap().len(), 2);
    let one = parse(&get("/feed.atom?service=api").await.text().await.unwrap());
    assert_eq!(one["title"], "Example & Co: API");
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(get("/feed.atom?service=nope").await.status(), 404);

    let summary: serde_json::Value = get("/api/v2/summary.json").await.json().await.unwrap();
    assert_eq!(summary["page"]["name"], "Example & Co");
    assert_eq!(summary["status"]["indicator"], "major", "{summary}");
    let shop = summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "shop")
        .unwrap();
    assert_eq!(shop["status"], "major_outage");
    assert_eq!(shop["group"], "Sales");
    let inc = &summary["incidents"][0];
    assert_eq!(inc["status"], "identified");
    assert_eq!(inc["customers_told"], true);
    assert!(inc["eta"].as_str().unwrap().ends_with('Z'));
    assert_eq!(summary["scheduled_maintenances"][0]["status"], "scheduled");

    // Resolved: the feed says so, the summary is all clear.
    up.store(true, Ordering::SeqCst);
    support::until(
        "the incidents",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().is_empty(),
    )
    .await;
    let read = parse(&get("/feed.atom").await.text().await.unwrap());
    assert!(
        read["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e[0] == "Web <shop>: resolved"),
        "{read}"
    );
    let summary: serde_json::Value = get("/api/v2/summary.json").await.json().await.unwrap();
    assert_eq!(summary["status"]["indicator"], "none", "{summary}");
    assert_eq!(summary["incidents"], serde_json::json!([]));
    app.stop().await;
}
