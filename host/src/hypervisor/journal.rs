//! The journal of what is attached where: written before the container is
//! attached and removed only once the VM is clean again, so that a job cut
//! off at any point (a failed guest, a killed server) is undone later.
//!
//! One file a job, `journal/SESSION.json` in the state directory. An entry
//! whose VM lock is free belongs to no running job: `recover` reverts it —
//! in the guest through its agent (kill the runner, unmount, remove the
//! mount point), then on the hypervisor (detach). If the guest agent does not
//! answer, the container is still detached and the entry stays, so that the
//! guest is cleaned on a later recovery.
//!
//! With a shared PostgreSQL state database (several workers), the entries
//! are rows of its `journal` table and the VM locks are advisory locks
//! (`db::cluster`), so that a live worker sees, and may revert, what a dead
//! one left; otherwise they are files and `flock`s in the state directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::guest;
use super::lockfile::{FileLock, Held};
use super::vm::{Attachment, Vm, VmHandle};
use super::VmRef;
use crate::db::cluster::Cluster;
use crate::db::postgres::Postgres;

/// How long recovery waits for a guest agent.
const RECOVERY_AGENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub session: String,
    pub hypervisor: String,
    pub vm: String,
    /// How the VM was reached when the job started (its driver's own
    /// form: a QEMU VM's sockets, a libvirt URI and domain).
    pub target: Vm,
    /// The container file attached.
    pub container: PathBuf,
    pub attachment: Attachment,
    /// The container's mount point in the guest.
    pub guest_dir: String,
    /// The runner's pid in the guest, once started.
    pub runner_pid: Option<i64>,
    /// Whether the container is detached already (the guest still needs
    /// cleaning).
    #[serde(default)]
    pub detached: bool,
}

