//! The HTTP endpoints through `web::app` (tower's `oneshot`), with probes against real
//! servers: the blackbox-compatible `/probe`, `/metrics`, `/healthz`, `/api/v1/probes`.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use tocsin::clock::SystemClock;
use tocsin::config::{self, LiveConfig};
use tocsin::metrics::Metrics;
use tocsin::scheduler::Latest;
use tocsin::web::{AppState, Side, app, router};

fn state(yaml: &str) -> AppState {
    let c = config::parse(yaml, Path::new("web.yaml")).unwrap_or_else(|e| panic!("{e}"));
    AppState {
        config: LiveConfig::new(c),
        metrics: Arc::new(Metrics::new()),
        latest: Arc::new(Latest::default()),
        clock: Arc::new(SystemClock),
        incidents: None,
        campaigns: None,
        public: None,
        maintenance: None,
        heartbeats: None,
        votes: None,
    }
}

const BASE: &str =
    "services:\n  - id: s\n    probes:\n      - { name: p, tcp: { address: \"127.0.0.1:9\" } }\n";

/// A GET on the internal side (`internal_listen`), where /probe and the APIs live.
async fn get(s: &AppState, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    get_on(s, Side::Internal, uri, headers).await
}

async fn get_on(
    s: &AppState,
    side: Side,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router(s.clone(), side)
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn probe_endpoint_speaks_blackbox_for_http() {
    let server = support::HttpServer::start(None).await;
    let s = state(BASE);
    let (code, body) = get(
        &s,
        &format!("/probe?module=http&target=http://{}/", server.addr),
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_http_status_code"), Some(200.0));
    assert!(body.contains("probe_http_duration_seconds{phase=\"connect\"}"));
    assert!(value(&body, "probe_duration_seconds").unwrap() > 0.0);

    let (_, body) = get(&s, &format!("/probe?target={}/503", server.addr), &[]).await;
    assert_eq!(
        value(&body, "probe_success"),
        Some(0.0),
        "module defaults to http, scheme to http://"
    );
    assert_eq!(value(&body, "probe_http_status_code"), Some(503.0));
}

#[tokio::test]
async fn probe_endpoint_tcp_and_configured_modules() {
    let banner = support::line_server(0, b"220 ready\r\n").await;
    let dns = support::dns_server().await;
    let yaml = format!(
        "{BASE}modules:\n  game: {{ udp: {{ send: \"status\", expect: \"^ok\" }} }}\n  smtp_banner: {{ timeout: 2s, tcp: {{ expect: \"^220\" }} }}\n  shop_a: {{ dns: {{ name: shop.test, type: A, expect: [\"203.0.113.10\"] }} }}\n  shop_mx: {{ dns: {{ name: shop.test, type: MX }} }}\n"
    );
    let s = state(&yaml);
    let (_, body) = get(&s, &format!("/probe?module=tcp&target={banner}"), &[]).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0));
    // A UDP module: the target's reply is matched as configured.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let game = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(b"ok 12 players", from).await;
        }
    });
    let (_, body) = get(&s, &format!("/probe?module=game&target={game}"), &[]).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    // The built-in gRPC module: the health service of the target.
    let (grpc, _reporter) = support::grpc_health(None).await;
    let (_, body) = get(&s, &format!("/probe?module=grpc&target={grpc}"), &[]).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_grpc_status_code"), Some(0.0), "{body}");
    assert!(
        body.contains("probe_grpc_healthcheck_response{serving_status=\"SERVING\"} 1"),
        "{body}"
    );
    // The built-in ICMP module, blackbox's figures.
    let (_, body) = get(&s, "/probe?module=icmp&target=127.0.0.1", &[]).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(
        value(&body, "probe_icmp_reply_hop_limit"),
        Some(64.0),
        "{body}"
    );
    assert_eq!(value(&body, "probe_ip_protocol"), Some(4.0), "{body}");
    assert!(
        body.contains("probe_icmp_duration_seconds{phase=\"rtt\"}"),
        "{body}"
    );
    let (_, body) = get(
        &s,
        &format!("/probe?module=smtp_banner&target={banner}"),
        &[],
    )
    .await;
    assert_eq!(value(&body, "probe_success"), Some(1.0));
    let (_, body) = get(&s, &format!("/probe?module=shop_a&target={dns}"), &[]).await;
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(value(&body, "probe_dns_answer_rrs"), Some(2.0));
    let (_, body) = get(&s, &format!("/probe?module=shop_mx&target={dns}"), &[]).await;
    assert_eq!(value(&body, "probe_dns_answer_rrs"), Some(1.0));
    let (_, body) = get(
        &s,
        &format!("/probe?module=shop_mx&target={dns}&name=gone.test"),
        &[],
    )
    .await;
    assert_eq!(value(&body, "probe_success"), Some(0.0));
    assert_eq!(value(&body, "probe_dns_answer_rrs"), Some(0.0));
}

