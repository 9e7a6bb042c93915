//! Granular backup and restore inside real VMs: QEMU under TCG with the
//! project's tiny guest, the container attached over QMP and the runner run
//! through qemu-guest-agent, the data over a virtio-serial port. After
//! every job the VM must be as it was: nothing attached, nothing mounted,
//! nothing left in the guest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attache_tests::server::{free_port, request, wait_healthy};
use attache_tests::vm::{serial, TestVm};
use attache_tests::{attache, fails, ok};
use serde_json::Value;

/// A repository, a state directory, a VM directory and a datastore.
struct Site {
    t: tempfile::TempDir,
    repo: PathBuf,
    state: PathBuf,
}

impl Site {
    fn new() -> Self {
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

    fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    fn attache(&self) -> Command {
        let mut c = attache(&self.repo);
        c.env("ATTACHE_STATE_DIR", &self.state);
        c
    }

    /// Boots VM `name` (in this site's `vms/`, sharing `src` as its
    /// `/data`), for a hypervisor registered by [`Site::register_hv1`].
    fn boot(&self, name: &str, src: &Path) -> TestVm {
        TestVm::boot(&self.path("vms"), name, src)
    }

    /// Registers hypervisor `hv1` on this site's `vms/` with the one
    /// datastore `ds/`; what `hypervisor add` printed.
    fn register_hv1(&self) -> String {
        let ds = self.path("ds");
        self.add_hypervisor("hv1", &self.path("vms"), &[ds.to_str().expect("utf-8")])
    }

    /// Registers hypervisor `name` on VM directory `vms` with `datastores`.
    fn add_hypervisor(&self, name: &str, vms: &Path, datastores: &[&str]) -> String {
        let mut c = self.attache();
        c.args(["hypervisor", "add", name, "--driver", "qemu", "--vm-dir"])
            .arg(vms);
        for d in datastores {
            c.arg("--datastore").arg(d);
        }
        ok(&mut c)
    }

    fn backup(&self, target: &str, include: &str) -> Value {
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

    fn snapshot(&self, id: &str) -> Value {
        let all: Vec<Value> =
            serde_json::from_str(&ok(self.attache().args(["snapshots", "--json"]))).expect("JSON");
        all.into_iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no snapshot {id}"))
    }

    /// Asserts that the journal holds nothing at all (no entry, and no
    /// temporary file left by a write), as when no job is running.
    fn assert_journal_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.state.join("journal"))
            .map(|rd| rd.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in the journal: {left:?}");
    }

    /// The journal's entries (`SESSION.json`), not the temporary files
    /// (`.tmp-PID-SESSION.json`) an entry is written through before it is
    /// renamed into place, nor an entry removed while the directory was
    /// being read (a job that just ended).
    fn journal_entries(&self) -> Vec<Value> {
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
}

fn write(p: &Path, content: &[u8]) {
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
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

/// A small tree for `/data`.
fn data_tree(dir: &Path) {
    write(&dir.join("some/file"), b"original content\n");
    write(&dir.join("keep.txt"), b"keep me\n");
    write(&dir.join("dir/nested/deep.bin"), &random_bytes(3 << 20, 7));
    std::os::unix::fs::symlink("../keep.txt", dir.join("some/link")).expect("symlink");
}

fn sha256_in_guest(vm: &TestVm, path: &str) -> String {
    vm.sh(&format!("sha256sum {path} | cut -d' ' -f1"))
        .trim()
        .to_owned()
}

#[test]
fn backup_and_granular_restore_inside_a_vm() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    data_tree(&src);
    let vm = site.boot("vm1", &src);
    let added = site.register_hv1();
    assert!(added.contains("container on"), "{added}");
    let list = ok(site.attache().args(["vm", "list", "--json"]));
    let list: Value = serde_json::from_str(&list).expect("JSON");
    assert_eq!(list[0]["target"], "hv1/vm1");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["guest_agent"], "answers");
    vm.assert_clean();

    let snap = site.backup("hv1/vm1", "/data");
    let id = snap["id"].as_str().expect("id").to_owned();
    // /data, lost+found, 3 directories, 3 files, 1 symlink
    assert_eq!(snap["items"], 9, "{snap}");
    vm.assert_clean();
    site.assert_journal_empty();
    let info = site.snapshot(&id);
    assert_eq!(info["source"], "hv1/vm1");
    assert!(
        info["container"].as_str().is_some_and(|c| c.len() == 16),
        "{info}"
    );
    let ls = ok(site.attache().args(["ls", &id]));
    assert!(ls.contains("/data/some/file"), "{ls}");
    assert!(ls.contains("/data/dir/nested/deep.bin"), "{ls}");

    // Change one file and delete another in the guest.
    let deep = sha256_in_guest(&vm, "/data/dir/nested/deep.bin");
    vm.sh("echo changed > /data/some/file; rm /data/keep.txt; sync");

    // The deleted file comes back alone, in place.
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/keep.txt",
        "--to",
        "hv1/vm1",
    ]));
    assert_eq!(vm.sh("cat /data/keep.txt"), "keep me\n");
    assert_eq!(
        vm.sh("cat /data/some/file"),
        "changed\n",
        "only the chosen item is restored"
    );
    vm.assert_clean();

    // An existing file is not replaced without --overwrite, and the VM is
    // clean after the refusal too.
    let err = fails(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/some/file",
        "--to",
        "hv1/vm1",
    ]));
    assert!(err.contains("/data/some/file"), "{err}");
    assert_eq!(vm.sh("cat /data/some/file"), "changed\n");
    vm.assert_clean();
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/some/file",
        "--to",
        "hv1/vm1",
        "--overwrite",
    ]));
    assert_eq!(vm.sh("cat /data/some/file"), "original content\n");
    vm.assert_clean();

    // An alternate place in the guest: items keep their full path below it.
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/dir",
        "--to",
        "hv1/vm1:/restore",
    ]));
    assert_eq!(
        sha256_in_guest(&vm, "/restore/data/dir/nested/deep.bin"),
        deep
    );
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "/data/some",
        "--to",
        "hv1/vm1:/restore",
    ]));
    assert_eq!(vm.sh("cat /restore/data/some/file"), "original content\n");
    assert_eq!(vm.sh("readlink /restore/data/some/link"), "../keep.txt\n");
    vm.assert_clean();

    // An incremental backup reads only what changed since.
    vm.sh("echo new > /data/some/added; sync");
    let again = site.backup("hv1/vm1", "/data");
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
        "hv1/vm1",
        "--plugin",
        "filesystem",
        "--json",
        "--fsfreeze",
        "--include",
        "/data",
    ]));
    assert!(out.contains("\"items\":10"), "{out}");
    let frozen = ok(Command::new(attache_tests::root().join("tests/vm/qga.py"))
        .arg(vm.socket("qga"))
        .args(["call", "guest-fsfreeze-status"]));
    assert!(frozen.contains("thawed"), "{frozen}");
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
        .all(|e| e["data"]["complete"] == true && e["data"]["vm"] == "hv1/vm1"));
    assert!(log
        .iter()
        .any(|e| e["event"] == "guest.command"
            && e["data"]["argv"].to_string().contains("guest-runner")));
    assert!(log.iter().any(|e| e["event"] == "plugin.plan"));
    assert!(log
        .iter()
        .any(|e| e["event"] == "restore.destination" && e["data"]["to"] == "hv1/vm1:/restore"));
    ok(site.attache().args(["audit", "verify"]));
}

