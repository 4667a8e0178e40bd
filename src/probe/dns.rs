//! DNS probe on hickory-resolver, with the cache off so that every run really asks.
//!
//! A resolver is built per run (new sockets, no state carried between runs); it queries
//! one server (or the system's), once, without retries or search domains, so the outcome
//! is the server's own answer, not a recovery from it.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveErrorKind};
use serde::Serialize;

use super::{Phase, Reason, Recorder};

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

pub(crate) async fn probe(c: &DnsCheck, rec: &Recorder) -> Result<(), Reason> {
    rec.enter(Phase::Resolve);
    let protocol = match c.protocol {
        DnsProtocol::Udp => Protocol::Udp,
        DnsProtocol::Tcp => Protocol::Tcp,
    };
    let servers: Vec<SocketAddr> = match c.server {
        Some(s) => vec![s],
        None => system_servers()?,
    };
    if let Some(first) = servers.first() {
        super::ip::note(rec, &first.ip());
    }
    let mut config = ResolverConfig::new();
    for s in servers {
        config.add_name_server(NameServerConfig::new(s, protocol));
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 0;
    opts.ndots = 0;
    opts.num_concurrent_reqs = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.preserve_intermediates = true;
    // The caller's deadline governs; the resolver's own must not cut in first.
    opts.timeout = Duration::from_secs(3600);
    let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build();

    let (rcode, values) = match resolver.lookup(c.name.clone(), c.record_type).await {
        Ok(lookup) => {
            let values: Vec<String> = lookup.records().iter().map(|r| render(r.data())).collect();
            (Rcode::NoError, values)
        }
        Err(e) => match e.kind() {
            ResolveErrorKind::Proto(p) => match p.kind() {
                ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                    (Rcode::from_hickory(*response_code), Vec::new())
                }
                ProtoErrorKind::Timeout => {
                    return Err(Reason::Timeout {
                        phase: Phase::Resolve,
                    });
                }
                // The TC bit on a UDP answer: hickory does not fall back to TCP on its own.
                _ if p.to_string().contains("truncated") => {
                    return Err(Reason::Dns {
                        detail: "the server truncated its UDP answer (TC bit); use `protocol: tcp` for this record".into(),
                    });
                }
                _ => {
                    return Err(Reason::Dns {
                        detail: p.to_string(),
                    });
                }
            },
            _ => {
                return Err(Reason::Dns {
                    detail: e.to_string(),
                });
            }
        },
    };
    rec.details(|d| {
        d.dns_rcode = Some(rcode);
        d.dns_answers = Some(values.len());
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
    Ok(())
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
        other => other.to_string(),
    }
}

/// Compares names case-insensitively and without the root dot.
fn normalize(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}
