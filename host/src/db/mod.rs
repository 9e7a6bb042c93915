//! The server's state database: jobs and their history, backup policies,
//! VM tags and the last result per VM, so that they outlive a server.
//!
//! Everything goes through the [`StateStore`] trait; [`sqlite::Sqlite`]
//! (`state.db` in the state directory, WAL, every write one transaction)
//! is the one backend so far. The trait speaks in records, not SQL, so
//! that another backend (PostgreSQL for several servers) can implement the
//! same calls with its own schema migrations.

pub(crate) mod owner;
pub(crate) mod records;
pub(crate) mod schema;
pub(crate) mod sqlite;

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
    /// their ids.
    fn interrupt_unfinished(
        &self,
        now: i64,
        alive: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Vec<String>, DbError>;

    /// Adds a policy; [`DbError::Conflict`] when its name is taken.
    fn add_policy(&self, p: &PolicyRecord) -> Result<(), DbError>;
    fn policy(&self, name: &str) -> Result<Option<PolicyRecord>, DbError>;
    /// Every policy, by name.
    fn policies(&self) -> Result<Vec<PolicyRecord>, DbError>;
    /// Removes a policy; whether there was one.
    fn remove_policy(&self, name: &str) -> Result<bool, DbError>;
    /// Records that the schedule of `name` fired at `time`.
    fn policy_fired(&self, name: &str, time: i64) -> Result<(), DbError>;

    /// Adds tags to a VM (`HV/VM`); tags it has already are kept once.
    fn tag(&self, target: &str, tags: &[String]) -> Result<(), DbError>;
    /// Removes tags from a VM.
    fn untag(&self, target: &str, tags: &[String]) -> Result<(), DbError>;
    /// Every tagged VM with its tags, by VM.
    fn tags(&self) -> Result<Vec<(String, Vec<String>)>, DbError>;

    /// The last finished job of each target, by target.
    fn last_results(&self) -> Result<Vec<LastResult>, DbError>;
}

/// The state database of the state directory `dir`.
pub(crate) fn open(dir: &std::path::Path) -> Result<std::sync::Arc<dyn StateStore>, DbError> {
    Ok(std::sync::Arc::new(sqlite::Sqlite::open(dir)?))
}
