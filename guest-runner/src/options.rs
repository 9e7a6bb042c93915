//! Command-line options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs an Attaché plugin in a sandbox and streams a backup or restore.
#[derive(Debug, Parser)]
#[command(name = "guest-runner", version)]
pub(crate) struct Cli {
    /// The container directory holding manifest.json and plugins/ (default:
    /// the directory of this executable).
    #[arg(long, global = true, env = "ATTACHE_AGENT_DIR")]
    pub agent_dir: Option<PathBuf>,
    /// A directory, writable by the runner alone, where compiled plugins are
    /// cached so later runs start without compiling.
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Memory the plugin may use, in MiB, over all its memories; past it
    /// the plugin is stopped. Default: what its plan expects, else 512; the
    /// policy's ceiling bounds it.
    #[arg(long, global = true)]
    pub memory_limit_mib: Option<u64>,
    /// Wall-clock seconds the whole plugin run may take; past it the plugin
    /// is interrupted. Default: what its plan expects, else 6 hours; the
    /// policy's ceiling bounds it.
    #[arg(long, global = true)]
    pub deadline_secs: Option<u64>,
    /// The policy file (TOML) that bounds every plan; default: the shipped
    /// policy.
    #[arg(long, global = true, conflicts_with = "policy_inline")]
    pub policy: Option<PathBuf>,
    /// The policy's text itself (the server passes its policy this way to
    /// a runner in a guest).
    #[arg(long, global = true)]
    pub policy_inline: Option<String>,
    /// Where `--policy-inline`'s text came from, for messages (the
    /// server's policy file).
    #[arg(long, global = true, requires = "policy_inline")]
    pub policy_origin: Option<String>,
    /// The trust file (TOML): which publisher keys may sign the runner and
    /// each plugin. Without it (or `--trust-inline`), no key is trusted and
    /// every container is refused unless `--allow-unsigned`.
    #[arg(long, global = true, env = "ATTACHE_TRUST")]
    pub trust: Option<PathBuf>,
    /// The trust file's text itself (the server hands its trust to a
    /// runner in a guest this way); it takes precedence over `--trust`.
    #[arg(long, global = true)]
    pub trust_inline: Option<String>,
    /// Where `--trust-inline`'s text came from, for messages.
    #[arg(long, global = true, requires = "trust_inline")]
    pub trust_origin: Option<String>,
    /// Run plugins of unsigned or wrongly signed containers anyway (a
    /// warning says so).
    #[arg(long, global = true)]
    pub allow_unsigned: bool,
    /// Log filter (error, warn, info, debug, trace); ATTACHE_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Verifies the container and describes its plugins.
    Info(InfoArgs),
    /// Lists application items for the catalog, as JSON on stdout.
    Discover(DiscoverArgs),
    /// Prints what a job would need (the plugin's access plan) as JSON.
    Plan(PlanArgs),
    /// Backs up a selection into a stream.
    Backup(BackupArgs),
    /// Restores the items of a stream.
    Restore(RestoreArgs),
    /// Compiles plugin components ahead of time into the container
    /// (`plugins/NAME.cwasm`) and prints this runner's engine id.
    Precompile(PrecompileArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PrecompileArgs {
    /// A plugin to compile (repeatable): `plugins/NAME.wasm` of the container.
    #[arg(long = "plugin", required = true)]
    pub plugins: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Describe only this plugin.
    #[arg(long)]
    pub plugin: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The plugin to run.
    #[arg(long)]
    pub plugin: String,
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
    /// With `--channel`, the entries go to the server as the channel's
    /// reply instead of standard output.
    #[command(flatten)]
    pub channel: ChannelArgs,
}

/// Which call a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OperationArg {
    /// `discover`: `--select` is the scope, if any.
    Discover,
    /// `backup`: `--select` names the items to back up.
    Backup,
    /// `restore`: `--select` names the top items to restore.
    Restore,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The plugin to ask.
    #[arg(long)]
    pub plugin: String,
    /// The call the plan is for.
    #[arg(long)]
    pub operation: OperationArg,
    /// An item id (repeatable).
    #[arg(long = "select")]
    pub select: Vec<String>,
    /// An item's kind, ID=KIND (repeatable; restores know them from the
    /// catalog): directory, file, symlink, database, table, mailbox, ...
    #[arg(long = "select-kind", value_parser = parse_kind)]
    pub select_kind: Vec<(String, String)>,
    /// Restores: the root the items go below (`/` or absent: their
    /// original place).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Restores: item FROM goes under the id TO (repeatable).
    /// FROM is a `--select`ed id, which may itself hold `=` (the longest
    /// selected id that FROM=TO starts with wins; else the first `=` splits).
    #[arg(long = "rename")]
    pub rename: Vec<String>,
    /// A plugin option KEY=VALUE (repeatable).
    #[arg(long = "option", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// A plugin option KEY=VAR whose value is read from environment variable
    /// VAR (repeatable).
    #[arg(long = "option-env", value_parser = parse_option_env)]
    pub option_env: Vec<(String, String)>,
    /// Also check the plan against the policy, and fail naming the rule
    /// when it is refused.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The plugin to run.
    #[arg(long)]
    pub plugin: String,
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
    /// A check for plugin authors (`attache plugin test`): after a
    /// successful quiesce, drop the instance as if it had crashed, thaw in
    /// a fresh instance with the state quiesce returned, and stop without
    /// backing up (exit 0 when that thaw worked).
    #[arg(long, requires = "quiesce", conflicts_with = "channel")]
    pub fail_after_quiesce: bool,
    /// With --channel: after the plugin's quiesce, ask the server to freeze
    /// the guest's filesystems (it thaws them once the stream has arrived).
    #[arg(long, requires = "channel")]
    pub fsfreeze: bool,
    /// With --fsfreeze: the longest the filesystems may stay frozen, in
    /// seconds. If the server has not said it thawed them by then (it died,
    /// say), the runner thaws them itself.
    #[arg(long, default_value_t = 10)]
    pub freeze_limit_secs: u64,
}

/// The data channel to the server (see `guest_runner::channel`): used when
/// the runner runs inside a VM.
#[derive(Debug, Args)]
pub(crate) struct ChannelArgs {
    /// The data channel device (e.g. /dev/virtio-ports/attache.data): the
    /// previous catalog comes in and the stream goes out (backup), the
    /// stream comes in (restore), or the entries go out (discover).
    #[arg(long, requires = "session")]
    pub channel: Option<PathBuf>,
    /// The job's session id (32 hex digits), which both ends' hellos name.
    #[arg(long, requires = "channel")]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
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
    /// FROM is a `--select`ed id, which may itself hold `=` (the longest
    /// selected id that FROM=TO starts with wins; else the first `=` splits).
    #[arg(long = "rename")]
    pub rename: Vec<String>,
    /// A top item being restored (repeatable): what the plugin's plan is
    /// made for; the stream holds these and what lies below them.
    #[arg(long = "select")]
    pub select: Vec<String>,
    /// The kind of a top item being restored, ID=KIND (repeatable): what
    /// the plugin's plan needs to know to ask for the right paths.
    #[arg(long = "select-kind", value_parser = parse_kind)]
    pub select_kind: Vec<(String, String)>,
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
pub(crate) fn all_options(
    options: &[(String, String)],
    env: &[(String, String)],
) -> Vec<(String, String)> {
    options.iter().chain(env).cloned().collect()
}

/// `ID=KIND`: a kind is one word, so the last `=` splits (an id may hold
/// `=` of its own).
fn parse_kind(s: &str) -> Result<(String, String), String> {
    s.rsplit_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected ID=KIND, got {s:?}"))
}

/// `--rename FROM=TO` pairs: FROM is the longest of the selected ids that
/// the argument starts with followed by `=`, since ids may hold `=`
/// themselves; without one, the first `=` splits.
pub(crate) fn renames(
    raw: &[String],
    selected: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|r| {
            let from = selected
                .iter()
                .filter(|s| {
                    r.len() > s.len() && r.starts_with(s.as_str()) && r.as_bytes()[s.len()] == b'='
                })
                .max_by_key(|s| s.len());
            match from {
                Some(f) => Ok((f.clone(), r[f.len() + 1..].to_owned())),
                None => parse_option(r).map_err(|e| anyhow::anyhow!("--rename: {e}")),
            }
        })
        .collect()
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl Cli {
    /// The policy in force: `--policy-inline`, `--policy`, or the shipped one.
    pub(crate) fn policy(&self) -> anyhow::Result<guest_runner::policy::Policy> {
        use guest_runner::policy::Policy;
        if let Some(text) = &self.policy_inline {
            let origin = self.policy_origin.as_deref().unwrap_or("the job's policy");
            return Ok(Policy::parse(text, origin)?);
        }
        if let Some(path) = &self.policy {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the policy {}: {e}", path.display()))?;
            return Ok(Policy::parse(&text, &path.display().to_string())?);
        }
        Ok(Policy::shipped())
    }

    /// The trust in force: `--trust-inline`, `--trust`, or nobody; with
    /// `--allow-unsigned`, unsigned containers are allowed.
    pub(crate) fn trust(&self) -> anyhow::Result<guest_runner::trust::Trust> {
        use guest_runner::trust::Trust;
        let trust = if let Some(text) = &self.trust_inline {
            let origin = self.trust_origin.as_deref().unwrap_or("the job's trust");
            Trust::parse(text, origin)?
        } else if let Some(path) = &self.trust {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the trust file {}: {e}", path.display())
            })?;
            Trust::parse(&text, &path.display().to_string())?
        } else {
            Trust::none("no trust given (--trust or --trust-inline)")
        };
        Ok(if self.allow_unsigned {
            trust.allowing_unsigned()
        } else {
            trust
        })
    }

