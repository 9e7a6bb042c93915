//! Restore: recreates each item from the restore source below the granted
//! target, at the item's full path. Directory metadata is applied last,
//! deepest first, so that creating children does not undo it.

use crate::attache::plugin::host::progress;
use crate::attache::plugin::posix::{self, stat_at};
use crate::attache::plugin::restore_source::{self, ItemContent};
use crate::attache::plugin::types::{Item, ItemKind, ItemMetadata, PluginError};
use crate::exports::attache::plugin::plugin::{RestoreDestination, RestoreRequest, Summary};
use crate::fs::{self, describe, Root};
use crate::ids;
use crate::metadata::{self, file_type, FileType};
use crate::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

pub fn restore(req: &RestoreRequest) -> Result<Summary, PluginError> {
    if let RestoreDestination::Renamed(_) = req.destination {
        return Err(PluginError::InvalidRequest(
            "files cannot be restored under other ids; restore them to an alternate directory"
                .into(),
        ));
    }
    let roots = fs::roots();
    let root = fs::restore_root(&roots)?;
    let mut r = Restorer {
        root,
        overwrite: req.overwrite,
        summary: Summary {
            items: 0,
            bytes: 0,
            warnings: 0,
        },
        dirs: Vec::new(),
        parent: None,
    };
    while let Some((item, content)) = restore_source::next()? {
        let id = item.id.clone();
        if let Err(msg) = r.item(item, &content) {
            r.summary.warnings += 1;
            restore_source::warn(&id, &msg);
        }
    }
    r.finish_dirs();
    progress(
        r.summary.items,
        r.summary.bytes,
        Some(r.summary.items),
        Some(r.summary.bytes),
    );
    Ok(r.summary)
}

struct Restorer<'r> {
    root: &'r Root,
    overwrite: bool,
    summary: Summary,
    /// Directories restored, with their metadata, applied at the end.
    dirs: Vec<(Vec<String>, ItemMetadata)>,
    /// The last parent directory opened, reused by its siblings.
    parent: Option<(Vec<String>, Descriptor)>,
}

