//! Backup: walks each selected tree and emits one item per directory entry.
//! File content goes to the runner as the open descriptor.

use std::collections::HashMap;

use crate::attache::plugin::backup_sink::{self, previous, ItemData};
use crate::attache::plugin::host::progress;
use crate::attache::plugin::posix::{readlink_at, stat_at, Stat};
use crate::attache::plugin::types::{Item, ItemKind, PluginError};
use crate::exports::attache::plugin::plugin::Summary;
use crate::fs::{self, describe, Root};
use crate::ids;
use crate::metadata::{file_type, from_stat, FileType};
use crate::wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};

/// How often, in items, progress is reported.
const PROGRESS_EVERY: u64 = 256;

pub fn backup(selection: &[String]) -> Result<Summary, PluginError> {
    let roots = fs::roots();
    let mut walk = Walk {
        summary: Summary {
            items: 0,
            bytes: 0,
            warnings: 0,
        },
        links: HashMap::new(),
    };
    for id in normalized(selection)? {
        let comps = ids::components(&id)?;
        let (root, below) = fs::locate(&roots, &comps).ok_or_else(|| {
            PluginError::AccessDenied(format!("{id} is not below any directory the job grants"))
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
fn normalized(selection: &[String]) -> Result<Vec<String>, PluginError> {
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
                    Err(e) => return Ok(self.warn(&id, &describe(e, "cannot open directory"))),
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
                    Err(msg) => return Ok(self.warn(&id, &msg)),
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
            FileType::Regular => {
                if st.nlink > 1 {
                    if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                        md.size = 0;
                        md.hardlink_target = Some(first.clone());
                        return self.emit(
                            Item {
                                id,
                                kind: ItemKind::Hardlink,
                                metadata: md,
                            },
                            ItemData::None,
                        );
                    }
                }
                if st.nlink <= 1 || !self.links.contains_key(&(st.dev, st.ino)) {
                    let same = previous(&id).is_some_and(|p| {
                        p.change_token.is_some() && p.change_token == md.change_token
                    });
                    if same {
                        if st.nlink > 1 {
                            self.links.insert((st.dev, st.ino), id.clone());
                        }
                        self.summary.bytes += md.size;
                        return self.emit(
                            Item {
                                id,
                                kind: ItemKind::File,
                                metadata: md,
                            },
                            ItemData::Unchanged,
                        );
                    }
                }
                let fd = match parent.open_at(
                    PathFlags::empty(),
                    name,
                    OpenFlags::empty(),
                    DescriptorFlags::READ,
                ) {
                    Ok(fd) => fd,
                    Err(e) => return Ok(self.warn(&id, &describe(e, "cannot open file"))),
                };
                if st.nlink > 1 {
                    self.links.insert((st.dev, st.ino), id.clone());
                }
                self.summary.bytes += md.size;
                self.emit(
                    Item {
                        id,
                        kind: ItemKind::File,
                        metadata: md,
                    },
                    ItemData::File(&fd),
                )?;
            }
            FileType::Symlink => {
                let target = match readlink_at(parent, name) {
                    Ok(t) => t,
                    Err(e) => return Ok(self.warn(&id, &describe(e, "cannot read link"))),
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

    fn emit(&mut self, item: Item, data: ItemData<'_>) -> Result<(), PluginError> {
        backup_sink::emit(&item, &data)?;
        self.summary.items += 1;
        if self.summary.items % PROGRESS_EVERY == 0 {
            progress(self.summary.items, self.summary.bytes, None, None);
        }
        Ok(())
    }

    fn warn(&mut self, id: &str, message: &str) {
        self.summary.warnings += 1;
        backup_sink::warn(id, message);
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

fn not_found(id: &str, e: crate::wasi::filesystem::types::ErrorCode) -> PluginError {
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
