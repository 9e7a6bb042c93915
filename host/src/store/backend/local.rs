//! A repository in a local directory, the default: each key is a file
//! under the directory, written durably (temporary file, fsync, rename,
//! fsync of the directory). Create-only writes link the finished temporary
//! file to its name, which fails when the name exists.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Backend, Entry};
use crate::store::fsutil::{sync_dir, write_atomic, write_temp};
use crate::store::StoreError;

/// The directories of a repository.
const DIRS: [&str; 5] = ["data", "index", "snapshots", "locks", "keys"];

/// A repository directory.
pub(crate) struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// Whether a directory entry is a temporary file of an unfinished write.
fn temporary(name: &str) -> bool {
    name.starts_with('.')
}

impl Backend for LocalBackend {
    fn name(&self, key: &str) -> PathBuf {
        self.path(key)
    }

    fn prepare(&self) -> Result<(), StoreError> {
        for d in DIRS {
            fs::create_dir_all(self.root.join(d)).map_err(|e| StoreError::at(&self.root, e))?;
        }
        Ok(())
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let p = self.path(key);
        fs::read(&p).map_err(|e| StoreError::at(&p, e))
    }

    fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        // The file last read by this thread stays open: a restore reads the
        // chunks of small files one after another from the same few packs,
        // which are named by their content, so an open one never goes stale.
        thread_local! {
            static LAST: std::cell::RefCell<Option<(PathBuf, fs::File)>> =
                const { std::cell::RefCell::new(None) };
        }
        let path = self.path(key);
        LAST.with_borrow_mut(|last| {
            if last.as_ref().is_none_or(|(p, _)| *p != path) {
                *last = None;
                let f = fs::File::open(&path).map_err(|e| StoreError::at(&path, e))?;
                *last = Some((path.clone(), f));
            }
            let Some((_, f)) = last.as_ref() else {
                return Ok(0);
            };
            let mut got = 0;
            while got < buf.len() {
                match f.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        *last = None;
                        return Err(StoreError::at(&path, e));
                    }
                }
            }
            if got < buf.len() {
                *last = None;
            }
            Ok(got)
        })
    }

    /// Asks the kernel to read the range into the page cache now
    /// (`POSIX_FADV_WILLNEED`), while the caller works on what it read
    /// before: a restore reads packs that its backup did not leave in the
    /// cache ([`crate::store::fsutil`]). Linux reads no more for one piece
    /// of advice than the device's read-ahead window (128 KiB by default),
    /// so the range is advised a window at a time; a window already in the
    /// cache costs a lookup.
    fn will_read(&self, key: &str, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        if let Ok(f) = fs::File::open(self.path(key)) {
            const WINDOW: u64 = 128 << 10;
            let end = offset.saturating_add(len);
            let mut at = offset;
            while at < end {
                let n = WINDOW.min(end - at);
                let _ = rustix::fs::fadvise(
                    &f,
                    at,
                    std::num::NonZeroU64::new(n),
                    rustix::fs::Advice::WillNeed,
                );
                at += n;
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        let _ = (key, offset, len);
    }

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.path(key), bytes)
    }

    fn create(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key);
        let tmp = write_temp(&path, bytes)?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        linked.map_err(|e| StoreError::at(&path, e))?;
        match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            let p = self.path(&d);
            let entries = match fs::read_dir(&p) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
                Err(e) => return Err(StoreError::at(&p, e)),
            };
            for e in entries {
                let e = e.map_err(|e| StoreError::at(&p, e))?;
                let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if temporary(&name) {
                    continue;
                }
                let key = format!("{d}/{name}");
                let meta = match e.metadata() {
                    Ok(m) => m,
                    // Removed meanwhile (another process pruning).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::at(&p.join(&name), e)),
                };
                if meta.is_dir() {
                    todo.push(key);
                } else {
                    out.push(Entry {
                        key,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.path(key);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::at(&p, e)),
        }
        match p.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let p = self.path(key);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::at(&p, e)),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// How many bytes of `path` are in the page cache, as util-linux's
    /// `fincore` tells (by `mincore`, which reads nothing: a read that may
    /// not wait for the disk would start read-ahead itself).
    fn cached(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a byte count")
    }

    #[test]
    fn a_range_said_to_be_read_soon_is_read_into_the_cache() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(d.path());
        b.prepare().expect("prepare");
        // Larger than a device's read-ahead window (8 MiB for this
        // machine's disk), which one piece of advice would stop at.
        let len: u64 = 32 << 20;
        // Written durably, the file's pages are let go of (fsutil).
        b.create("data/p", &vec![5u8; len as usize])
            .expect("create");
        let path = b.path("data/p");
        if cached(&path) == len {
            eprintln!("this file system keeps what was let go of (tmpfs?); nothing to show");
            return;
        }
        b.will_read("data/p", 0, len);
        // The reads it started are asynchronous.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cached(&path) < len {
            assert!(
                std::time::Instant::now() < deadline,
                "the range was not read into the cache"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A missing file is only a hint not taken.
        b.will_read("data/none", 0, 1 << 20);
    }
}
