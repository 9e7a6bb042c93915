//! Several `attache serve` workers on one PostgreSQL state database: who
//! is alive, who runs which job, which VM is busy, and what a dead worker
//! left attached.
//!
//! - **Workers** register a row in `workers` and beat their heartbeat on
//!   the database's clock (so the machines' clocks need not agree). A row
//!   whose heartbeat is older than the lapse belongs to a dead worker.
//! - **Jobs** posted to any worker are stored `queued`, with the request a
//!   worker needs to run them (`payload`: never a password; a job that
//!   carries one, or names a password file of the worker it was posted
//!   to, is `pinned` to that worker). Workers claim queued jobs with
//!   `SELECT … FOR UPDATE SKIP LOCKED`, and the same transaction makes
//!   them `running` and names the worker: a job is claimed once.
//! - **VM locks** are session advisory locks on the VM's name, each held
//!   on a connection of its own: PostgreSQL drops them when the holder's
//!   connection dies, however the holder died.
//! - **The journal** of attachments is a table, so that a live worker sees
//!   a dead worker's entries.
//! - **Reaping**: once a worker's heartbeat has lapsed, one live worker
//!   (the one that takes the reap lock of that worker) reverts the dead
//!   worker's journal entries (each under its VM lock), marks its running
//!   jobs and the jobs pinned to it `interrupted`, and removes its row.
//!
//! Built on PostgreSQL's own row locks and advisory locks, not on a job
//! queue crate (`apalis`, `pgmq`): those bring an async runtime model and
//! a table layout of their own, while the state database's jobs table is
//! already the queue and the claim is one statement.

use std::sync::Arc;
use std::time::Duration;

pub(crate) use super::advisory::PgLock;
use super::postgres::{job_of, set_interrupted_last, Postgres, Step, JOB_COLUMNS};
use super::records::JobRecord;
use super::DbError;

/// How often a worker beats its heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a heartbeat may be missed before its worker counts as dead,
/// unless ATTACHE_WORKER_LAPSE says otherwise (in seconds).
pub(crate) const LAPSE: Duration = Duration::from_secs(10);

/// The lapse in force: ATTACHE_WORKER_LAPSE (seconds, at least twice the
/// heartbeat), else [`LAPSE`].
pub(crate) fn lapse_from_env() -> Duration {
    std::env::var("ATTACHE_WORKER_LAPSE")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .map(|d| d.max(HEARTBEAT * 2))
        .unwrap_or(LAPSE)
}

/// A queued job a worker may claim, as the claim sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub id: String,
    pub target: String,
    /// What it was posted with (`None`: pinned to this worker).
    pub payload: Option<String>,
}

/// A job claimed by this worker: now `running` under its name.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub record: JobRecord,
    /// What it was posted with (`None`: a job posted without one, which
    /// the claim has marked interrupted instead).
    pub payload: Option<String>,
}

/// What reaping one dead worker did.
#[derive(Debug, Default)]
pub(crate) struct Reaped {
    pub worker: String,
    /// Its journal entries reverted completely.
    pub cleaned: Vec<String>,
    /// Its journal entries still not clean (kept, tried again later).
    pub incomplete: Vec<String>,
    /// Its jobs marked interrupted.
    pub interrupted: Vec<String>,
}

/// This process's face of the workers' tables.
pub(crate) struct Cluster {
    pg: Arc<Postgres>,
    /// A second connection, for the hypervisor registry: it is read while
    /// `pg` is held (claiming asks what each candidate job needs).
    registry: Arc<Postgres>,
    /// This worker's id (also its jobs' `owner`).
    pub id: String,
    lapse: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.pg.shown())
            .field("id", &self.id)
            .field("lapse", &self.lapse)
            .finish()
    }
}

fn reap_key(worker: &str) -> String {
    format!("attache-reap:{worker}")
}

impl Cluster {
    /// Connects as worker `id` (the schema is migrated by `Postgres::open`).
    pub(crate) fn open(url: &str, id: &str, lapse: Duration) -> Result<Arc<Self>, DbError> {
        let pg = Postgres::open(url)?;
        Ok(Arc::new(Self {
            registry: Arc::new(pg.another()),
            pg: Arc::new(pg),
            id: id.to_owned(),
            lapse,
        }))
    }

    /// The state database, on the connection the hypervisor registry
    /// uses (not the one claims hold).
    pub(crate) fn registry_db(&self) -> Arc<Postgres> {
        self.registry.clone()
    }

