//! Backup: walks each selected tree and emits one item per directory entry.
//! File content goes to the runner as the open descriptor.

use std::collections::HashMap;

use attache_plugin_sdk::host::progress;
use attache_plugin_sdk::posix::{fstat, readlink_at, stat_at, Stat};
use attache_plugin_sdk::sink::{self, previous};
use attache_plugin_sdk::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use attache_plugin_sdk::{Item, ItemData, ItemKind, ItemMetadata, PluginError, Summary};

use crate::fs::{self, describe, Root};
use crate::ids;
use crate::metadata::{file_type, from_stat, FileType};

/// How often, in items, progress is reported.
const PROGRESS_EVERY: u64 = 256;

pub(crate) fn backup(selection: &[String]) -> Result<Summary, PluginError> {
    let roots = fs::roots();
    let mut walk = Walk {
        summary: Summary::default(),
        links: HashMap::new(),
    };
    for id in normalized(selection)? {
        let comps = ids::components(&id)?;
        let (root, below) = fs::locate(&roots, &comps).ok_or_else(|| {
            PluginError::denied(format!("{id} is not below anything the job grants"))
        })?;
        walk.selection(root, &id, &below)?;
    }
    progress(
        walk.summary.items,
        walk.summary.bytes,
        Some(walk.summary.items),
        Some(walk.summary.bytes),
    );
    Ok(walk.summary)
}

/// The selection as canonical ids, without any that lie below another.
pub(crate) fn normalized(selection: &[String]) -> Result<Vec<String>, PluginError> {
    let mut ids: Vec<String> = Vec::new();
    for id in selection {
        let comps = ids::components(id)?;
        ids.push(format!("/{}", comps.join("/")));
    }
    ids.sort();
    ids.dedup();
    let all = ids.clone();
    ids.retain(|id| {
        !all.iter()
            .any(|o| o != id && (o == "/" || id.starts_with(&format!("{o}/"))))
    });
    Ok(ids)
}

struct Walk {
    summary: Summary,
    /// First id seen for each (device, inode) of a file with several names.
    links: HashMap<(u64, u64), String>,
}

impl Walk {
    fn selection(&mut self, root: &Root, id: &str, below: &[String]) -> Result<(), PluginError> {
        if below.is_empty() {
            // The item is a preopen itself: a granted directory, or a file
            // granted alone, whose descriptor is the file.
            let st = fstat(&root.dir).map_err(|e| not_found(id, e))?;
            if file_type(st.mode) == FileType::Regular {
                let md = from_stat(&st);
                return self.regular(Fd::Granted(&root.dir), id.to_owned(), st, md);
            }
        }
        let (parent, name) = match below.split_last() {
            Some((name, parents)) => (
                fs::walk_dirs(&root.dir, parents, false, false).map_err(|e| not_found(id, e))?,
                name.as_str(),
            ),
            None => (
                fs::reopen(&root.dir, false).map_err(|e| not_found(id, e))?,
                ".",
            ),
        };
        let st = stat_at(&parent, name, false).map_err(|e| not_found(id, e))?;
        self.visit(&parent, name, id.to_owned(), st)
    }

    fn visit(
        &mut self,
        parent: &Descriptor,
        name: &str,
        id: String,
        st: Stat,
    ) -> Result<(), PluginError> {
        let mut md = from_stat(&st);
        match file_type(st.mode) {
            FileType::Directory => {
                let dir = match fs::open_dir(parent, name, false) {
                    Ok(d) => d,
                    Err(e) => {
                        return {
                            self.warn(&id, &describe(e, "cannot open directory"));
                            Ok(())
                        }
                    }
                };
                self.emit(
                    Item {
                        id: id.clone(),
                        kind: ItemKind::Directory,
                        metadata: md,
                    },
                    ItemData::None,
                )?;
                let mut names = match list(&dir) {
                    Ok(n) => n,
                    Err(msg) => {
                        return {
                            self.warn(&id, &msg);
                            Ok(())
                        }
                    }
                };
                names.sort();
                for child in names {
                    let cid = ids::child(&id, &child);
                    match stat_at(&dir, &child, false) {
                        Ok(cst) => self.visit(&dir, &child, cid, cst)?,
                        Err(e) => self.warn(&cid, &describe(e, "cannot stat")),
                    }
                }
            }
            FileType::Regular => self.regular(Fd::At(parent, name), id, st, md)?,
            FileType::Symlink => {
                let target = match readlink_at(parent, name) {
                    Ok(t) => t,
                    Err(e) => {
                        return {
                            self.warn(&id, &describe(e, "cannot read link"));
                            Ok(())
                        }
                    }
                };
                md.size = target.len() as u64;
                md.symlink_target = Some(target);
                self.emit(
                    Item {
                        id,
                        kind: ItemKind::Symlink,
                        metadata: md,
                    },
                    ItemData::None,
                )?;
            }
            FileType::Special => {
                self.emit(
                    Item {
                        id,
                        kind: ItemKind::Special,
                        metadata: md,
                    },
                    ItemData::None,
                )?;
            }
        }
        Ok(())
    }

