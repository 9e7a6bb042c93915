//! Repository locks: backups hold shared locks, prune an exclusive one, so
//! that prune never removes data a running backup is about to reference.
//!
//! A lock is a file in `locks/` naming its holder. A lock whose process is
//! gone (same host) or that has not been refreshed for `STALE` is ignored
//! and removed. A held lock is refreshed in the background.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::crypto::random;
use super::fsutil::write_atomic;
use super::StoreError;

const STALE: Duration = Duration::from_secs(30 * 60);
const REFRESH: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    exclusive: bool,
    host: String,
    pid: u32,
    time: u64,
    purpose: String,
}

/// A held lock; released on drop.
pub(crate) struct Lock {
    path: PathBuf,
    /// Dropped to stop the refresher at once (it waits on the other end).
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<thread::JoinHandle<()>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl LockInfo {
    fn stale(&self) -> bool {
        (self.host == hostname() && !alive(self.pid))
            || now().saturating_sub(self.time) > STALE.as_secs()
    }
}

impl Lock {
    /// Takes a shared lock (`exclusive` false) or an exclusive one.
    pub(crate) fn acquire(root: &Path, exclusive: bool, purpose: &str) -> Result<Self, StoreError> {
        let dir = root.join("locks");
        let mut name = [0u8; 8];
        random(&mut name)?;
        let path = dir.join(hex::encode(name));
        let info = LockInfo {
            exclusive,
            host: hostname(),
            pid: std::process::id(),
            time: now(),
            purpose: purpose.into(),
        };
        let body = serde_json::to_vec(&info).map_err(StoreError::json("lock"))?;
        write_atomic(&path, &body)?;
        // Check after writing, so two takers always see each other.
        for e in fs::read_dir(&dir).map_err(|e| StoreError::at(&dir, e))? {
            let other = e.map_err(|e| StoreError::at(&dir, e))?.path();
            if other == path
                || other
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            {
                continue;
            }
            let Ok(o) = fs::read(&other)
                .map_err(drop)
                .and_then(|b| serde_json::from_slice::<LockInfo>(&b).map_err(drop))
            else {
                continue;
            };
            if o.stale() {
                let _ = fs::remove_file(&other);
                continue;
            }
            if exclusive || o.exclusive {
                let _ = fs::remove_file(&path);
                return Err(StoreError::Locked(format!(
                    "the repository is locked {} by process {} on {} ({}) since {}s ago; try again later",
                    if o.exclusive { "exclusively" } else { "for use" },
                    o.pid,
                    o.host,
                    o.purpose,
                    now().saturating_sub(o.time)
                )));
            }
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let refresher = {
            let (path, mut info) = (path.clone(), info);
            thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || {
                    // Wakes to refresh, or at once when the lock is dropped.
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                        info.time = now();
                        if let Ok(b) = serde_json::to_vec(&info) {
                            let _ = write_atomic(&path, &b);
                        }
                    }
                })
                .ok()
        };
        Ok(Self {
            path,
            stop: Some(stop),
            refresher,
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_stale_locks_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("locks")).unwrap();
        let a = Lock::acquire(d.path(), false, "backup").unwrap();
        let b = Lock::acquire(d.path(), false, "backup").unwrap();
        assert!(matches!(
            Lock::acquire(d.path(), true, "prune"),
            Err(StoreError::Locked(_))
        ));
        drop((a, b));
        let p = Lock::acquire(d.path(), true, "prune").unwrap();
        assert!(Lock::acquire(d.path(), false, "backup").is_err());
        drop(p);
        // A lock left by a process that died.
        let dead = LockInfo {
            exclusive: true,
            host: hostname(),
            pid: u32::MAX - 1,
            time: now(),
            purpose: "prune".into(),
        };
        fs::write(
            d.path().join("locks/dead"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        assert!(Lock::acquire(d.path(), false, "backup").is_ok());
        assert!(!d.path().join("locks/dead").exists());
    }
}
