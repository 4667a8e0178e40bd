//! DNS probe: one query to one server (the configured one, or the system's first), once,
//! without retries, cache or search domains, so the outcome is the server's own answer,
//! not a recovery from it.
//!
//! hickory-proto encodes the query and decodes the answer; the exchange is written here
//! (a datagram, or a length-prefixed TCP message) because a resolver hides what a probe
//! must see: the authority and additional sections and the header's AD flag.

use std::net::SocketAddr;

use std::fmt;

use hickory_resolver::Name;
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Pattern, Phase, Reason, Recorder, io_reason};

/// Record types a probe may ask for.
pub const RECORD_TYPES: &[&str] = &[
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "SRV", "CAA", "PTR",
];

#[derive(Debug, Clone, PartialEq)]
pub struct DnsCheck {
    /// Fully qualified (a trailing dot is added when missing; no search domains).
    pub name: Name,
    pub record_type: RecordType,
    /// `None`: the system's resolvers from /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    pub protocol: DnsProtocol,
    /// Values that must all be in the answer (`203.0.113.10`, `10 mail.example.com`, ...).
    pub expect: Vec<String>,
    pub expect_rcode: Rcode,
    pub validate_answer: RrRules,
    pub validate_authority: RrRules,
    pub validate_additional: RrRules,
    /// Require the AD flag: the resolver validated the answer with DNSSEC.
    pub dnssec: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsProtocol {
    Udp,
    Tcp,
}

/// The DNS response codes a probe reports and may expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u16),
}

impl Rcode {
    pub const NAMES: &[&str] = &[
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
    ];

    pub fn parse(s: &str) -> Option<Rcode> {
        Some(match s.to_ascii_uppercase().as_str() {
            "NOERROR" => Rcode::NoError,
            "FORMERR" => Rcode::FormErr,
            "SERVFAIL" => Rcode::ServFail,
            "NXDOMAIN" => Rcode::NxDomain,
            "NOTIMP" => Rcode::NotImp,
            "REFUSED" => Rcode::Refused,
            _ => return None,
        })
    }

    fn from_hickory(c: ResponseCode) -> Rcode {
        match u16::from(c) {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            n => Rcode::Other(n),
        }
    }
}

impl std::fmt::Display for Rcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rcode::NoError => f.write_str("NOERROR"),
            Rcode::FormErr => f.write_str("FORMERR"),
            Rcode::ServFail => f.write_str("SERVFAIL"),
            Rcode::NxDomain => f.write_str("NXDOMAIN"),
            Rcode::NotImp => f.write_str("NOTIMP"),
            Rcode::Refused => f.write_str("REFUSED"),
            Rcode::Other(n) => write!(f, "RCODE{n}"),
        }
    }
}

impl Serialize for Rcode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Rcode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rcode, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(r) = Rcode::parse(&s) {
            return Ok(r);
        }
        s.strip_prefix("RCODE")
            .and_then(|n| n.parse().ok())
            .map(Rcode::Other)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown DNS response code `{s}`")))
    }
}

/// Datagrams read while waiting for the answer to this query: stray or forged replies
/// (another id, garbage) are skipped, a flood of them ends the wait.
const MAX_DATAGRAMS: usize = 100;
/// The EDNS buffer size announced with `dnssec: true` (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

pub(crate) async fn probe(c: &DnsCheck, rec: &Recorder) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let server = match c.server {
        Some(s) => s,
        None => system_servers()?[0],
    };
    super::ip::note(rec, &server.ip());
    let query = query(c);
    let bytes = query.to_vec().map_err(|e| Reason::Dns {
        detail: format!("cannot encode the query: {e}"),
    })?;
    let answer = match c.protocol {
        DnsProtocol::Udp => exchange_udp(server, &bytes, query.id()).await?,
        DnsProtocol::Tcp => exchange_tcp(server, &bytes, query.id()).await?,
    };
    if answer.truncated() {
        return Err(Reason::Dns {
            detail:
                "the server truncated its UDP answer (TC bit); use `protocol: tcp` for this record"
                    .into(),
        });
    }
    let rcode = Rcode::from_hickory(answer.response_code());
    let values: Vec<String> = answer
        .answers()
        .iter()
        .filter(|r| r.record_type() == c.record_type || r.record_type() == RecordType::CNAME)
        .map(|r| render(r.data()))
        .collect();
    rec.details(|d| {
        d.dns_rcode = Some(rcode);
        d.dns_answers = Some(answer.answers().len());
        d.dns_authority = Some(answer.name_servers().len());
        // blackbox counts the EDNS OPT pseudo-record among the additional records.
        d.dns_additional =
            Some(answer.additionals().len() + usize::from(answer.extensions().is_some()));
    });
    if rcode != c.expect_rcode {
        return Err(Reason::DnsRcode {
            got: rcode,
            want: c.expect_rcode,
        });
    }
    for want in &c.expect {
        let w = normalize(want);
        if !values.iter().any(|v| normalize(v) == w) {
            return Err(Reason::DnsAnswerLacks {
                value: want.clone(),
                got: if values.is_empty() {
                    "no records".into()
                } else {
                    values.join(", ")
                },
            });
        }
    }
    for (section, records, rules) in [
        (Section::Answer, answer.answers(), &c.validate_answer),
        (
            Section::Authority,
            answer.name_servers(),
            &c.validate_authority,
        ),
        (
            Section::Additional,
            answer.additionals(),
            &c.validate_additional,
        ),
    ] {
        let lines: Vec<String> = records.iter().map(zone_line).collect();
        rules.check(section, &lines)?;
    }
    if c.dnssec && !answer.authentic_data() {
        return Err(Reason::DnsNotAuthenticated);
    }
    Ok(())
}

