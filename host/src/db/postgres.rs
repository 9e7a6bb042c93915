//! The PostgreSQL backend of [`StateStore`], for several servers sharing
//! one state: `--state-db` (or ATTACHE_STATE_DB) with a libpq connection
//! string, a URL (`USER[:PASSWORD]@HOST[:PORT]/DB` after the scheme) or
//! keywords (`host=H port=P user=U dbname=D`), as rust-postgres parses
//! them. The password comes from the string, else from
//! PGPASSWORD; it is never shown: errors and logs name the URL redacted
//! (`redact.rs`). Every write is one transaction, as with SQLite, and
//! every call gives the SQLite backend's answers (`contract.rs` runs the
//! same tests on both).
//!
//! The client is rust-postgres's synchronous `postgres` crate, not
//! `tokio-postgres`: the [`StateStore`] trait is synchronous because the
//! commands call it outside any runtime and SQLite is synchronous anyway,
//! and the synchronous client is the maintained face of the same crate
//! for exactly that. It drives its connection on a runtime of its own and
//! panics when called on a thread that is inside a tokio runtime (the
//! server's handlers call the store from async tasks). So a call made on
//! such a thread runs on a short-lived plain thread of its own while the
//! caller waits ([`off_runtime`]): correct from any caller, for the cost
//! of a thread per call, small beside a round trip to the server.
//!
//! One connection behind a mutex: the store's calls are short and a
//! server makes few of them; a connection found closed (the PostgreSQL
//! server restarted, the network dropped) is opened again at the next
//! call. TLS is not offered yet (`NoTls`): a server elsewhere than on
//! a trusted network is reached through a tunnel.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls, Row};

use super::postgres_schema::{APPLICATION, MARK, MIGRATIONS, MIGRATION_LOCK};
use super::records::{JobFilter, JobRecord, LastResult, PolicyRecord};
use super::redact::redact;
use super::sqlite::{parse_json, policy_of, FINISHED};
use super::{DbError, StateStore};

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Postgres {
    /// The URL with its password redacted: what messages name.
    url: String,
    config: Config,
    /// `None` until connected, and after the connection broke.
    conn: Mutex<Option<Client>>,
}

