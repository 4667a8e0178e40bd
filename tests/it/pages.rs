//! Placeholder and status pages with real parts: the App in-process (on a manual clock,
//! so the customer threshold is an hour passed in an instant), a real nginx on loopback
//! with the shipped snippet (deploy/nginx/tocsin-placeholder.conf) in front of a site, and
//! headless Chromium loading the pages (a screenshot each, no console messages).
//!
//! Before the threshold nginx proxies to the site; past it the placeholder stands; after
//! recovery the site is back and the placeholder is gone.

use crate::support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The site: `/` always answers; `/health` follows the switch.
async fn site() -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let ok = flag.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let reply: &[u8] = if req.starts_with("GET /health") && !ok {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nsick"
                } else if req.starts_with("GET /health") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\nConnection: close\r\n\r\nWelcome to the shop"
                };
                let _ = s.write_all(reply).await;
            });
        }
    });
    (addr, healthy)
}

/// A webhook receiver that refuses its first call (500), then records every call.
async fn hook() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let reply: &[u8] = if first {
                first = false;
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                log.lock().unwrap().push(req);
                b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
            };
            let _ = s.write_all(reply).await;
        }
    });
    (addr, seen)
}

fn nginx(dir: &Path, port: u16, www: &Path, upstream: std::net::SocketAddr) -> support::Proc {
    let snippet = std::fs::canonicalize("deploy/nginx/tocsin-placeholder.conf").unwrap();
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let conf = dir.join("nginx.conf");
    // One process: the test stops it with SIGKILL, which would leave a worker behind.
    std::fs::write(
        &conf,
        format!(
            "master_process off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        set $tocsin_root {www};
        set $tocsin_service shop;
        include {snippet};
        location / {{ proxy_pass http://{upstream}; }}
    }}
}}
",
            d = dir.display(),
            www = www.display(),
            snippet = snippet.display(),
        ),
    )
    .unwrap();
    let check = Command::new("nginx")
        .args(["-t", "-q", "-p"])
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nginx (scripts/test.sh installs nginx-light)");
    assert!(
        check.status.success(),
        "the snippet must be valid nginx: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    support::Proc(
        Command::new("nginx")
            .args(["-g", "daemon off;", "-p"])
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Loads `url` in headless Chromium on a phone-sized screen, saves a screenshot and
/// returns the console messages it logged.
fn chromium(url: &str, shot: &Path) -> Vec<String> {
    support::browse(url, shot).0
}

async fn get(url: &str) -> (u16, String, Option<String>) {
    let r = match support::client().get(url).send().await {
        Ok(r) => r,
        Err(e) => return (0, e.to_string(), None),
    };
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.text().await.unwrap(), retry)
}

