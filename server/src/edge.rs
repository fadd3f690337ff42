//! The HTTP edge: the accept loop in front of the router. axum's `serve`
//! takes every connection and waits for headers for ever, so one client can
//! hold the server's file descriptors open with connections that never
//! finish a request (slow loris). Here a connection beyond
//! `http.max_connections` is closed at once, a request whose headers are not
//! in after `http.header_read_timeout_ms` has its connection closed, and a
//! shutdown lets the requests in flight finish (bounded) before it returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// `[http]`'s limits on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long a shutdown waits for the connections still open.
    pub drain: Duration,
}

impl EdgeLimits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let h = &config.http;
        Self {
            max_connections: h.max_connections.max(1) as usize,
            header_read_timeout: Duration::from_millis(h.header_read_timeout_ms.max(100)),
            drain: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut refused_logged = false;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(%peer, max = limits.max_connections,
                    "connection refused: http.max_connections are open");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        // The client's address rides on every request: the rate limits key on it.
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        request
                    },
                )
                .service(router.clone()),
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(after = ?limits.drain, "connections still open at shutdown were cut");
    }
}
