//! The PostgreSQL schema of the state database, as numbered migrations.
//!
//! The table `attache_state` marks the database (or rather the schema the
//! connection works in, `current_schema()`) as Attaché's and holds the
//! version it is at; it is made only in a schema that has no tables, so
//! another application's database is never taken over. Migrations run at
//! open, all in one transaction under a transaction-scoped advisory lock,
//! so that servers starting together migrate once, one after the other.
//!
//! Text columns are `COLLATE "C"`: bytewise, as SQLite compares, so that
//! every `ORDER BY` gives the SQLite backend's order whatever the
//! database's locale. JSON is kept as the text SQLite keeps, read back
//! exactly as written. `jobs.seq` orders jobs created in the same second
//! by when they were last written, as SQLite's `rowid` does under `INSERT
//! OR REPLACE`.
//!
//! Migration 2 is the workers' (`cluster.rs`): the `workers` table (one
//! row a live `attache serve`, its heartbeat on the database's clock), the
//! jobs' `worker` (who claimed it), `payload` (the request a worker needs
//! to run a job posted to another one; never a password) and `pinned` (a
//! job only that worker may run), and the attachment journal.
//!
//! Migration 3 is the hypervisor registry (`hypervisors.rs`): each
//! registered hypervisor's definition as the JSON `hypervisors.json`
//! holds in a state directory.

/// What `attache_state.application` says in an Attaché state database.
pub(crate) const APPLICATION: &str = "attache-state";

/// The key of the advisory lock migrations take (`ATTC`).
pub(crate) const MIGRATION_LOCK: i64 = 0x4154_5443;

/// Made first, in an empty schema: the mark and the version.
pub(crate) const MARK: &str = "CREATE TABLE attache_state (
    application TEXT NOT NULL,
    version BIGINT NOT NULL
)";

/// Migration `n` (from 0) brings version `n` to `n + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: jobs, policies, tags, last results.
    r#"CREATE SEQUENCE jobs_seq;
    CREATE TABLE jobs (
        id TEXT COLLATE "C" PRIMARY KEY,
        kind TEXT COLLATE "C" NOT NULL,
        target TEXT COLLATE "C" NOT NULL,
        hypervisor TEXT COLLATE "C",
        policy TEXT COLLATE "C",
        status TEXT COLLATE "C" NOT NULL,
        request TEXT NOT NULL,
        result TEXT,
        error TEXT,
        snapshot TEXT COLLATE "C",
        created BIGINT NOT NULL,
        started BIGINT,
        finished BIGINT,
        owner TEXT COLLATE "C",
        seq BIGINT NOT NULL DEFAULT nextval('jobs_seq')
    );
    CREATE INDEX jobs_policy ON jobs(policy);
    CREATE INDEX jobs_target ON jobs(target);
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_order ON jobs(created DESC, seq DESC);
    CREATE TABLE policies (
        name TEXT COLLATE "C" PRIMARY KEY,
        definition TEXT NOT NULL,
        created BIGINT NOT NULL,
        last_fired BIGINT
    );
    CREATE TABLE vm_tags (
        target TEXT COLLATE "C" NOT NULL,
        tag TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (target, tag)
    );
    CREATE TABLE last_results (
        target TEXT COLLATE "C" PRIMARY KEY,
        job TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL,
        finished BIGINT NOT NULL,
        policy TEXT COLLATE "C",
        snapshot TEXT COLLATE "C",
        error TEXT
    );"#,
    // 2: workers, claiming, the shared attachment journal.
    r#"CREATE TABLE workers (
        id TEXT COLLATE "C" PRIMARY KEY,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        started BIGINT NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    ALTER TABLE jobs ADD COLUMN worker TEXT COLLATE "C";
    ALTER TABLE jobs ADD COLUMN payload TEXT;
    ALTER TABLE jobs ADD COLUMN pinned TEXT COLLATE "C";
    CREATE INDEX jobs_worker ON jobs(worker);
    CREATE INDEX jobs_queued ON jobs(created, seq) WHERE status = 'queued';
    CREATE TABLE journal (
        session TEXT COLLATE "C" PRIMARY KEY,
        worker TEXT COLLATE "C" NOT NULL,
        vm TEXT COLLATE "C" NOT NULL,
        entry TEXT NOT NULL
    );
    CREATE INDEX journal_worker ON journal(worker);"#,
    // 3: the hypervisor registry, shared by the workers.
    r#"CREATE TABLE hypervisors (
        name TEXT COLLATE "C" PRIMARY KEY,
        definition TEXT NOT NULL,
        added BIGINT NOT NULL
    );"#,
];
