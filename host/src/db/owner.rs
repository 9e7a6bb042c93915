//! Which process owns a job: every queue (a server's, or that of `attache
//! policy run` without a server) holds an exclusive `flock` on
//! `queues/ID.lock` in the state directory for as long as it lives, and
//! its jobs are recorded with that ID. The kernel drops the lock when the
//! process dies, however it dies; so a server starting on the same state
//! directory marks `interrupted` only the jobs of queues that are gone,
//! never those of a queue still running.

use std::path::{Path, PathBuf};

use crate::hypervisor::lockfile::FileLock;

/// A live queue's claim.
pub(crate) struct Owner {
    pub id: String,
    _lock: FileLock,
}

fn path(state: &Path, id: &str) -> PathBuf {
    state.join("queues").join(format!("{id}.lock"))
}

impl Owner {
    /// Claims a fresh id in the state directory `state`.
    pub(crate) fn claim(state: &Path) -> anyhow::Result<Self> {
        let mut raw = [0u8; 8];
        crate::store::crypto::random(&mut raw)?;
        let id = hex::encode(raw);
        let lock = FileLock::try_exclusive(&path(state, &id))?
            .ok_or_else(|| anyhow::anyhow!("queue id {id} is taken"))?;
        Ok(Self { id, _lock: lock })
    }
}

/// Whether the queue `id` of state directory `state` still runs. A queue
/// found gone has its lock file removed. An id that is no valid name (a
/// damaged row) is gone.
///
/// With a `shared` state database (PostgreSQL, several servers), a queue
/// with no lock file here is another server's, in another state
/// directory: this server cannot tell whether it died, so it is taken as
/// alive and its jobs are left to that server to mark when it restarts
/// (taking over a dead server's jobs needs heartbeats, not there yet).
pub(crate) fn alive(state: &Path, id: Option<&str>, shared: bool) -> bool {
    let Some(id) = id.filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_hexdigit())) else {
        return false;
    };
    let p = path(state, id);
    if !p.exists() {
        return shared;
    }
    match FileLock::try_exclusive(&p) {
        Ok(Some(_gone)) => {
            let _ = std::fs::remove_file(&p);
            false
        }
        Ok(None) => true,
        // Cannot tell: do not call a live queue's jobs interrupted.
        Err(e) => {
            tracing::warn!("cannot tell whether queue {id} runs: {e:#}");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_alive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let o = Owner::claim(d.path()).unwrap();
        let id = o.id.clone();
        // flock locks belong to open files: another open in this process
        // conflicts as another process's would.
        assert!(alive(d.path(), Some(&id), false));
        assert!(alive(d.path(), Some(&id), true));
        drop(o);
        assert!(!alive(d.path(), Some(&id), true));
        assert!(!path(d.path(), &id).exists());
        assert!(!alive(d.path(), Some(&id), false));
        assert!(!alive(d.path(), None, true));
        assert!(!alive(d.path(), Some("../x"), true));
        // Another server's queue, on a shared database: not this one's to
        // call gone.
        assert!(alive(d.path(), Some("0123abcd"), true));
        assert!(!alive(d.path(), Some("0123abcd"), false));
    }
}