    /// A regular file: a hard link to a name already emitted, unchanged
    /// since the previous backup, or its content as the open file.
    fn regular(
        &mut self,
        fd: Fd<'_>,
        id: String,
        st: Stat,
        mut md: ItemMetadata,
    ) -> Result<(), PluginError> {
        if st.nlink > 1 {
            if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                md.size = 0;
                md.hardlink_target = Some(first.clone());
                return self.emit(Item::new(id, ItemKind::Hardlink, md), ItemData::None);
            }
        }
        if previous(&id).is_some_and(|p| md.same_as(&p)) {
            if st.nlink > 1 {
                self.links.insert((st.dev, st.ino), id.clone());
            }
            self.summary.bytes += md.size;
            return self.emit(Item::new(id, ItemKind::File, md), ItemData::Unchanged);
        }
        let opened;
        let file = match fd {
            Fd::Granted(d) => d,
            Fd::At(parent, name) => match parent.open_at(
                PathFlags::empty(),
                name,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            ) {
                Ok(d) => {
                    opened = d;
                    &opened
                }
                Err(e) => {
                    return {
                        self.warn(&id, &describe(e, "cannot open file"));
                        Ok(())
                    }
                }
            },
        };
        if st.nlink > 1 {
            self.links.insert((st.dev, st.ino), id.clone());
        }
        self.summary.bytes += md.size;
        self.emit(Item::new(id, ItemKind::File, md), ItemData::File(file))
    }

    fn emit(&mut self, item: Item, data: ItemData<'_>) -> Result<(), PluginError> {
        sink::emit(&item, &data)?;
        self.summary.items += 1;
        if self.summary.items.is_multiple_of(PROGRESS_EVERY) {
            progress(self.summary.items, self.summary.bytes, None, None);
        }
        Ok(())
    }

    fn warn(&mut self, id: &str, message: &str) {
        self.summary.warnings += 1;
        sink::warn(id, message);
    }
}

/// Names in a directory, without `.` and `..`.
fn list(dir: &Descriptor) -> Result<Vec<String>, String> {
    let stream = dir
        .read_directory()
        .map_err(|e| describe(e, "cannot list directory"))?;
    let mut names = Vec::new();
    while let Some(entry) = stream
        .read_directory_entry()
        .map_err(|e| describe(e, "cannot list directory"))?
    {
        if entry.name != "." && entry.name != ".." {
            names.push(entry.name);
        }
    }
    Ok(names)
}

/// Where a regular file's content is: a preopen that is the file itself,
/// or a name in a directory.
enum Fd<'a> {
    Granted(&'a Descriptor),
    At(&'a Descriptor, &'a str),
}

fn not_found(id: &str, e: ErrorCode) -> PluginError {
    PluginError::InvalidRequest(describe(e, &format!("selected item {id}")))
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn nested_selections_collapse() {
        let sel = [
            "/srv/a".to_string(),
            "/srv/a/b".into(),
            "/srv/ab".into(),
            "/srv/a/".into(),
        ];
        assert_eq!(
            normalized(&sel).unwrap(),
            vec!["/srv/a".to_string(), "/srv/ab".into()]
        );
        let all = ["/".to_string(), "/x".into()];
        assert_eq!(normalized(&all).unwrap(), vec!["/".to_string()]);
    }
}
