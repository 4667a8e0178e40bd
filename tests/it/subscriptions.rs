//! Subscriptions with double opt-in, end to end through a real SMTP server, in-process on
//! a manual clock: the form, the confirmation mail and its link (GET shows, POST
//! confirms), nothing to an unconfirmed address, the subscriber in the service's
//! campaigns beside the file audience (one message per address), "manage my
//! subscription" and the per-service stop from the mail, the rate limits, and every
//! refusal.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use tocsin::clock::Clock;

const TOKEN: &str = "subscriptions-token";

struct Site {
    port: u16,
}

impl Site {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = support::client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        forwarded: Option<&str>,
    ) -> (u16, String) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut r = support::client()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(ip) = forwarded {
            r = r.header("x-forwarded-for", ip);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The text part of a raw mail, decoded.
fn text(mail: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.to_string()))
        .unwrap_or_default()
}

fn subject(mail: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

/// The first link in the mail's text that starts with `starts`, as a path on tocsin.
fn link(mail: &str, starts: &str) -> String {
    let body = text(mail);
    let at = body
        .find(starts)
        .unwrap_or_else(|| panic!("{starts} in {body}"));
    let rest = &body[at..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].replacen("http://127.0.0.1", "", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_subscribes_confirms_is_told_once_manages_and_stops() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,services\nbo@example.com,Bo,shop\n",
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
company: {{ name: Example Shop }}
services:
  - id: shop
    name: Web shop
    customer_threshold: 1h
    audience: customers
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: api
    name: Public API
    customer_threshold: 1h
    probes:
      - {{ name: ping, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{smtp}\"
  allow_plain: true
campaigns:
  subscriptions: {{ per_ip_per_hour: 6, per_address_per_day: 2 }}
",
            smtp = smtp.port
        ),
    )
    .unwrap();
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", TOKEN)]).await;
    let site = Site { port: app.port };

    // The form, in the reader's language, offered from the status page.
    let (code, form) = site.get("/subscribe?lang=pl").await;
    assert_eq!(code, 200);
    assert!(
        form.contains("<html lang=\"pl\">") && form.contains("Zapisz się"),
        "{form}"
    );
    assert!(form.contains("value=\"shop\"") && form.contains("value=\"api\""));
    assert!(
        form.contains("value=\"UTC\""),
        "the page's zone by default: {form}"
    );
    let (_, status) = site.get("/status").await;
    assert!(
        status
            .replace("&#x2f;", "/")
            .contains("href=\"/subscribe\""),
        "{status}"
    );

    // Bad input: each refused with what to fix, nothing mailed.
    for (fields, want) in [
        (
            vec![
                ("email", "not an address"),
                ("all", "1"),
                ("language", "en"),
                ("timezone", "UTC"),
            ],
            "valid e-mail",
        ),
        (
            vec![
                ("email", "ana@example.com"),
                ("language", "en"),
                ("timezone", "UTC"),
            ],
            "at least one service",
        ),
        (
            vec![
                ("email", "ana@example.com"),
                ("service", "nope"),
                ("language", "en"),
                ("timezone", "UTC"),
            ],
            "does not exist",
        ),
        (
            vec![
                ("email", "ana@example.com"),
                ("all", "1"),
                ("language", "de"),
                ("timezone", "UTC"),
            ],
            "languages offered",
        ),
        (
            vec![
                ("email", "ana@example.com"),
                ("all", "1"),
                ("language", "en"),
                ("timezone", "Mars/Olympus"),
            ],
            "time zone",
        ),
    ] {
        let (code, page) = site.post("/subscribe", &fields, Some("198.51.100.1")).await;
        assert_eq!(code, 400, "{page}");
        assert!(page.contains(want), "{want}: {page}");
    }
    assert_eq!(smtp.count(), 0);

    // Ana asks for the API, in Swedish.
    let ana = [
        ("email", "Ana@Example.com"),
        ("service", "api"),
        ("language", "sv"),
        ("timezone", "Europe/Stockholm"),
    ];
    let (code, page) = site.post("/subscribe", &ana, Some("198.51.100.2")).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("a confirmation link is on its way"), "{page}");
    smtp.wait_for(1, Duration::from_secs(10)).await;
    let mail = smtp.mails().remove(0);
    assert!(mail.contains("X-Envelope-To: Ana@Example.com"), "{mail}");
    assert!(
        subject(&mail).starts_with("Bekräfta din prenumeration"),
        "Swedish: {mail}"
    );
    assert!(text(&mail).contains("om Public API"), "{}", text(&mail));
    let confirm = link(&mail, "http://127.0.0.1/subscribe/confirm?");
    assert!(
        app.store.lock().subscribers_of("api").unwrap().is_empty(),
        "nothing before confirming"
    );

    // GET only shows; a forged link is refused; POST confirms.
    let (code, page) = site.get(&confirm).await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("<button type=\"submit\">Bekräfta</button>"),
        "{page}"
    );
    assert!(
        app.store.lock().subscribers_of("api").unwrap().is_empty(),
        "a GET confirms nothing"
    );
    let forged = confirm.replacen("&n=", "&n=0", 1);
    assert_eq!(site.post(&forged, &[], None).await.0, 403);
    let (code, page) = site.post(&confirm, &[], None).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("prenumererar nu på Public API"), "{page}");
    assert_eq!(
        site.post(&confirm, &[], None).await.0,
        409,
        "a link confirms once"
    );
    assert_eq!(app.store.lock().subscribers_of("api").unwrap().len(), 1);
    assert!(app.store.lock().subscribers_of("shop").unwrap().is_empty());

    // Bo, already in the customer file, subscribes to everything: one recipient.
    let bo = [
        ("email", "bo@example.com"),
        ("all", "1"),
        ("language", "en"),
        ("timezone", "UTC"),
    ];
    assert_eq!(
        site.post("/subscribe", &bo, Some("198.51.100.3")).await.0,
        200
    );
    smtp.wait_for(2, Duration::from_secs(10)).await;
    let bo_confirm = link(&smtp.mails()[1], "http://127.0.0.1/subscribe/confirm?");
    assert_eq!(site.post(&bo_confirm, &[], None).await.0, 200);

    // A link left 49 hours is expired.
    let cy = [
        ("email", "cy@example.com"),
        ("all", "1"),
        ("language", "en"),
        ("timezone", "UTC"),
    ];
    assert_eq!(
        site.post("/subscribe", &cy, Some("198.51.100.4")).await.0,
        200
    );
    smtp.wait_for(3, Duration::from_secs(10)).await;
    let cy_confirm = link(&smtp.mails()[2], "http://127.0.0.1/subscribe/confirm?");
    app.clock.advance(Duration::from_secs(49 * 3600));
    let (code, page) = site.post(&cy_confirm, &[], None).await;
    assert_eq!(code, 403);
    assert!(page.contains("expired"), "{page}");
    assert!(
        app.store
            .lock()
            .subscription("cy@example.com")
            .unwrap()
            .is_none()
    );

    // Both services go down and customers are told: Ana about the API (no audience file:
    // subscribers alone); Bo, in the file for the shop and subscribed to everything, once,
    // in one message naming both (the first outage's message waits the merge window).
    up.store(false, Ordering::SeqCst);
    support::until(
        "two incidents",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().len() == 2,
    )
    .await;
    app.clock.advance(Duration::from_secs(3601));
    support::until(
        "both campaigns",
        Duration::from_secs(20),
        &|| format!("{:#?}", smtp.subjects()),
        || {
            app.store
                .lock()
                .campaigns(None, app.clock.now())
                .unwrap()
                .len()
                == 2
        },
    )
    .await;
    app.clock.advance(Duration::from_secs(121));
    smtp.wait_for(3 + 2, Duration::from_secs(20)).await;
    app.settled(&|| format!("{:#?}", smtp.subjects())).await;
    let subjects = smtp.subjects();
    let to = |who: &str| {
        subjects
            .iter()
            .skip(3)
            .filter(|s| s.starts_with(who))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(to("Ana@Example.com").len(), 1, "{subjects:#?}");
    let bo_told = to("bo@example.com");
    assert_eq!(
        bo_told.len(),
        1,
        "one message for both services: {subjects:#?}"
    );
    assert!(
        bo_told[0].contains("Web shop and Public API are unavailable")
            || bo_told[0].contains("Public API and Web shop are unavailable"),
        "{bo_told:?}"
    );
    assert!(
        to("cy@example.com").is_empty(),
        "never confirmed: {subjects:#?}"
    );
    let ana_mail = smtp
        .mails()
        .into_iter()
        .skip(3)
        .find(|m| m.contains("X-Envelope-To: Ana@Example.com"))
        .unwrap();
    let manage = link(&ana_mail, "http://127.0.0.1/subscription?");
    assert!(manage.contains("lang=sv"), "{manage}");
    // The first unsubscribe link of the text is the one for this service.
    let per_service = link(&ana_mail, "http://127.0.0.1/unsubscribe?");

    // Manage: change to every service; a forged link is refused.
    let (code, page) = site.get(&manage).await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("name=\"service\" value=\"api\" checked"),
        "{page}"
    );
    assert_eq!(site.get(&manage.replacen("&s=", "&s=00", 1)).await.0, 403);
    let (code, page) = site
        .post(
            &manage,
            &[
                ("all", "1"),
                ("language", "sv"),
                ("timezone", "Europe/Stockholm"),
            ],
            None,
        )
        .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(app.store.lock().subscribers_of("shop").unwrap().len(), 2);
    // The per-service link: Ana stops the shop's notices only.
    assert!(per_service.contains("svc=api"), "{per_service}");
    let (code, page) = site.get(&per_service).await;
    assert_eq!(code, 200);
    assert!(page.contains("Public API"), "{page}");
    assert_eq!(site.post(&per_service, &[], None).await.0, 200);
    // Stop everything from the manage page.
    let (code, page) = site.post(&manage, &[("stop", "1")], None).await;
    assert_eq!(code, 200, "{page}");
    assert!(
        app.store
            .lock()
            .subscription("ana@example.com")
            .unwrap()
            .is_none()
    );

    // Rate limits: per address (the third request today mails nothing, and says the same),
    // per client address (429 past the hour's allowance).
    let before = smtp.count();
    let dee = [
        ("email", "dee@example.com"),
        ("all", "1"),
        ("language", "en"),
        ("timezone", "UTC"),
    ];
    for _ in 0..3 {
        let (code, page) = site.post("/subscribe", &dee, Some("198.51.100.9")).await;
        assert_eq!(code, 200, "{page}");
    }
    smtp.wait_for(before + 2, Duration::from_secs(10)).await;
    app.settled(&String::new).await;
    assert_eq!(smtp.count(), before + 2, "two confirmations a day at most");
    let mut last = 0;
    for i in 0..7 {
        let e = format!("flood{i}@example.com");
        let f = [
            ("email", e.as_str()),
            ("all", "1"),
            ("language", "en"),
            ("timezone", "UTC"),
        ];
        last = site.post("/subscribe", &f, Some("203.0.113.7")).await.0;
    }
    assert_eq!(last, 429, "the seventh request from one address in an hour");
    app.stop().await;
}
