//! Command-line options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use guest_runner::runtime::{Grants, Limits};

/// Runs an Attaché plugin in a sandbox and streams a backup or restore.
#[derive(Debug, Parser)]
#[command(name = "guest-runner", version)]
pub struct Cli {
    /// The container directory holding manifest.json and plugins/ (default:
    /// the directory of this executable).
    #[arg(long, global = true, env = "ATTACHE_AGENT_DIR")]
    pub agent_dir: Option<PathBuf>,
    /// A directory, writable by the runner alone, where compiled plugins are
    /// cached so later runs start without compiling.
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Memory the plugin may use, in MiB; past it the plugin is stopped.
    #[arg(long, global = true, default_value_t = 512)]
    pub memory_limit_mib: u64,
    /// Wall-clock seconds the whole plugin run may take; past it the plugin
    /// is interrupted.
    #[arg(long, global = true, default_value_t = 6 * 3600)]
    pub deadline_secs: u64,
    /// An address (IP:PORT, or IP:0 for every port of that host) the plugin
    /// may connect to. Repeat for more. Without it the plugin has no network.
    #[arg(long = "allow-net", global = true)]
    pub allow_net: Vec<SocketAddr>,
    /// Log filter (error, warn, info, debug, trace); ATTACHE_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verifies the container and describes its plugins.
    Info(InfoArgs),
    /// Lists application items for the catalog, as JSON on stdout.
    Discover(DiscoverArgs),
    /// Backs up a selection into a stream.
    Backup(BackupArgs),
    /// Restores the items of a stream.
    Restore(RestoreArgs),
    /// Compiles plugin components ahead of time into the container
    /// (`plugins/NAME.cwasm`) and prints this runner's engine id.
    Precompile(PrecompileArgs),
}

#[derive(Debug, Args)]
pub struct PrecompileArgs {
    /// A plugin to compile (repeatable): `plugins/NAME.wasm` of the container.
    #[arg(long = "plugin", required = true)]
    pub plugins: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Describe only this plugin.
    #[arg(long)]
    pub plugin: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The plugin to run.
    #[arg(long)]
    pub plugin: String,
    /// A directory the plugin may read (repeatable).
    #[arg(long = "grant-read")]
    pub grant_read: Vec<PathBuf>,
    /// The item to list below; without it, the application's roots.
    #[arg(long)]
    pub scope: Option<String>,
    /// How many levels below the scope to list.
    #[arg(long, default_value_t = 0)]
    pub depth: u32,
    /// A plugin option KEY=VALUE (repeatable).
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// A plugin option KEY=VAR whose value is read from environment variable
    /// VAR (repeatable): for secrets such as a database password, which
    /// must not appear on a command line that every user can read.
    #[arg(long = "option-env", value_parser = parse_option_env)]
    pub option_env: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The plugin to run.
    #[arg(long)]
    pub plugin: String,
    /// A directory the plugin may read (repeatable); granted read-only.
    #[arg(long = "grant-read")]
    pub grant_read: Vec<PathBuf>,
    /// Also grant read-only what each path selection needs: a directory
    /// itself, anything else its parent directory. The server uses it for
    /// VMs, whose paths only the guest can look at.
    #[arg(long)]
    pub grant_selected: bool,
    /// The id of an item to back up with everything below it (repeatable).
    #[arg(long = "select", required = true)]
    pub select: Vec<String>,
    /// A plugin option KEY=VALUE (repeatable).
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// A plugin option KEY=VAR whose value is read from environment variable
    /// VAR (repeatable): for secrets such as a database password, which
    /// must not appear on a command line that every user can read.
    #[arg(long = "option-env", value_parser = parse_option_env)]
    pub option_env: Vec<(String, String)>,
    /// Run the plugin's quiesce before and thaw after the backup.
    #[arg(long)]
    pub quiesce: bool,
    /// The previous backup's catalog, one JSON item record per line: items
    /// whose change token still matches are referenced, not read again.
    #[arg(long, conflicts_with = "channel")]
    pub previous: Option<PathBuf>,
    /// Where the stream goes: a file, a character device (a virtio-serial
    /// port), or - for stdout.
    #[arg(long, default_value = "-", conflicts_with = "channel")]
    pub output: PathBuf,
    #[command(flatten)]
    pub channel: ChannelArgs,
    /// With --channel: after the plugin's quiesce, ask the server to freeze
    /// the guest's filesystems (it thaws them once the stream has arrived).
    #[arg(long, requires = "channel")]
    pub fsfreeze: bool,
}

/// The data channel to the server (see `guest_runner::channel`): used when
/// the runner runs inside a VM.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// The data channel device (e.g. /dev/virtio-ports/attache.data): the
    /// previous catalog comes in and the stream goes out (backup), or the
    /// stream comes in (restore).
    #[arg(long, requires = "session")]
    pub channel: Option<PathBuf>,
    /// The job's session id (32 hex digits), which both ends' hellos name.
    #[arg(long, requires = "channel")]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The plugin to run.
    #[arg(long)]
    pub plugin: String,
    /// The directory to restore below, granted read-write; items land at
    /// their full path beneath it (`/` restores to the original place).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Replace items that exist.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore item FROM under the id TO (repeatable; where the plugin
    /// supports renaming).
    #[arg(long = "rename", value_parser = parse_option)]
    pub rename: Vec<(String, String)>,
    /// A plugin option KEY=VALUE (repeatable).
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// A plugin option KEY=VAR whose value is read from environment variable
    /// VAR (repeatable): for secrets such as a database password, which
    /// must not appear on a command line that every user can read.
    #[arg(long = "option-env", value_parser = parse_option_env)]
    pub option_env: Vec<(String, String)>,
    /// Where the stream comes from: a file, a character device, or - for stdin.
    #[arg(long, default_value = "-", conflicts_with = "channel")]
    pub input: PathBuf,
    #[command(flatten)]
    pub channel: ChannelArgs,
}

fn parse_option_env(s: &str) -> Result<(String, String), String> {
    let (key, var) = parse_option(s)?;
    let value = std::env::var(&var)
        .map_err(|_| format!("--option-env {key}={var}: environment variable {var} is not set"))?;
    Ok((key, value))
}

/// `--option` and `--option-env` together, in that order.
pub fn all_options(
    options: &[(String, String)],
    env: &[(String, String)],
) -> Vec<(String, String)> {
    options.iter().chain(env).cloned().collect()
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl Cli {
    pub fn limits(&self) -> Limits {
        Limits {
            memory: usize::try_from(self.memory_limit_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            deadline: Duration::from_secs(self.deadline_secs),
        }
    }

    pub fn grants(&self, read: &[PathBuf], write_root: Option<&PathBuf>) -> Grants {
        Grants {
            read: read.to_vec(),
            write_root: write_root.cloned(),
            net: self.allow_net.clone(),
        }
    }
}
