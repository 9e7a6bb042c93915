//! A snapshot's description: what was backed up, from where, and the totals.

use serde::{Deserialize, Serialize};

/// `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// 16 hex digits; commands accept any unique prefix.
    pub id: String,
    /// Seconds since the Unix epoch when the backup started.
    pub time: i64,
    /// Where the data came from (`local`, or a hypervisor's VM).
    pub source: String,
    /// The plugin that made it, and its version.
    pub plugin: String,
    pub plugin_version: String,
    /// What was selected.
    pub includes: Vec<String>,
    /// Items stored.
    pub items: u64,
    /// Content bytes stored.
    pub bytes: u64,
    /// Items that could not be backed up, with the reason.
    pub warnings: Vec<Warning>,
}

/// An item the plugin could not back up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warning {
    pub id: String,
    pub message: String,
}

impl Snapshot {
    /// The first eight digits, as `snapshots` shows them.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }
}
