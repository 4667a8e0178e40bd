//! Heartbeats end to end in the App on a manual clock: the token kept and listed, pings
//! of each kind, a late job, a failed job whose output reaches the incident's timeline,
//! a restart in the middle of a period, and hostile pings (bad token, bad signal,
//! oversized body, a flood).

use std::time::Duration;

use crate::support::{self, InProcess, api_get, epoch};

const TOKEN: &str = "heartbeat-test-token";
const MIN: Duration = Duration::from_secs(60);

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("probes.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}
public_url: https://status.example.com
data_dir: {var}
api: {{ token_env: HB_API_TOKEN }}
services:
  - id: batch
    failure_threshold: 1
    success_threshold: 1
    escalation: oncall
    probes:
      - {{ name: backup, interval: 1s, heartbeat: {{ period: 1h, grace: 10m }} }}
escalation:
  oncall:
    - {{ after: 0m, to: [oncall@example.com] }}
mail:
  from: \"tocsin <tocsin@example.com>\"
",
            var = dir.join("var").display()
        ),
    )
    .unwrap();
    path
}

async fn start(dir: &std::path::Path, port: u16) -> InProcess {
    InProcess::start(&config(dir, port), &[("HB_API_TOKEN", TOKEN)]).await
}

/// The heartbeat's row in `/api/v1/heartbeats`.
async fn row(port: u16) -> serde_json::Value {
    let body = api_get(port, "/api/v1/heartbeats", TOKEN).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    v[0].clone()
}

/// The token, from the URL the list shows.
async fn token(port: u16) -> String {
    let url = row(port).await["url"].as_str().unwrap().to_string();
    let token = url
        .strip_prefix("https://status.example.com/ping/")
        .unwrap_or_else(|| panic!("{url}"));
    token.to_string()
}

