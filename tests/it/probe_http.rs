//! The HTTP probe against real HTTP and HTTPS servers on loopback, well-behaved and not.

use crate::support;

use support::reason;

use std::time::{Duration, SystemTime};

use support::{Ca, HttpServer};
use tocsin::probe::{
    self, Check, HttpCheck, Outcome, Pattern, Phase, Reason, StatusSet, TlsOptions,
};

const T: Duration = Duration::from_secs(5);

async fn run(c: HttpCheck, timeout: Duration) -> Outcome {
    probe::run(&Check::Http(c), timeout, SystemTime::now()).await
}

#[tokio::test]
async fn a_healthy_page_passes_with_phases_and_status() {
    let s = HttpServer::start(None).await;
    let mut c = HttpCheck::get(s.url("/"));
    c.body_contains = Some("Add to cart".into());
    c.body_regex = Some(Pattern(regex::Regex::new(r"<h1>\w+</h1>").unwrap()));
    c.body_not_contains = Some("error".into());
    let o = run(c, T).await;
    assert_eq!(reason(&o), "ok");
    assert_eq!(o.details.http_status, Some(200));
    assert!(o.phase(Phase::Connect) > Duration::ZERO);
    assert!(o.phase(Phase::Processing) > Duration::ZERO);
    assert_eq!(o.phase(Phase::Tls), Duration::ZERO);
    let sum: Duration = o.phases.iter().map(|(_, d)| *d).sum();
    assert!(
        sum <= o.duration,
        "phases {sum:?} fit in the total {:?}",
        o.duration
    );
}

#[tokio::test]
async fn every_run_opens_a_fresh_connection() {
    let s = HttpServer::start(None).await;
    let c = HttpCheck::get(s.url("/"));
    for _ in 0..3 {
        assert!(run(c.clone(), T).await.success);
    }
    assert_eq!(s.connections(), 3);
}

#[tokio::test]
async fn status_outside_the_expected_set_names_both() {
    let s = HttpServer::start(None).await;
    let o = run(HttpCheck::get(s.url("/503")), T).await;
    assert_eq!(
        o.reason,
        Some(Reason::Status {
            got: 503,
            want: "200-399".into()
        })
    );
    let mut c = HttpCheck::get(s.url("/503"));
    c.expect_status = StatusSet(vec![(200, 200)]);
    assert_eq!(reason(&run(c, T).await), "status 503, expected 200");
    let mut c = HttpCheck::get(s.url("/404"));
    c.expect_status = StatusSet(vec![(404, 404)]);
    assert!(run(c, T).await.success, "an expected 404 passes");
}

#[tokio::test]
async fn body_checks_say_what_was_missing_or_present() {
    let s = HttpServer::start(None).await;
    let mut c = HttpCheck::get(s.url("/error-page"));
    c.body_contains = Some("Add to cart".into());
    assert_eq!(reason(&run(c, T).await), "body lacks \"Add to cart\"");
    let mut c = HttpCheck::get(s.url("/error-page"));
    c.body_not_contains = Some("Internal error".into());
    assert_eq!(reason(&run(c, T).await), "body contains \"Internal error\"");
    let mut c = HttpCheck::get(s.url("/error-page"));
    c.body_regex = Some(Pattern(regex::Regex::new("cart$").unwrap()));
    assert_eq!(reason(&run(c, T).await), "body does not match /cart$/");
}

