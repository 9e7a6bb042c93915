//! The work behind `backup` and `restore`, shared by the command line and
//! the server: what to do, progress as it goes, and cancellation.

pub mod backup;
pub mod plugin;
pub mod restore;
pub mod watchdog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::agent::{self, LocalRunner};
use crate::repo::{Password, Repository};

/// Where jobs find the repository, its password, the cache and the agent.
#[derive(Debug, Clone)]
pub struct Context {
    pub repo: PathBuf,
    pub password: Password,
    pub cache: PathBuf,
    pub agent_dir: Option<PathBuf>,
    /// Registered hypervisors and the journal of attachments.
    pub state: PathBuf,
    /// The policy every plugin's plan is checked against.
    pub policy: guest_runner::policy::Policy,
    /// Which publishers may sign the runner and each plugin.
    pub trust: guest_runner::trust::Trust,
}

impl Context {
    pub fn repository(&self, create: bool) -> anyhow::Result<Repository> {
        Repository::open(&self.repo, &self.password, &self.cache, create)
    }

    /// This machine's runner, once the container's signatures and the
    /// trust vouch for it and every plugin, and its bytes match the
    /// manifest (the runner checks each plugin's bytes as it loads it).
    pub fn runner(&self) -> anyhow::Result<LocalRunner> {
        let dir = agent::find(self.agent_dir.as_deref())?;
        crate::container::verify(&dir, &self.trust, &self.cache.join("containers"))?;
        Ok(LocalRunner {
            dir,
            cache_dir: Some(self.cache.join("components")),
        })
    }
}

/// How far a job is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Items done.
    pub items: u64,
    /// Content bytes done.
    pub bytes: u64,
}

/// What a job reports to and hears from whoever runs it.
pub struct Control<'a> {
    pub progress: &'a (dyn Fn(&Progress) + Sync),
    pub cancel: &'a AtomicBool,
}

impl Control<'_> {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A backup to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
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
}

/// The environment variable that carries the application's password to the
/// runner: it reaches the plugin as its `password` option, never on a
/// command line.
pub const PASSWORD_ENV: &str = "ATTACHE_APP_PASSWORD";

/// The password of a request: given, or read from the file it names.
pub fn app_password(
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
pub fn redact(p: &mut Option<String>, options: &mut BTreeMap<String, String>) {
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
pub struct RestoreRequest {
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
