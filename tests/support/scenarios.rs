//! The VM tests every driver passes: a site (repository, state directory,
//! datastores) and the bodies of the granular backup, restore and failure
//! tests, run on a booted VM of a registered hypervisor whatever its driver
//! (tests/vm.rs for QEMU, tests/libvirt.rs for libvirt). After every job
//! the VM must be as it was: nothing attached, nothing mounted, nothing
//! left in the guest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::{free_port, request, wait_healthy};
use crate::vm::GuestVm;
use crate::{attache, fails, ok};

/// A repository, a state directory, VM directories and datastores.
pub struct Site {
    t: tempfile::TempDir,
    /// The repository.
    pub repo: PathBuf,
    /// The state directory (hypervisors, journal, locks).
    pub state: PathBuf,
}

impl Site {
    /// A fresh site in a temporary directory, its repository initialized.
    pub fn new() -> Self {
        let t = tempfile::Builder::new()
            .prefix("vm")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let repo = t.path().join("repo");
        let state = t.path().join("state");
        let s = Site { t, repo, state };
        ok(s.attache().arg("init"));
        s
    }

    /// A path in the site's temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    /// `attache` on this site's repository and state directory.
    pub fn attache(&self) -> Command {
        let mut c = attache(&self.repo);
        c.env("ATTACHE_STATE_DIR", &self.state);
        c
    }

    /// Registers hypervisor `name`, reached as `how` says (`--driver …`
    /// and its flags), with `datastores`; what `hypervisor add` printed.
    pub fn add_hypervisor(&self, name: &str, how: &[&str], datastores: &[&Path]) -> String {
        let mut c = self.attache();
        c.args(["hypervisor", "add", name]).args(how);
        for d in datastores {
            c.arg("--datastore").arg(d);
        }
        ok(&mut c)
    }

    /// A filesystem backup of `include` in `target`; its JSON report.
    pub fn backup(&self, target: &str, include: &str) -> Value {
        let out = ok(self.attache().args([
            "backup",
            target,
            "--plugin",
            "filesystem",
            "--json",
            "--include",
            include,
        ]));
        serde_json::from_str(&out).expect("backup --json prints JSON")
    }

    /// Snapshot `id` as `snapshots --json` shows it.
    pub fn snapshot(&self, id: &str) -> Value {
        let all: Vec<Value> =
            serde_json::from_str(&ok(self.attache().args(["snapshots", "--json"]))).expect("JSON");
        all.into_iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no snapshot {id}"))
    }

    /// Asserts that the journal holds nothing at all (no entry, and no
    /// temporary file left by a write), as when no job is running.
    pub fn assert_journal_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.state.join("journal"))
            .map(|rd| rd.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the journal: {left:?}");
    }

    /// The journal's entries (`SESSION.json`), not the temporary files
    /// (`.tmp-PID-SESSION.json`) an entry is written through before it is
    /// renamed into place, nor an entry removed while the directory was
    /// being read (a job that just ended).
    pub fn journal_entries(&self) -> Vec<Value> {
        let dir = self.state.join("journal");
        let Ok(rd) = fs::read_dir(&dir) else {
            return vec![];
        };
        rd.map(|e| e.expect("entry").path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && name.ends_with(".json")
            })
            .filter_map(|p| match fs::read(&p) {
                Ok(bytes) => Some(
                    serde_json::from_slice(&bytes)
                        .unwrap_or_else(|e| panic!("journal entry {}: {e}", p.display())),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => panic!("{}: {e}", p.display()),
            })
            .collect()
    }

    /// Waits until a job is mid-run: the container attached and mounted,
    /// the runner running (its pid in the journal).
    pub fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = self.journal_entries();
            if e.first().is_some_and(|e| e["runner_pid"].is_i64()) {
                return;
            }
            assert!(Instant::now() < deadline, "the job did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `content` to `p`, making its directories.
pub fn write(p: &Path, content: &[u8]) {
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

/// `n` pseudo-random bytes (xorshift from `seed`).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A small tree for `/data`, as [`granular_backup_and_restore`] expects.
pub fn data_tree(dir: &Path) {
    write(&dir.join("some/file"), b"original content\n");
    write(&dir.join("keep.txt"), b"keep me\n");
    write(&dir.join("dir/nested/deep.bin"), &random_bytes(3 << 20, 7));
    std::os::unix::fs::symlink("../keep.txt", dir.join("some/link")).expect("symlink");
}

/// The SHA-256 of `path` in the guest.
pub fn sha256_in_guest(vm: &dyn GuestVm, path: &str) -> String {
    vm.sh(&format!("sha256sum {path} | cut -d' ' -f1"))
        .trim()
        .to_owned()
}

/// `vm list --json` shows `target` running with its guest agent
/// answering and nothing attached.
pub fn listed_running(site: &Site, target: &str) {
    let list = ok(site.attache().args(["vm", "list", "--json"]));
    let list: Value = serde_json::from_str(&list).expect("JSON");
    let row = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("{target} is not listed: {list}"));
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["guest_agent"], "answers", "{row}");
    assert_eq!(row["attached"], serde_json::json!([]), "{row}");
}