/// `body_json` against a real server: the rules that hold pass; the first that does not
/// names its path, what was found and what was wanted; HTML and JSON nested 100,000 deep
/// are named as not JSON, without a crash.
#[tokio::test]
async fn json_bodies_are_checked_by_jsonpath() {
    use tocsin::probe::json::{JsonExpect, JsonRule};
    let s = HttpServer::start(None).await;
    let rule = |p: &str, e: JsonExpect| JsonRule::new(p, e).unwrap();
    let mut c = HttpCheck::get(s.url("/health.json"));
    c.body_json = vec![
        rule("$.status", JsonExpect::Equals("UP".into())),
        rule("$.items.length()", JsonExpect::AtLeast(1.0)),
        rule(
            "$.checks[?@.name == 'db'].ok",
            JsonExpect::Equals(serde_json::Value::Bool(true)),
        ),
    ];
    let o = run(c.clone(), T).await;
    assert!(o.success, "{}", reason(&o));
    c.body_json.push(rule(
        "$.checks[*].ok",
        JsonExpect::Equals(serde_json::Value::Bool(true)),
    ));
    assert_eq!(
        reason(&run(c, T).await),
        "body JSON at $.checks[*].ok: found [true, false], wanted true"
    );
    for path in ["/", "/deep.json"] {
        let mut c = HttpCheck::get(s.url(path));
        c.body_json = vec![rule("$.status", JsonExpect::Exists(true))];
        let r = reason(&run(c, T).await);
        assert!(r.starts_with("body is not JSON: "), "{path}: {r}");
    }
}

/// Response headers that must match, or must not: an absent one, a mismatch and a
/// forbidden value each name the header, the value and the pattern; a response in
/// another HTTP version than required names both.
#[tokio::test]
async fn response_headers_are_checked() {
    let s = HttpServer::start(None).await;
    let re = |p: &str| Pattern(regex::Regex::new(p).unwrap());
    let mut c = HttpCheck::get(s.url("/"));
    c.header_matches = vec![("content-type".into(), re("^text/html"))];
    c.header_not_matches = vec![("server".into(), re("nginx/1\\.1"))];
    let o = run(c.clone(), T).await;
    assert!(o.success, "{}", reason(&o));
    c.header_matches.push(("x-version".into(), re(".")));
    assert_eq!(reason(&run(c, T).await), "response lacks header x-version");
    let mut c = HttpCheck::get(s.url("/"));
    c.header_matches = vec![("content-type".into(), re("json"))];
    assert_eq!(
        reason(&run(c, T).await),
        "header content-type: \"text/html\" does not match /json/"
    );
    let mut c = HttpCheck::get(s.url("/"));
    c.http_version = Some(reqwest::Version::HTTP_2);
    assert_eq!(
        reason(&run(c.clone(), T).await),
        "response over HTTP/1.1, expected HTTP/2"
    );
    c.http_version = Some(reqwest::Version::HTTP_11);
    assert!(run(c, T).await.success);
    let mut c = HttpCheck::get(s.url("/"));
    c.header_not_matches = vec![("content-type".into(), re("html"))];
    assert_eq!(
        reason(&run(c, T).await),
        "header content-type: \"text/html\" matches /html/"
    );
}

/// Basic auth and a bearer token, from the environment at load, reach the server as an
/// Authorization header; without them the server's 401 is the reason.
#[tokio::test]
async fn basic_auth_and_bearer_tokens_come_from_the_environment() {
    let s = HttpServer::start(None).await;
    let env = |k: &str| -> Option<String> {
        Some(match k {
            "SHOP_USER" => "tocsin".into(),
            "SHOP_PASSWORD" => "s3cret".into(),
            "SHOP_TOKEN" => "t0ken-42".into(),
            _ => return None,
        })
    };
    let url = s.url("/auth");
    for auth in [
        "basic_auth: { username_env: SHOP_USER, password_env: SHOP_PASSWORD }",
        "bearer_token_env: SHOP_TOKEN",
        "expect_status: 200",
    ] {
        let yaml = format!(
            "services:\n  - id: shop\n    probes:\n      - name: home\n        http: {{ url: \"{url}\", {auth} }}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = tocsin::config::parse_with(&yaml, &dir.path().join("probes.yaml"), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let tocsin::probe::Check::Http(c) = &cfg.services[0].probes[0].check else {
            panic!("an HTTP check");
        };
        let o = run(c.clone(), T).await;
        if auth.starts_with("expect_status") {
            assert_eq!(reason(&o), "status 401, expected 200");
        } else {
            assert!(o.success, "{auth}: {}", reason(&o));
            assert!(!format!("{c:?}").contains("t0ken"), "never shown");
        }
    }
}

