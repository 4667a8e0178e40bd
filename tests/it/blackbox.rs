//! Conformance with blackbox_exporter (Debian's package): the same targets on loopback
//! are probed through tocsin's `/probe` and through a real blackbox_exporter, with
//! modules that mean the same thing, and the results must agree: `probe_success`, the
//! HTTP status code, the redirect count, the DNS answer count, the certificate expiry,
//! the ICMP reply's hop limit, and the family and hash of the address probed (ICMP to
//! 127.0.0.1 and to a host in a network namespace that ignores echo requests).
//! The one deliberate difference (a certificate that fails verification) is asserted
//! as such; the README lists it.

use crate::support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

/// Metric name (with labels, as printed) → value, from a Prometheus text exposition.
fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn write(path: &Path, body: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
}

/// The module pairs: blackbox's definition and tocsin's, meaning the same check.
fn configs(dir: &Path, ca: &Path, tocsin_port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca = ca.display();
    // /probe is served on the internal listener only; the public one is not used here
    // (port 0: no number another part of the test could be given too).
    let public_port = 0;
    let bb = dir.join("blackbox.yml");
    write(
        &bb,
        &format!(
            r#"modules:
  http_2xx:
    prober: http
    timeout: 2s
    http: {{ preferred_ip_protocol: ip4 }}
  http_ca:
    prober: http
    timeout: 2s
    http: {{ preferred_ip_protocol: ip4, tls_config: {{ ca_file: "{ca}" }} }}
  tcp_connect:
    prober: tcp
    timeout: 2s
    tcp: {{ preferred_ip_protocol: ip4 }}
  smtp_banner:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response: [{{ expect: "^220 " }}]
  dns_a:
    prober: dns
    timeout: 2s
    dns: {{ query_name: shop.test, query_type: A, preferred_ip_protocol: ip4 }}
  dns_mx:
    prober: dns
    timeout: 2s
    dns: {{ query_name: shop.test, query_type: MX, preferred_ip_protocol: ip4 }}
  dns_txt:
    prober: dns
    timeout: 2s
    dns: {{ query_name: shop.test, query_type: TXT, preferred_ip_protocol: ip4 }}
  dns_gone:
    prober: dns
    timeout: 2s
    dns: {{ query_name: gone.test, query_type: A, preferred_ip_protocol: ip4 }}
  dns_mx_rules:
    prober: dns
    timeout: 2s
    dns:
      query_name: shop.test
      query_type: MX
      preferred_ip_protocol: ip4
      validate_answer_rrs: {{ fail_if_not_matches_regexp: ["\\tMX\\t10 mail"] }}
      validate_authority_rrs: {{ fail_if_none_matches_regexp: ["ns1\\.shop\\.test"] }}
      validate_additional_rrs: {{ fail_if_matches_regexp: ["\\tAAAA\\t"] }}
  dns_mx_glue:
    prober: dns
    timeout: 2s
    dns:
      query_name: shop.test
      query_type: MX
      preferred_ip_protocol: ip4
      validate_additional_rrs: {{ fail_if_matches_regexp: ["203\\.0\\.113\\.25$"] }}
  smtp_starttls:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      tls_config: {{ ca_file: "{ca}" }}
      query_response:
        - expect: "^220 "
        - send: "EHLO prober\r"
        - expect: "^250 "
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250 "
  grpc_plain:
    prober: grpc
    timeout: 2s
    grpc: {{ preferred_ip_protocol: ip4, tls: false }}
  grpc_search:
    prober: grpc
    timeout: 2s
    grpc: {{ preferred_ip_protocol: ip4, tls: false, service: shop.Search }}
  icmp:
    prober: icmp
    timeout: 1s
    icmp: {{ preferred_ip_protocol: ip4 }}
  dns_broken:
    prober: dns
    timeout: 2s
    dns: {{ query_name: broken.test, query_type: A, preferred_ip_protocol: ip4 }}
"#
        ),
    );
    let tocsin = dir.join("probes.yaml");
    write(
        &tocsin,
        &format!(
            r#"listen: 127.0.0.1:{public_port}
internal_listen: 127.0.0.1:{tocsin_port}
data_dir: ./var
services:
  - id: self
    probes:
      - {{ name: self, interval: 1m, tcp: {{ address: "127.0.0.1:{tocsin_port}" }} }}
modules:
  http_2xx:    {{ timeout: 2s, http: {{ expect_status: ["200-299"] }} }}
  http_ca:     {{ timeout: 2s, http: {{ expect_status: ["200-299"], tls: {{ ca_file: "{ca}" }} }} }}
  tcp_connect: {{ timeout: 2s, tcp: {{}} }}
  smtp_banner: {{ timeout: 2s, tcp: {{ expect: "^220 " }} }}
  dns_a:       {{ timeout: 2s, dns: {{ name: shop.test, type: A }} }}
  dns_mx:      {{ timeout: 2s, dns: {{ name: shop.test, type: MX }} }}
  dns_txt:     {{ timeout: 2s, dns: {{ name: shop.test, type: TXT }} }}
  dns_gone:    {{ timeout: 2s, dns: {{ name: gone.test, type: A }} }}
  dns_broken:  {{ timeout: 2s, dns: {{ name: broken.test, type: A }} }}
  icmp:        {{ timeout: 1s, icmp: {{ ip_protocol: ip4 }} }}
  grpc_plain:  {{ timeout: 2s, grpc: {{}} }}
  grpc_search: {{ timeout: 2s, grpc: {{ service: shop.Search }} }}
  smtp_starttls:
    timeout: 2s
    tcp: {{ starttls: smtp, tls: {{ ca_file: "{ca}" }}, send: "EHLO prober\r\n", expect: "(?m)^250 " }}
  dns_mx_rules:
    timeout: 2s
    dns:
      name: shop.test
      type: MX
      validate_answer: {{ fail_if_not_matches: ["\\tMX\\t10 mail"] }}
      validate_authority: {{ fail_if_none_matches: ["ns1\\.shop\\.test"] }}
      validate_additional: {{ fail_if_matches: ["\\tAAAA\\t"] }}
  dns_mx_glue:
    timeout: 2s
    dns: {{ name: shop.test, type: MX, validate_additional: {{ fail_if_matches: ["203\\.0\\.113\\.25$"] }} }}
"#
        ),
    );
    (bb, tocsin)
}

