//! The plugin's view of the guest filesystem: the preopens the job granted
//! (the SDK's `preopens`), and safe ways to walk below them.
//!
//! Every path is resolved one component at a time without following symbolic
//! links, so a link planted in a tree can never redirect a backup or a restore;
//! WASI's own sandbox is a second wall behind this one.

use attache_plugin_sdk::wasi::filesystem::types::{
    Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};

pub(crate) use attache_plugin_sdk::preopens::{all as roots, locate, Preopen as Root};

/// Opens a directory again, as a descriptor the caller owns.
pub(crate) fn reopen(dir: &Descriptor, write: bool) -> Result<Descriptor, ErrorCode> {
    open_dir(dir, ".", write)
}

/// Opens the subdirectory `name` of `dir` without following a symbolic link.
pub(crate) fn open_dir(dir: &Descriptor, name: &str, write: bool) -> Result<Descriptor, ErrorCode> {
    let mut flags = DescriptorFlags::READ;
    if write {
        flags |= DescriptorFlags::MUTATE_DIRECTORY;
    }
    dir.open_at(PathFlags::empty(), name, OpenFlags::DIRECTORY, flags)
}

/// Walks `comps` below `dir`, one directory at a time, never following a
/// symbolic link. With `create`, missing directories are made.
pub(crate) fn walk_dirs(
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
pub(crate) fn describe(e: ErrorCode, what: &str) -> String {
    format!("{what}: {}", e.message())
}