#[tokio::test]
async fn redirects_are_followed_counted_and_bounded() {
    let s = HttpServer::start(None).await;
    let o = run(HttpCheck::get(s.url("/redirect")), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.redirects, Some(1));
    assert_eq!(s.connections(), 2, "each hop is its own connection");

    let o = run(HttpCheck::get(s.url("/loop")), T).await;
    assert_eq!(o.reason, Some(Reason::TooManyRedirects { limit: 10 }));

    let mut c = HttpCheck::get(s.url("/redirect"));
    c.max_redirects = 0;
    c.expect_status = StatusSet(vec![(200, 200)]);
    assert_eq!(reason(&run(c, T).await), "status 302, expected 200");
}

#[tokio::test]
async fn connection_refused_is_named() {
    let addr = support::closed_port().await;
    let o = run(
        HttpCheck::get(format!("http://{addr}/").parse().unwrap()),
        T,
    )
    .await;
    assert_eq!(o.reason, Some(Reason::ConnectionRefused));
    assert_eq!(reason(&o), "connection refused");
}

#[tokio::test]
async fn a_hung_server_times_out_during_processing() {
    let addr = support::silent_server().await;
    let o = run(
        HttpCheck::get(format!("http://{addr}/").parse().unwrap()),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reason(&o), "timed out during processing");
    assert!(
        o.duration < Duration::from_secs(5),
        "ends at its deadline, took {:?}",
        o.duration
    );
}

#[tokio::test]
async fn a_hung_handler_times_out_during_processing() {
    let s = HttpServer::start(None).await;
    let o = run(HttpCheck::get(s.url("/hang")), Duration::from_millis(500)).await;
    assert_eq!(
        o.reason,
        Some(Reason::Timeout {
            phase: Phase::Processing
        })
    );
}

