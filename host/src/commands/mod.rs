//! One file per `attache` command.

pub mod backup;
pub mod container;
pub mod ls;
pub mod restore;
pub mod snapshots;

use crate::agent::{self, LocalRunner};
use crate::cli::Cli;

/// The local runner of the agent container this command uses.
pub fn local_runner(cli: &Cli) -> anyhow::Result<LocalRunner> {
    Ok(LocalRunner {
        dir: agent::find(cli.agent_dir.as_deref())?,
        cache_dir: cli.cache_dir.clone().or_else(agent::default_cache),
    })
}