async fn ping(port: u16, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = support::client()
        .post(format!("http://127.0.0.1:{port}/ping/{path}"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until the heartbeat's state is `status`, its reason `reason`.
async fn until_state(port: u16, status: &str, reason: Option<&str>) {
    let t = std::time::Instant::now();
    loop {
        let r = row(port).await;
        if r["status"] == status && r["reason"].as_str() == reason {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_heartbeat_up_and_its_absence_or_a_failure_opens_an_incident() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let app = start(dir.path(), port).await;
    let t = token(port).await;
    assert_eq!(t.len(), 22, "128 random bits, URL-safe base64: {t}");
    assert_eq!(row(port).await["status"], "new");

    // A success with the job's output.
    assert_eq!(
        ping(port, &t, b"backup done: 3 GB".to_vec()).await,
        (200, "OK\n".into())
    );
    until_state(port, "up", None).await;
    assert_eq!(row(port).await["last_signal"], "success");
    assert_eq!(row(port).await["due"], "2027-01-15T09:10:00Z");
    // A start: running, within its grace; its end (exit code 0) is a success.
    assert_eq!(ping(port, &format!("{t}/start"), Vec::new()).await.0, 200);
    until_state(port, "running", None).await;
    assert_eq!(ping(port, &format!("{t}/0"), Vec::new()).await.0, 200);
    until_state(port, "up", None).await;

    // An hour and eleven minutes without a ping: late, and the probe fails.
    app.clock.advance(71 * MIN);
    until_state(
        port,
        "late",
        Some("no ping since 2027-01-15T08:00:00Z (due by 2027-01-15T09:10:00Z)"),
    )
    .await;
    support::until_metric(
        port,
        "tocsin_incident_open{service=\"batch\"}",
        Duration::from_secs(10),
        &|| String::new(),
        |v| v == 1.0,
    )
    .await;

    // On-call staff read why, in the mail that opens the incident.
    support::until(
        "the staff mail naming the late heartbeat",
        Duration::from_secs(10),
        &|| format!("{:?}", support::spooled(dir.path())),
        || {
            support::spooled(dir.path()).iter().any(|(to, _, text)| {
                to == "oncall@example.com"
                    && text.contains(
                        "no ping since 2027-01-15T08:00:00Z (due by 2027-01-15T09:10:00Z)",
                    )
            })
        },
    )
    .await;

    // The job fails with exit 3; its output goes into the incident's timeline.
    assert_eq!(
        ping(port, &format!("{t}/3"), b"disk full\n".to_vec())
            .await
            .0,
        200
    );
    until_state(
        port,
        "failed",
        Some("job reported failure: exit 3 (output: \"disk full\")"),
    )
    .await;
    let incidents = api_get(port, "/api/v1/incidents", TOKEN).await;
    let v: serde_json::Value = serde_json::from_str(&incidents).unwrap();
    let id = v[0]["id"].as_i64().unwrap_or_else(|| panic!("{incidents}"));
    let one = api_get(port, &format!("/api/v1/incidents/{id}"), TOKEN).await;
    assert!(
        one.contains("heartbeat backup: exit 3: disk full"),
        "the failure ping is in the timeline: {one}"
    );

    // A start does not end the failure; a success does, and the incident resolves.
    assert_eq!(ping(port, &format!("{t}/start"), Vec::new()).await.0, 200);
    assert_eq!(row(port).await["last_signal"], "start");
    assert_eq!(ping(port, &t, Vec::new()).await.0, 200);
    until_state(port, "up", None).await;
    support::until_metric(
        port,
        "tocsin_incident_open{service=\"batch\"}",
        Duration::from_secs(10),
        &|| String::new(),
        |v| v == 0.0,
    )
    .await;

    // The token never appears in /metrics; the last ping does, as a time.
    let m = support::metrics(port).await;
    assert!(!m.contains(&t), "the token leaked into /metrics");
    assert!(m.contains(
        "tocsin_heartbeat_last_ping_timestamp_seconds{probe=\"backup\",service=\"batch\"} 1800004260"
    ), "{m}");
    app.stop().await;
}

/// The deadline is kept in the store: a restart in the middle of a period neither
/// forgets the last ping nor gives the job a new period; the token stays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_and_the_token_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let app = start(dir.path(), port).await;
    let t = token(port).await;
    assert_eq!(ping(port, &t, Vec::new()).await.0, 200);
    until_state(port, "up", None).await;
    app.stop().await;

    let port = support::free_port();
    let app = start(dir.path(), port).await;
    app.clock.set(epoch() + 50 * MIN);
    assert_eq!(token(port).await, t);
    until_state(port, "up", None).await;
    app.clock.set(epoch() + 71 * MIN);
    until_state(
        port,
        "late",
        Some("no ping since 2027-01-15T08:00:00Z (due by 2027-01-15T09:10:00Z)"),
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_signals_bodies_and_floods_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let app = start(dir.path(), port).await;
    let t = token(port).await;

    assert_eq!(
        ping(port, "not-a-token", Vec::new()).await,
        (404, "no heartbeat has this token\n".into())
    );
    assert_eq!(
        ping(port, &format!("{t}/restart"), Vec::new()).await,
        (
            400,
            "`restart` is not start, fail or an exit code from 0 to 255\n".into()
        )
    );
    assert_eq!(ping(port, &format!("{t}/256"), Vec::new()).await.0, 400);
    let (code, text) = ping(port, &t, vec![b'x'; 2 * 1024 * 1024]).await;
    assert_eq!(
        (code, text.as_str()),
        (
            413,
            "the body is larger than 1048576 bytes; a ping keeps at most 10240 of it\n"
        )
    );
    // A large body within the limit: accepted, and cut to 10 KiB where it is kept.
    assert_eq!(
        ping(port, &format!("{t}/fail"), vec![b'y'; 50_000]).await.0,
        200
    );
    let kept = app
        .store
        .lock()
        .heartbeat("batch", "backup")
        .unwrap()
        .unwrap();
    let body = kept.state.last.unwrap().2.unwrap();
    assert!(body.starts_with(&"y".repeat(10_240)), "{}", body.len());
    assert!(
        body.ends_with("[cut: the body had 50000 bytes]"),
        "{body:.100}"
    );

    // A flood: the burst passes, the rest is refused until the minute allows more.
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(ping(port, &t, Vec::new()).await.0);
    }
    let accepted = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert!((8..=10).contains(&accepted), "{codes:?}");
    assert_eq!(accepted + limited, 20, "{codes:?}");
    let (code, text) = ping(port, &t, Vec::new()).await;
    assert_eq!(
        (code, text.as_str()),
        (
            429,
            "too many pings for this heartbeat: at most 10 at once and 30 a minute\n"
        )
    );
    let m = support::metrics(port).await;
    for line in [
        "tocsin_heartbeat_pings_total{result=\"unknown_token\"} 1",
        "tocsin_heartbeat_pings_total{result=\"bad_request\"} 2",
        "tocsin_heartbeat_pings_total{result=\"too_large\"} 1",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    // Without the API token the list (which shows tokens) is refused.
    let r = support::client()
        .get(format!("http://127.0.0.1:{port}/api/v1/heartbeats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    app.stop().await;
}

/// `tocsin heartbeat list` prints each heartbeat with its ping URL and state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_heartbeats_with_their_urls() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = config(dir.path(), port);
    let app = start(dir.path(), port).await;
    let t = token(port).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["--config", cfg.to_str().unwrap(), "heartbeat", "list"])
        .env("HB_API_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HEARTBEAT"), "{text}");
    assert!(
        text.contains("\nbatch/backup  new     never      2027-01-15T09:10:00Z  https://status.example.com/ping/"),
        "{text}"
    );
    assert!(text.contains(&t), "{text}");
    app.stop().await;
}