/// The question: recursion desired, and with `dnssec` the DO bit (EDNS) and the AD bit,
/// which asks a validating resolver to say whether it validated the answer (RFC 6840).
fn query(c: &DnsCheck) -> Message {
    let mut m = Message::new();
    m.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(c.name.clone(), c.record_type));
    if c.dnssec {
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true).set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns).set_authentic_data(true);
    }
    m
}

/// Sends the query over UDP and waits for the datagram that answers it. A closed port
/// (ICMP port unreachable) is a refused connection.
async fn exchange_udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, Reason> {
    let socket = super::udp::connected(server).await?;
    socket.send(query).await.map_err(|e| io_reason(&e))?;
    let mut buf = vec![0u8; 65_535];
    for _ in 0..MAX_DATAGRAMS {
        let n = socket.recv(&mut buf).await.map_err(|e| io_reason(&e))?;
        // Anything that is not the answer to this query is dropped, as a stub resolver
        // does: a stray packet must not end a lookup.
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.id() == id && m.message_type() == MessageType::Response {
                return Ok(m);
            }
        }
    }
    Err(Reason::Dns {
        detail: format!("{MAX_DATAGRAMS} datagrams came, none of them the answer"),
    })
}

/// Sends the query over TCP, each message behind its two-byte length (RFC 1035 4.2.2).
async fn exchange_tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, Reason> {
    let mut s = TcpStream::connect(server)
        .await
        .map_err(|e| io_reason(&e))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await.map_err(|e| io_reason(&e))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.map_err(|e| io_reason(&e))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.map_err(|e| io_reason(&e))?;
    let m = Message::from_vec(&buf).map_err(|e| Reason::Dns {
        detail: format!("malformed answer: {e}"),
    })?;
    if m.id() != id {
        return Err(Reason::Dns {
            detail: format!("the answer's id {} is not the query's {id}", m.id()),
        });
    }
    Ok(m)
}

/// An answer as the probe reads it (the fuzzing entry point): each section's records as
/// zone-file lines, or nothing when the bytes are not a DNS message.
pub fn answer_lines(bytes: &[u8]) -> Option<Vec<String>> {
    let m = Message::from_vec(bytes).ok()?;
    Some(
        m.answers()
            .iter()
            .chain(m.name_servers())
            .chain(m.additionals())
            .map(|r| format!("{} {}", zone_line(r), render(r.data())))
            .collect(),
    )
}

/// A record as a zone-file line with tabs, as blackbox_exporter matches its
/// `validate_*_rrs` regexes against: `shop.test.\t300\tIN\tA\t203.0.113.10`.
fn zone_line(r: &Record) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if write!(
        s,
        "{}\t{}\t{}\t{}\t",
        r.name(),
        r.ttl(),
        r.dns_class(),
        r.record_type()
    )
    .is_err()
    {
        s = "(unreadable record)\t".into();
    }
    s + &shown(r.data())
}

/// A record's data as text. hickory's formatting fails on some malformed data (a
/// hostile server's), and `to_string` would panic on that: here it reads as unreadable.
fn shown(d: &RData) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match write!(s, "{d}") {
        Ok(()) => s,
        Err(_) => format!("(unreadable {} data)", d.record_type()),
    }
}

/// A section of a DNS message, as the rules and reasons name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Answer => "answer",
            Section::Authority => "authority",
            Section::Additional => "additional",
        })
    }
}

/// blackbox_exporter's `validate_*_rrs`: regexes over a section's records, each record
/// written as a zone-file line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RrRules {
    /// Fails when any record matches one of these.
    pub fail_if_matches: Vec<Pattern>,
    /// Fails when there are records and every one matches (per regex).
    pub fail_if_all_match: Vec<Pattern>,
    /// Fails when any record does not match one of these, or when there is none.
    pub fail_if_not_matches: Vec<Pattern>,
    /// Fails when no record matches (per regex), or when there is none.
    pub fail_if_none_matches: Vec<Pattern>,
}

impl RrRules {
    pub fn is_empty(&self) -> bool {
        self.fail_if_matches.is_empty()
            && self.fail_if_all_match.is_empty()
            && self.fail_if_not_matches.is_empty()
            && self.fail_if_none_matches.is_empty()
    }

