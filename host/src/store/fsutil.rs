//! Durable writes: a temporary file, fsync, rename, fsync of the directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// Writes `bytes` to `path` so that after a crash the file is either absent
/// or complete.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::at(path, e));
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Writes `bytes` durably to a new temporary file beside `path` (its
/// directory made if missing) and returns the temporary file's path; its
/// name starts with a dot, so listings leave it out.
pub(crate) fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::Corrupt(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| StoreError::at(dir, e))?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = fs::File::create(&tmp).map_err(|e| StoreError::at(&tmp, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::at(&tmp, e));
    }
    Ok(tmp)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::at(dir, e))
}
