//! Compensation codes in recovery mails, end to end through the App in-process on a
//! manual clock (mail written as .eml files): an outage that lasted long enough gives each customer told of it one code
//! from the pool, never the same code twice; when the pool runs out the mail goes without
//! a code (never a blank one) and staff are told; a short outage earns none. A bad codes
//! file is refused by `tocsin check` with its lines.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "compensation-test-token";

fn mails(dir: &Path) -> Vec<(String, String, String)> {
    support::spooled(dir)
}

async fn eta(port: u16) -> bool {
    support::api_post(
        port,
        "/api/v1/incidents/shop/eta",
        TOKEN,
        serde_json::json!({"eta": "3h", "by": "test"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outages_earn_one_code_each_and_an_empty_pool_is_told_to_staff() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language\nana@example.com,Ana,en\nbo@example.com,Bo,sv\ncy@example.com,Cy,pl\n",
    )
    .unwrap();
    // Two codes for three customers.
    std::fs::write(
        d.join("codes.csv"),
        "code\nSORRY-AAAA-1111\nSORRY-BBBB-2222\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        support::shop_config(
            0,
            target,
            "customer_threshold: 1h
             escalation: default
             audience: customers
             compensation: { after: 2h, codes_csv: ./codes.csv }",
            "escalation:
  default:
    - { after: 0m, to: [oncall@example.com] }
audiences:
  customers: { csv: ./customers.csv }
mail:
  from: \"Example Status <status@example.com>\"
",
        ),
    )
    .unwrap();
    // The App in-process on a manual clock: the outage's hours pass in an instant.
    let tocsin = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let (port, clock) = (tocsin.port, tocsin.clock.clone());
    let explain = || format!("{:#?}", mails(&d));

    // A long outage: customers told at once (ETA beyond the threshold), back 3 hours on.
    up.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while !eta(port).await {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    clock.advance(Duration::from_secs(3 * 3600));
    up.store(true, Ordering::SeqCst);
    let recovery = |m: &(String, String, String)| {
        m.2.contains("working again")
            || m.2.contains("znów działa")
            || m.2.contains("fungerar igen")
    };
    support::until(
        "three recovery mails",
        Duration::from_secs(30),
        &explain,
        || mails(&d).iter().filter(|m| recovery(m)).count() == 3,
    )
    .await;
    let got: BTreeMap<String, String> = mails(&d)
        .into_iter()
        .filter(|m| recovery(m))
        .map(|m| (m.0, m.2))
        .collect();
    let codes: Vec<&str> = ["SORRY-AAAA-1111", "SORRY-BBBB-2222"]
        .into_iter()
        .filter(|c| got.values().any(|t| t.contains(c)))
        .collect();
    assert_eq!(codes.len(), 2, "both codes given out: {got:#?}");
    for c in &codes {
        assert_eq!(
            got.values().filter(|t| t.contains(c)).count(),
            1,
            "{c} given once"
        );
    }
    // The third customer's mail has no code sentence at all, and no empty one.
    let without: Vec<&String> = got.values().filter(|t| !t.contains("SORRY-")).collect();
    assert_eq!(without.len(), 1, "{got:#?}");
    for phrase in ["here is a code", "mamy dla Ciebie kod", "får du en kod"] {
        assert!(!without[0].contains(phrase), "{}", without[0]);
    }
    // Staff are told, once.
    support::until(
        "the staff notice",
        Duration::from_secs(10),
        &explain,
        || {
            mails(&d)
                .iter()
                .any(|m| m.1 == "[tocsin] Web shop: compensation codes ran out")
        },
    )
    .await;
    let staff: Vec<_> = mails(&d)
        .into_iter()
        .filter(|m| m.1.contains("compensation codes ran out"))
        .collect();
    assert_eq!(staff.len(), 1);
    assert_eq!(staff[0].0, "oncall@example.com");
    assert!(
        staff[0].2.contains("1 recovery mail of campaign"),
        "{}",
        staff[0].2
    );
    let metrics = support::metrics(port).await;
    assert!(
        metrics.contains("tocsin_compensation_codes_missing_total 1"),
        "{metrics}"
    );
    // The campaign the staff mail points to names the customer left without a code.
    let campaigns: serde_json::Value =
        serde_json::from_str(&support::api_get(port, "/api/v1/campaigns", TOKEN).await).unwrap();
    let recovery_id = campaigns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "recovery")
        .unwrap()["id"]
        .clone();
    let detail: serde_json::Value = serde_json::from_str(
        &support::api_get(port, &format!("/api/v1/campaigns/{recovery_id}"), TOKEN).await,
    )
    .unwrap();
    let left: Vec<&str> = detail["without_code"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(left.len(), 1, "{detail}");
    assert!(
        got.iter()
            .any(|(to, text)| to.as_str() == left[0] && !text.contains("SORRY-")),
        "the one listed is the one whose mail had no code: {left:?}"
    );

    // A short outage earns nothing, and no code is ever given twice.
    let before = mails(&d).len();
    up.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while !eta(port).await {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    up.store(true, Ordering::SeqCst);
    support::until(
        "the second recovery",
        Duration::from_secs(30),
        &explain,
        || mails(&d).iter().filter(|m| recovery(m)).count() == 6,
    )
    .await;
    tocsin.settled(&explain).await;
    let all = mails(&d);
    assert!(all.len() > before);
    for c in ["SORRY-AAAA-1111", "SORRY-BBBB-2222"] {
        assert_eq!(all.iter().filter(|m| m.2.contains(c)).count(), 1, "{c}");
    }
    assert_eq!(
        all.iter()
            .filter(|m| m.1.contains("compensation codes ran out"))
            .count(),
        1,
        "a short outage earns no code, so nothing ran out"
    );

    tocsin.stop().await;
}

#[test]
fn a_bad_codes_file_is_refused_with_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("codes.csv"),
        "code,batch\nGOOD-1,a\n,b\nGOOD-1,c\nHAS SPACE,d\nGOOD-2,e\n",
    )
    .unwrap();
    std::fs::write(d.join("nocol.csv"), "coupon\nX1\n").unwrap();
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        "services:
  - id: shop
    compensation: { after: 4h, codes_csv: ./codes.csv }
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:1\" } }
  - id: api
    compensation: { after: 0s, codes_csv: ./nocol.csv }
    probes:
      - { name: api, tcp: { address: \"127.0.0.1:1\" } }
  - id: blog
    compensation: { after: 1h, codes_csv: ./missing.csv }
    probes:
      - { name: blog, tcp: { address: \"127.0.0.1:1\" } }
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let cfg = cfg.display().to_string();
    let codes = d.join("codes.csv").display().to_string();
    for want in [
        format!("{cfg}:7:28: `after` must be longer than zero"),
        format!(
            "{cfg}:11:43: codes file `{}` does not exist",
            d.join("missing.csv").display()
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in {err}");
    }
    // The file's own rows are checked once the config itself is valid.
    std::fs::write(
        d.join("probes.yaml"),
        "services:
  - id: shop
    compensation: { after: 4h, codes_csv: ./codes.csv }
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:1\" } }
  - id: api
    compensation: { after: 4h, codes_csv: ./nocol.csv }
    probes:
      - { name: api, tcp: { address: \"127.0.0.1:1\" } }
",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", &cfg])
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        format!("{codes}:3:1: empty code"),
        format!("{codes}:4:1: code `GOOD-1` repeats line 2: each code is given out once"),
        format!("{codes}:5:1: code \"HAS SPACE\" holds spaces or control characters"),
        format!(
            "{}:1:1: the header row has no `code` column",
            d.join("nocol.csv").display()
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in {err}");
    }
}
