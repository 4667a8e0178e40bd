//! Probes: one check of one target, ending in an [`Outcome`] that carries the precise
//! reason and the phase timings as data (the escalation mail, the status page and the
//! metrics all read them).
//!
//! One file per protocol behind one signature, dispatched through [`Check`]. This room
//! knows nothing of configuration files, schedules, incidents, mail or HTTP serving.
//! Every run makes fresh connections; no pooled connection may hide a dead server.

pub mod dns;
pub mod grpc;
pub mod heartbeat;
pub mod http;
pub mod icmp;
pub mod ip;
pub mod json;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use dns::{DnsCheck, DnsProtocol, Rcode};
pub use http::{HttpCheck, StatusSet};
pub use tcp::{StartTls, TcpCheck};
pub use tls::TlsOptions;

/// What to check. Equality means "the same check", which is how a reload decides that a
/// probe is unchanged and keeps its schedule.
// Checks are built once per config load and shared behind an Arc, so the size of the
// largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http(HttpCheck),
    Dns(DnsCheck),
    Tcp(TcpCheck),
    Udp(udp::UdpCheck),
    Icmp(icmp::IcmpCheck),
    Grpc(grpc::GrpcCheck),
    /// Decided from the pings the job sends, not by contacting anything.
    Heartbeat(heartbeat::HeartbeatCheck),
}

impl Check {
    /// The protocol name, as used in metrics and the `/probe` module names.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http(_) => "http",
            Check::Dns(_) => "dns",
            Check::Tcp(_) => "tcp",
            Check::Udp(_) => "udp",
            Check::Icmp(_) => "icmp",
            Check::Grpc(_) => "grpc",
            Check::Heartbeat(_) => "heartbeat",
        }
    }

    /// The target in human terms (URL, address, name).
    pub fn target(&self) -> String {
        match self {
            Check::Http(c) => shown_url(&c.url),
            Check::Dns(c) => format!("{} {}", c.name, c.record_type),
            Check::Tcp(c) => c.address.clone(),
            Check::Udp(c) => c.address.clone(),
            Check::Icmp(c) => c.host.clone(),
            Check::Grpc(c) if c.service.is_empty() => c.address.clone(),
            Check::Grpc(c) => format!("{} {}", c.address, c.service),
            Check::Heartbeat(c) => match &c.expect {
                heartbeat::Expect::Every(p) => {
                    format!("a ping every {}", humantime::format_duration(*p))
                }
                heartbeat::Expect::Cron { source, tz, .. } => {
                    format!("a ping after each \"{source}\" ({tz})")
                }
            },
        }
    }
}

/// A URL as tocsin shows it (API, CLI, mails, logs): the query string, which often
/// carries a key, is replaced by `?…`.
pub fn shown_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if had_query {
        s.push_str("?…");
    }
    s
}

/// The phases of a probe, named as blackbox_exporter names them.
///
/// - `resolve`: looking the host name up (zero for IP literals); for DNS probes, the whole
///   query and answer.
/// - `connect`: TCP connection establishment, from the first SYN to the socket being open.
/// - `tls`: the TLS handshake, from the ClientHello to the handshake's completion.
/// - `processing`: from sending the request (or the TCP probe's `send`) until the first
///   byte of the response head (HTTP) or the expected reply (TCP): "time to first byte".
/// - `transfer`: reading the response body, up to `max_body`.
/// - `setup` (ICMP): opening the ICMP socket.
/// - `rtt` (ICMP): from the first echo request to the last reply.
///
/// With redirects, each phase is the sum over all hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    Processing,
    Transfer,
    Setup,
    Rtt,
}

