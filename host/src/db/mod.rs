//! The server's state database: jobs and their history, backup policies,
//! VM tags and the last result per VM, so that they outlive a server.
//!
//! Everything goes through the [`StateStore`] trait, and every command and
//! the server open it through [`open`], which picks the backend:
//! [`sqlite::Sqlite`] (`state.db` in the state directory, WAL, every write
//! one transaction) by default, or [`postgres::Postgres`] when
//! `--state-db` (ATTACHE_STATE_DB) names a PostgreSQL server, for several
//! servers sharing one state. The trait speaks in records, not SQL; each
//! backend has its own numbered schema migrations, and both pass the same
//! contract tests (`contract.rs`).

mod advisory;
pub(crate) mod cluster;
/// Test-only (`#![cfg(test)]`): the suite every backend passes.
mod contract;
mod hypervisors;
pub(crate) mod owner;
pub(crate) mod postgres;
pub(crate) mod postgres_schema;
pub(crate) mod records;
pub(crate) mod redact;
pub(crate) mod schema;
pub(crate) mod sqlite;
/// Test-only (`#![cfg(test)]`): a throwaway PostgreSQL.
pub(crate) mod test_pg;

pub(crate) use records::{JobFilter, JobRecord, LastResult, PolicyRecord};

/// Why the state database failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database {path}: {why}")]
    Format { path: String, why: String },
    /// Tables are there but no mark of Attaché's: another application's
    /// database, left alone.
    #[error("state database {place}: has tables but is not an Attaché state database; refusing to touch it")]
    Foreign { place: String },
    /// Written by a newer Attaché: its schema is not guessed at.
    #[error("state database {place}: schema version {version} is newer than this attache knows ({known}): use a newer attache")]
    Newer {
        place: String,
        version: i64,
        known: i64,
    },
    /// `--state-db` is not a PostgreSQL URL this Attaché understands.
    #[error("--state-db {url}: {why}")]
    Url { url: String, why: String },
    /// The PostgreSQL server could not be reached (refused, unresolvable,
    /// timed out, closed).
    #[error("cannot connect to the state database {url}: {source}")]
    Unreachable {
        /// The URL with its password redacted.
        url: String,
        #[source]
        source: ::postgres::Error,
    },
    /// The PostgreSQL server refused the user or its password.
    #[error("the state database {url} refused the login (wrong user or password; the password comes from the URL or PGPASSWORD): {source}")]
    Auth {
        url: String,
        #[source]
        source: ::postgres::Error,
    },
    /// Any other PostgreSQL failure.
    #[error("state database {url}: {source}")]
    Postgres {
        url: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("{0} already exists")]
    Conflict(String),
    #[error("a stored {what} does not parse: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the state database's lock is poisoned")]
    Poisoned,
}

/// What the server and the commands keep across restarts.
pub(crate) trait StateStore: Send + Sync {
    /// Writes a job as it is now (inserted or replaced); a finished job
    /// also becomes its target's last result, in the same transaction.
    fn record_job(&self, job: &JobRecord) -> Result<(), DbError>;
    /// One job by id.
    fn job(&self, id: &str) -> Result<Option<JobRecord>, DbError>;
    /// Jobs matching `filter`, newest first.
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, DbError>;
    /// Marks every job still queued or running whose owning queue is not
    /// `alive` (a server died under it) `interrupted`, ended at `now`;
    /// their ids, oldest first.
    fn interrupt_unfinished(
        &self,
        now: i64,
        alive: &(dyn Fn(Option<&str>) -> bool + Sync),
    ) -> Result<Vec<String>, DbError>;

    /// Adds a policy; [`DbError::Conflict`] when its name is taken.
    fn add_policy(&self, p: &PolicyRecord) -> Result<(), DbError>;
    fn policy(&self, name: &str) -> Result<Option<PolicyRecord>, DbError>;
    /// Every policy, by name.
    fn policies(&self) -> Result<Vec<PolicyRecord>, DbError>;
    /// Removes a policy; whether there was one.
    fn remove_policy(&self, name: &str) -> Result<bool, DbError>;
    /// Records that the schedule of `name` fired at `time`, if its last
    /// firing is still `previous`; whether it was recorded. Several
    /// servers sharing one state database each see a schedule fall due:
    /// the one whose record goes in runs it, the others do not.
    fn policy_fired(&self, name: &str, previous: Option<i64>, time: i64) -> Result<bool, DbError>;

    /// Adds tags to a VM (`HV/VM`); tags it has already are kept once.
    fn tag(&self, target: &str, tags: &[String]) -> Result<(), DbError>;
    /// Removes tags from a VM.
    fn untag(&self, target: &str, tags: &[String]) -> Result<(), DbError>;
    /// Every tagged VM with its tags, by VM.
    fn tags(&self) -> Result<Vec<(String, Vec<String>)>, DbError>;

    /// The last finished job of each target, by target.
    fn last_results(&self) -> Result<Vec<LastResult>, DbError>;
}

/// The state database: the PostgreSQL server of `url` when given
/// (`--state-db`, ATTACHE_STATE_DB), else `state.db` in the state
/// directory `dir`. The one place that picks a backend.
pub(crate) fn open(
    dir: &std::path::Path,
    url: Option<&str>,
) -> Result<std::sync::Arc<dyn StateStore>, DbError> {
    Ok(match url.filter(|u| !u.is_empty()) {
        Some(url) => std::sync::Arc::new(postgres::Postgres::open(url)?),
        None => std::sync::Arc::new(sqlite::Sqlite::open(dir)?),
    })
}

/// Whether the state database is shared with other servers (not in this
/// state directory): then a queue that has no lock file here is another
/// server's, and this one cannot tell that it died (`owner::alive`).
pub(crate) fn shared(url: Option<&str>) -> bool {
    url.is_some_and(|u| !u.is_empty())
}