#[tokio::test]
async fn a_byte_at_a_time_body_times_out_during_transfer_with_the_status_known() {
    let s = HttpServer::start(None).await;
    let o = run(HttpCheck::get(s.url("/drip")), Duration::from_millis(700)).await;
    assert_eq!(
        o.reason,
        Some(Reason::Timeout {
            phase: Phase::Transfer
        })
    );
    assert_eq!(o.details.http_status, Some(200));
    assert!(o.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn a_huge_body_is_read_only_up_to_max_body() {
    let s = HttpServer::start(None).await;
    let mut c = HttpCheck::get(s.url("/huge-body"));
    c.body_contains = Some("Add to cart".into());
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.body_bytes, Some(1 << 20));
    let mut c = HttpCheck::get(s.url("/huge-body"));
    c.max_body = 4;
    c.body_contains = Some("Add to cart".into());
    assert_eq!(
        reason(&run(c, T).await),
        "body lacks \"Add to cart\"",
        "only 4 bytes were read"
    );
}

#[tokio::test]
async fn huge_headers_and_garbage_are_protocol_errors() {
    let s = HttpServer::start(None).await;
    let o = run(HttpCheck::get(s.url("/huge-headers")), T).await;
    assert!(
        matches!(o.reason, Some(Reason::Protocol { .. })),
        "{}",
        reason(&o)
    );
    let o = run(HttpCheck::get(s.url("/garbage")), T).await;
    assert!(
        matches!(o.reason, Some(Reason::Protocol { .. })),
        "{}",
        reason(&o)
    );
    assert!(
        reason(&o).starts_with("invalid HTTP response: "),
        "{}",
        reason(&o)
    );
    let o = run(HttpCheck::get(s.url("/close")), T).await;
    assert!(!o.success);
    assert!(
        matches!(
            o.reason,
            Some(Reason::Protocol { .. }) | Some(Reason::ConnectionReset)
        ),
        "{}",
        reason(&o)
    );
}

#[tokio::test]
async fn slower_than_max_latency_fails_with_both_figures() {
    let s = HttpServer::start(None).await;
    let mut c = HttpCheck::get(s.url("/slow"));
    c.max_latency = Some(Duration::from_millis(100));
    let o = run(c, T).await;
    match o.reason {
        Some(Reason::TooSlow {
            took_ms,
            max_ms: 100,
        }) => assert!(took_ms >= 300, "took {took_ms}"),
        other => panic!("expected TooSlow, got {other:?}"),
    }
}

fn tls_for(ca: &Ca) -> TlsOptions {
    TlsOptions::new(Some(ca.pem_file.path().to_path_buf()), false, None).unwrap()
}

#[tokio::test]
async fn https_reports_tls_phase_and_certificate_expiry() {
    let ca = Ca::new();
    let s = HttpServer::start(Some(ca.server(-1, 30))).await;
    let mut c = HttpCheck::get(s.https_url("/"));
    c.tls = tls_for(&ca);
    c.cert_min_days = Some(14);
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(o.phase(Phase::Tls) > Duration::ZERO);
    assert!(o.phase(Phase::Connect) > Duration::ZERO);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = (o.details.cert_not_after.unwrap() - now) as f64 / 86400.0;
    assert!(
        (29.9..30.1).contains(&days),
        "leaf expires in 30 days, CA later: {days}"
    );
}

/// The negotiated version is reported; `tls_min_version: "1.3"` refuses a 1.2-only
/// server; the verified chain's expiry is reported apart from the one shown.
#[tokio::test]
async fn tls_version_is_reported_and_a_minimum_enforced() {
    let ca = Ca::new();
    let modern = HttpServer::start(Some(ca.server(-1, 30))).await;
    let old = HttpServer::start(Some(ca.server_tls12())).await;
    let o = run(
        HttpCheck {
            tls: tls_for(&ca),
            ..HttpCheck::get(modern.https_url("/"))
        },
        T,
    )
    .await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.tls_version.as_deref(), Some("TLS 1.3"));
    assert_eq!(o.details.verified_chain_not_after, o.details.cert_not_after);

    let mut c = HttpCheck::get(old.https_url("/"));
    c.tls = tls_for(&ca);
    let o = run(c.clone(), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.tls_version.as_deref(), Some("TLS 1.2"));
    c.tls.min_version = tocsin::probe::tls::MinVersion::Tls13;
    let o = run(c, T).await;
    assert_eq!(
        reason(&o),
        "TLS handshake failed: received fatal alert: ProtocolVersion"
    );

    // Verification off: the chain shown is reported, no chain was verified.
    let mut c = HttpCheck::get(modern.https_url("/"));
    c.tls = TlsOptions::new(None, true, None).unwrap();
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(o.details.cert_not_after.is_some());
    assert_eq!(o.details.verified_chain_not_after, None);
}

/// Mutual TLS: a server that requires a client certificate refuses the probe without
/// one and accepts it with the certificate from `cert_file` and `key_file`.
#[tokio::test]
async fn a_client_certificate_is_shown_when_configured() {
    let ca = Ca::new();
    let s = HttpServer::start(Some(ca.server_mutual())).await;
    let mut c = HttpCheck::get(s.https_url("/"));
    c.tls = tls_for(&ca);
    let o = run(c.clone(), T).await;
    assert_eq!(
        reason(&o),
        "TLS handshake failed: received fatal alert: CertificateRequired"
    );
    let (cert, key) = ca.leaf_pem_files();
    c.tls.client_cert = Some(std::sync::Arc::new(
        tocsin::probe::tls::ClientCert::load(cert.path().into(), key.path().into()).unwrap(),
    ));
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));

    // A key that is not the certificate's is refused at load, naming both files.
    let (_, other_key) = ca.leaf_pem_files();
    let err = tocsin::probe::tls::ClientCert::load(cert.path().into(), other_key.path().into())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not the key of the certificate in"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_expiring_in_three_days_fails_cert_min_days() {
    let ca = Ca::new();
    let s = HttpServer::start(Some(ca.server(-1, 3))).await;
    let mut c = HttpCheck::get(s.https_url("/"));
    c.tls = tls_for(&ca);
    c.cert_min_days = Some(14);
    let o = run(c, T).await;
    assert_eq!(
        reason(&o),
        "certificate expires in 3 days (cert_min_days is 14)"
    );
    assert_eq!(o.details.http_status, Some(200), "the page itself answered");
}

