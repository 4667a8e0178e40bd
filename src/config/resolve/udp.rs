//! UDP probes: the address, the datagram sent and the reply expected.

use super::cx::*;
use super::tcp::address;

pub(super) fn udp_check(cx: &mut Ctx, p: &Path, u: &RawUdp, need_target: bool) -> Option<UdpCheck> {
    let address = address(
        cx,
        p,
        u.address.as_deref(),
        need_target,
        ("game.internal:27015", "send to"),
    );
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
    let ip = ip_protocol(cx, p, u.ip_protocol.as_deref(), u.ip_protocol_fallback);
    Some(UdpCheck {
        ip: ip?,
        address: address?,
        send: send?,
        expect: expect?,
    })
}