    fn check(&self, section: Section, lines: &[String]) -> Result<(), Reason> {
        let fail = |rule: &str, p: &Pattern, record: Option<&String>| Reason::DnsRecords {
            section,
            rule: rule.to_string(),
            pattern: p.0.as_str().to_string(),
            record: record.cloned(),
        };
        for p in &self.fail_if_matches {
            if let Some(l) = lines.iter().find(|l| p.0.is_match(l)) {
                return Err(fail("fail_if_matches", p, Some(l)));
            }
        }
        for p in &self.fail_if_all_match {
            if !lines.is_empty() && lines.iter().all(|l| p.0.is_match(l)) {
                return Err(fail("fail_if_all_match", p, lines.first()));
            }
        }
        for p in &self.fail_if_not_matches {
            if lines.is_empty() {
                return Err(fail("fail_if_not_matches", p, None));
            }
            if let Some(l) = lines.iter().find(|l| !p.0.is_match(l)) {
                return Err(fail("fail_if_not_matches", p, Some(l)));
            }
        }
        for p in &self.fail_if_none_matches {
            if !lines.iter().any(|l| p.0.is_match(l)) {
                return Err(fail("fail_if_none_matches", p, None));
            }
        }
        Ok(())
    }
}

fn system_servers() -> Result<Vec<SocketAddr>, Reason> {
    let (config, _) =
        hickory_resolver::system_conf::read_system_conf().map_err(|e| Reason::Dns {
            detail: format!("cannot read the system's resolver configuration: {e}"),
        })?;
    let mut out: Vec<SocketAddr> = config
        .name_servers()
        .iter()
        .map(|n| n.socket_addr)
        .collect();
    out.dedup();
    if out.is_empty() {
        return Err(Reason::Dns {
            detail: "the system has no name server configured".into(),
        });
    }
    Ok(out)
}

/// The answer's value in zone-file terms, without the TXT quoting.
fn render(data: &RData) -> String {
    match data {
        RData::TXT(t) => t
            .txt_data()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join(""),
        other => shown(other),
    }
}

/// Compares names case-insensitively and without the root dot.
fn normalize(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the system's resolver answers at all. A name that cannot be resolved says
/// something of its domain only while the resolver answers other questions; when it
/// answers none (down, hanging, unreachable), every probe by name fails at once, and that
/// is the monitor's trouble, not its targets'.
///
/// The question is the root zone's NS set, which every recursive resolver answers from
/// its cache or root hints, whatever the state of any other domain. It is asked only
/// after a probe failed while resolving, one question at a time; an answer serves every
/// failure whose lookup began before it was asked (probes failing together ask once),
/// and no later one: a resolver that answered a second before it hung does not make a
/// lookup that hung after it the target's failure.
#[derive(Default)]
pub struct ResolverCheck {
    last: std::sync::Mutex<Option<(tokio::time::Instant, Option<String>)>>,
    gate: tokio::sync::Mutex<()>,
}

impl ResolverCheck {
    /// How long each configured server is given.
    const WAIT: std::time::Duration = std::time::Duration::from_secs(2);

    /// None while some configured resolver answers; otherwise what was tried. `since`:
    /// when the failed lookup began.
    pub async fn trouble(&self, since: tokio::time::Instant) -> Option<String> {
        let usable = |last: &std::sync::Mutex<Option<(tokio::time::Instant, Option<String>)>>| {
            last.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|(asked, _)| *asked >= since)
                .map(|(_, t)| t.clone())
        };
        if let Some(t) = usable(&self.last) {
            return t;
        }
        let _one = self.gate.lock().await;
        if let Some(t) = usable(&self.last) {
            return t;
        }
        let asked = tokio::time::Instant::now();
        let found = ask_root().await;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((asked, found.clone()));
        found
    }
}

/// Asks each system name server for the root NS set: None as soon as one answers (with
/// any response code: an answer is an answer).
async fn ask_root() -> Option<String> {
    let servers = match system_servers() {
        Ok(s) => s,
        Err(e) => return Some(e.to_string()),
    };
    let mut tried = Vec::new();
    for server in &servers {
        let mut m = Message::new();
        m.set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::root(), RecordType::NS));
        let Ok(bytes) = m.to_vec() else {
            return None;
        };
        match tokio::time::timeout(ResolverCheck::WAIT, exchange_udp(*server, &bytes, m.id())).await
        {
            Ok(Ok(_)) => return None,
            Ok(Err(r)) => tried.push(format!("{server}: {r}")),
            Err(_) => tried.push(format!(
                "{server}: no answer within {}",
                humantime::format_duration(ResolverCheck::WAIT)
            )),
        }
    }
    Some(format!(
        "the system's DNS resolver answers nothing, so no name can be resolved ({})",
        tried.join("; ")
    ))
}
