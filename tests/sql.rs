//! The SQL plugin through the real `attache` CLI: consistent backups of
//! PostgreSQL databases and SQLite files while writers keep committing,
//! restores into another database, table or path and in place, and errors
//! that leave the repository and the database as they were.
//!
//! PostgreSQL runs as a throwaway cluster (`tests/sql/pg-cluster.sh`, one per
//! test); the database password reaches attache through
//! `ATTACHE_APP_PASSWORD` or `--app-password-file`, never its command line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use attache_tests::pg::Pg;
use attache_tests::server::{free_port, Served};
use attache_tests::{attache, fails, listing, ok, snapshots};
use serde_json::Value;

/// A repository in a temporary directory, and a PostgreSQL cluster if any.
struct Site {
    t: tempfile::TempDir,
    repo: PathBuf,
}

impl Site {
    fn new() -> Self {
        let t = tempfile::Builder::new()
            .prefix("sql")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let repo = t.path().join("repo");
        ok(attache(&repo).arg("init"));
        Site { t, repo }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    /// `attache` on the repository with `password` as the database's
    /// password (in the environment), or none.
    fn attache(&self, password: Option<&str>) -> Command {
        let mut c = attache(&self.repo);
        c.env_remove("ATTACHE_APP_PASSWORD");
        if let Some(p) = password {
            c.env("ATTACHE_APP_PASSWORD", p);
        }
        c
    }

    /// `attache backup local --plugin sql --include ID --json`.
    fn backup_cmd(&self, password: Option<&str>, id: &str) -> Command {
        let mut c = self.attache(password);
        c.args([
            "backup",
            "local",
            "--plugin",
            "sql",
            "--json",
            "--include",
            id,
        ]);
        c
    }

    fn backup(&self, password: Option<&str>, id: &str) -> Value {
        let out = ok(&mut self.backup_cmd(password, id));
        serde_json::from_str(&out).expect("backup --json prints JSON")
    }

    /// `attache restore SNAP --item ID [--as NEW] --to local [EXTRA…]`.
    fn restore_cmd(
        &self,
        password: Option<&str>,
        snap: &str,
        item: &str,
        rename: Option<&str>,
        extra: &[&str],
    ) -> Command {
        let mut c = self.attache(password);
        c.args(["restore", snap, "--item", item, "--to", "local"]);
        if let Some(n) = rename {
            c.args(["--as", n]);
        }
        c.args(extra);
        c
    }

    fn snapshot_count(&self) -> usize {
        snapshots(&self.repo).len()
    }

    /// What is in the repository directory (locks aside, which come and go).
    fn repo_files(&self) -> Vec<PathBuf> {
        listing(&self.repo)
            .into_iter()
            .filter(|p| !p.starts_with("locks/"))
            .collect()
    }
}

/// A background process of the test's (a writer), killed if the test
/// panics before it is stopped.
struct Background(Option<Child>);

impl Background {
    fn take(mut self) -> Child {
        self.0.take().expect("still running")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn id_of(report: &Value) -> String {
    report["id"]
        .as_str()
        .expect("backup report has an id")
        .to_owned()
}

/// Item ids of snapshot `snap`, from `attache ls --json`.
fn items(site: &Site, snap: &str) -> Vec<(String, String)> {
    let out = ok(site.attache(None).args(["ls", snap, "--json"]));
    let v: Vec<Value> = serde_json::from_str(&out).expect("ls --json prints JSON");
    v.iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_owned(),
                i["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// PostgreSQL

const ACCOUNTS: i64 = 100;
const START_BALANCE: i64 = 1_000_000;

/// Database `shop`: `accounts`, `ledger` (each transfer: one row, with
/// foreign keys to accounts) and `counter` (one row: the number of ledger
/// rows), `ledger_rows` rows already in; and `customers`, static, with a
/// few kinds of constraints and awkward values.
/// A repository, a cluster with the `shop` database of `ledger_rows`
/// ledger rows, and its password.
fn shop(ledger_rows: u64) -> (Site, Pg, String) {
    let site = Site::new();
    let pg = Pg::start();
    create_shop(&pg, ledger_rows);
    let pw = pg.password.clone();
    (site, pg, pw)
}

fn create_shop(pg: &Pg, ledger_rows: u64) {
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        &format!(
            "CREATE TABLE public.accounts (id integer PRIMARY KEY, balance bigint NOT NULL CHECK (balance > -1000000000));
             CREATE TABLE public.ledger (
                 id bigserial PRIMARY KEY,
                 src integer NOT NULL REFERENCES public.accounts(id),
                 dst integer NOT NULL REFERENCES public.accounts(id),
                 amount bigint NOT NULL CHECK (amount >= 0),
                 at timestamptz NOT NULL DEFAULT now(),
                 pad text);
             CREATE INDEX ledger_src_dst ON public.ledger (src, dst);
             CREATE TABLE public.counter (id integer PRIMARY KEY CHECK (id = 1), n bigint NOT NULL);
             CREATE TABLE public.customers (
                 id serial PRIMARY KEY,
                 name text NOT NULL,
                 email text UNIQUE,
                 note text,
                 joined date DEFAULT '2020-01-01');
             INSERT INTO public.accounts SELECT g, {START_BALANCE} FROM generate_series(1, {ACCOUNTS}) g;
             INSERT INTO public.ledger (src, dst, amount, at, pad)
                 SELECT 1 + g % {ACCOUNTS}, 1 + (g * 7) % {ACCOUNTS}, 0, '2024-01-01'::timestamptz + g * interval '1 second', repeat('p', 100)
                 FROM generate_series(1, {ledger_rows}) g;
             INSERT INTO public.counter VALUES (1, {ledger_rows});
             INSERT INTO public.customers (name, email, note)
                 SELECT 'customer ' || g, 'c' || g || '@example.org',
                        CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN E'tab\\there, newline\\nthere' WHEN 2 THEN E'back\\\\slash ünïcödé' ELSE '\\.' END
                 FROM generate_series(1, 2000) g;"
        ),
    );
}

/// Whether the invariants across the tables of `db` hold: the balances sum
/// to the constant, each balance is what its ledger rows make it, and the
/// counter equals the number of ledger rows. Also returns that number.
fn shop_invariant(pg: &Pg, db: &str) -> (bool, bool, bool, i64) {
    let out = pg.psql(
        db,
        &format!(
            "SELECT (SELECT sum(balance) FROM public.accounts) = {ACCOUNTS} * {START_BALANCE},
                    NOT EXISTS (SELECT 1 FROM public.accounts a
                                WHERE a.balance <> {START_BALANCE}
                                      - coalesce((SELECT sum(amount) FROM public.ledger WHERE src = a.id), 0)
                                      + coalesce((SELECT sum(amount) FROM public.ledger WHERE dst = a.id), 0)),
                    (SELECT n FROM public.counter) = (SELECT count(*) FROM public.ledger),
                    (SELECT count(*) FROM public.ledger)"
        ),
    );
    let f: Vec<&str> = out.split('|').collect();
    assert_eq!(f.len(), 4, "{out}");
    (
        f[0] == "t",
        f[1] == "t",
        f[2] == "t",
        f[3].parse().expect("count"),
    )
}

fn ledger_count(pg: &Pg, db: &str) -> i64 {
    pg.psql(db, "SELECT count(*) FROM public.ledger")
        .parse()
        .expect("count")
}

/// Constraints and indexes of the user tables of `db`, one per line.
fn definitions(pg: &Pg, db: &str) -> String {
    pg.psql(
        db,
        "SELECT string_agg(d, E'\\n' ORDER BY d) FROM (
             SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS d
                 FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype <> 'n'
             UNION ALL
             SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
             UNION ALL
             SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
                 FROM information_schema.columns WHERE table_schema = 'public') s",
    )
}

/// Concurrent transfers in `shop`: `clients` pgbench clients, each
/// transaction moving money between two accounts, adding its ledger row and
/// counting it, until killed (or `secs` have passed).
fn start_writers(pg: &Pg, dir: &Path, clients: u32, secs: u32) -> Background {
    let script = dir.join("transfer.sql");
    // The counter row first: it orders the transactions, so the account
    // updates cannot deadlock.
    fs::write(
        &script,
        "\\set a random(1, 100)\n\
         \\set b random(1, 100)\n\
         \\set x random(1, 500)\n\
         BEGIN;\n\
         UPDATE public.counter SET n = n + 1 WHERE id = 1;\n\
         UPDATE public.accounts SET balance = balance - :x WHERE id = :a;\n\
         INSERT INTO public.ledger (src, dst, amount, pad) VALUES (:a, :b, :x, repeat('w', 50));\n\
         UPDATE public.accounts SET balance = balance + :x WHERE id = :b;\n\
         COMMIT;\n",
    )
    .expect("write pgbench script");
    Background(Some(
        pg.client("pgbench", "shop")
            .args([
                "-n",
                "-c",
                &clients.to_string(),
                "-T",
                &secs.to_string(),
                "-f",
            ])
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbench"),
    ))
}

/// Stops pgbench and checks it had not failed on its own.
fn stop_writers(w: Background) {
    let mut w = w.take();
    if let Some(status) = w.try_wait().expect("try_wait") {
        let out = w.wait_with_output().expect("pgbench output");
        panic!(
            "the writers ended before the backup did ({status}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w.kill().expect("kill pgbench");
    w.wait().expect("wait pgbench");
}

#[test]
fn postgres_backup_under_concurrent_writers_restores_one_instant_into_a_new_database() {
    let (site, pg, pw) = shop(150_000);
    assert_eq!(shop_invariant(&pg, "shop"), (true, true, true, 150_000));
    let shop = pg.url("shop");
    let copy = pg.url("shop_copy");

    let writers = start_writers(&pg, site.t.path(), 2, 120);
    sleep(Duration::from_millis(1500));
    let before = ledger_count(&pg, "shop");
    assert!(
        before > 150_000,
        "the writers made no progress before the backup"
    );
    let report = site.backup(Some(&pw), &shop);
    let after = ledger_count(&pg, "shop");
    stop_writers(writers);
    assert!(
        after > before,
        "the writers made no progress during the backup ({before} -> {after})"
    );
    let snap = id_of(&report);
    // The database and its four tables.
    assert_eq!(report["items"], 5, "{report}");
    let ids = items(&site, &snap);
    for t in ["accounts", "ledger", "counter", "customers"] {
        let want = format!("{shop}/public.{t}");
        assert!(
            ids.iter().any(|(i, k)| *i == want && k == "table"),
            "{want} not in {ids:?}"
        );
    }
    assert!(
        ids.iter().any(|(i, k)| *i == shop && k == "database"),
        "{ids:?}"
    );
    // The password is kept nowhere in the repository.
    for p in listing(&site.repo) {
        let f = site.repo.join(&p);
        if f.is_file() {
            let bytes = fs::read(&f).expect("read");
            assert!(
                !bytes.windows(pw.len()).any(|w| w == pw.as_bytes()),
                "{} holds the database password",
                p.display()
            );
        }
    }

    let out = ok(&mut site.restore_cmd(Some(&pw), &snap, &shop, Some(&copy), &[]));
    assert!(out.contains("restored"), "{out}");
    let (sum_ok, balances_ok, counter_ok, rows) = shop_invariant(&pg, "shop_copy");
    assert!(
        sum_ok,
        "the balances of the restored database do not sum to the constant"
    );
    assert!(
        balances_ok,
        "restored balances and ledger disagree: not one instant"
    );
    assert!(
        counter_ok,
        "restored counter and ledger row count disagree: not one instant"
    );
    assert!(
        (before..=after).contains(&rows),
        "restored ledger has {rows} rows, not between {before} (before the backup) and {after} (after it)"
    );
    // The live database kept its invariant too, and kept going.
    assert!(matches!(shop_invariant(&pg, "shop"), (true, true, true, _)));
    // The static table is identical; schemas, constraints and indexes too.
    assert_eq!(
        pg.checksum("shop", "public.customers"),
        pg.checksum("shop_copy", "public.customers")
    );
    assert_eq!(definitions(&pg, "shop"), definitions(&pg, "shop_copy"));
    // Sequences continue past the restored rows.
    pg.psql(
        "shop_copy",
        "INSERT INTO public.ledger (src, dst, amount) VALUES (1, 2, 0);
         INSERT INTO public.customers (name) VALUES ('new')",
    );
    assert_eq!(
        pg.psql("shop_copy", "SELECT max(id) FROM public.customers"),
        "2001"
    );
    eprintln!("ledger rows: {before} before the backup, {after} after it, {rows} restored");
}

#[test]
fn postgres_restores_one_dropped_table_into_the_live_database() {
    let (site, pg, pw) = shop(20_000);
    let shop = pg.url("shop");
    let ledger = pg.url("shop/public.ledger");
    // Some real transfers, then the writers have stopped.
    let w = start_writers(&pg, site.t.path(), 2, 2).take();
    let out = w.wait_with_output().expect("pgbench");
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ledger_count(&pg, "shop") > 20_000);

    // The password from a file this time.
    let pwfile = site.path("db-password");
    fs::write(&pwfile, format!("{pw}\n")).expect("write password file");
    let mut c = site.backup_cmd(None, &shop);
    c.arg("--app-password-file").arg(&pwfile);
    let report: Value = serde_json::from_str(&ok(&mut c)).expect("JSON");
    let snap = id_of(&report);

    let others = |pg: &Pg| {
        ["public.accounts", "public.counter", "public.customers"].map(|t| pg.checksum("shop", t))
    };
    let others_before = others(&pg);
    let ledger_sum = pg.checksum("shop", "public.ledger");
    let defs = definitions(&pg, "shop");

    pg.psql("shop", "DROP TABLE public.ledger");
    assert_eq!(
        pg.psql("shop", "SELECT to_regclass('public.ledger') IS NULL"),
        "t"
    );
    let mut c = site.restore_cmd(None, &snap, &ledger, None, &[]);
    c.arg("--app-password-file").arg(&pwfile);
    ok(&mut c);
    assert_eq!(
        pg.checksum("shop", "public.ledger"),
        ledger_sum,
        "ledger came back different"
    );
    assert_eq!(
        definitions(&pg, "shop"),
        defs,
        "constraints, indexes or columns differ"
    );
    assert_eq!(
        others(&pg),
        others_before,
        "the restore of ledger touched other tables"
    );
    assert!(matches!(shop_invariant(&pg, "shop"), (true, true, true, _)));
    // Its foreign keys work again.
    let bad = pg
        .client("psql", "shop")
        .args([
            "-qAtX",
            "-c",
            "INSERT INTO public.ledger (src, dst, amount) VALUES (1, 999, 1)",
        ])
        .output()
        .expect("psql");
    assert!(
        !bad.status.success(),
        "the foreign key to accounts was not restored"
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("foreign key"),
        "{bad:?}"
    );

    // Over an existing table without --overwrite: refused, nothing changed.
    pg.psql("shop", "DELETE FROM public.ledger WHERE id % 3 = 0");
    let changed = pg.checksum("shop", "public.ledger");
    assert_ne!(changed, ledger_sum);
    let err = fails(&mut site.restore_cmd(Some(&pw), &snap, &ledger, None, &[]));
    assert!(
        err.contains("public.ledger already exists"),
        "unclear error: {err}"
    );
    assert_eq!(
        pg.checksum("shop", "public.ledger"),
        changed,
        "a refused restore changed ledger"
    );
    assert_eq!(others(&pg), others_before);
    assert_eq!(definitions(&pg, "shop"), defs);

    // With --overwrite it is replaced by the backed-up content.
    ok(&mut site.restore_cmd(Some(&pw), &snap, &ledger, None, &["--overwrite"]));
    assert_eq!(pg.checksum("shop", "public.ledger"), ledger_sum);
    assert_eq!(definitions(&pg, "shop"), defs);
    assert_eq!(others(&pg), others_before);

    // The same table under another name beside it.
    let copy = pg.url("shop/public.ledger_copy");
    ok(&mut site.restore_cmd(Some(&pw), &snap, &ledger, Some(&copy), &[]));
    assert_eq!(pg.checksum("shop", "public.ledger_copy"), ledger_sum);
    assert_eq!(pg.checksum("shop", "public.ledger"), ledger_sum);
}

#[test]
fn postgres_errors_leave_repository_and_database_unchanged() {
    let (site, pg, pw) = shop(5_000);
    let shop = pg.url("shop");
    let ledger = pg.url("shop/public.ledger");
    let snap = id_of(&site.backup(Some(&pw), &shop));

    let state = |pg: &Pg| {
        [
            "public.accounts",
            "public.ledger",
            "public.counter",
            "public.customers",
        ]
        .map(|t| pg.checksum("shop", t))
    };
    let db_before = state(&pg);
    let files_before = site.repo_files();
    let check_unchanged = |what: &str| {
        assert_eq!(site.snapshot_count(), 1, "{what}: a snapshot was added");
        assert_eq!(
            site.repo_files(),
            files_before,
            "{what}: the repository changed"
        );
        assert_eq!(state(&pg), db_before, "{what}: the database changed");
    };

    // A wrong password.
    let err = fails(&mut site.backup_cmd(Some("not-the-password"), &shop));
    assert!(
        err.contains("password authentication failed"),
        "unclear error: {err}"
    );
    assert!(err.contains("wrong password"), "unclear error: {err}");
    assert!(!err.contains(&pw), "the error shows the password: {err}");
    check_unchanged("wrong password");

    // No password at all.
    let err = fails(&mut site.backup_cmd(None, &shop));
    assert!(err.contains("asks a password"), "unclear error: {err}");
    check_unchanged("no password");

    // Nothing listens at the port.
    let dead = free_port();
    let dead_shop = format!("postgresql://postgres@127.0.0.1:{dead}/shop");
    let err = fails(&mut site.backup_cmd(Some(&pw), &dead_shop));
    assert!(
        err.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{dead}"))
            && err.contains("connection refused"),
        "unclear error: {err}"
    );
    check_unchanged("unreachable server");

    // A table that does not exist.
    let err = fails(&mut site.backup_cmd(Some(&pw), &pg.url("shop/public.nosuch")));
    assert!(
        err.contains("table public.nosuch does not exist"),
        "unclear error: {err}"
    );
    check_unchanged("missing table");

    // A database that does not exist.
    let err = fails(&mut site.backup_cmd(Some(&pw), &pg.url("nosuchdb")));
    assert!(err.contains("nosuchdb"), "unclear error: {err}");
    check_unchanged("missing database");

    // Restores with a wrong password: over the live table with --overwrite,
    // and into a new database; neither changes anything.
    pg.psql("shop", "DELETE FROM public.customers WHERE id > 1000");
    let db_before = state(&pg);
    let err = fails(&mut site.restore_cmd(
        Some("not-the-password"),
        &snap,
        &pg.url("shop/public.customers"),
        None,
        &["--overwrite"],
    ));
    assert!(
        err.contains("password authentication failed"),
        "unclear error: {err}"
    );
    assert_eq!(
        state(&pg),
        db_before,
        "a restore with a wrong password changed the database"
    );
    let err = fails(&mut site.restore_cmd(
        Some("not-the-password"),
        &snap,
        &shop,
        Some(&pg.url("shop_new")),
        &[],
    ));
    assert!(
        err.contains("password authentication failed"),
        "unclear error: {err}"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'shop_new'"
        ),
        "0",
        "a failed restore left a database behind"
    );
    // A restore of an item the snapshot does not hold.
    let err =
        fails(&mut site.restore_cmd(Some(&pw), &snap, &pg.url("shop/public.nosuch"), None, &[]));
    assert!(err.contains("public.nosuch"), "unclear error: {err}");
    assert_eq!(state(&pg), db_before);
    assert_eq!(site.snapshot_count(), 1);
    // And the snapshot still restores with the right password.
    ok(&mut site.restore_cmd(
        Some(&pw),
        &snap,
        &ledger,
        Some(&pg.url("shop/public.ledger2")),
        &[],
    ));
    assert_eq!(
        pg.checksum("shop", "public.ledger2"),
        pg.checksum("shop", "public.ledger")
    );
}

#[test]
fn postgres_restore_below_a_directory_leaves_the_live_database_alone() {
    // `--to local:DIR` puts items below DIR; a PostgreSQL item has no place
    // there, so it must not land in the live database instead (above all
    // not with --overwrite): refused, nothing changed.
    let (site, pg, pw) = shop(1_000);
    let snap = id_of(&site.backup(Some(&pw), &pg.url("shop")));
    pg.psql("shop", "UPDATE public.accounts SET balance = 5");
    let live = pg.checksum("shop", "public.accounts");
    let dir = site.path("elsewhere");
    let to = format!("local:{}", dir.display());
    let mut c = site.attache(Some(&pw));
    c.args([
        "restore",
        &snap,
        "--item",
        &pg.url("shop/public.accounts"),
        "--to",
        &to,
        "--overwrite",
    ]);
    let o = attache_tests::output(&mut c);
    let after = pg.checksum("shop", "public.accounts");
    assert_eq!(
        after,
        live,
        "`attache restore {snap} --item {} --to {to} --overwrite` replaced the live table (exit {}, stdout: {})",
        pg.url("shop/public.accounts"),
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "not refused: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `attache serve` on `repo`, killed when dropped.
struct Server {
    _served: Served,
    url: String,
}

const TOKEN: &str = "sql-test-token-0123456789";

fn serve(repo: &Path) -> Server {
    let served = Served::start(repo, TOKEN, &[]);
    Server {
        url: served.url.clone(),
        _served: served,
    }
}

#[test]
fn postgres_errors_through_the_server_name_their_cause() {
    // Through `attache serve` the runner's stderr is not the client's: the
    // job's error itself must say what went wrong.
    let (site, pg, pw) = shop(1_000);
    let snap = id_of(&site.backup(Some(&pw), &pg.url("shop")));
    let server = serve(&site.repo);
    let via = |password: &str| {
        let mut c = site.attache(Some(password));
        c.env("ATTACHE_TOKEN", TOKEN)
            .arg("--server")
            .arg(&server.url);
        c
    };
    let mut c = via("not-the-password");
    c.args([
        "backup",
        "local",
        "--plugin",
        "sql",
        "--include",
        &pg.url("shop"),
    ]);
    let err = fails(&mut c);
    assert!(
        err.contains("password authentication failed"),
        "the backup job's error does not name its cause: {err}"
    );
    let mut c = via("not-the-password");
    c.args([
        "restore",
        &snap,
        "--item",
        &pg.url("shop/public.accounts"),
        "--to",
        "local",
        "--overwrite",
    ]);
    let err = fails(&mut c);
    assert!(
        err.contains("password authentication failed"),
        "the restore job's error does not name its cause: {err}"
    );
    assert_eq!(site.snapshot_count(), 1);
}

// ---------------------------------------------------------------------------
// SQLite

/// Prints `INTEGRITY|TXN|LEDGER_ROWS|SUM|JOURNAL_MODE` of a database.
const SQLITE_CHECK: &str = r#"
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
ok = db.execute("PRAGMA integrity_check").fetchone()[0]
txn = db.execute("SELECT v FROM meta WHERE k = 'txn'").fetchone()[0]
rows = db.execute("SELECT count(*) FROM ledger").fetchone()[0]
total = db.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
mode = db.execute("PRAGMA journal_mode").fetchone()[0]
print(f"{ok}|{txn}|{rows}|{total}|{mode}")
"#;

struct SqliteState {
    integrity: String,
    txn: i64,
    rows: i64,
    sum: i64,
    mode: String,
}

fn sqlite_state(db: &Path) -> SqliteState {
    let out = ok(Command::new("python3").args(["-c", SQLITE_CHECK]).arg(db));
    let f: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(f.len(), 5, "{out}");
    SqliteState {
        integrity: f[0].into(),
        txn: f[1].parse().expect("txn"),
        rows: f[2].parse().expect("rows"),
        sum: f[3].parse().expect("sum"),
        mode: f[4].into(),
    }
}

/// The committed transactions of a live database (read through SQLite).
fn sqlite_txn(db: &Path) -> i64 {
    let out = ok(Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=30).execute(\"SELECT v FROM meta\").fetchone()[0])",
        ])
        .arg(db));
    out.trim().parse().expect("txn")
}

fn assert_one_committed_state(db: &Path, range: std::ops::RangeInclusive<i64>) {
    let s = sqlite_state(db);
    assert_eq!(s.integrity, "ok", "{}: integrity_check", db.display());
    assert_eq!(
        s.txn,
        s.rows,
        "{}: counter and ledger rows disagree: not one committed state",
        db.display()
    );
    assert_eq!(
        s.sum,
        100 * 1_000_000,
        "{}: balances do not sum to the constant",
        db.display()
    );
    assert!(
        range.contains(&s.txn),
        "{}: {} transactions, not within {range:?}",
        db.display(),
        s.txn
    );
}

#[test]
fn sqlite_backup_under_a_concurrent_writer_restores_one_committed_state() {
    let site = Site::new();
    let data = site.path("data");
    fs::create_dir_all(&data).expect("mkdir");
    let app = data.join("app.db");
    let id = format!("sqlite://{}", app.display());
    // The live writer of tests/sql/sqlite-writer.py, in WAL mode: a few
    // thousand transactions first, then a writer that never pauses.
    let writer = attache_tests::root().join("tests/sql/sqlite-writer.py");
    ok(Command::new("python3")
        .arg(&writer)
        .arg(&app)
        .args(["WAL", "1.5"]));
    let w = Background(Some(
        Command::new("python3")
            .arg(&writer)
            .arg(&app)
            .args(["WAL", "120"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3"),
    ));
    sleep(Duration::from_millis(500));
    let t0 = sqlite_txn(&app);
    let mut snaps = Vec::new();
    for _ in 0..2 {
        let report = site.backup(None, &id);
        assert_eq!(report["items"], 1, "{report}");
        snaps.push(id_of(&report));
    }
    let t1 = sqlite_txn(&app);
    fs::write(app.with_extension("db.stop"), b"").expect("stop file");
    let out = w.take().wait_with_output().expect("writer");
    assert!(
        out.status.success(),
        "the writer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t1 > t0,
        "the writer made no progress during the backups ({t0} -> {t1})"
    );
    fs::remove_file(app.with_extension("db.stop")).expect("rm stop file");
    assert_one_committed_state(&app, 0..=i64::MAX);
    let ids = items(&site, &snaps[0]);
    assert_eq!(ids, vec![(id.clone(), "database".to_owned())]);

    // Each copy restored under another path (into a directory that does not
    // exist yet) is one committed state from the time of its backup.
    let mut txns = Vec::new();
    for (i, snap) in snaps.iter().enumerate() {
        let copy = site.path(&format!("restored/copy{i}.db"));
        let as_id = format!("sqlite://{}", copy.display());
        ok(&mut site.restore_cmd(None, snap, &id, Some(&as_id), &[]));
        assert!(
            !copy.with_extension("db-wal").exists(),
            "a WAL was left beside {}",
            copy.display()
        );
        assert_one_committed_state(&copy, t0..=t1);
        assert_eq!(sqlite_state(&copy).mode, "wal");
        txns.push(sqlite_state(&copy).txn);
    }
    assert!(
        txns[0] <= txns[1],
        "the later backup holds an earlier state: {txns:?}"
    );
    eprintln!("writer: transactions {t0} to {t1} during the backups; copies hold {txns:?}");

    // In place: refused while the file exists, restored once it is gone.
    let live = sqlite_state(&app);
    let err = fails(&mut site.restore_cmd(None, &snaps[1], &id, None, &[]));
    assert!(err.contains("exists"), "unclear error: {err}");
    let after = sqlite_state(&app);
    assert_eq!(
        (after.txn, after.rows),
        (live.txn, live.rows),
        "a refused restore changed the database"
    );
    for ext in ["db", "db-wal", "db-shm"] {
        let _ = fs::remove_file(app.with_extension(ext));
    }
    ok(&mut site.restore_cmd(None, &snaps[1], &id, None, &[]));
    assert_one_committed_state(&app, txns[1]..=txns[1]);
    // --overwrite over a database with a stale WAL beside it.
    fs::write(app.with_extension("db-wal"), b"junk").expect("write junk WAL");
    ok(&mut site.restore_cmd(None, &snaps[0], &id, None, &["--overwrite"]));
    assert!(
        !app.with_extension("db-wal").exists(),
        "overwrite left the stale WAL"
    );
    assert_one_committed_state(&app, txns[0]..=txns[0]);

    // A file that does not exist: a clear error, no snapshot.
    let err = fails(&mut site.backup_cmd(None, &format!("sqlite://{}/nosuch.db", data.display())));
    assert!(
        err.contains("nosuch.db") && err.contains("does not exist"),
        "unclear error: {err}"
    );
    assert_eq!(site.snapshot_count(), 2);
}
