//! gRPC health probes: the address, the service asked about, TLS.

use super::cx::*;
use super::tcp::{address, tls_switch};

pub(super) fn grpc_check(
    cx: &mut Ctx,
    p: &Path,
    g: &RawGrpc,
    need_target: bool,
) -> Option<GrpcCheck> {
    let address = address(
        cx,
        p,
        g.address.as_deref(),
        need_target,
        ("api.internal:50051", "call"),
    );
    let min = g.tls_min_version.as_deref();
    let tls = tls_switch(cx, p, &g.tls, min, g.cert_min_days.is_some(), false);
    let service = match g.service.as_deref() {
        Some(s) if s.trim() != s || s.contains(char::is_whitespace) => {
            cx.err(
                &p.key("service"),
                format!("`service` is a gRPC service name such as grpc.health.v1.Health or shop.Cart, without spaces, not `{s}`"),
            );
            None
        }
        other => Some(other.unwrap_or_default().to_string()),
    };
    let ip = ip_protocol(cx, p, g.ip_protocol.as_deref(), g.ip_protocol_fallback);
    Some(GrpcCheck {
        address: address?,
        service: service?,
        tls: tls?,
        cert_min_days: g.cert_min_days,
        ip: ip?,
    })
}
