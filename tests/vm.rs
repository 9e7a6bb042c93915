//! Granular backup and restore inside real VMs: QEMU under TCG with the
//! project's tiny guest, the container attached over QMP and the runner run
//! through qemu-guest-agent, the data over a virtio-serial port. The bodies
//! the libvirt driver passes too are in tests/support/scenarios.rs. After
//! every job the VM must be as it was: nothing attached, nothing mounted,
//! nothing left in the guest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use attache_tests::fails;
use attache_tests::ok;
use attache_tests::scenarios::{self, data_tree, random_bytes, write, Site};
use attache_tests::vm::{serial, GuestVm, TestVm};
use serde_json::Value;

/// Boots VM `name` (in the site's `vms/`, sharing `src` as its `/data`),
/// for a hypervisor registered by [`register_hv1`].
fn boot(site: &Site, name: &str, src: &Path) -> TestVm {
    TestVm::boot(&site.path("vms"), name, src)
}

/// Registers QEMU hypervisor `hv1` on the site's `vms/` with the one
/// datastore `ds/`; what `hypervisor add` printed.
fn register_hv1(site: &Site) -> String {
    let vms = site.path("vms");
    let how = ["--driver", "qemu", "--vm-dir", vms.to_str().expect("utf-8")];
    site.add_hypervisor("hv1", &how, &[&site.path("ds")])
}

#[test]
fn backup_and_granular_restore_inside_a_vm() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    data_tree(&src);
    let vm = boot(&site, "vm1", &src);
    let added = register_hv1(&site);
    assert!(added.contains("container on"), "{added}");
    scenarios::listed_running(&site, "hv1/vm1");
    scenarios::granular_backup_and_restore(&site, &vm, "hv1/vm1");
}

#[test]
fn two_vms_at_once_a_dying_runner_and_a_silent_guest_agent() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(64 << 20, 3));
    write(&src.join("small.txt"), b"small\n");
    let vm1 = boot(&site, "vm1", &src);
    let vm2 = boot(&site, "vm2", &src);
    register_hv1(&site);

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

    scenarios::runner_killed(&site, &vm1, "hv1/vm1");
    scenarios::silent_guest_agent(&site, &vm2, "hv1/vm2");
}

#[test]
fn a_cancelled_a_timed_out_and_a_killed_job_leave_nothing_attached() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("big.bin"), &random_bytes(200 << 20, 5));
    let vm = boot(&site, "vm1", &src);
    register_hv1(&site);

    scenarios::cancelled_timed_out_and_killed(&site, &vm, "hv1/vm1");
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
    let vm = boot(&site, "vm1", &src);
    register_hv1(&site);

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

/// A server killed between starting the runner and journaling its pid
/// leaves a runner no journal entry names. The next job's recovery still
/// kills it (it runs from that session's directory), so the guest is clean.
#[test]
fn a_runner_the_journal_does_not_name_is_still_killed_by_the_cleanup() {
    let _serial = serial();
    let site = Site::new();
    let src = site.path("src");
    write(&src.join("small.txt"), b"small\n");
    let vm = boot(&site, "vm1", &src);
    register_hv1(&site);
    // The runner held stopped; its job killed as a server is killed.
    vm.sh(
        "( while ! pidof guest-runner >/dev/null; do sleep 0.02; done; \
           kill -STOP $(pidof guest-runner) ) >/dev/null 2>&1 &",
    );
    let mut job = site
        .attache()
        .args([
            "backup",
            "hv1/vm1",
            "--plugin",
            "filesystem",
            "--include",
            "/data",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn attache");
    site.wait_running();
    // (The guest agent is the job's until it dies: QEMU's socket takes one
    // client. The runner, stopped or still starting, lives on either way.)
    std::thread::sleep(std::time::Duration::from_secs(2));
    job.kill().expect("kill -9");
    job.wait().expect("wait");
    // The journal as a server killed a moment earlier leaves it: no pid.
    let entries: Vec<PathBuf> = fs::read_dir(site.state.join("journal"))
        .expect("journal")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".json")
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut entry: Value =
        serde_json::from_slice(&fs::read(&entries[0]).expect("read")).expect("JSON");
    assert!(entry["runner_pid"].is_i64(), "{entry}");
    entry["runner_pid"] = Value::Null;
    fs::write(&entries[0], entry.to_string()).expect("write");
    assert!(vm
        .sh("pidof guest-runner || true")
        .trim()
        .parse::<u32>()
        .is_ok());

    // The next job finishes the cleanup first, then backs up.
    let snap = site.backup("hv1/vm1", "/data");
    assert!(snap["items"].as_u64().unwrap_or(0) >= 2, "{snap}");
    vm.assert_clean();
    site.assert_journal_empty();
}
