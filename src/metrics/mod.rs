//! Prometheus metrics: blackbox_exporter's names for probe results, `tocsin_` for the
//! monitor's own. Label values come only from config names (service id, probe name) and
//! fixed sets (phase, result), never from URLs or error text.

use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Probe;
mod probes;

use probes::ProbeSeries;
pub use probes::render_single;

use crate::config::PerProbe;

use crate::probe::{Outcome, Reason};

pub struct Metrics {
    registry: Registry,
    probes: ProbeSeries,
    lag: Histogram,
    reload_ok: IntGauge,
    reload_time: Gauge,
    mail_sent: IntCounterVec,
    mail_failed: IntCounterVec,
    outbox_pending: IntGauge,
    store_up: IntGauge,
    leader: IntGauge,
    fencing_token: IntGauge,
    leader_changes: IntCounter,
    location_up: IntGaugeVec,
    votes_failing: IntGaugeVec,
    votes_written: IntCounter,
    service_state: IntGaugeVec,
    incident_open: IntGaugeVec,
    incident_customer: IntGaugeVec,
    incident_duration: GaugeVec,
    escalation_level: IntGaugeVec,
    campaign_recipients: IntGaugeVec,
    campaign_send: Histogram,
    campaign_refused: IntCounter,
    pages_published: IntGauge,
    webhook_failures: IntCounter,
    autoresponder_active: IntGauge,
    autoresponder_failures: IntCounter,
    hotline_active: IntGauge,
    hotline_hook_failures: IntCounter,
    webhook_deliveries: IntCounterVec,
    webhook_pending: IntGauge,
    channel_deliveries: IntCounterVec,
    compensation_missing: IntCounter,
    task_restarts: IntCounterVec,
    heartbeat_pings: IntCounterVec,
    monitor_fault: IntGaugeVec,
    monitor_faults: IntCounterVec,
}

/// One service's incident figures, as the engine sees them.
pub struct ServiceFigures<'a> {
    pub service: &'a str,
    pub status: crate::incident::Status,
    pub open: bool,
    pub customer_phase: bool,
    pub duration: Duration,
    /// Escalation levels mailed so far (0 when none).
    pub levels_sent: usize,
}