#[tokio::test]
async fn expired_untrusted_and_misnamed_certificates_are_rejected() {
    let ca = Ca::new();
    let expired = HttpServer::start(Some(ca.server(-10, -1))).await;
    let mut c = HttpCheck::get(expired.https_url("/"));
    c.tls = tls_for(&ca);
    let o = run(c, T).await;
    assert_eq!(reason(&o), "certificate rejected: certificate has expired");
    assert!(
        o.details.cert_not_after.is_some(),
        "expiry is known even when rejected"
    );

    let valid = HttpServer::start(Some(ca.server(-1, 30))).await;
    let o = run(HttpCheck::get(valid.https_url("/")), T).await;
    assert_eq!(reason(&o), "certificate rejected: issuer is not trusted");

    let mut c = HttpCheck::get(valid.https_url("/"));
    c.tls = TlsOptions::new(
        Some(ca.pem_file.path().to_path_buf()),
        false,
        Some("shop.example.com".into()),
    )
    .unwrap();
    assert_eq!(
        reason(&run(c, T).await),
        "certificate rejected: certificate is not valid for this host name"
    );

    let mut c = HttpCheck::get(valid.https_url("/"));
    c.tls = TlsOptions::new(None, true, None).unwrap();
    assert!(run(c, T).await.success, "insecure_skip_verify accepts it");
}

#[tokio::test]
async fn garbage_instead_of_tls_is_a_tls_error() {
    let addr = support::line_server(0, b"220 this is not TLS at all\r\n").await;
    let o = run(
        HttpCheck::get(
            format!("https://127.0.0.1:{}/", addr.port())
                .parse()
                .unwrap(),
        ),
        T,
    )
    .await;
    assert!(
        matches!(o.reason, Some(Reason::Tls { .. })),
        "{}",
        reason(&o)
    );
}

#[tokio::test]
async fn a_server_silent_after_connect_times_out_during_tls() {
    let addr = support::silent_server().await;
    let o = run(
        HttpCheck::get(
            format!("https://127.0.0.1:{}/", addr.port())
                .parse()
                .unwrap(),
        ),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reason(&o), "timed out during tls");
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("ping=1") {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(got).unwrap()
    });
    let mut c = HttpCheck::get(format!("http://{addr}/api").parse().unwrap());
    c.method = reqwest::Method::POST;
    c.headers = vec![("X-Probe".into(), "tocsin".into())];
    c.secret_headers = vec![(
        "Authorization".into(),
        tocsin::probe::Secret::new("Bearer s3cr3t"),
    )];
    assert!(
        !format!("{c:?}").contains("s3cr3t"),
        "secrets never show in debug output"
    );
    c.body = Some("ping=1".into());
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    let req = server.await.unwrap().to_ascii_lowercase();
    assert!(req.starts_with("post /api http/1.1"), "{req}");
    assert!(req.contains("x-probe: tocsin"), "{req}");
    assert!(req.contains("user-agent: tocsin/"), "{req}");
    assert!(req.contains("authorization: bearer s3cr3t"), "{req}");
}