impl Phase {
    /// The phases of an HTTP probe (`probe_http_duration_seconds`).
    pub const HTTP: [Phase; 5] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
            Phase::Setup => "setup",
            Phase::Rtt => "rtt",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe failed, in the terms an on-call engineer reads. Never raw internal text
/// alone: each variant names what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The probe did not finish within its timeout; `phase` is where it was stuck.
    #[error("timed out during {phase}")]
    Timeout { phase: Phase },
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {detail}")]
    Resolve { host: String, detail: String },
    /// Nothing listens on the port (TCP RST on connect).
    #[error("connection refused")]
    ConnectionRefused,
    /// The peer reset or closed the connection before the exchange completed.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// Another connect-time failure (unreachable network, no route, ...).
    #[error("cannot connect: {detail}")]
    Connect { detail: String },
    /// The TLS handshake failed for a reason other than the certificate.
    #[error("TLS handshake failed: {detail}")]
    Tls { detail: String },
    /// The STARTTLS dialogue before the handshake failed: the server refused the
    /// upgrade, does not offer it, or answered something else.
    #[error("STARTTLS failed: {detail}")]
    StartTls { detail: String },
    /// The server's certificate was rejected (expired, unknown issuer, wrong name).
    #[error("certificate rejected: {detail}")]
    CertificateInvalid { detail: String },
    /// The certificate is valid but expires sooner than `cert_min_days`.
    #[error("certificate expires in {days} days (cert_min_days is {min_days})")]
    CertificateExpiresSoon { days: i64, min_days: u32 },
    /// The HTTP status is not one of the expected ones.
    #[error("status {got}, expected {want}")]
    Status { got: u16, want: String },
    /// `body_contains` was not found in the (first `max_body` bytes of the) body.
    #[error("body lacks {needle:?}")]
    BodyLacks { needle: String },
    /// `body_not_contains` was found in the body.
    #[error("body contains {needle:?}")]
    BodyContains { needle: String },
    /// `body_regex` did not match the body.
    #[error("body does not match /{pattern}/")]
    BodyRegex { pattern: String },
    /// The response came in another HTTP version than `http_version` requires.
    #[error("response over HTTP/{got}, expected HTTP/{want}")]
    HttpVersion { got: String, want: String },
    /// A `header_matches` header is absent.
    #[error("response lacks header {header}")]
    HeaderMissing { header: String },
    /// A `header_matches` header does not match.
    #[error("header {header}: {got:?} does not match /{pattern}/")]
    HeaderMismatch {
        header: String,
        pattern: String,
        got: String,
    },
    /// A `header_not_matches` header matches.
    #[error("header {header}: {got:?} matches /{pattern}/")]
    HeaderForbidden {
        header: String,
        pattern: String,
        got: String,
    },
    /// The body is not JSON, though `body_json` needs it to be.
    #[error("body is not JSON: {detail}")]
    BodyNotJson { detail: String },
    /// A `body_json` rule does not hold.
    #[error("body JSON at {path}: found {found}, wanted {want}")]
    BodyJson {
        path: String,
        found: String,
        want: String,
    },
    /// The response was correct but slower than `max_latency`.
    #[error("took {took_ms} ms, more than max_latency {max_ms} ms")]
    TooSlow { took_ms: u64, max_ms: u64 },
    /// More redirects than `follow_redirects` allows (or a redirect loop).
    #[error("more than {limit} redirects")]
    TooManyRedirects { limit: u32 },
    /// The server spoke something that is not valid HTTP (or sent a head too large).
    #[error("invalid HTTP response: {detail}")]
    Protocol { detail: String },
    /// The DNS response code is not the expected one.
    #[error("{}", rcode_message(*got, *want))]
    DnsRcode { got: Rcode, want: Rcode },
    /// An `expect` value is missing from the DNS answer.
    #[error("answer lacks {value:?} (got: {got})")]
    DnsAnswerLacks { value: String, got: String },
    /// A `validate_answer`, `validate_authority` or `validate_additional` rule failed.
    #[error("{}", dns_rule_message(*section, rule, pattern, record.as_deref()))]
    DnsRecords {
        section: dns::Section,
        rule: String,
        pattern: String,
        /// The record (as a zone-file line) that broke the rule, when one did.
        record: Option<String>,
    },
    /// `dnssec: true`, and the answer came without the AD flag.
    #[error(
        "answer not DNSSEC-validated: the AD flag is not set (is the server a validating resolver?)"
    )]
    DnsNotAuthenticated,
    /// The DNS exchange failed below the response code (malformed or truncated reply, ...).
    #[error("DNS query failed: {detail}")]
    Dns { detail: String },
    /// The TCP reply did not match `expect`.
    #[error("reply does not match /{pattern}/, got {got:?}")]
    ReplyMismatch { pattern: String, got: String },
    /// The peer closed the connection before a reply matched `expect`.
    #[error("connection closed before a reply matched /{pattern}/, got {got:?}")]
    ClosedBeforeReply { pattern: String, got: String },
    /// The gRPC health call failed with a status other than OK.
    #[error("gRPC health check answered {code}: {message}")]
    Grpc { code: String, message: String },
    /// The health service answered, and not `SERVING`.
    #[error("health status {status}, expected SERVING")]
    GrpcNotServing { status: String },
    /// A heartbeat's ping is overdue.
    #[error("{}", late_message(*last, *due))]
    HeartbeatLate {
        /// The last success, Unix seconds.
        last: Option<i64>,
        /// When the ping was due, grace included.
        due: i64,
    },
    /// The job said it failed.
    #[error("{}", failed_message(*exit, output.as_deref()))]
    HeartbeatFailed {
        exit: Option<u8>,
        /// The start of the body of the failure ping.
        output: Option<String>,
    },
    /// The job said it started, and has not said it finished within its grace.
    #[error(
        "job started at {} and has not finished within its grace of {}",
        unix_text(*started),
        humantime::format_duration(std::time::Duration::from_secs(*grace_secs))
    )]
    HeartbeatRunning { started: i64, grace_secs: u64 },
    /// The kernel refused the ICMP socket: neither an unprivileged datagram socket nor a
    /// raw socket is allowed to tocsin.
    #[error(
        "no permission to send ICMP: {detail}; allow unprivileged ping with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` or grant tocsin CAP_NET_RAW"
    )]
    IcmpPermission { detail: String },
    /// No route to the network or host.
    #[error("unreachable: {detail}")]
    Unreachable { detail: String },
    /// The probe failed for want of the monitor's own resources (descriptors, buffers,
    /// memory, local ports, disk): a fault of tocsin's host, never the target's. Such an
    /// outcome counts toward no incident.
    #[error(
        "tocsin's own host {}: {detail} (a monitor fault, not the target's)",
        fault_what(cause)
    )]
    MonitorFault { cause: String, detail: String },
    /// An I/O error not covered above.
    #[error("{detail}")]
    Io { detail: String },
    /// A reason known only as text: written by an earlier tocsin (kept from its
    /// database), or a failure reported without a reason.
    #[error("{text}")]
    Text { text: String },
}

