//! The work behind `backup` and `restore`, shared by the command line and
//! the server: what to do, progress as it goes, and cancellation.

pub mod backup;
pub mod restore;

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
}

impl Context {
    pub fn repository(&self, create: bool) -> anyhow::Result<Repository> {
        Repository::open(&self.repo, &self.password, &self.cache, create)
    }

    pub fn runner(&self) -> anyhow::Result<LocalRunner> {
        Ok(LocalRunner {
            dir: agent::find(self.agent_dir.as_deref())?,
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
    /// VMs: fail the job, and clean up, when the runner has not finished
    /// after this many seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
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
    /// VMs: fail the job, and clean up, when the runner has not finished
    /// after this many seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}
