//! Chat and paging channels for staff: Slack, Microsoft Teams, Mattermost, Discord,
//! Telegram, ntfy, Matrix, PagerDuty, Opsgenie, and a webhook whose body is a template.
//!
//! A level's `to:` names channels beside addresses (`slack:ops`, `pagerduty:main`). The
//! dispatcher fans each decision out into one delivery per channel it names, with the
//! same durable outbox, retries and per-channel ordering as the incident webhooks
//! ([`Backoff::QUICK`]); a `429` is tried again after the wait the vendor asks for.
//! Each channel hears what a staff member would: the incident opened, escalated, the
//! reminders, acknowledged, a new ETA, resolved, and the monitor's own trouble. Pagers
//! (PagerDuty, Opsgenie) take only what opens, acknowledges or closes an alert, keyed by
//! the incident, so the pager's incident follows tocsin's.
//!
//! One file per vendor builds its request from a [`Notice`]; this file builds the notice
//! from the decision and reads the vendor's answer. Secrets (webhook URLs, tokens,
//! keys) come from the environment, and never reach a log, an error or the timeline:
//! a delivery is named by its channel (`slack:ops`), and transport errors lose their URL.

pub mod custom;
pub mod discord;
pub mod matrix;
pub mod mattermost;
pub mod ntfy;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod telegram;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::dispatch::{Backoff, Notifier, Outcome};
use super::http::{DEADLINE, answer, transport};
use crate::clock::Clock;
use crate::config::{ChatChannel, Config, EnvSecret, LiveConfig, Vendor, fmt_dur};
use crate::incident::{Action, StaffMailKind};
use crate::links::{Link, LinkAction, Signer, expiry};
use crate::metrics::Metrics;
use crate::oncall::{Target, channels};
use crate::secret::Secret;
use crate::store::{Channel, Delivery, IncidentRecord, OutboxItem, SharedStore};

/// How urgent a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A service is down (opened, escalated, reminded) or the monitor cannot see.
    Critical,
    /// Something to look at: flapping, the monitor's host in trouble.
    Warning,
    /// Progress: acknowledged, a new ETA.
    Info,
    /// Recovered.
    Resolved,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Resolved => "resolved",
        }
    }
}

/// What a pager does with a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagerAction {
    /// Open (or add to) the alert keyed by the incident.
    Trigger,
    Acknowledge,
    Resolve,
}

/// One message for staff, before any vendor's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// As in the incident webhooks: `opened`, `escalated`, `reminder`, `acknowledged`,
    /// `eta`, `resolved`, `flapping`, `monitor_down`, `monitor_fault`, `task_restarted`.
    pub event: &'static str,
    pub severity: Severity,
    /// Empty for a notice about the monitor itself.
    pub service: String,
    pub service_name: String,
    pub incident: Option<i64>,
    /// One line: "Web shop is DOWN".
    pub title: String,
    /// Plain text, one fact per line.
    pub lines: Vec<String>,
    /// What fails, one `probe: reason` each.
    pub reasons: Vec<String>,
    /// Signed links to acknowledge and to set an ETA, while there is something to do.
    pub ack_url: Option<String>,
    pub eta_url: Option<String>,
    pub at: SystemTime,
    /// Ties one incident's messages together at a pager (PagerDuty's `dedup_key`,
    /// Opsgenie's `alias`).
    pub key: String,
    /// None: pagers take no part in it.
    pub pager: Option<PagerAction>,
    /// Who acknowledged, set the ETA or resolved it.
    pub by: Option<String>,
}

impl Notice {
    /// The lines and reasons as one text.
    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        if !self.reasons.is_empty() {
            t.push_str("\nWhat fails:");
            for r in &self.reasons {
                t.push_str("\n  ");
                t.push_str(r);
            }
        }
        t
    }

    /// The links as (label, URL).
    pub fn links(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(u) = &self.ack_url {
            out.push(("Acknowledge", u.as_str()));
        }
        if let Some(u) = &self.eta_url {
            out.push(("Set an ETA", u.as_str()));
        }
        out
    }

    /// What a custom channel's template is given.
    pub fn values(&self) -> serde_json::Value {
        serde_json::json!({
            "event": self.event,
            "service": self.service,
            "service_name": self.service_name,
            "incident": self.incident,
            "title": self.title,
            "text": self.text(),
            "severity": self.severity.as_str(),
            "at": crate::text::time::rfc3339(self.at),
            "ack_url": self.ack_url,
            "eta_url": self.eta_url,
            "reasons": self.reasons,
        })
    }
}