#[tokio::test]
async fn probe_endpoint_refuses_bad_requests_with_a_reason() {
    let s = state(BASE);
    let (code, body) = get(&s, "/probe?module=ping&target=127.0.0.1", &[]).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        "unknown module `ping` (known: dns, grpc, http, icmp, tcp)"
    );
    let (code, body) = get(&s, "/probe?module=icmp&target=127.0.0.1:80", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "target `127.0.0.1:80` is not a host name or an IP address"
        )
    );
    let (code, body) = get(&s, "/probe?module=dns&target=127.0.0.1:53", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "module `dns` needs the name to look up: add `&name=`"
        )
    );
    let (code, body) = get(
        &s,
        "/probe?module=dns&target=127.0.0.1:53&name=a.test&type=AX",
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("unknown record type `AX`"), "{body}");
    let (code, body) = get(&s, "/probe?module=http", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::BAD_REQUEST, "the `target` parameter is missing")
    );
    let (code, body) = get(&s, "/probe?module=tcp&target=no-port", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::BAD_REQUEST, "target `no-port` is not host:port")
    );
    let (code, body) = get(&s, "/probe?module=http&target=ftp://x/", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "target scheme `ftp` is not http or https"
        )
    );
}

#[tokio::test]
async fn probe_endpoint_ends_within_the_scrape_timeout() {
    // The module's own timeout is 10 s; the scrape allows 1.5 s, less 0.5 s of margin.
    let hung = support::silent_server().await;
    let s = state(BASE);
    let t = Instant::now();
    let (_, body) = get(
        &s,
        &format!("/probe?module=http&target=http://{hung}/"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(value(&body, "probe_success"), Some(0.0));
}

#[tokio::test]
async fn health_metrics_and_api_answer() {
    let s = state(BASE);
    let (code, body) = get(&s, "/healthz", &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::OK, "{\"status\":\"ok\"}")
    );
    let (code, body) = get(&s, "/metrics", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("tocsin_build_info{version=\""));
    let (code, body) = get(&s, "/api/v1/probes", &[]).await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["probe"], "p");
    assert_eq!(v[0]["last"], serde_json::Value::Null, "no run yet");

    // A key in a probe URL's query string is not shown.
    let s = state(&format!(
        "{BASE}      - {{ name: q, http: {{ url: \"https://api.example.com/health?api_key=s3cret&x=1\" }} }}\n"
    ));
    let (_, body) = get(&s, "/api/v1/probes", &[]).await;
    assert!(!body.contains("s3cret"), "{body}");
    assert!(body.contains("https://api.example.com/health?…"), "{body}");
}

