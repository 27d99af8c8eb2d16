//! The connection loop. Each connection is served by hyper directly (not `axum::serve`) so
//! that a handler can close its own connection without answering: the loop drops the hyper
//! connection, and with it the socket, when the request's [`ConnKill`] token fires.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::EmulatorKind;
use super::SHUTDOWN_GRACE;
use super::exchange::ConnKill;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown`, then waits for them (bounded by the grace period).
pub(super) async fn accept_loop(
    kind: EmulatorKind,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(err) => {
                    tracing::warn!(kind = kind.as_str(), %err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            kind = kind.as_str(),
            "connections still open after the grace period"
        );
    }
}

async fn serve_connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let kill = CancellationToken::new();
    let conn_kill = ConnKill(kill.clone());
    let service = tower::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(conn_kill.clone());
        let router = router.clone();
        async move {
            let response = router
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response)
        }
    });
    let builder = hyper::server::conn::http1::Builder::new();
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        }
        // The handler asked for the connection to be closed without an answer: dropping the
        // connection closes the socket.
        () = kill.cancelled() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // A held request released by the shutdown closes its connection via `kill`.
            tokio::select! {
                _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()) => {}
                () = kill.cancelled() => {}
            }
        }
    }
}
