//! A probe outcome as blackbox_exporter's series: one list of figures ([`samples`]) read
//! by both `/metrics` (labelled by service and probe, the figures an alert or a
//! dashboard needs) and `/probe` (everything blackbox_exporter reports of one run).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{GaugeVec, Opts, Registry};

use crate::probe::{Check, Outcome, Phase, Reason};

/// Where a figure is shown. `/metrics` keeps a few per probe, because 100,000 probes
/// each with every blackbox figure would cost more memory than the probes themselves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In `/metrics` and `/probe`.
    Both,
    /// In `/probe` only.
    Single,
}

/// One figure of an outcome: a series name, an optional extra label, a value.
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub label: Option<(&'static str, String)>,
    pub value: f64,
    pub scope: Scope,
}

fn s(name: &'static str, help: &'static str, value: f64, scope: Scope) -> Sample {
    Sample {
        name,
        help,
        label: None,
        value,
        scope,
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Every figure of `o`, an outcome of `check`.
pub fn samples(check: &Check, o: &Outcome) -> Vec<Sample> {
    use Scope::*;
    let d = &o.details;
    let mut v = vec![
        s(
            "probe_success",
            "Whether the probe succeeded (1) or failed (0).",
            flag(o.success),
            Both,
        ),
        s(
            "probe_duration_seconds",
            "How long the probe took to complete, in seconds.",
            o.duration.as_secs_f64(),
            Both,
        ),
    ];
    let phases = |v: &mut Vec<Sample>, name, help, list: &[Phase], value: &dyn Fn(Phase) -> f64| {
        for p in list {
            v.push(Sample {
                name,
                help,
                label: Some(("phase", p.as_str().to_string())),
                value: value(*p),
                scope: Both,
            });
        }
    };
    match check {
        Check::Http(_) => {
            v.push(s(
                "probe_http_status_code",
                "HTTP status code of the response (0 when none was received).",
                f64::from(d.http_status.unwrap_or(0)),
                Both,
            ));
            phases(
                &mut v,
                "probe_http_duration_seconds",
                "Duration of the HTTP probe by phase, summed over redirects.",
                &Phase::HTTP,
                &|p| o.phase(p).as_secs_f64(),
            );
            v.push(s(
                "probe_http_redirects",
                "The number of redirects followed.",
                f64::from(d.redirects.unwrap_or(0)),
                Single,
            ));
            v.push(s(
                "probe_http_ssl",
                "Whether the final response came over TLS (1) or not (0).",
                flag(d.http_tls == Some(true)),
                Single,
            ));
            v.push(s(
                "probe_http_version",
                "HTTP version of the final response (0 when none was received).",
                http_version_number(d.http_version.as_deref()),
                Single,
            ));
            v.push(s(
                "probe_http_content_length",
                "Content-Length of the final response (-1 when absent, 0 when no response).",
                match d.http_content_length {
                    Some(Some(n)) => n as f64,
                    Some(None) => -1.0,
                    None => 0.0,
                },
                Single,
            ));
            v.push(s(
                "probe_http_uncompressed_body_length",
                "Bytes of the response body read (at most max_body).",
                d.body_bytes.unwrap_or(0) as f64,
                Single,
            ));
        }
        Check::Dns(_) => {
            v.push(s(
                "probe_dns_answer_rrs",
                "Number of records in the answer section.",
                d.dns_answers.unwrap_or(0) as f64,
                Both,
            ));
            v.push(s(
                "probe_dns_authority_rrs",
                "Number of records in the authority section.",
                d.dns_authority.unwrap_or(0) as f64,
                Single,
            ));
            v.push(s(
                "probe_dns_additional_rrs",
                "Number of records in the additional section (EDNS OPT included).",
                d.dns_additional.unwrap_or(0) as f64,
                Single,
            ));
            v.push(s(
                "probe_dns_query_succeeded",
                "Whether an answer to the query came (1) or not (0), whatever it said.",
                flag(d.dns_rcode.is_some()),
                Single,
            ));
        }
        Check::Icmp(_) => {
            // blackbox's `rtt` is the round trip of the reply, not the time spent waiting.
            let rtt = d.icmp_rtt.map(|r| r.as_secs_f64()).unwrap_or(0.0);
            phases(
                &mut v,
                "probe_icmp_duration_seconds",
                "Duration of the ICMP probe by phase (rtt: the mean round trip of the replies).",
                &[Phase::Resolve, Phase::Setup, Phase::Rtt],
                &|p| {
                    if p == Phase::Rtt {
                        rtt
                    } else {
                        o.phase(p).as_secs_f64()
                    }
                },
            );
            if let Some(h) = d.icmp_hop_limit {
                v.push(s(
                    "probe_icmp_reply_hop_limit",
                    "TTL (IPv4) or hop limit (IPv6) of the last echo reply.",
                    f64::from(h),
                    Both,
                ));
            }
        }
        Check::Grpc(_) => {
            // As blackbox: -1 when no call was made.
            v.push(s(
                "probe_grpc_status_code",
                "gRPC status code of the health call (0 OK, -1 when none was made).",
                f64::from(d.grpc_status_code.unwrap_or(-1)),
                Both,
            ));
            for status in ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] {
                v.push(Sample {
                    name: "probe_grpc_healthcheck_response",
                    help: "The serving status the health service answered (1 for the one it said).",
                    label: Some(("serving_status", status.to_string())),
                    value: flag(d.grpc_serving_status.as_deref() == Some(status)),
                    scope: Single,
                });
            }
            v.push(s(
                "probe_grpc_ssl",
                "Whether the call went over TLS (1) or not (0).",
                flag(d.grpc_tls == Some(true)),
                Single,
            ));
        }
        Check::Tcp(_) | Check::Udp(_) | Check::Heartbeat(_) => {}
    }
    v.push(s(
        "probe_dns_lookup_time_seconds",
        "Time taken to resolve the target's name, in seconds (0 for an address).",
        o.phase(Phase::Resolve).as_secs_f64(),
        if matches!(check, Check::Dns(_)) {
            Both
        } else {
            Single
        },
    ));
    if matches!(check, Check::Http(_) | Check::Tcp(_) | Check::Udp(_)) {
        let by_regex = matches!(
            o.reason,
            Some(
                Reason::BodyLacks { .. }
                    | Reason::BodyContains { .. }
                    | Reason::BodyRegex { .. }
                    | Reason::ReplyMismatch { .. }
                    | Reason::ClosedBeforeReply { .. }
            )
        );
        v.push(s(
            "probe_failed_due_to_regex",
            "Whether the probe failed because the body or reply did not match (1) or not (0).",
            flag(by_regex),
            Single,
        ));
    }
    if let Some(t) = d.heartbeat_last_ping {
        v.push(s(
            "tocsin_heartbeat_last_ping_timestamp_seconds",
            "Unix time of the heartbeat's latest ping (0 before the first).",
            t as f64,
            Both,
        ));
    }
    if let Some(ip) = d.ip_protocol {
        v.push(s(
            "probe_ip_protocol",
            "The IP protocol of the address probed: 4 or 6.",
            f64::from(ip),
            Single,
        ));
    }
    if let Some(h) = d.ip_addr_hash {
        v.push(s(
            "probe_ip_addr_hash",
            "FNV-1a hash of the address probed (it changes when the address does).",
            f64::from(h),
            Single,
        ));
    }
    if let Some(version) = &d.tls_version {
        v.push(Sample {
            name: "probe_tls_version_info",
            help: "The TLS version negotiated (the label; the value is always 1).",
            label: Some(("version", version.clone())),
            value: 1.0,
            scope: Single,
        });
    }
    if let Some(t) = d.verified_chain_not_after {
        v.push(s(
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            "Earliest expiry in the verified certificate chain, as a Unix timestamp.",
            t as f64,
            Single,
        ));
    }
    if let Some(t) = d.cert_not_after {
        v.push(s(
            "probe_ssl_earliest_cert_expiry",
            "Earliest expiry of the peer's certificate chain, as a Unix timestamp.",
            t as f64,
            Both,
        ));
    }
    v
}

/// `HTTP/1.1` → 1.1, as blackbox_exporter reports the version.
fn http_version_number(v: Option<&str>) -> f64 {
    v.and_then(|v| v.strip_prefix("HTTP/"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// The `/metrics` series of every configured probe, labelled by service and probe.
///
/// A family is registered the first time a probe reports it; the series a probe showed
/// last time and no longer has (a certificate gone, a probe of another kind after a
/// reload) are removed, so no stale figure outlives its cause.
/// A series one probe shows: the family, and the extra label's value if it has one.
type Shown = (&'static str, Option<String>);

pub struct ProbeSeries {
    registry: Registry,
    families: Mutex<HashMap<&'static str, GaugeVec>>,
    /// service → probe → the series it shows (nested, so that the hot path looks it up
    /// by `&str` without allocating keys).
    shown: Mutex<HashMap<String, HashMap<String, Vec<Shown>>>>,
}

impl ProbeSeries {
    pub fn new(registry: Registry) -> Self {
        ProbeSeries {
            registry,
            families: Mutex::new(HashMap::new()),
            shown: Mutex::new(HashMap::new()),
        }
    }

    pub fn observe(&self, service: &str, probe: &str, check: &Check, o: &Outcome) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = Vec::new();
        for x in samples(check, o)
            .into_iter()
            .filter(|x| x.scope == Scope::Both)
        {
            let fam = families.entry(x.name).or_insert_with(|| {
                let labels: &[&str] = match &x.label {
                    None => &["service", "probe"],
                    Some((k, _)) => &["service", "probe", k],
                };
                super::reg(
                    &self.registry,
                    GaugeVec::new(Opts::new(x.name, x.help), labels),
                )
            });
            match &x.label {
                None => fam.with_label_values(&[service, probe]).set(x.value),
                Some((_, v)) => fam.with_label_values(&[service, probe, v]).set(x.value),
            }
            now.push((x.name, x.label.map(|(_, v)| v)));
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let of_service = match shown.get_mut(service) {
            Some(m) => m,
            None => shown.entry(service.to_string()).or_default(),
        };
        match of_service.get_mut(probe) {
            // The usual case: the same series as last time, nothing to drop.
            Some(before) if *before == now => {}
            Some(before) => {
                for gone in before.iter().filter(|s| !now.contains(s)) {
                    remove(&families, service, probe, gone);
                }
                *before = now;
            }
            None => {
                of_service.insert(probe.to_string(), now);
            }
        }
    }

    /// Drops every series of a probe that no longer exists (after a reload).
    pub fn forget(&self, service: &str, probe: &str) {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let gone = shown.get_mut(service).and_then(|m| m.remove(probe));
        for s in gone.unwrap_or_default() {
            remove(&families, service, probe, &s);
        }
    }
}

fn remove(
    families: &HashMap<&'static str, GaugeVec>,
    service: &str,
    probe: &str,
    (name, label): &Shown,
) {
    if let Some(f) = families.get(name) {
        let _ = match label {
            None => f.remove_label_values(&[service, probe]),
            Some(v) => f.remove_label_values(&[service, probe, v]),
        };
    }
}

/// Renders one ad-hoc probe as blackbox_exporter's `/probe` does: the same names, without
/// `service` and `probe` labels (Prometheus adds the target's own labels).
pub fn render_single(check: &Check, o: &Outcome) -> String {
    let r = Registry::new();
    let mut families: HashMap<&'static str, GaugeVec> = HashMap::new();
    for x in samples(check, o) {
        let fam = families.entry(x.name).or_insert_with(|| {
            let labels: &[&str] = match &x.label {
                None => &[],
                Some((k, _)) => &[k],
            };
            super::reg(&r, GaugeVec::new(Opts::new(x.name, x.help), labels))
        });
        match &x.label {
            None => fam.with_label_values::<&str>(&[]).set(x.value),
            Some((_, v)) => fam.with_label_values(&[v.as_str()]).set(x.value),
        }
    }
    super::encode(&r)
}
