//! `attache discover` in a real VM (QEMU under TCG, the project's tiny
//! guest): the plugins' discover runs in the guest through the runner, its
//! entries come back over the data channel, and the VM is as it was after
//! every run, failed ones included.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use attache_tests::server::{request, Served};
use attache_tests::vm::{serial, GuestVm, TestVm};
use attache_tests::{attache, fails, ok};
use serde_json::{json, Value};

const ADMIN: &str = "discover-test-admin-token-0123456789";

/// A repository, a state directory and a booted VM `hv1/vm1` whose `/data`
/// is `src`.
struct Site {
    t: tempfile::TempDir,
    repo: PathBuf,
}

impl Site {
    fn new() -> Self {
        let t = tempfile::Builder::new()
            .prefix("vm")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let repo = t.path().join("repo");
        let s = Site { t, repo };
        ok(s.attache().arg("init"));
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    /// `attache` on this site's repository, with its state directory
    /// (`repo.state`, as the server's: `Served` starts it the same way).
    fn attache(&self) -> Command {
        attache(&self.repo)
    }

    fn boot(&self, src: &Path) -> TestVm {
        let vm = TestVm::boot(&self.path("vms"), "vm1", src);
        ok(self
            .attache()
            .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
            .arg(self.path("vms"))
            .arg("--datastore")
            .arg(self.path("ds")));
        vm
    }

    fn discover(&self, args: &[&str]) -> Value {
        let out = ok(self
            .attache()
            .args(["discover", "hv1/vm1", "--json"])
            .args(args));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("discover --json: {e}: {out}"))
    }

    /// The journal holds no entry: no job left anything to undo.
    fn assert_journal_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.path("repo.state/journal"))
            .map(|rd| rd.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the journal: {left:?}");
    }
}

/// The entries plugin `plugin` listed in a discovery's JSON.
fn entries<'v>(v: &'v Value, plugin: &str) -> &'v Vec<Value> {
    let p = v["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no plugin {plugin}: {v}"));
    assert_eq!(p["error"], Value::Null, "{v}");
    p["entries"].as_array().expect("entries")
}

fn entry<'v>(entries: &'v [Value], id: &str) -> &'v Value {
    entries
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {entries:?}"))
}

#[test]
fn discover_lists_data_and_an_sqlite_database_and_leaves_the_vm_clean() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    fs::create_dir_all(src.join("notes/2024")).expect("mkdir");
    fs::write(src.join("notes/2024/a.txt"), b"hello").expect("write");
    let make = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(500)])
