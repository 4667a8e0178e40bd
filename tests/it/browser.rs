//! The customers' pages in a real browser (headless Chromium, phone-sized) during an
//! outage with staff's updates: the status page, the incident page, the history, the
//! subscribe and the manage pages, each in en, pl and sv. Each renders (a screenshot is
//! kept in target/screenshots), logs nothing to the console (a page that broke its
//! content policy would), and its DOM says its language and shows what a customer
//! should read in it.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "browser-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_page_renders_in_a_browser_in_three_languages() {
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,services\nana@example.com,Ana,en,shop\n",
    )
    .unwrap();
    let cfg = d.join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:0
data_dir: ./var
public_url: http://127.0.0.1
allow_insecure_links: true
defaults: {{ failure_threshold: 1, success_threshold: 1 }}
company: {{ name: Example Shop, phone: +46 8 555 010 }}
services:
  - id: shop
    name: Web shop
    group: Sales
    customer_threshold: 1h
    escalation: default
    audience: customers
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: api
    name: Public API
    group: Developers
    probes:
      - {{ name: ping, interval: 1s, timeout: 500ms, tcp: {{ address: \"{target}\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
campaigns:
  subscriptions: {{ enabled: true }}
"
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let base = format!("http://127.0.0.1:{}", app.port);
    let explain = || format!("{:#?}", support::spooled(&d));
    up.store(false, Ordering::SeqCst);
    support::until("the incident", Duration::from_secs(20), &explain, || {
        !app.store.lock().incidents(true).unwrap().is_empty()
    })
    .await;
    app.clock.advance(Duration::from_secs(3601));
    support::until("the outage mail", Duration::from_secs(20), &explain, || {
        support::spooled(&d)
            .iter()
            .any(|m| m.0 == "ana@example.com")
    })
    .await;
    assert!(
        support::api_post(
            app.port,
            "/api/v1/incidents/shop/updates",
            TOKEN,
            serde_json::json!({
                "state": "identified",
                "text": "A payment provider fails.\nOrders by invoice still work.",
                "texts": {"pl": "Awaria u dostawcy płatności.\nZamówienia na fakturę działają."},
                "by": "anna"
            })
        )
        .await
    );
    let incident = app.store.lock().incidents(true).unwrap()[0].id;
    let mail = support::spooled(&d)
        .into_iter()
        .find(|m| m.0 == "ana@example.com")
        .unwrap()
        .2;
    let manage = mail
        .split_whitespace()
        .find(|w| w.contains("/subscription?"))
        .expect("a manage link in the mail")
        .replacen("http://127.0.0.1", &base, 1);
    let manage = manage.split("&lang=").next().unwrap().to_string();

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    // What each page must show, per language.
    let expect = |lang: &str, page: &str| -> &'static str {
        match (lang, page) {
            ("en", "status") => "Orders by invoice still work.",
            ("pl", "status") => "Zamówienia na fakturę działają.",
            ("sv", "status") => "Orders by invoice still work.",
            ("en", "incident") => "Identified",
            ("pl", "incident") => "Przyczyna ustalona",
            ("sv", "incident") => "Orsak identifierad",
            ("en", "history") => "Incident history",
            ("pl", "history") => "Historia awarii",
            ("sv", "history") => "Händelsehistorik",
            ("en", "subscribe") => "Subscribe",
            ("pl", "subscribe") => "Zapisz się",
            ("sv", "subscribe") => "Prenumerera",
            ("en", "manage") => "Your notices",
            ("pl", "manage") => "Twoje powiadomienia",
            ("sv", "manage") => "Dina meddelanden",
            _ => unreachable!(),
        }
    };
    for lang in ["en", "pl", "sv"] {
        let pages = [
            ("status", format!("{base}/status?lang={lang}")),
            (
                "incident",
                format!("{base}/incidents/{incident}?lang={lang}"),
            ),
            ("history", format!("{base}/history?lang={lang}")),
            ("subscribe", format!("{base}/subscribe?lang={lang}")),
            ("manage", format!("{manage}&lang={lang}")),
        ];
        for (page, url) in pages {
            let shot = shots.join(format!("{page}-{lang}.png"));
            let (console, dom) = tokio::task::spawn_blocking(move || support::browse(&url, &shot))
                .await
                .unwrap();
            assert!(console.is_empty(), "{page} ({lang}) logged: {console:?}");
            assert!(
                dom.contains(&format!("<html lang=\"{lang}\">")),
                "{page} ({lang}): {dom}"
            );
            assert!(dom.contains(expect(lang, page)), "{page} ({lang}): {dom}");
            assert!(!dom.contains("<script"), "{page} ({lang}) has a script");
        }
    }
    // The update is one paragraph per line as written, and marked in its own language
    // where the reader's has no text of its own.
    let (_, dom) = {
        let url = format!("{base}/incidents/{incident}?lang=sv");
        let shot = shots.join("incident-sv-again.png");
        tokio::task::spawn_blocking(move || support::browse(&url, &shot))
            .await
            .unwrap()
    };
    assert!(
        dom.contains("<div class=\"said\" lang=\"en\">A payment provider fails.\nOrders by invoice still work.</div>"),
        "{dom}"
    );
    app.stop().await;
}
