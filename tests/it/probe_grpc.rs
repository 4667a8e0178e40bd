//! gRPC health probes against tonic-health's server on loopback (plaintext and TLS), and
//! servers that hang, speak something else, or do not know the service.

use std::time::{Duration, SystemTime};

use tocsin::probe::grpc::GrpcCheck;
use tocsin::probe::{self, Check, Outcome, Phase, TlsOptions};
use tonic_health::ServingStatus;

use crate::support::{self, Ca, reason};

const T: Duration = Duration::from_secs(5);

fn grpc(address: std::net::SocketAddr, service: &str) -> GrpcCheck {
    GrpcCheck {
        address: address.to_string(),
        service: service.into(),
        tls: None,
        cert_min_days: None,
        ip: Default::default(),
    }
}

async fn run(c: GrpcCheck, timeout: Duration) -> Outcome {
    probe::run(&Check::Grpc(c), timeout, SystemTime::now()).await
}

#[tokio::test]
async fn serving_passes_and_every_other_status_is_named() {
    let (addr, reporter) = support::grpc_health(None).await;
    reporter
        .set_service_status("shop.Cart", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("shop.Search", ServingStatus::NotServing)
        .await;
    // The whole server (service ""), which tonic-health reports as serving.
    let o = run(grpc(addr, ""), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.grpc_status_code, Some(0));
    assert_eq!(o.details.grpc_serving_status.as_deref(), Some("SERVING"));
    let phases: Vec<Phase> = o.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, [Phase::Resolve, Phase::Connect, Phase::Processing]);

    assert!(run(grpc(addr, "shop.Cart"), T).await.success);
    let o = run(grpc(addr, "shop.Search"), T).await;
    assert_eq!(reason(&o), "health status NOT_SERVING, expected SERVING");
    let o = run(grpc(addr, "shop.Nothing"), T).await;
    assert_eq!(
        reason(&o),
        "gRPC health check answered NotFound: service not registered"
    );
    assert_eq!(o.details.grpc_status_code, Some(5));
}

#[tokio::test]
async fn over_tls_the_certificate_is_checked_and_reported() {
    let ca = Ca::new();
    let mut cfg = (*ca.server(-1, 30)).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let (addr, _reporter) = support::grpc_health(Some(std::sync::Arc::new(cfg))).await;
    let mut c = grpc(addr, "");
    c.tls = Some(TlsOptions::new(Some(ca.pem_file.path().into()), false, None).unwrap());
    c.cert_min_days = Some(14);
    let o = run(c.clone(), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.grpc_tls, Some(true));
    assert!(o.details.cert_not_after.is_some());
    assert!(o.phase(Phase::Tls) > Duration::ZERO);

    c.cert_min_days = Some(60);
    let o = run(c, T).await;
    assert_eq!(
        reason(&o),
        "certificate expires in 30 days (cert_min_days is 60)"
    );
}

#[tokio::test]
async fn hung_foreign_and_closed_servers_fail_with_a_reason() {
    let silent = support::silent_server().await;
    let o = run(grpc(silent, ""), Duration::from_millis(500)).await;
    assert_eq!(reason(&o), "timed out during processing");

    // An HTTP/1.1 server where HTTP/2 is expected.
    let http1 = support::HttpServer::start(None).await;
    let o = run(grpc(http1.addr, ""), T).await;
    // How the HTTP/1.1 server's refusal reaches HTTP/2 (a broken pipe, a reset) depends
    // on timing; the reason always says it was the connection.
    let r = reason(&o);
    assert!(
        r.starts_with("gRPC health check answered Unknown: transport error: connection error: "),
        "{r}"
    );

    let closed = support::closed_port().await;
    assert_eq!(
        reason(&run(grpc(closed, ""), T).await),
        "connection refused"
    );
}
