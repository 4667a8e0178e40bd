//! Staff's own updates for customers, end to end in-process on a manual clock: posted
//! through the API, the CLI and the signed link; shown on the status page, the incident
//! page and the feed; mailed (when asked, once customers were told) to each customer in
//! their language or framed in it; read out by the hotline; listed in staff mail; and a
//! `resolved` update closes the incident with its words in the recovery mail.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "updates-test-token";

fn config(target: std::net::SocketAddr, port: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}
data_dir: ./var
public_url: http://127.0.0.1
allow_insecure_links: true
defaults: {{ failure_threshold: 1, success_threshold: 1 }}
company: {{ name: Example Shop }}
services:
  - id: shop
    name: Web shop
    customer_threshold: 1h
    escalation: default
    audience: customers
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
hotline:
  languages: [en, pl]
"
    )
}

async fn post(port: u16, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = support::client()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn page(port: u16, path: &str, accept_language: &str) -> (u16, String) {
    let r = support::client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("accept-language", accept_language)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_reaches_the_pages_the_feed_the_hotline_staff_and_each_customer_in_their_language()
 {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,services\nana@example.com,Ana,en,shop\nbo@example.com,Bo,pl,shop\ncy@example.com,Cy,sv,shop\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(&cfg, config(target, 0)).unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let (port, clock) = (app.port, app.clock.clone());
    let explain = || format!("{:#?}", support::spooled(&d));

    up.store(false, Ordering::SeqCst);
    support::until("the incident", Duration::from_secs(20), &explain, || {
        !app.store.lock().incidents(true).unwrap().is_empty()
    })
    .await;

    // Before customers are told: shown publicly at once, mailed to nobody even if asked.
    let (code, body) = post(
        port,
        "/api/v1/incidents/shop/updates",
        serde_json::json!({"state": "investigating", "text": "Checkout fails <b>for some</b> cards.", "notify": true, "by": "anna"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["updates"][0]["state"], "investigating");
    assert_eq!(
        body["updates"][0]["notified"], false,
        "not told yet: {body}"
    );
    let (_, status) = page(port, "/status", "en").await;
    assert!(
        status.contains("Checkout fails &lt;b&gt;for some&lt;&#x2f;b&gt; cards."),
        "HTML in an update is text: {status}"
    );
    assert!(
        status.contains("<strong>Investigating</strong>"),
        "{status}"
    );

    // The threshold passes: customers are told, in the outage mail with the update so far.
    clock.advance(Duration::from_secs(3601));
    support::until(
        "three outage mails",
        Duration::from_secs(20),
        &explain,
        || {
            support::spooled(&d)
                .iter()
                .filter(|m| {
                    m.1.contains("is unavailable")
                        || m.1.contains("niedostępny")
                        || m.1.contains("inte tillgänglig")
                })
                .count()
                >= 3
        },
    )
    .await;
    // The mail `who` got whose subject starts with or holds one of `kinds`.
    let mail_of = |who: &str, kinds: &[&str]| {
        support::spooled(&d)
            .into_iter()
            .find(|m| m.0 == who && kinds.iter().any(|k| m.1.contains(k)))
            .map(|m| m.2.replace("\r\n", "\n"))
            .unwrap_or_default()
    };
    const OUTAGE: &[&str] = &["is unavailable"];
    const UPDATE: &[&str] = &["Update:", "Aktualizacja:", "Uppdatering:"];
    assert!(
        mail_of("ana@example.com", OUTAGE)
            .contains("Our team's latest update:\nCheckout fails <b>for some</b> cards."),
        "{}",
        mail_of("ana@example.com", OUTAGE)
    );

    // A second update, in two languages, mailed.
    let (code, body) = post(
        port,
        "/api/v1/incidents/shop/updates",
        serde_json::json!({
            "state": "identified",
            "text": "A payment provider is down. Orders by invoice work.",
            "texts": {"pl": "Dostawca płatności ma awarię. Zamówienia na fakturę działają."},
            "notify": true,
            "by": "anna"
        }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["updates"][1]["notified"], true, "{body}");
    support::until(
        "three update mails",
        Duration::from_secs(20),
        &explain,
        || support::spooled(&d).len() >= 7, // three outage, three update mails, the staff mail
    )
    .await;
    app.settled(&explain).await;
    let en = mail_of("ana@example.com", UPDATE);
    assert!(
        en.contains("Our team's latest update:\nA payment provider is down."),
        "{en}"
    );
    let pl = mail_of("bo@example.com", UPDATE);
    assert!(
        pl.contains("Najnowsza wiadomość od naszego zespołu:\nDostawca płatności ma awarię."),
        "{pl}"
    );
    let sv = mail_of("cy@example.com", UPDATE);
    assert!(
        sv.contains("Det senaste från vårt team (på engelska):\nA payment provider is down."),
        "the default language's text, framed in the customer's: {sv}"
    );
    for m in [&en, &pl, &sv] {
        assert!(
            m.contains("lang="),
            "links carry the customer's language: {m}"
        );
    }
    assert!(sv.contains("/status?lang=sv"), "{sv}");

    // The pages: in the reader's language, with the permalink and the feed.
    let incident = app.store.lock().incidents(true).unwrap()[0].id;
    let (code, pl_page) = page(
        port,
        &format!("/incidents/{incident}"),
        "pl-PL,pl;q=0.9,en;q=0.5",
    )
    .await;
    assert_eq!(code, 200);
    assert!(pl_page.contains("<html lang=\"pl\">"), "{pl_page}");
    assert!(pl_page.contains("Przyczyna ustalona"), "{pl_page}");
    assert!(
        pl_page.contains("Dostawca płatności ma awarię."),
        "{pl_page}"
    );
    assert!(
        pl_page.contains("http-equiv=\"refresh\""),
        "open: it refreshes itself"
    );
    let (_, sv_page) = page(port, &format!("/incidents/{incident}?lang=sv"), "pl").await;
    assert!(
        sv_page.contains("<html lang=\"sv\">"),
        "?lang= wins over the header"
    );
    assert!(sv_page.contains("Orsak identifierad"), "{sv_page}");
    assert!(
        sv_page.contains("lang=\"en\">A payment provider is down."),
        "a text in another language is marked as such: {sv_page}"
    );
    assert!(
        sv_page
            .replace("&#x2f;", "/")
            .contains("href=\"/status?lang=sv\""),
        "links keep the chosen language: {sv_page}"
    );
    let (code, _) = page(port, "/status?lang=xx", "").await;
    assert_eq!(code, 200, "an unknown language falls back, it is no error");
    let (code, _) = page(port, "/incidents/999999", "en").await;
    assert_eq!(code, 404);
    let (code, _) = page(port, "/incidents/not-a-number", "en").await;
    assert_eq!(code, 404);
    let (_, summary) = page(port, "/api/v2/summary.json", "").await;
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary["incidents"][0]["status"], "identified",
        "staff's word: {summary}"
    );
    let (_, feed) = page(port, "/feed.atom", "").await;
    assert!(
        feed.contains("Identified: A payment provider is down."),
        "{feed}"
    );
    assert!(feed.contains(&format!("/incidents/{incident}")), "{feed}");

    // The hotline reads the update in its own language only.
    let hot_pl = std::fs::read_to_string(d.join("var/hotline/pl.txt")).unwrap_or_default();
    assert!(
        hot_pl.contains("Nasz zespół dodaje: Dostawca płatności ma awarię."),
        "{hot_pl}"
    );
    let hot_en = std::fs::read_to_string(d.join("var/hotline/en.txt")).unwrap_or_default();
    assert!(
        hot_en.contains("Our team adds: A payment provider is down."),
        "{hot_en}"
    );

    // Resolved by an update: the incident closes, and the recovery mail carries its words.
    // The target is back first: with a threshold of one failure, a run failing after the
    // resolve would rightly open a new incident.
    up.store(true, Ordering::SeqCst);
    let (code, body) = post(
        port,
        "/api/v1/incidents/shop/updates",
        serde_json::json!({"state": "resolved", "text": "Payments work again; no order was lost.", "notify": true, "by": "anna"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["ended"].is_string(), "resolved: {body}");
    assert_eq!(
        body["updates"][2]["notified"], false,
        "the recovery mail carries it"
    );
    support::until(
        "the recovery mails and staff's",
        Duration::from_secs(20),
        &explain,
        || support::spooled(&d).len() >= 11, // and three recovery mails, staff's "resolved"
    )
    .await;
    app.settled(&explain).await;
    let rec = mail_of("ana@example.com", &["working again"]);
    assert!(rec.contains("working again"), "{rec}");
    assert!(
        rec.contains("Payments work again; no order was lost."),
        "{rec}"
    );
    let staff: Vec<(String, String, String)> = support::spooled(&d)
        .into_iter()
        .filter(|m| m.0 == "oncall@example.com")
        .collect();
    assert_eq!(staff.len(), 2, "{staff:#?}");
    let (opened, resolved): (Vec<_>, Vec<_>) = staff.iter().partition(|m| m.1.contains("DOWN"));
    let last = &resolved[0].2;
    assert!(
        last.contains("Public updates so far (on the status page):"),
        "{last}"
    );
    assert!(
        last.contains("identified by anna, mailed to customers:"),
        "{last}"
    );
    assert!(
        opened[0].2.contains("Post an update for customers: http"),
        "{}",
        opened[0].2
    );
    // Nobody got anything twice.
    let mails = support::spooled(&d);
    assert_eq!(
        mails.iter().filter(|m| m.0 == "ana@example.com").count(),
        3,
        "{mails:#?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_updates_are_refused_with_the_fix_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,services\nana@example.com,shop\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(&cfg, config(target, 0)).unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let port = app.port;

    // No incident yet.
    let (code, body) = post(
        port,
        "/api/v1/incidents/shop/updates",
        serde_json::json!({"state": "identified", "text": "x"}),
    )
    .await;
    assert_eq!(code, 404, "{body}");

    up.store(false, Ordering::SeqCst);
    support::until(
        "the incident",
        Duration::from_secs(20),
        &String::new,
        || !app.store.lock().incidents(true).unwrap().is_empty(),
    )
    .await;
    let long = "ż".repeat(2001);
    for (body, want) in [
        (
            serde_json::json!({"state": "identified", "text": "   \n "}),
            "is empty",
        ),
        (
            serde_json::json!({"state": "identified", "text": long}),
            "more than 2000",
        ),
        (
            serde_json::json!({"state": "fixed", "text": "ok"}),
            "investigating, identified, monitoring, resolved",
        ),
        (
            serde_json::json!({"state": "identified", "text": "ok", "texts": {"de": "Hallo"}}),
            "`de`",
        ),
        (
            serde_json::json!({"state": "identified", "text": "ok", "texts": {"pl": ""}}),
            "the `pl` text is empty",
        ),
        (
            serde_json::json!({"state": "identified", "text": "a\u{1b}[31m"}),
            "control character",
        ),
        (
            serde_json::json!({"state": "identified"}),
            "missing field `text`",
        ),
        (
            serde_json::json!({"state": "identified", "text": "ok", "colour": "red"}),
            "unknown field",
        ),
    ] {
        let (code, got) = post(port, "/api/v1/incidents/shop/updates", body).await;
        assert_eq!(code, 400, "{got}");
        assert!(
            got["error"].as_str().unwrap().contains(want),
            "{want}: {got}"
        );
    }
    let r = support::client()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/incidents/shop/updates"
        ))
        .json(&serde_json::json!({"state": "identified", "text": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API wants its token");
    let open = app.store.lock().incidents(true).unwrap();
    assert!(
        open[0].timeline.iter().all(|e| e.kind() != "update"),
        "nothing refused was recorded"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_link_s_form_and_the_cli_post_updates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,services\nana@example.com,shop\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let port = support::free_port();
    let cfg = d.join("probes.yaml");
    std::fs::write(&cfg, config(target, port)).unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let explain = || format!("{:#?}", support::spooled(&d));
    up.store(false, Ordering::SeqCst);
    support::until("the staff mail", Duration::from_secs(20), &explain, || {
        !support::spooled(&d).is_empty()
    })
    .await;
    let staff = support::spooled(&d).remove(0).2;
    let link = staff
        .lines()
        .find_map(|l| l.strip_prefix("Post an update for customers: "))
        .expect("an update link")
        .trim()
        .to_string();
    let path = link
        .split_once("/act?")
        .map(|(_, q)| format!("/act?{q}"))
        .unwrap();
    let url = format!("http://127.0.0.1:{port}{path}");

    // GET shows the form and changes nothing.
    let form = support::client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for field in [
        "<select name=\"state\">",
        "<textarea name=\"text\"",
        "name=\"text_pl\"",
        "name=\"text_sv\"",
    ] {
        assert!(form.contains(field), "{field}: {form}");
    }
    assert!(
        !form.contains("name=\"notify\""),
        "nobody to mail before the customer phase: {form}"
    );
    assert!(
        app.store.lock().incidents(true).unwrap()[0]
            .timeline
            .iter()
            .all(|e| e.kind() != "update")
    );

    // A blank text is refused; a good one is posted, by the mail's recipient.
    let post = |body: &'static str| {
        let url = url.clone();
        async move {
            let r = support::client()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, page) = post("state=identified&text=+++").await;
    assert_eq!(code, 400, "{page}");
    assert!(page.contains("is empty"), "{page}");
    let (code, page) = post("state=identified&text=A+disk+failed%3B+we+restore+it.&text_pl=Dysk+uleg%C5%82+awarii.&text_sv=").await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Update posted"), "{page}");
    let inc = app.store.lock().incidents(true).unwrap().remove(0);
    let u = inc.latest_update().expect("the update").clone();
    assert_eq!(u.text, "A disk failed; we restore it.");
    assert_eq!(
        u.texts.get("pl").map(String::as_str),
        Some("Dysk uległ awarii.")
    );
    assert!(!u.texts.contains_key("sv"), "an empty field is no text");
    assert_eq!(u.by, "oncall@example.com (mail link)");
    // A link altered to another action is refused.
    let forged = url.replacen("a=update", "a=ack", 1);
    assert_eq!(
        support::client()
            .post(&forged)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // The CLI, once customers are told: mailed.
    app.clock.advance(Duration::from_secs(3601));
    support::until("the outage mail", Duration::from_secs(20), &explain, || {
        support::spooled(&d)
            .iter()
            .any(|m| m.0 == "ana@example.com")
    })
    .await;
    let cfg2 = cfg.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "incident",
                "update",
                "shop",
                "--state",
                "monitoring",
                "--text",
                "Restored; we watch it.",
                "--text-pl",
                "Przywrócono; obserwujemy.",
                "--notify",
                "--by",
                "bo",
                "--config",
            ])
            .arg(&cfg2)
            .env("TOCSIN_API_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("update posted (monitoring); it is mailed to the customers told"),
        "{said}"
    );
    support::until("the update mail", Duration::from_secs(20), &explain, || {
        support::spooled(&d)
            .iter()
            .any(|m| m.0 == "ana@example.com" && m.2.contains("Restored; we watch it."))
    })
    .await;
    // And its mistakes are the API's, said plainly.
    let cfg3 = cfg.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "incident", "update", "shop", "--state", "done", "--text", "x", "--config",
            ])
            .arg(&cfg3)
            .env("TOCSIN_API_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("unknown update state `done`"), "{said}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_are_reminded_with_their_links_before_customers_are_owed_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,services\nana@example.com,shop\n",
    )
    .unwrap();
    let (target, up) = support::switchable_target().await;
    let cfg = d.join("probes.yaml");
    std::fs::write(&cfg, config(target, 0)).unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let explain = || format!("{:#?}", support::spooled(&d));
    up.store(false, Ordering::SeqCst);
    support::until("the incident", Duration::from_secs(20), &explain, || {
        !app.store.lock().incidents(true).unwrap().is_empty()
    })
    .await;
    // Customers are told at 1 h and promised an update an hour later; 45 minutes on, the
    // reminder (remind_before: 15 min by default).
    app.clock.advance(Duration::from_secs(3601));
    support::until("the outage mail", Duration::from_secs(20), &explain, || {
        support::spooled(&d)
            .iter()
            .any(|m| m.0 == "ana@example.com")
    })
    .await;
    app.clock.advance(Duration::from_secs(46 * 60));
    support::until("the reminder", Duration::from_secs(20), &explain, || {
        support::spooled(&d)
            .iter()
            .any(|m| m.1.contains("customers get an update at"))
    })
    .await;
    let reminder = support::spooled(&d)
        .into_iter()
        .find(|m| m.1.contains("customers get an update at"))
        .unwrap();
    assert_eq!(reminder.0, "oncall@example.com");
    assert!(
        reminder.1.contains("Web shop: customers get an update at 2027-01-15T10:00:01Z; set a new ETA or post an update"),
        "the date and time, with its zone: {}",
        reminder.1
    );
    assert!(
        reminder.2.contains("saying it takes longer"),
        "{}",
        reminder.2
    );
    assert!(
        reminder
            .2
            .contains("Set the expected recovery time (ETA): http"),
        "{}",
        reminder.2
    );
    assert!(
        reminder.2.contains("Post an update for customers: http"),
        "{}",
        reminder.2
    );
    // Once.
    app.clock.advance(Duration::from_secs(5 * 60));
    app.settled(&explain).await;
    assert_eq!(
        support::spooled(&d)
            .iter()
            .filter(|m| m.1.contains("customers get an update at"))
            .count(),
        1
    );
    app.stop().await;
}
