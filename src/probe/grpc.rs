//! gRPC health probe: the standard `grpc.health.v1.Health/Check` (tonic-health's client)
//! over one connection the probe opens itself, so that `resolve`, `connect` and `tls`
//! are timed as for any TCP probe; the call is `processing`. `SERVING` is required.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::ip::IpProtocol;
use super::ip::split_host_port;
use super::{Phase, Reason, Recorder, TlsOptions};

#[derive(Debug, Clone, PartialEq)]
pub struct GrpcCheck {
    /// `host:port`.
    pub address: String,
    /// The service asked about; empty for the server as a whole.
    pub service: String,
    /// TLS (with ALPN `h2`), or plaintext HTTP/2 when `None`.
    pub tls: Option<TlsOptions>,
    pub cert_min_days: Option<u32>,
    pub ip: IpProtocol,
}

/// The one connection handed to the channel.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub(crate) async fn probe(c: &GrpcCheck, rec: &Recorder, now: SystemTime) -> Result<(), Reason> {
    let tcp = super::tcp::connect(&c.address, c.ip, rec).await?;
    let io: Box<dyn Io> = match &c.tls {
        None => Box::new(tcp),
        Some(opts) => {
            rec.enter(Phase::Tls);
            let (host, _) = split_host_port(&c.address);
            let tls = super::tls::handshake(tcp, host, opts, rec, &[b"h2"]).await?;
            if let Some(min_days) = c.cert_min_days {
                super::tls::check_cert_days(rec, min_days, now)?;
            }
            Box::new(tls)
        }
    };
    rec.details(|d| d.grpc_tls = Some(c.tls.is_some()));
    rec.enter(Phase::Processing);
    let scheme = if c.tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{}", c.address)).map_err(|e| {
        Reason::Protocol {
            detail: format!("`{}` is not a gRPC address: {e}", c.address),
        }
    })?;
    // The channel asks its connector for a connection; it gets the one opened above,
    // once (a reconnect within one probe run would hide a dead server).
    let slot = Arc::new(Mutex::new(Some(io)));
    let connector = tower::service_fn(move |_: Uri| {
        let io = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            io.map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the probe's connection was already used"))
        }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| Reason::Protocol {
            detail: format!("HTTP/2 connection failed: {}", error_chain(&e)),
        })?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: c.service.clone(),
        })
        .await;
    let status = match answer {
        Ok(r) => {
            rec.details(|d| d.grpc_status_code = Some(0));
            r.into_inner().status()
        }
        Err(s) => {
            rec.details(|d| d.grpc_status_code = Some(s.code() as i32));
            // A transport failure reads only "transport error"; its sources say which.
            let mut message = s.message().to_string();
            if let Some(src) = std::error::Error::source(&s) {
                let chain = error_chain(src);
                message = match chain.strip_prefix(&message) {
                    Some(rest) => format!("{message}{rest}"),
                    None => format!("{message}: {chain}"),
                };
            }
            return Err(Reason::Grpc {
                code: format!("{:?}", s.code()),
                message,
            });
        }
    };
    rec.details(|d| d.grpc_serving_status = Some(status.as_str_name().to_string()));
    if status != ServingStatus::Serving {
        return Err(Reason::GrpcNotServing {
            status: status.as_str_name().to_string(),
        });
    }
    Ok(())
}

/// An error with its sources, one after the other: tonic's own text is often only
/// "transport error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
