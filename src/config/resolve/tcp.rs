//! TCP probes: the address, TLS, and the send/expect dialogue.

use super::cx::*;
use super::http::tls_options;

pub(super) fn tcp_check(cx: &mut Ctx, p: &Path, t: &RawTcp, need_target: bool) -> Option<TcpCheck> {
    let address = address(
        cx,
        p,
        t.address.as_deref(),
        need_target,
        ("db.internal:5432", "connect to"),
    );
    let min = t.tls_min_version.as_deref();
    let starttls = match t.starttls.as_deref() {
        None => Some(None),
        Some(s) => match StartTls::parse(s) {
            Some(st) => Some(Some(st)),
            None => {
                let names: Vec<String> = StartTls::NAMES.iter().map(|s| s.to_string()).collect();
                let msg = match nearest(s, &names) {
                    Some(best) => {
                        format!("unknown STARTTLS protocol `{s}`, did you mean `{best}`?")
                    }
                    None => format!("`starttls` is one of smtp, imap or pop3, not `{s}`"),
                };
                cx.err(&p.key("starttls"), msg);
                None
            }
        },
    };
    if t.starttls.is_some() && matches!(t.tls, Some(RawTcpTls::Flag(false))) {
        cx.err(
            &p.key("tls"),
            "`starttls` upgrades the connection to TLS: remove `tls: false`",
        );
    }
    let tls = tls_switch(
        cx,
        p,
        &t.tls,
        min,
        t.cert_min_days.is_some(),
        t.starttls.is_some(),
    );
    let expect = match &t.expect {
        Some(r) => cx.regex(&p.key("expect"), r).map(Some),
        None => Some(None),
    };
    if t.send.as_deref() == Some("") {
        cx.err(
            &p.key("send"),
            "`send` is empty: remove it or give the bytes to send",
        );
    }
    let ip = ip_protocol(cx, p, t.ip_protocol.as_deref(), t.ip_protocol_fallback);
    Some(TcpCheck {
        starttls: starttls?,
        ip: ip?,
        address: address?,
        tls: tls?,
        send: t.send.clone(),
        expect: expect?,
        cert_min_days: t.cert_min_days,
    })
}

/// The `tls` of a TCP or gRPC probe (`true`, `false` or options) with its
/// `tls_min_version`, checking that `cert_min_days` and the minimum have TLS to apply to.
/// `implied`: TLS is on without `tls` (STARTTLS).
pub(super) fn tls_switch(
    cx: &mut Ctx,
    p: &Path,
    tls: &Option<RawTcpTls>,
    min: Option<&str>,
    cert_min_days: bool,
    implied: bool,
) -> Option<Option<TlsOptions>> {
    match tls {
        None if implied => tls_options(cx, p, None, min).map(Some),
        None | Some(RawTcpTls::Flag(false)) => {
            if min.is_some() {
                cx.err(
                    &p.key("tls_min_version"),
                    "`tls_min_version` needs `tls: true`",
                );
            }
            if cert_min_days {
                cx.err(&p.key("cert_min_days"), "`cert_min_days` needs `tls: true`");
            }
            Some(None)
        }
        Some(RawTcpTls::Flag(true)) => tls_options(cx, p, None, min).map(Some),
        Some(RawTcpTls::Options(o)) => tls_options(cx, p, Some(o), min).map(Some),
    }
}

/// The `address` of a TCP or UDP probe: `host:port` (`example`, what is done with it),
/// given in a probe and absent in a `/probe` module, which takes it from the request.
pub(super) fn address(
    cx: &mut Ctx,
    p: &Path,
    given: Option<&str>,
    need_target: bool,
    (example, verb): (&str, &str),
) -> Option<String> {
    match (given, need_target) {
        (Some(a), true) if valid_host_port(a) => Some(a.to_string()),
        (Some(a), true) => {
            let msg = format!("`address` must be host:port, such as {example}, not `{a}`");
            cx.err(&p.key("address"), msg);
            None
        }
        (None, true) => {
            cx.err(p, format!("missing key `address` (host:port to {verb})"));
            None
        }
        (Some(_), false) => {
            target_in_module(cx, p, "address", "target");
            None
        }
        (None, false) => Some(String::new()),
    }
}

/// host:port with a port from 1 to 65535 and a non-empty host.
pub fn valid_host_port(a: &str) -> bool {
    match crate::probe::ip::split_host_port(a) {
        (host, Some(port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        _ => false,
    }
}