/// Creating a metric fails only for an invalid name or a duplicate registration, both
/// programming errors fixed here once and for all; a test builds this registry.
fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    m: Result<T, prometheus::Error>,
) -> T {
    let m = m.expect("metric definition is valid");
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let lag = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tocsin_scheduler_lag_seconds",
                    "Delay between a probe's scheduled start and its actual start.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            ),
        );
        let reload_ok = reg(
            &r,
            IntGauge::new(
                "tocsin_config_last_reload_successful",
                "Whether the last configuration load succeeded (1) or was refused (0).",
            ),
        );
        let reload_time = reg(
            &r,
            Gauge::new(
                "tocsin_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful configuration load.",
            ),
        );
        let mail_sent = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_mail_sent_total",
                    "Mails accepted by the transport, by kind.",
                ),
                &["kind"],
            ),
        );
        let mail_failed = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_mail_failed_total",
                    "Mail attempts that failed, by kind.",
                ),
                &["kind"],
            ),
        );
        let outbox_pending = reg(
            &r,
            IntGauge::new(
                "tocsin_outbox_pending",
                "Decided actions not yet carried out.",
            ),
        );
        let store_up = reg(
            &r,
            IntGauge::new(
                "tocsin_store_up",
                "1 while the store (SQLite or PostgreSQL) answers, 0 while it does not: nothing is decided or sent that cannot be recorded.",
            ),
        );
        let leader = reg(
            &r,
            IntGauge::new(
                "tocsin_leader",
                "1 while this instance leads (decides and sends); 0 on a standby of a cluster.",
            ),
        );
        let fencing_token = reg(
            &r,
            IntGauge::new(
                "tocsin_fencing_token",
                "The cluster's lease token as this instance last saw it: it grows by one at every change of leader.",
            ),
        );
        let leader_changes = reg(
            &r,
            IntCounter::new(
                "tocsin_leader_changes_total",
                "Changes of the cluster's leader this instance saw (a new lease token).",
            ),
        );
        let location_up = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_location_up",
                    "On the leader of a cluster that votes: 1 while a location's results count, 0 while it is absent (no recent results) or abstains (its canaries fail).",
                ),
                &["location"],
            ),
        );
        let votes_failing = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_probe_votes_failing",
                    "On the leader of a cluster that votes: the locations whose latest counted result of a probe fails.",
                ),
                &["service", "probe"],
            ),
        );
        let votes_written = reg(
            &r,
            IntCounter::new(
                "tocsin_votes_written_total",
                "Probe results this instance wrote to the store as its location's votes.",
            ),
        );
        let campaign_recipients = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_campaign_recipients",
                    "Recipients of customer campaigns by state (pending, sent, failed, cancelled).",
                ),
                &["state"],
            ),
        );
        let campaign_send = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tocsin_campaign_send_seconds",
                    "Time to hand one campaign message to the mail server.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
            ),
        );
        let task_restarts = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_task_restarts_total",
                    "Tasks of the running tocsin restarted after a panic, by task.",
                ),
                &["task"],
            ),
        );
        let campaign_refused = reg(
            &r,
            IntCounter::new(
                "tocsin_campaign_refused_total",
                "Campaigns refused (audience larger than mail.max_campaign_size).",
            ),
        );
        let pages_published = reg(
            &r,
            IntGauge::new(
                "tocsin_placeholder_pages",
                "Placeholder pages standing now.",
            ),
        );
        let webhook_failures = reg(
            &r,
            IntCounter::new(
                "tocsin_webhook_failures_total",
                "Page webhook calls that failed (retried).",
            ),
        );
        for state in ["pending", "sent", "failed", "cancelled"] {
            campaign_recipients.with_label_values(&[state]).set(0);
        }
        let svc = &["service"];
        let service_state = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_service_state",
                    "Service state: 0 up, 1 maintenance, 2 suspect, 3 recovering, 4 down, 5 affected (down with a service it depends on, attached to that incident).",
                ),
                svc,
            ),
        );
        let incident_open = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_incident_open",
                    "1 while the service has an open incident.",
                ),
                svc,
            ),
        );
        let incident_customer = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_incident_customer_phase",
                    "1 while the open incident is in the customer phase.",
                ),
                svc,
            ),
        );
        let incident_duration = reg(
            &r,
            GaugeVec::new(
                Opts::new(
                    "tocsin_incident_duration_seconds",
                    "Age of the open incident (0 when none).",
                ),
                svc,
            ),
        );
        let escalation_level = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_escalation_level",
                    "Escalation levels mailed for the open incident (0 when none).",
                ),
                svc,
            ),
        );
        let build = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_build_info",
                    "Build information; the value is always 1.",
                ),
                &["version"],
            ),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let autoresponder_active = reg(
            &r,
            IntGauge::new(
                "tocsin_autoresponder_active",
                "Mailboxes whose active Sieve script is tocsin's outage autoresponder.",
            ),
        );
        let autoresponder_failures = reg(
            &r,
            IntCounter::new(
                "tocsin_autoresponder_failures_total",
                "Failed attempts to install, update or remove the autoresponder (each is retried).",
            ),
        );
        let hotline_active = reg(
            &r,
            IntGauge::new(
                "tocsin_hotline_active",
                "1 while the hotline outage announcement stands.",
            ),
        );
        let webhook_deliveries = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_webhook_deliveries_total",
                    "Incident webhook attempts by result: sent, retried (408, 429, 5xx, network), failed (refused for good).",
                ),
                &["result"],
            ),
        );
        for result in ["sent", "retried", "failed"] {
            webhook_deliveries.with_label_values(&[result]).inc_by(0);
        }
        let webhook_pending = reg(
            &r,
            IntGauge::new(
                "tocsin_webhook_pending",
                "Incident webhook deliveries not yet accepted by their receiver.",
            ),
        );
        let channel_deliveries = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_channel_deliveries_total",
                    "Chat and paging channel attempts by kind (slack, pagerduty, ...) and result: sent, retried (408, 429, 5xx, network), failed (refused for good).",
                ),
                &["kind", "result"],
            ),
        );
        for kind in crate::oncall::CHANNEL_KINDS {
            for result in ["sent", "retried", "failed"] {
                channel_deliveries
                    .with_label_values(&[kind, result])
                    .inc_by(0);
            }
        }
        let compensation_missing = reg(
            &r,
            IntCounter::new(
                "tocsin_compensation_codes_missing_total",
                "Recovery mails that earned a compensation code and got none: the pool ran out.",
            ),
        );
        let hotline_hook_failures = reg(
            &r,
            IntCounter::new(
                "tocsin_hotline_hook_failures_total",
                "Hotline hook runs that failed or missed their deadline (each is retried).",
            ),
        );
        let heartbeat_pings = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_heartbeat_pings_total",
                    "Heartbeat pings by result: accepted, unknown_token, rate_limited, too_large, bad_request, failed.",
                ),
                &["result"],
            ),
        );
        for result in [
            "accepted",
            "unknown_token",
            "rate_limited",
            "too_large",
            "bad_request",
            "failed",
        ] {
            heartbeat_pings.with_label_values(&[result]).inc_by(0);
        }
        let monitor_fault = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tocsin_monitor_fault",
                    "1 while probes fail for want of the monitor's own resources (cause: emfile, enfile, enobufs, enomem, eaddrnotavail, enospc) or because its DNS resolver answers nothing (cause: resolver); such failures count toward no incident.",
                ),
                &["cause"],
            ),
        );
        let monitor_faults = reg(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tocsin_monitor_faults_total",
                    "Probe runs that failed for want of the monitor's own resources, by cause.",
                ),
                &["cause"],
            ),
        );
        for cause in Self::FAULT_CAUSES {
            monitor_fault.with_label_values(&[cause]).set(0);
            monitor_faults.with_label_values(&[cause]).inc_by(0);
        }
        for kind in Self::MAIL_KINDS {
            mail_sent.with_label_values(&[kind]).inc_by(0);
            mail_failed.with_label_values(&[kind]).inc_by(0);
        }
        for state in ["pending", "sent", "failed", "cancelled"] {
            campaign_recipients.with_label_values(&[state]).set(0);
        }
        Metrics {
            probes: ProbeSeries::new(),
            registry: r,
            lag,
            reload_ok,
            reload_time,
            mail_sent,
            mail_failed,
            outbox_pending,
            store_up,
            leader,
            fencing_token,
            leader_changes,
            location_up,
            votes_failing,
            votes_written,
            service_state,
            incident_open,
            incident_customer,
            incident_duration,
            escalation_level,
            campaign_recipients,
            campaign_send,
            campaign_refused,
            pages_published,
            webhook_failures,
            autoresponder_active,
            autoresponder_failures,
            hotline_active,
            hotline_hook_failures,
            webhook_deliveries,
            webhook_pending,
            channel_deliveries,
            compensation_missing,
            task_restarts,
            heartbeat_pings,
            monitor_fault,
            monitor_faults,
        }
    }

    /// One ping at `/ping/...`, by result.
    pub fn heartbeat_ping(&self, result: &str) {
        self.heartbeat_pings.with_label_values(&[result]).inc();
    }

    pub fn compensation_missing(&self, n: u64) {
        self.compensation_missing.inc_by(n);
    }

    /// One incident webhook attempt: `sent`, `retried` or `failed`.
    /// One attempt of a chat or paging channel of `kind` (a bounded set).
    pub fn channel_delivery(&self, kind: &str, result: &str) {
        self.channel_deliveries
            .with_label_values(&[kind, result])
            .inc();
    }

    pub fn webhook_delivery(&self, result: &str) {
        self.webhook_deliveries.with_label_values(&[result]).inc();
    }

    pub fn webhook_pending(&self, n: u64) {
        self.webhook_pending.set(n as i64);
    }

    pub fn autoresponder_active(&self, n: usize) {
        self.autoresponder_active.set(n as i64);
    }

    pub fn autoresponder_failed(&self) {
        self.autoresponder_failures.inc();
    }

    pub fn hotline_active(&self, on: bool) {
        self.hotline_active.set(i64::from(on));
    }

    pub fn hotline_hook_failed(&self) {
        self.hotline_hook_failures.inc();
    }

    pub fn campaign_recipients(&self, c: &crate::store::Counts) {
        for (state, n) in [
            ("pending", c.pending),
            ("sent", c.sent),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            self.campaign_recipients
                .with_label_values(&[state])
                .set(n as i64);
        }
    }

    pub fn campaign_send(&self, d: Duration) {
        self.campaign_send.observe(d.as_secs_f64());
    }

    /// A task panicked and was started again.
    pub fn task_started(&self, task: &str) {
        self.task_restarts.with_label_values(&[task]).inc_by(0);
    }

    pub fn task_restarted(&self, task: &str) {
        self.task_restarts.with_label_values(&[task]).inc();
    }

    pub fn campaign_refused(&self) {
        self.campaign_refused.inc();
    }

    pub fn placeholder_pages(&self, n: usize) {
        self.pages_published.set(n as i64);
    }

    pub fn webhook_failed(&self) {
        self.webhook_failures.inc();
    }

    pub fn service(&self, f: &ServiceFigures) {
        use crate::incident::Status::*;
        let code = match f.status {
            Up => 0,
            Maintenance => 1,
            Suspect => 2,
            Recovering => 3,
            Down => 4,
            Affected => 5,
        };
        let l = [f.service];
        self.service_state.with_label_values(&l).set(code);
        self.incident_open
            .with_label_values(&l)
            .set(i64::from(f.open));
        self.incident_customer
            .with_label_values(&l)
            .set(i64::from(f.customer_phase));
        self.incident_duration
            .with_label_values(&l)
            .set(f.duration.as_secs_f64());
        self.escalation_level
            .with_label_values(&l)
            .set(f.levels_sent as i64);
    }

    /// The mail kinds, registered at zero so dashboards see every series from the start.
    /// Campaign mails count as `campaign_<kind>`, one per recipient.
    pub const MAIL_KINDS: [&'static str; 13] = [
        "staff_opened",
        "staff_escalated",
        "staff_flapping",
        "staff_resolved",
        "staff_monitor_down",
        "staff_monitor_fault",
        "staff_task_restarted",
        "staff_compensation",
        "campaign_outage",
        "campaign_update",
        "campaign_recovery",
        "campaign_maintenance",
        "campaign_maintenance_done",
    ];

    pub fn mail_sent(&self, kind: &str) {
        self.mail_sent.with_label_values(&[kind]).inc();
    }

    pub fn mail_failed(&self, kind: &str) {
        self.mail_failed.with_label_values(&[kind]).inc();
    }

    /// Whether this instance leads, and the lease's token it last saw.
    pub fn leadership(&self, leader: bool, token: i64) {
        self.leader.set(leader as i64);
        self.fencing_token.set(token);
    }

    /// A new leader seen.
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// Whether `location`'s results count.
    pub fn location_up(&self, location: &str, up: bool) {
        self.location_up
            .with_label_values(&[location])
            .set(up as i64);
    }

    /// The locations whose latest counted result of a probe fails.
    pub fn votes_failing(&self, service: &str, probe: &str, n: usize) {
        self.votes_failing
            .with_label_values(&[service, probe])
            .set(n as i64);
    }

    pub fn votes_written(&self, n: usize) {
        self.votes_written.inc_by(n as u64);
    }

    pub fn store_up(&self, up: bool) {
        self.store_up.set(up as i64);
    }

    pub fn outbox_pending(&self, n: u64) {
        self.outbox_pending.set(n as i64);
    }

    /// The causes of a monitor fault, by errno name.
    pub const FAULT_CAUSES: [&'static str; 7] = [
        "emfile",
        "enfile",
        "enobufs",
        "enomem",
        "eaddrnotavail",
        "enospc",
        "resolver",
    ];

    /// Records one outcome of a configured probe. A monitor fault leaves the probe's
    /// series as they were (it says nothing of the target) and shows as a fault.
    pub fn observe(&self, probe: &Probe, o: &Outcome) {
        let (service, name) = (probe.service.as_str(), probe.name.as_str());
        if let Some(Reason::MonitorFault { cause, .. }) = &o.reason {
            self.monitor_fault.with_label_values(&[cause]).set(1);
            self.monitor_faults.with_label_values(&[cause]).inc();
            return;
        }
        if o.success {
            // Resources were there for this run: whatever ran out is back.
            for cause in Self::FAULT_CAUSES {
                self.monitor_fault.with_label_values(&[cause]).set(0);
            }
        }
        self.probes.observe(service, name, &probe.check, o);
    }

    /// Drops every series of a probe that no longer exists (after a reload).
    pub fn forget(&self, service: &str, probe: &str) {
        self.probes.forget(service, probe);
    }

    pub fn scheduler_lag(&self, lag: Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    pub fn skipped(&self, probe: &Probe, runs: u64) {
        self.probes.skipped(&probe.service, &probe.name, runs);
    }

    /// Starts counting skips for a probe at zero, so the series exists before any skip.
    pub fn register_probe(&self, probe: &Probe) {
        self.probes.register(&probe.service, &probe.name);
    }

    pub fn config_loaded(&self, ok: bool, now: SystemTime) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            let t = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.reload_time.set(t);
        }
    }

    /// The Prometheus text exposition of every metric, in one string.
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.render_chunks(PerProbe::All, 1 << 20, &mut |piece| {
            text.push_str(&piece);
            true
        });
        text
    }

    /// The exposition in pieces of about `chunk` bytes, the per-probe series as
    /// `per_probe` says: a scrape of 100,000 probes is streamed, never held whole.
    /// `emit` returning false stops it.
    pub fn render_chunks(
        &self,
        per_probe: PerProbe,
        chunk: usize,
        emit: &mut dyn FnMut(String) -> bool,
    ) {
        if emit(encode(&self.registry)) {
            self.probes.render(per_probe, chunk, emit);
        }
    }
}