db.commit()
db.close()
"#;
    ok(Command::new("python3")
        .args(["-c", make])
        .arg(src.join("app.db")));
    // Not a database, though named like one: the sql plugin leaves it out.
    fs::write(src.join("fake.db"), vec![b'x'; 4096]).expect("write");
    let db_size = fs::metadata(src.join("app.db")).expect("db").len();
    let vm = site.boot(&src);

    // The filesystem plugin lists /data, two levels deep.
    let v = site.discover(&["--plugin", "filesystem", "--scope", "/data", "--depth", "1"]);
    assert_eq!(v["target"], "hv1/vm1");
    assert!(
        v["container"].as_str().is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    let fs_entries = entries(&v, "filesystem");
    let db = entry(fs_entries, "/data/app.db");
    assert_eq!(
        (&db["kind"], &db["size"]),
        (&"file".into(), &db_size.into()),
        "{db}"
    );
    let notes = entry(fs_entries, "/data/notes");
    assert_eq!(notes["kind"], "directory");
    assert_eq!(notes["has_children"], true);
    // Depth 1: the level below notes, not the one below that.
    assert_eq!(entry(fs_entries, "/data/notes/2024")["has_children"], true);
    assert!(
        !fs_entries
            .iter()
            .any(|e| e["id"] == "/data/notes/2024/a.txt"),
        "{v}"
    );
    vm.assert_clean();
    site.assert_journal_empty();

    // The sql plugin finds the SQLite database there, by its header.
    let v = site.discover(&["--plugin", "sql", "--scope", "sqlite:///data/"]);
    let sql = entries(&v, "sql");
    assert_eq!(sql.len(), 1, "{v}");
    assert_eq!(sql[0]["id"], "sqlite:///data/app.db");
    assert_eq!(sql[0]["kind"], "database");
    assert_eq!(sql[0]["size"], db_size);
    assert_eq!(sql[0]["has_children"], false);
    vm.assert_clean();
    site.assert_journal_empty();

    // What it listed is what a backup takes.
    let out = ok(site.attache().args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "sql",
        "--json",
        "--include",
        sql[0]["id"].as_str().expect("id"),
    ]));
    let snap: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(snap["items"], 1, "{snap}");
    vm.assert_clean();

    // Every plugin of the container, in one visit, as a table: those that
    // cannot list /data say why; the filesystem plugin lists it.
    let out = ok(site
        .attache()
        .args(["discover", "hv1/vm1", "--scope", "/data"]));
    eprintln!("{out}");
    assert!(out.starts_with("hv1/vm1 (container "), "{out}");
    assert!(out.contains("filesystem: "), "{out}");
    assert!(out.contains("sql: error: "), "{out}");
    let line = out
        .lines()
        .find(|l| l.ends_with("/data/notes  +"))
        .unwrap_or_else(|| panic!("no /data/notes line: {out}"));
    assert!(line.trim_start().starts_with("directory"), "{line}");
    vm.assert_clean();
    site.assert_journal_empty();

    // Every plugin, each at its roots, one after another in one visit.
    let v = site.discover(&[]);
    eprintln!("{v:#}");
    let plugins = v["plugins"].as_array().expect("plugins");
    let names: Vec<&str> = plugins
        .iter()
        .filter_map(|p| p["plugin"].as_str())
        .collect();
    assert_eq!(names, ["filesystem", "mail", "sql"], "{v}");
    let ran = plugins.iter().filter(|p| p["error"].is_null()).count();
    assert!(ran >= 2, "at least two ran in the guest in one visit: {v}");
    vm.assert_clean();
    site.assert_journal_empty();

    // Through the server: a `discover` job, which an operator may run only
    // on its targets, recorded in the audit log like any visit to a VM.
    let server = Served::start(&site.repo, ADMIN, &[]);
    let call = |token: &str, method: &str, path: &str, body: Option<Value>| {
        request(
            &server.url,
            method,
            path,
            Some(token),
            body.map(|b| b.to_string()).as_deref(),
        )
    };
    let (st, made) = call(
        ADMIN,
        "POST",
        "/tokens",
        Some(json!({ "role": "operator", "targets": ["hv1/other"] })),
    );
    assert_eq!(st, 201, "{made}");
    let operator = made["token"].as_str().expect("token").to_owned();
    let job = json!({ "kind": "discover", "discover": { "target": "hv1/vm1", "plugin": "filesystem", "scope": "/data" } });
    let (st, refused) = call(&operator, "POST", "/jobs", Some(job.clone()));
    assert_eq!(st, 403, "{refused}");
    let (st, queued) = call(ADMIN, "POST", "/jobs", Some(job));
    assert_eq!(st, 202, "{queued}");
    let id = queued["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let done = loop {
        let (_, j) = call(ADMIN, "GET", &format!("/jobs/{id}"), None);
        if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
            break j;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        (&done["kind"], &done["target"]),
        (&json!("discover"), &json!("hv1/vm1"))
    );
    let listed = entries(&done["result"], "filesystem");
    assert_eq!(entry(listed, "/data/app.db")["size"], db_size);
    vm.assert_clean();
    // The command line through the server: the same job.
    let out = ok(site
        .attache()
        .args(["--server", &server.url, "discover", "hv1/vm1", "--json"])
        .args(["--plugin", "sql", "--scope", "sqlite:///data/"])
        .env("ATTACHE_TOKEN", ADMIN));
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(entries(&v, "sql")[0]["id"], "sqlite:///data/app.db");
    let (st, log) = call(ADMIN, "GET", "/audit", None);
    assert_eq!(st, 200);
    let events: Vec<(&str, &str)> = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["job"] == id.as_str())
        .map(|e| {
            (
                e["event"].as_str().unwrap_or(""),
                e["data"]["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        "job.start",
        "plugin.plan",
        "vm.attach",
        "guest.command",
        "vm.detach",
        "job.end",
    ] {
        assert!(
            events.iter().any(|(e, _)| *e == want),
            "no {want} in {events:?}"
        );
    }
    assert!(events.contains(&("job.start", "discover")), "{events:?}");
    assert!(
        log.as_array()
            .expect("entries")
            .iter()
            .any(|e| e["event"] == "job.denied" && e["data"]["request"]["kind"] == "discover"),
        "the refused one is recorded too"
    );
    drop(server);
    vm.assert_clean();
    site.assert_journal_empty();

    // An unknown plugin: refused before anything is attached.
    let e = fails(
        site.attache()
            .args(["discover", "hv1/vm1", "--plugin", "nosuch"]),
    );
    assert!(e.contains("nosuch"), "{e}");
    vm.assert_clean();
    site.assert_journal_empty();

    // A plugin that fails in the guest (a directory that is not there):
    // its error, and the VM clean.
    let e = fails(site.attache().args([
        "discover",
        "hv1/vm1",
        "--plugin",
        "sql",
        "--scope",
        "sqlite:///data/nowhere/",
    ]));
    assert!(
        e.contains("discovery by plugin sql in hv1/vm1 failed"),
        "{e}"
    );
    assert!(e.contains("nowhere"), "{e}");
    vm.assert_clean();
    site.assert_journal_empty();

    // A guest agent that does not answer: a clear error, nothing attached.
    vm.sh("( p=$(pidof qemu-ga); sleep 0.5; kill -STOP $p ) >/dev/null 2>&1 &");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let e = fails(site.attache().args([
        "discover",
        "hv1/vm1",
        "--plugin",
        "filesystem",
        "--scope",
        "/data",
    ]));
    assert!(e.contains("guest agent"), "{e}");
    assert_eq!(vm.attached(), Vec::<String>::new());
    site.assert_journal_empty();
}
