//! Chat and paging channels against a local receiver that plays every vendor: each
//! request is checked against the vendor's documented rules (required fields, size
//! limits, authorisation) and answered as the vendor answers, including a 429 whose
//! wait is honoured. A whole outage (rotation with an override, every channel, a
//! SIGKILL in the middle) reaches each channel once per transition, in order.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const TOKEN: &str = "channels-test-token";
const PD_KEY: &str = "R0UT1NGK3Y0123456789abcdef012345";
const GENIE: &str = "genie-key-123";
const TG: &str = "123456:ABC-telegram-token";
const MX: &str = "syt_matrix_token";
const NTFY: &str = "tk_ntfy_token";
const HOOK_SECRET: &str = "custom-signing-key";

/// One request a vendor accepted.
#[derive(Debug, Clone)]
struct Got {
    vendor: &'static str,
    /// What it was about: `opened`, `acknowledged`, `resolved` (from the title, or the
    /// pager's action).
    event: String,
    at: Instant,
    body: Value,
    /// Matrix's transaction id, PagerDuty's dedup key, Opsgenie's alias.
    key: String,
}

#[derive(Default)]
struct Vendors {
    got: Mutex<Vec<Got>>,
    /// Requests that broke a vendor's rules: the test fails on any.
    broken: Mutex<Vec<String>>,
    /// 429s answered, per vendor.
    limited: Mutex<BTreeMap<&'static str, Instant>>,
}