    /// The limits the job asks for.
    pub(crate) fn job_limits(&self) -> guest_runner::policy::JobLimits {
        guest_runner::policy::JobLimits {
            memory_mib: self.memory_limit_mib,
            deadline_secs: self.deadline_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_kind, renames};

    #[test]
    fn ids_holding_equals_signs_split_where_the_selection_says() {
        let msg = "app://u@h/INBOX/;V=5/;N=1".to_owned();
        let sel = vec![msg.clone()];
        let raw = vec![format!("{msg}=app://v@h/Restored")];
        assert_eq!(
            renames(&raw, &sel).unwrap(),
            vec![(msg.clone(), "app://v@h/Restored".to_owned())]
        );
        // The longest selected id wins; none selected: the first `=`.
        let sel = vec!["app://u@h/INBOX/;V".to_owned(), msg.clone()];
        assert_eq!(renames(&raw, &sel).unwrap()[0].0, msg);
        assert_eq!(
            renames(&["/a=/b=c".to_owned()], &[]).unwrap(),
            vec![("/a".to_owned(), "/b=c".to_owned())]
        );
        assert!(renames(&["no-equals".to_owned()], &[]).is_err());
        assert_eq!(
            parse_kind(&format!("{msg}=message")).unwrap(),
            (msg, "message".to_owned())
        );
    }
}
