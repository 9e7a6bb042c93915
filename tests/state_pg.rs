//! The state database on PostgreSQL (`--state-db`, ATTACHE_STATE_DB),
//! against a throwaway PostgreSQL cluster (`support/pg.rs`): what one
//! process writes another reads; a server keeps its job history there for
//! the command line to read once it is stopped; two servers start on one
//! database; wrong passwords, closed ports and other applications'
//! databases are refused with clear errors that never show the password.
//! The contract of the store itself (the same answers as SQLite) is the
//! host's unit test `db::contract`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use attache_tests::pg::Pg;
use attache_tests::server::{request, Served};
use attache_tests::{attache_isolated, fails, ok, tree};
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef";

/// `attache` with its own cache and state directory `state` (under `t`),
/// nothing from the environment pointing elsewhere, and PGPASSWORD set to
/// `pg`'s password (the URLs given carry none).
fn attache(t: &Path, state: &str, pg: &Pg) -> Command {
    let mut c = attache_isolated(&t.join("cache"), &t.join(state));
    c.env_remove("ATTACHE_STATE_DB")
        .env("PGPASSWORD", &pg.password);
    c
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn policies_one_process_writes_another_reads() {
    let t = tempfile::tempdir().unwrap();
    let pg = Pg::start();
    pg.psql("postgres", "CREATE DATABASE state");
    let url = pg.url("state");

    // Written with the flag, from state directory `a`.
    ok(attache(t.path(), "a", &pg)
        .args(["--state-db", &url, "policy", "add", "nightly"])
        .args(["--vms", "hv1/*", "tag:db", "--plugin", "filesystem"])
        .args([
            "--include",
            "/data",
            "--schedule",
            "0 3 * * *",
            "--keep-last",
            "3",
        ]));
    // Read with the variable, from another state directory.
    let list = json_of(&ok(attache(t.path(), "b", &pg)
        .env("ATTACHE_STATE_DB", &url)
        .args(["policy", "list", "--json"])));
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "nightly");
    assert_eq!(list[0]["vms"], json!(["hv1/*", "tag:db"]));
    assert_eq!(list[0]["keep"]["last"], 3);
    // It is in PostgreSQL, not in either state directory's SQLite.
    assert_eq!(pg.psql("state", "SELECT name FROM policies"), "nightly");
    let local = json_of(&ok(
        attache(t.path(), "a", &pg).args(["policy", "list", "--json"])
    ));
    assert_eq!(local, json!([]));
    // A second policy of the same name is refused through the other process.
    let e = fails(
        attache(t.path(), "b", &pg)
            .env("ATTACHE_STATE_DB", &url)
            .args(["policy", "add", "nightly", "--vms", "hv2/*"])
            .args([
                "--plugin",
                "filesystem",
                "--include",
                "/x",
                "--schedule",
                "0 4 * * *",
            ]),
    );
    assert!(e.contains("already exists"), "{e}");
    // Removed by one, gone for the other.
    ok(attache(t.path(), "b", &pg)
        .env("ATTACHE_STATE_DB", &url)
        .args(["policy", "remove", "nightly"]));
    let list = json_of(&ok(attache(t.path(), "a", &pg).args([
        "--state-db",
        &url,
        "policy",
        "list",
        "--json",
    ])));
    assert_eq!(list, json!([]));
    assert_eq!(pg.psql("state", "SELECT count(*) FROM policies"), "0");
}

/// Waits until the job `id` of the server at `url` has ended.
fn wait(url: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, job) = request(url, "GET", &format!("/jobs/{id}"), Some(TOKEN), None);
        assert_eq!(st, 200, "{job}");
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(url: &str, body: &Value) -> String {
    let (st, job) = request(url, "POST", "/jobs", Some(TOKEN), Some(&body.to_string()));
    assert_eq!(st, 202, "{job}");
    job["id"].as_str().expect("job id").to_owned()
}

