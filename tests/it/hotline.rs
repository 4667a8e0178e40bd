//! The hotline announcement with a real hook program: the texts per language appear in
//! the customer phase with the ETA, change with it, and go on recovery; the hook gets
//! `published`, `updated` and `withdrawn` as JSON, is not re-run by a restart when nothing
//! changed, and a failing or hanging hook is reported and retried without holding up
//! anything else.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TOKEN: &str = "hotline-test-token";

const HOOK: &str = r#"#!/bin/sh
here="$(dirname "$0")"
mkdir -p "$here/calls"
n=$(ls "$here/calls" | wc -l)
if [ -f "$here/hang" ]; then sleep 30; fi
if [ -f "$here/fail" ]; then echo "telephony API answered 503" >&2; exit 3; fi
# Written aside and renamed, so the test never reads a call half-written.
cat > "$here/call.$$"
mv "$here/call.$$" "$here/calls/$n.json"
"#;

fn calls(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for n in 0.. {
        match std::fs::read_to_string(dir.join(format!("calls/{n}.json"))) {
            Ok(t) => out.push(serde_json::from_str(&t).unwrap()),
            Err(_) => break,
        }
    }
    out
}

fn start(cfg: &Path, log: &Path) -> support::Proc {
    support::run_tocsin(cfg, log, &[("TOCSIN_API_TOKEN", TOKEN)])
}

async fn set_eta(port: u16, eta: &str) -> bool {
    support::api_post(
        port,
        "/api/v1/incidents/shop/eta",
        TOKEN,
        serde_json::json!({"eta": eta, "by": "test"}),
    )
    .await
}

async fn text(port: u16, path: &str, token: bool) -> String {
    let mut r = support::client().get(format!("http://127.0.0.1:{port}{path}"));
    if token {
        r = r.bearer_auth(TOKEN);
    }
    r.send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcement_follows_the_outage_and_the_hook_hears_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let hook = d.join("announce.sh");
    std::fs::write(&hook, HOOK).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            port,
            target,
            "customer_threshold: 1h\n",
            "company: { name: Example Shop, website: https://www.example.com }
hotline:
  timezone: Europe/Stockholm
  hook: [./announce.sh]
  hook_timeout: 2s
",
        ),
    )
    .unwrap();
    let log = d.join("tocsin.log");
    let explain = || std::fs::read_to_string(&log).unwrap_or_default();
    let files = |lang: &str| -> PathBuf { d.join(format!("var/hotline/{lang}.txt")) };
    let mut tocsin = start(&cfg, &log);

    up.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while !set_eta(port, "3h").await {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    support::until(
        "the hook's first call",
        Duration::from_secs(15),
        &explain,
        || calls(&d).len() == 1,
    )
    .await;
    for lang in ["en", "pl", "sv"] {
        assert!(files(lang).exists(), "{lang}");
    }
    let en = std::fs::read_to_string(files("en")).unwrap();
    assert!(en.starts_with("You have reached Example Shop."), "{en}");
    assert!(en.contains("Web shop has been unavailable since"), "{en}");
    assert!(en.contains("We expect it to be working again by"), "{en}");
    // Callers are sent to the status page, never to the website that may be the one down.
    assert!(
        en.contains("on our status page at http://127.0.0.1:"),
        "{en}"
    );
    assert!(!en.contains("https://www.example.com"), "{en}");
    let sv = std::fs::read_to_string(files("sv")).unwrap();
    assert!(
        sv.contains("Vi räknar med att den fungerar igen senast"),
        "{sv}"
    );
    let mode = std::fs::metadata(files("en")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let first = &calls(&d)[0];
    assert_eq!(first["event"], "published");
    assert_eq!(first["incidents"][0]["service"], "shop");
    assert_eq!(first["incidents"][0]["service_name"], "Web shop");
    assert!(first["incidents"][0]["eta"].is_string());
    assert_eq!(first["texts"]["en"], en.as_str());
    assert_eq!(
        first["files"]["pl"].as_str().unwrap(),
        files("pl").to_str().unwrap()
    );

    // A restart with nothing changed does not call the hook again.
    tocsin.stop();
    let mut tocsin = start(&cfg, &log);
    // Three runs decided by the restarted tocsin: its hotline has made its first pass.
    support::runs(port, "shop", "failure", 3, &explain).await;
    assert_eq!(calls(&d).len(), 1, "{}", explain());

    // A failing hook: reported, counted, in the timeline, retried; nothing else waits.
    std::fs::write(d.join("fail"), "").unwrap();
    assert!(set_eta(port, "5h").await);
    support::until(
        "the new ETA in the text",
        Duration::from_secs(15),
        &explain,
        || std::fs::read_to_string(files("en")).is_ok_and(|t| t != en),
    )
    .await;
    support::until(
        "the failure logged",
        Duration::from_secs(15),
        &explain,
        || explain().contains("hotline hook failed"),
    )
    .await;
    assert!(
        explain().contains(&format!(
            "{} exited with exit status: 3: telephony API answered 503",
            hook.display()
        )),
        "{}",
        explain()
    );
    let metrics = text(port, "/metrics", false).await;
    assert!(metrics.contains("tocsin_hotline_active 1"), "{metrics}");
    assert!(
        !metrics.contains("tocsin_hotline_hook_failures_total 0"),
        "{metrics}"
    );
    let incident = text(port, "/api/v1/incidents/shop", true).await;
    assert!(incident.contains("hotline_failed"), "{incident}");
    std::fs::remove_file(d.join("fail")).unwrap();
    support::until(
        "the retried update",
        Duration::from_secs(20),
        &explain,
        || calls(&d).len() == 2,
    )
    .await;
    assert_eq!(calls(&d)[1]["event"], "updated");

    // A hook that hangs is stopped at its deadline; recovery still withdraws the texts.
    std::fs::write(d.join("hang"), "").unwrap();
    up.store(true, Ordering::SeqCst);
    support::until(
        "the texts withdrawn",
        Duration::from_secs(20),
        &explain,
        || !files("en").exists() && !files("pl").exists() && !files("sv").exists(),
    )
    .await;
    support::until("the deadline", Duration::from_secs(20), &explain, || {
        explain().contains("did not finish within 2s and was stopped")
    })
    .await;
    std::fs::remove_file(d.join("hang")).unwrap();
    support::until(
        "the withdrawal heard",
        Duration::from_secs(30),
        &explain,
        || calls(&d).len() == 3,
    )
    .await;
    let last = &calls(&d)[2];
    assert_eq!(last["event"], "withdrawn");
    assert_eq!(last["texts"], serde_json::json!({}));
    let metrics = text(port, "/metrics", false).await;
    assert!(metrics.contains("tocsin_hotline_active 0"), "{metrics}");
    assert!(tocsin.stop());
}
