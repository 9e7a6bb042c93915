//! The frozen `attache:plugin@0.1.0` contract, served on top of the newest
//! one: its imports convert their values and call the newest host code, its
//! exports are called with converted requests, and its plans are made by
//! the runner from what 0.1.0 plugins declared (capabilities) and what
//! 0.1.0 defined (path-like ids are absolute paths), since 0.1.0 had no
//! `plan`.

use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::ErrorCode;

use super::bindings::v0_1::attache::plugin as old;
use super::bindings::v0_1::exports::attache::plugin::plugin as old_exports;
use super::bindings::v0_2::attache::plugin as new;
use super::bindings::v0_2::exports::attache::plugin::plugin as new_exports;
use super::sink::ItemWriterHandle;
use super::source::ContentHandle;
use super::State;
use new::types::{AccessPlan, Operation, PathAccess, PathNeed, PlanRequest, RestoreDestination};

// ---- values ----------------------------------------------------------

impl From<old::types::Timestamp> for new::types::Timestamp {
    fn from(t: old::types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }
    }
}

impl From<new::types::Timestamp> for old::types::Timestamp {
    fn from(t: new::types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }
    }
}

macro_rules! same_enum {
    ($a:ty, $b:ty, $($v:ident),+) => {
        impl From<$a> for $b {
            fn from(x: $a) -> Self {
                match x { $(<$a>::$v => <$b>::$v),+ }
            }
        }
        impl From<$b> for $a {
            fn from(x: $b) -> Self {
                match x { $(<$b>::$v => <$a>::$v),+ }
            }
        }
    };
}

same_enum!(
    old::types::ItemKind,
    new::types::ItemKind,
    Directory,
    File,
    Symlink,
    Hardlink,
    Special,
    Database,
    Schema,
    Table,
    Mailbox,
    Message,
    Blob
);
same_enum!(
    old::types::Level,
    new::types::Level,
    Trace,
    Debug,
    Info,
    Warn,
    Error
);
same_enum!(
    old::types::ApplicationKind,
    new::types::ApplicationKind,
    Filesystem,
    Database,
    Mail,
    Other
);

impl From<old::types::ItemMetadata> for new::types::ItemMetadata {
    fn from(m: old::types::ItemMetadata) -> Self {
        Self {
            size: m.size,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime.map(Into::into),
            symlink_target: m.symlink_target,
            hardlink_target: m.hardlink_target,
            attributes: m.attributes,
            change_token: m.change_token,
        }
    }
}

impl From<new::types::ItemMetadata> for old::types::ItemMetadata {
    fn from(m: new::types::ItemMetadata) -> Self {
        Self {
            size: m.size,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime.map(Into::into),
            symlink_target: m.symlink_target,
            hardlink_target: m.hardlink_target,
            attributes: m.attributes,
            change_token: m.change_token,
        }
    }
}

impl From<old::types::Item> for new::types::Item {
    fn from(i: old::types::Item) -> Self {
        Self {
            id: i.id,
            kind: i.kind.into(),
            metadata: i.metadata.into(),
        }
    }
}

impl From<new::types::Item> for old::types::Item {
    fn from(i: new::types::Item) -> Self {
        Self {
            id: i.id,
            kind: i.kind.into(),
            metadata: i.metadata.into(),
        }
    }
}

impl From<old::types::PluginError> for new::types::PluginError {
    fn from(e: old::types::PluginError) -> Self {
        use old::types::PluginError as O;
        match e {
            O::InvalidRequest(m) => Self::InvalidRequest(m),
            O::AccessDenied(m) => Self::AccessDenied(m),
            O::Application(m) => Self::Application(m),
            O::Transport(m) => Self::Transport(m),
            O::Other(m) => Self::Other(m),
        }
    }
}

impl From<new::types::PluginError> for old::types::PluginError {
    fn from(e: new::types::PluginError) -> Self {
        use new::types::PluginError as N;
        match e {
            N::InvalidRequest(m) => Self::InvalidRequest(m),
            N::AccessDenied(m) => Self::AccessDenied(m),
            N::Application(m) => Self::Application(m),
            N::Transport(m) => Self::Transport(m),
            N::Other(m) => Self::Other(m),
        }
    }
}

impl From<old::types::CatalogEntry> for new::types::CatalogEntry {
    fn from(e: old::types::CatalogEntry) -> Self {
        Self {
            id: e.id,
            kind: e.kind.into(),
            size: e.size,
            has_children: e.has_children,
        }
    }
}