    fn lapse_secs(&self) -> f64 {
        self.lapse.as_secs_f64()
    }

    /// Adds this worker's row (again, if it was reaped).
    pub(crate) fn register(&self) -> Result<(), DbError> {
        let host = crate::store::lock::hostname();
        let pid = i64::from(std::process::id());
        let now = crate::server::queue::now();
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO workers (id, host, pid, started) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat = now()",
                &[&self.id, &host, &pid, &now],
            )?;
            Ok(())
        })
    }

    /// Beats the heartbeat; false when the row was gone (this worker was
    /// taken for dead and reaped): it is then registered again.
    pub(crate) fn heartbeat(&self) -> Result<bool, DbError> {
        let n = self.pg.with(|c| {
            Ok(c.execute(
                "UPDATE workers SET heartbeat = now() WHERE id = $1",
                &[&self.id],
            )?)
        })?;
        if n == 0 {
            self.register()?;
        }
        Ok(n > 0)
    }

    /// Live workers (heartbeat within the lapse), by id.
    #[cfg(test)]
    pub(crate) fn live(&self) -> Result<Vec<String>, DbError> {
        let lapse = self.lapse_secs();
        self.pg.with(|c| {
            let rows = c.query(
                "SELECT id FROM workers WHERE heartbeat >= now() - make_interval(secs => $1)
                 ORDER BY id",
                &[&lapse],
            )?;
            Ok(rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?)
        })
    }

    /// Stores a new queued job with what a worker needs to run it: its
    /// `payload`, or `pinned` to the worker that alone may run it.
    pub(crate) fn post(
        &self,
        j: &JobRecord,
        payload: Option<&str>,
        pinned: Option<&str>,
    ) -> Result<(), DbError> {
        let request = j.request.to_string();
        self.pg.with(|c| {
            c.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}, payload, pinned)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, $8, NULL, NULL, $9, $10, $11)"
                ),
                &[
                    &j.id,
                    &j.kind,
                    &j.target,
                    &j.hypervisor,
                    &j.policy,
                    &j.status,
                    &request,
                    &j.created,
                    &j.owner,
                    &payload,
                    &pinned,
                ],
            )?;
            Ok(())
        })
    }

    /// Claims queued jobs for this worker: of the queued jobs (oldest
    /// first; those pinned to another worker and those whose VM a job runs
    /// on already left alone), `take` picks those this worker's slots
    /// take now.
    /// The rows are locked `FOR UPDATE SKIP LOCKED`, so that workers
    /// claiming at once never see the same job, and made `running` under
    /// this worker's name in the same transaction. A job with nothing to
    /// run it by (posted by an older attache) is marked interrupted.
    pub(crate) fn claim(
        &self,
        take: &mut (dyn FnMut(&[Candidate]) -> std::collections::HashSet<String> + Send),
        now: i64,
    ) -> Result<Vec<Claimed>, DbError> {
        self.pg.with(|c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT {JOB_COLUMNS}, payload FROM jobs j
                     WHERE status = 'queued'
                       AND (pinned = $1 OR (pinned IS NULL AND payload IS NOT NULL))
                       AND (hypervisor IS NULL OR NOT EXISTS (
                            SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.target = j.target))
                     ORDER BY created, seq
                     LIMIT 256
                     FOR UPDATE SKIP LOCKED"
                ),
                &[&self.id],
            )?;
            let mut queued = Vec::new();
            for r in &rows {
                queued.push((job_of(r)?, r.try_get::<_, Option<String>>(14)?));
            }
            let candidates: Vec<Candidate> = queued
                .iter()
                .map(|(j, payload)| Candidate {
                    id: j.id.clone(),
                    target: j.target.clone(),
                    payload: payload.clone(),
                })
                .collect();
            let picked = if candidates.is_empty() {
                Default::default()
            } else {
                take(&candidates)
            };
            let mut out = Vec::new();
            // One job a VM at once, whatever `take` allows.
            let mut vms = std::collections::HashSet::new();
            for (record, payload) in queued {
                if !picked.contains(&record.id)
                    || (record.hypervisor.is_some() && !vms.insert(record.target.clone()))
                {
                    continue;
                }
                tx.execute(
                    "UPDATE jobs SET status = 'running', worker = $2, owner = $2, started = $3,
                       seq = nextval('jobs_seq')
                     WHERE id = $1",
                    &[&record.id, &self.id, &now],
                )?;
                out.push(Claimed {
                    record: JobRecord {
                        status: "running".into(),
                        owner: Some(self.id.clone()),
                        started: Some(now),
                        ..record
                    },
                    payload,
                });
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Marks interrupted the unfinished jobs that no worker handles (of an
    /// older attache's server, or of `attache policy run`), whose queue
    /// `alive` says is gone; their ids.
    pub(crate) fn interrupt_unworked(
        &self,
        now: i64,
        alive: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<Vec<String>, DbError> {
        self.pg.interrupt_where(
            now,
            alive,
            "worker IS NULL AND pinned IS NULL AND payload IS NULL",
        )
    }

    /// Cancels a job still queued (claimed by no worker); whether it was.
    pub(crate) fn cancel_queued(&self, id: &str, now: i64) -> Result<bool, DbError> {
        let n = self.pg.with(|c| {
            Ok(c.execute(
                "UPDATE jobs SET status = 'cancelled', error = 'cancelled while queued',
                   finished = $2, payload = NULL, seq = nextval('jobs_seq')
                 WHERE id = $1 AND status = 'queued'",
                &[&id, &now],
            )?)
        })?;
        Ok(n > 0)
    }

    /// The worker a job was claimed by.
    pub(crate) fn worker_of(&self, id: &str) -> Result<Option<String>, DbError> {
        self.pg.with(|c| {
            Ok(
                c.query_opt("SELECT worker FROM jobs WHERE id = $1", &[&id])?
                    .map(|r| r.try_get(0))
                    .transpose()?
                    .flatten(),
            )
        })
    }

    /// Forgets a finished job's payload (the options it ran with).
    pub(crate) fn drop_payload(&self, id: &str) -> Result<(), DbError> {
        self.pg.with(|c| {
            c.execute("UPDATE jobs SET payload = NULL WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    /// Waits for the lock of VM `vm` (`HV/VM`), on a connection of its
    /// own.
    pub(crate) fn lock_vm(&self, vm: &str) -> Result<PgLock, DbError> {
        self.pg.lock_vm(vm)
    }

    /// Takes the lock of VM `vm` if nobody holds it.
    pub(crate) fn try_lock_vm(&self, vm: &str) -> Result<Option<PgLock>, DbError> {
        self.pg.try_lock_vm(vm)
    }

    fn advisory(&self, key: &str, wait: bool) -> Result<Option<PgLock>, DbError> {
        self.pg.advisory(key, wait)
    }

    /// Writes a journal entry of this worker (a rewrite keeps the worker
    /// that first wrote it).
    pub(crate) fn journal_write(
        &self,
        session: &str,
        vm: &str,
        entry: &str,
    ) -> Result<(), DbError> {
        self.pg.with(|c| {
            c.execute(
                "INSERT INTO journal (session, worker, vm, entry) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (session) DO UPDATE SET entry = EXCLUDED.entry",
                &[&session, &self.id, &vm, &entry],
            )?;
            Ok(())
        })
    }

    pub(crate) fn journal_remove(&self, session: &str) -> Result<(), DbError> {
        self.pg.with(|c| {
            c.execute("DELETE FROM journal WHERE session = $1", &[&session])?;
            Ok(())
        })
    }

    /// Journal entries (`(worker, entry)`), of `worker` only if given.
    pub(crate) fn journal_entries(
        &self,
        worker: Option<&str>,
    ) -> Result<Vec<(String, String)>, DbError> {
        self.pg.with(|c| {
            let rows = c.query(
                "SELECT worker, entry FROM journal WHERE $1::text IS NULL OR worker = $1
                 ORDER BY session",
                &[&worker],
            )?;
            Ok(rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, postgres::Error>>()?)
        })
    }

    /// Dead workers: rows whose heartbeat lapsed, and workers named by
    /// journal entries that have no row (left by an earlier reaping that
    /// could not clean everything). Never this worker.
    pub(crate) fn dead(&self) -> Result<Vec<String>, DbError> {
        let lapse = self.lapse_secs();
        self.pg.with(|c| {
            let rows = c.query(
                "SELECT id FROM workers WHERE heartbeat < now() - make_interval(secs => $1)
                 UNION
                 SELECT worker FROM journal WHERE worker NOT IN (SELECT id FROM workers)
                 ORDER BY 1",
                &[&lapse],
            )?;
            let ids: Vec<String> = rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            Ok(ids.into_iter().filter(|i| *i != self.id).collect())
        })
    }

    /// Reaps dead worker `worker` unless another live worker is at it:
    /// `clean` reverts one of its journal entries (the caller holds that
    /// entry's VM lock; it says whether the VM is clean now); then its
    /// running jobs and the jobs pinned to it are marked interrupted and
    /// its row removed. `None` when another worker holds the reap lock or
    /// the worker came back to life.
    pub(crate) fn reap(
        &self,
        worker: &str,
        now: i64,
        clean: &mut (dyn FnMut(&str, &PgLock) -> bool + Send),
    ) -> Result<Option<Reaped>, DbError> {
        let Some(_reaping) = self.advisory(&reap_key(worker), false)? else {
            return Ok(None);
        };
        // Looked at again under the lock: another worker may have reaped
        // it (and released the lock) since `dead`.
        if !self.dead()?.iter().any(|d| d == worker) {
            return Ok(None);
        }
        let mut out = Reaped {
            worker: worker.to_owned(),
            ..Reaped::default()
        };
        for (_, entry) in self.journal_entries(Some(worker))? {
            let vm = serde_json::from_str::<serde_json::Value>(&entry)
                .ok()
                .and_then(|e| {
                    Some(format!(
                        "{}/{}",
                        e["hypervisor"].as_str()?,
                        e["vm"].as_str()?
                    ))
                });
            let Some(vm) = vm else {
                tracing::warn!(worker, "a journal entry does not parse: {entry}");
                continue;
            };
            // Its job's connection died with it: the lock is free, unless
            // a live worker's job runs on the VM, which then reverts the
            // entry itself as its session opens.
            match self.try_lock_vm(&vm)? {
                Some(lock) => {
                    if clean(&entry, &lock) {
                        out.cleaned.push(vm);
                    } else {
                        out.incomplete.push(vm);
                    }
                }
                None => out.incomplete.push(vm),
            }
        }
        let why = "interrupted: its worker stopped while it ran (heartbeat lapsed); another worker cleaned up";
        let why_pinned =
            "interrupted: the worker it was posted to, which alone could run it, stopped";
        out.interrupted = self.pg.with(|c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE (status = 'running' AND worker = $1)
                        OR (status = 'queued' AND pinned = $1)
                     ORDER BY created, seq FOR UPDATE"
                ),
                &[&worker],
            )?;
            let mut ids = Vec::new();
            for r in &rows {
                let j = job_of(r)?;
                let error = if j.status == "running" {
                    why
                } else {
                    why_pinned
                };
                tx.execute(
                    "UPDATE jobs SET status = 'interrupted', error = $2, finished = $3,
                       payload = NULL, seq = nextval('jobs_seq')
                     WHERE id = $1",
                    &[&j.id, &error, &now],
                )?;
                set_interrupted_last(&mut tx, &j, error, now)?;
                ids.push(j.id);
            }
            tx.execute("DELETE FROM workers WHERE id = $1", &[&worker])?;
            tx.commit()?;
            Ok::<_, Step>(ids)
        })?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::db::test_pg::TestPg;
    use postgres::Client;

    fn job(id: &str, target: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            kind: "backup".into(),
            target: target.into(),
            hypervisor: target.split_once('/').map(|(h, _)| h.to_owned()),
            policy: None,
            status: "queued".into(),
            request: serde_json::json!({}),
            result: None,
            error: None,
            snapshot: None,
            created: 100,
            started: None,
            finished: None,
            owner: Some("poster".into()),
        }
    }

    fn everything(c: &[Candidate]) -> HashSet<String> {
        c.iter().map(|c| c.id.clone()).collect()
    }

    fn sql_one(url: &str, sql: &str) -> String {
        let mut c = Client::connect(url, postgres::NoTls).expect("connect");
        let r = c.query_one(sql, &[]).expect(sql);
        r.get::<_, Option<String>>(0).unwrap_or_default()
    }

    #[test]
    fn workers_claim_each_job_once_and_reap_a_dead_one_once() {
        let pg = TestPg::start();
        let url = pg.database("workers");
        let lapse = Duration::from_secs(4);
        let ws: Vec<Arc<Cluster>> = (0..3)
            .map(|i| Cluster::open(&url, &format!("w{i}"), lapse).unwrap())
            .collect();
        for w in &ws {
            w.register().unwrap();
        }
        assert_eq!(ws[0].live().unwrap(), ["w0", "w1", "w2"]);

        // 40 jobs on 8 VMs and the local machine; one pinned to w2, one
        // posted with nothing to run it by (claimed by nobody).
        let mut all = BTreeSet::new();
        for i in 0..40 {
            let target = if i % 5 == 4 {
                "local".to_owned()
            } else {
                format!("hv{}/vm{}", i % 2, i % 8)
            };
            let id = format!("j{i:02}");
            ws[0].post(&job(&id, &target), Some("{}"), None).unwrap();
            all.insert(id);
        }
        ws[0]
            .post(&job("pinned", "local"), None, Some("w2"))
            .unwrap();
        ws[0].post(&job("orphan", "local"), None, None).unwrap();

        // Three workers claim at once, each as much as it is offered,
        // until nothing is left; a claimed VM job ends before the next
        // claim round, so that the VM's other jobs become claimable.
        let claimed: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
            let url = &url;
            let hs: Vec<_> = ws
                .iter()
                .map(|w| {
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for _ in 0..200 {
                            // Two slots a worker.
                            let mut two = |c: &[Candidate]| {
                                c.iter().take(2).map(|c| c.id.clone()).collect()
                            };
                            let got = w.claim(&mut two, 200).unwrap();
                            for c in &got {
                                assert_eq!(c.record.status, "running");
                                assert_eq!(c.record.owner.as_deref(), Some(w.id.as_str()));
                                mine.push((c.record.id.clone(), c.record.target.clone()));
                            }
                            // Done: the VM is free for its next job.
                            let mut conn = Client::connect(url, postgres::NoTls).unwrap();
                            for c in &got {
                                conn.execute(
                                    "UPDATE jobs SET status = 'succeeded' WHERE id = $1",
                                    &[&c.record.id],
                                )
                                .unwrap();
                            }
                            if got.is_empty() {
                                let left = sql_one(
                                    url,
                                    "SELECT count(*)::text FROM jobs WHERE status = 'queued' AND payload IS NOT NULL",
                                );
                                if left == "0" {
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut seen = BTreeSet::new();
        for (w, mine) in claimed.iter().enumerate() {
            for (id, _) in mine {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
                if id == "pinned" {
                    assert_eq!(w, 2, "a pinned job is claimed by its worker only");
                }
            }
        }
        assert!(seen.remove("pinned"), "the pinned job was claimed");
        assert_eq!(seen, all, "every job claimed once");
        assert!(
            claimed.iter().filter(|m| !m.is_empty()).count() >= 2,
            "the workers shared the jobs"
        );
        // The row names its worker.
        assert_eq!(
            sql_one(
                &url,
                "SELECT count(*)::text FROM jobs WHERE worker IS NULL AND id LIKE 'j%'"
            ),
            "0"
        );
        assert_eq!(
            sql_one(&url, "SELECT status FROM jobs WHERE id = 'orphan'"),
            "queued"
        );

        // `take` decides: a worker whose slots take nothing claims nothing.
        ws[0]
            .post(&job("later", "hv0/vm0"), Some("{}"), None)
            .unwrap();
        assert!(ws[1]
            .claim(&mut |_| HashSet::new(), 300)
            .unwrap()
            .is_empty());
        // A job running on a VM holds back the VM's queued jobs, whoever
        // claims.
        ws[0]
            .post(&job("later2", "hv0/vm0"), Some("{}"), None)
            .unwrap();
        let got = ws[1].claim(&mut everything, 300).unwrap();
        assert_eq!(got.len(), 1, "one job a VM: {got:?}");
        assert!(ws[2].claim(&mut everything, 300).unwrap().is_empty());

        // VM locks exclude across connections, and go with them.
        let held = ws[0].lock_vm("hv0/vm0").unwrap();
        assert!(ws[1].try_lock_vm("hv0/vm0").unwrap().is_none());
        assert!(ws[1].try_lock_vm("hv0/vm1").unwrap().is_some());
        drop(held);
        assert!(ws[1].try_lock_vm("hv0/vm0").unwrap().is_some());

        // w1 dies (its heartbeat stops) while running `got[0]`, with two
        // VMs attached: one whose lock went with it, one whose VM a live
        // worker's job holds now.
        let running = got[0].record.id.clone();
        let w1 = &ws[1];
        w1.journal_write("s1", "hv0/vm0", r#"{"hypervisor":"hv0","vm":"vm0"}"#)
            .unwrap();
        w1.journal_write("s2", "hv1/vm1", r#"{"hypervisor":"hv1","vm":"vm1"}"#)
            .unwrap();
        ws[0]
            .post(&job("pinned1", "local"), None, Some("w1"))
            .unwrap();
        let busy = ws[2].lock_vm("hv1/vm1").unwrap();
        // Not yet lapsed: nobody is dead.
        assert!(ws[0].dead().unwrap().is_empty());
        pg.sql(
            "workers",
            "UPDATE workers SET heartbeat = now() - interval '1 minute' WHERE id = 'w1'",
        );
        ws[0].heartbeat().unwrap();
        ws[2].heartbeat().unwrap();
        assert_eq!(ws[0].dead().unwrap(), ["w1"]);
        assert_eq!(ws[0].live().unwrap(), ["w0", "w2"]);

        // w0 and w2 reap at once: one does it.
        let cleaned = std::sync::Mutex::new(Vec::new());
        let reaped: Vec<Option<Reaped>> = std::thread::scope(|s| {
            let hs: Vec<_> = [&ws[0], &ws[2]]
                .into_iter()
                .map(|w| {
                    let cleaned = &cleaned;
                    s.spawn(move || {
                        let mut clean = |entry: &str, _: &PgLock| {
                            let e: serde_json::Value = serde_json::from_str(entry).unwrap();
                            cleaned.lock().unwrap().push(e["vm"].to_string());
                            // The reaper's revert removes the entry.
                            w.journal_remove(if e["vm"] == "vm0" { "s1" } else { "s2" })
                                .unwrap();
                            // Hold the reap lock a moment: the other looks.
                            std::thread::sleep(Duration::from_millis(300));
                            true
                        };
                        w.reap("w1", 500, &mut clean).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let done: Vec<&Reaped> = reaped.iter().flatten().collect();
        assert_eq!(done.len(), 1, "reaped once: {reaped:?}");
        let r = done[0];
        assert_eq!(r.cleaned, ["hv0/vm0"]);
        assert_eq!(r.incomplete, ["hv1/vm1"], "a VM a live job holds is left");
        assert_eq!(*cleaned.lock().unwrap(), ["\"vm0\""]);
        let mut interrupted = r.interrupted.clone();
        interrupted.sort();
        let mut want = vec![running.clone(), "pinned1".to_owned()];
        want.sort();
        assert_eq!(interrupted, want);
        assert_eq!(
            sql_one(
                &url,
                &format!("SELECT status FROM jobs WHERE id = '{running}'")
            ),
            "interrupted"
        );
        assert_eq!(
            sql_one(
                &url,
                &format!("SELECT status FROM last_results WHERE job = '{running}'")
            ),
            "interrupted"
        );
        assert_eq!(
            sql_one(&url, "SELECT count(*)::text FROM workers WHERE id = 'w1'"),
            "0"
        );
        // The entry left behind still names the dead worker: it stays dead
        // until its VM is free and it is reverted.
        assert_eq!(ws[0].dead().unwrap(), ["w1"]);
        drop(busy);
        let mut clean = |_: &str, _: &PgLock| {
            ws[0].journal_remove("s2").unwrap();
            true
        };
        let again = ws[0].reap("w1", 600, &mut clean).unwrap().expect("reaped");
        assert_eq!(again.cleaned, ["hv1/vm1"]);
        assert!(again.interrupted.is_empty());
        assert!(ws[0].dead().unwrap().is_empty());

        // A worker taken for dead is told so at its next heartbeat, and is
        // alive again; a job it finishes late stays interrupted.
        assert!(!ws[1].heartbeat().unwrap());
        assert!(ws[1].heartbeat().unwrap());
        let store = Postgres::open(&url).unwrap();
        use crate::db::StateStore;
        store
            .record_job(&JobRecord {
                status: "succeeded".into(),
                finished: Some(700),
                ..got[0].record.clone()
            })
            .unwrap();
        assert_eq!(store.job(&running).unwrap().unwrap().status, "interrupted");

        // A queued job is cancelled once; a claimed one is not.
        ws[0].post(&job("c1", "local"), Some("{}"), None).unwrap();
        assert!(ws[2].cancel_queued("c1", 800).unwrap());
        assert!(!ws[2].cancel_queued("c1", 801).unwrap());
        assert!(ws[0]
            .claim(&mut everything, 802)
            .unwrap()
            .iter()
            .all(|c| c.record.id != "c1"));
        assert!(!ws[0].cancel_queued(&running, 803).unwrap());
    }
}
