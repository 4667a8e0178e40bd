//! DNS probes: the query, the server, expected answers and rcode.

use super::cx::*;

pub(super) fn dns_check(cx: &mut Ctx, p: &Path, d: &RawDns, need_target: bool) -> Option<DnsCheck> {
    let name = match &d.name {
        Some(n) => {
            let fq = if n.ends_with('.') {
                n.clone()
            } else {
                format!("{n}.")
            };
            match hickory_resolver::Name::from_ascii(&fq) {
                Ok(name) if !n.trim().is_empty() => Some(name),
                _ => {
                    cx.err(&p.key("name"), format!("invalid DNS name `{n}`"));
                    None
                }
            }
        }
        None => {
            cx.err(p, "missing key `name` (the DNS name to look up)");
            None
        }
    };
    let type_s = d.record_type.as_deref().unwrap_or("A").to_ascii_uppercase();
    let known: Vec<String> = RECORD_TYPES.iter().map(|s| s.to_string()).collect();
    let record_type = if known.contains(&type_s) {
        type_s
            .parse::<hickory_resolver::proto::rr::RecordType>()
            .ok()
    } else {
        cx.err(
            &p.key("type"),
            match nearest(&type_s, &known) {
                Some(best) => format!("unknown record type `{type_s}`, did you mean `{best}`?"),
                None => format!(
                    "unknown record type `{type_s}`: use one of {}",
                    known.join(", ")
                ),
            },
        );
        None
    };
    let server = match (&d.server, need_target) {
        (Some(s), true) => match parse_server(s) {
            Some(a) => Some(Some(a)),
            None => {
                cx.err(&p.key("server"), format!("`server` must be an IP address with an optional port, such as 192.0.2.53:53, not `{s}`"));
                None
            }
        },
        (Some(_), false) => {
            target_in_module(cx, p, "server", "DNS server");
            None
        }
        (None, _) => Some(None),
    };
    let protocol = match d.protocol.as_deref() {
        None | Some("udp") => Some(DnsProtocol::Udp),
        Some("tcp") => Some(DnsProtocol::Tcp),
        Some(other) => {
            cx.err(
                &p.key("protocol"),
                format!("`protocol` must be `udp` or `tcp`, not `{other}`"),
            );
            None
        }
    };
    let expect_rcode = match d.expect_rcode.as_deref() {
        None => Some(Rcode::NoError),
        Some(s) => match Rcode::parse(s) {
            Some(r) => Some(r),
            None => {
                let names: Vec<String> = Rcode::NAMES.iter().map(|s| s.to_string()).collect();
                cx.err(
                    &p.key("expect_rcode"),
                    match nearest(&s.to_ascii_uppercase(), &names) {
                        Some(best) => {
                            format!("unknown response code `{s}`, did you mean `{best}`?")
                        }
                        None => format!(
                            "unknown response code `{s}`: use one of {}",
                            names.join(", ")
                        ),
                    },
                );
                None
            }
        },
    };
    for (i, v) in d.expect.iter().enumerate() {
        let bad = match type_s.as_str() {
            "A" => v
                .parse::<std::net::Ipv4Addr>()
                .is_err()
                .then_some("an IPv4 address"),
            "AAAA" => v
                .parse::<std::net::Ipv6Addr>()
                .is_err()
                .then_some("an IPv6 address"),
            _ => None,
        };
        if let Some(what) = bad {
            cx.err(
                &p.key("expect").index(i),
                format!("`{v}` is not {what}, so the {type_s} answer can never hold it"),
            );
        }
    }
    let mut rules = [
        ("validate_answer", &d.validate_answer),
        ("validate_authority", &d.validate_authority),
        ("validate_additional", &d.validate_additional),
    ]
    .map(|(key, raw)| rr_rules(cx, &p.key(key), raw.as_ref()));
    if rules.iter().any(Option::is_none) {
        return None;
    }
    let [answer, authority, additional] = rules.each_mut().map(|r| r.take().unwrap_or_default());
    Some(DnsCheck {
        validate_answer: answer,
        validate_authority: authority,
        validate_additional: additional,
        dnssec: d.dnssec,
        name: name?,
        record_type: record_type?,
        server: server?,
        protocol: protocol?,
        expect: d.expect.clone(),
        expect_rcode: expect_rcode?,
    })
}

/// One `validate_*` block: every regex compiled, and at least one given.
fn rr_rules(cx: &mut Ctx, p: &Path, raw: Option<&RawRrRules>) -> Option<RrRules> {
    let Some(raw) = raw else {
        return Some(RrRules::default());
    };
    let mut ok = true;
    let mut list = |cx: &mut Ctx, key: &str, v: &[String]| -> Vec<Pattern> {
        v.iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let got = cx.regex(&p.key(key).index(i), r);
                ok &= got.is_some();
                got
            })
            .collect()
    };
    let rules = RrRules {
        fail_if_matches: list(cx, "fail_if_matches", &raw.fail_if_matches),
        fail_if_all_match: list(cx, "fail_if_all_match", &raw.fail_if_all_match),
        fail_if_not_matches: list(cx, "fail_if_not_matches", &raw.fail_if_not_matches),
        fail_if_none_matches: list(cx, "fail_if_none_matches", &raw.fail_if_none_matches),
    };
    if ok && rules.is_empty() {
        cx.err(
            p,
            format!(
                "`{}` has no rule: give fail_if_matches, fail_if_all_match, fail_if_not_matches or fail_if_none_matches (each a list of regexes)",
                last_key(p)
            ),
        );
        return None;
    }
    ok.then_some(rules)
}

/// `ip:port`, `[v6]:port`, or a bare IP (port 53).
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}
