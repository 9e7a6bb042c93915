//! Restore: recreates each item from the restore source below the granted
//! preopen with the longest path that holds it (the plan asks for each top
//! item, or its parent). An item that is a preopen itself gets its metadata
//! applied to that preopen.
//!
//! Items arrive parents before children, a directory's whole subtree after
//! it (the backup walks depth first). The restorer keeps the directories
//! from the preopen down to the current one open, as a stack, and creates
//! every entry relative to its parent's descriptor: an item costs one
//! `openat` of one name, never a walk from the preopen. A directory's
//! metadata is applied to its open descriptor when the stream leaves it,
//! once all its children exist, so that creating them does not undo it;
//! a directory the stream comes back to gets it again when left anew.

use std::collections::HashMap;

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

pub(crate) fn restore(req: &RestoreRequest) -> Result<Summary, PluginError> {
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
        open: Vec::new(),
        left: HashMap::new(),
        granted: Vec::new(),
    };
    while let Some((item, content)) = source::next()? {
        let id = item.id.clone();
        if let Err(msg) = r.item(item, &content) {
            r.summary.warnings += 1;
            source::warn(&id, &msg);
        }
    }
    r.finish();
    progress(
        r.summary.items,
        r.summary.bytes,
        Some(r.summary.items),
        Some(r.summary.bytes),
    );
    Ok(r.summary)
}

/// A directory held open while the stream is below it.
struct Open {
    comps: Vec<String>,
    dir: Descriptor,
    /// Its metadata, when it is a restored directory: applied when left.
    md: Option<ItemMetadata>,
}

