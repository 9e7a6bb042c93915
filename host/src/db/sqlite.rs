//! The SQLite backend of [`StateStore`]: `state.db` in the state
//! directory, in WAL mode (readers such as `attache jobs` never block the
//! server), with a busy timeout for writers of other processes (`attache
//! policy add` while a server runs). Every write is one transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::records::{JobFilter, JobRecord, LastResult, PolicyRecord};
use super::schema::{APPLICATION_ID, MIGRATIONS};
use super::{DbError, StateStore};

/// The file's name in the state directory.
pub(crate) const FILE: &str = "state.db";

pub(crate) struct Sqlite {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating if missing) `state.db` in `dir` and brings its
    /// schema up to date.
    pub(crate) fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join(FILE);
        let err = |source| DbError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(DbError::Format {
                path: path.display().to_string(),
                why: format!("cannot create its directory: {e}"),
            });
        }
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        migrate(&mut conn, &path)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, DbError> {
        let mut c = self.conn.lock().map_err(|_| DbError::Poisoned)?;
        f(&mut c).map_err(self.err())
    }
}

/// Brings the schema to the newest version, one transaction per step.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let err = |source| DbError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let app: i32 = tx
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if app == 0 && version == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(err)?;
        if tables > 0 {
            return Err(DbError::Foreign {
                place: path.display().to_string(),
            });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err)?;
    } else if app != APPLICATION_ID {
        return Err(DbError::Foreign {
            place: format!("{} (application id {app:#x})", path.display()),
        });
    }
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(DbError::Newer {
            place: path.display().to_string(),
            version,
            known,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", n as i64 + 1)
            .map_err(err)?;
        tracing::info!(version = n + 1, "state database schema migrated");
    }
    tx.commit().map_err(err)
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

pub(super) fn parse_json(what: &'static str, s: &str) -> Result<serde_json::Value, DbError> {
    serde_json::from_str(s).map_err(|source| DbError::Json { what, source })
}

/// A job row as stored: the JSON columns still text.
struct RawJob {
    job: JobRecord,
    request: String,
    result: Option<String>,
}

const JOB_COLUMNS: &str = "id, kind, target, hypervisor, policy, status, request, result, error, snapshot, created, started, finished, owner";

fn job_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        job: JobRecord {
            id: r.get(0)?,
            kind: r.get(1)?,
            target: r.get(2)?,
            hypervisor: r.get(3)?,
            policy: r.get(4)?,
            status: r.get(5)?,
            request: serde_json::Value::Null,
            result: None,
            error: r.get(8)?,
            snapshot: r.get(9)?,
            created: r.get(10)?,
            started: r.get(11)?,
            finished: r.get(12)?,
            owner: r.get(13)?,
        },
        request: r.get(6)?,
        result: r.get(7)?,
    })
}

impl RawJob {
    fn parse(self) -> Result<JobRecord, DbError> {
        let mut job = self.job;
        job.request = parse_json("job request", &self.request)?;
        job.result = self
            .result
            .map(|r| parse_json("job result", &r))
            .transpose()?;
        Ok(job)
    }
}

/// Statuses of jobs that have ended.
pub(super) const FINISHED: &[&str] = &["succeeded", "failed", "cancelled", "interrupted"];

