//! The plugin's view of the guest filesystem: the preopened directories the
//! job granted, and safe ways to walk below them.
//!
//! Every path is resolved one component at a time without following symbolic
//! links, so a link planted in a tree can never redirect a backup or a restore;
//! WASI's own sandbox is a second wall behind this one.

use crate::attache::plugin::types::PluginError;
use crate::wasi::filesystem::preopens::get_directories;
use crate::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

/// One granted directory: the descriptor and the absolute guest path it
/// stands for, as components.
pub struct Root {
    pub dir: Descriptor,
    pub path: Vec<String>,
}

/// The directories the job granted.
pub fn roots() -> Vec<Root> {
    get_directories()
        .into_iter()
        .map(|(dir, guest)| Root {
            dir,
            path: guest
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_owned)
                .collect(),
        })
        .collect()
}

/// Finds the granted directory with the longest path that contains the
/// path `comps`, and returns it with the components below it.
pub fn locate<'r>(roots: &'r [Root], comps: &[&str]) -> Option<(&'r Root, Vec<String>)> {
    roots
        .iter()
        .filter(|r| r.path.len() <= comps.len() && r.path.iter().zip(comps).all(|(a, b)| a == b))
        .max_by_key(|r| r.path.len())
        .map(|r| {
            (
                r,
                comps[r.path.len()..]
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            )
        })
}

/// The granted directory named `/`, which a restore writes below.
pub fn restore_root(roots: &[Root]) -> Result<&Root, PluginError> {
    roots.iter().find(|r| r.path.is_empty()).ok_or_else(|| {
        PluginError::AccessDenied(
            "no restore target was granted (expected a preopen named '/')".into(),
        )
    })
}

/// Opens a directory again, as a descriptor the caller owns.
pub fn reopen(dir: &Descriptor, write: bool) -> Result<Descriptor, ErrorCode> {
    open_dir(dir, ".", write)
}

/// Opens the subdirectory `name` of `dir` without following a symbolic link.
pub fn open_dir(dir: &Descriptor, name: &str, write: bool) -> Result<Descriptor, ErrorCode> {
    let mut flags = DescriptorFlags::READ;
    if write {
        flags |= DescriptorFlags::MUTATE_DIRECTORY;
    }
    dir.open_at(PathFlags::empty(), name, OpenFlags::DIRECTORY, flags)
}

/// Walks `comps` below `dir`, one directory at a time, never following a
/// symbolic link. With `create`, missing directories are made.
pub fn walk_dirs(
    dir: &Descriptor,
    comps: &[impl AsRef<str>],
    write: bool,
    create: bool,
) -> Result<Descriptor, ErrorCode> {
    let mut cur = reopen(dir, write)?;
    for c in comps {
        let c = c.as_ref();
        cur = match open_dir(&cur, c, write) {
            Err(ErrorCode::NoEntry) if create => {
                cur.create_directory_at(c)?;
                open_dir(&cur, c, write)?
            }
            other => other?,
        };
    }
    Ok(cur)
}

/// A readable message for a WASI error code, with the path it concerns.
pub fn describe(e: ErrorCode, what: &str) -> String {
    format!("{what}: {}", e.message())
}