async fn wait_for(url: &str, want: &str, within: Duration) -> (u16, String, Option<String>) {
    let t = Instant::now();
    loop {
        let r = get(url).await;
        if r.1.contains(want) {
            return r;
        }
        assert!(
            t.elapsed() < within,
            "{url} never showed {want:?}; last: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_console_check_catches_a_page_that_logs() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<html><body><script>console.error('broken-7')</script><p>x</p></body></html>",
    )
    .unwrap();
    let console = chromium(
        &format!("file://{}", page.display()),
        &dir.path().join("bad.png"),
    );
    assert!(
        console.iter().any(|l| l.contains("broken-7")),
        "{console:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_serves_the_site_then_the_placeholder_then_the_site_again() {
    let (upstream, healthy) = site().await;
    let dir = tempfile::tempdir().unwrap();
    // nginx's workers (not root) must reach the published files.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let port = support::free_port();
    let (hook_addr, calls) = hook().await;
    let cfg = dir.path().join("probes.yaml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(
            format!(
                "listen: 127.0.0.1:{port}
data_dir: ./var
company: {{ name: Example Shop, phone: \"+48 22 555 01 00\", email: help@example.com, website: \"https://example.com\" }}
pages: {{ timezone: Europe/Warsaw, webhook: {{ url: \"http://{hook_addr}/hook\", token_env: HOOK_TOKEN }} }}
services:
  - id: shop
    name: Web shop <&> \"quoted\"
    failure_threshold: 1
    success_threshold: 1
    customer_threshold: 1h
    probes:
      - {{ name: health, interval: 500ms, timeout: 400ms, http: {{ url: \"http://{upstream}/health\" }} }}
"
            )
            .as_bytes(),
        )
        .unwrap();
    let www = dir.path().join("var/www");
    let tocsin = support::InProcess::start(&cfg, &[("HOOK_TOKEN", "hook-secret")]).await;
    let ngx_port = support::free_port();
    let ngx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&ngx_dir).unwrap();
    let _nginx = nginx(&ngx_dir, ngx_port, &www, upstream);
    let site_url = format!("http://127.0.0.1:{ngx_port}/");

    // Before: the site, through nginx.
    let (code, body, _) = wait_for(&site_url, "Welcome to the shop", Duration::from_secs(10)).await;
    assert_eq!(code, 200);
    let status_url = format!("http://127.0.0.1:{port}/status");
    wait_for(
        &status_url,
        "All services are working",
        Duration::from_secs(10),
    )
    .await;
    assert!(!body.contains("unavailable"));

    // Down past the threshold: the placeholder, with 503 and Retry-After.
    healthy.store(false, Ordering::SeqCst);
    let (_, status, _) = wait_for(
        &status_url,
        "Some services have problems",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        status.contains("Web shop &lt;&amp;&gt; &#34;quoted&#34;")
            || status.contains("Web shop &lt;&amp;&gt; &quot;quoted&quot;"),
        "names are escaped: {status}"
    );
    assert!(
        !status.contains("500") || !status.contains("status 500"),
        "no raw probe errors on the status page"
    );
    // An hour down: past the customer threshold.
    tocsin.clock.advance(Duration::from_secs(3600));
    let (code, placeholder, retry) = wait_for(
        &site_url,
        "temporarily unavailable",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(code, 503, "{placeholder}");
    assert_eq!(retry.as_deref(), Some("600"));
    assert!(
        placeholder.contains("failing with errors"),
        "plain words: {placeholder}"
    );
    assert!(
        placeholder.contains("Next update by"),
        "commits to a time: {placeholder}"
    );
    assert!(
        placeholder.contains("tel:+48225550100"),
        "other ways to reach us: {placeholder}"
    );
    assert!(
        placeholder
            .replace("&#x2f;", "/")
            .contains(&format!("href=\"{status_url}?lang=en\"")),
        "links the status page: {placeholder}"
    );
    // In the reader's language, chosen by nginx from Accept-Language.
    let pl = support::client()
        .get(&site_url)
        .header("accept-language", "pl-PL,pl;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(pl.status(), 503);
    let pl = pl.text().await.unwrap();
    assert!(pl.contains("<html lang=\"pl\">"), "{pl}");
    let other = support::client()
        .get(&site_url)
        .header("accept-language", "de-DE")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        other.contains("<html lang=\"en\">"),
        "the page's language otherwise"
    );
    let meta = std::fs::metadata(www.join("shop/index.html")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    }
    let (_, status, _) = get(&status_url).await;
    assert!(status.contains("Next update by"), "{status}");
    assert!(
        std::fs::read_to_string(www.join("status.html"))
            .unwrap()
            .contains("Some services have problems")
    );

    // Both pages in a real browser: they render, and log nothing.
    for (name, url) in [
        ("placeholder", site_url.as_str()),
        ("status", status_url.as_str()),
    ] {
        let shot = dir.path().join(format!("{name}.png"));
        let console = chromium(url, &shot);
        assert!(
            console.is_empty(),
            "{name} logged to the console: {console:?}"
        );
    }

    // Recovery: the placeholder is withdrawn and nginx proxies to the site again.
    healthy.store(true, Ordering::SeqCst);
    let (code, _, _) = wait_for(&site_url, "Welcome to the shop", Duration::from_secs(15)).await;
    assert_eq!(code, 200);
    assert!(!www.join("shop").exists(), "nothing left behind");

    // The webhook heard both, the first after a refusal and a retry.
    let t = Instant::now();
    while calls.lock().unwrap().len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "webhook calls: {:?}",
            calls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = calls.lock().unwrap().clone();
    assert!(calls[0].starts_with("POST /hook "), "{}", calls[0]);
    assert!(
        calls[0]
            .to_lowercase()
            .contains("authorization: bearer hook-secret"),
        "{}",
        calls[0]
    );
    assert!(
        calls[0].contains("\"event\":\"placeholder_published\"")
            && calls[0].contains("\"service\":\"shop\""),
        "{}",
        calls[0]
    );
    assert!(
        calls[1].contains("\"event\":\"placeholder_withdrawn\""),
        "{}",
        calls[1]
    );
    let (_, status, _) = wait_for(&status_url, "Recent incidents", Duration::from_secs(10)).await;
    assert!(status.contains("All services are working"), "{status}");
    tocsin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_left_from_before_a_crash_is_withdrawn_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("var/www/shop");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "stale").unwrap();
    std::fs::write(www.join(".tocsin-placeholder"), "").unwrap();
    // Someone else's directory is never touched.
    let other = dir.path().join("var/www/blog");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("index.html"), "not ours").unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: ./var
services:
  - id: shop
    probes:
      - {{ name: self, interval: 1s, timeout: 500ms, tcp: {{ address: \"127.0.0.1:{port}\" }} }}
"
        ),
    )
    .unwrap();
    let tocsin = support::InProcess::start(&cfg, &[]).await;
    let t = Instant::now();
    while www.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "stale placeholder still up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(other.join("index.html")).unwrap(),
        "not ours"
    );
    tocsin.stop().await;
}

/// A status page of many services stays readable and cheap: services with a problem
/// come first with their card, the rest are named in collapsed groups, and a client
/// sending back the page's `ETag` gets 304 while nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_services_show_problems_first_and_the_rest_in_collapsed_groups() {
    let (good, _) = support::switchable_target().await;
    let (bad, up) = support::switchable_target().await;
    up.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut y = format!(
        "listen: 127.0.0.1:{port}\ndata_dir: ./var\nallow_insecure_links: true\ndefaults: {{ failure_threshold: 1 }}\nservices:\n"
    );
    for i in 0..40 {
        let group = if i < 20 { "    group: Payments\n" } else { "" };
        let target = if i == 27 { bad } else { good };
        y.push_str(&format!(
            "  - id: s{i}\n    name: Service {i}\n{group}    probes:\n      - {{ name: home{i}, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\" }} }}\n"
        ));
    }
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(&cfg, y).unwrap();
    let app = support::InProcess::start(&cfg, &[]).await;
    support::until_metric(
        port,
        "tocsin_service_state{service=\"s27\"}",
        Duration::from_secs(20),
        &String::new,
        |v| v == 4.0,
    )
    .await;

    let url = format!("http://127.0.0.1:{port}/status");
    let r = support::client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let page = r.text().await.unwrap();
    let card = page
        .find("aria-label=\"Service 27\"")
        .expect("the failing service has its card");
    let payments = page
        .find("<strong>Payments</strong>: 20 working")
        .expect(&page);
    let others = page
        .find("<strong>Other services</strong>: 19 working")
        .expect(&page);
    assert!(
        card < payments && payments < others,
        "problems first, named groups, then the rest"
    );
    assert!(page.contains("<li>Service 3</li>") && !page.contains("aria-label=\"Service 3\""));
    assert_eq!(
        page.matches("<ul class=\"bars\"").count(),
        1,
        "only the failing service has bars"
    );

    let again = support::client()
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = support::client()
        .get(&url)
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    app.stop().await;
}

/// The status page speaks to customers: a service shown from its customer phase
/// (`public_from: customer`) keeps a staff-only blip off the page, its history and its
/// uptime; a public incident's timeline has its opening and each new expected time once,
/// never who acknowledged or that customers were mailed; and the page refreshes itself
/// while something is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_customers_what_is_theirs_only() {
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}
data_dir: ./var
allow_insecure_links: true
defaults: {{ failure_threshold: 1, success_threshold: 1 }}
services:
  - id: shop
    name: Web shop
    customer_threshold: 1h
    escalation: default
    probes:
      - {{ name: home, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
  - id: admin
    name: Back office
    public_from: customer
    escalation: default
    probes:
      - {{ name: panel, interval: 1s, timeout: 500ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
"
        ),
    )
    .unwrap();
    let token = "pages-test-token";
    let app = support::InProcess::start(&cfg, &[("TOCSIN_API_TOKEN", token)]).await;
    let url = format!("http://127.0.0.1:{port}/status");
    up.store(false, Ordering::SeqCst);
    support::until(
        "the incidents",
        Duration::from_secs(20),
        &String::new,
        || app.store.lock().incidents(true).unwrap().len() >= 2,
    )
    .await;
    // Staff acknowledge and set an ETA (beyond the threshold: customers are told at once,
    // with that same time as their promise).
    assert!(
        support::api_post(
            port,
            "/api/v1/incidents/shop/ack",
            token,
            serde_json::json!({"by": "anna"})
        )
        .await
    );
    assert!(
        support::api_post(
            port,
            "/api/v1/incidents/shop/eta",
            token,
            serde_json::json!({"eta": "3h", "by": "anna"})
        )
        .await
    );
    let page = wait_for(&url, "We now expect it back by", Duration::from_secs(20))
        .await
        .1;
    let r = support::client().get(&url).send().await.unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<meta http-equiv=\"refresh\" content=\"60\">")
    );
    assert!(page.contains("Web shop</a>: unavailable"), "{page}");
    assert!(
        !page.contains("Back office</a>: unavailable"),
        "a staff-only incident is not public: {page}"
    );
    assert_eq!(
        page.matches("We now expect it back by").count(),
        1,
        "one line per new time: {page}"
    );
    assert!(page.contains("We are investigating a problem with Web shop."));
    for staff_only in [
        "taken it on",
        "Customers were informed",
        "acknowledged",
        "anna",
    ] {
        assert!(!page.contains(staff_only), "{staff_only}: {page}");
    }

    // Ten minutes later, back: the blip leaves no trace; the shop's outage is in the
    // history, and the back office's watched minutes are all up.
    app.clock.advance(Duration::from_secs(600));
    up.store(true, Ordering::SeqCst);
    let page = wait_for(&url, "Recent incidents", Duration::from_secs(20))
        .await
        .1;
    assert!(page.contains("<strong>Web shop</strong>"), "{page}");
    assert!(!page.contains("<strong>Back office</strong>"), "{page}");
    let office = page.find("aria-label=\"Back office\"").expect("its card");
    assert!(
        page[office..].contains("100.00% uptime over 90 days"),
        "{}",
        &page[office..office + 600]
    );
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "nothing wrong: no refresh"
    );
    app.stop().await;
}