/// What customers may be told of a failure: a kind of trouble in plain words, never the
/// probe's own text (which can name internal hosts, ports and patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    /// The service cannot be reached at all.
    Unreachable,
    /// It answers, but wrongly (errors, missing content).
    Errors,
    /// It works, but slowly.
    Slow,
}

impl Problem {
    /// The name templates use (`problem` in the placeholder and status pages).
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Unreachable => "unreachable",
            Problem::Errors => "errors",
            Problem::Slow => "slow",
        }
    }

    /// What customers hear of several failures at once: slowness when any probe is slow,
    /// else errors when any probe gets wrong answers, else unreachable.
    pub fn of<'a>(reasons: impl IntoIterator<Item = &'a Reason>) -> Problem {
        reasons
            .into_iter()
            .map(Reason::problem)
            .max()
            .unwrap_or(Problem::Unreachable)
    }
}

impl Reason {
    /// What customers may be told of this failure.
    pub fn problem(&self) -> Problem {
        match self {
            Reason::TooSlow { .. } => Problem::Slow,
            Reason::Status { .. }
            | Reason::BodyLacks { .. }
            | Reason::BodyContains { .. }
            | Reason::BodyRegex { .. }
            | Reason::BodyNotJson { .. }
            | Reason::HttpVersion { .. }
            | Reason::HeaderMissing { .. }
            | Reason::HeaderMismatch { .. }
            | Reason::HeaderForbidden { .. }
            | Reason::BodyJson { .. }
            | Reason::TooManyRedirects { .. }
            | Reason::DnsAnswerLacks { .. }
            | Reason::DnsRecords { .. }
            | Reason::GrpcNotServing { .. }
            | Reason::HeartbeatFailed { .. }
            | Reason::ReplyMismatch { .. } => Problem::Errors,
            Reason::Text { text } => legacy_problem(text),
            _ => Problem::Unreachable,
        }
    }
}

