//! What the state database holds, as the rest of Attaché sees it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A job as recorded: its request (passwords redacted) and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub id: String,
    /// `backup`, `restore` or `verify`.
    pub kind: String,
    /// The target whose slots it takes (`local`, `HV/VM`, `repository`).
    pub target: String,
    /// The hypervisor of a VM target.
    pub hypervisor: Option<String>,
    /// The backup policy that started it.
    pub policy: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or
    /// `interrupted`.
    pub status: String,
    pub request: serde_json::Value,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The snapshot a backup made.
    pub snapshot: Option<String>,
    pub created: i64,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// The queue that runs it (`db::owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct JobFilter {
    /// Started by this policy.
    pub policy: Option<String>,
    /// On this target (`HV/VM`, `local`).
    pub vm: Option<String>,
    /// Only those that failed or were interrupted.
    #[serde(default)]
    pub failed: bool,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// The retention counts of a policy (as `attache forget --keep-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Keep {
    #[serde(default)]
    pub last: usize,
    #[serde(default)]
    pub daily: usize,
    #[serde(default)]
    pub weekly: usize,
    #[serde(default)]
    pub monthly: usize,
}

impl Keep {
    pub(crate) fn retention(self) -> crate::repo::retention::Policy {
        crate::repo::retention::Policy {
            last: self.last,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        }
    }
}

/// A backup policy: which VMs, what to back up in them, when, and how
/// many of its snapshots to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyRecord {
    pub name: String,
    /// Selectors: `HV/VM` globs, or `tag:NAME`.
    pub vms: Vec<String>,
    pub plugin: String,
    pub include: Vec<String>,
    /// Plugin options KEY: VALUE.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// A cron expression (UTC; five fields, or six with seconds first).
    pub schedule: String,
    #[serde(default)]
    pub keep: Keep,
    /// How many times a job of it that was interrupted (its server or
    /// worker died under it) is run again; a job that failed is not.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// When it was added (seconds since the epoch); set by the store's
    /// caller.
    #[serde(default)]
    pub created: i64,
    /// When its schedule last fired.
    #[serde(default)]
    pub last_fired: Option<i64>,
}

/// A target's last finished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastResult {
    pub target: String,
    pub job: String,
    pub status: String,
    pub finished: i64,
    pub policy: Option<String>,
    pub snapshot: Option<String>,
    pub error: Option<String>,
}

/// `(target, tag)` rows ordered by target, as each target with its tags
/// (what [`super::StateStore::tags`] answers, from either backend).
pub(crate) fn grouped_tags(rows: Vec<(String, String)>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (target, tag) in rows {
        match out.last_mut() {
            Some((t, tags)) if *t == target => tags.push(tag),
            _ => out.push((target, vec![tag])),
        }
    }
    out
}

/// Whether a count is zero (left out of JSON).
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}