/// What a title says happened.
fn event_of(title: &str) -> String {
    if title.contains("acknowledged by") {
        "acknowledged".into()
    } else if title.contains("is UP again") {
        "resolved".into()
    } else if title.contains("is DOWN") {
        "opened".into()
    } else {
        format!("? {title}")
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

/// Checks one request against its vendor's rules; the vendor, event and key, or what is
/// wrong.
fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'static str, String, String), String> {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{path}: not JSON: {e}"))?;
    if !h("content-type").starts_with("application/json") {
        return Err(format!("{path}: content-type {}", h("content-type")));
    }
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{path}: {what}: {v}"))
        }
    };
    if path == "/slack/services/T1/B1/xyz" {
        need(method == Method::POST, "POST")?;
        need(v["text"].is_string(), "text is the fallback")?;
        let blocks = v["blocks"].as_array().ok_or("slack: no blocks")?;
        need(!blocks.is_empty() && blocks.len() <= 50, "1 to 50 blocks")?;
        let mut title = String::new();
        for b in blocks {
            match b["type"].as_str() {
                Some("header") => {
                    need(
                        b["text"]["type"] == "plain_text",
                        "header text is plain_text",
                    )?;
                    need(chars(&b["text"]["text"]) <= 150, "header text up to 150")?;
                    title = b["text"]["text"].as_str().unwrap_or("").to_string();
                }
                Some("section") => {
                    need(chars(&b["text"]["text"]) <= 3000, "section text up to 3000")?;
                    need(b["text"]["type"] == "mrkdwn", "mrkdwn")?;
                }
                Some("actions") => {
                    for e in b["elements"].as_array().ok_or("no elements")? {
                        need(e["type"] == "button", "buttons")?;
                        need(chars(&e["text"]["text"]) <= 75, "button text up to 75")?;
                        need(chars(&e["url"]) <= 3000, "button url up to 3000")?;
                        need(
                            e["url"].as_str().is_some_and(|u| u.starts_with("http")),
                            "button url",
                        )?;
                    }
                }
                Some("context") => {}
                other => return Err(format!("slack: unknown block {other:?}")),
            }
        }
        return Ok(("slack", event_of(&title), String::new()));
    }
    if path == "/teams/workflows/abc" {
        need(body.len() < 28 * 1024, "message under 28 KB")?;
        need(v["type"] == "message", "type message")?;
        let a = &v["attachments"][0];
        need(
            a["contentType"] == "application/vnd.microsoft.card.adaptive",
            "adaptive card",
        )?;
        let card = &a["content"];
        need(
            card["type"] == "AdaptiveCard" && card["version"].is_string(),
            "card type and version",
        )?;
        let title = card["body"][0]["text"].as_str().unwrap_or("").to_string();
        need(card["body"][0]["type"] == "TextBlock", "TextBlock")?;
        return Ok(("teams", event_of(&title), String::new()));
    }
    if path == "/mattermost/hooks/xyz" {
        need(
            chars(&v["text"]) > 0 && chars(&v["text"]) <= 16383,
            "text 1 to 16383",
        )?;
        let title = v["text"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Ok(("mattermost", event_of(&title), String::new()));
    }
    if path == "/discord/api/webhooks/1/tok" {
        need(chars(&v["content"]) <= 2000, "content up to 2000")?;
        let e = &v["embeds"][0];
        need(chars(&e["title"]) <= 256, "embed title up to 256")?;
        need(
            chars(&e["description"]) <= 4096,
            "embed description up to 4096",
        )?;
        need(
            chars(&e["title"]) + chars(&e["description"]) <= 6000,
            "embeds up to 6000",
        )?;
        need(
            v["allowed_mentions"]["parse"] == json!([]),
            "no mentions parsed",
        )?;
        return Ok((
            "discord",
            event_of(e["title"].as_str().unwrap_or("")),
            String::new(),
        ));
    }
    if path == format!("/telegram/bot{TG}/sendMessage") {
        need(v["chat_id"] == json!(-1001234567890i64), "chat_id")?;
        need(v["parse_mode"] == "HTML", "parse_mode HTML")?;
        let text = v["text"].as_str().unwrap_or("");
        // Telegram's HTML: only its own tags.
        let tags = regex::Regex::new(r"</?([a-z]+)[^>]*>").unwrap();
        for c in tags.captures_iter(text) {
            need(
                ["b", "a", "i", "code", "pre"].contains(&&c[1]),
                "only Telegram's tags",
            )?;
        }
        // As Telegram counts: tags removed, entities as one character.
        let bare = tags.replace_all(text, "");
        let entities = regex::Regex::new(r"&(amp|lt|gt|quot|#39);").unwrap();
        need(
            entities.replace_all(&bare, "&").chars().count() <= 4096,
            "text up to 4096 once parsed",
        )?;
        let title = text
            .lines()
            .next()
            .unwrap_or("")
            .replace("<b>", "")
            .replace("</b>", "");
        return Ok(("telegram", event_of(&title), String::new()));
    }
    if path == "/ntfy" {
        need(
            h("authorization") == format!("Bearer {NTFY}"),
            "bearer token",
        )?;
        need(v["topic"] == "ops-alerts", "topic")?;
        need(
            v["message"].as_str().is_some_and(|m| m.len() <= 4096),
            "message up to 4096 bytes",
        )?;
        need(
            v["priority"].as_u64().is_some_and(|p| (1..=5).contains(&p)),
            "priority 1 to 5",
        )?;
        need(
            v["actions"].as_array().is_none_or(|a| a.len() <= 3),
            "at most 3 actions",
        )?;
        return Ok((
            "ntfy",
            event_of(v["title"].as_str().unwrap_or("")),
            String::new(),
        ));
    }
    if let Some(rest) = path.strip_prefix("/matrix/_matrix/client/v3/rooms/") {
        need(method == Method::PUT, "PUT")?;
        need(h("authorization") == format!("Bearer {MX}"), "bearer token")?;
        let (room, txn) = rest
            .split_once("/send/m.room.message/")
            .ok_or("matrix: path")?;
        need(room == "%21ops%3Amatrix.example.org", "room id escaped")?;
        need(
            v["msgtype"] == "m.text" && v["body"].is_string(),
            "msgtype and body",
        )?;
        need(v["format"] == "org.matrix.custom.html", "html format")?;
        let title = v["body"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Ok(("matrix", event_of(&title), txn.to_string()));
    }
    if path == "/pagerduty/v2/enqueue" {
        need(v["routing_key"] == PD_KEY, "routing_key")?;
        let action = v["event_action"].as_str().unwrap_or("");
        need(
            ["trigger", "acknowledge", "resolve"].contains(&action),
            "event_action",
        )?;
        let key = v["dedup_key"].as_str().unwrap_or("");
        need(!key.is_empty() && key.len() <= 255, "dedup_key")?;
        if action == "trigger" {
            let p = &v["payload"];
            need(
                chars(&p["summary"]) > 0 && chars(&p["summary"]) <= 1024,
                "payload.summary",
            )?;
            need(chars(&p["source"]) > 0, "payload.source")?;
            need(
                ["critical", "error", "warning", "info"]
                    .contains(&p["severity"].as_str().unwrap_or("")),
                "payload.severity",
            )?;
        }
        let event = match action {
            "trigger" => "opened",
            "acknowledge" => "acknowledged",
            _ => "resolved",
        };
        return Ok(("pagerduty", event.into(), key.to_string()));
    }
    if let Some(rest) = path.strip_prefix("/opsgenie/v2/alerts") {
        need(
            h("authorization") == format!("GenieKey {GENIE}"),
            "GenieKey",
        )?;
        if rest.is_empty() {
            need(
                chars(&v["message"]) > 0 && chars(&v["message"]) <= 130,
                "message up to 130",
            )?;
            need(chars(&v["alias"]) <= 512, "alias up to 512")?;
            need(chars(&v["description"]) <= 15000, "description up to 15000")?;
            return Ok((
                "opsgenie",
                "opened".into(),
                v["alias"].as_str().unwrap_or("").into(),
            ));
        }
        let (alias, what) = rest
            .trim_start_matches('/')
            .split_once('/')
            .ok_or("opsgenie: path")?;
        let event = match what {
            "acknowledge" => "acknowledged",
            "close" => "resolved",
            other => return Err(format!("opsgenie: unknown action {other}")),
        };
        return Ok(("opsgenie", event.into(), alias.to_string()));
    }
    if path == "/custom" {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
        let sig = h("x-tocsin-signature");
        let hex = sig.strip_prefix("sha256=").ok_or("custom: signature")?;
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        ring::hmac::verify(&key, body, &tag).map_err(|_| "custom: bad signature")?;
        need(v["service"] == "shop", "the template's values")?;
        return Ok(("webhook", h("x-tocsin-event"), String::new()));
    }
    Err(format!("no vendor at {method} {path}"))
}

/// Every vendor on one loopback port: answers as the vendor does. Slack's first request
/// gets a 429 with `Retry-After: 2`, Discord's a 429 with `retry_after` in the body.
async fn vendors() -> (String, Arc<Vendors>) {
    let state = Arc::new(Vendors::default());
    let seen = state.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move { answer(&seen, method, uri, headers, body) }
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (base, state)
}

fn answer(seen: &Vendors, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (vendor, event, key) = match check(&method, uri.path(), &headers, &body) {
        Ok(x) => x,
        Err(e) => {
            seen.broken.lock().unwrap().push(e.clone());
            return (StatusCode::BAD_REQUEST, e).into_response();
        }
    };
    let now = Instant::now();
    {
        let mut limited = seen.limited.lock().unwrap();
        if (vendor == "slack" || vendor == "discord") && !limited.contains_key(vendor) {
            limited.insert(vendor, now);
            return if vendor == "slack" {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "2")],
                    "rate_limited",
                )
                    .into_response()
            } else {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false})),
                )
                    .into_response()
            };
        }
    }
    seen.got.lock().unwrap().push(Got {
        vendor,
        event,
        at: now,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        key,
    });
    match vendor {
        "slack" | "mattermost" => "ok".into_response(),
        "teams" | "opsgenie" => (
            StatusCode::ACCEPTED,
            axum::Json(
                json!({"result": "Request will be processed", "took": 0.01, "requestId": "r"}),
            ),
        )
            .into_response(),
        "discord" => StatusCode::NO_CONTENT.into_response(),
        "telegram" => axum::Json(json!({"ok": true, "result": {"message_id": 1}})).into_response(),
        "matrix" => axum::Json(json!({"event_id": "$e"})).into_response(),
        "pagerduty" => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "success", "message": "Event processed"})),
        )
            .into_response(),
        _ => "ok".into_response(),
    }
}

