//! Restore: recreates each item from the restore source at its full path,
//! below the granted preopen with the longest path that holds it (the plan
//! asks for each top item, or its parent). An item that is a preopen itself
//! gets its metadata applied to that preopen. Directory metadata is applied
//! last, deepest first, so that creating children does not undo it.

use attache_plugin_sdk::host::progress;
use attache_plugin_sdk::posix::{self, stat_at};
use attache_plugin_sdk::source::{self, Content};
use attache_plugin_sdk::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use attache_plugin_sdk::{
    Item, ItemKind, ItemMetadata, PluginError, RestoreDestination, RestoreRequest, Summary,
};

use crate::fs::{self, describe, Root};
use crate::ids;
use crate::metadata::{self, file_type, FileType};

pub fn restore(req: &RestoreRequest) -> Result<Summary, PluginError> {
    if let RestoreDestination::Renamed(_) = req.destination {
        return Err(PluginError::InvalidRequest(
            "files cannot be restored under other ids; restore them to an alternate directory"
                .into(),
        ));
    }
    let roots = fs::roots();
    let mut r = Restorer {
        roots: &roots,
        overwrite: req.overwrite,
        summary: Summary::default(),
        dirs: Vec::new(),
        parent: None,
    };
    while let Some((item, content)) = source::next()? {
        let id = item.id.clone();
        if let Err(msg) = r.item(item, &content) {
            r.summary.warnings += 1;
            source::warn(&id, &msg);
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
    /// What the job granted.
    roots: &'r [Root],
    overwrite: bool,
    summary: Summary,
    /// Directories restored, with their metadata, applied at the end.
    dirs: Vec<(Vec<String>, ItemMetadata)>,
    /// The last parent directory opened, reused by its siblings.
    parent: Option<(Vec<String>, Descriptor)>,
}

impl Restorer<'_> {
    fn item(&mut self, item: Item, content: &Content) -> Result<(), String> {
        let comps: Vec<String> = ids::components(&item.id)
            .map_err(|e| format!("refused: {}", e.message()))?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let Some((name, parents)) = comps.split_last() else {
            // The root itself: its metadata would land on the target
            // directory, which belongs to whoever asked for the restore.
            return Ok(());
        };
        if let Some(root) = self.roots.iter().find(|r| r.components == comps) {
            return self.granted(root, &comps, &item);
        }
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
        content: &Content,
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
                parent_link(self.roots, &tcomps, parent, name)?;
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

    /// An item that is a granted preopen itself: a directory's metadata is
    /// applied to it at the end; a file's content and metadata go into it.
    fn granted(&mut self, root: &Root, comps: &[String], item: &Item) -> Result<(), String> {
        match item.kind {
            ItemKind::Directory => self.dirs.push((comps.to_vec(), item.metadata.clone())),
            kind => {
                return Err(format!(
                "{kind:?} {} is granted as a preopen; only a directory can be restored in place",
                root.path
            ))
            }
        }
        self.summary.items += 1;
        Ok(())
    }

    /// The directory that holds the item, made where missing: the last one
    /// used when it is the same, otherwise opened anew below the preopen
    /// that holds it.
    fn take_parent(&mut self, parents: &[String]) -> Result<Descriptor, ErrorCode> {
        match self.parent.take() {
            Some((p, d)) if p == parents => Ok(d),
            _ => {
                let (root, below) = locate(self.roots, parents)?;
                fs::walk_dirs(&root.dir, &below, true, true)
            }
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
            let applied = match self.roots.iter().find(|r| r.components == comps) {
                Some(root) => metadata::apply_owner_to_open(&root.dir, &md)
                    .and_then(|()| metadata::apply_to_open(&root.dir, &md)),
                None => locate(self.roots, parents)
                    .and_then(|(root, below)| fs::walk_dirs(&root.dir, &below, true, false))
                    .and_then(|p| {
                        metadata::apply_owner(&p, name, &md)?;
                        let d = fs::open_dir(&p, name, true)?;
                        metadata::apply_to_open(&d, &md)
                    }),
            };
            if let Err(e) = applied {
                self.summary.warnings += 1;
                source::warn(
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

/// The preopen holding the directory `comps`, with the components below
/// it; `access` (not granted) when none does.
fn locate<'r>(roots: &'r [Root], comps: &[String]) -> Result<(&'r Root, Vec<String>), ErrorCode> {
    let comps: Vec<&str> = comps.iter().map(String::as_str).collect();
    fs::locate(roots, &comps).ok_or(ErrorCode::Access)
}

/// Makes `name` in `parent` a further name of the restored item `target`.
fn parent_link(
    roots: &[Root],
    target: &[&str],
    parent: &Descriptor,
    name: &str,
) -> Result<(), String> {
    let (tname, tparents) = target.split_last().ok_or("hard link to the root")?;
    let tparents: Vec<String> = tparents.iter().map(|c| (*c).to_owned()).collect();
    let tdir = locate(roots, &tparents)
        .and_then(|(root, below)| fs::walk_dirs(&root.dir, &below, false, false))
        .map_err(|e| describe(e, "cannot open link target"))?;
    tdir.link_at(PathFlags::empty(), tname, parent, name)
        .map_err(|e| match e {
            ErrorCode::Exist => "exists; not overwritten".to_string(),
            e => describe(e, "cannot create hard link"),
        })
}
