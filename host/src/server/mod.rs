//! `attache serve`: a REST API over the repository and a queue of jobs.
//!
//! Every route but `/health` needs `Authorization: Bearer TOKEN`. Errors are
//! JSON objects `{"error": "..."}` with a 4xx or 5xx status. The API is
//! described by the OpenAPI document at `/openapi.json`.

mod auth;
mod error;
mod listener;
mod metrics;
mod openapi;
mod queue;
mod routes;
mod state;
mod trim;

pub(crate) use listener::ConnLimits;
pub(crate) use state::{Limits, ServerState};

use anyhow::Context as _;

/// Serves until interrupted (SIGINT or SIGTERM), within `conns` (lowered
/// to what the open-files limit, first raised to its hard limit, allows).
pub(crate) async fn serve(
    state: ServerState,
    listen: &str,
    conns: ConnLimits,
) -> anyhow::Result<()> {
    let nofile = listener::raise_nofile_limit();
    let max = listener::connections_within(conns.max_connections, nofile);
    if max < conns.max_connections {
        tracing::warn!(
            "at most {max} connections at once, not {}: the open-files limit is {}",
            conns.max_connections,
            nofile.unwrap_or_default()
        );
    }
    let conns = ConnLimits {
        max_connections: max,
        ..conns
    };
    let app = routes::router(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "attache serve: listening");
    eprintln!("attache: serving on http://{}", listener.local_addr()?);
    listener::serve_bounded(listener, app, conns, shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("attache serve: shutting down");
}