/// Backups and granular restores of `target` (whose `/data` holds
/// [`data_tree`]): in place, refused without `--overwrite`, below another
/// directory, incremental, freeze-consistent; the audit log records it all.
/// The site has run no job before.
pub fn granular_backup_and_restore(site: &Site, vm: &dyn GuestVm, target: &str) {
    vm.assert_clean();
    let snap = site.backup(target, "/data");
    let id = snap["id"].as_str().expect("id").to_owned();
    // /data, lost+found, 3 directories, 3 files, 1 symlink
    assert_eq!(snap["items"], 9, "{snap}");
    vm.assert_clean();
    site.assert_journal_empty();
    let info = site.snapshot(&id);
    assert_eq!(info["source"], target);
    assert!(
        info["container"].as_str().is_some_and(|c| c.len() == 16),
        "{info}"
    );
    let ls = ok(site.attache().args(["ls", &id]));
    assert!(ls.contains("/data/some/file"), "{ls}");
    assert!(ls.contains("/data/dir/nested/deep.bin"), "{ls}");

    // Change one file and delete another in the guest.
    let deep = sha256_in_guest(vm, "/data/dir/nested/deep.bin");
    vm.sh("echo changed > /data/some/file; rm /data/keep.txt; sync");

    // The deleted file comes back alone, in place.
    ok(site
        .attache()
        .args(["restore", &id, "--item", "/data/keep.txt", "--to", target]));
    assert_eq!(vm.sh("cat /data/keep.txt"), "keep me\n");
    assert_eq!(
        vm.sh("cat /data/some/file"),
        "changed\n",
        "only the chosen item is restored"
    );
    vm.assert_clean();

    // An existing file is not replaced without --overwrite, and the VM is
    // clean after the refusal too.
    let err =
        fails(
            site.attache()
                .args(["restore", &id, "--item", "/data/some/file", "--to", target]),
        );
    assert!(err.contains("/data/some/file"), "{err}");
    assert_eq!(vm.sh("cat /data/some/file"), "changed\n");
    vm.assert_clean();
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/some/file",
        "--to",
        target,
        "--overwrite",
    ]));
    assert_eq!(vm.sh("cat /data/some/file"), "original content\n");
    vm.assert_clean();

    // An alternate place in the guest: items keep their full path below it.
    let below = format!("{target}:/restore");
    ok(site
        .attache()
        .args(["restore", &id, "--item", "/data/dir", "--to", &below]));
    assert_eq!(
        sha256_in_guest(vm, "/restore/data/dir/nested/deep.bin"),
        deep
    );
    ok(site
        .attache()
        .args(["restore", &id, "--item", "/data/some", "--to", &below]));
    assert_eq!(vm.sh("cat /restore/data/some/file"), "original content\n");
    assert_eq!(vm.sh("readlink /restore/data/some/link"), "../keep.txt\n");
    vm.assert_clean();

    // An incremental backup reads only what changed since.
    vm.sh("echo new > /data/some/added; sync");
    let again = site.backup(target, "/data");
    assert_eq!(again["items"], 10);
    assert!(
        again["read_bytes"].as_u64().expect("read_bytes") < 1024,
        "{again}"
    );
    vm.assert_clean();

    // A freeze-consistent backup: the filesystems are frozen after the
    // plugin's quiesce and thawed after the stream.
    let out = ok(site.attache().args([
        "backup",
        target,
        "--plugin",
        "filesystem",
        "--json",
        "--fsfreeze",
        "--include",
        "/data",
    ]));
    assert!(out.contains("\"items\":10"), "{out}");
    assert_eq!(vm.agent_call("guest-fsfreeze-status"), "thawed");
    vm.sh("touch /data/writable-after-thaw");
    vm.assert_clean();

    // The audit log holds every job above (3 backups, 5 restores, one of
    // them refused in the guest), each visit's attach and detach, and the
    // commands run in the guest; its chain is intact.
    let log: Vec<Value> = ok(site.attache().args(["audit", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit entry is JSON"))
        .collect();
    let count = |event: &str| log.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("job.start"), 8, "{log:#?}");
    assert_eq!(count("job.end"), 8);
    assert!(count("vm.attach") >= 8, "{log:#?}");
    assert_eq!(count("vm.attach"), count("vm.detach"));
    assert!(log
        .iter()
        .filter(|e| e["event"] == "vm.detach")
        .all(|e| e["data"]["complete"] == true && e["data"]["vm"] == target));
    assert!(log
        .iter()
        .any(|e| e["event"] == "guest.command"
            && e["data"]["argv"].to_string().contains("guest-runner")));
    assert!(log.iter().any(|e| e["event"] == "plugin.plan"));
    assert!(log
        .iter()
        .any(|e| e["event"] == "restore.destination" && e["data"]["to"] == below.as_str()));
    ok(site.attache().args(["audit", "verify"]));
}

/// The runner is killed in the guest mid-job: the job fails saying so, and
/// the VM is clean.
pub fn runner_killed(site: &Site, vm: &dyn GuestVm, target: &str) {
    vm.sh(
        "( while ! pidof guest-runner >/dev/null; do sleep 0.02; done; sleep 0.3; \
           kill -9 $(pidof guest-runner) ) >/dev/null 2>&1 &",
    );
    let err = fails(site.attache().args([
        "backup",
        target,
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(
        err.contains(&format!("runner in {target} failed")) && err.contains("signal 9"),
        "{err}"
    );
    vm.assert_clean();
    site.assert_journal_empty();
}

/// The guest agent is dead before the job, then stops answering while the
/// runner runs: clear failures, the container detached at once, and the
/// guest's cleanup kept in the journal until the agent is back, when the
/// next job finishes it first. `/data` holds `small.txt`.
pub fn silent_guest_agent(site: &Site, vm: &dyn GuestVm, target: &str) {
    // Dead before the job: nothing is attached. (Stopped, then resumed
    // later by the same guest script.)
    vm.sh(
        "( p=$(pidof qemu-ga); sleep 0.5; kill -STOP $p; sleep 20; kill -CONT $p ) >/dev/null 2>&1 &",
    );
    std::thread::sleep(Duration::from_secs(2));
    let err = fails(site.attache().args([
        "backup",
        target,
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(
        err.contains(&format!("guest agent of {target} does not answer")),
        "{err}"
    );
    assert_eq!(vm.attached(), Vec::<String>::new());
    site.assert_journal_empty();

    // Silent while the runner runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !vm.agent_answers(2) {
        assert!(Instant::now() < deadline, "the agent did not come back");
    }
    vm.sh(
        "( p=$(pidof qemu-ga); while ! pidof guest-runner >/dev/null; do sleep 0.02; done; \
           kill -STOP $p; sleep 30; kill -CONT $p ) >/dev/null 2>&1 &",
    );
    let err = fails(site.attache().args([
        "backup",
        target,
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(err.contains("guest agent"), "{err}");
    assert!(
        err.contains(&format!("cleanup of {target} is incomplete"))
            || err.contains("stopped answering"),
        "{err}"
    );
    assert_eq!(
        vm.attached(),
        Vec::<String>::new(),
        "detached although the guest is silent"
    );
    let pending = site.journal_entries();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["detached"], true);
    // Once the agent answers again, the next job on the VM finishes the
    // cleanup first, then runs.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !vm.agent_answers(2) {
        assert!(Instant::now() < deadline, "the agent did not come back");
    }
    let snap = site.backup(target, "/data/small.txt");
    assert_eq!(snap["items"], 1);
    site.assert_journal_empty();
    vm.assert_clean();
}

/// A JSON request to the server, which must answer.
pub fn http(url: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let (status, v) = request(url, method, path, Some(token), body);
    assert!(status != 0, "{method} {path}: {v}");
    v
}

/// A job cancelled through the API mid-run, one that runs out of time, and
/// one whose server is killed mid-run (undone by the restarted server):
/// each leaves the VM clean. `/data` holds enough to take a while.
pub fn cancelled_timed_out_and_killed(site: &Site, vm: &dyn GuestVm, target: &str) {
    let token = "a-test-token-of-enough-length";
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let serve = || {
        site.attache()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("ATTACHE_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn attache serve")
    };
    let mut server = serve();
    wait_healthy(&url);

    // A job cancelled through the API mid-run: cancelled, and the VM clean.
    let body = format!(
        r#"{{"kind":"backup","backup":{{"target":"{target}","plugin":"filesystem","include":["/data"]}}}}"#
    );
    let job = http(&url, token, "POST", "/jobs", Some(&body));
    let id = job["id"].as_str().expect("job id").to_owned();
    site.wait_running();
    http(&url, token, "DELETE", &format!("/jobs/{id}"), None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = http(&url, token, "GET", &format!("/jobs/{id}"), None);
        if ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or("")) {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled job did not end: {j}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["status"], "cancelled", "{done}");
    vm.assert_clean();
    site.assert_journal_empty();

    // A job that runs out of time: a clear failure, and the VM clean.
    let err = fails(site.attache().args([
        "backup",
        target,
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--timeout-secs",
        "1",
    ]));
    assert!(err.contains("timed out"), "{err}");
    vm.assert_clean();
    site.assert_journal_empty();

    let client = site
        .attache()
        .args(["--server", &url])
        .args([
            "backup",
            target,
            "--plugin",
            "filesystem",
            "--include",
            "/data",
        ])
        .env("ATTACHE_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn client");
    site.wait_running();
    server.kill().expect("kill -9 the server");
    let _ = server.wait();
    let mut client = client;
    let _ = client.wait();
    let left = vm.attached();
    assert!(
        left.iter().any(|a| a.starts_with("device")),
        "the killed job should have left its container attached: {left:?}"
    );
    assert_eq!(site.journal_entries().len(), 1);

    // The restarted server undoes it before serving.
    let mut server = serve();
    wait_healthy(&url);
    site.assert_journal_empty();
    vm.assert_clean();
    server.kill().expect("stop the server");
    let _ = server.wait();
}
