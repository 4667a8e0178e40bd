//! The HTTP server loop: axum's router on hyper, with the limits a public listener needs
//! so that clients cannot exhaust the monitor. A request head must arrive within
//! `header_timeout` (idle and half-sent connections are closed); at most
//! `max_connections` are open at once (one more is closed at accept); an accept that
//! fails for want of descriptors waits a moment instead of spinning. Written here because
//! `axum::serve` offers none of these limits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request head, and may stay idle between
    /// requests.
    pub header_timeout: Duration,
    /// Connections open at once; further ones are closed at accept.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
}

impl Limits {
    /// The defaults, with the connection cap at a quarter of the descriptor limit: the
    /// rest stays for probes, the store and mail, whatever clients do.
    pub fn for_open_files(nofile: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: (nofile / 4).clamp(16, 4096) as usize,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` until `stop`, then lets requests in flight finish
/// (within `limits.drain`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: every client of these endpoints speaks it, and hyper's automatic
    // version detection waits for a client's first bytes without any timeout.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: the connection stays in the backlog; try again in
                // a moment rather than spin.
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(
                    max = limits.max_connections,
                    "connection cap reached: new connections are closed until some end"
                );
                refused_logged = true;
            }
            drop(tcp);
            continue;
        };
        refused_logged = false;
        let service = TowerToHyperService::new(WithPeer {
            router: router.clone(),
            peer,
        });
        // No upgrades: no endpoint uses WebSockets.
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain, graceful.shutdown()).await;
    Ok(())
}

/// The router, with each request told its client's address (`ConnectInfo`, for the
/// subscription form's rate limit per address).
#[derive(Clone)]
struct WithPeer {
    router: Router,
    peer: std::net::SocketAddr,
}

impl tower::Service<axum::http::Request<hyper::body::Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower::Service<axum::http::Request<hyper::body::Incoming>>>::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // A router is always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        tower::Service::call(&mut self.router, req)
    }
}