#[test]
fn two_servers_share_one_database_and_the_history_outlives_them() {
    let t = tempfile::tempdir().unwrap();
    let pg = Pg::start();
    pg.psql("postgres", "CREATE DATABASE state");
    // The servers get the password in the URL (their environment is
    // Served's); the commands below get it from PGPASSWORD.
    let url = pg.url("state");
    let with_password = url.replacen("postgres@", &format!("postgres:{}@", pg.password), 1);
    let data = t.path().join("data");
    tree::make(&data, 20, 200_000);

    // Two servers, each its own repository and state directory, started
    // at the same time on the fresh database: both come up, and the
    // schema is made once.
    let (one, two) = std::thread::scope(|s| {
        let start = |name: &str| {
            let repo = t.path().join(name);
            let url = with_password.clone();
            s.spawn(move || Served::start(&repo, TOKEN, &["--state-db", &url]))
        };
        let (a, b) = (start("one"), start("two"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(
        pg.psql(
            "state",
            "SELECT application || ' ' || version FROM attache_state"
        ),
        "attache-state 3"
    );

    // A backup and a verify through the first server's API: the job's
    // every step is written from the server's async tasks.
    let backup = post(
        &one.url,
        &json!({ "kind": "backup", "backup": { "target": "local", "plugin": "filesystem", "include": [data] } }),
    );
    let done = wait(&one.url, &backup);
    assert_eq!(done["status"], "succeeded", "{done}");
    let verify = post(
        &one.url,
        &json!({ "kind": "verify", "verify": { "read_data": true } }),
    );
    assert_eq!(wait(&one.url, &verify)["status"], "succeeded");
    // The second server answers from the same history.
    let (st, listed) = request(&two.url, "GET", "/jobs", Some(TOKEN), None);
    assert_eq!(st, 200, "{listed}");
    let ids: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [verify.as_str(), backup.as_str()], "newest first");
    let (st, seen) = request(
        &two.url,
        "GET",
        &format!("/jobs/{backup}"),
        Some(TOKEN),
        None,
    );
    assert_eq!((st, &seen["status"]), (200, &json!("succeeded")), "{seen}");
    drop(one);
    drop(two);

    // Both servers stopped: the command line reads the history, from a
    // state directory of its own.
    let jobs = json_of(&ok(attache(t.path(), "cli", &pg).args([
        "--state-db",
        &url,
        "jobs",
        "--json",
    ])));
    let jobs = jobs.as_array().expect("a list");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0]["id"], verify.as_str());
    assert_eq!(jobs[0]["kind"], "verify");
    assert_eq!(jobs[1]["id"], backup.as_str());
    assert_eq!(jobs[1]["status"], "succeeded");
    assert_eq!(jobs[1]["target"], "local");
    assert_eq!(jobs[1]["snapshot"], done["result"]["id"], "{done}");
    assert!(jobs[1]["finished"].as_i64().is_some());
    let failed = json_of(&ok(attache(t.path(), "cli", &pg).args([
        "--state-db",
        &url,
        "jobs",
        "--failed",
        "--json",
    ])));
    assert_eq!(failed, json!([]));
    let local = json_of(&ok(attache(t.path(), "cli", &pg).args([
        "--state-db",
        &url,
        "jobs",
        "--vm",
        "local",
        "--json",
    ])));
    assert_eq!(local.as_array().map(Vec::len), Some(1));

    // Left running: one job by a queue of server one's state directory
    // that is gone (its lock file there, unheld), one by a queue of
    // another server's (no lock file here).
    pg.psql(
        "state",
        "INSERT INTO jobs (id, kind, target, status, request, created, owner) VALUES
           ('mine', 'backup', 'local', 'running', '{}', 1, 'deadbeef01'),
           ('theirs', 'verify', 'repository', 'running', '{}', 2, 'abcdef02')",
    );
    let queues = t.path().join("one.state/queues");
    std::fs::create_dir_all(&queues).unwrap();
    std::fs::write(queues.join("deadbeef01.lock"), "").unwrap();
    // Server one started again keeps the history, marks its own dead
    // queue's job interrupted, and leaves the other server's alone (it
    // cannot tell that one died: that queue is no worker with a
    // heartbeat, as an older attache's or `policy run`'s).
    let again = Served::start(
        &t.path().join("one"),
        TOKEN,
        &["--state-db", &with_password],
    );
    let (_, listed) = request(&again.url, "GET", "/jobs", Some(TOKEN), None);
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
    assert_eq!(
        pg.psql("state", "SELECT string_agg(id || ' ' || status, ', ' ORDER BY id) FROM jobs WHERE id IN ('mine', 'theirs')"),
        "mine interrupted, theirs running"
    );
    assert_eq!(
        pg.psql(
            "state",
            "SELECT job || ' ' || status FROM last_results WHERE target = 'local'"
        ),
        "mine interrupted"
    );
    assert_eq!(
        pg.psql(
            "state",
            "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
        ),
        "2"
    );
}

#[test]
fn wrong_passwords_closed_ports_and_foreign_databases_are_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let pg = Pg::start();
    pg.psql("postgres", "CREATE DATABASE state");
    let secret = "hunter2-not-the-password";

    // A wrong password in the URL: named as a refused login, never shown.
    let wrong = format!("postgresql://postgres:{secret}@127.0.0.1:{}/state", pg.port);
    let e = fails(attache(t.path(), "s", &pg).args(["--state-db", &wrong, "jobs"]));
    assert!(e.contains("refused the login"), "{e}");
    assert!(
        e.contains(&format!(
            "postgresql://postgres:***@127.0.0.1:{}/state",
            pg.port
        )),
        "{e}"
    );
    assert!(!e.contains(secret), "{e}");
    // The same from PGPASSWORD.
    let e = fails(attache(t.path(), "s", &pg).env("PGPASSWORD", secret).args([
        "--state-db",
        &pg.url("state"),
        "policy",
        "list",
    ]));
    assert!(e.contains("refused the login"), "{e}");
    assert!(!e.contains(secret), "{e}");

    // Nothing listening: a connection failure, for a command and a server.
    let port = attache_tests::server::free_port();
    let closed = format!("postgresql://postgres:{secret}@127.0.0.1:{port}/state");
    let e = fails(
        attache(t.path(), "s", &pg)
            .env("ATTACHE_STATE_DB", &closed)
            .args(["jobs"]),
    );
    assert!(e.contains("cannot connect to the state database"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains(secret), "{e}");
    let e = fails(
        attache(t.path(), "s", &pg)
            .env("ATTACHE_TOKEN", TOKEN)
            .env("ATTACHE_PASSWORD", attache_tests::PASSWORD)
            .args(["--repo"])
            .arg(t.path().join("repo"))
            .args(["--state-db", &closed, "serve", "--listen"])
            .arg(format!("127.0.0.1:{}", attache_tests::server::free_port())),
    );
    assert!(e.contains("cannot connect to the state database"), "{e}");
    assert!(!e.contains(secret), "{e}");

    // Another application's database: refused, and left as it was.
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (7)",
    );
    let e = fails(attache(t.path(), "s", &pg).args(["--state-db", &pg.url("shop"), "jobs"]));
    assert!(e.contains("not an Attaché state database"), "{e}");
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "orders"
    );

    // A database written by a newer Attaché: refused, not guessed at.
    ok(attache(t.path(), "s", &pg).args(["--state-db", &pg.url("state"), "jobs"]));
    pg.psql("state", "UPDATE attache_state SET version = 42");
    let e = fails(attache(t.path(), "s", &pg).args(["--state-db", &pg.url("state"), "jobs"]));
    assert!(e.contains("schema version 42 is newer"), "{e}");

    // Not a PostgreSQL URL at all.
    let e = fails(attache(t.path(), "s", &pg).args(["--state-db", "mysql://u:pw@h/db", "jobs"]));
    assert!(
        e.contains("expected a PostgreSQL URL") && !e.contains(":pw@"),
        "{e}"
    );
}

