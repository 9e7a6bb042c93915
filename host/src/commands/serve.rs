//! `attache serve [--listen ADDR]`

use anyhow::Context as _;

use crate::cli::{Cli, ServeArgs};
use crate::server::{serve, ConnLimits, Limits, ServerState};

pub(crate) fn run(cli: &Cli, a: &ServeArgs) -> anyhow::Result<()> {
    let token = match &cli.token_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("ATTACHE_TOKEN").unwrap_or_default(),
    };
    anyhow::ensure!(token.len() >= 16, "the server needs a bearer token of at least 16 characters: set ATTACHE_TOKEN or pass --token-file");
    let ctx = super::context(cli)?;
    // Fail now, not at the first request, when the repository cannot be opened.
    ctx.repository(true)?;
    // Undo what jobs of a server that died left attached in VMs.
    let journal = crate::hypervisor::journal::Journal::new(&ctx.state);
    for r in journal.recover(None)? {
        if r.complete {
            tracing::info!(session = %r.session, vm = %r.vm, "an interrupted job's container is detached and the guest cleaned");
        } else {
            tracing::warn!(session = %r.session, vm = %r.vm, "an interrupted job's cleanup is incomplete: {}", r.problems.join("; "));
        }
    }
    let state = ServerState::new(
        ctx,
        token,
        Limits {
            global: a.max_jobs,
            per_target: a.max_jobs_per_target,
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let conns = ConnLimits {
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_secs(a.header_timeout_secs.max(1)),
    };
    rt.block_on(serve(state, &a.listen, conns))
}
