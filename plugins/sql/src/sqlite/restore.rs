//! Restore of an SQLite database: the copied file and WAL prefix are
//! written to a temporary file beside the target, the WAL's committed
//! frames are applied to it (a checkpoint, done here), and the result is
//! renamed over the target. Readers of the target never see a partial file.

use super::files::{self, io};
use super::format::{checkpoint, ReadAt, WriteAt};
use attache_plugin_sdk::host::{log, progress};
use attache_plugin_sdk::posix;
use attache_plugin_sdk::source::Content as ItemContent;
use attache_plugin_sdk::wasi::filesystem::types::{
    Datetime, Descriptor, DescriptorFlags, ErrorCode, NewTimestamp, OpenFlags, PathFlags,
};
use attache_plugin_sdk::Summary;
use attache_plugin_sdk::{Item, Level, PluginError};

pub(crate) fn restore(
    item: &Item,
    path: &str,
    content: &ItemContent,
    overwrite: bool,
    summary: &mut Summary,
) -> Result<(), PluginError> {
    let target = format!("sqlite://{path}");
    let (dir, name) = files::parent_of(path, true)?;
    let siblings = [
        format!("{name}-wal"),
        format!("{name}-journal"),
        format!("{name}-shm"),
    ];
    if !overwrite {
        for n in std::iter::once(&name).chain(&siblings[..2]) {
            if files::exists(&dir, n).map_err(|e| io(path, e))? {
                return Err(PluginError::Application(format!(
                    "{target}: {n} exists; nothing was restored (ask for overwrite to replace it)"
                )));
            }
        }
    }
    let tmp = format!(".{name}.attache-restore");
    let fd = dir
        .open_at(
            PathFlags::empty(),
            &tmp,
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::READ | DescriptorFlags::WRITE,
        )
        .map_err(|e| io(&tmp, e))?;
    let mut bytes = 0;
    let done = match fill(&fd, content) {
        Ok(Some(n)) => {
            bytes = n;
            apply_metadata(&dir, &fd, &tmp, item)
                .and_then(|()| finish(&dir, &fd, &tmp, &name, &siblings, overwrite))
        }
        Ok(None) => {
            // A copy the backup dropped because the database moved; the
            // good copy follows in the stream.
            let _ = dir.unlink_file_at(&tmp);
            log(
                Level::Info,
                &format!("{}: skipping a copy aborted at backup", item.id),
            );
            return Ok(());
        }
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        let _ = dir.unlink_file_at(&tmp);
        return Err(PluginError::Application(format!(
            "{}: {}",
            item.id,
            describe(&e)
        )));
    }
    summary.items += 1;
    summary.bytes += bytes;
    progress(summary.items, summary.bytes, None, None);
    log(Level::Info, &format!("{} -> {target}: restored", item.id));
    Ok(())
}

fn describe(e: &PluginError) -> String {
    match e {
        PluginError::InvalidRequest(m)
        | PluginError::AccessDenied(m)
        | PluginError::Application(m)
        | PluginError::Transport(m)
        | PluginError::Other(m) => m.clone(),
    }
}

/// Writes the content into `fd` and turns it into the database; returns
/// the content's size, or `None` if the content was aborted at backup.
fn fill(fd: &Descriptor, content: &ItemContent) -> Result<Option<u64>, PluginError> {
    let n = match content.copy_to(fd) {
        Ok(n) => n,
        Err(PluginError::Other(m)) if m.contains("aborted at backup") => return Ok(None),
        Err(e) => return Err(e),
    };
    checkpoint(&Fd(fd), n).map_err(PluginError::InvalidRequest)?;
    Ok(Some(n))
}

/// The temporary file, for [`checkpoint`].
struct Fd<'a>(&'a Descriptor);

impl ReadAt for Fd<'_> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        self.0.read_at(offset, len)
    }
}

impl WriteAt for Fd<'_> {
    fn write_at(&self, mut offset: u64, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let n = self.0.write(bytes, offset).map_err(|e| e.message())? as usize;
            bytes = &bytes[n..];
            offset += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), String> {
        self.0.set_size(len).map_err(|e| e.message().to_string())
    }
}

/// The owner (where the runner may change it; otherwise the runner's own
/// ids stay, as with the filesystem plugin), the permission bits and the
/// mtime of the backed-up file.
fn apply_metadata(
    dir: &Descriptor,
    fd: &Descriptor,
    tmp: &str,
    item: &Item,
) -> Result<(), PluginError> {
    let md = &item.metadata;
    if let (Some(uid), Some(gid)) = (md.uid, md.gid) {
        match posix::set_owner_at(dir, tmp, uid, gid) {
            Ok(()) | Err(ErrorCode::NotPermitted) | Err(ErrorCode::Access) => {}
            Err(e) => return Err(io("setting the owner", e)),
        }
    }
    if let Some(mode) = md.mode {
        match posix::set_mode(fd, mode & 0o7777) {
            Ok(()) | Err(ErrorCode::NotPermitted) | Err(ErrorCode::Access) => {}
            Err(e) => return Err(io("setting the mode", e)),
        }
    }
    if let Some(t) = md.mtime {
        let when = NewTimestamp::Timestamp(Datetime {
            seconds: t.seconds.max(0) as u64,
            nanoseconds: t.nanoseconds,
        });
        fd.set_times(NewTimestamp::NoChange, when)
            .map_err(|e| io("setting the mtime", e))?;
    }
    Ok(())
}

fn finish(
    dir: &Descriptor,
    fd: &Descriptor,
    tmp: &str,
    name: &str,
    siblings: &[String],
    overwrite: bool,
) -> Result<(), PluginError> {
    fd.sync().map_err(|e| io(tmp, e))?;
    if overwrite {
        // A WAL or journal left from the old database would be applied to
        // the restored one by the next SQLite that opens it.
        for s in siblings {
            match dir.unlink_file_at(s) {
                Ok(()) | Err(ErrorCode::NoEntry) => {}
                Err(e) => return Err(io(s, e)),
            }
        }
    } else if files::exists(dir, name).map_err(|e| io(name, e))? {
        return Err(PluginError::Application(format!(
            "{name} appeared during the restore; not overwritten"
        )));
    }
    dir.rename_at(tmp, dir, name).map_err(|e| io(name, e))?;
    Ok(())
}
