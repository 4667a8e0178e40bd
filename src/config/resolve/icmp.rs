//! ICMP probes: the host, how many echo requests, which IP family.

use super::cx::*;

/// Echo requests per run, at most: more belongs to a packet-loss study, not a probe.
const MAX_COUNT: u16 = 100;

pub(super) fn icmp_check(
    cx: &mut Ctx,
    p: &Path,
    i: &RawIcmp,
    need_target: bool,
) -> Option<IcmpCheck> {
    let host = match (i.host.as_deref(), need_target) {
        (Some(h), true) if valid_host(h) => Some(h.to_string()),
        (Some(h), true) => {
            cx.err(
                &p.key("host"),
                format!("`host` must be a host name or an IP address, such as 192.0.2.10 or gw.internal, not `{h}`"),
            );
            None
        }
        (None, true) => {
            cx.err(
                p,
                "missing key `host` (the host name or IP address to ping)",
            );
            None
        }
        (Some(_), false) => {
            target_in_module(cx, p, "host", "target");
            None
        }
        (None, false) => Some(String::new()),
    };
    let count = match i.count {
        None => Some(1),
        Some(n) if (1..=MAX_COUNT).contains(&n) => Some(n),
        Some(n) => {
            cx.err(
                &p.key("count"),
                format!("`count` must be from 1 to {MAX_COUNT} echo requests, not {n}"),
            );
            None
        }
    };
    let ip = ip_protocol(cx, p, i.ip_protocol.as_deref(), i.ip_protocol_fallback);
    Some(IcmpCheck {
        host: host?,
        count: count?,
        ip: ip?,
    })
}

/// A host name (letters, digits, `-`, `_`, dots) or an IP address, IPv6 in brackets or
/// not; no port.
pub fn valid_host(h: &str) -> bool {
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}
