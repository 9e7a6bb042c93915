//! The filesystem plugin: backs up and restores files and directory trees
//! with their POSIX metadata, item by item.
//!
//! Item ids are absolute guest paths. Everything the plugin touches is reached
//! through the WASI preopened directories the job grants; file content is
//! handed to the runner as an open descriptor and never copied through the
//! component boundary.

mod backup;
mod discover;
mod fs;
mod ids;
mod metadata;
mod restore;

wit_bindgen::generate!({
    path: "../../wit",
    world: "attache:plugin/plugin-world",
    generate_all,
});

use attache::plugin::types::{ApplicationKind, Capability, CatalogEntry, PluginError, PluginInfo};
use exports::attache::plugin::plugin::{BackupRequest, Guest, OptionList, RestoreRequest, Summary};

struct Filesystem;

impl Guest for Filesystem {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "filesystem".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ApplicationKind::Filesystem,
            description: "Files and directory trees with POSIX metadata".into(),
            capabilities: vec![
                Capability::FilesystemRead,
                Capability::FilesystemWrite,
                Capability::Ownership,
            ],
            // Crash consistency of a filesystem comes from the hypervisor's
            // guest-fsfreeze, not from the plugin: there is nothing to hold.
            supports_quiesce: false,
        }
    }

    fn discover(
        scope: Option<String>,
        depth: u32,
        _options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        discover::discover(scope.as_deref(), depth)
    }

    fn quiesce(_selection: Vec<String>, _options: OptionList) -> Result<(), PluginError> {
        Err(PluginError::InvalidRequest(
            "the filesystem plugin has no application to quiesce; use the hypervisor's fsfreeze"
                .into(),
        ))
    }

    fn thaw() -> Result<(), PluginError> {
        Err(PluginError::InvalidRequest(
            "the filesystem plugin has no application to thaw".into(),
        ))
    }

    fn backup(request: BackupRequest) -> Result<Summary, PluginError> {
        backup::backup(&request.selection)
    }

    fn restore(request: RestoreRequest) -> Result<Summary, PluginError> {
        restore::restore(&request)
    }
}

export!(Filesystem);
