//! The audit trail: who did what, provably. Every job (with who started
//! it), what its plugin was granted, every attach and detach, every command
//! run in a guest, every restore with its destination, and every policy
//! and token change is appended to `audit.log` in the state directory (see
//! [`log`] for the chain, [`verify`] for its check).

pub(crate) mod log;
pub(crate) mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::{json, Map, Value};

pub(crate) use log::{AuditError, Log};

/// The audit log of a state directory.
pub(crate) fn path(state: &Path) -> PathBuf {
    state.join("audit.log")
}

/// Where the digest of the policy (`what` = "policy") or the trust
/// ("trust") last recorded lives: a change shows as an entry.
fn seen_file(state: &Path, what: &str) -> PathBuf {
    state.join(format!("audit.{what}"))
}

/// A handle that records for someone: an actor (a token id, or the local
/// user) and, within a job, the job's id.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    log: Arc<Log>,
    state: PathBuf,
    actor: String,
    job: Option<String>,
    /// Entries this handle (one per job) appended, how many of them are
    /// known to be on disk, and the nanoseconds the job waited for the log:
    /// what the log costs a job (`make bench` reads it).
    spent: Arc<Spent>,
}

#[derive(Debug, Default)]
struct Spent {
    entries: AtomicU64,
    synced: AtomicU64,
    nanos: AtomicU64,
    /// A sync started by [`Audit::sync_ahead`]: the entries it covers and
    /// the thread doing it.
    ahead: std::sync::Mutex<Option<(u64, SyncThread)>>,
}

/// A thread bringing the log to disk.
type SyncThread = std::thread::JoinHandle<Result<(), AuditError>>;

impl Audit {
    /// Records into the log of `state` for `actor`.
    pub(crate) fn new(state: &Path, actor: impl Into<String>) -> Self {
        Self {
            log: Arc::new(Log::new(path(state))),
            state: state.to_owned(),
            actor: actor.into(),
            job: None,
            spent: Arc::default(),
        }
    }

