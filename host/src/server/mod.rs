//! `attache serve`: a REST API over the repository and a queue of jobs.
//!
//! Every route but `/health` needs `Authorization: Bearer TOKEN`. Errors are
//! JSON objects `{"error": "..."}` with a 4xx or 5xx status. The API is
//! described by the OpenAPI document at `/openapi.json`.

mod auth;
mod error;
mod metrics;
mod openapi;
mod queue;
mod routes;
mod state;

pub use state::{Limits, ServerState};

use anyhow::Context as _;

/// Serves until interrupted (SIGINT or SIGTERM).
pub async fn serve(state: ServerState, listen: &str) -> anyhow::Result<()> {
    let app = routes::router(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "attache serve: listening");
    eprintln!("attache: serving on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
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
