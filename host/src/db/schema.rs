//! The SQLite schema of the state database, as numbered migrations: a
//! database is at the version of `PRAGMA user_version` and is brought up
//! to [`MIGRATIONS`]`.len()` when opened, each step in one transaction.
//! A database newer than this Attaché is refused, not guessed at.
//! `PRAGMA application_id` marks the file as Attaché's.

/// `ATTC`: what `application_id` says in an Attaché state database.
pub(crate) const APPLICATION_ID: i32 = 0x4154_5443;

/// Migration `n` (from 0) brings version `n` to `n + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: jobs, policies, tags, last results.
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        hypervisor TEXT,
        policy TEXT,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        result TEXT,
        error TEXT,
        snapshot TEXT,
        created INTEGER NOT NULL,
        started INTEGER,
        finished INTEGER,
        owner TEXT
    );
    CREATE INDEX jobs_policy ON jobs(policy);
    CREATE INDEX jobs_target ON jobs(target);
    CREATE INDEX jobs_status ON jobs(status);
    CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_fired INTEGER
    );
    CREATE TABLE vm_tags (
        target TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (target, tag)
    );
    CREATE TABLE last_results (
        target TEXT PRIMARY KEY,
        job TEXT NOT NULL,
        status TEXT NOT NULL,
        finished INTEGER NOT NULL,
        policy TEXT,
        snapshot TEXT,
        error TEXT
    );",
];
