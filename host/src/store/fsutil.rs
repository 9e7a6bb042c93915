//! Durable writes: a temporary file, fsync, rename, fsync of the directory.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::StoreError;

/// Writes `bytes` to `path` so that after a crash the file is either absent
/// or complete.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Corrupt(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| StoreError::at(dir, e))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = fs::File::create(&tmp).map_err(|e| StoreError::at(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::at(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| StoreError::at(path, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::at(dir, e))
}
