//! Several `attache serve` workers on one PostgreSQL state database and one
//! S3 repository (`db::cluster`), over real QEMU VMs: 20 jobs posted to the
//! three workers in turn each run exactly once (by the database's job and
//! worker ids and by the repository's snapshots), and any worker answers
//! for any job; then a worker is killed (-9) in the middle of a job:
//! another one cleans its VM (nothing attached, nothing mounted), marks the
//! job interrupted, and the jobs queued behind it complete. The hypervisor
//! is registered once, in the shared database, and the workers attach one
//! container from one shared datastore.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Instant;

use attache_tests::pg::Pg;
use attache_tests::scenarios::{random_bytes, write, Site};
use attache_tests::seaweed::Seaweed;
use attache_tests::server::{request, Served};
use attache_tests::vm::{serial, GuestVm, TestVm};
use attache_tests::{attache_isolated, ok, wait_for, PASSWORD};
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef";
/// The workers' heartbeat lapse (seconds; ATTACHE_WORKER_LAPSE).
const LAPSE: u64 = 4;

fn backup(target: &str, include: &str) -> Value {
    json!({"kind": "backup", "backup": {
        "target": target, "plugin": "filesystem", "include": [include]}})
}

fn post(url: &str, body: &Value) -> String {
    let (st, job) = request(url, "POST", "/jobs", Some(TOKEN), Some(&body.to_string()));
    assert_eq!(st, 202, "{job}");
    job["id"].as_str().expect("job id").to_owned()
}

fn job(url: &str, id: &str) -> Value {
    let (st, job) = request(url, "GET", &format!("/jobs/{id}"), Some(TOKEN), None);
    assert_eq!(st, 200, "{job}");
    job
}

fn finished(j: &Value) -> bool {
    !matches!(j["status"].as_str(), Some("queued" | "running"))
}

