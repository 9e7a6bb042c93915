//! SQLite database files, copied consistently without linking SQLite (see
//! the README for the protocol).

pub(crate) mod backup;
pub(crate) mod files;
pub(crate) mod format;
pub(crate) mod restore;

pub(crate) mod discover;

pub(crate) use discover::discover_dir;

use attache_plugin_sdk::{CatalogEntry, PluginError};

/// A database file has nothing below it.
pub(crate) fn discover(_path: &str) -> Result<Vec<CatalogEntry>, PluginError> {
    Ok(Vec::new())
}