async fn probe(port: u16, module: &str, target: &str) -> Option<BTreeMap<String, f64>> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/probe"),
        &[("module", module), ("target", target)],
    )
    .unwrap();
    let resp = support::client().get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(parse(&resp.text().await.ok()?))
}

async fn wait_for(port: u16) {
    let t = Instant::now();
    while support::client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .is_err()
    {
        assert!(t.elapsed() < Duration::from_secs(20), "nothing on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One target, the module to probe it with, and the expected `probe_success`.
struct Case {
    what: &'static str,
    module: &'static str,
    target: String,
    success: bool,
}

/// The metrics both exporters must report identically whenever blackbox reports them.
const SHARED: &[&str] = &[
    "probe_success",
    "probe_http_status_code",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_version",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_failed_due_to_regex",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_query_succeeded",
    "probe_ssl_earliest_cert_expiry",
    "probe_ip_protocol",
    "probe_tls_version_info{version=\"TLS 1.3\"}",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ip_addr_hash",
    "probe_icmp_reply_hop_limit",
    "probe_grpc_status_code",
    "probe_grpc_ssl",
    "probe_grpc_healthcheck_response{serving_status=\"SERVING\"}",
    "probe_grpc_healthcheck_response{serving_status=\"NOT_SERVING\"}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tocsin_and_blackbox_exporter_agree_on_the_same_targets() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::Ca::new();
    let http = support::HttpServer::start(None).await;
    let valid = support::HttpServer::start(Some(ca.server(-1, 40))).await;
    let expired = support::HttpServer::start(Some(ca.server(-30, -2))).await;
    let banner = support::line_server(0, b"220 mail.test ESMTP ready\r\n").await;
    let wrong_banner = support::line_server(0, b"554 go away\r\n").await;
    let closed = support::closed_port().await;
    let dns = support::dns_server().await;
    let (grpc, reporter) = support::grpc_health(None).await;
    reporter
        .set_service_status("shop.Search", tonic_health::ServingStatus::NotServing)
        .await;
    let (smtp_cert, smtp_key) = ca.leaf_pem_files();
    let smtp = support::Smtp::start_with(&[
        "--starttls",
        smtp_cert.path().to_str().unwrap(),
        smtp_key.path().to_str().unwrap(),
    ]);
    // A host that ignores echo requests, behind a veth in a namespace.
    let silent = support::netns::Netns::linked();
    silent.sysctl("net.ipv4.icmp_echo_ignore_all", "1");
    let silent_host = silent.link.clone().unwrap().1;

    let tocsin_port = support::free_port();
    let bb_port = support::free_port();
    let (bb_cfg, tocsin_cfg) = configs(dir.path(), ca.pem_file.path(), tocsin_port);
    let _blackbox = support::Proc(
        Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", bb_cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-blackbox-exporter (scripts/test.sh installs Debian's package)"),
    );
    let _tocsin = support::Proc(
        Command::new(BIN)
            .args(["run", "--config", tocsin_cfg.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(bb_port).await;
    wait_for(tocsin_port).await;

    let h = |p: &str| format!("http://{}{p}", http.addr);
    let cases = vec![
        Case {
            what: "HTTP 200",
            module: "http_2xx",
            target: h("/"),
            success: true,
        },
        Case {
            what: "HTTP 404",
            module: "http_2xx",
            target: h("/404"),
            success: false,
        },
        Case {
            what: "HTTP 500",
            module: "http_2xx",
            target: h("/500"),
            success: false,
        },
        Case {
            what: "hung HTTP server",
            module: "http_2xx",
            target: h("/hang"),
            success: false,
        },
        Case {
            what: "redirect to 200",
            module: "http_2xx",
            target: h("/redirect"),
            success: true,
        },
        Case {
            what: "valid TLS",
            module: "http_ca",
            target: format!("https://127.0.0.1:{}/", valid.addr.port()),
            success: true,
        },
        Case {
            what: "expired TLS",
            module: "http_ca",
            target: format!("https://127.0.0.1:{}/", expired.addr.port()),
            success: false,
        },
        Case {
            what: "TCP open",
            module: "tcp_connect",
            target: banner.to_string(),
            success: true,
        },
        Case {
            what: "TCP closed",
            module: "tcp_connect",
            target: closed.to_string(),
            success: false,
        },
        Case {
            what: "banner matches",
            module: "smtp_banner",
            target: banner.to_string(),
            success: true,
        },
        Case {
            what: "banner mismatch",
            module: "smtp_banner",
            target: wrong_banner.to_string(),
            success: false,
        },
        Case {
            what: "DNS A",
            module: "dns_a",
            target: dns.to_string(),
            success: true,
        },
        Case {
            what: "DNS MX",
            module: "dns_mx",
            target: dns.to_string(),
            success: true,
        },
        Case {
            what: "DNS TXT",
            module: "dns_txt",
            target: dns.to_string(),
            success: true,
        },
        Case {
            what: "DNS NXDOMAIN",
            module: "dns_gone",
            target: dns.to_string(),
            success: false,
        },
        Case {
            what: "DNS SERVFAIL",
            module: "dns_broken",
            target: dns.to_string(),
            success: false,
        },
        Case {
            what: "DNS section rules hold",
            module: "dns_mx_rules",
            target: dns.to_string(),
            success: true,
        },
        Case {
            what: "DNS glue forbidden",
            module: "dns_mx_glue",
            target: dns.to_string(),
            success: false,
        },
        Case {
            what: "SMTP STARTTLS",
            module: "smtp_starttls",
            target: format!("127.0.0.1:{}", smtp.port),
            success: true,
        },
        Case {
            what: "gRPC serving",
            module: "grpc_plain",
            target: grpc.to_string(),
            success: true,
        },
        Case {
            what: "gRPC not serving",
            module: "grpc_search",
            target: grpc.to_string(),
            success: false,
        },
        Case {
            what: "ICMP echo",
            module: "icmp",
            target: "127.0.0.1".into(),
            success: true,
        },
        Case {
            what: "ICMP ignored",
            module: "icmp",
            target: silent_host.clone(),
            success: false,
        },
    ];

    // All cases at once: the hung server costs each exporter its 2 s timeout once.
    let results = futures::future::join_all(cases.iter().map(|c| async {
        let (bb, ts) = tokio::join!(
            probe(bb_port, c.module, &c.target),
            probe(tocsin_port, c.module, &c.target)
        );
        (bb.expect("blackbox answered"), ts.expect("tocsin answered"))
    }))
    .await;

    let mut disagreements = Vec::new();
    let mut compared = 0;
    for (c, (bb, ts)) in cases.iter().zip(&results) {
        let want = if c.success { 1.0 } else { 0.0 };
        if bb.get("probe_success") != Some(&want) {
            disagreements.push(format!(
                "{}: blackbox says probe_success {:?}",
                c.what,
                bb.get("probe_success")
            ));
        }
        for name in SHARED {
            let (b, t) = (bb.get(*name), ts.get(*name));
            if c.what == "expired TLS" && *name == "probe_ssl_earliest_cert_expiry" {
                // Deliberate: blackbox reports no expiry when verification fails; tocsin
                // reports the expiry of the chain it was shown, which is the reason.
                assert_eq!(b, None, "blackbox changed: {bb:?}");
                let t = t.expect("tocsin shows the expired certificate's date");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                assert!(*t < now, "the expiry shown is in the past: {t}");
                continue;
            }
            if c.module.starts_with("grpc") && *name == "probe_ssl_earliest_cert_expiry" {
                // Deliberate: blackbox's gRPC prober reports an expiry of 0 over
                // plaintext; tocsin reports none where there is no certificate.
                assert_eq!((b, t), (Some(&0.0), None), "{}", c.what);
                continue;
            }
            if let Some(b) = b {
                compared += 1;
                if t != Some(b) {
                    disagreements.push(format!("{}: {name}: blackbox {b}, tocsin {t:?}", c.what));
                }
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // Every case compared probe_success; the HTTP and DNS cases their own figures too.
    assert!(compared >= 35, "only {compared} figures compared");
    let (bb, ts) = &results[5];
    for name in [
        "probe_ssl_earliest_cert_expiry",
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "probe_tls_version_info{version=\"TLS 1.3\"}",
    ] {
        assert!(bb.contains_key(name) && ts.contains_key(name), "{name}");
    }
    let by_what = |w: &str| &results[cases.iter().position(|c| c.what == w).unwrap()];
    // The new kinds were compared, not skipped: ICMP's hop limit, DNS's sections, the
    // certificate behind STARTTLS.
    assert!(
        by_what("SMTP STARTTLS")
            .0
            .contains_key("probe_ssl_earliest_cert_expiry")
    );
    assert!(
        by_what("ICMP echo")
            .0
            .contains_key("probe_icmp_reply_hop_limit")
    );
    assert_eq!(
        by_what("DNS MX").1.get("probe_dns_authority_rrs"),
        Some(&1.0)
    );
    assert_eq!(
        by_what("DNS MX").1.get("probe_dns_additional_rrs"),
        Some(&1.0)
    );
    let (bb, ts) = &results[4];
    assert_eq!(
        (
            bb.get("probe_http_redirects"),
            ts.get("probe_http_redirects")
        ),
        (Some(&1.0), Some(&1.0))
    );
}
