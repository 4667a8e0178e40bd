//! Planned maintenance end to end: the App in-process on a manual clock (mail as .eml
//! files), driven through the CLI as an operator would. A window added through `tocsin maintenance add` is announced once (offsets due together
//! give one notice), keeps incidents from opening while it lasts, shows on the status
//! page, and ends with a "completed" notice to those told; a window that ends with the
//! service still failing sends no "completed" notice and the incident is timed from its
//! end; windows are listed and cancelled, and bad requests are refused.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tocsin::clock::Clock;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "maintenance-test-token";

fn cli(cfg: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("TOCSIN_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `tocsin maintenance add` for shop from `start` for `duration`, with `more` options.
fn add(cfg: &Path, start: SystemTime, duration: &str, more: &[&str]) -> (i32, String) {
    let start = rfc(start);
    let mut args = vec![
        "maintenance",
        "add",
        "--service",
        "shop",
        "--start",
        &start,
        "--duration",
        duration,
    ];
    args.extend(more);
    cli(cfg, &args)
}

fn rfc(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn get(port: u16, path: &str) -> String {
    support::api_get(port, path, TOKEN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_announced_keeps_incidents_away_and_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,timezone,services\nana@example.com,Ana,en,Europe/Warsaw,shop\nbo@example.com,Bo,sv,UTC,\ncy@example.com,Cy,en,UTC,api\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(port, target, "audience: customers\n", &format!("  - id: api
    probes:
      - {{ name: api, interval: 5s, timeout: 1s, tcp: {{ address: \"127.0.0.1:{port}\" }} }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
maintenance:
  - {{ service: shop, start: \"2030-06-01T22:00:00Z\", duration: 2h, announce_before: [48h], note: Yearly upgrade }}
"
        )),
    )
    .unwrap();
    let tocsin = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let clock = tocsin.clock.clone();
    let explain = || format!("{:#?}", support::spooled(&d));

    // A window starting in 30 minutes for 2 hours, announced 48 h and 1 h ahead: both
    // are due now, so one notice goes out.
    let start = clock.now() + Duration::from_secs(30 * 60);
    let (code, out) = add(
        &cfg,
        start,
        "2h",
        &["--announce", "48h,1h", "--note", "Database upgrade"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim_end(),
        format!(
            "planned maintenance window 1 of shop: {} to {}; customers are told 48h, 1h before",
            rfc(start),
            rfc(start + Duration::from_secs(7200))
        )
    );
    support::until("the notice", Duration::from_secs(10), &explain, || {
        support::spooled(&d).len() == 2
    })
    .await;
    let notices = support::spooled(&d);
    let ana = notices.iter().find(|m| m.0 == "ana@example.com").unwrap();
    assert!(
        ana.1.starts_with("Planned maintenance of Web shop: "),
        "{ana:?}"
    );
    assert!(
        ana.2
            .contains("will be unavailable for planned maintenance from"),
        "{ana:?}"
    );
    assert!(notices.iter().any(|m| m.0 == "bo@example.com"));

    // The list shows both windows, the notices recorded for ours.
    let (code, out) = cli(&cfg, &["maintenance", "list"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ID    SERVICE  START                 END                   ANNOUNCE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("1     shop")
            && lines[1].contains("48h, 1h   2        Database upgrade"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("file  shop") && lines[2].contains("Yearly upgrade"),
        "{out}"
    );

    // Inside the window the service fails, and no incident opens: more failed runs than
    // the threshold are decided, and still none.
    clock.advance(Duration::from_secs(31 * 60));
    up.store(false, Ordering::SeqCst);
    support::runs(port, "shop", "failure", 3, &explain).await;
    let status = get(port, "/status").await;
    assert!(
        status.contains("(in progress)") && status.contains("Database upgrade"),
        "{status}"
    );
    assert_eq!(get(port, "/api/v1/incidents?open=true").await, "[]");
    up.store(true, Ordering::SeqCst);
    support::runs(port, "shop", "success", 3, &explain).await;
    clock.advance(Duration::from_secs(2 * 3600));

    // It ends with the service working: those told hear it is complete.
    let complete =
        |m: &(String, String, String)| m.1.contains("is complete") || m.1.contains("är klart");
    support::until(
        "the completion notice",
        Duration::from_secs(20),
        &explain,
        || support::spooled(&d).iter().filter(|m| complete(m)).count() == 2,
    )
    .await;
    assert_eq!(
        get(port, "/api/v1/incidents").await,
        "[]",
        "no incident at all"
    );

    // A window that ends with the service still down: no "completed", and the incident
    // is timed from the window's end.
    let start = clock.now() + Duration::from_secs(10 * 60);
    let (code, out) = add(&cfg, start, "30m", &["--announce", "1h"]);
    assert_eq!(code, 0, "{out}");
    let end = start + Duration::from_secs(30 * 60);
    clock.advance(Duration::from_secs(10 * 60));
    up.store(false, Ordering::SeqCst);
    support::runs(port, "shop", "failure", 3, &explain).await;
    clock.advance(Duration::from_secs(30 * 60));
    let mut open = serde_json::Value::Null;
    let t = std::time::Instant::now();
    while open[0]["started"].is_null() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no incident after the window"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        open = serde_json::from_str(&get(port, "/api/v1/incidents?open=true").await).unwrap();
    }
    let started = humantime::parse_rfc3339(open[0]["started"].as_str().unwrap()).unwrap();
    assert!(
        started + Duration::from_secs(1) >= end,
        "timed from the window's end: {open}"
    );
    assert_eq!(
        support::spooled(&d).iter().filter(|m| complete(m)).count(),
        2,
        "no completion notice for a window that ended failing"
    );
    up.store(true, Ordering::SeqCst);

    // Cancel: an API window by id; a window from the file, or an unknown one, refused.
    let start = clock.now() + Duration::from_secs(3600);
    let (code, out) = add(&cfg, start, "1h", &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&cfg, &["maintenance", "cancel", "3"]);
    assert_eq!((code, out.trim()), (0, "cancelled maintenance window 3"));
    let (_, out) = cli(&cfg, &["maintenance", "list"]);
    assert!(!out.lines().any(|l| l.starts_with("3 ")), "{out}");
    let (code, out) = cli(&cfg, &["maintenance", "cancel", "file"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("tocsin: window `file` is not one added through the API"),
        "{out}"
    );
    let (code, out) = cli(&cfg, &["maintenance", "cancel", "999"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("tocsin: no maintenance window 999 to cancel"),
        "{out}"
    );
    for (args, want) in [
        (
            vec![
                "--service",
                "shp",
                "--start",
                "2030-01-01T00:00:00Z",
                "--duration",
                "1h",
            ],
            "tocsin: no service `shp`",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "tomorrow",
                "--duration",
                "1h",
            ],
            "tocsin: `start`: `tomorrow` is not an RFC 3339 time",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "9999-12-31T22:00:00Z",
                "--duration",
                "1h",
            ],
            "tocsin: `start`: `9999-12-31T22:00:00Z` is outside the years 2000 to 2199",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "2030-01-01T00:00:00Z",
                "--duration",
                "300000y",
            ],
            "tocsin: `duration`: duration `300000y` is longer than ten years",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "2030-01-01T00:00:00Z",
                "--duration",
                "0s",
            ],
            "tocsin: `duration` must be longer than zero, such as 2h or 90m",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "2020-01-01T00:00:00Z",
                "--duration",
                "1h",
            ],
            "tocsin: the window is over already",
        ),
        (
            vec![
                "--service",
                "shop",
                "--start",
                "2030-01-01T00:00:00Z",
                "--duration",
                "1h",
                "--announce",
                "soon",
            ],
            "tocsin: `announce_before`: invalid duration `soon`",
        ),
    ] {
        let mut a = vec!["maintenance", "add"];
        a.extend(args);
        let (code, out) = cli(&cfg, &a);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(want), "{want} in {out}");
    }
    tocsin.stop().await;
}
