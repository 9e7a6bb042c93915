//! `attache serve [--listen ADDR] [--tls-cert FILE --tls-key FILE]`

use anyhow::Context as _;

use crate::cli::{Cli, ServeArgs};
use crate::server::{serve, ConnLimits, Limits, ServerState, Transport};

pub(crate) fn run(cli: &Cli, a: &ServeArgs) -> anyhow::Result<()> {
    let token = match &cli.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("ATTACHE_TOKEN").unwrap_or_default(),
    };
    // Refused before anything is opened: plain HTTP off loopback.
    if a.tls_cert.is_none() && !a.insecure_http {
        use std::net::ToSocketAddrs;
        let addrs = a
            .listen
            .to_socket_addrs()
            .with_context(|| format!("--listen {}: not an address", a.listen))?;
        for addr in addrs {
            crate::server::check_plain(addr, false)?;
        }
    }
    let mut ctx = super::context(cli)?;
    let token = Some(token).filter(|t| !t.is_empty());
    if let Some(t) = &token {
        anyhow::ensure!(
            t.len() >= 16,
            "the server's single token (ATTACHE_TOKEN or --token-file) must have at least 16 characters"
        );
    }
    let stored = crate::access::tokens::Store::new(&ctx.state).list()?;
    anyhow::ensure!(
        token.is_some() || !stored.is_empty(),
        "the server needs a token: create one with `attache token create --role admin` (in the same state directory), or set ATTACHE_TOKEN or pass --token-file"
    );
    // Fail now, not at the first request, when the repository cannot be opened.
    ctx.repository(true)?;
    let owner = crate::db::owner::Owner::claim(&ctx.state)?;
    // On a shared PostgreSQL state database this server is one of its
    // workers, under its queue's id.
    if let Some(url) = ctx.state_db.as_deref().filter(|u| !u.is_empty()) {
        let lapse = crate::db::cluster::lapse_from_env();
        let cluster = crate::db::cluster::Cluster::open(url, &owner.id, lapse)?;
        cluster.register()?;
        tracing::info!(worker = %owner.id, lapse_secs = lapse.as_secs(), "attache serve: a worker on the shared state database");
        ctx.cluster = Some(cluster);
    }
    // Undo what jobs of a server that died left attached in VMs (with
    // workers: in the shared journal, where no live worker's job holds
    // the VM).
    let journal = crate::hypervisor::journal::Journal::for_context(&ctx);
    for r in journal.recover(None)? {
        if r.complete {
            tracing::info!(session = %r.session, vm = %r.vm, "an interrupted job's container is detached and the guest cleaned");
        } else {
            tracing::warn!(session = %r.session, vm = %r.vm, "an interrupted job's cleanup is incomplete: {}", r.problems.join("; "));
        }
    }
    // After that cleanup: the jobs a dead server (or `policy run`) left
    // queued or running are marked interrupted in the history; those of a
    // queue that still runs are not.
    // (With workers, a dead worker's jobs are marked by the live worker
    // that reaps it, once its heartbeat has lapsed: see db::cluster.)
    let db = ctx.db()?;
    let state_dir = ctx.state.clone();
    let shared = crate::db::shared(ctx.state_db.as_deref());
    let alive = move |id: Option<&str>| crate::db::owner::alive(&state_dir, id, shared);
    let now = crate::server::queue::now();
    let gone = match &ctx.cluster {
        // The jobs no worker handles (an older server's, `policy run`'s).
        Some(c) => c.interrupt_unworked(now, &alive)?,
        None => db.interrupt_unfinished(now, &alive)?,
    };
    for id in &gone {
        tracing::warn!(job = %id, "a job of a server that stopped is marked interrupted");
    }
    let state = ServerState::new(
        ctx,
        token,
        Limits {
            global: a.max_jobs,
            per_target: a.max_jobs_per_target,
            per_hypervisor: a.max_jobs_per_hypervisor,
            per_datastore: a.max_jobs_per_datastore,
        },
        db,
        owner,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let conns = ConnLimits {
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_secs(a.header_timeout_secs.max(1)),
    };
    let transport = Transport {
        tls_cert: a.tls_cert.clone(),
        tls_key: a.tls_key.clone(),
        insecure_http: a.insecure_http,
    };
    // The interrupted jobs whose policy says so run again.
    let queue = state.queue.clone();
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || queue.retry_interrupted(&gone)).await
    })?;
    rt.block_on(serve(state, &a.listen, conns, &transport))
}