struct Restorer<'r> {
    /// What the job granted.
    roots: &'r [Root],
    overwrite: bool,
    summary: Summary,
    /// From a preopen down to the directory of the last item.
    open: Vec<Open>,
    /// Restored directories the stream has left, with their metadata, in
    /// case it comes back to one.
    left: HashMap<Vec<String>, ItemMetadata>,
    /// Granted preopens restored in place, with their metadata: applied
    /// at the end.
    granted: Vec<(Vec<String>, ItemMetadata)>,
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
        self.enter(parents)
            .map_err(|e| describe(e, "cannot open parent directory"))?;
        let result = self.item_in(name, &comps, &item, content);
        if result.is_ok() {
            self.summary.items += 1;
            if self.summary.items.is_multiple_of(256) {
                progress(self.summary.items, self.summary.bytes, None, None);
            }
        }
        result
    }

    /// The directory of the last item entered: the top of the stack.
    fn parent(&self) -> &Descriptor {
        &self.open.last().expect("entered").dir
    }

    fn item_in(
        &mut self,
        name: &str,
        comps: &[String],
        item: &Item,
        content: &Content,
    ) -> Result<(), String> {
        let md = &item.metadata;
        match item.kind {
            ItemKind::Directory => {
                let parent = self.parent();
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
                // Its children come next: hold it open for them.
                let dir = fs::open_dir(parent, name, true)
                    .map_err(|e| describe(e, "cannot open directory"))?;
                self.left.remove(comps);
                self.open.push(Open {
                    comps: comps.to_vec(),
                    dir,
                    md: Some(md.clone()),
                });
            }
            ItemKind::File => {
                let parent = self.parent();
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
                // Through the open file: nothing is resolved again.
                metadata::apply_to_written(&fd, md)
                    .map_err(|e| describe(e, "cannot set metadata"))?;
            }
            ItemKind::Symlink => {
                let parent = self.parent();
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
                let tcomps: Vec<String> = ids::components(target)
                    .map_err(|e| format!("refused link target: {e:?}"))?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                let (tname, tparents) = tcomps.split_last().ok_or("hard link to the root")?;
                self.make_room(self.parent(), name)?;
                let tdir = self
                    .dir_of(tparents)
                    .map_err(|e| describe(e, "cannot open link target"))?;
                let tdir = tdir.as_ref().unwrap_or_else(|| self.find_open(tparents));
                tdir.link_at(PathFlags::empty(), tname, self.parent(), name)
                    .map_err(|e| match e {
                        ErrorCode::Exist => "exists; not overwritten".to_string(),
                        e => describe(e, "cannot create hard link"),
                    })?;
            }
            kind => {
                return Err(format!(
                    "items of kind {kind:?} cannot be restored by the filesystem plugin"
                ))
            }
        }
        Ok(())
    }

    /// An item that is a granted preopen itself: a directory's metadata is
    /// applied to it at the end.
    fn granted(&mut self, root: &Root, comps: &[String], item: &Item) -> Result<(), String> {
        match item.kind {
            ItemKind::Directory => self.granted.push((comps.to_vec(), item.metadata.clone())),
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

    /// Makes the directory `parents` the top of the stack: leaves the open
    /// directories that do not hold it (applying their metadata), then
    /// opens, or makes where missing, the components below the deepest
    /// one that does, one name at a time; from its preopen when none does.
    fn enter(&mut self, parents: &[String]) -> Result<(), ErrorCode> {
        while let Some(top) = self.open.last() {
            if parents.starts_with(&top.comps) {
                break;
            }
            self.leave();
        }
        if self.open.is_empty() {
            let (root, _) = locate(self.roots, parents)?;
            self.open.push(Open {
                comps: root.components.clone(),
                dir: fs::reopen(&root.dir, true)?,
                md: None,
            });
        }
        while self.open.last().map(|o| o.comps.len()) < Some(parents.len()) {
            let top = self.open.last().expect("a preopen at the bottom");
            let c = &parents[top.comps.len()];
            let dir = match fs::open_dir(&top.dir, c, true) {
                Err(ErrorCode::NoEntry) => {
                    top.dir.create_directory_at(c)?;
                    fs::open_dir(&top.dir, c, true)?
                }
                other => other?,
            };
            let comps = parents[..top.comps.len() + 1].to_vec();
            // Back in a directory already left: its metadata goes on again
            // when it is left anew.
            let md = self.left.remove(&comps);
            self.open.push(Open { comps, dir, md });
        }
        Ok(())
    }

    /// Leaves the top directory: its metadata goes on its descriptor.
    fn leave(&mut self) {
        let Some(o) = self.open.pop() else { return };
        let Some(md) = o.md else { return };
        let applied = metadata::apply_owner_to_open(&o.dir, &md)
            .and_then(|()| metadata::apply_to_open(&o.dir, &md));
        if let Err(e) = applied {
            self.summary.warnings += 1;
            source::warn(
                &format!("/{}", o.comps.join("/")),
                &describe(e, "cannot set directory metadata"),
            );
        }
        self.left.insert(o.comps, md);
    }

    /// The directory `comps` for reading: `None` when it is open on the
    /// stack (see [`find_open`]), otherwise opened below the deepest open
    /// directory or the preopen that holds it.
    fn dir_of(&self, comps: &[String]) -> Result<Option<Descriptor>, ErrorCode> {
        if self.open.iter().any(|o| o.comps == comps) {
            return Ok(None);
        }
        match self.open.iter().rev().find(|o| comps.starts_with(&o.comps)) {
            Some(o) => fs::walk_dirs(&o.dir, &comps[o.comps.len()..], false, false).map(Some),
            None => {
                let (root, below) = locate(self.roots, comps)?;
                fs::walk_dirs(&root.dir, &below, false, false).map(Some)
            }
        }
    }

    fn find_open(&self, comps: &[String]) -> &Descriptor {
        &self
            .open
            .iter()
            .find(|o| o.comps == comps)
            .expect("dir_of found it open")
            .dir
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

    /// Leaves every open directory, deepest first, then applies the
    /// metadata of granted preopens restored in place, deepest first.
    fn finish(&mut self) {
        while !self.open.is_empty() {
            self.leave();
        }
        let mut granted = std::mem::take(&mut self.granted);
        granted.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        for (comps, md) in granted {
            let Some(root) = self.roots.iter().find(|r| r.components == comps) else {
                continue;
            };
            let applied = metadata::apply_owner_to_open(&root.dir, &md)
                .and_then(|()| metadata::apply_to_open(&root.dir, &md));
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
