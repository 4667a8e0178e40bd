//! The shipped Prometheus files against a real Prometheus (Debian's package): tocsin is
//! scraped with `deploy/prometheus/prometheus.yml` (addresses replaced) while a service
//! goes through an outage with its customer phase and recovers. Then every query of every
//! panel of `dashboards/tocsin.json` is evaluated through Prometheus' HTTP API with the
//! variables substituted as Grafana would, and each must parse and return data. The
//! rules of `deploy/prometheus/tocsin-rules.yml` must evaluate without error, and the
//! blackbox-style job must get its results from tocsin's `/probe`.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");
const TOKEN: &str = "prometheus-test-token";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn write(path: &Path, body: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
}

/// The example scrape config with this test's addresses and a one-second cadence.
fn prometheus_config(dir: &Path, tocsin: u16, probed: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("deploy/prometheus/prometheus.yml")).unwrap();
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["global"]["evaluation_interval"] = "1s".into();
    let rules = repo("deploy/prometheus/tocsin-rules.yml");
    cfg["rule_files"] = serde_yaml::Value::Sequence(vec![rules.to_str().unwrap().into()]);
    let here = format!("127.0.0.1:{tocsin}");
    for job in cfg["scrape_configs"].as_sequence_mut().unwrap() {
        let name = job["job_name"].as_str().unwrap().to_string();
        let targets = &mut job["static_configs"][0]["targets"];
        match name.as_str() {
            "tocsin" => *targets = vec![serde_yaml::Value::from(here.as_str())].into(),
            "tocsin-probe" => {
                *targets = vec![serde_yaml::Value::from(probed)].into();
                for r in job["relabel_configs"].as_sequence_mut().unwrap() {
                    if r["target_label"] == "__address__" {
                        r["replacement"] = here.as_str().into();
                    }
                }
            }
            other => panic!("unexpected job {other} in the example"),
        }
    }
    let path = dir.join("prometheus.yml");
    write(&path, &serde_yaml::to_string(&cfg).unwrap());
    path
}

