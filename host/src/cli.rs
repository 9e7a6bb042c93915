//! Command-line options of `attache`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Agentless, application-aware backup for virtual machines.
#[derive(Debug, Parser)]
#[command(name = "attache", version)]
pub(crate) struct Cli {
    /// The repository: a directory, or an S3-compatible bucket and prefix
    /// as `s3://BUCKET/PREFIX` (endpoint, region and credentials from
    /// --s3-endpoint and --s3-region or the AWS_* variables:
    /// AWS_ENDPOINT_URL, AWS_REGION or AWS_DEFAULT_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
    /// AWS_SKIP_SIGNATURE=true for a bucket open to anonymous requests).
    #[arg(
        long,
        global = true,
        env = "ATTACHE_REPO",
        default_value = "./attache-repo"
    )]
    pub repo: PathBuf,
    /// The S3 endpoint of an `s3://` repository, e.g.
    /// `http://127.0.0.1:8333` (SeaweedFS, MinIO, Ceph); requests address
    /// the bucket by path. Default: AWS_ENDPOINT_URL, else AWS itself.
    #[arg(long, global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The S3 region of an `s3://` repository. Default: AWS_REGION or
    /// AWS_DEFAULT_REGION, else us-east-1.
    #[arg(long, global = true)]
    pub s3_region: Option<String>,
    /// The agent container directory (guest-runner, plugins, manifest);
    /// default: `agent/` next to the attache executable.
    #[arg(long, global = true, env = "ATTACHE_AGENT_DIR")]
    pub agent_dir: Option<PathBuf>,
    /// Attaché's local cache: compiled plugins and the catalog of each
    /// repository (rebuilt from the repository when missing); default:
    /// ~/.cache/attache.
    #[arg(long, global = true, env = "ATTACHE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where Attaché keeps the registered hypervisors and the journal of
    /// what it has attached to which VM; default: ~/.local/state/attache.
    #[arg(long, global = true, env = "ATTACHE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The state database (jobs and their history, backup policies, VM
    /// tags, each VM's last result) on a PostgreSQL server, to share it
    /// between several servers:
    /// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. The password
    /// comes from the URL, else from PGPASSWORD, and is never printed. The
    /// user needs to create tables in its schema; a database holding
    /// another application's tables is refused. Default: `state.db`
    /// (SQLite) in the state directory. Hypervisors and tokens stay in the
    /// state directory. Every `attache serve` on one such database is a
    /// worker: jobs posted to any are claimed by any (SKIP LOCKED), VM
    /// locks and the attachment journal are in the database, and a worker
    /// whose heartbeat lapses (10 s, ATTACHE_WORKER_LAPSE=SECONDS) is
    /// cleaned up after by a live one.
    #[arg(long, global = true, env = "ATTACHE_STATE_DB", hide_env_values = true)]
    pub state_db: Option<String>,
    /// A file holding the repository password (its first line). Without it,
    /// the password comes from ATTACHE_PASSWORD.
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Talk to an `attache serve` at this URL instead of opening the
    /// repository directly (backup, restore, snapshots, ls, find).
    #[arg(long, global = true, env = "ATTACHE_SERVER")]
    pub server: Option<String>,
    /// A file holding the server's bearer token; without it the token comes
    /// from ATTACHE_TOKEN. For `serve`, a single admin token beside those
    /// of `attache token create`.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an `https://` --server, beside
    /// none other: a private CA's.
    #[arg(long, global = true, env = "ATTACHE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The plugin policy (TOML) every job's plan is checked against;
    /// default: `policy.toml` in the state directory if it exists, else the
    /// shipped policy (`attache policy show` prints the one in force).
    /// Given before the subcommand (`attache --policy FILE backup …`):
    /// after it, `attache jobs --policy` names a backup policy.
    #[arg(long, env = "ATTACHE_POLICY")]
    pub policy: Option<PathBuf>,
    /// The trust file (TOML): which publisher keys may sign the runner and
    /// each plugin; default: `trust.toml` in the state directory if it
    /// exists, else `trust.toml` beside the attache executable (where
    /// `make build` puts its development key's), else none, and every
    /// container is refused (`attache policy show` prints the one in force).
    #[arg(long, global = true, env = "ATTACHE_TRUST")]
    pub trust: Option<PathBuf>,
    /// Use unsigned or wrongly signed containers anyway, with a warning in
    /// the log; `attache policy show` says so, and the audit log records
    /// the change and each job it applies to. Also `allow_unsigned = true`
    /// in the trust file.
    #[arg(long, global = true, env = "ATTACHE_ALLOW_UNSIGNED")]
    pub allow_unsigned: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Creates a repository: encrypted with the password from
    /// ATTACHE_PASSWORD or --password-file, or unencrypted when asked.
    Init(InitArgs),
    /// Backs up items of a target into a new snapshot.
    Backup(BackupArgs),
    /// Lists what there is to protect in a VM: attaches the container, runs
    /// the plugins' discover in the guest, and detaches.
    Discover(DiscoverArgs),
    /// Lists the snapshots.
    Snapshots(SnapshotsArgs),
    /// Lists the items of a snapshot.
    Ls(LsArgs),
    /// Restores items of a snapshot.
    Restore(RestoreArgs),
    /// Finds which snapshots hold items matching a pattern.
    Find(FindArgs),
    /// Checks the repository's structure and, with --read-data, every chunk.
    Verify(VerifyArgs),
    /// Removes snapshots a retention policy does not keep.
    Forget(ForgetArgs),
    /// Removes data no snapshot references.
    Prune,
    /// Repairs a damaged repository (after restic's `repair`).
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// Serves the REST API and runs jobs.
    Serve(ServeArgs),
    /// Builds the agent container.
    Container {
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// Registers and lists hypervisors.
    Hypervisor {
        #[command(subcommand)]
        command: HypervisorCommand,
    },
    /// Lists the VMs of the registered hypervisors, and tags them.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Makes publisher keys that sign containers.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Backup policies (which VMs, what, when, how many snapshots to
    /// keep), and the plugin policy and trust in force (`policy show`).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// API tokens of `attache serve`: each with a role (admin, operator,
    /// auditor) and, for operators, a scope. Works on the state directory,
    /// or through --server (admins only).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The job history (the state database): every job a server ran or
    /// queued, newest first, also after restarts. Works on the state
    /// directory, without a server, or through --server.
    Jobs(JobsArgs),
    /// The audit log: who did what. Shows it, or with `verify` checks its
    /// hash chain.
    Audit(AuditArgs),
    /// Tools for plugin authors: a new plugin crate, a contract check.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Creates a token and prints it, once: only its hash is kept.
    Create(TokenCreateArgs),
    /// Lists the tokens (ids, roles and scopes; never the tokens).
    List(JsonArgs),
    /// Revokes a token: it stops working at once.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    /// What the token may do: `admin` everything; `operator` backups and
    /// restores within its scope; `auditor` read snapshots, jobs and the
    /// audit log, and change nothing.
    #[arg(long, value_enum)]
    pub role: crate::access::Role,
    /// Operators: the targets it may back up and restore to, as globs over
    /// target names (`local`, `hv1/vm1`, `hv1/*`); at least one.
    #[arg(long, num_args = 1.., value_name = "GLOB")]
    pub targets: Vec<String>,
    /// Operators: the absolute directories restores may write below (a
    /// restore to the original place counts as below `/`); without it the
    /// operator cannot restore.
    #[arg(long, num_args = 1.., value_name = "PREFIX")]
    pub restore_to: Vec<String>,
    /// Print JSON (with the token in `token`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TokenRevokeArgs {
    /// The token's id (as `token list` shows it).
    pub id: String,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only entries from this time (`2026-11-30T04:00:00Z`) or this long
    /// ago (`2h`, `30min`, `7days`) on.
    #[arg(long)]
    pub since: Option<String>,
    /// Print the entries as JSON lines, as stored.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Checks the hash chain of the state directory's audit log: an
    /// edited, removed or reordered line fails the check, named by its
    /// line number. Prints the last line's hash: keep a copy elsewhere to
    /// detect a cut tail later.
    Verify(JsonArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Makes an Ed25519 publisher key pair: `DIR/NAME.key` (private, mode
    /// 0600) and `DIR/NAME.pub`; never replaces an existing key. Prints the
    /// key's id and the trust file entry for it.
    Generate(KeyGenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeyGenerateArgs {
    /// The directory to write the key files in (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The key files' name.
    #[arg(long, default_value = "publisher")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Without NAME: prints the plugin policy in force: per plugin, what it
    /// may read, write and reach, and its memory, time and quiesce
    /// ceilings; then the trust in force: which publisher keys may sign
    /// what, and whether unsigned containers are allowed. With NAME: the
    /// backup policy NAME, its last jobs and the next time it runs.
    Show(PolicyShowArgs),
    /// Adds a backup policy; `attache serve` runs it on its schedule.
    /// Works on the state directory (a running server sees it at once), or
    /// through --server (admins).
    Add(PolicyAddArgs),
    /// Lists the backup policies.
    List(JsonArgs),
    /// Removes a backup policy (its snapshots and job history stay).
    Remove(PolicyNameArgs),
    /// Runs a backup policy now: one backup per VM it selects, at once
    /// within the concurrency limits, then its retention on its own
    /// snapshots. Through --server the server runs it (and this waits
    /// for its jobs unless --no-wait); without, it runs here, with the
    /// server's default limits.
    Run(PolicyRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PolicyShowArgs {
    /// A backup policy's name; without it, the plugin policy and trust.
    pub name: Option<String>,
    /// Print the policy file's text instead of the summary.
    #[arg(long, conflicts_with = "name")]
    pub raw: bool,
    /// With NAME: print JSON.
    #[arg(long, requires = "name")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyNameArgs {
    /// The backup policy's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyAddArgs {
    /// The policy's name: letters, digits, '.', '_' and '-'. Its snapshots
    /// carry it, and its retention goes by it.
    pub name: String,
    /// The VMs it backs up (repeatable, or several at once): `HV/VM` with
    /// globs (`hv1/*`, `*/db-?`) over the VMs the registered hypervisors
    /// have when it runs, or `tag:NAME` for the VMs `attache vm tag` gave
    /// that tag.
    #[arg(long, required = true, num_args = 1.., value_name = "SELECTOR")]
    pub vms: Vec<String>,
    /// The plugin that reads the application.
    #[arg(long)]
    pub plugin: String,
    /// An item to back up in each VM (repeatable, or several at once).
    #[arg(long, required = true, num_args = 1.., value_name = "ID")]
    pub include: Vec<String>,
    /// A plugin option KEY=VALUE (repeatable).
    #[arg(long = "option", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// When `attache serve` runs it: cron, in UTC: `MIN HOUR DOM MON DOW`
    /// (`0 3 * * *` at 03:00 every day), or six fields with seconds first
    /// (`*/30 * * * * *`). A server that was down at that time runs it
    /// once when back.
    #[arg(long)]
    pub schedule: String,
    /// After each run, keep the N newest of its snapshots of each VM.
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    /// After each run, keep its newest snapshot of each of the last N days.
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    /// After each run, keep its newest snapshot of each of the last N weeks.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    /// After each run, keep its newest snapshot of each of the last N
    /// months. Without any --keep-*, its snapshots are all kept.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: usize,
    /// Run a job of it again, up to N times, when it was interrupted (its
    /// server or worker died under it; with several workers another
    /// worker runs it). A job that failed is not run again.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyRunArgs {
    /// The backup policy's name.
    pub name: String,
    /// Through --server: return once the jobs are queued.
    #[arg(long)]
    pub no_wait: bool,
    /// Print JSON (the jobs).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Only jobs this backup policy started. (The plugin policy file is
    /// `attache --policy FILE jobs …`, before the subcommand.)
    #[arg(long = "policy", value_name = "POLICY")]
    pub policy_name: Option<String>,
    /// Only jobs of this target (`HV/VM`, `local`).
    #[arg(long)]
    pub vm: Option<String>,
    /// Only jobs that failed or were interrupted.
    #[arg(long)]
    pub failed: bool,
    /// At most this many, newest first.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Makes a new plugin crate, on the SDK, that builds outside this
    /// repository with `cargo build --release --target wasm32-wasip2`.
    New(PluginNewArgs),
    /// Checks a plugin component against the contract in a temporary
    /// container and prints a report: discover, plan, quiesce and thaw
    /// pairing, backup, full and single-item restore, ids and errors.
    Test(PluginTestArgs),
    /// Describes the plugins of the agent container: version, contract,
    /// options.
    Info,
}

#[derive(Debug, Args)]
pub(crate) struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits, '-' and '_'.
    pub name: String,
    /// The directory to create the crate in (as DIR/NAME); default: the
    /// current directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct PluginTestArgs {
    /// The plugin component to check (`.wasm`).
    pub component: PathBuf,
    /// The plugin's name; default: the file's stem without `attache_plugin_`.
    #[arg(long)]
    pub name: Option<String>,
    /// An item to back up and restore (repeatable); default: what discover
    /// lists at the top.
    #[arg(long = "include")]
    pub include: Vec<String>,
    /// A plugin option KEY=VALUE for every call (repeatable).
    #[arg(long = "option", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `KEY=VALUE`.
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum RepairCommand {
    /// Rebuilds the index from the packs: reads every pack, checks every
    /// chunk, and indexes only what is intact.
    Index(JsonArgs),
    /// Rewrites snapshots whose data is partly gone (keeping the intact
    /// items) and removes those whose file or item list is gone.
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RepairSnapshotsArgs {
    /// Only show what would be removed or rewritten.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HypervisorCommand {
    /// Registers a hypervisor and puts the current container on the fewest
    /// of its datastores that reach all its VMs.
    Add(HypervisorAddArgs),
    /// Lists the registered hypervisors and the containers on their
    /// datastores.
    List(JsonArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum VmCommand {
    /// Lists every VM of every registered hypervisor, with its run state,
    /// whether its guest agent answers, its tags and its last backup.
    List(JsonArgs),
    /// Gives a VM tags, which policies select with `--vms tag:NAME`.
    Tag(VmTagArgs),
    /// Takes tags from a VM.
    Untag(VmTagArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VmTagArgs {
    /// The VM: `HYPERVISOR/VM`.
    pub target: String,
    /// Tags: letters, digits, '.', '_' and '-'.
    #[arg(required = true)]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct JsonArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HypervisorAddArgs {
    /// The hypervisor's name, the first part of `HYPERVISOR/VM` targets.
    pub name: String,
    /// How Attaché talks to it: `qemu` (needs `--vm-dir`) or `libvirt`
    /// (needs `--uri`).
    #[arg(long, value_enum)]
    pub driver: crate::hypervisor::registry::Driver,
    /// QEMU: the directory holding its VMs' sockets (`V.qmp`, `V.qga`,
    /// `V.data` for a VM named V).
    #[arg(long, required_if_eq("driver", "qemu"), conflicts_with = "uri")]
    pub vm_dir: Option<PathBuf>,
    /// libvirt: the connection URI whose domains are its VMs, e.g.
    /// `qemu:///system` (`?socket=PATH` for a libvirtd on another socket).
    /// Each domain needs a virtio-scsi controller, the guest agent's channel
    /// and a virtio-serial channel named `attache.data` on a Unix socket.
    #[arg(long, required_if_eq("driver", "libvirt"))]
    pub uri: Option<String>,
    /// A directory the hypervisor can attach containers from (repeatable):
    /// `DIR` reaches every VM, `DIR=VM1,VM2` only those.
    #[arg(long = "datastore", required = true, value_parser = parse_datastore)]
    pub datastores: Vec<crate::hypervisor::registry::Datastore>,
}

fn parse_datastore(s: &str) -> Result<crate::hypervisor::registry::Datastore, String> {
    let (dir, vms) = match s.split_once('=') {
        Some((d, v)) => {
            let vms: Vec<String> = v.split(',').map(str::to_owned).collect();
            for vm in &vms {
                crate::hypervisor::check_name("VM", vm).map_err(|e| e.to_string())?;
            }
            (d, Some(vms))
        }
        None => (s, None),
    };
    if dir.is_empty() {
        return Err("empty datastore directory".into());
    }
    let dir = std::path::absolute(dir).map_err(|e| format!("datastore {dir:?}: {e}"))?;
    Ok(crate::hypervisor::registry::Datastore { dir, vms })
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Store data unencrypted (anyone who can read the repository can read
    /// the backups).
    #[arg(long)]
    pub no_encryption: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8427")]
    pub listen: String,
    /// Jobs that may run at once in all. Queued jobs start fairly: the
    /// hypervisors' queues take turns, and each is first in, first out
    /// (skipping jobs whose VM or datastore is busy).
    #[arg(long, default_value_t = crate::server::Limits::default().global)]
    pub max_jobs: usize,
    /// Jobs that may run at once on one target (a VM, or `local`).
    #[arg(long, default_value_t = crate::server::Limits::default().per_target)]
    pub max_jobs_per_target: usize,
    /// Jobs that may run at once on the VMs of one hypervisor: what a
    /// fleet run (`attache policy run`) asks of one host at a time.
    #[arg(long, default_value_t = crate::server::Limits::default().per_hypervisor)]
    pub max_jobs_per_hypervisor: usize,
    /// Jobs that may run at once with their container attached from one
    /// datastore (a directory of `hypervisor add --datastore`): the reads
    /// one storage serves at a time.
    #[arg(long, default_value_t = crate::server::Limits::default().per_datastore)]
    pub max_jobs_per_datastore: usize,
    /// Connections open at once; more wait until one closes (lowered to
    /// what the open-files limit allows, after raising it to the hard limit).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers (after its TLS
    /// handshake, which gets as long), and an idle keep-alive connection
    /// its next request, before it is closed.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Serve HTTPS with this certificate chain (PEM, the server's
    /// certificate first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address that is not a loopback address (by
    /// default only 127.0.0.1 and ::1 get plain HTTP; anything else needs
    /// TLS): tokens and data then cross the network in the clear.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_http: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ForgetArgs {
    /// Keep the N newest snapshots.
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the last N days that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the last N weeks that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: usize,
    /// Also prune the data the forgotten snapshots alone referenced.
    #[arg(long)]
    pub prune: bool,
    /// Only show what would be kept and forgotten.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also read every pack and check every chunk against its hash.
    #[arg(long)]
    pub read_data: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FindArgs {
    /// A glob (`*`, `?`, `[...]`): matched against whole item ids when it
    /// contains `/`, else against the last component.
    pub pattern: String,
    /// Print JSON (an array of objects with snapshot, time, source, id,
    /// kind and size).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// What to back up: `local` runs the agent on this machine as the guest;
    /// `HYPERVISOR/VM` attaches the container to that VM and runs it there.
    pub target: String,
    /// The plugin that reads the application.
    #[arg(long)]
    pub plugin: String,
    /// An item to back up with everything below it (repeatable); for the
    /// filesystem plugin, a path.
    #[arg(long = "include", required = true)]
    pub include: Vec<String>,
    /// VMs: freeze the guest's filesystems through its guest agent once the
    /// plugin has quiesced the application, until the data has been read.
    #[arg(long)]
    pub fsfreeze: bool,
    /// VMs: the longest the filesystems stay frozen, in seconds; past it
    /// they are thawed (the rest of the backup is crash-consistent only).
    #[arg(long, default_value_t = 10)]
    pub freeze_limit_secs: u64,
    #[command(flatten)]
    pub job: PluginJobArgs,
    /// Print the result as JSON (an object with an `id` field).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiscoverArgs {
    /// The VM: `HYPERVISOR/VM`.
    pub target: String,
    /// Ask this plugin only; without it, every plugin of the container
    /// whose plan the policy allows (a plugin that fails is reported and
    /// the others still list).
    #[arg(long)]
    pub plugin: Option<String>,
    /// List below this item (a path, `sqlite:///DIR/`, a database...);
    /// without it, each plugin's roots.
    #[arg(long)]
    pub scope: Option<String>,
    /// How many levels below the scope to list (0: its children only).
    #[arg(long, default_value_t = 0)]
    pub depth: u32,
    /// Fail, detach and clean up when a runner has not finished after this
    /// many seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// A plugin option KEY=VALUE (repeatable), given to every plugin asked.
    /// Values reach the runner through its environment, never a command
    /// line.
    #[arg(long = "option", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// A file whose first line is the application's password (a
    /// database's); without it, ATTACHE_APP_PASSWORD if set.
    #[arg(long)]
    pub app_password_file: Option<PathBuf>,
    /// Print the result as JSON: `target`, `container`, `scope`, `depth`
    /// and `plugins`, each with `plugin`, `entries` (`id`, `kind`, `size`,
    /// `has_children`) and, when it listed nothing, `error`.
    #[arg(long)]
    pub json: bool,
}

/// What a backup or restore gives its plugin: options, limits, the
/// application's password, and the job's timeout.
#[derive(Debug, Args)]
pub(crate) struct PluginJobArgs {
    /// Fail the job when the runner has not finished after this many
    /// seconds: a local runner is killed (releasing the repository lock);
    /// a VM's is stopped, and the VM detached and cleaned up.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// A plugin option KEY=VALUE (repeatable; `attache plugin info` lists
    /// each plugin's keys). Values reach the runner through its
    /// environment, never a command line.
    #[arg(long = "option", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
    /// The plugin's memory limit in MiB (within the policy's ceiling).
    #[arg(long)]
    pub memory_limit_mib: Option<u64>,
    /// The plugin's deadline in seconds (within the policy's ceiling).
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// A file whose first line is the application's password (a
    /// database's), read by whoever runs the job; without it the password
    /// comes from ATTACHE_APP_PASSWORD, if set. It reaches the plugin
    /// through the runner's environment, never a command line.
    #[arg(long)]
    pub app_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The snapshot id, or a unique prefix of it.
    pub snapshot: String,
    /// Only items that are this id or lie below it.
    pub prefix: Option<String>,
    /// Print JSON (an array of objects with id, kind, size and metadata).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The snapshot id, or a unique prefix of it.
    pub snapshot: String,
    /// An item to restore with everything below it (repeatable); without
    /// it, the whole snapshot.
    #[arg(long = "item")]
    pub item: Vec<String>,
    /// Where to: `local` (the original place on this machine), `local:DIR`
    /// (each item at its full path below DIR, as restic does),
    /// `HYPERVISOR/VM` (the original place in that VM) or
    /// `HYPERVISOR/VM:DIR` (below DIR in the VM).
    #[arg(long = "to")]
    pub to: String,
    /// Replace items that exist at the destination.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore the one `--item` under this id instead: another database or
    /// table (`postgresql://…`), another file (`sqlite:///…`).
    #[arg(long = "as", value_name = "NEW_ID")]
    pub rename_to: Option<String>,
    #[command(flatten)]
    pub job: PluginJobArgs,
    /// Print the runner's report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContainerCommand {
    /// Lays out guest-runner and plugin components in a directory and
    /// writes their manifest.
    Assemble(AssembleArgs),
    /// Builds the storage container from the agent directory: an ISO 9660
    /// image with Rock Ridge, and the same content as qcow2, raw, VMDK and
    /// VHDX disk images. Rebuilds only when the runner or a plugin changed,
    /// and pushes the container to every registered hypervisor.
    Build(BuildArgs),
    /// Signs the agent container's manifest (`--agent-dir`) with a
    /// publisher key: `manifest.sig` gains this key's signature.
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The private key file (`attache key generate`).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Where containers go, one directory per content version; default:
    /// `containers/` in the cache directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sign the agent directory's manifest with this private key first
    /// (as `container sign --key`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Print the result as JSON (version, and the path of each format).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AssembleArgs {
    /// The guest-runner executable (static musl build).
    #[arg(long)]
    pub runner: PathBuf,
    /// A plugin component as NAME=PATH (repeatable).
    #[arg(long = "plugin", value_parser = parse_plugin, required = true)]
    pub plugins: Vec<(String, PathBuf)>,
    /// The container directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Leave out the plugins' precompiled forms: a smaller container whose
    /// runner compiles each plugin itself (slow in an emulated guest).
    #[arg(long)]
    pub no_precompile: bool,
    /// Sign the manifest with this private key (as `container sign
    /// --key`). Without it the container is left unsigned: an earlier
    /// `manifest.sig` is removed, as it no longer matches.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

fn parse_plugin(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))?;
    guest_runner::manifest::check_name(name).map_err(|e| e.to_string())?;
    Ok((name.into(), path.into()))
}
