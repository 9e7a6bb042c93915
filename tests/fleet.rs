//! Fleet operations with real VMs: four test VMs on two hypervisors (`hv1`
//! raw QEMU, `hv2` a real libvirtd running its two as domains), one
//! backup policy selecting all four (a glob and a tag), run by the server
//! within its concurrency limits, each VM clean afterwards and each
//! snapshot restoring its file; a schedule that fires; retention that
//! forgets only the policy's own snapshots; and a server that is
//! restarted, then killed mid-run, keeping its history, its policies and
//! every VM clean.
//!
//! The four VMs are booted once and used by every step, in one test.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use attache_tests::libvirt::{LibvirtVm, Libvirtd};
use attache_tests::server::{request, Served};
use attache_tests::tree::random_file;
use attache_tests::vm::{serial, GuestVm, TestVm};
use attache_tests::{attache, fails, ok, wait_for};
use serde_json::Value;

const TOKEN: &str = "a-fleet-test-token-of-enough-length";

/// The hypervisors and their VMs: (hypervisor, VM).
const FLEET: [(&str, &str); 4] = [
    ("hv1", "vm-a"),
    ("hv1", "vm-b"),
    ("hv2", "vm-c"),
    ("hv2", "vm-d"),
];

struct Site {
    t: tempfile::TempDir,
    repo: PathBuf,
}

impl Site {
    fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    fn attache(&self) -> Command {
        attache(&self.repo)
    }

    /// The state directory [`attache`] and [`Served`] use.
    fn state(&self) -> PathBuf {
        self.repo.with_extension("state")
    }

    fn client(&self, url: &str) -> Command {
        let mut c = self.attache();
        c.args(["--server", url]).env("ATTACHE_TOKEN", TOKEN);
        c
    }
}

/// Registers the fleet's two hypervisors, each with a datastore of its
/// own: `hv1` drives QEMU through the sockets in its VM directory, `hv2`
/// drives `libvirtd`'s domains through libvirt's API. The jobs code does not
/// know which is which.
fn register_hypervisors(site: &Site, libvirtd: &Libvirtd) {
    ok(site
        .attache()
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(site.path("hv1"))
        .arg("--datastore")
        .arg(site.path("ds-hv1")));
    ok(site
        .attache()
        .args(["hypervisor", "add", "hv2", "--driver", "libvirt", "--uri"])
        .arg(&libvirtd.uri)
        .arg("--datastore")
        .arg(site.path("ds-hv2")));
}