/// What recovery did for one entry.
#[derive(Debug, Serialize)]
pub(crate) struct Recovered {
    pub session: String,
    pub vm: String,
    /// Detached and the guest cleaned: the entry is gone.
    pub complete: bool,
    pub problems: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct Journal {
    state: PathBuf,
    /// The shared state database's workers, when there is one.
    shared: Option<Arc<Cluster>>,
    /// The PostgreSQL state database of a command that is not a worker
    /// (`--state-db` without `serve`): its VM locks are the workers' ones,
    /// so that a worker and a command never use one VM at once; its
    /// entries stay in the state directory.
    state_db: Option<String>,
}

impl Journal {
    /// The journal of the state directory `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            state: state_dir.to_owned(),
            shared: None,
            state_db: None,
        }
    }

    /// The journal of the state database, for a command that reads it
    /// (which containers are in use) before it changes datastores: the
    /// shared one of the workers when `state_db` names PostgreSQL, else
    /// the state directory's. Never written through: a job writes the
    /// journal of its context ([`Journal::for_context`]).
    pub(crate) fn open(state_dir: &Path, state_db: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = state_db.filter(|u| !u.is_empty()) else {
            return Ok(Self::new(state_dir));
        };
        let reader = format!(
            "{}-{}-reader",
            crate::store::lock::hostname(),
            std::process::id()
        );
        Ok(Self {
            state: state_dir.to_owned(),
            shared: Some(Cluster::open(url, &reader, crate::db::cluster::LAPSE)?),
            state_db: None,
        })
    }

    /// The journal jobs of `ctx` use: the shared one of its workers, if
    /// any, else the state directory's.
    pub(crate) fn for_context(ctx: &crate::jobs::Context) -> Self {
        Self {
            state: ctx.state.clone(),
            shared: ctx.cluster.clone(),
            state_db: match ctx.cluster {
                Some(_) => None,
                None => ctx.state_db.clone().filter(|u| !u.is_empty()),
            },
        }
    }

    /// Waits for the lock of `vm`: a job's hold on its VM, so that no other
    /// job (of this process, another one, or another worker sharing the
    /// state database) uses the VM meanwhile.
    pub(crate) fn lock_vm(&self, vm: &VmRef) -> anyhow::Result<Held> {
        Ok(match (&self.shared, &self.state_db) {
            (Some(c), _) => Held::Shared(Box::new(c.lock_vm(&vm.to_string())?)),
            (None, Some(url)) => {
                Held::Shared(Box::new(Postgres::open(url)?.lock_vm(&vm.to_string())?))
            }
            (None, None) => Held::File(FileLock::exclusive(&self.vm_lock_path(vm))?),
        })
    }

    /// Takes the lock of `vm` if no job holds it.
    pub(crate) fn try_lock_vm(&self, vm: &VmRef) -> anyhow::Result<Option<Held>> {
        Ok(match (&self.shared, &self.state_db) {
            (Some(c), _) => c
                .try_lock_vm(&vm.to_string())?
                .map(|l| Held::Shared(Box::new(l))),
            (None, Some(url)) => Postgres::open(url)?
                .try_lock_vm(&vm.to_string())?
                .map(|l| Held::Shared(Box::new(l))),
            (None, None) => FileLock::try_exclusive(&self.vm_lock_path(vm))?.map(Held::File),
        })
    }

    fn dir(&self) -> PathBuf {
        self.state.join("journal")
    }

    /// The lock a job holds on its VM for as long as it runs.
    pub(crate) fn vm_lock_path(&self, vm: &VmRef) -> PathBuf {
        self.state
            .join("locks")
            .join(format!("{}--{}.lock", vm.hypervisor, vm.vm))
    }

    pub(crate) fn write(&self, e: &Entry) -> anyhow::Result<()> {
        if let Some(c) = &self.shared {
            let vm = format!("{}/{}", e.hypervisor, e.vm);
            c.journal_write(&e.session, &vm, &serde_json::to_string(e)?)?;
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(e)?;
        crate::store::fsutil::write_atomic(&self.dir().join(format!("{}.json", e.session)), &body)?;
        Ok(())
    }

    pub(crate) fn remove(&self, session: &str) -> anyhow::Result<()> {
        if let Some(c) = &self.shared {
            c.journal_remove(session)?;
            return Ok(());
        }
        let p = self.dir().join(format!("{session}.json"));
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }

    pub(crate) fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        if let Some(c) = &self.shared {
            let mut out = Vec::new();
            for (worker, text) in c.journal_entries(None)? {
                match serde_json::from_str::<Entry>(&text) {
                    Ok(e) => out.push(e),
                    Err(err) => tracing::warn!(
                        worker,
                        "ignoring a damaged journal entry in the state database: {err}"
                    ),
                }
            }
            return Ok(out);
        }
        let dir = self.dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in rd {
            let p = e?.path();
            // Entries only: not the temporary files they are written through
            // (`.tmp-PID-SESSION.json`), which may be half-written or left
            // by a crash before their rename.
            let temporary = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if temporary || p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| serde_json::from_slice::<Entry>(&b).map_err(anyhow::Error::from))
            {
                Ok(entry) => out.push(entry),
                Err(err) => {
                    tracing::warn!("ignoring damaged journal entry {}: {err:#}", p.display())
                }
            }
        }
        Ok(out)
    }

    /// Container files that jobs have (or may have) attached.
    pub(crate) fn containers_in_use(&self) -> anyhow::Result<HashSet<PathBuf>> {
        Ok(self.entries()?.into_iter().map(|e| e.container).collect())
    }

    /// Reverts every entry whose VM no running job holds. With `only`, just
    /// that VM's entries, whose lock the caller holds already.
    pub(crate) fn recover(&self, only: Option<(&VmRef, &Held)>) -> anyhow::Result<Vec<Recovered>> {
        let mut out = Vec::new();
        for e in self.entries()? {
            let vm = VmRef {
                hypervisor: e.hypervisor.clone(),
                vm: e.vm.clone(),
            };
            let _lock = match only {
                Some((want, _held)) if *want == vm => None,
                Some(_) => continue,
                None => match self.try_lock_vm(&vm)? {
                    Some(l) => Some(l),
                    None => continue, // a running job's
                },
            };
            out.push(self.revert(e, None));
        }
        Ok(out)
    }

    /// Undoes one entry as far as it can, through `agent` when the caller
    /// has a connection to the guest agent already (its socket serves one
    /// client at a time).
    pub(crate) fn revert(&self, mut e: Entry, agent: Option<&mut Agent>) -> Recovered {
        let mut problems = Vec::new();
        let mut guest_clean = false;
        let mut own;
        let agent = match agent {
            Some(a) => Ok(a),
            None => {
                own = e.target.agent(RECOVERY_AGENT_TIMEOUT);
                own.as_mut().map_err(|e| e.to_string())
            }
        };
        // One short question first: a silent agent is not waited for twice.
        let agent = agent.and_then(|a| {
            a.call_with("guest-ping", serde_json::json!({}), RECOVERY_AGENT_TIMEOUT)
                .map(|_| a)
                .map_err(|e| e.to_string())
        });
        match agent {
            Ok(agent) => {
                // Never leave a guest frozen (a no-op when it is not).
                let _ = agent.call("guest-fsfreeze-thaw", serde_json::json!({}));
                match guest::clean(agent, &e.guest_dir, e.runner_pid) {
                    Ok(()) => guest_clean = true,
                    Err(err) => problems.push(format!("guest: {err}")),
                }
            }
            Err(err) => problems.push(format!("guest: {err}")),
        }
        if !e.detached {
            match e.target.detach(&e.attachment) {
                Ok(()) => e.detached = true,
                Err(err) => problems.push(format!("detach: {err}")),
            }
        }
        let complete = guest_clean && e.detached;
        let saved = if complete {
            self.remove(&e.session)
        } else {
            self.write(&e)
        };
        if let Err(err) = saved {
            problems.push(format!("journal: {err:#}"));
        }
        for p in &problems {
            tracing::warn!(session = %e.session, vm = %format!("{}/{}", e.hypervisor, e.vm), "cleanup: {p}");
        }
        Recovered {
            session: e.session,
            vm: format!("{}/{}", e.hypervisor, e.vm),
            complete,
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_pg::TestPg;

    /// A command on the workers' state database (not a worker itself)
    /// and a worker exclude each other from a VM.
    #[test]
    fn a_command_on_a_shared_database_takes_the_workers_vm_locks() {
        let pg = TestPg::start();
        let url = pg.database("vm_locks");
        let t = tempfile::tempdir().unwrap();
        let command = Journal {
            state: t.path().to_owned(),
            shared: None,
            state_db: Some(url.clone()),
        };
        let worker = Cluster::open(&url, "w1", crate::db::cluster::LAPSE).unwrap();
        let vm = VmRef::parse("hv1/vm1").unwrap().unwrap();
        let held = command.lock_vm(&vm).unwrap();
        assert!(worker.try_lock_vm("hv1/vm1").unwrap().is_none());
        assert!(
            worker.try_lock_vm("hv1/vm2").unwrap().is_some(),
            "another VM"
        );
        assert!(
            !command.vm_lock_path(&vm).exists(),
            "not the state directory's lock"
        );
        drop(held);
        let theirs = worker.try_lock_vm("hv1/vm1").unwrap().expect("freed");
        assert!(command.try_lock_vm(&vm).unwrap().is_none());
        drop(theirs);
        assert!(command.try_lock_vm(&vm).unwrap().is_some());
    }
}
