//! A plugin whose version is set at build time from `PROBE_VERSION`, so that
//! tests can rebuild it and see the new build reach the runner. Its backup
//! emits one item whose content is that version.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "attache:plugin/plugin-world",
    generate_all,
});

use attache::plugin::backup_sink::{emit, ItemData};
use attache::plugin::types::*;
use exports::attache::plugin::plugin::{BackupRequest, Guest, OptionList, RestoreRequest, Summary};

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
            capabilities: vec![],
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
        Err(PluginError::InvalidRequest(
            "the probe restores nothing".into(),
        ))
    }
}

export!(Probe);
