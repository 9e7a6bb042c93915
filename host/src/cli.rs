//! Command-line options of `attache`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Agentless, application-aware backup for virtual machines.
#[derive(Debug, Parser)]
#[command(name = "attache", version)]
pub struct Cli {
    /// The repository directory.
    #[arg(
        long,
        global = true,
        env = "ATTACHE_REPO",
        default_value = "./attache-repo"
    )]
    pub repo: PathBuf,
    /// The agent container directory (guest-runner, plugins, manifest);
    /// default: `agent/` next to the attache executable.
    #[arg(long, global = true, env = "ATTACHE_AGENT_DIR")]
    pub agent_dir: Option<PathBuf>,
    /// Where local runs cache compiled plugins; default:
    /// ~/.cache/attache/components.
    #[arg(long, global = true, env = "ATTACHE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Backs up items of a target into a new snapshot.
    Backup(BackupArgs),
    /// Lists the snapshots.
    Snapshots(SnapshotsArgs),
    /// Lists the items of a snapshot.
    Ls(LsArgs),
    /// Restores items of a snapshot.
    Restore(RestoreArgs),
    /// Builds the agent container.
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// What to back up: `local` runs the agent on this machine as the guest.
    pub target: String,
    /// The plugin that reads the application.
    #[arg(long)]
    pub plugin: String,
    /// An item to back up with everything below it (repeatable); for the
    /// filesystem plugin, a path.
    #[arg(long = "include", required = true)]
    pub include: Vec<String>,
    /// Print the result as JSON (an object with an `id` field).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The snapshot id, or a unique prefix of it.
    pub snapshot: String,
    /// Only items that are this id or lie below it.
    pub prefix: Option<String>,
    /// Print JSON (an array of objects with id, kind, size and metadata).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot id, or a unique prefix of it.
    pub snapshot: String,
    /// An item to restore with everything below it (repeatable); without
    /// it, the whole snapshot.
    #[arg(long = "item")]
    pub item: Vec<String>,
    /// Where to: `local` (the original place on this machine) or
    /// `local:DIR` (each item at its full path below DIR, as restic does).
    #[arg(long = "to")]
    pub to: String,
    /// Replace items that exist at the destination.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the runner's report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Lays out guest-runner and plugin components in a directory and
    /// writes their manifest.
    Assemble(AssembleArgs),
}

#[derive(Debug, Args)]
pub struct AssembleArgs {
    /// The guest-runner executable (static musl build).
    #[arg(long)]
    pub runner: PathBuf,
    /// A plugin component as NAME=PATH (repeatable).
    #[arg(long = "plugin", value_parser = parse_plugin, required = true)]
    pub plugins: Vec<(String, PathBuf)>,
    /// The container directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_plugin(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))?;
    guest_runner::manifest::check_name(name).map_err(|e| e.to_string())?;
    Ok((name.into(), path.into()))
}