impl From<old_exports::Summary> for new_exports::Summary {
    fn from(s: old_exports::Summary) -> Self {
        Self {
            items: s.items,
            bytes: s.bytes,
            warnings: s.warnings,
        }
    }
}

impl From<new::posix::Stat> for old::posix::Stat {
    fn from(s: new::posix::Stat) -> Self {
        Self {
            dev: s.dev,
            ino: s.ino,
            mode: s.mode,
            nlink: s.nlink,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            mtime: s.mtime.into(),
            ctime: s.ctime.into(),
        }
    }
}

// ---- exports ---------------------------------------------------------

/// A 0.1.0 plugin's info in the newest form: no declared options (0.1.0
/// plugins took any).
pub(crate) fn info(i: &old::types::PluginInfo) -> new::types::PluginInfo {
    new::types::PluginInfo {
        name: i.name.clone(),
        version: i.version.clone(),
        kind: i.kind.into(),
        description: i.description.clone(),
        options: Vec::new(),
        supports_quiesce: i.supports_quiesce,
    }
}

pub(crate) fn backup_request(r: &new_exports::BackupRequest) -> old_exports::BackupRequest {
    old_exports::BackupRequest {
        selection: r.selection.clone(),
        options: r.options.clone(),
    }
}

pub(crate) fn restore_request(r: &new_exports::RestoreRequest) -> old_exports::RestoreRequest {
    old_exports::RestoreRequest {
        destination: match &r.destination {
            RestoreDestination::Original => old_exports::RestoreDestination::Original,
            RestoreDestination::Alternate(a) => {
                old_exports::RestoreDestination::Alternate(a.clone())
            }
            RestoreDestination::Renamed(m) => old_exports::RestoreDestination::Renamed(m.clone()),
        },
        overwrite: r.overwrite,
        options: r.options.clone(),
    }
}

/// The plan of a 0.1.0 plugin, as 0.1.0 runners granted: a backup or
/// discovery reads the absolute paths its selection names (a directory
/// with everything below it, a file alone); a restore writes below the
/// target, which the plugin sees as `/`; no network (0.1.0 plugins had the
/// job list addresses, which ids no longer name to the runner). Each need
/// must be covered by a capability the plugin declared.
pub(crate) fn plan(info: &old::types::PluginInfo, req: &PlanRequest) -> Result<AccessPlan, String> {
    use old::types::Capability;
    let has = |c: Capability| info.capabilities.contains(&c);
    let mut plan = AccessPlan {
        paths: Vec::new(),
        connect: Vec::new(),
        ownership: false,
        memory_mib: None,
        deadline_secs: None,
    };
    match req.operation {
        Operation::Backup | Operation::Discover => {
            for s in &req.selection {
                if crate::plan::clean_path(&s.id).is_err() {
                    continue;
                }
                if !has(Capability::FilesystemRead) {
                    return Err(format!(
                        "reading {} needs the filesystem-read capability, which the plugin does not declare",
                        s.id
                    ));
                }
                plan.paths.push(PathNeed {
                    path: s.id.clone(),
                    access: PathAccess::Read,
                    reason: "selected (contract 0.1.0)".into(),
                });
            }
        }
        Operation::Restore => {
            if !has(Capability::FilesystemWrite) {
                return Err(
                    "a restore needs the filesystem-write capability, which the plugin does not declare"
                        .into(),
                );
            }
            plan.paths.push(PathNeed {
                path: "/".into(),
                access: PathAccess::ReadWrite,
                reason: "the restore target (contract 0.1.0)".into(),
            });
            plan.ownership = has(Capability::Ownership);
        }
    }
    Ok(plan)
}

// ---- imports ---------------------------------------------------------

impl old::types::Host for State {}

impl old::host::Host for State {
    fn log(&mut self, level: old::types::Level, message: String) -> wasmtime::Result<()> {
        new::host::Host::log(self, level.into(), message)
    }

    fn progress(
        &mut self,
        items_done: u64,
        bytes_done: u64,
        items_total: Option<u64>,
        bytes_total: Option<u64>,
    ) -> wasmtime::Result<()> {
        new::host::Host::progress(self, items_done, bytes_done, items_total, bytes_total)
    }
}

impl old::posix::Host for State {
    fn stat_at(
        &mut self,
        dir: Resource<Descriptor>,
        path: String,
        follow: bool,
    ) -> wasmtime::Result<Result<old::posix::Stat, ErrorCode>> {
        Ok(new::posix::Host::stat_at(self, dir, path, follow)?.map(Into::into))
    }

