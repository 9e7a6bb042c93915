//! Repository locks: backups hold shared locks, prune an exclusive one, so
//! that prune never removes data a running backup is about to reference.
//! Backups never wait for each other: shared locks only keep prune out.
//!
//! A lock is a file (an object, on S3) in `locks/` naming its holder: a
//! lease, valid for the lease time it states from its last refresh. The
//! holder refreshes it in the background every third of that time; a
//! holder that dies stops refreshing, and once the lease has run out the
//! lock is ignored and removed by the next taker (on the holder's own host,
//! at once: its process is gone). The lease time is 30 minutes;
//! `ATTACHE_LOCK_LEASE` (seconds) sets another, for tests.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::crypto::random;
use super::{Store, StoreError};

/// The lease time of a lock without one (written before leases) and the
/// default.
const STALE: Duration = Duration::from_secs(30 * 60);

/// The lease time this process gives its locks.
fn lease() -> Duration {
    std::env::var("ATTACHE_LOCK_LEASE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(STALE, Duration::from_secs)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    exclusive: bool,
    host: String,
    pid: u32,
    time: u64,
    purpose: String,
    /// Seconds from `time` the lock holds without a refresh (0: written
    /// before leases, [`STALE`]).
    #[serde(default)]
    lease: u64,
}

/// A held lock; released on drop.
pub(crate) struct Lock {
    backend: Arc<dyn Backend>,
    key: String,
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

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl LockInfo {
    fn stale(&self) -> bool {
        let lease = if self.lease == 0 {
            STALE.as_secs()
        } else {
            self.lease
        };
        (self.host == hostname() && !alive(self.pid)) || now().saturating_sub(self.time) > lease
    }
}

impl Lock {
    /// Takes a shared lock (`exclusive` false) or an exclusive one on the
    /// repository of `store`.
    pub(crate) fn acquire(
        store: &Store,
        exclusive: bool,
        purpose: &str,
    ) -> Result<Self, StoreError> {
        Self::acquire_in(store.backend_arc(), exclusive, purpose)
    }

    /// [`Self::acquire`] in the repository behind `b`.
    pub(crate) fn acquire_in(
        b: Arc<dyn Backend>,
        exclusive: bool,
        purpose: &str,
    ) -> Result<Self, StoreError> {
        let mut name = [0u8; 8];
        random(&mut name)?;
        let key = format!("locks/{}", hex::encode(name));
        let lease = lease();
        let info = LockInfo {
            exclusive,
            host: hostname(),
            pid: std::process::id(),
            time: now(),
            purpose: purpose.into(),
            lease: lease.as_secs(),
        };
        let body = serde_json::to_vec(&info).map_err(StoreError::json("lock"))?;
        b.create(&key, &body)?;
        // Check after writing, so two takers always see each other.
        let others = match b.list("locks") {
            Ok(l) => l,
            Err(e) => {
                let _ = b.delete(&key);
                return Err(e);
            }
        };
        for e in others {
            if e.key == key {
                continue;
            }
            let Ok(o) = b
                .read(&e.key)
                .map_err(drop)
                .and_then(|b| serde_json::from_slice::<LockInfo>(&b).map_err(drop))
            else {
                continue;
            };
            if o.stale() {
                tracing::info!(
                    "{}: the lock of process {} on {} ({}) has expired; removed",
                    b.name(&e.key).display(),
                    o.pid,
                    o.host,
                    o.purpose
                );
                let _ = b.delete(&e.key);
                continue;
            }
            if exclusive || o.exclusive {
                let _ = b.delete(&key);
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
            let (b, key, mut info) = (b.clone(), key.clone(), info);
            let every = (lease / 3).max(Duration::from_secs(1));
            thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || {
                    // Wakes to refresh, or at once when the lock is dropped.
                    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        info.time = now();
                        if let Ok(body) = serde_json::to_vec(&info) {
                            if let Err(e) = b.write(&key, &body) {
                                tracing::warn!("cannot refresh the lock {key}: {e}");
                            }
                        }
                    }
                })
                .ok()
        };
        Ok(Self {
            backend: b,
            key,
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
        let _ = self.backend.delete(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::local::LocalBackend;

    #[test]
    fn exclusive_excludes_and_stale_locks_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("locks")).unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(d.path()));
        let take = |x, p| Lock::acquire_in(be.clone(), x, p);
        let a = take(false, "backup").unwrap();
        let b = take(false, "backup").unwrap();
        assert!(matches!(take(true, "prune"), Err(StoreError::Locked(_))));
        drop((a, b));
        let p = take(true, "prune").unwrap();
        assert!(take(false, "backup").is_err());
        drop(p);
        // A lock left by a process that died.
        let dead = LockInfo {
            exclusive: true,
            host: hostname(),
            pid: u32::MAX - 1,
            time: now(),
            purpose: "prune".into(),
            lease: 3600,
        };
        std::fs::write(
            d.path().join("locks/dead"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        assert!(take(false, "backup").is_ok());
        assert!(!d.path().join("locks/dead").exists());
        // A lease of another machine holds until it runs out.
        let mut other = LockInfo {
            host: "another-machine".into(),
            pid: 1,
            lease: 60,
            ..dead
        };
        std::fs::write(
            d.path().join("locks/other"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        assert!(matches!(take(false, "backup"), Err(StoreError::Locked(_))));
        other.time = now() - 61;
        std::fs::write(
            d.path().join("locks/other"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        assert!(take(true, "prune").is_ok());
        assert!(!d.path().join("locks/other").exists());
    }
}
