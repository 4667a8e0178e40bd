//! The incident API through the real router, engine and SQLite store: tokens, listing,
//! ack, ETA (which can start the customer phase), resolve, and every bad input.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use tocsin::clock::SystemClock;
use tocsin::config::{self, LiveConfig};
use tocsin::engine::Engine;
use tocsin::metrics::Metrics;
use tocsin::probe::{Outcome, Reason, Secret};
use tocsin::scheduler::{Latest, Report};
use tocsin::store::{SharedStore, SqlStore};
use tocsin::web::api::IncidentApi;
use tocsin::web::{AppState, app};

const YAML: &str = "services:
  - id: shop
    name: Web shop
    failure_threshold: 2
    escalation: default
    probes:
      - { name: home, tcp: { address: \"127.0.0.1:9\" } }
escalation:
  default:
    - { after: 0m, to: [oncall@example.com] }
";

struct Fixture {
    state: AppState,
    _dir: tempfile::TempDir,
}

/// An engine with one open incident on `shop`, and the API with `token`.
fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(YAML, Path::new("api.yaml")).unwrap();
    let store = SharedStore::new(SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap());
    let mut engine = Engine::new(&cfg, store.clone(), Arc::new(SystemClock)).unwrap();
    let probe = cfg.probes().next().unwrap().clone();
    for _ in 0..2 {
        let outcome = Outcome {
            at: SystemTime::now(),
            duration: Duration::from_millis(1),
            success: false,
            reason: Some(Reason::ConnectionRefused),
            phases: vec![],
            details: Default::default(),
        };
        engine
            .report(&Report {
                probe: probe.clone(),
                outcome,
                lag: Duration::ZERO,
                confirmed: true,
            })
            .unwrap();
    }
    let handle = engine.handle();
    // The engine task, as `tocsin run` has it; this one gets no probe reports.
    tokio::spawn(async move {
        let (_reports, mut rx) = tokio::sync::mpsc::channel(1);
        let drain = tokio_util::sync::CancellationToken::new();
        engine.run(&mut rx, Arc::new(Metrics::new()), drain).await
    });
    let live = LiveConfig::new(cfg);
    let incidents = IncidentApi {
        config: live.clone(),
        engine: handle,
        store,
        token: token.map(Secret::new),
        token_env: "TOCSIN_API_TOKEN".into(),
        clock: Arc::new(SystemClock),
        signer: Arc::new(tocsin::links::Signer::new(
            b"test key, 32 bytes long, exactly",
        )),
        languages: Arc::new(vec!["en".into(), "pl".into(), "sv".into()]),
    };
    let state = AppState {
        config: live,
        metrics: Arc::new(Metrics::new()),
        latest: Arc::new(Latest::default()),
        clock: Arc::new(SystemClock),
        incidents: Some(incidents),
        campaigns: None,
        public: None,
        maintenance: None,
        heartbeats: None,
        votes: None,
    };
    Fixture { state, _dir: dir }
}

async fn call(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let resp = app(f.state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const T: Option<&str> = Some("s3cret-token");

#[tokio::test]
async fn requests_without_the_right_token_get_401() {
    let f = fixture(Some("s3cret-token"));
    let (code, body) = call(&f, "GET", "/api/v1/incidents", None, "").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("missing `Authorization: Bearer <token>`")
        )
    );
    let (code, body) = call(&f, "POST", "/api/v1/incidents/shop/ack", Some("guess"), "").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong token"))
    );
    let f = fixture(None);
    let (code, body) = call(&f, "GET", "/api/v1/incidents", Some("anything"), "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"],
        "the API is disabled: set the environment variable TOCSIN_API_TOKEN for tocsin"
    );
}

#[tokio::test]
async fn incidents_are_listed_with_service_state_phase_and_timeline() {
    let f = fixture(T);
    let (code, body) = call(&f, "GET", "/api/v1/incidents?open=true", T, "").await;
    assert_eq!(code, StatusCode::OK);
    let inc = &body[0];
    assert_eq!(inc["service"], "shop");
    assert_eq!(inc["state"], "down");
    assert_eq!(inc["phase"], "staff");
    assert_eq!(inc["acknowledged_by"], Value::Null);
    assert!(inc["started"].as_str().unwrap().ends_with('Z'));
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "staff_mail"]);
    let (code, one) = call(
        &f,
        "GET",
        &format!("/api/v1/incidents/{}", inc["id"]),
        T,
        "",
    )
    .await;
    assert_eq!(
        (code, &one["service"]),
        (StatusCode::OK, &Value::from("shop"))
    );
}

