//! One file per `attache` command.

pub mod backup;
pub mod container;
pub mod find;
pub mod forget;
pub mod init;
pub mod ls;
pub mod prune;
pub mod restore;
pub mod snapshots;
pub mod verify;

use std::path::PathBuf;

use crate::agent::{self, LocalRunner};
use crate::cli::Cli;
use crate::repo::{Password, Repository};

/// Attaché's local cache directory.
pub fn cache(cli: &Cli) -> PathBuf {
    cli.cache_dir
        .clone()
        .or_else(agent::default_cache)
        .unwrap_or_else(|| PathBuf::from(".attache-cache"))
}

/// The local runner of the agent container this command uses.
pub fn local_runner(cli: &Cli) -> anyhow::Result<LocalRunner> {
    Ok(LocalRunner {
        dir: agent::find(cli.agent_dir.as_deref())?,
        cache_dir: Some(cache(cli).join("components")),
    })
}

/// The repository, created if missing when `create` (and a password is set).
pub fn repository(cli: &Cli, create: bool) -> anyhow::Result<Repository> {
    Repository::open(
        &cli.repo,
        &Password {
            file: cli.password_file.clone(),
        },
        &cache(cli),
        create,
    )
}
