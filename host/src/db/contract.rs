//! What every [`StateStore`] backend must do, as one suite run on each:
//! SQLite in a temporary directory and PostgreSQL in a throwaway cluster
//! (`test_pg.rs`). The PostgreSQL backend's own behaviour (migrations,
//! refusals, errors, calls from async tasks, reconnecting) is tested here
//! too, against the same cluster.

#![cfg(test)]

use std::collections::BTreeMap;

use super::postgres::Postgres;
use super::records::Keep;
use super::sqlite::Sqlite;
use super::test_pg::TestPg;
use super::{DbError, JobFilter, JobRecord, PolicyRecord, StateStore};

fn job(id: &str, target: &str, policy: Option<&str>, status: &str, created: i64) -> JobRecord {
    JobRecord {
        id: id.into(),
        kind: "backup".into(),
        target: target.into(),
        hypervisor: target.split_once('/').map(|(h, _)| h.to_owned()),
        policy: policy.map(str::to_owned),
        status: status.into(),
        request: serde_json::json!({ "kind": "backup", "items": ["/data"] }),
        result: None,
        error: None,
        snapshot: None,
        created,
        started: None,
        finished: None,
        owner: Some("q1".into()),
    }
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

fn policy(name: &str) -> PolicyRecord {
    PolicyRecord {
        name: name.into(),
        vms: vec!["hv1/*".into(), "tag:db".into()],
        plugin: "filesystem".into(),
        include: vec!["/data".into()],
        options: BTreeMap::from([("mode".to_owned(), "fast".to_owned())]),
        schedule: "0 3 * * *".into(),
        keep: Keep {
            last: 3,
            daily: 7,
            ..Default::default()
        },
        retries: 0,
        created: 100,
        last_fired: None,
    }
}

/// The contract, on an empty store.
fn suite(db: &dyn StateStore) {
    jobs_history(db);
    interrupting(db);
    policies(db);
    tags(db);
}

fn jobs_history(db: &dyn StateStore) {
    assert!(db.jobs(&JobFilter::default()).unwrap().is_empty());
    assert!(db.job("nope").unwrap().is_none());
    db.record_job(&job("a", "hv1/vm1", Some("nightly"), "queued", 10))
        .unwrap();
    // Rewritten as it finishes: one row, and the target's last result.
    let mut done = job("a", "hv1/vm1", Some("nightly"), "succeeded", 10);
    done.started = Some(11);
    done.finished = Some(15);
    done.snapshot = Some("abc".into());
    done.result =
        Some(serde_json::json!({ "id": "abc", "bytes": u64::MAX, "name": "žluťoučký\n\"x\"" }));
    db.record_job(&done).unwrap();
    assert_eq!(db.job("a").unwrap().unwrap(), done);
    db.record_job(&job("b", "hv1/vm2", None, "failed", 20))
        .unwrap();
    db.record_job(&job("c", "hv2/vm3", Some("nightly"), "running", 30))
        .unwrap();
    // A restore neither is nor changes a last result.
    db.record_job(&JobRecord {
        kind: "restore".into(),
        ..job("r", "hv1/vm1", None, "succeeded", 40)
    })
    .unwrap();
    // Same second: the one written last is the newer.
    db.record_job(&job("s1", "local", None, "queued", 50))
        .unwrap();
    db.record_job(&job("s2", "local", None, "queued", 50))
        .unwrap();
    assert_eq!(
        ids(&db.jobs(&JobFilter::default()).unwrap()),
        ["s2", "s1", "r", "c", "b", "a"]
    );
    db.record_job(&job("s1", "local", None, "cancelled", 50))
        .unwrap();
    let all = db.jobs(&JobFilter::default()).unwrap();
    assert_eq!(ids(&all), ["s1", "s2", "r", "c", "b", "a"]);
    assert_eq!(all[5], done);
    let f = |policy: Option<&str>, vm: Option<&str>, failed: bool, limit: Option<usize>| {
        let got = db
            .jobs(&JobFilter {
                policy: policy.map(str::to_owned),
                vm: vm.map(str::to_owned),
                failed,
                limit,
            })
            .unwrap();
        ids(&got).into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(f(Some("nightly"), None, false, None), ["c", "a"]);
    assert_eq!(f(None, Some("hv1/vm1"), false, None), ["r", "a"]);
    assert_eq!(f(Some("nightly"), Some("hv1/vm1"), false, None), ["a"]);
    assert_eq!(f(None, None, true, None), ["b"]);
    assert_eq!(f(None, None, false, Some(2)), ["s1", "s2"]);
    assert_eq!(f(None, None, false, Some(0)), Vec::<String>::new());
    assert_eq!(f(Some("other"), None, false, None), Vec::<String>::new());
    let last = db.last_results().unwrap();
    assert_eq!(
        last.iter()
            .map(|l| (l.target.as_str(), l.job.as_str(), l.status.as_str()))
            .collect::<Vec<_>>(),
        [
            ("hv1/vm1", "a", "succeeded"),
            ("hv1/vm2", "b", "failed"),
            ("local", "s1", "cancelled")
        ]
    );
    assert_eq!(last[0].finished, 15);
    assert_eq!(last[0].snapshot.as_deref(), Some("abc"));
    assert_eq!(last[0].policy.as_deref(), Some("nightly"));
    // Not finished: falls back on its creation time.
    assert_eq!(last[1].finished, 20);
}

fn interrupting(db: &dyn StateStore) {
    // After jobs_history: c (running, q1), s2 (queued, q1) unfinished.
    db.record_job(&JobRecord {
        owner: Some("live".into()),
        ..job("d", "hv2/vm4", None, "running", 60)
    })
    .unwrap();
    db.record_job(&JobRecord {
        owner: None,
        kind: "verify".into(),
        ..job("v", "repository", None, "queued", 5)
    })
    .unwrap();
    let asked = std::sync::Mutex::new(Vec::new());
    let gone = db
        .interrupt_unfinished(99, &|o| {
            asked.lock().unwrap().push(o.map(str::to_owned));
            o == Some("live")
        })
        .unwrap();
    assert_eq!(gone, ["v", "c", "s2"], "oldest first");
    assert_eq!(asked.lock().unwrap().len(), 4);
    let d = db.job("d").unwrap().unwrap();
    assert_eq!((d.status.as_str(), d.finished), ("running", None));
    let c = db.job("c").unwrap().unwrap();
    assert_eq!(c.status, "interrupted");
    assert_eq!(c.finished, Some(99));
    assert_eq!(
        c.error.as_deref(),
        Some("interrupted: the server stopped while it ran")
    );
    let s2 = db.job("s2").unwrap().unwrap();
    assert_eq!(
        s2.error.as_deref(),
        Some("interrupted: the server stopped before it ran")
    );
    assert_eq!(
        ids(&db
            .jobs(&JobFilter {
                failed: true,
                ..Default::default()
            })
            .unwrap()),
        ["s2", "c", "b", "v"]
    );
    let last = db.last_results().unwrap();
    let of = |t: &str| last.iter().find(|l| l.target == t).cloned();
    let hv2 = of("hv2/vm3").unwrap();
    assert_eq!(
        (hv2.job.as_str(), hv2.status.as_str(), hv2.finished),
        ("c", "interrupted", 99)
    );
    assert_eq!(hv2.policy.as_deref(), Some("nightly"));
    assert_eq!(of("local").unwrap().job, "s2");
    // A verify has no last result.
    assert!(of("repository").is_none());
    // Nothing left to interrupt but the live queue's.
    assert!(db.interrupt_unfinished(100, &|_| false).unwrap() == ["d"]);
    assert!(db.interrupt_unfinished(101, &|_| false).unwrap().is_empty());
}

fn policies(db: &dyn StateStore) {
    assert!(db.policies().unwrap().is_empty());
    let p = policy("nightly");
    db.add_policy(&p).unwrap();
    assert!(matches!(db.add_policy(&p), Err(DbError::Conflict(_))));
    assert_eq!(db.policy("nightly").unwrap().unwrap(), p);
    assert!(db.policy_fired("nightly", None, 200).unwrap());
    // Another server recorded the same firing first: not again.
    assert!(!db.policy_fired("nightly", None, 201).unwrap());
    assert!(!db.policy_fired("absent", None, 200).unwrap());
    let back = db.policy("nightly").unwrap().unwrap();
    assert_eq!(back.last_fired, Some(200));
    assert_eq!(back.keep.daily, 7);
    assert_eq!(back.options["mode"], "fast");
    // By name, bytewise (as SQLite compares): upper case first.
    db.add_policy(&policy("Weekly")).unwrap();
    db.add_policy(&policy("a-first")).unwrap();
    assert_eq!(
        db.policies()
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["Weekly", "a-first", "nightly"]
    );
    assert!(db.remove_policy("nightly").unwrap());
    assert!(!db.remove_policy("nightly").unwrap());
    assert!(db.policy("nightly").unwrap().is_none());
    assert_eq!(db.policies().unwrap().len(), 2);
}

fn tags(db: &dyn StateStore) {
    assert!(db.tags().unwrap().is_empty());
    db.tag("hv1/vm1", &["prod".into(), "db".into(), "db".into()])
        .unwrap();
    db.tag("hv1/vm1", &["db".into()]).unwrap();
    db.tag("Hv0/vm", &["x".into()]).unwrap();
    db.tag("hv2/vm3", &["db".into()]).unwrap();
    db.untag("hv1/vm1", &["prod".into(), "never".into()])
        .unwrap();
    db.untag("hv9/none", &["db".into()]).unwrap();
    assert_eq!(
        db.tags().unwrap(),
        vec![
            ("Hv0/vm".to_owned(), vec!["x".to_owned()]),
            ("hv1/vm1".to_owned(), vec!["db".to_owned()]),
            ("hv2/vm3".to_owned(), vec!["db".to_owned()])
        ]
    );
    db.tag("hv1/vm1", &["B".into(), "a".into()]).unwrap();
    assert_eq!(db.tags().unwrap()[1].1, ["B", "a", "db"]);
}

#[test]
fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    suite(&Sqlite::open(dir.path()).unwrap());
}

/// Everything PostgreSQL, against one cluster (starting one takes seconds).
#[test]
fn postgres_keeps_the_contract_and_refuses_what_it_should() {
    let pg = TestPg::start();

    // The contract, and the data still there through a second store.
    let url = pg.database("contract");
    suite(&Postgres::open(&url).unwrap());
    let again = Postgres::open(&url).unwrap();
    assert_eq!(again.jobs(&JobFilter::default()).unwrap().len(), 8);
    assert_eq!(again.policies().unwrap().len(), 2);

    // Calls from async tasks (where the synchronous client would panic),
    // and the store dropped on a runtime's thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: std::sync::Arc<dyn StateStore> = std::sync::Arc::new(again);
    let n = rt.block_on(async move {
        let s = store.clone();
        let direct = s.jobs(&JobFilter::default()).unwrap().len();
        let blocking = tokio::task::spawn_blocking(move || store.policies().unwrap().len())
            .await
            .unwrap();
        s.tag("hv3/vm", &["async".into()]).unwrap();
        drop(s);
        (direct, blocking)
    });
    assert_eq!(n, (8, 2));

    // The connection broken under it: the call fails, the next one
    // reconnects.
    let store = Postgres::open(&url).unwrap();
    assert_eq!(store.tags().unwrap().len(), 4);
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'attache'",
    );
    let first = store.tags();
    assert!(
        matches!(first, Ok(_) | Err(DbError::Unreachable { .. })),
        "{first:?}"
    );
    assert_eq!(store.tags().unwrap().len(), 4);

    // Several servers opening a fresh database at once migrate it once.
    let url = pg.database("racing");
    std::thread::scope(|s| {
        let opens: Vec<_> = (0..4).map(|_| s.spawn(|| Postgres::open(&url))).collect();
        for o in opens {
            o.join().unwrap().unwrap();
        }
    });
    let version = {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = c
            .query("SELECT application, version FROM attache_state", &[])
            .unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].get::<_, i64>(1)
    };
    assert_eq!(version, super::postgres_schema::MIGRATIONS.len() as i64);

    // Newer than this build: refused, untouched.
    pg.sql("racing", "UPDATE attache_state SET version = 99");
    match Postgres::open(&url) {
        Err(e @ DbError::Newer { version: 99, .. }) => {
            let m = e.to_string();
            assert!(m.contains("newer") && !m.contains(&pg.password), "{m}");
        }
        other => panic!("{:?}", other.err()),
    }

    // Another application's database: refused, untouched.
    let url = pg.database("other_app");
    pg.sql("other_app", "CREATE TABLE orders (id int)");
    match Postgres::open(&url) {
        Err(e @ DbError::Foreign { .. }) => {
            assert!(!e.to_string().contains(&pg.password), "{e}")
        }
        other => panic!("{:?}", other.err()),
    }
    pg.sql("other_app", "SELECT * FROM orders");
    // Its own attache_state does not make it Attaché's either.
    pg.sql(
        "other_app",
        "DROP TABLE orders; CREATE TABLE attache_state (application TEXT, version BIGINT); INSERT INTO attache_state VALUES ('other', 1)",
    );
    assert!(matches!(Postgres::open(&url), Err(DbError::Foreign { .. })));

    // A wrong password and a closed port: each its own clear error,
    // naming the URL without its password.
    let wrong = pg.url_with("contract", &format!("not-{}", pg.password), pg.port);
    match Postgres::open(&wrong) {
        Err(e @ DbError::Auth { .. }) => {
            let m = e.to_string();
            assert!(m.contains("user=postgres password=*** "), "{m}");
            assert!(!m.contains(&pg.password), "{m}");
        }
        other => panic!("{:?}", other.err()),
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = pg.url_with("x", &pg.password, port);
    match Postgres::open(&closed) {
        Err(e @ DbError::Unreachable { .. }) => {
            let m = e.to_string();
            assert!(m.contains(&format!("host=127.0.0.1 port={port}")), "{m}");
            assert!(!m.contains(&pg.password), "{m}");
        }
        other => panic!("{:?}", other.err()),
    }
    // A missing database is PostgreSQL's own error.
    assert!(matches!(
        Postgres::open(&pg.url("absent")),
        Err(DbError::Postgres { .. })
    ));
    // Not a PostgreSQL URL.
    assert!(matches!(
        Postgres::open("mysql://x@h/db"),
        Err(DbError::Url { .. })
    ));
}