#[tokio::test]
async fn ack_eta_and_resolve_by_service_id() {
    let f = fixture(T);
    let (code, inc) = call(
        &f,
        "POST",
        "/api/v1/incidents/shop/ack",
        T,
        r#"{"by":"anna"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{inc}");
    assert_eq!(inc["acknowledged_by"], "anna");

    // An ETA 4 h away is past the 3 h customer threshold: customers are told at once.
    let (code, inc) = call(
        &f,
        "POST",
        "/api/v1/incidents/shop/eta",
        T,
        r#"{"eta":"4h","by":"anna"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{inc}");
    assert_eq!(inc["phase"], "customer");
    assert!(inc["eta"].is_string());
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "staff_mail",
            "acknowledged",
            "eta",
            "customer_phase"
        ]
    );

    let (code, inc) = call(&f, "POST", "/api/v1/incidents/shop/resolve", T, "").await;
    assert_eq!(code, StatusCode::OK, "{inc}");
    assert_eq!(inc["state"], "resolved");
    let id = inc["id"].as_i64().unwrap();
    let (code, body) = call(
        &f,
        "POST",
        &format!("/api/v1/incidents/{id}/resolve"),
        T,
        "",
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str().map(String::from)),
        (
            StatusCode::CONFLICT,
            Some(format!("incident {id} is already resolved"))
        )
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_reason() {
    let f = fixture(T);
    let (code, body) = call(&f, "POST", "/api/v1/incidents/nope/ack", T, "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"],
        "no incident `nope` (give an incident id, or a service id with an open incident)"
    );
    let (code, _) = call(&f, "GET", "/api/v1/incidents/999", T, "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = call(
        &f,
        "POST",
        "/api/v1/incidents/shop/eta",
        T,
        r#"{"eta":"soonish"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("ETA `soonish` is not a time tocsin reads: write a duration from now (4h, 2h30m), a time in UTC (14:00"),
        "{body}"
    );
    let (code, body) = call(
        &f,
        "POST",
        "/api/v1/incidents/shop/eta",
        T,
        r#"{"eta":"2020-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("ETA `2020-01-01T00:00:00Z` is not in the future")
        )
    );
    // Out of range: refused with a reason, never a panic (it was one).
    for (eta, why) in [
        ("10000y", "is more than a year away"),
        ("9999-12-31T23:00:00Z", "is more than a year away"),
        ("18446744073709551615s", "is more than a year away"),
    ] {
        let (code, body) = call(
            &f,
            "POST",
            "/api/v1/incidents/shop/eta",
            T,
            &format!(r#"{{"eta":"{eta}"}}"#),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{eta}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{eta}: {body}"
        );
    }
    let (code, body) = call(&f, "POST", "/api/v1/incidents/shop/eta", T, "{not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body")
    );
    let (code, _) = call(&f, "POST", "/api/v1/incidents/shop/ack", T, "[1,2]").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[test]
fn etas_parse_as_durations_or_times() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let parse_eta = |s: &str, now| tocsin::text::time::parse_eta(s, now, "UTC");
    assert_eq!(
        parse_eta("4h", now).unwrap(),
        now + Duration::from_secs(4 * 3600)
    );
    assert_eq!(
        parse_eta("2027-06-01T08:00:00Z", now).unwrap(),
        humantime::parse_rfc3339("2027-06-01T08:00:00Z").unwrap()
    );
    assert!(parse_eta("0s", now).is_err());
    assert!(parse_eta("", now).is_err());
    assert_eq!(
        parse_eta("400d", now).unwrap_err(),
        "ETA `400d` is more than a year away: give the time recovery is expected, or none"
    );
}

mod links {
    use super::*;
    use tocsin::links::{Link, LinkAction, Signer};

    fn signer() -> Signer {
        Signer::new(b"test key, 32 bytes long, exactly")
    }