/// Runs `f` on this thread, or, if this thread is inside a tokio runtime
/// (where the synchronous client panics), on a plain thread while this
/// one waits.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Whether an error is the server refusing the login.
fn is_auth(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

impl Postgres {
    /// Connects to the PostgreSQL server of `url` and brings the state
    /// schema up to date (creating it in an empty database).
    pub(crate) fn open(url: &str) -> Result<Self, DbError> {
        let shown = redact(url);
        let bad = |why: String| DbError::Url {
            url: shown.clone(),
            why,
        };
        // rust-postgres knows PostgreSQL's URL schemes and keywords: the
        // host holds no scheme of its own to check.
        let mut config = Config::from_str(url).map_err(|e| {
            bad(format!(
                "expected a PostgreSQL URL or key=value connection string ({e})"
            ))
        })?;
        if config.get_password().is_none() {
            if let Some(pw) = std::env::var_os("PGPASSWORD") {
                config.password(pw.as_encoded_bytes());
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("attache");
        }
        let store = Self {
            url: shown,
            config,
            conn: Mutex::new(None),
        };
        store.with(|c| migrate(c, &store.url))?;
        Ok(store)
    }

    /// The same database on a connection of its own, opened at its first
    /// call (this one has already brought the schema up to date).
    pub(super) fn another(&self) -> Self {
        Self {
            url: self.url.clone(),
            config: self.config.clone(),
            conn: Mutex::new(None),
        }
    }

    /// The URL with its password redacted.
    pub(super) fn shown(&self) -> &str {
        &self.url
    }

    /// A connection of its own (for a session advisory lock, which lives
    /// as long as its connection), with TCP keepalives so that a holder
    /// whose machine is gone is noticed. Must be called off any tokio
    /// runtime ([`off_runtime`]).
    pub(super) fn connect_own(&self) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        Self::connect_with(&config, &self.url)
    }

    fn connect(&self) -> Result<Client, DbError> {
        Self::connect_with(&self.config, &self.url)
    }

    fn connect_with(config: &Config, url: &str) -> Result<Client, DbError> {
        config.connect(NoTls).map_err(|source| {
            let url = url.to_owned();
            if is_auth(&source) {
                DbError::Auth { url, source }
            } else if source.code().is_some() {
                DbError::Postgres { url, source }
            } else {
                DbError::Unreachable { url, source }
            }
        })
    }

    /// Runs `f` on the connection (opening it first if there is none or
    /// it broke), off any tokio runtime.
    pub(super) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, Step> + Send,
    ) -> Result<T, DbError> {
        off_runtime(|| {
            let mut slot = self.conn.lock().map_err(|_| DbError::Poisoned)?;
            let client = match slot.take() {
                Some(c) if !c.is_closed() => slot.insert(c),
                _ => slot.insert(self.connect()?),
            };
            match f(client) {
                Ok(v) => Ok(v),
                Err(Step::Db(e)) => Err(e),
                Err(Step::Pg(source)) => {
                    let url = self.url.clone();
                    Err(if client.is_closed() {
                        *slot = None;
                        DbError::Unreachable { url, source }
                    } else {
                        DbError::Postgres { url, source }
                    })
                }
            }
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the client also runs its runtime: not on a tokio thread.
        if let Some(c) = self.conn.get_mut().ok().and_then(Option::take) {
            off_runtime(move || drop(c));
        }
    }
}

/// Why a step on the connection failed: PostgreSQL's error, or ours.
pub(super) enum Step {
    Pg(postgres::Error),
    Db(DbError),
}

impl From<postgres::Error> for Step {
    fn from(e: postgres::Error) -> Self {
        Step::Pg(e)
    }
}

impl From<DbError> for Step {
    fn from(e: DbError) -> Self {
        Step::Db(e)
    }
}

/// Brings the schema to the newest version in one transaction, under an
/// advisory lock that servers starting together wait on in turn.
fn migrate(c: &mut Client, url: &str) -> Result<(), Step> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let schema: Option<String> = tx.query_one("SELECT current_schema()", &[])?.try_get(0)?;
    let Some(schema) = schema else {
        return Err(DbError::Format {
            path: url.to_owned(),
            why: "no schema to work in (search_path names none that exists)".into(),
        }
        .into());
    };
    let relations = |tx: &mut postgres::Transaction<'_>, name: Option<&str>| {
        tx.query_one(
            "SELECT count(*) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND ($2::text IS NULL OR c.relname = $2)
               AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
            &[&schema, &name],
        )
        .and_then(|r| r.try_get::<_, i64>(0))
    };
    if relations(&mut tx, Some("attache_state"))? == 0 {
        if relations(&mut tx, None)? > 0 {
            return Err(DbError::Foreign {
                place: format!("{url} (schema {schema})"),
            }
            .into());
        }
        tx.batch_execute(MARK)?;
        tx.execute(
            "INSERT INTO attache_state (application, version) VALUES ($1, 0)",
            &[&APPLICATION],
        )?;
    }
    let marks = tx.query("SELECT application, version FROM attache_state", &[])?;
    let version = match marks.as_slice() {
        [m] if m.try_get::<_, String>(0)? == APPLICATION => m.try_get::<_, i64>(1)?,
        _ => {
            return Err(DbError::Foreign {
                place: format!("{url} (schema {schema}: its attache_state is not Attaché's)"),
            }
            .into())
        }
    };
    let known = MIGRATIONS.len() as i64;
    if version > known || version < 0 {
        return Err(DbError::Newer {
            place: url.to_owned(),
            version,
            known,
        }
        .into());
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)?;
        tx.execute("UPDATE attache_state SET version = $1", &[&(n as i64 + 1)])?;
        tracing::info!(version = n + 1, url, "state database schema migrated");
    }
    tx.commit()?;
    Ok(())
}

pub(super) const JOB_COLUMNS: &str = "id, kind, target, hypervisor, policy, status, request, result, error, snapshot, created, started, finished, owner";

pub(super) fn job_of(r: &Row) -> Result<JobRecord, Step> {
    let request: String = r.try_get(6)?;
    let result: Option<String> = r.try_get(7)?;
    Ok(JobRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        target: r.try_get(2)?,
        hypervisor: r.try_get(3)?,
        policy: r.try_get(4)?,
        status: r.try_get(5)?,
        request: parse_json("job request", &request)?,
        result: result.map(|r| parse_json("job result", &r)).transpose()?,
        error: r.try_get(8)?,
        snapshot: r.try_get(9)?,
        created: r.try_get(10)?,
        started: r.try_get(11)?,
        finished: r.try_get(12)?,
        owner: r.try_get(13)?,
    })
}

