//! The filesystem plugin: backs up and restores files and directory trees
//! with their POSIX metadata, item by item.
//!
//! Item ids are absolute guest paths. Everything the plugin touches is reached
//! through the WASI preopens the job grants, exactly the paths its plan asks
//! for; file content is handed to the runner as an open descriptor and never
//! copied through the component boundary.

mod backup;
mod discover;
mod fs;
mod ids;
mod metadata;
mod plan;
mod restore;

use attache_plugin_sdk::prelude::*;

struct Filesystem;

impl Plugin for Filesystem {
    fn info() -> PluginInfo {
        // Crash consistency of a filesystem comes from the hypervisor's
        // guest-fsfreeze, not from the plugin: there is nothing to hold, so
        // it does not quiesce, and declares no options.
        PluginInfo::new(
            "filesystem",
            env!("CARGO_PKG_VERSION"),
            ApplicationKind::Filesystem,
            "Files and directory trees with POSIX metadata",
        )
    }

    fn plan(request: PlanRequest) -> Result<AccessPlan, PluginError> {
        Options::new(&request.options).check(&Self::info().options)?;
        plan::plan(&request)
    }

    fn discover(
        scope: Option<String>,
        depth: u32,
        options: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        Options::new(&options).check(&Self::info().options)?;
        discover::discover(scope.as_deref(), depth)
    }

    fn quiesce(_selection: Vec<String>, _options: OptionList) -> Result<String, PluginError> {
        Err(PluginError::invalid(
            "the filesystem plugin has no application to quiesce; use the hypervisor's fsfreeze",
        ))
    }

    fn thaw(_state: String, _options: OptionList) -> Result<(), PluginError> {
        Err(PluginError::invalid(
            "the filesystem plugin has no application to thaw",
        ))
    }

    fn backup(request: BackupRequest) -> Result<Summary, PluginError> {
        Options::new(&request.options).check(&Self::info().options)?;
        backup::backup(&request.selection)
    }

    fn restore(request: RestoreRequest) -> Result<Summary, PluginError> {
        Options::new(&request.options).check(&Self::info().options)?;
        restore::restore(&request)
    }
}

export_plugin!(Filesystem);