fn get(url: &str, path: &str) -> Value {
    let (status, v) = request(url, "GET", path, Some(TOKEN), None);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

fn jobs_of(site: &Site, policy: &str) -> Vec<Value> {
    let out = ok(site.attache().args(["jobs", "--json", "--policy", policy]));
    serde_json::from_str(&out).expect("jobs --json prints JSON")
}

fn snapshots(site: &Site) -> Vec<Value> {
    serde_json::from_str(&ok(site.attache().args(["snapshots", "--json"]))).expect("JSON")
}

/// The most jobs of `jobs` (with `started` and `finished` seconds) that
/// ran at once, in all and per hypervisor. Intervals are half-open: a job
/// that started in the second another ended did not overlap it.
fn overlap(jobs: &[Value]) -> (usize, HashMap<String, usize>) {
    let mut edges: Vec<(i64, i32, String)> = Vec::new();
    for j in jobs {
        let hv = j["hypervisor"]
            .as_str()
            .expect("a VM job's hypervisor")
            .to_owned();
        let (s, e) = (
            j["started"].as_i64().expect("started"),
            j["finished"].as_i64().expect("finished"),
        );
        if e > s {
            edges.push((s, 1, hv.clone()));
            edges.push((e, -1, hv));
        }
    }
    // Ends before starts at the same second.
    edges.sort();
    let (mut now, mut max) = (0i32, 0usize);
    let mut per: HashMap<String, i32> = HashMap::new();
    let mut per_max: HashMap<String, usize> = HashMap::new();
    for (_, d, hv) in edges {
        now += d;
        max = max.max(now as usize);
        let c = per.entry(hv.clone()).or_default();
        *c += d;
        let m = per_max.entry(hv).or_default();
        *m = (*m).max(*c as usize);
    }
    (max, per_max)
}

#[test]
fn a_policy_backs_up_four_vms_on_two_hypervisors_within_the_limits() {
    let _serial = serial();
    let t = tempfile::Builder::new()
        .prefix("fleet")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let site = Site {
        repo: t.path().join("repo"),
        t,
    };
    ok(site.attache().arg("init"));

    // Each VM's /data: a file that names it, and one of random bytes.
    // hv2's libvirtd, started before its domains and stopped after them.
    let libvirtd = Libvirtd::start(&site.path("lv"));
    let mut vms: Vec<Box<dyn GuestVm + Send + '_>> = Vec::new();
    let mut sources = HashMap::new();
    std::thread::scope(|s| {
        let boots: Vec<_> = FLEET
            .iter()
            .map(|(hv, vm)| {
                let src = site.path(&format!("src-{vm}"));
                fs::create_dir_all(&src).expect("mkdir");
                fs::write(src.join("id.txt"), format!("{hv}/{vm}\n")).expect("write");
                random_file(
                    &src.join("blob.bin"),
                    256 << 10,
                    u64::from(vm.as_bytes()[3]),
                );
                sources.insert(format!("{hv}/{vm}"), src.clone());
                let dir = site.path(hv);
                let libvirtd = &libvirtd;
                s.spawn(move || -> Box<dyn GuestVm + Send + '_> {
                    if *hv == "hv2" {
                        Box::new(LibvirtVm::boot(libvirtd, &dir, vm, &src))
                    } else {
                        Box::new(TestVm::boot(&dir, vm, &src))
                    }
                })
            })
            .collect();
        for b in boots {
            vms.push(b.join().expect("boot"));
        }
    });
    register_hypervisors(&site, &libvirtd);
    ok(site
        .attache()
        .args(["vm", "tag", "hv2/vm-c", "fleet", "prod"]));
    ok(site.attache().args(["vm", "tag", "hv2/vm-d", "fleet"]));
    let listed = ok(site.attache().args(["vm", "list"]));
    assert!(listed.contains("tags fleet prod"), "{listed}");

    // At most three jobs at once, two per hypervisor.
    let limits = ["--max-jobs", "3", "--max-jobs-per-hypervisor", "2"];
    let server = Served::start(&site.repo, TOKEN, &limits);
    let url = server.url.clone();

    // A manual backup of a VM the policy selects: never the policy's to
    // forget.
    let manual: Value = serde_json::from_str(&ok(site.client(&url).args([
        "backup",
        "hv1/vm-a",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--json",
    ])))
    .expect("JSON");
    let manual = manual["id"].as_str().expect("snapshot id").to_owned();

    ok(site.attache().args([
        "policy",
        "add",
        "fleet",
        "--vms",
        "hv1/*",
        "tag:fleet",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--schedule",
        "0 0 3 * * *",
        "--keep-last",
        "1",
        "--retries",
        "1",
    ]));
    // The plugin policy in force is still `policy show` without a name.
    let shown = ok(site.attache().args(["policy", "show"]));
    assert!(shown.contains("filesystem"), "{shown}");
    let shown = ok(site.attache().args(["policy", "show", "fleet"]));
    assert!(
        shown.contains("hv1/* tag:fleet") && shown.contains("last 1"),
        "{shown}"
    );

    // One run: four jobs, watched while they run.
    let watcher = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut most = (0usize, HashMap::<String, usize>::new());
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                let (_, jobs) = request(&url, "GET", "/jobs?policy=fleet", Some(TOKEN), None);
                let jobs = jobs.as_array().cloned().unwrap_or_default();
                let running: Vec<&Value> =
                    jobs.iter().filter(|j| j["status"] == "running").collect();
                most.0 = most.0.max(running.len());
                for j in &running {
                    let hv = j["hypervisor"].as_str().unwrap_or("?").to_owned();
                    let n = running
                        .iter()
                        .filter(|x| x["hypervisor"] == j["hypervisor"])
                        .count();
                    let m = most.1.entry(hv).or_default();
                    *m = (*m).max(n);
                }
                if jobs.len() == 4
                    && jobs
                        .iter()
                        .all(|j| j["status"] != "running" && j["status"] != "queued")
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            most
        })
    };
    let t0 = Instant::now();
    let out = ok(site.client(&url).args(["policy", "run", "fleet", "--json"]));
    eprintln!("policy run of 4 VMs: {:.1} s", t0.elapsed().as_secs_f64());
    let run: Vec<Value> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(run.len(), 4, "{out}");
    let (most, most_per_hv) = watcher.join().expect("watcher");
    assert!(most <= 3, "{most} jobs ran at once (limit 3)");
    assert!(most_per_hv.values().all(|&n| n <= 2), "{most_per_hv:?}");
    assert!(
        most >= 2,
        "the jobs did not run concurrently ({most} at most)"
    );
    let first = jobs_of(&site, "fleet");
    assert_eq!(first.len(), 4);
    let (at_once, per_hv) = overlap(&first);
    assert!(
        at_once <= 3 && per_hv.values().all(|&n| n <= 2),
        "{at_once} {per_hv:?}"
    );
    let mut targets: Vec<&str> = first
        .iter()
        .map(|j| j["target"].as_str().unwrap_or(""))
        .collect();
    targets.sort();
    assert_eq!(targets, ["hv1/vm-a", "hv1/vm-b", "hv2/vm-c", "hv2/vm-d"]);
    for vm in &vms {
        vm.assert_clean();
    }

    // Each snapshot names the policy and restores its VM's file.
    let snaps = snapshots(&site);
    let mut first_ids = Vec::new();
    for j in &first {
        assert_eq!(j["status"], "succeeded", "{j}");
        let id = j["snapshot"].as_str().expect("the job's snapshot");
        first_ids.push(id.to_owned());
        let snap = snaps.iter().find(|s| s["id"] == id).expect("listed");
        assert_eq!(snap["policy"], "fleet");
        let target = j["target"].as_str().expect("target");
        assert_eq!(snap["source"], target);
        let to = site.path(&format!("restored-{}", target.replace('/', "-")));
        ok(site
            .attache()
            .args(["restore", id, "--item", "/data/blob.bin", "--to"])
            .arg(format!("local:{}", to.display())));
        assert_eq!(
            fs::read(to.join("data/blob.bin")).expect("restored"),
            fs::read(sources[target].join("blob.bin")).expect("source"),
            "{target}"
        );
    }

    // A second run: the policy keeps its last snapshot of each VM, so the
    // first run's go; the manual one stays.
    ok(site.client(&url).args(["policy", "run", "fleet"]));
    wait_for("the policy's retention", 60, || {
        let ids: Vec<String> = snapshots(&site)
            .iter()
            .map(|s| s["id"].as_str().unwrap_or("").to_owned())
            .collect();
        (!first_ids.iter().any(|f| ids.contains(f))).then_some(ids)
    });
    let snaps = snapshots(&site);
    assert!(
        snaps.iter().any(|s| s["id"] == manual.as_str()),
        "the manual snapshot was forgotten"
    );
    assert_eq!(snaps.iter().filter(|s| s["policy"] == "fleet").count(), 4);
    assert_eq!(snaps.len(), 5);
    let audit = ok(site.attache().args(["audit", "--json"]));
    assert!(
        audit.contains("policy.retention"),
        "the retention is not in the audit log"
    );

    // A schedule fires: every 2 seconds, one VM.
    ok(site.attache().args([
        "policy",
        "add",
        "tick",
        "--vms",
        "hv1/vm-b",
        "--plugin",
        "filesystem",
        "--include",
        "/data/id.txt",
        "--schedule",
        "*/2 * * * * *",
    ]));
    let ticked = wait_for("the schedule to fire", 60, || {
        jobs_of(&site, "tick")
            .into_iter()
            .find(|j| j["status"] == "succeeded")
    });
    ok(site.attache().args(["policy", "remove", "tick"]));
    assert_eq!(ticked["target"], "hv1/vm-b");
    wait_for("the scheduled jobs to end", 60, || {
        jobs_of(&site, "tick")
            .iter()
            .all(|j| j["status"] != "queued" && j["status"] != "running")
            .then_some(())
    });
    for vm in &vms {
        vm.assert_clean();
    }

    // A restart keeps the history and the policies.
    let before = get(&url, "/jobs").as_array().map(Vec::len).unwrap_or(0);
    assert!(before >= 10, "{before} jobs");
    drop(server);
    // Meanwhile a policy runs without a server, in a queue of `attache
    // policy run`'s own: the server starting now must not call its job
    // interrupted.
    ok(site.attache().args([
        "policy",
        "add",
        "solo",
        "--vms",
        "hv2/vm-d",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--schedule",
        "0 0 3 1 1 *",
    ]));
    let solo = site
        .attache()
        .args(["policy", "run", "solo", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn policy run");
    let journal = site.state().join("journal");
    let attached = || {
        fs::read_dir(&journal)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .unwrap_or(false)
    };
    wait_for("the local run's job to attach", 120, || {
        attached().then_some(())
    });
    let server = Served::start(&site.repo, TOKEN, &limits);
    let url = server.url.clone();
    let solo_job = &jobs_of(&site, "solo")[0];
    assert!(
        solo_job["status"] == "running" || solo_job["status"] == "succeeded",
        "{solo_job}"
    );
    let out = solo.wait_with_output().expect("policy run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ran: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (ran.len(), &ran[0]["status"]),
        (1, &Value::from("succeeded"))
    );
    assert_eq!(jobs_of(&site, "solo")[0]["status"], "succeeded");
    ok(site.attache().args(["policy", "remove", "solo"]));
    let after = get(&url, "/jobs");
    assert_eq!(after.as_array().map(Vec::len), Some(before + 1));
    let job = &first[0];
    let again = get(&url, &format!("/jobs/{}", job["id"].as_str().unwrap_or("")));
    assert_eq!(
        (&again["status"], &again["policy"]),
        (&job["status"], &job["policy"])
    );
    let policies = get(&url, "/policies");
    assert_eq!(
        policies
            .as_array()
            .map(|p| p.iter().map(|p| p["name"].clone()).collect::<Vec<_>>()),
        Some(vec![Value::from("fleet")])
    );

    // Killed (-9) mid-run: after a restart the jobs it left queued or
    // running are marked interrupted, each runs once more (the policy's
    // --retries 1), and every VM is clean.
    let (status, run) = request(&url, "POST", "/policies/fleet/run", Some(TOKEN), Some("{}"));
    assert_eq!(status, 202, "{run}");
    let third: Vec<String> = run["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(third.len(), 4);
    // A run while the previous one's jobs are left is refused.
    let (status, again) = request(&url, "POST", "/policies/fleet/run", Some(TOKEN), Some("{}"));
    assert_eq!(status, 409, "{again}");
    wait_for("a job to be attached", 120, || attached().then_some(()));
    drop(server);
    let server = Served::start(&site.repo, TOKEN, &limits);
    let marked: Vec<Value> = third
        .iter()
        .map(|id| get(&server.url, &format!("/jobs/{id}")))
        .collect();
    assert!(
        marked
            .iter()
            .all(|j| j["status"] == "interrupted" || j["status"] == "succeeded"),
        "{marked:?}"
    );
    let interrupted = marked
        .iter()
        .filter(|j| j["status"] == "interrupted")
        .count();
    assert!(interrupted >= 1, "{marked:?}");
    // Read from the state directory, with no server asked.
    let failed: Vec<Value> =
        serde_json::from_str(&ok(site.attache().args(["jobs", "--failed", "--json"])))
            .expect("JSON");
    assert_eq!(failed.len(), interrupted);
    assert!(failed
        .iter()
        .all(|j| j["error"].as_str().unwrap_or("").contains("interrupted")));
    // The policy runs each interrupted job once more (--retries 1), from
    // the server that started after the kill.
    for j in marked.iter().filter(|j| j["status"] == "interrupted") {
        let target = j["target"].as_str().expect("target").to_owned();
        let retry = wait_for(&format!("the retry on {target}"), 300, || {
            jobs_of(&site, "fleet").into_iter().find(|r| {
                r["target"] == target.as_str()
                    && r["request"]["backup"]["attempt"] == 1
                    && !matches!(r["status"].as_str(), Some("queued" | "running"))
            })
        });
        assert_eq!(retry["status"], "succeeded", "{retry}");
    }
    let retries = jobs_of(&site, "fleet")
        .iter()
        .filter(|r| r["request"]["backup"]["attempt"] == 1)
        .count();
    assert_eq!(retries, interrupted, "one retry per interrupted job");
    // Cleaned after the kill (each retry also found its VM clean enough
    // to attach), and after the retries.
    for vm in &vms {
        vm.assert_clean();
    }
    drop(server);
}

/// Bad input to the policy, tag and job commands is refused with a clear
/// error, and changes nothing.
#[test]
fn bad_policies_tags_and_names_are_refused_and_change_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    ok(attache(&repo).arg("init"));
    let add = |extra: &[&str]| {
        let mut c = attache(&repo);
        c.args(["policy", "add"]).args(extra);
        c
    };
    let base = [
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--schedule",
        "0 3 * * *",
    ];
    for (args, says) in [
        (vec!["p", "--vms", "vm1"], "expected HV/VM"),
        (vec!["p", "--vms", "tag:bad tag"], "invalid tag name"),
        (vec!["bad/name", "--vms", "hv/*"], "invalid policy name"),
    ] {
        let err = fails(add(&args).args(base));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let err = fails(&mut add(&[
        "p",
        "--vms",
        "hv/*",
        "--plugin",
        "filesystem",
        "--include",
        "data",
        "--schedule",
        "0 3 * * *",
    ]));
    assert!(err.contains("must be absolute"), "{err}");
    let err = fails(&mut add(&[
        "p",
        "--vms",
        "hv/*",
        "--plugin",
        "filesystem",
        "--include",
        "/data",
        "--schedule",
        "at noon",
    ]));
    assert!(err.contains("schedule"), "{err}");
    let listed = ok(attache(&repo).args(["policy", "list", "--json"]));
    assert_eq!(listed.trim(), "[]");

    ok(add(&["p", "--vms", "hv/*"]).args(base));
    let err = fails(add(&["p", "--vms", "hv/x"]).args(base));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(attache(&repo).args(["policy", "show", "nope"]));
    assert!(err.contains("no policy \"nope\""), "{err}");
    let err = fails(attache(&repo).args(["policy", "remove", "nope"]));
    assert!(err.contains("no policy"), "{err}");
    let err = fails(attache(&repo).args(["vm", "tag", "hv/vm1", "db"]));
    assert!(err.contains("no hypervisor \"hv\""), "{err}");
    let err = fails(attache(&repo).args(["vm", "tag", "vm1", "db"]));
    assert!(err.contains("HYPERVISOR/VM"), "{err}");
    // No hypervisor: the policy selects nothing, and runs nothing.
    let ran = ok(attache(&repo).args(["policy", "run", "p", "--json"]));
    assert_eq!(ran.trim(), "[]");
    let jobs = ok(attache(&repo).args(["jobs", "--json"]));
    assert_eq!(jobs.trim(), "[]");
    let shown = ok(attache(&repo).args(["policy", "show", "p", "--json"]));
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["vms"], serde_json::json!(["hv/*"]));
    assert!(
        shown["next_run"].as_i64().unwrap_or(0) > shown["created"].as_i64().unwrap_or(0),
        "{shown}"
    );
}
