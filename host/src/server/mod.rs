//! `attache serve`: a REST API over the repository and a queue of jobs.
//!
//! The web console is served at `/` (its files below `/ui/`).
//! Every other route but `/health` needs `Authorization: Bearer TOKEN`, and the
//! token's role must be one the route table (`roles.rs`) allows: admin,
//! operator (within its scope) or auditor. Errors are
//! JSON objects `{"error": "..."}` with a 4xx or 5xx status. The API is
//! described by the OpenAPI document at `/openapi.json`.

mod auth;
mod console;
mod error;
mod fair;
mod hypervisors;
mod listener;
mod metrics;
mod openapi;
mod policies;
pub(crate) mod queue;
mod roles;
mod routes;
mod scheduler;
mod state;
mod tags;
mod tls;
mod tree;
mod trim;
mod workers;

pub(crate) use listener::ConnLimits;
pub(crate) use policies::shown as shown_policy;
pub(crate) use state::{Limits, ServerState};
pub(crate) use tls::check_plain;

use anyhow::Context as _;

/// How the server speaks: TLS with a certificate and key, or plain HTTP
/// (on loopback addresses only, unless `insecure_http`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Transport {
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub insecure_http: bool,
}

/// Serves until interrupted (SIGINT or SIGTERM), within `conns` (lowered
/// to what the open-files limit, first raised to its hard limit, allows).
pub(crate) async fn serve(
    state: ServerState,
    listen: &str,
    conns: ConnLimits,
    transport: &Transport,
) -> anyhow::Result<()> {
    let tls = match (&transport.tls_cert, &transport.tls_key) {
        (Some(c), Some(k)) => Some(tls::acceptor(c, k)?),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
    };
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
    tokio::spawn(scheduler::run(
        state.queue.clone(),
        state.db.clone(),
        scheduler::TICK,
    ));
    if let Some(c) = state.ctx.cluster.clone() {
        let journal = crate::hypervisor::journal::Journal::for_context(&state.ctx);
        workers::spawn(state.queue.clone(), c, journal);
    }
    let app = routes::router(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    if tls.is_none() {
        check_plain(addr, transport.insecure_http)?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %addr, scheme, "attache serve: listening");
    eprintln!("attache: serving on {scheme}://{addr}");
    listener::serve_bounded(listener, app, conns, tls, shutdown()).await?;
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