fn tocsin_config(
    dir: &Path,
    port: u16,
    public: u16,
    target: std::net::SocketAddr,
    tls: u16,
    ca: &Path,
    dns: std::net::SocketAddr,
) -> PathBuf {
    write(
        &dir.join("customers.csv"),
        "email,name,language,timezone,services\n\
         anna@example.com,Anna,pl,Europe/Warsaw,shop\n\
         bo@example.com,Bo,sv,Europe/Stockholm,\n\
         carl@example.com,Carl,en,America/New_York,shop\n",
    );
    let path = dir.join("probes.yaml");
    write(
        &path,
        &format!(
            "listen: 127.0.0.1:{public}
internal_listen: 127.0.0.1:{port}
data_dir: ./var
allow_insecure_links: true
services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    success_threshold: 2
    customer_threshold: 1h
    escalation: default
    audience: customers
    probes:
      - {{ name: home, interval: 1s, timeout: 800ms, http: {{ url: \"http://{target}/\", body_contains: \"Add to cart\" }} }}
      - {{ name: home-tls, interval: 1s, timeout: 800ms, http: {{ url: \"https://localhost:{tls}/\", tls: {{ ca_file: \"{ca}\" }} }} }}
      - {{ name: shop-dns, interval: 1s, timeout: 800ms, dns: {{ name: shop.test, type: A, server: \"{dns}\" }} }}
      - {{ name: shop-ping, interval: 1s, timeout: 800ms, icmp: {{ host: 127.0.0.1 }} }}
  - id: nightly
    name: Nightly export
    probes:
      - {{ name: export, interval: 1s, heartbeat: {{ period: 24h, grace: 1h }} }}
escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
audiences:
  customers: {{ csv: ./customers.csv }}
mail:
  from: \"Example Status <status@example.com>\"
",
            ca = ca.display(),
        ),
    );
    path
}

/// Prometheus' HTTP API, GET with query parameters; `Null` while it does not answer.
async fn prom(port: u16, path: &str, params: &[(&str, &str)]) -> Value {
    let url =
        reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}{path}"), params).unwrap();
    match support::client().get(url).send().await {
        Ok(resp) => resp.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn tocsin_api(port: u16, path: &str, body: Value) -> Value {
    support::client()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `f` every 200 ms until it holds, for at most `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn instant(port: u16, q: &str) -> Vec<Value> {
    let r = prom(port, "/api/v1/query", &[("query", q)]).await;
    r["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn mail_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("var/mail"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Grafana's substitution for the "All" selection and the interval macros, for a range
/// scraped every second.
fn substitute(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$service", ".*")
        .replace("$probe", ".*")
        .replace("$__rate_interval", "5s")
        .replace("$__interval", "1s")
}

/// `label_values(SELECTOR, LABEL)` as Grafana's Prometheus data source runs it.
fn label_values(query: &str) -> (String, String) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("variable query {query} is not label_values(…)"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    (substitute(selector.trim()), label.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (target, up) = support::switchable_target().await;
    let ca = support::Ca::new();
    let tls = support::HttpServer::start(Some(ca.server(-1, 30))).await;
    let dns = support::dns_server().await;
    // `port` is the internal listener (/metrics, /probe, the APIs), which Prometheus
    // scrapes; `public` serves the pages and the heartbeat pings.
    let port = support::free_port();
    let public = support::free_port();
    let cfg = tocsin_config(
        dir.path(),
        port,
        public,
        target,
        tls.addr.port(),
        ca.pem_file.path(),
        dns,
    );
    let log = std::fs::File::create(dir.path().join("tocsin.log")).unwrap();
    let _tocsin = support::Proc(
        Command::new(BIN)
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("TOCSIN_API_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let probed = format!("http://{target}/");
    let prom_port = support::free_port();
    let prom_cfg = prometheus_config(dir.path(), port, &probed);
    let prom_log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = support::Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .expect("prometheus (scripts/test.sh installs Debian's package)"),
    );
    let start = SystemTime::now();
    let explain = |what: &str| {
        let t = std::fs::read_to_string(dir.path().join("tocsin.log")).unwrap_or_default();
        let p = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        format!(
            "{what}\n--- tocsin log (end)\n{}\n--- prometheus log (end)\n{}",
            tail(&t, 30),
            tail(&p, 30)
        )
    };

    until("both jobs scraped", Duration::from_secs(30), || async {
        instant(prom_port, "up == 1").await.len() == 2
    })
    .await;
    // The nightly export pings its heartbeat, at the URL the API lists.
    let listed = support::api_get(port, "/api/v1/heartbeats", TOKEN).await;
    let url: Value = serde_json::from_str(&listed).unwrap();
    let token = url[0]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Pings go to the public listener.
    let pinged = support::client()
        .post(format!("http://127.0.0.1:{public}/ping/{token}"))
        .body("exported 120 rows")
        .send()
        .await
        .unwrap();
    assert_eq!(pinged.status().as_u16(), 200);
    // The public listener serves no /metrics, /probe or API.
    for path in [
        "/metrics",
        "/probe?module=tcp&target=127.0.0.1:1",
        "/api/v1/probes",
    ] {
        let r = support::client()
            .get(format!("http://127.0.0.1:{public}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} on the public listener");
    }

    // The outage: two failed rounds open the incident; an ETA beyond the 1 h threshold
    // starts the customer phase at once (placeholder, campaign to the two shop
    // customers and the one who follows everything).
    up.store(false, Ordering::SeqCst);
    until("the incident to open", Duration::from_secs(20), || async {
        let r = tocsin_api(
            port,
            "/api/v1/incidents/shop/eta",
            serde_json::json!({"eta": "3h", "by": "test"}),
        )
        .await;
        r["eta"].is_string()
    })
    .await;
    let pages = dir.path().join("var/www/shop/index.html");
    until(
        "the staff mail and three campaign mails",
        Duration::from_secs(20),
        || async { mail_count(dir.path()) >= 4 && pages.exists() },
    )
    .await;
    // Let Prometheus see the customer phase for a few scrapes, then recover.
    tokio::time::sleep(Duration::from_secs(4)).await;
    up.store(true, Ordering::SeqCst);
    until(
        "recovery: placeholder withdrawn",
        Duration::from_secs(20),
        || async { !pages.exists() },
    )
    .await;
    until(
        "recovery mails (staff and three customers)",
        Duration::from_secs(20),
        || async { mail_count(dir.path()) >= 8 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let start_s = start
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let end_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();

    // Every panel's every query, over the whole run, as Grafana would ask.
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/tocsin.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            queries += 1;
            let title = panel["title"].as_str().unwrap();
            let expr = substitute(t["expr"].as_str().unwrap());
            let r = prom(
                prom_port,
                "/api/v1/query_range",
                &[
                    ("query", &expr),
                    ("start", &start_s),
                    ("end", &end_s),
                    ("step", "1"),
                ],
            )
            .await;
            if r["status"] != "success" {
                failures.push(format!("{title}: `{expr}`: {}", r["error"]));
                continue;
            }
            let series = r["data"]["result"].as_array().cloned().unwrap_or_default();
            let real = series.iter().any(|s| {
                s["values"].as_array().into_iter().flatten().any(|v| {
                    v[1].as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                })
            });
            if !real {
                failures.push(format!("{title}: `{expr}` returned no data"));
            }
        }
    }
    assert!(queries >= 25, "only {queries} queries in the dashboard");

    // The variables' own queries.
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let (selector, label) = label_values(v["definition"].as_str().unwrap());
        let r = prom(
            prom_port,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &selector)],
        )
        .await;
        let values: Vec<String> = r["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        let want = match label.as_str() {
            "instance" => format!("127.0.0.1:{port}"),
            "service" => "shop".into(),
            _ => "home-tls".into(),
        };
        if !values.contains(&want) {
            failures.push(format!(
                "variable {}: {selector} gave {values:?}, no {want}",
                v["name"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        explain(&format!(
            "dashboard queries failed:\n{}",
            failures.join("\n")
        ))
    );

    // The figures behind the panels are the right ones, not merely present.
    let at_peak = |q: &str| format!("max_over_time(({q})[2m:1s])");
    let value = |v: &[Value]| -> f64 { v[0]["value"][1].as_str().unwrap().parse().unwrap() };
    let r = instant(
        prom_port,
        &at_peak("tocsin_incident_customer_phase{service=\"shop\"}"),
    )
    .await;
    assert_eq!(value(&r), 1.0, "the customer phase was seen");
    let r = instant(
        prom_port,
        "tocsin_mail_sent_total{kind=\"campaign_outage\"}",
    )
    .await;
    assert_eq!(value(&r), 3.0, "three outage mails counted");
    let r = instant(prom_port, "tocsin_placeholder_pages").await;
    assert_eq!(value(&r), 0.0, "no placeholder left after recovery");
    let r = instant(
        prom_port,
        "(probe_ssl_earliest_cert_expiry{probe=\"home-tls\"} - time()) / 86400",
    )
    .await;
    let days = value(&r);
    assert!(
        (29.0..=30.0).contains(&days),
        "certificate days left: {days}"
    );
    let r = instant(prom_port, "probe_dns_answer_rrs{probe=\"shop-dns\"}").await;
    assert_eq!(value(&r), 2.0, "two A records for shop.test");

    // The blackbox-style job: tocsin's /probe is a drop-in for blackbox_exporter's.
    let r = instant(prom_port, "probe_success{job=\"tocsin-probe\"}").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["metric"]["instance"], probed.as_str());
    assert_eq!(value(&r), 1.0);
    let r = instant(prom_port, "probe_http_status_code{job=\"tocsin-probe\"}").await;
    assert_eq!(value(&r), 200.0);

    // Every recording and alerting rule evaluates without error against real data, the
    // recording rules produce series, and no alert about tocsin itself fires.
    let rules = prom(prom_port, "/api/v1/rules", &[]).await;
    let mut seen = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for rule in g["rules"].as_array().unwrap() {
            seen += 1;
            assert_eq!(
                rule["health"], "ok",
                "rule {} failed: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
    assert_eq!(seen, 20, "every rule of tocsin-rules.yml is loaded");
    for rec in [
        "service_probe:probe_success:avg5m",
        "service:probe_success:avg5m",
        "service_probe:probe_ssl_cert_days_left",
        "instance:tocsin_scheduler_lag_seconds:p99_5m",
    ] {
        assert!(
            !instant(prom_port, rec).await.is_empty(),
            "{rec} has no data"
        );
    }
    let firing = instant(prom_port, "ALERTS{alertstate=\"firing\"}").await;
    assert!(firing.is_empty(), "alerts firing: {firing:?}");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