/// Requests go through `proxy_url`: plain HTTP in absolute form (the target's name is
/// never resolved here: `.invalid` would not resolve), HTTPS through a CONNECT tunnel,
/// the login from `proxy_auth` when the proxy wants one.
#[tokio::test]
async fn requests_go_through_the_configured_proxy() {
    use tocsin::probe::http::HttpProxy;
    let ca = Ca::new();
    let tls_server = HttpServer::start(Some(ca.server(-1, 30))).await;
    let proxy = support::Proxy::start(Some(tls_server.addr), None).await;
    let via = |url: &str| HttpProxy {
        url: url.parse().unwrap(),
        login: None,
    };
    let mut c = HttpCheck::get("http://shop.invalid/health".parse().unwrap());
    c.proxy = Some(via(&format!("http://{}", proxy.addr)));
    c.body_contains = Some("via proxy".into());
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(
        proxy.heads()[0].starts_with("GET http://shop.invalid/health HTTP/1.1\r\n"),
        "{:?}",
        proxy.heads()
    );

    let mut c = HttpCheck::get(tls_server.https_url("/"));
    c.tls = tls_for(&ca);
    c.proxy = Some(via(&format!("http://{}", proxy.addr)));
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));
    let connect = format!("CONNECT localhost:{} HTTP/1.1\r\n", tls_server.addr.port());
    assert!(
        proxy.heads()[1].starts_with(&connect),
        "{:?}",
        proxy.heads()
    );

    // A proxy that wants a login: 407 without it, through with it.
    let guarded = support::Proxy::start(None, Some("probe:s3cret")).await;
    let mut c = HttpCheck::get("http://shop.invalid/".parse().unwrap());
    c.proxy = Some(via(&format!("http://{}", guarded.addr)));
    let o = run(c.clone(), T).await;
    assert_eq!(reason(&o), "status 407, expected 200-399");
    c.proxy.as_mut().unwrap().login = Some(("probe".into(), tocsin::probe::Secret::new("s3cret")));
    let o = run(c, T).await;
    assert!(o.success, "{}", reason(&o));

    // A proxy that is down is a refused connection, not a hang.
    let closed = support::closed_port().await;
    let mut c = HttpCheck::get("http://shop.invalid/".parse().unwrap());
    c.proxy = Some(via(&format!("http://{closed}")));
    assert_eq!(reason(&run(c, T).await), "connection refused");
}

/// Secret headers go only to the configured URL's origin: a redirect to another host
/// (here another port) gets neither them nor a Referer; a redirect within the origin keeps
/// them.
#[tokio::test]
async fn secret_headers_never_follow_a_redirect_to_another_origin() {
    let ok =
        |_: &str| "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string();
    let (elsewhere, seen_elsewhere) = support::recording_http(ok).await;
    let (home, seen_home) = support::recording_http(move |head: &str| {
        if head.starts_with("GET /away ") {
            format!("HTTP/1.1 302 Found\r\nLocation: http://{elsewhere}/landed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        } else if head.starts_with("GET /inside ") {
            "HTTP/1.1 302 Found\r\nLocation: /landed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        } else {
            ok(head)
        }
    })
    .await;
    let check = |path: &str| {
        let mut c = HttpCheck::get(format!("http://{home}{path}").parse().unwrap());
        c.headers = vec![("X-Trace".into(), "plain".into())];
        c.secret_headers = vec![
            ("X-Api-Key".into(), tocsin::probe::Secret::new("k3y")),
            (
                "Authorization".into(),
                tocsin::probe::Secret::new("Bearer t0ken"),
            ),
        ];
        c
    };
    let o = run(check("/away"), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.redirects, Some(1));
    let there = seen_elsewhere.lock().unwrap()[0].to_ascii_lowercase();
    assert!(there.starts_with("get /landed "), "{there}");
    assert!(
        there.contains("x-trace: plain"),
        "plain headers follow: {there}"
    );
    for secret in ["x-api-key", "authorization", "k3y", "t0ken", "referer"] {
        assert!(
            !there.contains(secret),
            "{secret} reached the other origin: {there}"
        );
    }

    let o = run(check("/inside"), T).await;
    assert!(o.success, "{}", reason(&o));
    let heads = seen_home.lock().unwrap().clone();
    let landed = heads
        .iter()
        .find(|h| h.starts_with("GET /landed "))
        .unwrap()
        .to_ascii_lowercase();
    assert!(landed.contains("x-api-key: k3y"), "{landed}");
    assert!(!landed.contains("referer"), "{landed}");
}