#[test]
fn three_workers_run_each_job_once_and_clean_up_after_a_killed_one() {
    let _serial = serial();
    let site = Site::new();
    let pg = Pg::start();
    pg.psql("postgres", "CREATE DATABASE state");
    let state_db = pg
        .url("state")
        .replacen("postgres@", &format!("postgres:{}@", pg.password), 1);
    // One repository on a real S3 server (SeaweedFS), as the workers of a
    // site share one bucket.
    let s3 = Seaweed::start();
    s3.create_bucket("backups");
    let on_s3 = |cache: &str, state: &str| {
        let mut c = attache_isolated(&site.path(cache), &site.path(state));
        c.args(["--repo", "s3://backups/site"])
            .env("ATTACHE_PASSWORD", PASSWORD);
        s3.env(&mut c);
        c
    };
    ok(on_s3("x/cache", "x/state").arg("init"));

    // Two VMs; /data/small for the 20 jobs, /data/big for the one killed.
    let vms: Vec<TestVm> = std::thread::scope(|s| {
        let boots: Vec<_> = ["vm1", "vm2"]
            .into_iter()
            .map(|name| {
                let src = site.path(&format!("src-{name}"));
                write(&src.join("small/id.txt"), format!("{name}\n").as_bytes());
                write(&src.join("big/blob.bin"), &random_bytes(96 << 20, 9));
                let dir = site.path("vms");
                s.spawn(move || TestVm::boot(&dir, name, &src))
            })
            .collect();
        boots.into_iter().map(|b| b.join().expect("boot")).collect()
    });

    // Three workers, each its own state directory and cache (as on three
    // machines). The hypervisor is registered once, in the shared state
    // database, with one datastore all of them attach from: each worker
    // builds the container from the same signed agent in its own cache,
    // and the images are the same bytes, so each accepts the one another
    // placed there.
    let worker = |i: usize| on_s3(&format!("w{i}/cache"), &format!("w{i}/state"));
    let add = |i: usize| {
        let mut c = worker(i);
        c.args(["--state-db", &state_db, "hypervisor", "add", "hv1"])
            .args(["--driver", "qemu", "--vm-dir"])
            .arg(site.path("vms"))
            .arg("--datastore")
            .arg(site.path("ds"));
        c
    };
    ok(&mut add(0));
    let again = add(1).output().expect("attache");
    assert!(!again.status.success(), "registered twice");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already registered"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for i in 0..3 {
        let listed = ok(worker(i).args(["--state-db", &state_db, "hypervisor", "list", "--json"]));
        let listed: Value = serde_json::from_str(&listed).expect("JSON");
        assert_eq!(listed[0]["name"], "hv1", "worker {i}: {listed}");
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        // Not in the worker's own state directory.
        assert!(!site.path(&format!("w{i}/state/hypervisors.json")).exists());
    }
    let served: Vec<Served> = (0..3)
        .map(|i| {
            let mut c = worker(i);
            c.env("ATTACHE_WORKER_LAPSE", LAPSE.to_string())
                .env("RUST_LOG", "info");
            Served::start_as(c, TOKEN, &["--state-db", &state_db, "--max-jobs", "2"])
        })
        .collect();
    let urls: Vec<String> = served.iter().map(|s| s.url.clone()).collect();
    let workers = pg.psql("state", "SELECT id || ' ' || pid FROM workers ORDER BY id");
    let workers: BTreeMap<String, i32> = workers
        .lines()
        .map(|l| {
            let (id, pid) = l.split_once(' ').expect("id pid");
            (id.to_owned(), pid.parse().expect("pid"))
        })
        .collect();
    assert_eq!(workers.len(), 3, "{workers:?}");

    // 20 jobs, posted to the workers in turn, alternating VMs.
    let t0 = Instant::now();
    let ids: Vec<String> = (0..20)
        .map(|i| {
            let vm = if i % 2 == 0 { "hv1/vm1" } else { "hv1/vm2" };
            post(&urls[i % 3], &backup(vm, "/data/small"))
        })
        .collect();
    let ended: Vec<Value> = ids
        .iter()
        .map(|id| {
            wait_for(&format!("job {id}"), 600, || {
                Some(job(&urls[0], id)).filter(finished)
            })
        })
        .collect();
    eprintln!(
        "20 jobs on 2 VMs, 3 workers: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    for j in &ended {
        assert_eq!(j["status"], "succeeded", "{j}");
    }
    // Every worker answers the same for every job.
    for id in &ids {
        let a = job(&urls[0], id);
        for u in &urls[1..] {
            let b = job(u, id);
            assert_eq!(
                (&a["status"], &a["result"], &a["started"], &a["finished"]),
                (&b["status"], &b["result"], &b["started"], &b["finished"]),
                "{id}"
            );
        }
    }
    let (_, listed) = request(&urls[2], "GET", "/jobs", Some(TOKEN), None);
    assert_eq!(listed.as_array().map(Vec::len), Some(20), "{listed}");
    // Each ran once, on one of the workers, and made one snapshot.
    let rows = pg.psql(
        "state",
        "SELECT id || ' ' || worker || ' ' || status || ' ' || snapshot FROM jobs ORDER BY id",
    );
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    let mut snaps = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for l in rows.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 4, "{l}");
        assert!(workers.contains_key(f[1]), "{l}: not a worker's");
        assert_eq!(f[2], "succeeded", "{l}");
        *by_worker.entry(f[1].to_owned()).or_default() += 1;
        assert!(snaps.insert(f[3].to_owned()), "{l}: a snapshot twice");
        seen.insert(f[0].to_owned());
    }
    assert_eq!(seen, ids.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        by_worker.len() >= 2,
        "the jobs were not shared: {by_worker:?}"
    );
    eprintln!("jobs by worker: {by_worker:?}");
    let listed = ok(on_s3("x/cache", "x/state").args(["snapshots", "--json"]));
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed.len(), 20);
    let listed: BTreeSet<String> = listed
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed, snaps, "the jobs' snapshots are the repository's");
    for vm in &vms {
        vm.assert_clean();
    }
    assert_eq!(pg.psql("state", "SELECT count(*) FROM journal"), "0");
    // One container on the shared datastore, byte for byte the one each
    // worker that ran a job built in its own cache.
    let placed: Vec<_> = std::fs::read_dir(site.path("ds"))
        .expect("datastore")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(placed.len(), 1, "{placed:?}");
    let placed = std::fs::read(&placed[0]).expect("container");
    let mut built = 0;
    for i in 0..3 {
        let dir = site.path(&format!("w{i}/cache/containers"));
        for v in std::fs::read_dir(&dir).into_iter().flatten() {
            let iso = v.expect("entry").path().join("attache-agent.iso");
            if iso.is_file() {
                assert!(
                    std::fs::read(&iso).expect("iso") == placed,
                    "{}",
                    iso.display()
                );
                built += 1;
            }
        }
    }
    assert!(
        built >= by_worker.len(),
        "{built} containers built for {by_worker:?}"
    );
    // Every worker shows the same hypervisors.
    let (_, first) = request(&urls[0], "GET", "/hypervisors", Some(TOKEN), None);
    assert_eq!(first[0]["name"], "hv1", "{first}");
    for u in &urls[1..] {
        let (_, other) = request(u, "GET", "/hypervisors", Some(TOKEN), None);
        assert_eq!(other[0]["name"], first[0]["name"]);
        assert_eq!(other[0]["datastores"], first[0]["datastores"]);
    }

    // A long job on vm2, of a policy that runs an interrupted job once
    // more; once its runner runs, its worker is killed.
    let policy = json!({"name": "big", "vms": ["hv1/vm2"], "plugin": "filesystem",
        "include": ["/data/big"], "schedule": "0 0 1 1 *", "retries": 1});
    let (st, body) = request(
        &urls[1],
        "POST",
        "/policies",
        Some(TOKEN),
        Some(&policy.to_string()),
    );
    assert_eq!(st, 201, "{body}");
    let (st, run) = request(
        &urls[0],
        "POST",
        "/policies/big/run",
        Some(TOKEN),
        Some("{}"),
    );
    assert_eq!(st, 202, "{run}");
    let long = run["jobs"][0]["id"]
        .as_str()
        .expect("the policy's job")
        .to_owned();
    let (victim, entry) = wait_for("the long job's runner", 120, || {
        let row = pg.psql(
            "state",
            &format!(
                "SELECT j.worker || ' ' || (g.entry::json->>'runner_pid') FROM jobs j
                 JOIN journal g ON g.worker = j.worker
                 WHERE j.id = '{long}' AND j.status = 'running'
                   AND g.entry::json->>'runner_pid' IS NOT NULL"
            ),
        );
        row.split_once(' ')
            .map(|(w, p)| (w.to_owned(), p.to_owned()))
    });
    let pid = workers[&victim];
    let killed_at = Instant::now();
    ok(Command::new("kill").args(["-9", &pid.to_string()]));
    eprintln!("killed worker {victim} (pid {pid}) with runner {entry} in vm2");
    let alive: Vec<String> = wait_for("the killed worker to stop answering", 30, || {
        let up: Vec<String> = urls
            .iter()
            .filter(|u| request(u, "GET", "/health", None, None).0 == 200)
            .cloned()
            .collect();
        Some(up).filter(|u| u.len() == 2)
    });
    // Jobs queued behind it: one on its VM, one on the other.
    let behind: Vec<String> = [("hv1/vm2", 0), ("hv1/vm1", 1)]
        .iter()
        .map(|(vm, w)| post(&alive[*w], &backup(vm, "/data/small")))
        .collect();
    let ended = wait_for("the killed job to be marked", 120, || {
        Some(job(&alive[0], &long)).filter(finished)
    });
    eprintln!(
        "the dead worker's job marked after {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(ended["status"], "interrupted", "{ended}");
    assert!(
        ended["error"]
            .as_str()
            .is_some_and(|e| e.contains("heartbeat lapsed")),
        "{ended}"
    );
    // Its policy says once more: a live worker runs it again, and its
    // snapshot is the policy's.
    let retry = wait_for("the interrupted job's retry", 60, || {
        let id = pg.psql(
            "state",
            &format!(
                "SELECT id FROM jobs WHERE policy = 'big' AND id <> '{long}'
                   AND (request::json->'backup'->>'attempt') = '1'"
            ),
        );
        Some(id).filter(|i| !i.is_empty())
    });
    let retried = wait_for("the retry to finish", 300, || {
        Some(job(&alive[0], &retry)).filter(finished)
    });
    assert_eq!(retried["status"], "succeeded", "{retried}");
    assert_eq!(retried["target"], "hv1/vm2", "{retried}");
    let w = pg.psql(
        "state",
        &format!("SELECT worker FROM jobs WHERE id = '{retry}'"),
    );
    assert_ne!(w, victim, "the dead worker ran the retry");
    assert_eq!(
        pg.psql("state", "SELECT count(*) FROM jobs WHERE policy = 'big'"),
        "2",
        "one retry, no more"
    );
    let snap = retried["snapshot"]
        .as_str()
        .or(retried["result"]["id"].as_str())
        .expect("the retry's snapshot")
        .to_owned();
    let shown = ok(on_s3("x/cache", "x/state").args(["snapshots", "--json"]));
    let shown: Vec<Value> = serde_json::from_str(&shown).expect("JSON");
    let s = shown
        .iter()
        .find(|s| s["id"] == snap.as_str())
        .expect("the retry's snapshot in the repository");
    assert_eq!(s["policy"], "big", "{s}");
    for id in &behind {
        let j = wait_for(&format!("job {id}"), 300, || {
            Some(job(&alive[1], id)).filter(finished)
        });
        assert_eq!(j["status"], "succeeded", "{j}");
        let w = pg.psql(
            "state",
            &format!("SELECT worker FROM jobs WHERE id = '{id}'"),
        );
        assert_ne!(w, victim, "a dead worker ran {id}");
    }
    // The VM is clean: the container detached, nothing mounted, the
    // runner gone, and the dead worker's journal entry and row removed.
    for vm in &vms {
        vm.assert_clean();
    }
    assert_eq!(pg.psql("state", "SELECT count(*) FROM journal"), "0");
    assert_eq!(
        pg.psql(
            "state",
            &format!("SELECT count(*) FROM workers WHERE id = '{victim}'")
        ),
        "0"
    );
    drop(served);
}