    /// The same log, for `actor` running job `job`.
    pub(crate) fn for_job(&self, actor: &str, job: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            job: Some(job.to_owned()),
            spent: Arc::default(),
            ..self.clone()
        }
    }

    /// The same log for another actor.
    pub(crate) fn as_actor(&self, actor: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            ..self.clone()
        }
    }

    pub(crate) fn actor(&self) -> &str {
        &self.actor
    }

    pub(crate) fn job(&self) -> Option<&str> {
        self.job.as_deref()
    }

    /// Appends `event` with `data`, on disk when this returns.
    pub(crate) fn record(&self, event: &str, data: Value) -> Result<(), AuditError> {
        self.append(event, data, true)
    }

    /// Appends `event` with `data`, on disk with the next durable entry or
    /// [`Audit::sync`]: for what a job records before its first effect
    /// (one sync then carries them all) and while it runs (its end carries
    /// them).
    pub(crate) fn defer(&self, event: &str, data: Value) -> Result<(), AuditError> {
        self.append(event, data, false)
    }

    /// Starts bringing what was recorded so far to disk, while the job
    /// goes on with what has no effect yet (opening the repository);
    /// [`Audit::sync`] waits for it.
    pub(crate) fn sync_ahead(&self) {
        let upto = self.spent.entries.load(Relaxed);
        let log = self.log.clone();
        let handle = std::thread::spawn(move || log.sync());
        let mut ahead = self.spent.ahead.lock().unwrap_or_else(|p| p.into_inner());
        *ahead = Some((upto, handle));
    }

    /// Waits until everything this job recorded is on disk: before its
    /// first effect (a runner started, a container attached).
    pub(crate) fn sync(&self) -> Result<(), AuditError> {
        let t = std::time::Instant::now();
        let r = self.sync_now();
        self.spent
            .nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
        r
    }

    fn sync_now(&self) -> Result<(), AuditError> {
        let pending = self
            .spent
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((upto, handle)) = pending {
            let done = handle.join().unwrap_or_else(|_| {
                Err(AuditError::Io {
                    path: path(&self.state),
                    source: std::io::Error::other("the audit log's sync thread panicked"),
                })
            });
            done?;
            self.spent.synced.fetch_max(upto, Relaxed);
        }
        let written = self.spent.entries.load(Relaxed);
        if self.spent.synced.load(Relaxed) < written {
            self.log.sync()?;
            self.spent.synced.fetch_max(written, Relaxed);
        }
        Ok(())
    }

    fn append(&self, event: &str, data: Value, durable: bool) -> Result<(), AuditError> {
        let mut m = Map::new();
        m.insert("event".into(), json!(event));
        m.insert("actor".into(), json!(self.actor));
        if let Some(j) = &self.job {
            m.insert("job".into(), json!(j));
        }
        m.insert("data".into(), data);
        let t = std::time::Instant::now();
        let r = self.log.append(m, durable).map(|_| ());
        let took = t.elapsed();
        tracing::debug!(target: "attache::audit", event, durable, micros = took.as_micros() as u64, "appended");
        let n = self.spent.entries.fetch_add(1, Relaxed) + 1;
        if durable && r.is_ok() {
            // A durable append carries every line written before it.
            self.spent.synced.fetch_max(n, Relaxed);
        }
        self.spent.nanos.fetch_add(took.as_nanos() as u64, Relaxed);
        r
    }

    /// Entries appended through this handle (a job's) and the time they
    /// took.
    pub(crate) fn spent(&self) -> (u64, std::time::Duration) {
        (
            self.spent.entries.load(Relaxed),
            std::time::Duration::from_nanos(self.spent.nanos.load(Relaxed)),
        )
    }

    /// Records `event` like [`Audit::defer`], and only logs a failure: for
    /// what happens while a job runs, after its start is on disk, where
    /// failing would leave a VM half-done; the job's end carries it to disk.
    pub(crate) fn note(&self, event: &str, data: Value) {
        if let Err(e) = self.defer(event, data) {
            tracing::error!("cannot write the audit log: {e}");
        }
    }

    /// Records a change of the policy in force since the last job that
    /// recorded one (its digest, kept beside the log).
    pub(crate) fn policy_in_force(
        &self,
        policy: &guest_runner::policy::Policy,
    ) -> Result<String, AuditError> {
        let digest = blake3::hash(policy.text.as_bytes()).to_hex().to_string();
        self.change_in_force("policy", &digest, json!({ "origin": policy.origin }))?;
        Ok(digest)
    }

    /// Records a change of the trust in force (its publishers and whether
    /// unsigned containers are allowed, and by what) since the last job
    /// that recorded one; the trust as the job's start records it.
    pub(crate) fn trust_in_force(
        &self,
        trust: &guest_runner::trust::Trust,
    ) -> Result<Value, AuditError> {
        let allowed = trust.allow_unsigned.as_ref().map(|a| a.to_string());
        let mut h = blake3::Hasher::new();
        h.update(trust.text.as_bytes());
        h.update(b"\0allow-unsigned:");
        h.update(allowed.as_deref().unwrap_or("no").as_bytes());
        let digest = h.finalize().to_hex().to_string();
        let publishers: Vec<Value> = trust
            .publishers
            .iter()
            .map(|p| json!({ "name": p.name, "key": p.key.id(), "runner": p.runner, "plugins": p.plugins }))
            .collect();
        let shown = json!({ "origin": trust.origin, "digest": digest, "allow_unsigned": allowed });
        self.change_in_force(
            "trust",
            &digest,
            json!({ "origin": trust.origin, "publishers": publishers, "allow_unsigned": allowed }),
        )?;
        Ok(shown)
    }

    /// Records `WHAT.change` (with `data`, the digest and the previous
    /// digest) when `digest` is not the one last recorded for `what`.
    fn change_in_force(&self, what: &str, digest: &str, mut data: Value) -> Result<(), AuditError> {
        let seen_at = seen_file(&self.state, what);
        // Jobs of several processes start at once: one records the change.
        let _lock =
            crate::hypervisor::lockfile::FileLock::exclusive(&seen_at.with_extension("lock"))
                .map_err(|e| AuditError::Io {
                    path: seen_at.clone(),
                    source: std::io::Error::other(format!("{e:#}")),
                })?;
        let seen = std::fs::read_to_string(&seen_at).unwrap_or_default();
        if seen.trim() != digest {
            data["digest"] = json!(digest);
            data["previous"] = json!(Some(seen.trim()).filter(|s| !s.is_empty()));
            // On disk before the digest is kept: a change is never lost.
            self.record(&format!("{what}.change"), data)?;
            crate::store::fsutil::write_atomic(&seen_at, digest.as_bytes()).map_err(|e| {
                AuditError::Io {
                    path: seen_at.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        }
        Ok(())
    }
}

/// The actor of commands run on this machine without a server.
pub(crate) fn local_actor() -> String {
    let uid = rustix::process::getuid().as_raw();
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() => format!("local:{u}(uid {uid})"),
        _ => format!("local:uid {uid}"),
    }
}

/// A job id for a job run without a server.
pub(crate) fn new_job_id() -> String {
    let mut b = [0u8; 8];
    if crate::store::crypto::random(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

/// A guest command's arguments for the log: each cut to a bound (a
/// runner's inline policy is long), never its environment (secrets).
pub(crate) fn command_args(argv: &[&str]) -> Value {
    json!(argv
        .iter()
        .map(|a| if a.len() > 200 {
            let mut cut = 200;
            while !a.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… ({} bytes)", &a[..cut], a.len())
        } else {
            (*a).to_owned()
        })
        .collect::<Vec<_>>())
}

/// `--since`: a time (`2026-11-30T04:00:00Z`, `2026-11-30 04:00`) or how
/// long ago (`2h`, `30min`, `7days`).
pub(crate) fn parse_since(s: &str) -> anyhow::Result<std::time::SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(std::time::SystemTime::now() - d),
        Err(_) => anyhow::bail!(
            "--since {s:?}: give a time (2026-11-30T04:00:00Z) or how long ago (2h, 30min, 7days)"
        ),
    }
}

/// The entries of the log at `path` from `since` on, oldest first (none
/// when there is no log yet). Lines that do not parse are returned as
/// `{"line": N, "unreadable": TEXT}`: `attache audit verify` says more.
pub(crate) fn read(
    path: &Path,
    since: Option<std::time::SystemTime>,
) -> std::io::Result<Vec<Value>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v = match serde_json::from_slice::<Value>(line) {
            Ok(v) => v,
            Err(_) => {
                out.push(json!({ "line": i + 1, "unreadable": String::from_utf8_lossy(line) }));
                continue;
            }
        };
        if let Some(since) = since {
            let at = v["time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok());
            if at.is_some_and(|t| t < since) {
                continue;
            }
        }
        out.push(v);
    }
    Ok(out)
}
