//! A plugin whose version is set at build time from `PROBE_VERSION`, so that
//! tests can rebuild it and see the new build reach the runner. Its backup
//! emits one item whose content is that version; its restore writes each
//! item's content to `probe-version` in the restore target (the preopen the
//! 0.1.0 runner names `/`).
//!
//! It stays on the frozen contract 0.1.0: it is the legacy plugin that
//! tests a runner serving both versions.

// wit-bindgen's bindings and export glue are unsafe code it generates;
// this plugin has none of its own.
#![allow(
    unsafe_code,
    missing_docs,
    clippy::mem_forget,
    reason = "wit-bindgen's generated bindings and exports"
)]

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "attache:plugin/plugin-world",
    generate_all,
});

use attache::plugin::backup_sink::{emit, ItemData};
use attache::plugin::restore_source;
use attache::plugin::types::*;
use exports::attache::plugin::plugin::{BackupRequest, Guest, OptionList, RestoreRequest, Summary};
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};

const VERSION: &str = match option_env!("PROBE_VERSION") {
    Some(v) => v,
    None => "0",
};

struct Probe;

impl Guest for Probe {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "probe".into(),
            version: VERSION.into(),
            kind: ApplicationKind::Other,
            description: "reports the version it was built with".into(),
            capabilities: vec![Capability::FilesystemWrite],
            supports_quiesce: false,
        }
    }

    fn discover(
        _: Option<String>,
        _: u32,
        _: OptionList,
    ) -> Result<Vec<CatalogEntry>, PluginError> {
        Ok(vec![CatalogEntry {
            id: "probe://version".into(),
            kind: ItemKind::Blob,
            size: Some(VERSION.len() as u64),
            has_children: false,
        }])
    }

    fn quiesce(_: Vec<String>, _: OptionList) -> Result<(), PluginError> {
        Err(PluginError::InvalidRequest("nothing to quiesce".into()))
    }

    fn thaw() -> Result<(), PluginError> {
        Err(PluginError::InvalidRequest("nothing to thaw".into()))
    }

    fn backup(_: BackupRequest) -> Result<Summary, PluginError> {
        let item = Item {
            id: "probe://version".into(),
            kind: ItemKind::Blob,
            metadata: ItemMetadata {
                size: VERSION.len() as u64,
                mode: None,
                uid: None,
                gid: None,
                mtime: None,
                symlink_target: None,
                hardlink_target: None,
                attributes: vec![("built".into(), VERSION.into())],
                change_token: None,
            },
        };
        emit(&item, &ItemData::Inline(VERSION.as_bytes().to_vec()))?;
        Ok(Summary {
            items: 1,
            bytes: VERSION.len() as u64,
            warnings: 0,
        })
    }

    fn restore(_: RestoreRequest) -> Result<Summary, PluginError> {
        let target = get_directories()
            .into_iter()
            .find(|(_, name)| name == "/")
            .map(|(dir, _)| dir)
            .ok_or_else(|| {
                PluginError::AccessDenied("no restore target (a preopen named '/')".into())
            })?;
        let mut summary = Summary {
            items: 0,
            bytes: 0,
            warnings: 0,
        };
        while let Some((_item, content)) = restore_source::next()? {
            // Not truncated on open: `copy-to` itself cuts a file that was
            // longer than the content (tests/contract.rs checks it).
            let fd = target
                .open_at(
                    PathFlags::empty(),
                    "probe-version",
                    OpenFlags::CREATE,
                    DescriptorFlags::READ | DescriptorFlags::WRITE,
                )
                .map_err(|e| PluginError::Other(format!("probe-version: {}", e.message())))?;
            summary.bytes += content.copy_to(&fd)?;
            summary.items += 1;
        }
        Ok(summary)
    }
}

export!(Probe);
