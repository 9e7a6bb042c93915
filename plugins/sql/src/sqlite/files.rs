//! Reaching a database file through the directories the job grants: its
//! parent directory is walked to one component at a time, never following
//! a symbolic link.

use super::format::ReadAt;
use crate::attache::plugin::types::PluginError;
use crate::wasi::filesystem::preopens::get_directories;
use crate::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

/// The directory holding `path` and the file's name in it. With `write`,
/// only the restore target (the preopen `/`) is used and missing parents
/// are created.
pub fn parent_of(path: &str, write: bool) -> Result<(Descriptor, String), PluginError> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some((name, parents)) = comps.split_last() else {
        return Err(PluginError::InvalidRequest(format!("{path} names no file")));
    };
    let mut best: Option<(Descriptor, usize)> = None;
    for (dir, guest) in get_directories() {
        let root: Vec<&str> = guest
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if write && !root.is_empty() {
            continue;
        }
        if root.len() <= parents.len()
            && root.iter().zip(parents.iter()).all(|(a, b)| a == b)
            && best.as_ref().is_none_or(|(_, n)| root.len() > *n)
        {
            best = Some((dir, root.len()));
        }
    }
    let Some((root, depth)) = best else {
        return Err(if write {
            PluginError::AccessDenied(
                "no restore target was granted (expected a preopen named '/')".into(),
            )
        } else {
            PluginError::AccessDenied(format!(
                "{path} is not below any directory the job grants (guest-runner --grant-read DIR)"
            ))
        });
    };
    let mut cur = open_dir(&root, ".", write).map_err(|e| io(path, e))?;
    for c in &parents[depth..] {
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
pub fn open_read(dir: &Descriptor, name: &str) -> Result<Option<Descriptor>, ErrorCode> {
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
pub fn exists(dir: &Descriptor, name: &str) -> Result<bool, ErrorCode> {
    match dir.stat_at(PathFlags::empty(), name) {
        Ok(_) => Ok(true),
        Err(ErrorCode::NoEntry) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn io(what: &str, e: ErrorCode) -> PluginError {
    PluginError::Other(format!("{what}: {}", e.message()))
}

/// A file read at an offset from `base`.
pub struct At<'a> {
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
