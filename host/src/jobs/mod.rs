//! The work behind `backup`, `restore`, `verify` and `discover`, shared by
//! the command line and the server: what to do, progress as it goes, and
//! cancellation.

pub(crate) mod backup;
pub(crate) mod discover;
pub(crate) mod plugin;
pub(crate) mod restore;
pub(crate) mod verify;
pub(crate) mod watchdog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::agent::{self, LocalRunner};
use crate::repo::{Password, Repository};

/// Where jobs find the repository, its password, the cache and the agent.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub repo: PathBuf,
    pub password: Password,
    pub cache: PathBuf,
    pub agent_dir: Option<PathBuf>,
    /// Registered hypervisors and the journal of attachments.
    pub state: PathBuf,
    /// The state database's PostgreSQL URL (`--state-db`), if not the
    /// state directory's SQLite.
    pub state_db: Option<String>,
    /// The policy every plugin's plan is checked against.
    pub policy: guest_runner::policy::Policy,
    /// The audit log, for whoever runs the job.
    pub audit: crate::audit::Audit,
    /// Which publishers may sign the runner and each plugin.
    pub trust: guest_runner::trust::Trust,
    /// The workers sharing the PostgreSQL state database, when this
    /// process is one of them (`attache serve --state-db`): VM locks and
    /// the attachment journal are then theirs.
    pub cluster: Option<std::sync::Arc<crate::db::cluster::Cluster>>,
}

impl Context {
    /// The state database (`db::open`).
    pub(crate) fn db(
        &self,
    ) -> Result<std::sync::Arc<dyn crate::db::StateStore>, crate::db::DbError> {
        crate::db::open(&self.state, self.state_db.as_deref())
    }

    pub(crate) fn repository(&self, create: bool) -> anyhow::Result<Repository> {
        Repository::open(&self.repo, &self.password, &self.cache, create)
    }

    /// This machine's runner, once the container's signatures and the
    /// trust vouch for it and every plugin, and its bytes match the
    /// manifest (the runner checks each plugin's bytes as it loads it).
    pub(crate) fn runner(&self) -> anyhow::Result<LocalRunner> {
        let dir = agent::find(self.agent_dir.as_deref())?;
        let manifest = crate::container::verify(&dir, &self.trust, &self.cache.join("containers"))?;
        Ok(LocalRunner {
            dir,
            cache_dir: Some(self.cache.join("components")),
            manifest,
        })
    }
}

/// Runs job `kind` (`request` as the log shows it) under the audit log:
/// its start, with who started it and the policy in force, is written
/// before anything runs (a job that cannot be recorded does not run) and is
/// on disk before its first effect (the job syncs the log then: one
/// `fdatasync` for everything it recorded until then); its end, with its
/// outcome, is on disk before the job's result is returned.
pub(crate) fn audited<T: Serialize>(
    ctx: &Context,
    kind: &str,
    request: serde_json::Value,
    run: impl FnOnce(&Context) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut ctx = ctx.clone();
    if ctx.audit.job().is_none() {
        let actor = ctx.audit.actor().to_owned();
        ctx.audit = ctx.audit.for_job(&actor, &crate::audit::new_job_id());
    }
    let digest = ctx.audit.policy_in_force(&ctx.policy)?;
    let trust = ctx.audit.trust_in_force(&ctx.trust)?;
    ctx.audit.defer(
        "job.start",
        serde_json::json!({ "kind": kind, "request": request, "policy": { "origin": ctx.policy.origin, "digest": digest }, "trust": trust }),
    )?;
    let r = run(&ctx);
    let end = match &r {
        Ok(v) => {
            serde_json::json!({ "kind": kind, "outcome": "succeeded", "result": summary(serde_json::to_value(v).unwrap_or_default()) })
        }
        Err(e) => {
            serde_json::json!({ "kind": kind, "outcome": "failed", "error": format!("{e:#}") })
        }
    };
    if let Err(e) = ctx.audit.record("job.end", end) {
        tracing::error!("cannot write the audit log: {e}");
    }
    let (entries, took) = ctx.audit.spent();
    tracing::info!(
        target: "attache::audit",
        job = ctx.audit.job().unwrap_or_default(),
        entries,
        micros = took.as_micros() as u64,
        "audit log cost"
    );
    r
}

/// A job's result as the log keeps it: ids, counts and destination, not
/// the runner's whole report.
fn summary(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "id" | "snapshot" | "items" | "bytes" | "added_bytes" | "to" | "source" | "plugin"
            )
        });
    }
    v
}

