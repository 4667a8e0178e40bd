//! UDP probes: the address, the datagram sent and the reply expected.

use super::cx::*;
use super::tcp::valid_host_port;

pub(super) fn udp_check(cx: &mut Ctx, p: &Path, u: &RawUdp, need_target: bool) -> Option<UdpCheck> {
    let address = match (&u.address, need_target) {
        (Some(a), true) if valid_host_port(a) => Some(a.clone()),
        (Some(a), true) => {
            cx.err(
                &p.key("address"),
                format!("`address` must be host:port, such as game.internal:27015, not `{a}`"),
            );
            None
        }
        (None, true) => {
            cx.err(p, "missing key `address` (host:port to send to)");
            None
        }
        (Some(_), false) => {
            target_in_module(cx, p, "address", "target");
            None
        }
        (None, false) => Some(String::new()),
    };
    let send = match u.send.as_deref() {
        Some(s) if !s.is_empty() => Some(s.to_string()),
        Some(_) => {
            cx.err(&p.key("send"), "`send` is empty: give the datagram to send");
            None
        }
        None => {
            cx.err(
                p,
                "missing key `send` (the datagram to send; UDP has no greeting to wait for)",
            );
            None
        }
    };
    let expect = match &u.expect {
        Some(r) => cx.regex(&p.key("expect"), r),
        None => {
            cx.err(p, "missing key `expect` (a regex the reply must match: without a reply a UDP probe proves nothing)");
            None
        }
    };
    Some(UdpCheck {
        address: address?,
        send: send?,
        expect: expect?,
    })
}