/// For an interrupted backup `j`, its target's last result: interrupted
/// at `now`, with `why`. Other kinds leave the last results alone.
pub(super) fn set_interrupted_last(
    c: &mut impl GenericClient,
    j: &JobRecord,
    why: &str,
    now: i64,
) -> Result<(), postgres::Error> {
    if j.kind != "backup" {
        return Ok(());
    }
    set_last(
        c,
        &LastResult {
            target: j.target.clone(),
            job: j.id.clone(),
            status: "interrupted".into(),
            finished: now,
            policy: j.policy.clone(),
            snapshot: None,
            error: Some(why.to_owned()),
        },
    )
}

/// Makes `l` its target's last result (the same row as SQLite's `INSERT
/// OR REPLACE`).
pub(super) fn set_last(c: &mut impl GenericClient, l: &LastResult) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO last_results (target, job, status, finished, policy, snapshot, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (target) DO UPDATE SET job = EXCLUDED.job, status = EXCLUDED.status,
           finished = EXCLUDED.finished, policy = EXCLUDED.policy,
           snapshot = EXCLUDED.snapshot, error = EXCLUDED.error",
        &[
            &l.target,
            &l.job,
            &l.status,
            &l.finished,
            &l.policy,
            &l.snapshot,
            &l.error,
        ],
    )?;
    Ok(())
}

impl Postgres {
    /// [`StateStore::interrupt_unfinished`] of the jobs that also match
    /// the SQL condition `extra` (the workers' own are left to their
    /// reaping: `cluster.rs`).
    pub(super) fn interrupt_where(
        &self,
        now: i64,
        alive: &(dyn Fn(Option<&str>) -> bool + Sync),
        extra: &str,
    ) -> Result<Vec<String>, DbError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let rows = tx.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') AND ({extra})
                     ORDER BY created, seq FOR UPDATE"
                ),
                &[],
            )?;
            let mut gone = Vec::new();
            for r in &rows {
                let job = job_of(r)?;
                if !alive(job.owner.as_deref()) {
                    gone.push(job);
                }
            }
            for j in &gone {
                let why = if j.status == "running" {
                    "interrupted: the server stopped while it ran"
                } else {
                    "interrupted: the server stopped before it ran"
                };
                tx.execute(
                    "UPDATE jobs SET status = 'interrupted', error = $2, finished = $3 WHERE id = $1",
                    &[&j.id, &why, &now],
                )?;
                set_interrupted_last(&mut tx, j, why, now)?;
            }
            tx.commit()?;
            Ok(gone.into_iter().map(|j| j.id).collect())
        })
    }
}