/// Classifies a reason that is known only as text, by the words earlier tocsins wrote
/// for each kind of failure. Used for reasons kept from an earlier database, nothing else.
fn legacy_problem(text: &str) -> Problem {
    if text.contains("max_latency") {
        Problem::Slow
    } else if [
        "status ",
        "body ",
        "answer lacks",
        "reply does not match",
        "redirects",
    ]
    .iter()
    .any(|k| text.contains(k))
    {
        Problem::Errors
    } else {
        Problem::Unreachable
    }
}

fn unix_text(t: i64) -> String {
    crate::text::time::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64))
}

fn late_message(last: Option<i64>, due: i64) -> String {
    match last {
        Some(t) => format!("no ping since {} (due by {})", unix_text(t), unix_text(due)),
        None => format!("no ping yet (due by {})", unix_text(due)),
    }
}

fn failed_message(exit: Option<u8>, output: Option<&str>) -> String {
    let mut s = "job reported failure".to_string();
    if let Some(n) = exit {
        s += &format!(": exit {n}");
    }
    if let Some(o) = output.filter(|o| !o.is_empty()) {
        s += &format!(" (output: {o:?})");
    }
    s
}

fn dns_rule_message(
    section: dns::Section,
    rule: &str,
    pattern: &str,
    record: Option<&str>,
) -> String {
    let record = record.map(|r| r.replace('\t', " "));
    match (rule, record) {
        ("fail_if_matches", Some(r)) => {
            format!("{section} record `{r}` matches /{pattern}/ ({rule})")
        }
        ("fail_if_all_match", _) => format!("every {section} record matches /{pattern}/ ({rule})"),
        ("fail_if_not_matches", Some(r)) => {
            format!("{section} record `{r}` does not match /{pattern}/ ({rule})")
        }
        ("fail_if_not_matches", None) => {
            format!("no {section} records to match /{pattern}/ ({rule})")
        }
        _ => format!("no {section} record matches /{pattern}/ ({rule})"),
    }
}

fn rcode_message(got: Rcode, want: Rcode) -> String {
    if want == Rcode::NoError {
        got.to_string()
    } else {
        format!("{got}, expected {want}")
    }
}

