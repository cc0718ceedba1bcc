//! The accept loop: HTTP/1.1 connections served with a cap on how many are open at once and a
//! header-read timeout, then a graceful shutdown.
//!
//! `axum::serve` has neither limit, so one client holding thousands of sockets open, or sending
//! its headers a byte a minute, would hold the server's memory and file descriptors. Here a
//! connection takes a permit before it is accepted (beyond the cap, clients wait in the
//! kernel's listen queue), and hyper closes a connection whose request headers do not arrive
//! within [`Limits::header_read_timeout`]; the same timer closes kept-alive connections that
//! stay idle that long.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::state::Limits;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their requests (idle ones are closed at once).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors or a connection reset before it was accepted: the
                // listener itself is fine; wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's error.
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