impl StateStore for Sqlite {
    fn record_job(&self, j: &JobRecord) -> Result<(), DbError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                &format!("INSERT OR REPLACE INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
                params![
                    j.id,
                    j.kind,
                    j.target,
                    j.hypervisor,
                    j.policy,
                    j.status,
                    json_text(&j.request),
                    j.result.as_ref().map(json_text),
                    j.error,
                    j.snapshot,
                    j.created,
                    j.started,
                    j.finished,
                    j.owner
                ],
            )?;
            if FINISHED.contains(&j.status.as_str()) && j.kind == "backup" {
                tx.execute(
                    "INSERT OR REPLACE INTO last_results (target, job, status, finished, policy, snapshot, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        j.target,
                        j.id,
                        j.status,
                        j.finished.unwrap_or(j.created),
                        j.policy,
                        j.snapshot,
                        j.error
                    ],
                )?;
            }
            tx.commit()
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, DbError> {
        let raw = self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_row,
            )
            .optional()
        })?;
        raw.map(RawJob::parse).transpose()
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, DbError> {
        let limit = f.limit.map(|n| n as i64).unwrap_or(-1);
        let raws = self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE (?1 IS NULL OR policy = ?1)
                   AND (?2 IS NULL OR target = ?2)
                   AND (?3 = 0 OR status IN ('failed', 'interrupted'))
                 ORDER BY created DESC, rowid DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(params![f.policy, f.vm, f.failed, limit], job_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        raws.into_iter().map(RawJob::parse).collect()
    }

    fn interrupt_unfinished(
        &self,
        now: i64,
        alive: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<Vec<String>, DbError> {
        let jobs = self.with(|c| {
            let tx = c.transaction()?;
            let raws = {
                let mut st = tx.prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY created, rowid"
                ))?;
                let rows = st.query_map([], job_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let raws: Vec<RawJob> = raws
                .into_iter()
                .filter(|r| !alive(r.job.owner.as_deref()))
                .collect();
            for r in &raws {
                let why = if r.job.status == "running" {
                    "interrupted: the server stopped while it ran"
                } else {
                    "interrupted: the server stopped before it ran"
                };
                tx.execute(
                    "UPDATE jobs SET status = 'interrupted', error = ?2, finished = ?3 WHERE id = ?1",
                    params![r.job.id, why, now],
                )?;
                if r.job.kind == "backup" {
                    tx.execute(
                        "INSERT OR REPLACE INTO last_results (target, job, status, finished, policy, snapshot, error)
                         VALUES (?1, ?2, 'interrupted', ?3, ?4, NULL, ?5)",
                        params![r.job.target, r.job.id, now, r.job.policy, why],
                    )?;
                }
            }
            tx.commit()?;
            Ok(raws)
        })?;
        Ok(jobs.into_iter().map(|r| r.job.id).collect())
    }

    fn add_policy(&self, p: &PolicyRecord) -> Result<(), DbError> {
        let def = serde_json::to_string(p).map_err(|source| DbError::Json {
            what: "policy",
            source,
        })?;
        let added = self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO policies (name, definition, created, last_fired) VALUES (?1, ?2, ?3, ?4)",
                params![p.name, def, p.created, p.last_fired],
            )
        })?;
        if added == 0 {
            return Err(DbError::Conflict(format!("policy {:?}", p.name)));
        }
        Ok(())
    }

    fn policy(&self, name: &str) -> Result<Option<PolicyRecord>, DbError> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT definition, created, last_fired FROM policies WHERE name = ?1",
                [name],
                |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        row.map(policy_of).transpose()
    }

    fn policies(&self) -> Result<Vec<PolicyRecord>, DbError> {
        let rows = self.with(|c| {
            let mut st =
                c.prepare("SELECT definition, created, last_fired FROM policies ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(policy_of).collect()
    }

    fn remove_policy(&self, name: &str) -> Result<bool, DbError> {
        let n = self.with(|c| c.execute("DELETE FROM policies WHERE name = ?1", [name]))?;
        Ok(n > 0)
    }

    fn policy_fired(&self, name: &str, previous: Option<i64>, time: i64) -> Result<bool, DbError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE policies SET last_fired = ?2 WHERE name = ?1 AND last_fired IS ?3",
                params![name, time, previous],
            )
        })?;
        Ok(n > 0)
    }

    fn tag(&self, target: &str, tags: &[String]) -> Result<(), DbError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for t in tags {
                tx.execute(
                    "INSERT OR IGNORE INTO vm_tags (target, tag) VALUES (?1, ?2)",
                    params![target, t],
                )?;
            }
            tx.commit()
        })
    }

    fn untag(&self, target: &str, tags: &[String]) -> Result<(), DbError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for t in tags {
                tx.execute(
                    "DELETE FROM vm_tags WHERE target = ?1 AND tag = ?2",
                    params![target, t],
                )?;
            }
            tx.commit()
        })
    }

    fn tags(&self) -> Result<Vec<(String, Vec<String>)>, DbError> {
        let rows = self.with(|c| {
            let mut st = c.prepare("SELECT target, tag FROM vm_tags ORDER BY target, tag")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        Ok(super::records::grouped_tags(rows))
    }

    fn last_results(&self) -> Result<Vec<LastResult>, DbError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT target, job, status, finished, policy, snapshot, error FROM last_results ORDER BY target",
            )?;
            let rows = st.query_map([], |r| {
                Ok(LastResult {
                    target: r.get(0)?,
                    job: r.get(1)?,
                    status: r.get(2)?,
                    finished: r.get(3)?,
                    policy: r.get(4)?,
                    snapshot: r.get(5)?,
                    error: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

pub(super) fn policy_of(
    (def, created, last_fired): (String, i64, Option<i64>),
) -> Result<PolicyRecord, DbError> {
    let mut p: PolicyRecord = serde_json::from_str(&def).map_err(|source| DbError::Json {
        what: "policy",
        source,
    })?;
    p.created = created;
    p.last_fired = last_fired;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::records::Keep;

    fn job(id: &str, target: &str, policy: Option<&str>, status: &str, created: i64) -> JobRecord {
        JobRecord {
            id: id.into(),
            kind: "backup".into(),
            target: target.into(),
            hypervisor: target.split_once('/').map(|(h, _)| h.to_owned()),
            policy: policy.map(str::to_owned),
            status: status.into(),
            request: serde_json::json!({ "kind": "backup" }),
            result: None,
            error: None,
            snapshot: None,
            created,
            started: None,
            finished: None,
            owner: Some("q1".into()),
        }
    }

    #[test]
    fn jobs_survive_reopening_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Sqlite::open(dir.path()).unwrap();
            db.record_job(&job("a", "hv1/vm1", Some("nightly"), "queued", 1))
                .unwrap();
            let mut done = job("a", "hv1/vm1", Some("nightly"), "succeeded", 1);
            done.finished = Some(5);
            done.snapshot = Some("abc".into());
            done.result = Some(serde_json::json!({ "id": "abc" }));
            db.record_job(&done).unwrap();
            db.record_job(&job("b", "hv1/vm2", None, "failed", 2))
                .unwrap();
            db.record_job(&job("c", "hv2/vm3", Some("nightly"), "running", 3))
                .unwrap();
        }
        let db = Sqlite::open(dir.path()).unwrap();
        let all = db.jobs(&JobFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(all[2].result, Some(serde_json::json!({ "id": "abc" })));
        let nightly = db
            .jobs(&JobFilter {
                policy: Some("nightly".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(nightly.len(), 2);
        let vm2 = db
            .jobs(&JobFilter {
                vm: Some("hv1/vm2".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(vm2.len(), 1);
        // A job of a queue that still runs is left alone.
        db.record_job(&JobRecord {
            owner: Some("live".into()),
            ..job("d", "hv2/vm4", None, "running", 0)
        })
        .unwrap();
        assert_eq!(
            db.interrupt_unfinished(9, &|o| o == Some("live")).unwrap(),
            ["c"]
        );
        assert_eq!(db.job("d").unwrap().unwrap().status, "running");
        let failed = db
            .jobs(&JobFilter {
                failed: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            failed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            ["c", "b"]
        );
        assert_eq!(db.job("c").unwrap().unwrap().status, "interrupted");
        assert_eq!(db.job("c").unwrap().unwrap().finished, Some(9));
        let last = db.last_results().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[0].target, "hv1/vm1");
        assert_eq!(last[0].snapshot.as_deref(), Some("abc"));
        assert_eq!(last[2].status, "interrupted");
    }

    #[test]
    fn policies_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(dir.path()).unwrap();
        let p = PolicyRecord {
            name: "nightly".into(),
            vms: vec!["hv1/*".into(), "tag:db".into()],
            plugin: "filesystem".into(),
            include: vec!["/data".into()],
            options: Default::default(),
            schedule: "0 3 * * *".into(),
            keep: Keep {
                last: 3,
                ..Default::default()
            },
            retries: 0,
            created: 100,
            last_fired: None,
        };
        db.add_policy(&p).unwrap();
        assert!(matches!(db.add_policy(&p), Err(DbError::Conflict(_))));
        assert!(db.policy_fired("nightly", None, 200).unwrap());
        let back = db.policy("nightly").unwrap().unwrap();
        assert_eq!(back.last_fired, Some(200));
        assert_eq!(back.keep.last, 3);
        assert_eq!(db.policies().unwrap().len(), 1);
        assert!(db.remove_policy("nightly").unwrap());
        assert!(!db.remove_policy("nightly").unwrap());
        assert!(db.policy("nightly").unwrap().is_none());

        db.tag("hv1/vm1", &["db".into(), "prod".into(), "db".into()])
            .unwrap();
        db.tag("hv2/vm3", &["db".into()]).unwrap();
        db.untag("hv1/vm1", &["prod".into()]).unwrap();
        assert_eq!(
            db.tags().unwrap(),
            vec![
                ("hv1/vm1".to_owned(), vec!["db".to_owned()]),
                ("hv2/vm3".to_owned(), vec!["db".to_owned()])
            ]
        );
    }

    #[test]
    fn refuses_foreign_and_newer_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE other (x)").unwrap();
        }
        assert!(matches!(
            Sqlite::open(dir.path()),
            Err(DbError::Foreign { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        Sqlite::open(dir.path()).unwrap();
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = Sqlite::open(dir.path()).err().unwrap();
        assert!(matches!(e, DbError::Newer { version: 99, .. }), "{e}");
    }
}
