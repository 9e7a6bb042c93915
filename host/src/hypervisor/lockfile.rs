//! Advisory file locks (`flock`): the kernel drops them when their holder
//! dies, so a killed server never leaves one behind. And [`Held`], a lock
//! that is either one of them or an advisory lock of the shared
//! PostgreSQL state database, which its server drops in the same case.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context;
use rustix::fs::{flock, FlockOperation};

/// A lock held for as long as it lives (a VM's, the registry's): in the
/// state directory, or in the shared state database. Held, never read:
/// dropping it frees it.
#[allow(dead_code, reason = "held for its drop, never read")]
pub(crate) enum Held {
    /// A file's `flock` in the state directory.
    File(FileLock),
    /// An advisory lock of the shared state database.
    Shared(Box<crate::db::cluster::PgLock>),
}

/// A held lock; released on drop (when the file closes).
pub(crate) struct FileLock {
    _file: File,
}

fn open(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock {}", path.display()))
}

impl FileLock {
    /// Waits for the exclusive lock on `path` (created if missing).
    pub(crate) fn exclusive(path: &Path) -> anyhow::Result<Self> {
        let file = open(path)?;
        flock(&file, FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self { _file: file })
    }

    /// Takes the exclusive lock on `path` only if nobody holds it.
    pub(crate) fn try_exclusive(path: &Path) -> anyhow::Result<Option<Self>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}