/// Clients cannot exhaust the monitor: idle and half-sent connections are closed after
/// the header timeout, connections over the cap are closed at accept, and the server
/// answers again once they are gone.
#[tokio::test]
async fn idle_half_sent_and_excess_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = tocsin::web::serve::Limits {
        header_timeout: Duration::from_millis(700),
        max_connections: 4,
        drain: Duration::from_secs(1),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(tocsin::web::serve::serve(
        listener,
        app(state(BASE)),
        limits,
        stop.clone(),
    ));
    let start = Instant::now();
    let within = |d: u64| Duration::from_millis(d);
    let mut idle = Vec::new();
    for i in 0..4 {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i == 0 {
            // Slowloris: half a request head, never finished.
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    tokio::task::yield_now().await;
    // The fifth is over the cap: closed at once.
    let mut excess = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(within(500), excess.read(&mut buf))
        .await
        .expect("the excess connection is closed at once");
    assert_eq!(n.unwrap_or(0), 0);
    // The four are closed by the header timeout, not before.
    for mut c in idle {
        let n = tokio::time::timeout(within(5000), c.read(&mut buf))
            .await
            .expect("an idle connection is closed by the header timeout")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert!(start.elapsed() >= within(600), "{:?}", start.elapsed());
    // Slots are free again: a real request is answered.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(within(5000), c.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// With `internal_listen`, the public listener serves no /metrics, /probe or JSON API; on
/// a single listener /probe and /api/v1/probes need the API token.
#[tokio::test]
async fn probe_and_apis_stay_off_the_public_side_or_behind_the_token() {
    let s = state(BASE);
    for path in [
        "/metrics",
        "/probe?module=tcp&target=127.0.0.1:9",
        "/api/v1/probes",
    ] {
        let (code, _) = get_on(&s, Side::Public, path, &[]).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path} on the public side");
    }
    assert_eq!(
        get_on(&s, Side::Public, "/healthz", &[]).await.0,
        StatusCode::OK
    );
    // One listener: /metrics open, /probe and /api/v1/probes refused without the token
    // (this state has no API: there is no token to give).
    assert_eq!(
        get_on(&s, Side::Both, "/metrics", &[]).await.0,
        StatusCode::OK
    );
    for path in ["/probe?module=tcp&target=127.0.0.1:9", "/api/v1/probes"] {
        let (code, body) = get_on(&s, Side::Both, path, &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
}

/// A module that sends secrets is aimed only at the targets in its `allow`, checked
/// after DNS; others are refused before anything is sent.
#[tokio::test]
async fn a_module_with_secrets_probes_only_its_allowed_targets() {
    let (addr, seen) = support::recording_http(|_: &str| {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string()
    })
    .await;
    let c = config::parse_with(
        &format!(
            "{BASE}modules:\n  authed:\n    allow: [\"127.0.0.0/8\"]\n    http: {{ headers_env: {{ X-Api-Key: PROBE_KEY }} }}\n  loose:\n    http: {{ headers_env: {{ X-Api-Key: PROBE_KEY }} }}\n"
        ),
        Path::new("web.yaml"),
        &|k: &str| (k == "PROBE_KEY").then(|| "k3y".to_string()),
    );
    // Without `allow`, a module with secrets is refused at load.
    let err = c.err().unwrap().to_string();
    assert!(err.contains("module `loose` sends secret headers"), "{err}");
    let c = config::parse_with(
        &format!(
            "{BASE}modules:\n  authed:\n    allow: [\"127.0.0.0/8\", \"*.internal.example\"]\n    http: {{ headers_env: {{ X-Api-Key: PROBE_KEY }} }}\n"
        ),
        Path::new("web.yaml"),
        &|k: &str| (k == "PROBE_KEY").then(|| "k3y".to_string()),
    )
    .unwrap();
    let mut s = state(BASE);
    s.config = LiveConfig::new(c);
    let (code, body) = get(
        &s,
        &format!("/probe?module=authed&target=http://{addr}/"),
        &[],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(value(&body, "probe_success"), Some(1.0), "{body}");
    assert!(
        seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("x-api-key: k3y")
    );
    // A name outside the list (which does not even resolve here): refused, nothing sent.
    let (code, body) = get(
        &s,
        "/probe?module=authed&target=http://attacker.example/",
        &[],
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "target `attacker.example` is not in this module's `allow` list: it is not probed\n"
        )
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing more was sent");
}

/// `/api/v1/probes` in pages: a `Link` header leads to the next page until the last,
/// `service` and `failing` filter, and bad parameters are refused with the reason.
#[tokio::test]
async fn the_probe_list_is_paged_and_filtered() {
    let mut yaml = String::from("services:\n");
    for s in 0..3 {
        yaml.push_str(&format!("  - id: s{s}\n    probes:\n"));
        for p in 0..4 {
            yaml.push_str(&format!(
                "      - {{ name: \"s{s} p{p}\", tcp: {{ address: \"127.0.0.1:9\" }} }}\n"
            ));
        }
    }
    let s = state(&yaml);
    // Every probe of s1 ran; p1 and p3 failed.
    let config = s.config.get();
    for probe in &config.services[1].probes {
        let success = !(probe.name.ends_with("p1") || probe.name.ends_with("p3"));
        s.latest.record(tocsin::scheduler::Report {
            probe: probe.clone(),
            outcome: tocsin::probe::Outcome {
                at: std::time::SystemTime::UNIX_EPOCH,
                duration: Duration::from_millis(3),
                success,
                reason: (!success).then_some(tocsin::probe::Reason::Timeout {
                    phase: tocsin::probe::Phase::Connect,
                }),
                phases: vec![],
                details: Default::default(),
            },
            lag: Duration::ZERO,
            confirmed: true,
        });
    }

    let page = |uri: String| {
        let s = s.clone();
        async move {
            let resp = router(s, Side::Internal)
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let link = resp
                .headers()
                .get("link")
                .map(|v| v.to_str().unwrap().to_string());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let rows: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let names: Vec<String> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["probe"].as_str().unwrap().to_string())
                .collect();
            let next = link.map(|l| {
                assert!(l.ends_with(">; rel=\"next\""), "{l}");
                l[1..l.find('>').unwrap()].to_string()
            });
            (names, next)
        }
    };
    // All twelve, five at a time, following the links.
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/probes?limit=5".to_string());
    let mut pages = 0;
    while let Some(uri) = next {
        let (names, n) = page(uri).await;
        seen.extend(names);
        next = n;
        pages += 1;
    }
    assert_eq!(pages, 3);
    let all: Vec<String> = (0..3)
        .flat_map(|s| (0..4).map(move |p| format!("s{s} p{p}")))
        .collect();
    assert_eq!(seen, all, "every probe once, in config order");

    let (names, next) = page("/api/v1/probes?failing=true".into()).await;
    assert_eq!(names, ["s1 p1", "s1 p3"]);
    assert_eq!(next, None);
    let (names, next) = page("/api/v1/probes?service=s1&failing=1&limit=1".into()).await;
    assert_eq!(names, ["s1 p1"]);
    let (names, next) = page(next.expect("a second failing probe")).await;
    assert_eq!((names.as_slice(), next), (&["s1 p3".to_string()][..], None));
    let (names, _) = page("/api/v1/probes?service=s2".into()).await;
    assert_eq!(names.len(), 4);

    for (uri, code, says) in [
        (
            "/api/v1/probes?limit=0",
            StatusCode::BAD_REQUEST,
            "`limit` is a number of rows from 1 to 10000, not `0`",
        ),
        (
            "/api/v1/probes?limit=many",
            StatusCode::BAD_REQUEST,
            "not `many`",
        ),
        (
            "/api/v1/probes?failing=maybe",
            StatusCode::BAD_REQUEST,
            "`failing` is true or false",
        ),
        (
            "/api/v1/probes?after=nothing",
            StatusCode::BAD_REQUEST,
            "`after` is SERVICE/PROBE",
        ),
        (
            "/api/v1/probes?service=nope",
            StatusCode::NOT_FOUND,
            "no service `nope` is configured",
        ),
        (
            "/api/v1/probes?sort=name",
            StatusCode::BAD_REQUEST,
            "unknown parameter `sort`",
        ),
    ] {
        let (got, body) = get(&s, uri, &[]).await;
        assert_eq!(got, code, "{uri}: {body}");
        assert!(body.contains(says), "{uri}: {body}");
    }
}