impl StateStore for Postgres {
    fn record_job(&self, j: &JobRecord) -> Result<(), DbError> {
        let request = j.request.to_string();
        let result = j.result.as_ref().map(|r| r.to_string());
        self.with(|c| {
            let mut tx = c.transaction()?;
            let written = tx.execute(
                &format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                     ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, target = EXCLUDED.target,
                       hypervisor = EXCLUDED.hypervisor, policy = EXCLUDED.policy,
                       status = EXCLUDED.status, request = EXCLUDED.request,
                       result = EXCLUDED.result, error = EXCLUDED.error,
                       snapshot = EXCLUDED.snapshot, created = EXCLUDED.created,
                       started = EXCLUDED.started, finished = EXCLUDED.finished,
                       owner = EXCLUDED.owner, seq = nextval('jobs_seq')
                     WHERE jobs.status <> 'interrupted'"
                ),
                &[
                    &j.id,
                    &j.kind,
                    &j.target,
                    &j.hypervisor,
                    &j.policy,
                    &j.status,
                    &request,
                    &result,
                    &j.error,
                    &j.snapshot,
                    &j.created,
                    &j.started,
                    &j.finished,
                    &j.owner,
                ],
            )?;
            // 0: the job was marked interrupted (its worker's heartbeat
            // lapsed, another worker cleaned up after it): a late word
            // from the worker does not undo that.
            if written > 0 && FINISHED.contains(&j.status.as_str()) && j.kind == "backup" {
                set_last(
                    &mut tx,
                    &LastResult {
                        target: j.target.clone(),
                        job: j.id.clone(),
                        status: j.status.clone(),
                        finished: j.finished.unwrap_or(j.created),
                        policy: j.policy.clone(),
                        snapshot: j.snapshot.clone(),
                        error: j.error.clone(),
                    },
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn job(&self, id: &str) -> Result<Option<JobRecord>, DbError> {
        self.with(|c| {
            c.query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(job_of)
            .transpose()
        })
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, DbError> {
        let limit: Option<i64> = f.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        self.with(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE ($1::text IS NULL OR policy = $1)
                       AND ($2::text IS NULL OR target = $2)
                       AND (NOT $3::boolean OR status IN ('failed', 'interrupted'))
                     ORDER BY created DESC, seq DESC LIMIT $4::bigint"
                ),
                &[&f.policy, &f.vm, &f.failed, &limit],
            )?;
            rows.iter().map(job_of).collect()
        })
    }

    fn interrupt_unfinished(
        &self,
        now: i64,
        alive: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<Vec<String>, DbError> {
        self.interrupt_where(now, alive, "TRUE")
    }

    fn add_policy(&self, p: &PolicyRecord) -> Result<(), DbError> {
        let def = serde_json::to_string(p).map_err(|source| DbError::Json {
            what: "policy",
            source,
        })?;
        let added = self.with(|c| {
            Ok(c.execute(
                "INSERT INTO policies (name, definition, created, last_fired) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                &[&p.name, &def, &p.created, &p.last_fired],
            )?)
        })?;
        if added == 0 {
            return Err(DbError::Conflict(format!("policy {:?}", p.name)));
        }
        Ok(())
    }

    fn policy(&self, name: &str) -> Result<Option<PolicyRecord>, DbError> {
        self.with(|c| {
            match c.query_opt(
                "SELECT definition, created, last_fired FROM policies WHERE name = $1",
                &[&name],
            )? {
                Some(r) => Ok(Some(policy_of((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                ))?)),
                None => Ok(None),
            }
        })
    }

    fn policies(&self) -> Result<Vec<PolicyRecord>, DbError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT definition, created, last_fired FROM policies ORDER BY name",
                &[],
            )?;
            rows.iter()
                .map(|r| Ok(policy_of((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))?))
                .collect()
        })
    }

    fn remove_policy(&self, name: &str) -> Result<bool, DbError> {
        let n = self.with(|c| Ok(c.execute("DELETE FROM policies WHERE name = $1", &[&name])?))?;
        Ok(n > 0)
    }

    fn policy_fired(&self, name: &str, previous: Option<i64>, time: i64) -> Result<bool, DbError> {
        let n = self.with(|c| {
            Ok(c.execute(
                "UPDATE policies SET last_fired = $2
                 WHERE name = $1 AND last_fired IS NOT DISTINCT FROM $3",
                &[&name, &time, &previous],
            )?)
        })?;
        Ok(n > 0)
    }

    fn tag(&self, target: &str, tags: &[String]) -> Result<(), DbError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            for t in tags {
                tx.execute(
                    "INSERT INTO vm_tags (target, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&target, t],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn untag(&self, target: &str, tags: &[String]) -> Result<(), DbError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            for t in tags {
                tx.execute(
                    "DELETE FROM vm_tags WHERE target = $1 AND tag = $2",
                    &[&target, t],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn tags(&self) -> Result<Vec<(String, Vec<String>)>, DbError> {
        let rows = self.with(|c| {
            let rows = c.query("SELECT target, tag FROM vm_tags ORDER BY target, tag", &[])?;
            rows.iter()
                .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
                .collect::<Result<Vec<_>, Step>>()
        })?;
        Ok(super::records::grouped_tags(rows))
    }

    fn last_results(&self) -> Result<Vec<LastResult>, DbError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT target, job, status, finished, policy, snapshot, error FROM last_results ORDER BY target",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(LastResult {
                        target: r.try_get(0)?,
                        job: r.try_get(1)?,
                        status: r.try_get(2)?,
                        finished: r.try_get(3)?,
                        policy: r.try_get(4)?,
                        snapshot: r.try_get(5)?,
                        error: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}