/// `pg_ctl ARGS` on `pg`'s cluster, as its owner.
fn pg_ctl(pg: &Pg, args: &str) {
    ok(Command::new("su").args([
        "postgres",
        "-s",
        "/bin/sh",
        "-c",
        &format!(
            "{}/pg_ctl -D '{}' -l '{}' {args}",
            pg.bin.display(),
            pg.dir().join("data").display(),
            pg.dir().join("server.log").display()
        ),
    ]));
}

#[test]
fn a_server_whose_postgresql_goes_away_answers_503_and_recovers() {
    let t = tempfile::tempdir().unwrap();
    let pg = Pg::start();
    pg.psql("postgres", "CREATE DATABASE state");
    let with_password =
        pg.url("state")
            .replacen("postgres@", &format!("postgres:{}@", pg.password), 1);
    let served = Served::start(
        &t.path().join("repo"),
        TOKEN,
        &["--state-db", &with_password],
    );
    let jobs = || {
        request(
            &served.url,
            "GET",
            "/jobs?policy=nightly",
            Some(TOKEN),
            None,
        )
    };
    assert_eq!(jobs().0, 200);

    pg_ctl(&pg, "stop -w -m fast");
    let (st, body) = jobs();
    assert_eq!(st, 503, "{body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains("cannot connect to the state database"), "{e}");
    assert!(e.contains("postgres:***@127.0.0.1"), "{e}");
    assert!(!e.contains(&pg.password), "{e}");
    // A job that cannot be recorded is not run.
    let verify = json!({ "kind": "verify", "verify": { "read_data": false } });
    let (st, body) = request(
        &served.url,
        "POST",
        "/jobs",
        Some(TOKEN),
        Some(&verify.to_string()),
    );
    assert_eq!(st, 503, "{body}");

    // Back: the server reconnects by itself.
    pg_ctl(
        &pg,
        &format!(
            "-w -o \"-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' -c fsync=off\" start",
            pg.port,
            pg.dir().join("sock").display()
        ),
    );
    assert_eq!(jobs().0, 200);
    let id = post(&served.url, &verify);
    assert_eq!(wait(&served.url, &id)["status"], "succeeded");
    assert_eq!(pg.psql("state", "SELECT count(*) FROM jobs"), "1");
}
