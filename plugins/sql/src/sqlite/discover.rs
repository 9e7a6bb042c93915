//! Finding SQLite databases: `discover` of a `sqlite:///DIR/` scope lists
//! the files in DIR (and `depth` levels of directories below it) that start
//! with SQLite's header, as `sqlite:///PATH` database items. Journals, WALs
//! and other files are left out; symbolic links are not followed.

use attache_plugin_sdk::preopens;
use attache_plugin_sdk::wasi::filesystem::types::{Descriptor, DescriptorType, PathFlags};
use attache_plugin_sdk::{CatalogEntry, ItemKind, PluginError};

use super::files::{io, open_read};
use super::format::{DbHeader, HEADER_LEN};

/// The databases below directory `dir` (an absolute path the plan granted).
pub(crate) fn discover_dir(dir: &str, depth: u32) -> Result<Vec<CatalogEntry>, PluginError> {
    let comps = preopens::components(dir)?;
    let all = preopens::all();
    let Some((root, below)) = preopens::locate(&all, &comps) else {
        return Err(PluginError::AccessDenied(format!(
            "{dir} is not granted to the job (did the plan ask for it?)"
        )));
    };
    let mut cur = open_dir(&root.dir, ".").map_err(|e| io(dir, e))?;
    for c in &below {
        cur = open_dir(&cur, c).map_err(|e| match e {
            attache_plugin_sdk::wasi::filesystem::types::ErrorCode::NoEntry => {
                PluginError::InvalidRequest(format!("{dir}: directory {c} does not exist"))
            }
            e => io(dir, e),
        })?;
    }
    let mut out = Vec::new();
    list(&cur, &preopens::join(&comps), depth, &mut out)?;
    Ok(out)
}

fn open_dir(
    dir: &Descriptor,
    name: &str,
) -> Result<Descriptor, attache_plugin_sdk::wasi::filesystem::types::ErrorCode> {
    use attache_plugin_sdk::wasi::filesystem::types::{DescriptorFlags, OpenFlags};
    dir.open_at(
        PathFlags::empty(),
        name,
        OpenFlags::DIRECTORY,
        DescriptorFlags::READ,
    )
}

fn list(
    dir: &Descriptor,
    path: &str,
    depth: u32,
    out: &mut Vec<CatalogEntry>,
) -> Result<(), PluginError> {
    let stream = dir.read_directory().map_err(|e| io(path, e))?;
    let mut names = Vec::new();
    while let Some(e) = stream.read_directory_entry().map_err(|e| io(path, e))? {
        names.push(e.name);
    }
    names.sort();
    let child = |name: &str| {
        if path == "/" {
            format!("/{name}")
        } else {
            format!("{path}/{name}")
        }
    };
    for name in names {
        // Gone since it was listed, or unreadable: not a database we can see.
        let Ok(st) = dir.stat_at(PathFlags::empty(), &name) else {
            continue;
        };
        match st.type_ {
            DescriptorType::RegularFile if st.size >= HEADER_LEN as u64 => {
                let Ok(Some(f)) = open_read(dir, &name) else {
                    continue;
                };
                let Ok(head) = super::format::ReadAt::read_at(&f, 0, HEADER_LEN as u64) else {
                    continue;
                };
                if DbHeader::parse(&head).is_ok() {
                    out.push(CatalogEntry {
                        id: format!("sqlite://{}", child(&name)),
                        kind: ItemKind::Database,
                        size: Some(st.size),
                        has_children: false,
                    });
                }
            }
            DescriptorType::Directory if depth > 0 => {
                if let Ok(sub) = open_dir(dir, &name) {
                    list(&sub, &child(&name), depth - 1, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