pub use crate::text::{cut, cut_bytes};

/// One HTTP request to a vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

impl Request {
    pub fn post_json(url: String, body: &serde_json::Value) -> Request {
        Request {
            method: reqwest::Method::POST,
            url,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

/// A secret the channel needs, or why there is none.
pub fn secret(s: &EnvSecret) -> Result<&Secret, String> {
    s.value
        .as_ref()
        .ok_or_else(|| format!("the environment variable {} is not set", s.var))
}

/// The request `vendor` needs for `notice` (None: the vendor takes no part in it), or
/// why it cannot be made.
pub fn request(vendor: &Vendor, notice: &Notice, delivery: i64) -> Result<Option<Request>, String> {
    Ok(Some(match vendor {
        Vendor::Slack { url } => {
            Request::post_json(secret(url)?.expose().into(), &slack::body(notice))
        }
        Vendor::Teams { url } => {
            Request::post_json(secret(url)?.expose().into(), &teams::body(notice))
        }
        Vendor::Mattermost { url } => {
            Request::post_json(secret(url)?.expose().into(), &mattermost::body(notice))
        }
        Vendor::Discord { url } => {
            Request::post_json(secret(url)?.expose().into(), &discord::body(notice))
        }
        Vendor::Telegram {
            api,
            token,
            chat_id,
        } => telegram::request(api, secret(token)?, chat_id, notice),
        Vendor::Ntfy {
            server,
            topic,
            token,
        } => {
            let token = match token {
                Some(t) => Some(secret(t)?),
                None => None,
            };
            ntfy::request(server, topic, token, notice)
        }
        Vendor::Matrix {
            homeserver,
            room,
            token,
        } => matrix::request(homeserver, room, secret(token)?, notice, delivery),
        Vendor::PagerDuty { url, routing_key } => {
            match pagerduty::body(secret(routing_key)?, notice) {
                Some(b) => Request::post_json(url.to_string(), &b),
                None => return Ok(None),
            }
        }
        Vendor::Opsgenie { url, api_key } => {
            match opsgenie::request(url, secret(api_key)?, notice) {
                Some(r) => r,
                None => return Ok(None),
            }
        }
        Vendor::Webhook {
            url,
            body,
            content_type,
            signing,
        } => {
            let url = match url {
                Ok(u) => u.to_string(),
                Err(e) => secret(e)?.expose().to_string(),
            };
            let key = match signing {
                Some(s) => Some(secret(s)?),
                None => None,
            };
            custom::request(url, body, content_type, key, notice, delivery)?
        }
    }))
}

/// Whether a channel of `kind` takes part in `action` at all: pagers take what opens,
/// acknowledges or closes an alert, never a flapping notice or an ETA.
fn takes(kind: &str, action: &Action) -> bool {
    let pager = matches!(kind, "pagerduty" | "opsgenie");
    !(pager
        && matches!(
            action,
            Action::EtaSet { .. }
                | Action::MailStaff {
                    kind: StaffMailKind::Flapping,
                    ..
                }
        ))
}

/// One channel message a dry run kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub decision: Option<i64>,
    /// `slack:ops`.
    pub channel: String,
    pub event: String,
    pub title: String,
}

/// Channel messages a dry run kept, in order.
#[derive(Debug, Default)]
pub struct Posted(std::sync::Mutex<Vec<Kept>>);

impl Posted {
    pub fn all(&self) -> Vec<Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Posts to the chat and paging channels.
pub struct Channels {
    pub store: SharedStore,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub signer: Arc<Signer>,
    pub http: reqwest::Client,
    /// A dry run (a drill): each message is built as it would be sent, and kept here.
    pub record: Option<Arc<Posted>>,
}

/// Every configured channel's secrets must be in the environment: checked at start-up.
pub fn check_secrets(config: &Config) -> Result<(), String> {
    for c in config.channels.values() {
        for s in c.vendor.secrets() {
            if s.value.is_none() {
                return Err(format!(
                    "channel {}: set the environment variable {} (named in channels.{}.{})",
                    c.target(),
                    s.var,
                    c.name,
                    c.vendor.kind()
                ));
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Notifier for Channels {
    fn channel(&self) -> Channel {
        Channel::Chat
    }

    fn targets(&self, decision: &OutboxItem) -> Vec<String> {
        let told = match &decision.action {
            Action::MailStaff { to, .. } => to,
            Action::Resolve { staff, .. }
            | Action::Acknowledged { staff, .. }
            | Action::EtaSet { staff, .. } => staff,
            _ => return Vec::new(),
        };
        channels(told)
            .into_iter()
            .filter(|t| match Target::parse(t) {
                Target::Channel { kind, .. } => takes(kind, &decision.action),
                _ => false,
            })
            .collect()
    }

    fn backoff(&self) -> Backoff {
        Backoff::QUICK
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        let Some(decision) = &d.decision else {
            return Outcome::Failed("the delivery has no decision".into());
        };
        let config = self.config.get();
        let Target::Channel { kind, name } = Target::parse(&d.target) else {
            return Outcome::Failed(format!("`{}` is not a channel", d.target));
        };
        let Some(channel) = config
            .channels
            .get(name)
            .filter(|c| c.vendor.kind() == kind)
        else {
            return Outcome::Failed(format!("channel {} is no longer configured", d.target));
        };
        let incident = match decision.incident {
            Some(id) => match self.store.lock().incident(id) {
                Ok(Some(i)) => Some(i),
                // The incident is gone from the store: nothing left to tell.
                Ok(None) => return Outcome::Done,
                Err(e) => return Outcome::Retry(format!("cannot read the incident: {e}")),
            },
            None => None,
        };
        let Some(notice) = self.notice(&config, channel, decision, incident.as_ref()) else {
            return Outcome::Done;
        };
        let outcome = match request(&channel.vendor, &notice, d.id) {
            Ok(None) => return Outcome::Done,
            Ok(Some(req)) => self.send(d, &notice, req).await,
            Err(e) => Outcome::Retry(e),
        };
        let kind = channel.vendor.kind();
        match &outcome {
            Outcome::Done => {
                self.metrics.channel_delivery(kind, "sent");
                tracing::info!(channel = %d.target, event = notice.event, delivery = d.id, "channel message delivered");
            }
            Outcome::Retry(e) | Outcome::RetryAfter(e, _) => {
                self.metrics.channel_delivery(kind, "retried");
                let wait = match &outcome {
                    Outcome::RetryAfter(_, w) => *w,
                    _ => self.backoff().after(d.attempts),
                };
                tracing::warn!(channel = %d.target, event = notice.event, delivery = d.id, error = %e, retry_in = ?wait, "channel message not delivered; will retry");
            }
            Outcome::Failed(e) => {
                self.metrics.channel_delivery(kind, "failed");
                tracing::error!(channel = %d.target, event = notice.event, delivery = d.id, error = %e, "channel message refused; not retried");
            }
        }
        outcome
    }
}

impl Channels {
    async fn send(&self, d: &Delivery, notice: &Notice, req: Request) -> Outcome {
        if let Some(kept) = &self.record {
            kept.0.lock().unwrap_or_else(|e| e.into_inner()).push(Kept {
                decision: d.decision.as_ref().map(|x| x.id),
                channel: d.target.clone(),
                event: notice.event.to_string(),
                title: notice.title.clone(),
            });
            return Outcome::Done;
        }
        let mut r = self
            .http
            .request(req.method, &req.url)
            .timeout(DEADLINE)
            .header(reqwest::header::CONTENT_TYPE, req.content_type);
        for (k, v) in req.headers {
            r = r.header(k, v);
        }
        match r.body(req.body).send().await {
            Err(e) => Outcome::Retry(format!("no answer: {}", transport(e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.text().await.unwrap_or_default();
                answer(status, &headers, &body, self.clock.now())
            }
        }
    }

    /// The notice `decision` makes for `channel`; None when it tells the channel nothing.
    fn notice(
        &self,
        config: &Config,
        channel: &ChatChannel,
        decision: &OutboxItem,
        incident: Option<&IncidentRecord>,
    ) -> Option<Notice> {
        let context = decision.context.clone().unwrap_or_default();
        let zone = config.staff_timezone.as_str();
        let when = |t: SystemTime| crate::text::time::local(t, zone);
        let name = if context.service_name.is_empty() {
            decision.service.clone()
        } else {
            context.service_name.clone()
        };
        let mut n = Notice {
            event: "",
            severity: Severity::Critical,
            service: decision.service.clone(),
            service_name: name.clone(),
            incident: decision.incident,
            title: String::new(),
            lines: Vec::new(),
            reasons: Vec::new(),
            ack_url: None,
            eta_url: None,
            at: decision.decided,
            key: match decision.incident {
                Some(id) => format!("tocsin-incident-{id}"),
                None => format!("tocsin-{}", decision.service),
            },
            pager: None,
            by: None,
        };
        let now = self.clock.now();
        let link = |inc: &IncidentRecord, action| {
            let l = Link {
                incident: inc.id,
                action,
                expires: expiry(now),
                recipient: channel.target(),
                group: Vec::new(),
            };
            self.signer.url(&config.public_url, &l)
        };
        match (&decision.action, incident) {
            (Action::MailStaff { kind, .. }, None) => {
                // The monitor's own trouble, or a flapping service with no incident.
                let mail = super::staff::render_notice(
                    *kind,
                    (!context.service_name.is_empty()).then_some(context.service_name.as_str()),
                    &context.canaries,
                    Vec::new(),
                    decision.decided,
                );
                n.event = match kind {
                    StaffMailKind::MonitorDown => "monitor_down",
                    StaffMailKind::MonitorFault => "monitor_fault",
                    StaffMailKind::TaskRestarted => "task_restarted",
                    StaffMailKind::Locations => "locations",
                    _ => "flapping",
                };
                n.severity = match kind {
                    StaffMailKind::MonitorDown => Severity::Critical,
                    _ => Severity::Warning,
                };
                n.pager =
                    matches!(kind, StaffMailKind::MonitorDown).then_some(PagerAction::Trigger);
                n.key = format!("tocsin-{}", n.event);
                n.title = mail.subject.trim_start_matches("[tocsin] ").to_string();
                n.lines = mail
                    .text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
            }
            (Action::MailStaff { kind, level, .. }, Some(inc)) => {
                let age = fmt_dur(Duration::from_secs(
                    now.duration_since(inc.started)
                        .unwrap_or_default()
                        .as_secs(),
                ));
                (n.event, n.title) = match kind {
                    StaffMailKind::Opened => ("opened", format!("{name} is DOWN")),
                    StaffMailKind::Escalated => (
                        "escalated",
                        format!("{name} is DOWN, unacknowledged (escalation level {level})"),
                    ),
                    StaffMailKind::Reminder => (
                        "reminder",
                        format!("Reminder: {name} is still DOWN, unacknowledged for {age}"),
                    ),
                    _ => ("flapping", format!("{name} is flapping")),
                };
                if matches!(kind, StaffMailKind::Flapping) {
                    n.severity = Severity::Warning;
                    n.lines.push(format!("{name} ({}) changes state too often; tocsin holds it in its current state until it settles.", inc.service));
                } else {
                    n.pager = Some(PagerAction::Trigger);
                    n.lines
                        .push(format!("Down since {} ({age} ago).", when(inc.started)));
                    if let Some(first) = inc.timeline.iter().find(|e| e.kind() == "opened") {
                        n.reasons = first.event.failing();
                    }
                    for (_, line) in inc.also_affected() {
                        n.lines.push(format!("Also affected: {line}"));
                    }
                    for line in &context.oncall {
                        n.lines.push(format!("Paged: {line}"));
                    }
                    if let Some(by) = &inc.acked_by {
                        n.lines.push(format!("Acknowledged by {by}."));
                    } else {
                        n.ack_url = Some(link(inc, LinkAction::Ack));
                    }
                    n.eta_url = Some(link(inc, LinkAction::Eta));
                    if let Some(eta) = inc.eta {
                        n.lines.push(format!("Expected recovery: {}.", when(eta)));
                    }
                    if inc.customer_phase {
                        n.lines.push(
                            "Customers are being told (placeholder, mail, autoresponder, hotline)."
                                .into(),
                        );
                    } else {
                        n.lines.push(format!(
                            "Customers will be told at {} unless it recovers first.",
                            when(inc.started + context.customer_threshold)
                        ));
                    }
                }
            }
            (Action::Acknowledged { by, .. }, Some(inc)) => {
                n.event = "acknowledged";
                n.severity = Severity::Info;
                n.pager = Some(PagerAction::Acknowledge);
                n.by = Some(by.clone());
                n.title = format!("{name}: acknowledged by {by}");
                n.lines.push(format!(
                    "Escalation stops. Down since {}.",
                    when(inc.started)
                ));
                n.eta_url = Some(link(inc, LinkAction::Eta));
            }
            (Action::EtaSet { eta, by, .. }, Some(_)) => {
                n.event = "eta";
                n.severity = Severity::Info;
                n.by = Some(by.clone());
                n.title = format!("{name}: recovery expected at {}", when(*eta));
                n.lines.push(format!("Set by {by}."));
            }
            (
                Action::Resolve {
                    started, ended, by, ..
                },
                _,
            ) => {
                n.event = "resolved";
                n.severity = Severity::Resolved;
                n.pager = Some(PagerAction::Resolve);
                n.by = by.clone();
                let lasted = fmt_dur(Duration::from_secs(
                    ended.duration_since(*started).unwrap_or_default().as_secs(),
                ));
                n.title = format!("{name} is UP again after {lasted}");
                n.lines.push(match by {
                    Some(b) => format!("Resolved by {b} at {}.", when(*ended)),
                    None => format!("Recovered at {}.", when(*ended)),
                });
            }
            _ => return None,
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notice far over every vendor's limits: a long name, thousands of reasons, and
    /// text that needs escaping.
    fn huge() -> Notice {
        Notice {
            event: "opened",
            severity: Severity::Critical,
            service: "shop".into(),
            service_name: "Sklep internetowy <&> ".repeat(40),
            incident: Some(7),
            title: format!("{} is DOWN", "Sklep internetowy <&> ".repeat(40)),
            lines: (0..500)
                .map(|i| format!("line {i}: zażółć gęślą jaźń <b>&</b> @everyone"))
                .collect(),
            reasons: (0..500)
                .map(|i| format!("probe-{i}: connection refused"))
                .collect(),
            ack_url: Some(format!(
                "https://status.example.com/act?{}",
                "x".repeat(200)
            )),
            eta_url: Some("https://status.example.com/act?eta".into()),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            key: "tocsin-incident-7".into(),
            pager: Some(PagerAction::Trigger),
            by: None,
        }
    }

    fn chars(v: &serde_json::Value) -> usize {
        v.as_str().map(|s| s.chars().count()).unwrap_or(0)
    }

    #[test]
    fn every_vendor_limit_holds_for_a_notice_far_over_them() {
        let n = huge();
        let secret = Secret::new("k");
        let slack = slack::body(&n);
        let blocks = slack["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert!(chars(&blocks[0]["text"]["text"]) <= slack::HEADER);
        assert!(chars(&blocks[1]["text"]["text"]) <= slack::SECTION);
        assert!(
            !blocks[1]["text"]["text"].as_str().unwrap().contains('<'),
            "mrkdwn escaped"
        );
        let discord = discord::body(&n);
        assert!(chars(&discord["content"]) <= discord::CONTENT);
        assert!(chars(&discord["embeds"][0]["title"]) <= discord::TITLE);
        assert!(chars(&discord["embeds"][0]["description"]) <= discord::DESCRIPTION);
        assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
        let teams = teams::body(&n).to_string();
        assert!(teams.len() < 28 * 1024, "{}", teams.len());
        assert!(chars(&mattermost::body(&n)["text"]) <= mattermost::TEXT);
        let api = url::Url::parse("https://api.telegram.org").unwrap();
        let tg: serde_json::Value =
            serde_json::from_str(&telegram::request(&api, &secret, "-1", &n).body).unwrap();
        let text = tg["text"].as_str().unwrap();
        // Telegram counts the text as parsed: tags removed, entities as one character.
        let bare = regex::Regex::new(r"<[^>]+>").unwrap().replace_all(text, "");
        let bare = regex::Regex::new(r"&(amp|lt|gt|quot|#39);")
            .unwrap()
            .replace_all(&bare, "&");
        assert!(
            bare.chars().count() <= telegram::TEXT,
            "{}",
            bare.chars().count()
        );
        assert!(
            !text.contains("<b>&</b>"),
            "the text's own tags are escaped"
        );
        let server = url::Url::parse("https://ntfy.sh").unwrap();
        let ntfy: serde_json::Value =
            serde_json::from_str(&ntfy::request(&server, "t", None, &n).body).unwrap();
        assert!(ntfy["message"].as_str().unwrap().len() <= ntfy::MESSAGE);
        let pd = pagerduty::body(&secret, &n).unwrap();
        assert!(chars(&pd["payload"]["summary"]) <= pagerduty::SUMMARY);
        assert_eq!(pd["dedup_key"], "tocsin-incident-7");
        let og_api = url::Url::parse("https://api.opsgenie.com").unwrap();
        let og: serde_json::Value =
            serde_json::from_str(&opsgenie::request(&og_api, &secret, &n).unwrap().body).unwrap();
        assert!(chars(&og["message"]) <= opsgenie::MESSAGE);
        assert!(chars(&og["description"]) <= opsgenie::DESCRIPTION);
        let hs = url::Url::parse("https://matrix.example.org").unwrap();
        let mx = matrix::request(&hs, "!r:example.org", &secret, &n, 3);
        assert!(
            mx.url
                .ends_with("/rooms/%21r%3Aexample.org/send/m.room.message/tocsin-3"),
            "{}",
            mx.url
        );
        let body: serde_json::Value = serde_json::from_str(&mx.body).unwrap();
        assert!(
            !body["formatted_body"]
                .as_str()
                .unwrap()
                .contains("<b>&</b>")
        );
    }

    #[test]
    fn pagers_take_only_what_opens_acknowledges_or_closes_an_alert() {
        let secret = Secret::new("k");
        let mut n = huge();
        n.pager = None;
        assert!(pagerduty::body(&secret, &n).is_none());
        let api = url::Url::parse("https://api.opsgenie.com").unwrap();
        assert!(opsgenie::request(&api, &secret, &n).is_none());
        n.pager = Some(PagerAction::Resolve);
        let pd = pagerduty::body(&secret, &n).unwrap();
        assert_eq!(
            pd,
            serde_json::json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "tocsin-incident-7"})
        );
        let close = opsgenie::request(&api, &secret, &n).unwrap();
        assert_eq!(
            close.url,
            "https://api.opsgenie.com/v2/alerts/tocsin-incident-7/close?identifierType=alias"
        );
        assert!(
            close
                .headers
                .contains(&("Authorization", "GenieKey k".to_string()))
        );
        // An ETA or a flapping notice reaches chat only.
        let eta = Action::EtaSet {
            id: 1,
            eta: n.at,
            by: "a".into(),
            staff: vec![],
        };
        assert!(!takes("pagerduty", &eta) && !takes("opsgenie", &eta) && takes("slack", &eta));
    }
}