    async fn form(f: &Fixture, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/x-www-form-urlencoded");
        let resp = app(f.state.clone())
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn link(action: LinkAction, expires: u64) -> String {
        let url = signer().url(
            "",
            &Link {
                incident: 1,
                action,
                expires,
                recipient: "oncall@example.com".into(),
                group: Vec::new(),
            },
        );
        assert!(url.starts_with("/act?i=1&"));
        url
    }

    fn in_a_day() -> u64 {
        tocsin::links::expiry(SystemTime::now())
    }

    #[tokio::test]
    async fn following_a_link_only_asks_and_the_post_acknowledges() {
        let f = fixture(T);
        let url = link(LinkAction::Ack, in_a_day());
        let (code, page) = form(&f, "GET", &url, "").await;
        assert_eq!(code, StatusCode::OK);
        // The page names the service and says what acknowledging does.
        assert!(
            page.contains("<title>Acknowledge the outage of Web shop?</title>")
                && page.contains("(incident 1). Acknowledging tells tocsin someone is on it: the next escalation levels are not mailed.")
                && page.contains("<form method=\"post\""),
            "{page}"
        );
        // The page's URL holds the signed link: no Referer, no framing, no scripts.
        let resp = app(f.state.clone())
            .oneshot(Request::builder().uri(&url).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let (_, inc) = call(&f, "GET", "/api/v1/incidents/1", T, "").await;
        assert_eq!(
            inc["acknowledged_by"],
            Value::Null,
            "a GET (a mail scanner) acknowledges nothing"
        );

        // A bare POST, as `curl -X POST` sends it (no body, no content type), acts.
        let resp = app(f.state.clone())
            .oneshot(
                Request::builder()
                    .method("POST")
                    .uri(&url)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8_lossy(&bytes);
        assert!(
            page.contains(
                "The outage of Web shop (incident 1) is acknowledged: no further level is mailed."
            ),
            "{page}"
        );
        let (_, inc) = call(&f, "GET", "/api/v1/incidents/1", T, "").await;
        assert_eq!(inc["acknowledged_by"], "oncall@example.com (mail link)");
        let (_, page) = form(&f, "GET", &url, "").await;
        assert!(
            page.contains("It is already acknowledged by oncall@example.com (mail link)"),
            "{page}"
        );

        // Once the outage is over, the link says so instead of offering the form.
        let (code, _) = call(&f, "POST", "/api/v1/incidents/1/resolve", T, "{}").await;
        assert_eq!(code, StatusCode::OK);
        let eta = link(LinkAction::Eta, in_a_day());
        let (code, page) = form(&f, "GET", &eta, "").await;
        assert_eq!(code, StatusCode::CONFLICT);
        assert!(
            page.contains("<title>Web shop is back</title>")
                && page.contains("there is nothing left to acknowledge or estimate")
                && !page.contains("<form"),
            "{page}"
        );
    }

    #[tokio::test]
    async fn an_eta_link_takes_a_value_and_can_start_the_customer_phase() {
        let f = fixture(T);
        let url = link(LinkAction::Eta, in_a_day());
        let (code, page) = form(&f, "POST", &url, "eta=later").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(page.contains("ETA not set"));
        let (code, page) = form(&f, "POST", &url, "eta=5h").await;
        assert_eq!(code, StatusCode::OK, "{page}");
        let (_, inc) = call(&f, "GET", "/api/v1/incidents/1", T, "").await;
        assert_eq!(inc["phase"], "customer");
    }

    #[tokio::test]
    async fn altered_expired_and_foreign_links_are_refused() {
        let f = fixture(T);
        let good = link(LinkAction::Ack, in_a_day());
        for bad in [
            good.replace("i=1", "i=2"),
            good.replace("r=oncall", "r=intruder"),
            link(LinkAction::Ack, 1_000_000_000),
        ] {
            let (code, page) = form(&f, "POST", &bad, "").await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{bad}: {page}");
        }
        let (_, page) = form(&f, "GET", &link(LinkAction::Ack, 1_000_000_000), "").await;
        assert!(page.contains("this link has expired"), "{page}");
        let foreign = Signer::new(b"someone else's key, also 32 byte").url(
            "",
            &Link {
                incident: 1,
                action: LinkAction::Ack,
                expires: in_a_day(),
                recipient: "x".into(),
                group: Vec::new(),
            },
        );
        assert_eq!(
            form(&f, "POST", &foreign, "").await.0,
            StatusCode::FORBIDDEN
        );
        let (_, inc) = call(&f, "GET", "/api/v1/incidents/1", T, "").await;
        assert_eq!(inc["acknowledged_by"], Value::Null);
    }
}
