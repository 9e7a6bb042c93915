//! Reaching a database file through the directories the job grants: its
//! parent directory is walked to one component at a time, never following
//! a symbolic link.

use super::format::ReadAt;
use attache_plugin_sdk::preopens;
use attache_plugin_sdk::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use attache_plugin_sdk::PluginError;

/// The directory holding `path` and the file's name in it, below the
/// preopen with the longest path that holds it (the plan asks for the
/// directory: read for a backup, read-write for a restore). With `write`,
/// missing parents are created.
pub(crate) fn parent_of(path: &str, write: bool) -> Result<(Descriptor, String), PluginError> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some((name, parents)) = comps.split_last() else {
        return Err(PluginError::InvalidRequest(format!("{path} names no file")));
    };
    let all = preopens::all();
    let Some((root, below)) = preopens::locate(&all, parents) else {
        return Err(PluginError::AccessDenied(format!(
            "the directory of {path} is not granted to the job (did the plan ask for it?)"
        )));
    };
    let mut cur = open_dir(&root.dir, ".", write).map_err(|e| io(path, e))?;
    for c in &below {
        cur = match open_dir(&cur, c, write) {
            Err(ErrorCode::NoEntry) if write => {
                cur.create_directory_at(c).map_err(|e| io(path, e))?;
                open_dir(&cur, c, write).map_err(|e| io(path, e))?
            }
            Err(ErrorCode::NoEntry) => {
                return Err(PluginError::InvalidRequest(format!(
                    "{path}: directory {c} does not exist"
                )))
            }
            other => other.map_err(|e| io(path, e))?,
        };
    }
    Ok((cur, (*name).to_owned()))
}

fn open_dir(dir: &Descriptor, name: &str, write: bool) -> Result<Descriptor, ErrorCode> {
    let mut flags = DescriptorFlags::READ;
    if write {
        flags |= DescriptorFlags::MUTATE_DIRECTORY;
    }
    dir.open_at(PathFlags::empty(), name, OpenFlags::DIRECTORY, flags)
}

/// Opens `name` in `dir` for reading; `None` if it does not exist.
pub(crate) fn open_read(dir: &Descriptor, name: &str) -> Result<Option<Descriptor>, ErrorCode> {
    match dir.open_at(
        PathFlags::empty(),
        name,
        OpenFlags::empty(),
        DescriptorFlags::READ,
    ) {
        Ok(d) => Ok(Some(d)),
        Err(ErrorCode::NoEntry) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `name` exists in `dir` (without following a symbolic link).
pub(crate) fn exists(dir: &Descriptor, name: &str) -> Result<bool, ErrorCode> {
    match dir.stat_at(PathFlags::empty(), name) {
        Ok(_) => Ok(true),
        Err(ErrorCode::NoEntry) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn io(what: &str, e: ErrorCode) -> PluginError {
    PluginError::Other(format!("{what}: {}", e.message()))
}

/// A file read at an offset from `base`.
pub(crate) struct At<'a> {
    pub fd: &'a Descriptor,
    pub base: u64,
}

impl ReadAt for At<'_> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let (bytes, eof) = self
                .fd
                .read(
                    len - out.len() as u64,
                    self.base + offset + out.len() as u64,
                )
                .map_err(|e| e.message())?;
            let n = bytes.len();
            out.extend_from_slice(&bytes);
            if eof || n == 0 {
                break;
            }
        }
        Ok(out)
    }
}

impl ReadAt for Descriptor {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        At { fd: self, base: 0 }.read_at(offset, len)
    }
}