/// What a plugin is granted by the policy for a job: what it may read,
/// write and reach, and its ceilings, for the audit log.
pub(crate) fn grants(
    ctx: &Context,
    plugin: &str,
    limits: &guest_runner::policy::JobLimits,
) -> serde_json::Value {
    match ctx.policy.rules(plugin) {
        Ok(r) => serde_json::json!({
            "plugin": plugin,
            "read": r.read.0,
            "write": r.write.0,
            "connect": r.connect.0.iter().map(|n| n.text.clone()).collect::<Vec<_>>(),
            "memory_limit_mib": limits.memory_mib.unwrap_or(r.memory_limit_mib.0),
            "deadline_secs": limits.deadline_secs.unwrap_or(r.deadline_secs.0),
            "quiesce_secs": r.quiesce_secs.0,
            "policy": ctx.policy.origin,
        }),
        Err(e) => serde_json::json!({ "plugin": plugin, "error": e.to_string() }),
    }
}

/// How far a job is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Progress {
    /// Items done.
    pub items: u64,
    /// Content bytes done.
    pub bytes: u64,
}

/// What a job reports to and hears from whoever runs it.
pub(crate) struct Control<'a> {
    pub progress: &'a (dyn Fn(&Progress) + Sync),
    pub cancel: &'a AtomicBool,
}

impl Control<'_> {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A backup to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupRequest {
    /// `local` (this machine acts as the guest) or `HYPERVISOR/VM`.
    pub target: String,
    /// The plugin that reads the application.
    pub plugin: String,
    /// Items to back up with everything below them.
    pub include: Vec<String>,
    /// VMs: freeze the guest's filesystems (guest agent) once the plugin
    /// has quiesced the application, until the stream has been read.
    #[serde(default)]
    pub fsfreeze: bool,
    /// VMs: the longest the filesystems stay frozen, in seconds; past it
    /// they are thawed and the snapshot says so in the logs.
    #[serde(default = "default_freeze_limit")]
    pub freeze_limit_secs: u64,
    /// Fail the job, and clean up, when the runner has not finished after
    /// this many seconds (a local runner is killed).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Plugin options, KEY: VALUE (the keys the plugin declares; `attache
    /// plugin info` lists them). They reach the runner through its
    /// environment, never a command line, and job views show them redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The plugin's memory limit in MiB (within the policy's ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// The plugin's deadline in seconds (within the policy's ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// The application's password (a database's), for plugins that log in;
    /// job listings show it redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password: Option<String>,
    /// A file, on the machine that runs the job, whose first line is the
    /// application's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password_file: Option<PathBuf>,
    /// The backup policy that started it, set by the server's queue for a
    /// policy's jobs (its snapshot carries the name, which its retention
    /// goes by); never taken from a request.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Which run of its policy's job this is on its VM: 0 the first, 1
    /// its first retry after an interruption, ...; set by the server's
    /// queue, never taken from a request.
    #[serde(
        default,
        skip_deserializing,
        skip_serializing_if = "crate::db::records::is_zero"
    )]
    pub attempt: u32,
}

/// The environment variable that carries the application's password to the
/// runner: it reaches the plugin as its `password` option, never on a
/// command line.
pub(crate) const PASSWORD_ENV: &str = "ATTACHE_APP_PASSWORD";

/// The password of a request: given, or read from the file it names.
pub(crate) fn app_password(
    given: &Option<String>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    if let Some(p) = given {
        return Ok(Some(p.clone()));
    }
    let Some(f) = file else { return Ok(None) };
    let text = std::fs::read_to_string(f).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the application password file {}: {e}",
            f.display()
        )
    })?;
    Ok(Some(text.lines().next().unwrap_or_default().to_owned()))
}

/// Replaces a password and option values for showing.
pub(crate) fn redact(p: &mut Option<String>, options: &mut BTreeMap<String, String>) {
    if p.is_some() {
        *p = Some("(redacted)".into());
    }
    for v in options.values_mut() {
        *v = "(redacted)".into();
    }
}

fn default_freeze_limit() -> u64 {
    10
}

/// A restore to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreRequest {
    /// Snapshot id or unique prefix.
    pub snapshot: String,
    /// Items to restore with everything below them; empty for all.
    #[serde(default)]
    pub items: Vec<String>,
    /// `local`, `local:DIR`, `HYPERVISOR/VM` or `HYPERVISOR/VM:DIR`.
    pub to: String,
    /// Replace items that exist.
    #[serde(default)]
    pub overwrite: bool,
    /// Restore the one item under this id instead (another database, table
    /// or path), where the plugin supports it.
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub rename_to: Option<String>,
    /// Fail the job, and clean up, when the runner has not finished after
    /// this many seconds (a local runner is killed).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Plugin options, KEY: VALUE (the keys the plugin declares; `attache
    /// plugin info` lists them). They reach the runner through its
    /// environment, never a command line, and job views show them redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The plugin's memory limit in MiB (within the policy's ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
    /// The plugin's deadline in seconds (within the policy's ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
    /// The application's password (a database's), for plugins that log in;
    /// job listings show it redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password: Option<String>,
    /// A file, on the machine that runs the job, whose first line is the
    /// application's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password_file: Option<PathBuf>,
}
