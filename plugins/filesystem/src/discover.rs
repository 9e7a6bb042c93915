//! Discovery: lists directory trees for the catalog and for choosing what
//! to back up.

use attache_plugin_sdk::posix::stat_at;
use attache_plugin_sdk::wasi::filesystem::types::Descriptor;
use attache_plugin_sdk::{CatalogEntry, ItemKind, PluginError};

use crate::fs::{self, describe};
use crate::ids;
use crate::metadata::{file_type, FileType};

pub(crate) fn discover(scope: Option<&str>, depth: u32) -> Result<Vec<CatalogEntry>, PluginError> {
    let roots = fs::roots();
    let mut out = Vec::new();
    let Some(scope) = scope else {
        // The roots are the granted directories themselves.
        for r in &roots {
            out.push(CatalogEntry {
                id: r.path.clone(),
                kind: ItemKind::Directory,
                size: None,
                has_children: true,
            });
        }
        return Ok(out);
    };
    let comps = ids::components(scope)?;
    let (root, below) = attache_plugin_sdk::preopens::locate_or_denied(&roots, scope)?;
    let dir = fs::walk_dirs(&root.dir, &below, false, false)
        .map_err(|e| PluginError::InvalidRequest(describe(e, scope)))?;
    let id = format!("/{}", comps.join("/"));
    list(&dir, &id, depth, &mut out)?;
    Ok(out)
}

fn list(
    dir: &Descriptor,
    id: &str,
    depth: u32,
    out: &mut Vec<CatalogEntry>,
) -> Result<(), PluginError> {
    let stream = dir
        .read_directory()
        .map_err(|e| PluginError::Other(describe(e, id)))?;
    let mut names = Vec::new();
    while let Some(e) = stream
        .read_directory_entry()
        .map_err(|e| PluginError::Other(describe(e, id)))?
    {
        names.push(e.name);
    }
    names.sort();
    for name in names {
        let cid = ids::child(id, &name);
        let Ok(st) = stat_at(dir, &name, false) else {
            continue;
        };
        let ty = file_type(st.mode);
        let kind = match ty {
            FileType::Directory => ItemKind::Directory,
            FileType::Regular => ItemKind::File,
            FileType::Symlink => ItemKind::Symlink,
            FileType::Special => ItemKind::Special,
        };
        out.push(CatalogEntry {
            id: cid.clone(),
            kind,
            size: (ty == FileType::Regular).then_some(st.size),
            has_children: ty == FileType::Directory,
        });
        if ty == FileType::Directory && depth > 0 {
            if let Ok(sub) = fs::open_dir(dir, &name, false) {
                list(&sub, &cid, depth - 1, out)?;
            }
        }
    }
    Ok(())
}