fn encode(r: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&r.gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Check, Details, HttpCheck, Outcome, Phase};
    use std::time::Duration;

    fn probe() -> Probe {
        Probe {
            service: "shop".into(),
            name: "home".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            canary: false,
            check: Check::Http(HttpCheck::get("https://shop.test/".parse().unwrap())),
            votes: None,
        }
    }

    #[test]
    fn an_outcome_becomes_blackbox_series_and_forget_removes_them() {
        let m = Metrics::new();
        let o = Outcome {
            at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(250),
            success: false,
            reason: Some(Reason::Status {
                got: 503,
                want: "200-399".into(),
            }),
            phases: vec![
                (Phase::Connect, Duration::from_millis(5)),
                (Phase::Tls, Duration::from_millis(20)),
            ],
            details: Details {
                http_status: Some(503),
                cert_not_after: Some(1_900_000_000),
                ..Default::default()
            },
        };
        m.observe(&probe(), &o);
        let text = m.render();
        for line in [
            "probe_success{probe=\"home\",service=\"shop\"} 0",
            "probe_duration_seconds{probe=\"home\",service=\"shop\"} 0.25",
            "probe_http_status_code{probe=\"home\",service=\"shop\"} 503",
            "probe_http_duration_seconds{phase=\"tls\",probe=\"home\",service=\"shop\"} 0.02",
            "probe_http_duration_seconds{phase=\"transfer\",probe=\"home\",service=\"shop\"} 0",
            "probe_ssl_earliest_cert_expiry{probe=\"home\",service=\"shop\"} 1900000000",
            "tocsin_probe_runs_total{probe=\"home\",result=\"failure\",service=\"shop\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        m.forget("shop", "home");
        assert!(!m.render().contains("probe=\"home\""));
    }

    /// `/probe` writes its text by hand: byte for byte what a prometheus registry of the
    /// same samples encodes, for each kind of probe, passing and failing.
    #[test]
    fn a_single_probe_renders_as_the_registry_would() {
        let by_registry = |check: &Check, o: &Outcome| {
            let r = Registry::new();
            let mut families: std::collections::HashMap<&str, GaugeVec> = Default::default();
            for x in probes::samples(check, o) {
                let labels: &[&str] = match &x.label {
                    None => &[],
                    Some((k, _)) => &[k],
                };
                let fam = families
                    .entry(x.name)
                    .or_insert_with(|| reg(&r, GaugeVec::new(Opts::new(x.name, x.help), labels)));
                match &x.label {
                    None => fam.with_label_values::<&str>(&[]).set(x.value),
                    Some((_, v)) => fam.with_label_values(&[v.as_ref()]).set(x.value),
                }
            }
            encode(&r)
        };
        let mut http = outcome(false);
        http.phases = vec![
            (Phase::Resolve, Duration::from_micros(1234)),
            (Phase::Connect, Duration::from_millis(5)),
            (Phase::Tls, Duration::from_millis(20)),
        ];
        http.details = Details {
            http_status: Some(503),
            cert_not_after: Some(1_900_000_000),
            http_version: Some("HTTP/1.1".into()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(
            "services:\n  - id: s\n    probes:\n      - { name: h, http: { url: \"https://shop.test/\" } }\n      - { name: t, tcp: { address: \"127.0.0.1:9\", tls: {} } }\n      - { name: d, dns: { name: example.com, type: MX } }\n",
            &dir.path().join("probes.yaml"),
        )
        .unwrap();
        let checks: Vec<&Check> = config.services[0].probes.iter().map(|p| &p.check).collect();
        assert_eq!(checks.len(), 3);
        for check in checks {
            for o in [outcome(true), outcome(false), http.clone()] {
                let text = render_single(check, &o);
                assert_eq!(text, by_registry(check, &o));
                assert!(text.contains("# TYPE probe_success gauge\nprobe_success "));
            }
        }
    }

    fn outcome(success: bool) -> Outcome {
        Outcome {
            at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(10),
            success,
            reason: (!success).then_some(Reason::Timeout {
                phase: Phase::Transfer,
            }),
            phases: vec![],
            details: Details::default(),
        }
    }

    fn rendered(m: &Metrics, per_probe: PerProbe) -> String {
        let mut text = String::new();
        // Small pieces, so that a family spans several of them.
        m.render_chunks(per_probe, 64, &mut |piece| {
            text.push_str(&piece);
            true
        });
        text
    }

    #[test]
    fn per_probe_all_failing_or_none() {
        let m = Metrics::new();
        let mut failing = probe();
        failing.name = "checkout".into();
        let mut pending = probe();
        pending.name = "never \"ran\"".into();
        m.register_probe(&probe());
        m.register_probe(&failing);
        m.register_probe(&pending);
        m.observe(&probe(), &outcome(true));
        m.observe(&failing, &outcome(false));
        m.skipped(&failing, 3);

        let all = rendered(&m, PerProbe::All);
        for line in [
            "tocsin_probes{state=\"passing\"} 1",
            "tocsin_probes{state=\"failing\"} 1",
            "tocsin_probes{state=\"pending\"} 1",
            "probe_success{probe=\"home\",service=\"shop\"} 1",
            "probe_success{probe=\"checkout\",service=\"shop\"} 0",
            "tocsin_probe_runs_total{probe=\"checkout\",result=\"timeout\",service=\"shop\"} 1",
            "tocsin_probes_skipped_total{probe=\"checkout\",service=\"shop\"} 3",
            // Registered, never run: its counters exist at zero, escaped.
            "tocsin_probes_skipped_total{probe=\"never \\\"ran\\\"\",service=\"shop\"} 0",
        ] {
            assert!(all.contains(line), "missing {line}\n{all}");
        }
        // One HELP and TYPE per family, however many pieces it spans.
        assert_eq!(all.matches("# TYPE probe_success gauge").count(), 1);
        assert_eq!(
            all.matches("# TYPE tocsin_probe_runs_total counter")
                .count(),
            1
        );
        assert_eq!(all, m.render(), "pieces join to the whole");

        let only_failing = rendered(&m, PerProbe::Failing);
        assert!(only_failing.contains("probe_success{probe=\"checkout\",service=\"shop\"} 0"));
        assert!(!only_failing.contains("probe=\"home\""), "{only_failing}");
        assert!(only_failing.contains("tocsin_probes{state=\"passing\"} 1"));

        let none = rendered(&m, PerProbe::None);
        assert!(!none.contains("probe=\""), "{none}");
        assert!(none.contains("tocsin_probes{state=\"failing\"} 1"));
        assert!(
            none.contains("tocsin_scheduler_lag_seconds"),
            "the monitor's own series stay"
        );

        // A client that leaves stops the rendering at once.
        let mut pieces = 0;
        m.render_chunks(PerProbe::All, 64, &mut |_| {
            pieces += 1;
            false
        });
        assert_eq!(pieces, 1);
    }
}