/// Facts learnt along the way; each probe fills what it knows, even when it fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
    /// Whether the final response came over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_tls: Option<bool>,
    /// The final response's `Content-Length`; `None` inside `Some` when it had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_content_length: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// The earliest `notAfter` of the peer's certificate chain, as Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
    /// The earliest `notAfter` of a chain that was verified (none when verification was
    /// off or failed): blackbox's `probe_ssl_last_chain_expiry_timestamp_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_chain_not_after: Option<i64>,
    /// The negotiated version, `TLS 1.3` or `TLS 1.2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_rcode: Option<Rcode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_answers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_authority: Option<usize>,
    /// Additional records, the EDNS OPT pseudo-record included (as blackbox counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_additional: Option<usize>,
    /// The family of the address the probe talked to: 4 or 6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<u8>,
    /// FNV-1a of that address, as blackbox_exporter's `probe_ip_addr_hash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_addr_hash: Option<u32>,
    /// The gRPC status code of the health call (0 for OK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status_code: Option<i32>,
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_serving_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_tls: Option<bool>,
    /// A heartbeat's latest ping, Unix seconds (0 before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_last_ping: Option<i64>,
    /// The TTL (IPv4) or hop limit (IPv6) of the last echo reply, when the socket shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_hop_limit: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_sent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_received: Option<u32>,
    /// The mean round trip of the echo replies received.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_secs"
    )]
    pub icmp_rtt: Option<Duration>,
}

/// The result of one probe run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Wall-clock start, from the injected clock.
    #[serde(serialize_with = "crate::text::time::serialize_rfc3339")]
    pub at: SystemTime,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(serialize_with = "ser_phases")]
    pub phases: Vec<(Phase, Duration)>,
    pub details: Details,
}

impl Outcome {
    pub fn phase(&self, phase: Phase) -> Duration {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
            .unwrap_or_default()
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn ser_phases<S: serde::Serializer>(p: &[(Phase, Duration)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(p.len()))?;
    for (phase, d) in p {
        m.serialize_entry(phase.as_str(), &d.as_secs_f64())?;
    }
    m.end()
}

/// Runs `check` once, ending within `timeout` whatever the peer does.
///
/// The caller owns the deadline; it is enforced here, around the protocol code, so that a
/// timeout still names the phase it interrupted. `now` is the wall-clock time of the start
/// (certificate expiry is measured against it).
pub async fn run(check: &Check, timeout: Duration, now: SystemTime) -> Outcome {
    let rec = Recorder::default();
    let start = Instant::now();
    let work = async {
        match check {
            Check::Http(c) => http::probe(c, &rec, now).await,
            Check::Dns(c) => dns::probe(c, &rec).await,
            Check::Tcp(c) => tcp::probe(c, &rec, now).await,
            Check::Udp(c) => udp::probe(c, &rec).await,
            Check::Icmp(c) => icmp::probe(c, &rec, timeout).await,
            Check::Grpc(c) => grpc::probe(c, &rec, now).await,
            // Decided by the running tocsin from the pings it received (the scheduler's
            // runner does that); an ad-hoc run has no pings to look at.
            Check::Heartbeat(_) => Err(Reason::Text {
                text: "a heartbeat is decided by the pings the running tocsin receives: see `tocsin heartbeat list`".into(),
            }),
        }
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Reason::Timeout {
            phase: rec.current().unwrap_or(Phase::Connect),
        }),
    };
    let duration = start.elapsed();
    let (phases, details) = rec.finish();
    Outcome {
        at: now,
        duration,
        success: result.is_ok(),
        reason: result.err(),
        phases,
        details,
    }
}

/// Records the probe's progress as a linear timeline of phases, plus the details learnt.
///
/// Shared (cloned) into the hooks of the HTTP stack (resolver, connector, TLS), so that
/// after a timeout the outcome still knows where the probe was and what it had seen.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Timeline>>);

#[derive(Default)]
struct Timeline {
    current: Option<(Phase, Instant)>,
    spent: Vec<(Phase, Duration)>,
    details: Details,
}

impl Recorder {
    /// From now on the probe is in `phase`; the previous phase's time is added up.
    pub fn enter(&self, phase: Phase) {
        let now = Instant::now();
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.close(now);
        t.current = Some((phase, now));
    }

    pub fn current(&self) -> Option<Phase> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.current.map(|(p, _)| p)
    }