#[test]
fn two_vms_at_once_a_dying_runner_and_a_silent_guest_agent() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(64 << 20, 3));
    write(&src.join("small.txt"), b"small\n");
    let vm1 = site.boot("vm1", &src);
    let vm2 = site.boot("vm2", &src);
    site.register_hv1();

    // Two VMs backed up at once, into one repository.
    let spawn = |target: &str| {
        site.attache()
            .args([
                "backup",
                target,
                "--plugin",
                "filesystem",
                "--json",
                "--include",
                "/data",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn attache")
    };
    let (a, b) = (spawn("hv1/vm1"), spawn("hv1/vm2"));
    for child in [a, b] {
        let o = child.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(v["items"], 4); // /data, lost+found and two files
    }
    vm1.assert_clean();
    vm2.assert_clean();
    ok(site.attache().args(["verify", "--read-data"]));

    // The runner is killed in the guest mid-job: the job fails saying so,
    // and the VM is clean.
    vm1.sh(
        "( while ! pidof guest-runner >/dev/null; do sleep 0.02; done; sleep 0.3; \
           kill -9 $(pidof guest-runner) ) >/dev/null 2>&1 &",
    );
    let err = fails(site.attache().args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(
        err.contains("runner in hv1/vm1 failed") && err.contains("signal 9"),
        "{err}"
    );
    vm1.assert_clean();
    site.assert_journal_empty();

    // The guest agent is dead before the job: a clear failure, and nothing
    // is attached. (Stopped, then resumed later by the same guest script.)
    vm2.sh(
        "( p=$(pidof qemu-ga); sleep 0.5; kill -STOP $p; sleep 20; kill -CONT $p ) >/dev/null 2>&1 &",
    );
    std::thread::sleep(Duration::from_secs(2));
    let err = fails(site.attache().args([
        "backup",
        "hv1/vm2",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(
        err.contains("guest agent of hv1/vm2 does not answer"),
        "{err}"
    );
    assert_eq!(vm2.attached(), Vec::<String>::new());
    site.assert_journal_empty();

    // The guest agent stops answering while the runner runs: the job fails,
    // the container is detached at once, and the journal keeps the guest's
    // cleanup until the agent is back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !vm2.agent_answers(2) {
        assert!(Instant::now() < deadline, "vm2's agent did not come back");
    }
    vm2.sh(
        "( p=$(pidof qemu-ga); while ! pidof guest-runner >/dev/null; do sleep 0.02; done; \
           kill -STOP $p; sleep 30; kill -CONT $p ) >/dev/null 2>&1 &",
    );
    let err = fails(site.attache().args([
        "backup",
        "hv1/vm2",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
    ]));
    assert!(err.contains("guest agent"), "{err}");
    assert!(
        err.contains("cleanup of hv1/vm2 is incomplete") || err.contains("stopped answering"),
        "{err}"
    );
    assert_eq!(
        vm2.attached(),
        Vec::<String>::new(),
        "detached although the guest is silent"
    );
    let pending = site.journal_entries();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["detached"], true);
    // Once the agent answers again, the next job on the VM finishes the
    // cleanup first, then runs.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !vm2.agent_answers(2) {
        assert!(Instant::now() < deadline, "vm2's agent did not come back");
    }
    let snap = site.backup("hv1/vm2", "/data/small.txt");
    assert_eq!(snap["items"], 1);
    site.assert_journal_empty();
    vm2.assert_clean();
}

#[test]
fn a_cancelled_a_timed_out_and_a_killed_job_leave_nothing_attached() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(200 << 20, 5));
    let vm = site.boot("vm1", &src);
    site.register_hv1();

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

    // Mid-job: the container attached and mounted, the runner running.
    let wait_running = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let e = site.journal_entries();
            if e.first().is_some_and(|e| e["runner_pid"].is_i64()) {
                return;
            }
            assert!(Instant::now() < deadline, "the job did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A job cancelled through the API mid-run: cancelled, and the VM clean.
    let body = r#"{"kind":"backup","backup":{"target":"hv1/vm1","plugin":"filesystem","include":["/data"]}}"#;
    let job = http(&url, token, "POST", "/jobs", Some(body));
    let id = job["id"].as_str().expect("job id").to_owned();
    wait_running();
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
        "hv1/vm1",
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
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args([
            "backup",
            "hv1/vm1",
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
    wait_running();
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

#[test]
fn a_rebuilt_plugin_reaches_every_hypervisor_and_the_next_backup_uses_it() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("f.txt"), b"x\n");
    // Two hypervisors; the second has two datastores, each reaching part
    // of its VMs, so it needs both.
    let (vms1, vms2) = (site.path("hv1"), site.path("hv2"));
    let vm1 = TestVm::boot(&vms1, "vm1", &src);
    let vm2 = TestVm::boot(&vms2, "vm2", &src);
    let agent = site.path("agent");
    let build = site.path("build");
    let probe_v1 = attache_tests::build_probe("1", &build.join("v1"));
    attache_tests::assemble(
        &agent,
        &[
            ("filesystem", &attache_tests::component("filesystem")),
            ("probe", &probe_v1),
        ],
    );
    let with_agent = |c: &mut Command| {
        c.arg("--agent-dir").arg(&agent);
    };
    let (ds1, ds2a, ds2b) = (site.path("ds1"), site.path("ds2a"), site.path("ds2b"));
    let mut c = site.attache();
    with_agent(&mut c);
    c.args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms1)
        .arg("--datastore")
        .arg(&ds1);
    ok(&mut c);
    let mut c = site.attache();
    with_agent(&mut c);
    c.args(["hypervisor", "add", "hv2", "--driver", "qemu", "--vm-dir"])
        .arg(&vms2)
        .arg("--datastore")
        .arg(format!("{}=other", ds2a.display()))
        .arg("--datastore")
        .arg(format!("{}=vm2", ds2b.display()));
    ok(&mut c);
    let containers = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let old = containers(&ds1);
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(containers(&ds2b), old, "the datastore reaching vm2 has it");
    assert!(
        containers(&ds2a).is_empty(),
        "a datastore no VM needs gets nothing"
    );

    let probe = |target: &str| -> Value {
        let mut c = site.attache();
        with_agent(&mut c);
        c.args([
            "backup",
            target,
            "--plugin",
            "probe",
            "--json",
            "--include",
            "probe://version",
        ]);
        let id = serde_json::from_str::<Value>(&ok(&mut c)).expect("JSON")["id"].clone();
        site.snapshot(id.as_str().expect("id"))
    };
    assert_eq!(probe("hv1/vm1")["plugin_version"], "1");

    // Rebuild the plugin alone; the runner stays byte for byte the same.
    let manifest_before: Value =
        serde_json::from_slice(&fs::read(agent.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    let probe_v2 = attache_tests::build_probe("2", &build.join("v2"));
    attache_tests::assemble(
        &agent,
        &[
            ("filesystem", &attache_tests::component("filesystem")),
            ("probe", &probe_v2),
        ],
    );
    let manifest_after: Value =
        serde_json::from_slice(&fs::read(agent.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    assert_eq!(manifest_before["runner"], manifest_after["runner"]);
    let version = manifest_after["version"]
        .as_str()
        .expect("version")
        .to_owned();
    assert_ne!(manifest_before["version"], manifest_after["version"]);

    let mut c = site.attache();
    with_agent(&mut c);
    c.args(["container", "build", "--json"]);
    let built: Value = serde_json::from_str(&ok(&mut c)).expect("JSON");
    assert_eq!(
        built["pushed"].as_array().expect("pushed").len(),
        2,
        "{built}"
    );
    let new = vec![format!("attache-agent-{version}.iso")];
    assert_eq!(
        containers(&ds1),
        new,
        "hv1 has the new container and not the old"
    );
    assert_eq!(
        containers(&ds2b),
        new,
        "hv2 has the new container and not the old"
    );

    for target in ["hv1/vm1", "hv2/vm2"] {
        let snap = probe(target);
        assert_eq!(
            snap["plugin_version"], "2",
            "{target} ran the rebuilt plugin"
        );
        assert_eq!(snap["container"], version.as_str());
    }
    vm1.assert_clean();
    vm2.assert_clean();
}

/// Issue 13: the signed container runs in the guest (whose runner checks
/// it again against the keys the job hands it); a container whose plugin
/// was swapped with its manifest hash updated to match is refused before
/// anything is attached, and so is a container changed on its datastore.
#[test]
fn a_swapped_plugin_or_a_changed_datastore_copy_is_refused_before_attaching() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("f.txt"), b"x\n");
    let vms = site.path("vms");
    let vm = TestVm::boot(&vms, "vm1", &src);
    let agent = site.path("agent");
    let filesystem = attache_tests::component("filesystem");
    attache_tests::assemble(&agent, &[("filesystem", &filesystem)]);
    let attache = || {
        let mut c = site.attache();
        c.arg("--agent-dir").arg(&agent);
        c
    };
    let ds = site.path("ds1");
    ok(attache()
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms)
        .arg("--datastore")
        .arg(&ds));
    let backup = || {
        let mut c = attache();
        c.args(["backup", "hv1/vm1", "--plugin", "filesystem", "--json"])
            .args(["--include", "/data"]);
        c
    };
    ok(&mut backup());
    vm.assert_clean();
    let snapshots = || -> usize {
        let v: Value =
            serde_json::from_str(&ok(site.attache().args(["snapshots", "--json"]))).expect("JSON");
        v.as_array().expect("array").len()
    };

    // The copy on the datastore is changed: not attached.
    let placed: Vec<PathBuf> = fs::read_dir(&ds)
        .expect("datastore")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(placed.len(), 1, "{placed:?}");
    let original = fs::read(&placed[0]).expect("iso");
    let mut changed = original.clone();
    changed[40_000] ^= 1;
    fs::write(&placed[0], &changed).expect("change");
    let err = fails(&mut backup());
    assert!(err.contains("refusing to attach it"), "{err}");
    vm.assert_clean();
    site.assert_journal_empty();
    // Removed, the verified one is placed again and runs.
    fs::remove_file(&placed[0]).expect("remove");
    ok(&mut backup());
    assert_eq!(fs::read(&placed[0]).expect("iso"), original);

    // A plugin swapped with its hash updated: refused before attaching.
    attache_tests::swap_plugin(&agent, "filesystem", &attache_tests::component("probe"));
    let err = fails(&mut backup());
    assert!(err.contains("wrongly signed"), "{err}");
    vm.assert_clean();
    site.assert_journal_empty();
    assert_eq!(snapshots(), 2, "the refused jobs stored nothing");
}

/// A JSON request to the server, which must answer.
fn http(url: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let (status, v) = request(url, method, path, Some(token), body);
    assert!(status != 0, "{method} {path}: {v}");
    v
}

#[test]
fn an_sqlite_database_is_backed_up_and_restored_inside_a_vm() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    // A database in WAL mode whose last transactions are still in its WAL.
    let make = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
for i in range(2000):
    db.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
import os
os._exit(0)  # no checkpoint at close: the WAL stays
"#;
    ok(Command::new("python3")
        .args(["-c", make])
        .arg(src.join("app.db")));
    assert!(
        src.join("app.db-wal").exists(),
        "the WAL holds the last transactions"
    );
    let vm = site.boot("vm1", &src);
    site.register_hv1();

    let out = ok(site.attache().args([
        "backup",
        "hv1/vm1",
        "--plugin",
        "sql",
        "--json",
        "--include",
        "sqlite:///data/app.db",
    ]));
    let snap: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(snap["items"], 1, "{snap}");
    let id = snap["id"].as_str().expect("id").to_owned();
    vm.assert_clean();

    // Lost in the guest, then restored in place and under another name.
    vm.sh("rm -f /data/app.db /data/app.db-wal /data/app.db-shm; sync");
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "sqlite:///data/app.db",
        "--to",
        "hv1/vm1",
    ]));
    vm.assert_clean();
    ok(site.attache().args([
        "restore",
        &id,
        "--item",
        "sqlite:///data/app.db",
        "--as",
        "sqlite:///data/copy.db",
        "--to",
        "hv1/vm1",
    ]));
    vm.assert_clean();
    let check = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("PRAGMA integrity_check").fetchone()[0], db.execute("SELECT count(*), max(v) FROM t").fetchone())
"#;
    for name in ["app.db", "copy.db"] {
        let local = site.path(name);
        ok(Command::new(attache_tests::root().join("tests/vm/qga.py"))
            .arg(vm.socket("qga"))
            .args(["get", &format!("/data/{name}")])
            .arg(&local));
        let r = ok(Command::new("python3").args(["-c", check]).arg(&local));
        assert_eq!(r.trim(), "ok (2000, 'row 999')", "{name}: {r}");
    }
}