    fn readlink_at(
        &mut self,
        dir: Resource<Descriptor>,
        name: String,
    ) -> wasmtime::Result<Result<String, ErrorCode>> {
        new::posix::Host::readlink_at(self, dir, name)
    }

    fn symlink_at(
        &mut self,
        dir: Resource<Descriptor>,
        name: String,
        target: String,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        new::posix::Host::symlink_at(self, dir, name, target)
    }

    fn set_mode(
        &mut self,
        fd: Resource<Descriptor>,
        mode: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        new::posix::Host::set_mode(self, fd, mode)
    }

    fn set_owner_at(
        &mut self,
        dir: Resource<Descriptor>,
        path: String,
        uid: u32,
        gid: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        new::posix::Host::set_owner_at(self, dir, path, uid, gid)
    }
}

type OldResult<T> = wasmtime::Result<Result<T, old::types::PluginError>>;

fn back<T>(r: wasmtime::Result<Result<T, new::types::PluginError>>) -> OldResult<T> {
    Ok(r?.map_err(Into::into))
}

impl old::backup_sink::Host for State {
    fn previous(&mut self, id: String) -> wasmtime::Result<Option<old::types::ItemMetadata>> {
        Ok(new::backup_sink::Host::previous(self, id)?.map(Into::into))
    }

    fn emit(&mut self, item: old::types::Item, data: old::backup_sink::ItemData) -> OldResult<()> {
        use old::backup_sink::ItemData as O;
        let data = match data {
            O::None => new::backup_sink::ItemData::None,
            O::Inline(b) => new::backup_sink::ItemData::Inline(b),
            O::File(fd) => new::backup_sink::ItemData::File(fd),
            O::Unchanged => new::backup_sink::ItemData::Unchanged,
        };
        back(new::backup_sink::Host::emit(self, item.into(), data))
    }

    fn begin(&mut self, item: old::types::Item) -> OldResult<Resource<ItemWriterHandle>> {
        back(new::backup_sink::Host::begin(self, item.into()))
    }

    fn warn(&mut self, id: String, message: String) -> wasmtime::Result<()> {
        new::backup_sink::Host::warn(self, id, message)
    }
}

impl old::backup_sink::HostItemWriter for State {
    fn write(&mut self, w: Resource<ItemWriterHandle>, bytes: Vec<u8>) -> OldResult<()> {
        back(new::backup_sink::HostItemWriter::write(self, w, bytes))
    }

    fn write_file(
        &mut self,
        w: Resource<ItemWriterHandle>,
        fd: Resource<Descriptor>,
        offset: u64,
        length: u64,
    ) -> OldResult<u64> {
        back(new::backup_sink::HostItemWriter::write_file(
            self, w, fd, offset, length,
        ))
    }

    fn finish(&mut self, w: Resource<ItemWriterHandle>) -> OldResult<u64> {
        back(new::backup_sink::HostItemWriter::finish(self, w))
    }

    fn drop(&mut self, w: Resource<ItemWriterHandle>) -> wasmtime::Result<()> {
        new::backup_sink::HostItemWriter::drop(self, w)
    }
}

impl old::restore_source::Host for State {
    fn next(&mut self) -> OldResult<Option<(old::types::Item, Resource<ContentHandle>)>> {
        Ok(new::restore_source::Host::next(self)?
            .map(|o| o.map(|(item, content)| (item.into(), content)))
            .map_err(Into::into))
    }

    fn warn(&mut self, id: String, message: String) -> wasmtime::Result<()> {
        new::restore_source::Host::warn(self, id, message)
    }
}

impl old::restore_source::HostItemContent for State {
    fn remaining(&mut self, h: Resource<ContentHandle>) -> wasmtime::Result<u64> {
        new::restore_source::HostItemContent::remaining(self, h)
    }

    fn read(&mut self, h: Resource<ContentHandle>, max: u32) -> OldResult<Vec<u8>> {
        back(new::restore_source::HostItemContent::read(self, h, max))
    }

    fn copy_to(&mut self, h: Resource<ContentHandle>, fd: Resource<Descriptor>) -> OldResult<u64> {
        back(new::restore_source::HostItemContent::copy_to(self, h, fd))
    }

    fn drop(&mut self, h: Resource<ContentHandle>) -> wasmtime::Result<()> {
        new::restore_source::HostItemContent::drop(self, h)
    }
}