    pub fn details<R>(&self, f: impl FnOnce(&mut Details) -> R) -> R {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut t.details)
    }

    /// The time spent so far in the current and completed phases.
    pub fn elapsed_total(&self) -> Duration {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum: Duration = t.spent.iter().map(|(_, d)| *d).sum();
        if let Some((_, since)) = t.current {
            sum += since.elapsed();
        }
        sum
    }

    fn finish(&self) -> (Vec<(Phase, Duration)>, Details) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.close(Instant::now());
        let mut phases: Vec<(Phase, Duration)> = Vec::new();
        for (p, d) in &t.spent {
            match phases.iter_mut().find(|(q, _)| q == p) {
                Some((_, acc)) => *acc += *d,
                None => phases.push((*p, *d)),
            }
        }
        phases.sort_by_key(|(p, _)| *p);
        (phases, t.details.clone())
    }
}

impl Timeline {
    fn close(&mut self, now: Instant) {
        if let Some((p, since)) = self.current.take() {
            self.spent.push((p, now.saturating_duration_since(since)));
        }
    }
}

/// The monitor's own resource an OS error says ran out, by its errno name: what makes a
/// probe failure a monitor fault.
pub fn monitor_fault(e: &std::io::Error) -> Option<&'static str> {
    Some(match e.raw_os_error()? {
        24 => "emfile",
        23 => "enfile",
        105 => "enobufs",
        12 => "enomem",
        99 => "eaddrnotavail",
        28 => "enospc",
        _ => return None,
    })
}

fn fault_what(cause: &str) -> &'static str {
    match cause {
        "emfile" => "is out of file descriptors",
        "enfile" => "is out of file descriptors system-wide",
        "enobufs" => "is out of network buffers",
        "enomem" => "is out of memory",
        "eaddrnotavail" => "is out of local addresses or ports",
        "enospc" => "is out of disk space",
        "resolver" => "cannot resolve any name",
        _ => "is in trouble",
    }
}

/// Classifies an I/O error met while connecting or talking.
pub(crate) fn io_reason(e: &std::io::Error) -> Reason {
    use std::io::ErrorKind::*;
    if let Some(cause) = monitor_fault(e) {
        return Reason::MonitorFault {
            cause: cause.to_string(),
            detail: e.to_string(),
        };
    }
    match e.kind() {
        ConnectionRefused => Reason::ConnectionRefused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Reason::ConnectionReset,
        _ => Reason::Io {
            detail: e.to_string(),
        },
    }
}

/// Keeps what a peer sent printable and short for reasons and logs.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() && c != ' ' { ' ' } else { c })
        .collect();
    if bytes.len() > max {
        s.push('…');
    }
    s.trim().to_string()
}

/// A compiled regular expression; two patterns are equal when their sources are.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

pub use crate::secret::Secret;

#[cfg(test)]
mod tests {
    use super::*;

    /// Customers hear the kind of trouble; slowness wins over errors, errors over
    /// unreachable, as the placeholder's wording says.
    #[test]
    fn what_customers_may_be_told_of_each_reason() {
        let slow = Reason::TooSlow {
            took_ms: 3000,
            max_ms: 2000,
        };
        let wrong = Reason::Status {
            got: 500,
            want: "200".into(),
        };
        assert_eq!(slow.problem(), Problem::Slow);
        assert_eq!(wrong.problem(), Problem::Errors);
        assert_eq!(Reason::ConnectionRefused.problem(), Problem::Unreachable);
        assert_eq!(
            Problem::of([&Reason::ConnectionRefused, &wrong]),
            Problem::Errors
        );
        assert_eq!(Problem::of([&wrong, &slow]), Problem::Slow);
        assert_eq!(Problem::of([]), Problem::Unreachable);
        let old = Reason::Text {
            text: "took 2500 ms, more than max_latency 2000 ms".into(),
        };
        assert_eq!(old.problem(), Problem::Slow);
    }

    #[test]
    fn reasons_round_trip_through_their_stored_form() {
        let r = Reason::DnsRcode {
            got: Rcode::Other(23),
            want: Rcode::NoError,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
    }
}