impl Restorer<'_> {
    fn item(&mut self, item: Item, content: &ItemContent) -> Result<(), String> {
        let comps: Vec<String> = ids::components(&item.id)
            .map_err(|e| format!("refused: {e:?}"))?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let Some((name, parents)) = comps.split_last() else {
            // The root itself: its metadata would land on the target
            // directory, which belongs to whoever asked for the restore.
            return Ok(());
        };
        let parent = self
            .take_parent(parents)
            .map_err(|e| describe(e, "cannot open parent directory"))?;
        let result = self.item_in(&parent, name, &comps, &item, content);
        self.parent = Some((parents.to_vec(), parent));
        result
    }

    fn item_in(
        &mut self,
        parent: &Descriptor,
        name: &str,
        comps: &[String],
        item: &Item,
        content: &ItemContent,
    ) -> Result<(), String> {
        let md = &item.metadata;
        match item.kind {
            ItemKind::Directory => {
                match parent.create_directory_at(name) {
                    Ok(()) => {}
                    Err(ErrorCode::Exist) => match kind_of(parent, name)? {
                        FileType::Directory => {}
                        _ if self.overwrite => {
                            parent
                                .unlink_file_at(name)
                                .map_err(|e| describe(e, "cannot replace"))?;
                            parent
                                .create_directory_at(name)
                                .map_err(|e| describe(e, "cannot create directory"))?;
                        }
                        _ => return Err("exists and is not a directory; not overwritten".into()),
                    },
                    Err(e) => return Err(describe(e, "cannot create directory")),
                }
                self.dirs.push((comps.to_vec(), md.clone()));
            }
            ItemKind::File => {
                self.make_room(parent, name)?;
                let mut flags = OpenFlags::CREATE | OpenFlags::TRUNCATE;
                if !self.overwrite {
                    flags |= OpenFlags::EXCLUSIVE;
                }
                let fd = parent
                    .open_at(
                        PathFlags::empty(),
                        name,
                        flags,
                        DescriptorFlags::READ | DescriptorFlags::WRITE,
                    )
                    .map_err(|e| match e {
                        ErrorCode::Exist => "exists; not overwritten".to_string(),
                        e => describe(e, "cannot create file"),
                    })?;
                let n = match content.copy_to(&fd) {
                    Ok(n) => n,
                    Err(e) => {
                        // Leave no half-written file behind.
                        drop(fd);
                        let _ = parent.unlink_file_at(name);
                        return Err(format!("cannot write content: {e:?}"));
                    }
                };
                self.summary.bytes += n;
                metadata::apply_owner(parent, name, md)
                    .map_err(|e| describe(e, "cannot set owner"))?;
                metadata::apply_to_open(&fd, md).map_err(|e| describe(e, "cannot set metadata"))?;
            }
            ItemKind::Symlink => {
                let target = md
                    .symlink_target
                    .as_deref()
                    .ok_or("symlink without a target")?;
                self.make_room(parent, name)?;
                posix::symlink_at(parent, name, target).map_err(|e| match e {
                    ErrorCode::Exist => "exists; not overwritten".to_string(),
                    e => describe(e, "cannot create symlink"),
                })?;
                metadata::apply_owner(parent, name, md)
                    .map_err(|e| describe(e, "cannot set owner"))?;
                metadata::apply_to_symlink(parent, name, md)
                    .map_err(|e| describe(e, "cannot set mtime"))?;
            }
            ItemKind::Hardlink => {
                let target = md
                    .hardlink_target
                    .as_deref()
                    .ok_or("hard link without a target")?;
                let tcomps =
                    ids::components(target).map_err(|e| format!("refused link target: {e:?}"))?;
                self.make_room(parent, name)?;
                parent_link(self.root, &tcomps, parent, name)?;
            }
            kind => {
                return Err(format!(
                    "items of kind {kind:?} cannot be restored by the filesystem plugin"
                ))
            }
        }
        self.summary.items += 1;
        if self.summary.items % 256 == 0 {
            progress(self.summary.items, self.summary.bytes, None, None);
        }
        Ok(())
    }

    /// The directory that holds the item, made where missing: the last one
    /// used when it is the same, otherwise opened anew.
    fn take_parent(&mut self, parents: &[String]) -> Result<Descriptor, ErrorCode> {
        match self.parent.take() {
            Some((p, d)) if p == parents => Ok(d),
            _ => fs::walk_dirs(&self.root.dir, parents, true, true),
        }
    }

    /// With overwrite, removes a non-directory that stands where an item goes.
    fn make_room(&self, parent: &Descriptor, name: &str) -> Result<(), String> {
        if !self.overwrite {
            return Ok(());
        }
        match stat_at(parent, name, false) {
            Err(ErrorCode::NoEntry) => Ok(()),
            Err(e) => Err(describe(e, "cannot stat")),
            Ok(st) if file_type(st.mode) == FileType::Directory => {
                Err("a directory stands where a file goes; not replaced".into())
            }
            Ok(_) => parent
                .unlink_file_at(name)
                .map_err(|e| describe(e, "cannot replace")),
        }
    }

    fn finish_dirs(&mut self) {
        self.parent = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        for (comps, md) in dirs {
            let Some((name, parents)) = comps.split_last() else {
                continue;
            };
            let applied = fs::walk_dirs(&self.root.dir, parents, true, false).and_then(|p| {
                metadata::apply_owner(&p, name, &md)?;
                let d = fs::open_dir(&p, name, true)?;
                metadata::apply_to_open(&d, &md)
            });
            if let Err(e) = applied {
                self.summary.warnings += 1;
                restore_source::warn(
                    &format!("/{}", comps.join("/")),
                    &describe(e, "cannot set directory metadata"),
                );
            }
        }
    }
}

fn kind_of(parent: &Descriptor, name: &str) -> Result<FileType, String> {
    stat_at(parent, name, false)
        .map(|st| file_type(st.mode))
        .map_err(|e| describe(e, "cannot stat"))
}

/// Makes `name` in `parent` a further name of the restored item `target`.
fn parent_link(
    root: &Root,
    target: &[&str],
    parent: &Descriptor,
    name: &str,
) -> Result<(), String> {
    let (tname, tparents) = target.split_last().ok_or("hard link to the root")?;
    let tdir = fs::walk_dirs(&root.dir, tparents, false, false)
        .map_err(|e| describe(e, "cannot open link target"))?;
    tdir.link_at(PathFlags::empty(), tname, parent, name)
        .map_err(|e| match e {
            ErrorCode::Exist => "exists; not overwritten".to_string(),
            e => describe(e, "cannot create hard link"),
        })
}