/// The config: one level naming a rotation (with an override set through the API), a
/// second rotation without one, and every channel.
fn config(port: u16, target: std::net::SocketAddr, base: &str) -> String {
    support::shop_config(
        port,
        target,
        "escalation: default\ncustomer_threshold: 1h\n",
        &format!(
            "escalation:
  default:
    - {{ after: 0m, to: [rotation:primary, rotation:secondary, slack:ops, teams:team, mattermost:mm, discord:dc, telegram:tg, ntfy:phone, matrix:room, pagerduty:main, opsgenie:page, webhook:custom] }}
rotations:
  primary: {{ members: [anna@ops.example, piotr@ops.example], every: 1w, start: \"2026-12-07T09:00:00+01:00\", timezone: Europe/Warsaw }}
  secondary: {{ members: [ola@ops.example, jan@ops.example, eva@ops.example], every: 1d, start: \"2026-01-01T08:00:00+01:00\", timezone: Europe/Stockholm }}
channels:
  ops: {{ slack: {{ url_env: SLACK_URL }} }}
  team: {{ teams: {{ url_env: TEAMS_URL }} }}
  mm: {{ mattermost: {{ url_env: MM_URL }} }}
  dc: {{ discord: {{ url_env: DISCORD_URL }} }}
  tg: {{ telegram: {{ token_env: TG_TOKEN, chat_id: -1001234567890, url: \"{base}/telegram\" }} }}
  phone: {{ ntfy: {{ topic: ops-alerts, token_env: NTFY_TOKEN, url: \"{base}/ntfy\" }} }}
  room: {{ matrix: {{ url: \"{base}/matrix\", room: \"!ops:matrix.example.org\", token_env: MX_TOKEN }} }}
  main: {{ pagerduty: {{ routing_key_env: PD_KEY, url: \"{base}/pagerduty/v2/enqueue\" }} }}
  page: {{ opsgenie: {{ api_key_env: GENIE_KEY, url: \"{base}/opsgenie\" }} }}
  custom: {{ webhook: {{ url: \"{base}/custom\", secret_env: HOOK_SECRET, body: '{{\"text\": {{{{ title }}}}, \"service\": {{{{ service }}}}, \"severity\": {{{{ severity }}}}}}' }} }}
"
        ),
    )
}

fn env(base: &str) -> Vec<(String, String)> {
    [
        ("TOCSIN_API_TOKEN", TOKEN.to_string()),
        ("SLACK_URL", format!("{base}/slack/services/T1/B1/xyz")),
        ("TEAMS_URL", format!("{base}/teams/workflows/abc")),
        ("MM_URL", format!("{base}/mattermost/hooks/xyz")),
        ("DISCORD_URL", format!("{base}/discord/api/webhooks/1/tok")),
        ("TG_TOKEN", TG.into()),
        ("NTFY_TOKEN", NTFY.into()),
        ("MX_TOKEN", MX.into()),
        ("PD_KEY", PD_KEY.into()),
        ("GENIE_KEY", GENIE.into()),
        ("HOOK_SECRET", HOOK_SECRET.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn start(cfg: &std::path::Path, log: &std::path::Path, env: &[(String, String)]) -> support::Proc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    support::run_tocsin(cfg, log, &env)
}

const VENDORS: [&str; 10] = tocsin::oncall::CHANNEL_KINDS;

fn events(v: &Vendors, vendor: &str) -> Vec<String> {
    v.got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.vendor == vendor)
        .map(|g| g.event.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_hears_the_outage_once_per_transition_through_a_crash() {
    let (base, got) = vendors().await;
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(&cfg, config(port, target, &base)).unwrap();
    let log = dir.path().join("tocsin.log");
    let explain = || {
        format!(
            "{}\nbroken: {:?}\ngot: {:?}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            got.broken.lock().unwrap(),
            got.got
                .lock()
                .unwrap()
                .iter()
                .map(|g| (g.vendor, g.event.clone()))
                .collect::<Vec<_>>()
        )
    };
    let env = env(&base);
    let mut tocsin = start(&cfg, &log, &env);

    // Ewa stands in for the primary rotation: the override is set before the outage.
    let t = Instant::now();
    while !support::api_post(
        port,
        "/api/v1/oncall/overrides",
        TOKEN,
        json!({"rotation": "primary", "who": "ewa@ops.example", "until": "2h", "by": "anna"}),
    )
    .await
    {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", explain());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let who = support::api_get(port, "/api/v1/oncall", TOKEN).await;
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who[0]["rotation"], "primary");
    assert_eq!(who[0]["now"]["who"], "ewa@ops.example");
    assert_eq!(who[0]["now"]["why"], "override");
    // The CLI says the same.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["oncall", "who", "--config"])
        .arg(&cfg)
        .env("TOCSIN_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(table.starts_with("ROTATION"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("primary")
            && l.contains("ewa@ops.example")
            && l.contains("override 1 by anna")),
        "{table}"
    );
    assert!(table.contains("Overrides:"), "{table}");
    // The secondary rotation's member on call now, by the rotation's own rule.
    let secondary = who[1]["now"]["who"].as_str().unwrap().to_string();
    assert!(secondary.ends_with("@ops.example"), "{who}");
    // The engine reads overrides every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    up.store(false, Ordering::SeqCst);
    // Every vendor but the two rate-limited ones hears of it; those wait as told.
    support::until(
        "every channel but two told of the opening",
        Duration::from_secs(30),
        &explain,
        || {
            VENDORS
                .iter()
                .filter(|v| !["slack", "discord"].contains(v))
                .all(|v| events(&got, v) == ["opened"])
        },
    )
    .await;
    // A crash while Slack's and Discord's retries wait.
    support::until(
        "Slack and Discord asked to wait",
        Duration::from_secs(30),
        &explain,
        || {
            let limited = got.limited.lock().unwrap();
            limited.contains_key("slack") && limited.contains_key("discord")
        },
    )
    .await;
    // Crashing between the receiver's answer and tocsin's record of it would lose the
    // answer (the stated in-flight exception): the crash comes once both are counted as
    // retried, and the record that follows at once has had its moment.
    for kind in ["slack", "discord"] {
        support::until_metric(
            port,
            &format!("tocsin_channel_deliveries_total{{kind=\"{kind}\",result=\"retried\"}}"),
            Duration::from_secs(30),
            &explain,
            |n| n >= 1.0,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    tocsin.crash();
    let _tocsin = start(&cfg, &log, &env);
    support::until(
        "Slack and Discord told after their wait",
        Duration::from_secs(30),
        &explain,
        || events(&got, "slack") == ["opened"] && events(&got, "discord") == ["opened"],
    )
    .await;
    // Each came back no sooner than it was asked to.
    for (vendor, wait) in [("slack", 2000), ("discord", 1500)] {
        let limited = got.limited.lock().unwrap()[vendor];
        let sent = got
            .got
            .lock()
            .unwrap()
            .iter()
            .find(|g| g.vendor == vendor)
            .unwrap()
            .at;
        assert!(
            sent.duration_since(limited) >= Duration::from_millis(wait),
            "{vendor} asked for {wait} ms, was retried after {:?}",
            sent.duration_since(limited)
        );
    }

    assert!(
        support::api_post(
            port,
            "/api/v1/incidents/shop/ack",
            TOKEN,
            json!({"by": "ewa"})
        )
        .await,
        "{}",
        explain()
    );
    support::until(
        "every channel told of the acknowledgement",
        Duration::from_secs(30),
        &explain,
        || VENDORS.iter().all(|v| events(&got, v).len() >= 2),
    )
    .await;
    up.store(true, Ordering::SeqCst);
    support::until(
        "every channel told of the recovery",
        Duration::from_secs(30),
        &explain,
        || VENDORS.iter().all(|v| events(&got, v).len() >= 3),
    )
    .await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(got.broken.lock().unwrap().is_empty(), "{}", explain());
    for v in VENDORS {
        assert_eq!(
            events(&got, v),
            ["opened", "acknowledged", "resolved"],
            "{v}: {}",
            explain()
        );
    }
    let all = got.got.lock().unwrap().clone();
    // The pagers' alerts follow the incident by one key.
    let keys = |vendor: &str| -> Vec<String> {
        all.iter()
            .filter(|g| g.vendor == vendor)
            .map(|g| g.key.clone())
            .collect()
    };
    let pd = keys("pagerduty");
    assert!(
        pd.iter().all(|k| k == &pd[0]) && pd[0].starts_with("tocsin-incident-"),
        "{pd:?}"
    );
    let og = keys("opsgenie");
    assert!(og.iter().all(|k| k == &og[0]) && og[0] == pd[0], "{og:?}");
    // Matrix: one transaction id per message.
    let mx = keys("matrix");
    assert_eq!(
        mx.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3,
        "{mx:?}"
    );
    // The opening names who was paged and why, with the links to act on.
    let slack = all.iter().find(|g| g.vendor == "slack").unwrap();
    let text = slack.body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("Paged: ewa@ops.example (rotation primary: override 1 set by anna"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Paged: {secondary} (rotation secondary: turn of member"
        )),
        "{text}"
    );
    assert!(
        text.contains("home: "),
        "the failing probe and its reason: {text}"
    );
    let buttons = &slack.body["blocks"][2]["elements"];
    assert_eq!(buttons[0]["text"]["text"], "Acknowledge");
    let custom = all.iter().find(|g| g.vendor == "webhook").unwrap();
    assert_eq!(custom.body["text"], "Web shop is DOWN");
    assert_eq!(custom.body["severity"], "critical");

    // Staff mail went to whoever the rotations put on call, and says so.
    let mails = support::spooled(dir.path());
    let opened: Vec<&(String, String, String)> = mails
        .iter()
        .filter(|(_, s, _)| s.contains("is DOWN"))
        .collect();
    assert_eq!(opened.len(), 1, "{mails:?}");
    assert!(
        opened[0].2.contains("On call, paged now:"),
        "{}",
        opened[0].2
    );
    assert!(
        opened[0]
            .2
            .contains("ewa@ops.example (rotation primary: override 1 set by anna"),
        "{}",
        opened[0].2
    );
    let to: Vec<&str> = mails
        .iter()
        .filter(|(_, s, _)| s.contains("is DOWN"))
        .map(|(t, _, _)| t.as_str())
        .collect();
    assert_eq!(to, ["ewa@ops.example"], "the first recipient of the mail");
    assert!(
        mails.iter().any(|(_, s, _)| s.contains("is UP again")),
        "{mails:?}"
    );

    // The metrics count every kind; no secret is in the log.
    let metrics = support::metrics(port).await;
    assert!(
        metrics.contains("tocsin_channel_deliveries_total{kind=\"pagerduty\",result=\"sent\"}"),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    for secret in [
        PD_KEY,
        GENIE,
        TG,
        MX,
        NTFY,
        HOOK_SECRET,
        "T1/B1/xyz",
        "workflows/abc",
    ] {
        assert!(!logged.contains(secret), "{secret} is in the log");
    }
    assert!(
        logged.contains("channel message not delivered; will retry"),
        "{logged}"
    );
}

#[test]
fn a_missing_channel_secret_stops_the_start_and_check_names_none() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        config(
            support::free_port(),
            "127.0.0.1:9".parse().unwrap(),
            "http://127.0.0.1:9",
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_tocsin");
    // `check` needs no secret, shows none, and says which are missing.
    let mut all = env("http://127.0.0.1:9");
    all.retain(|(k, _)| k != "PD_KEY");
    let out = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(&cfg)
        .envs(all.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("channel slack:ops: the URL in $SLACK_URL\n"),
        "{text}"
    );
    assert!(
        text.contains("channel pagerduty:main: http://127.0.0.1 ($PD_KEY not set: `tocsin run` refuses to start without it)"),
        "{text}"
    );
    assert!(text.contains("rotation primary: "), "{text}");
    for (_, v) in &all {
        if v.len() > 12 {
            assert!(!text.contains(v.as_str()), "{v} shown: {text}");
        }
    }
    // `run` refuses to start, naming the variable.
    let out = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .envs(all.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("channel pagerduty:main: set the environment variable PD_KEY"),
        "{err}"
    );
}
