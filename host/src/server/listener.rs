//! Accepting connections within bounds, so that a flood of connections that
//! never finish their headers (a slowloris) cannot exhaust file descriptors
//! or memory: a connection must send its request headers, and an idle
//! keep-alive connection its next request, within the header timeout, and
//! no more than a set number of connections are open at once. Connections
//! beyond it wait in the listen backlog until one closes; the timeout
//! guarantees that one does. Once a flood has closed, the memory it held
//! is given back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a connection has to send a request's headers, counted from
    /// when the server starts waiting for them (also between requests on a
    /// keep-alive connection).
    pub header_timeout: Duration,
}

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` until `shutdown` completes;
/// with `tls`, every connection first completes a TLS handshake (within
/// the header timeout).
pub(super) async fn serve_bounded(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    super::trim::merge_every_free();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let trimmer = tokio::spawn(trim_after_floods(
        slots.clone(),
        limits.max_connections.max(1),
    ));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors (or another transient error):
                    // back off instead of spinning; those held are freed
                    // by the header timeout.
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        match tls.clone() {
            None => {
                let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection closed: {e}");
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                let handshake = limits.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!("connection closed: {e}");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    trimmer.abort();
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("attache serve: requests still in flight after {DRAIN:?} were dropped");
    }
    Ok(())
}

/// Connections closed since the last trim that make another worth it.
const TRIM_AFTER: usize = 256;

/// Every few seconds, once many connections have closed since the last
/// look, gives the memory they held back to the system (see
/// [`super::trim`]), so that the server returns to its baseline after a
/// flood.
async fn trim_after_floods(slots: Arc<Semaphore>, max: usize) {
    let mut high = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let open = max.saturating_sub(slots.available_permits());
        high = high.max(open);
        if high - open >= TRIM_AFTER {
            super::trim::release_free_memory();
            high = open;
        }
    }
}

/// Raises the soft limit on open files to the hard one and returns what it
/// then is (`None` when it cannot be read): the server holds one descriptor
/// per connection, plus the repository's.
pub(super) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let l = getrlimit(Resource::Nofile);
    let below = match (l.current, l.maximum) {
        (Some(c), Some(m)) => c < m,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below {
        let raised = rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Descriptors kept for the repository, jobs and runners beside connections.
pub(super) const RESERVED_FDS: u64 = 256;

/// `wanted` connections, or fewer when the open-files limit `nofile`
/// leaves less room (never under 16).
pub(super) fn connections_within(wanted: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => {
            let room = n.saturating_sub(RESERVED_FDS).max(16);
            wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::connections_within;

    #[test]
    fn connections_fit_the_descriptor_limit() {
        assert_eq!(connections_within(10_000, Some(1024)), 768);
        assert_eq!(connections_within(100, Some(1 << 20)), 100);
        assert_eq!(connections_within(100, Some(10)), 16);
        assert_eq!(connections_within(100, None), 100);
    }
}
