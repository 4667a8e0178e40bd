//! Incident webhooks against real HTTP receivers on loopback: every transition of an
//! outage arrives once, in order, signed with HMAC-SHA256 over the exact body; a receiver
//! that fails first (503) gets the same delivery again, one that refuses (400) is not
//! retried and the refusal is in the incident's timeline; a crash loses nothing queued.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "webhook-test-token";
const SECRET: &str = "s3cret-key-for-hooks";

#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP receiver answering `statuses[n]` to its n-th request (the last one after).
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let n = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            let i = n.fetch_add(1, Ordering::SeqCst);
            let status = *statuses.get(i).or(statuses.last()).unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(k) = s.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (p + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let Ok(k) = s.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                seen.lock().unwrap().push(Received { headers, body });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, got)
}

fn start(cfg: &std::path::Path, log: &std::path::Path) -> support::Proc {
    support::run_tocsin(
        cfg,
        log,
        &[("TOCSIN_API_TOKEN", TOKEN), ("HOOK_SECRET", SECRET)],
    )
}

async fn post(port: u16, path: &str, body: serde_json::Value) -> bool {
    support::api_post(port, path, TOKEN, body).await
}

fn events(got: &Arc<Mutex<Vec<Received>>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|r| r.headers["x-tocsin-event"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_receivers_signed_once_and_in_order() {
    // The chat tool fails the first delivery; the pager refuses everything it gets.
    let (chat, chat_got) = receiver(vec![503, 200]).await;
    let (pager, pager_got) = receiver(vec![400]).await;
    // A receiver that is not there at all.
    let gone = format!("http://{}/hook", support::closed_port().await);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "customer_threshold: 1h\nescalation: default\n",
            &format!(
                "escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
webhooks:
  - {{ url: \"{chat}\", secret_env: HOOK_SECRET }}
  - {{ url: \"{pager}\", secret_env: HOOK_SECRET, events: [opened] }}
  - {{ url: \"{gone}\", secret_env: HOOK_SECRET, events: [opened] }}
"
            ),
        ),
    )
    .unwrap();
    let log = dir.path().join("tocsin.log");
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut tocsin = start(&cfg, &log);

    up.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while !post(
        port,
        "/api/v1/incidents/shop/ack",
        serde_json::json!({"by": "anna"}),
    )
    .await
    {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        post(
            port,
            "/api/v1/incidents/shop/eta",
            serde_json::json!({"eta": "3h", "by": "anna"})
        )
        .await
    );
    // A crash with deliveries queued (the chat tool's first answer was 503).
    tokio::time::sleep(Duration::from_millis(500)).await;
    tocsin.crash();
    let _tocsin = start(&cfg, &log);
    up.store(true, Ordering::SeqCst);

    // In decision order; the refused first attempt is repeated before anything later.
    let want = [
        "opened",
        "opened",
        "acknowledged",
        "eta",
        "customer_phase",
        "resolved",
    ];
    let t = Instant::now();
    loop {
        let got = events(&chat_got);
        if got.len() >= want.len() {
            assert_eq!(got, want, "{}", explain());
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "chat got {got:?}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = chat_got.lock().unwrap().clone();
    // The first attempt (503) and its retry carry the same delivery and body.
    assert_eq!(received.len(), want.len(), "{received:?}");
    assert_eq!(
        received[0].headers["x-tocsin-delivery"],
        received[1].headers["x-tocsin-delivery"]
    );
    assert_eq!(received[0].body, received[1].body);
    for r in &received {
        // Signed over the exact bytes received, with the shared key.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        let hex = r.headers["x-tocsin-signature"]
            .strip_prefix("sha256=")
            .unwrap();
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, r.body.as_bytes(), &tag).expect("signature verifies");
        assert_eq!(r.headers["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["event"], r.headers["x-tocsin-event"].as_str());
        assert_eq!(v["service"], "shop");
        assert_eq!(v["service_name"], "Web shop");
        assert_eq!(v["incident"], 1);
    }
    let eta: serde_json::Value = serde_json::from_str(&received[3].body).unwrap();
    assert_eq!(eta["action"]["action"], "eta_set");
    assert_eq!(eta["action"]["by"], "anna");

    // The pager wanted only `opened`, refused it, and was not asked again: the
    // unreachable receiver, on the same backoff, has been retried meanwhile.
    support::until_metric(
        port,
        "tocsin_webhook_deliveries_total{result=\"retried\"}",
        Duration::from_secs(20),
        &explain,
        |v| v >= 2.0,
    )
    .await;
    assert_eq!(events(&pager_got), ["opened"]);
    let incident = support::api_get(port, "/api/v1/incidents/1", TOKEN).await;
    assert!(incident.contains("webhook_failed"), "{incident}");
    assert!(
        incident.contains(&format!("{pager}: answered 400: no")),
        "{incident}"
    );
    let metrics = support::metrics(port).await;
    // The unreachable receiver's delivery waits for it, retried, and holds up no one else.
    assert!(metrics.contains("tocsin_webhook_pending 1"), "{metrics}");
    assert!(
        !metrics.contains("tocsin_webhook_deliveries_total{result=\"retried\"} 0"),
        "{metrics}"
    );
    assert!(
        explain().contains("webhook not delivered; will retry") && explain().contains("no answer"),
        "{}",
        explain()
    );
}

#[test]
fn a_missing_signing_key_or_a_bad_event_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        "listen: 127.0.0.1:0
services:
  - id: shop
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:1\" } }
webhooks:
  - { url: \"https://chat.example.com/hook\", secret_env: HOOK_SECRET }
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env_remove("HOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "webhook https://chat.example.com/hook: set the environment variable HOOK_SECRET"
        ),
        "{err}"
    );

    std::fs::write(
        &cfg,
        "services:
  - id: shop
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:1\" } }
webhooks:
  - { url: \"ftp://chat.example.com/hook\", secret_env: HOOK_SECRET, events: [resolvd] }
  - { url: \"https://x.example.com/\", secret_env: \"not a name\", events: [] }
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        ":6:12: `url` must be an http(s) URL",
        ":6:77: unknown event `resolvd`, did you mean `resolved`?",
        ":7:50: `secret_env` names an environment variable",
        ":7:72: `events` is empty: leave it out to send every event",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
}
