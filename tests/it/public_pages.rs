//! The public side beyond the status page, in-process on a manual clock: honest uptime
//! from recorded probe hours ("no data" before tocsin watched), component groups,
//! response-time sparklines, badges with their cache headers, the paged history, the
//! reader's language from `?lang=` or `Accept-Language`, and placeholders per language.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "public-pages-token";

async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = support::client().get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_badges_groups_and_languages_tell_only_what_was_measured() {
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,services\nana@example.com,shop\n",
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
"
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let (port, clock) = (app.port, app.clock.clone());
    let explain = String::new;
    let epoch = support::epoch();
    support::until(
        "the first probe hours",
        Duration::from_secs(20),
        &explain,
        || {
            ["shop", "api"].iter().all(|s| {
                !app.store
                    .lock()
                    .probe_hours(s, epoch - Duration::from_secs(3600))
                    .unwrap()
                    .is_empty()
            })
        },
    )
    .await;
    // Half an hour of runs, all up.
    clock.advance(Duration::from_secs(1800));
    support::runs(port, "shop", "success", 2, &explain).await;

    let page = get(port, "/status", &[]).await.text().await.unwrap();
    let card = &page[page.find("aria-label=\"Web shop\"").expect("its card")..];
    let card = &card[..card.find("</section>").unwrap()];
    assert_eq!(
        card.matches("<li class=\"none\"").count(),
        89,
        "89 days before it watched: {card}"
    );
    assert_eq!(card.matches("<li class=\"ok\"").count(), 1, "{card}");
    assert!(
        card.contains("100.00% uptime over 90 days (days measured: 1)"),
        "{card}"
    );
    assert!(!card.contains("no data: 100"), "{card}");
    assert!(
        card.contains("<svg") && card.contains("response time, last 24 hours"),
        "a sparkline: {card}"
    );
    assert!(card.contains("Response time, last hour:"), "{card}");
    let sales = page.find("<h2>Sales</h2>").expect("the Sales group");
    let devs = page
        .find("<h2>Developers</h2>")
        .expect("the Developers group");
    assert!(sales < page.find("aria-label=\"Web shop\"").unwrap());
    assert!(devs < page.find("aria-label=\"Public API\"").unwrap());
    assert!(!page.contains("<script"), "no JavaScript");

    // Badges, cacheable.
    let b = get(port, "/badge/shop/status.svg", &[]).await;
    assert_eq!(b.status(), 200);
    assert_eq!(b.headers()["content-type"], "image/svg+xml");
    assert!(b.headers().contains_key("last-modified"));
    let etag = b.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        b.text()
            .await
            .unwrap()
            .contains("aria-label=\"Web shop: working\"")
    );
    let again = get(port, "/badge/shop/status.svg", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    let uptime = get(port, "/badge/shop/uptime.svg", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(uptime.contains("Web shop uptime 30d: 100.00%"), "{uptime}");
    assert_eq!(get(port, "/badge/nope/status.svg", &[]).await.status(), 404);
    assert_eq!(get(port, "/badge/shop/other.svg", &[]).await.status(), 404);

    // An outage: the badge says so; once customers are told, placeholders per language.
    up.store(false, Ordering::SeqCst);
    support::until("the incident", Duration::from_secs(20), &explain, || {
        app.store.lock().incidents(true).unwrap().len() == 1
    })
    .await;
    let b = get(port, "/badge/shop/status.svg", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(b.contains("Web shop: unavailable"), "{b}");
    clock.advance(Duration::from_secs(3601));
    let www = d.join("var/www/shop");
    support::until(
        "the placeholders",
        Duration::from_secs(20),
        &explain,
        || {
            [
                "index.html",
                "index.en.html",
                "index.pl.html",
                "index.sv.html",
            ]
            .iter()
            .all(|f| www.join(f).exists())
        },
    )
    .await;
    let pl = std::fs::read_to_string(www.join("index.pl.html")).unwrap();
    assert!(pl.contains("<html lang=\"pl\">"), "{pl}");
    assert!(
        std::fs::read_to_string(d.join("var/www/status.sv.html"))
            .unwrap()
            .contains("<html lang=\"sv\">")
    );
    up.store(true, Ordering::SeqCst);
    support::until(
        "recovered, the placeholders gone",
        Duration::from_secs(20),
        &explain,
        || app.store.lock().incidents(true).unwrap().is_empty() && !www.exists(),
    )
    .await;

    // The history: this month lists the outage; earlier months are empty; a bad month
    // is refused; one in the future is this one.
    let h = get(port, "/history", &[]).await.text().await.unwrap();
    assert!(h.contains("<h2>January 2027</h2>"), "{h}");
    assert!(h.contains("<h2>December 2026</h2>") && h.contains("<h2>November 2026</h2>"));
    assert_eq!(h.matches("; resolved.").count(), 1, "{h}");
    assert!(h.contains("No incidents."), "{h}");
    assert!(
        h.replace("&#x2f;", "/")
            .contains("href=\"/history?month=2026-10\""),
        "older: {h}"
    );
    let older = get(port, "/history?month=2026-10", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(older.contains("<h2>October 2026</h2>") && older.contains("<h2>August 2026</h2>"));
    assert!(!older.contains("; resolved."));
    assert!(
        older
            .replace("&#x2f;", "/")
            .contains("href=\"/history?month=2027-01\""),
        "newer: {older}"
    );
    assert_eq!(get(port, "/history?month=2026-13", &[]).await.status(), 400);
    let future = get(port, "/history?month=2099-01", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(future.contains("<h2>January 2027</h2>"));
    let incident = app.store.lock().incidents(false).unwrap()[0].id;
    assert!(
        h.replace("&#x2f;", "/")
            .contains(&format!("href=\"/incidents/{incident}\""))
    );
    let inc = get(port, &format!("/incidents/{incident}"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(!inc.contains("http-equiv=\"refresh\""), "over: no refresh");

    // The reader's language: by weight from Accept-Language, else the page's; the answer
    // says its language and that it varies with the header.
    for (accept, want) in [
        ("sv;q=0.5, pl;q=0.9", "pl"),
        ("de-DE, sv-FI;q=0.8", "sv"),
        ("de, fr;q=0.5", "en"),
        ("*", "en"),
        ("pl;q=0, sv;q=0.1", "sv"),
        (";;;,q=x", "en"),
    ] {
        let r = get(port, "/status", &[("accept-language", accept)]).await;
        assert_eq!(r.headers()["content-language"], want, "{accept}");
        assert_eq!(r.headers()["vary"], "Accept-Language");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!("<html lang=\"{want}\">")),
            "{accept}"
        );
    }
    let h = get(port, "/history?lang=pl", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(h.contains("<h2>styczeń 2027</h2>"), "{h}");
    assert!(h.contains("Historia awarii"));
    app.stop().await;
}
