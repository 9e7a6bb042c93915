//! Roles and scopes of API tokens: an operator backs up and restores only
//! on its targets and below its prefixes, and manages no token; an auditor
//! reads snapshots, jobs and the audit log and starts nothing. Every
//! refusal is a 403 with a JSON error; the jobs that ran, and the one that
//! was refused, are in the audit log with the token that asked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use attache_tests::server::{free_port, request, wait_healthy, Served};
use attache_tests::{attache, ok, output, tree};
use serde_json::{json, Value};

/// The server's single token: an admin.
const ADMIN: &str = "roles-test-admin-token-0123456789";

struct Server {
    _served: Served,
    url: String,
    repo: PathBuf,
    t: tempfile::TempDir,
}

fn start() -> Server {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    let served = Served::start(&repo, ADMIN, &[]);
    Server {
        url: served.url.clone(),
        _served: served,
        repo,
        t,
    }
}

fn call(s: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    request(&s.url, method, path, Some(token), body.as_deref())
}

/// A 403 with a JSON error that says why (`needle`).
fn forbidden(r: (u16, Value), needle: &str, what: &str) {
    assert_eq!(r.0, 403, "{what}: {}", r.1);
    let e = r.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no JSON error: {}", r.1));
    assert!(e.contains(needle), "{what}: {e:?} does not say {needle:?}");
}

fn wait(s: &Server, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, job) = call(s, token, "GET", &format!("/jobs/{id}"), None);
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

fn create_token(s: &Server, body: Value) -> (String, String) {
    let (st, made) = call(s, ADMIN, "POST", "/tokens", Some(body));
    assert_eq!(st, 201, "{made}");
    (
        made["token"].as_str().expect("token").to_owned(),
        made["id"].as_str().expect("id").to_owned(),
    )
}

fn backup(target: &str, include: &Path) -> Value {
    json!({ "kind": "backup", "backup": { "target": target, "plugin": "filesystem", "include": [include] } })
}

fn restore(snapshot: &str, to: &str) -> Value {
    json!({ "kind": "restore", "restore": { "snapshot": snapshot, "to": to } })
}

#[test]
fn operators_stay_in_scope_and_auditors_only_read() {
    let s = start();
    let src = s.t.path().join("src");
    tree::make(&src, 20, 1 << 20);
    let allowed = s.t.path().join("restores");
    std::fs::create_dir_all(&allowed).unwrap();
    let (operator, op_id) = create_token(
        &s,
        json!({ "role": "operator", "targets": ["local", "hv1/*"], "restore_to": [allowed] }),
    );
    let (auditor, au_id) = create_token(&s, json!({ "role": "auditor" }));
    // Only hashes are stored.
    let stored =
        std::fs::read_to_string(s.repo.with_extension("state").join("tokens.json")).unwrap();
    assert!(!stored.contains(&operator) && !stored.contains(&auditor));

    // The operator backs up its target...
    let (st, job) = call(&s, &operator, "POST", "/jobs", Some(backup("local", &src)));
    assert_eq!(st, 202, "{job}");
    let done = wait(&s, &operator, job["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    let snap = done["result"]["id"].as_str().unwrap().to_owned();
    // ...but not one outside its scope.
    forbidden(
        call(
            &s,
            &operator,
            "POST",
            "/jobs",
            Some(backup("hv2/vm1", &src)),
        ),
        "may not back up target \"hv2/vm1\"",
        "an operator's backup outside its targets",
    );
    // It restores below its prefix...
    let dest = allowed.join("one");
    let (st, job) = call(
        &s,
        &operator,
        "POST",
        "/jobs",
        Some(restore(&snap, &format!("local:{}", dest.display()))),
    );
    assert_eq!(st, 202, "{job}");
    let done = wait(&s, &operator, job["id"].as_str().unwrap());
    assert_eq!(done["status"], "succeeded", "{done}");
    tree::assert_same(&src, &attache_tests::restored(&dest, &src));
    // ...and nowhere else: another directory, a way out by `..`, the
    // original place, a target outside its scope.
    let outside = s.t.path().join("elsewhere");
    for (to, needle) in [
        (format!("local:{}", outside.display()), "may not restore to"),
        (
            format!("local:{}/../elsewhere", allowed.display()),
            "without `..`",
        ),
        ("local".to_owned(), "original place"),
        (
            format!("hv2/vm1:{}", allowed.display()),
            "may not restore to target",
        ),
    ] {
        forbidden(
            call(&s, &operator, "POST", "/jobs", Some(restore(&snap, &to))),
            needle,
            &format!("an operator's restore to {to}"),
        );
    }
    assert!(!outside.exists(), "a refused restore wrote");
    // It may not name a file on the server for a plugin to read.
    let mut b = backup("local", &src);
    b["backup"]["app_password_file"] = json!("/etc/shadow");
    forbidden(
        call(&s, &operator, "POST", "/jobs", Some(b)),
        "may not name a file",
        "app_password_file",
    );
    // It manages no token and reads no audit log.
    forbidden(
        call(
            &s,
            &operator,
            "POST",
            "/tokens",
            Some(json!({ "role": "admin" })),
        ),
        "needs the role admin",
        "an operator creating a token",
    );
    forbidden(
        call(&s, &operator, "GET", "/tokens", None),
        "needs the role admin",
        "listing tokens",
    );
    forbidden(
        call(&s, &operator, "DELETE", &format!("/tokens/{au_id}"), None),
        "needs the role admin",
        "revoking a token",
    );
    forbidden(
        call(&s, &operator, "GET", "/audit", None),
        "admin or auditor",
        "an operator reading the audit log",
    );
    // It reads snapshots and jobs.
    assert_eq!(call(&s, &operator, "GET", "/snapshots", None).0, 200);
    // It verifies the repository, whatever its targets (a verify changes
    // nothing), and the auditor reads the result but starts none.
    let verify = json!({ "kind": "verify", "verify": { "read_data": true } });
    let (st, v) = call(&s, &operator, "POST", "/jobs", Some(verify.clone()));
    assert_eq!(st, 202, "{v}");
    let v_id = v["id"].as_str().unwrap().to_owned();
    let done = wait(&s, &operator, &v_id);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["clean"], true, "{done}");
    let (st, seen) = call(&s, &auditor, "GET", &format!("/jobs/{v_id}"), None);
    assert_eq!((st, &seen["result"]), (200, &done["result"]), "{seen}");
    forbidden(
        call(&s, &auditor, "POST", "/jobs", Some(verify)),
        "needs the role admin or operator",
        "an auditor starting a verify",
    );

    // The auditor reads...
    assert_eq!(call(&s, &auditor, "GET", "/snapshots", None).0, 200);
    assert_eq!(call(&s, &auditor, "GET", "/jobs", None).0, 200);
    let (st, log) = call(&s, &auditor, "GET", "/audit", None);
    assert_eq!(st, 200, "{log}");
    // ...and starts and stops nothing.
    forbidden(
        call(&s, &auditor, "POST", "/jobs", Some(backup("local", &src))),
        "needs the role admin or operator",
        "an auditor starting a job",
    );
    forbidden(
        call(
            &s,
            &auditor,
            "DELETE",
            &format!("/jobs/{}", job["id"].as_str().unwrap()),
            None,
        ),
        "needs the role admin or operator",
        "an auditor cancelling a job",
    );
    forbidden(
        call(
            &s,
            &auditor,
            "POST",
            "/tokens",
            Some(json!({ "role": "auditor" })),
        ),
        "needs the role admin",
        "an auditor creating a token",
    );

    // The log names the operator for its three jobs (a backup, a restore,
    // a verify), the refused backup, and
    // the admin for the tokens.
    let log = log.as_array().expect("entries");
    let by = |event: &str, actor: &str| {
        log.iter()
            .filter(|e| {
                e["event"] == event && e["actor"].as_str().is_some_and(|a| a.contains(actor))
            })
            .count()
    };
    assert_eq!(by("job.start", &op_id), 3, "{log:#?}");
    assert_eq!(by("job.end", &op_id), 3);
    assert!(by("job.denied", &op_id) >= 1);
    // Refusals by role are recorded too (off the request's thread: read
    // the log again once they are in).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, again) = call(&s, ADMIN, "GET", "/audit", None);
        let denied = again.as_array().unwrap().iter().any(|e| {
            e["event"] == "request.denied"
                && e["actor"].as_str().is_some_and(|a| a.contains(&au_id))
                && e["data"]["path"] == "/jobs"
        });
        if denied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the auditor's refused POST /jobs is not in the log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(by("token.create", "legacy"), 2);
    assert!(log.iter().any(|e| e["event"] == "restore.destination"
        && e["data"]["to"]
            .as_str()
            .is_some_and(|t| t.contains("restores/one"))));
    assert!(log
        .iter()
        .any(|e| e["event"] == "plugin.grants" && e["data"]["plugin"] == "filesystem"));

    // The OpenAPI document says who may call what.
    let (_, doc) = call(&s, &auditor, "GET", "/openapi.json", None);
    assert_eq!(
        doc["paths"]["/jobs"]["post"]["x-roles"],
        json!(["admin", "operator"])
    );
    assert_eq!(
        doc["paths"]["/audit"]["get"]["x-roles"],
        json!(["admin", "auditor"])
    );
    assert_eq!(doc["paths"]["/tokens"]["post"]["x-roles"], json!(["admin"]));

    // A token made by the command line on the server's state directory
    // works at once; a revoked one does not.
    let out = ok(attache(&s.repo).args(["token", "create", "--role", "auditor"]));
    let cli_token = out.trim().to_owned();
    assert_eq!(call(&s, &cli_token, "GET", "/audit", None).0, 200);
    let (st, _) = call(&s, ADMIN, "DELETE", &format!("/tokens/{au_id}"), None);
    assert_eq!(st, 200);
    assert_eq!(call(&s, &auditor, "GET", "/snapshots", None).0, 401);
    let listed = ok(attache(&s.repo).args(["token", "list", "--json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains("hash"), "{listed}");
}

#[test]
fn token_scopes_are_checked_and_a_server_needs_some_token() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    for args in [
        vec!["--role", "operator"],
        vec![
            "--role",
            "operator",
            "--targets",
            "local",
            "--restore-to",
            "relative/dir",
        ],
        vec!["--role", "auditor", "--targets", "local"],
    ] {
        let o = output(attache(&repo).args(["token", "create"]).args(&args));
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(!o.stderr.is_empty());
    }
    // No ATTACHE_TOKEN and no stored token: the server does not start.
    let o = output(attache(&repo).env_remove("ATTACHE_TOKEN").args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("token create"));
    // A stored admin token alone is enough.
    let admin = ok(attache(&repo).args(["token", "create", "--role", "admin"]))
        .trim()
        .to_owned();
    let port = free_port();
    let mut child = attache(&repo)
        .env_remove("ATTACHE_TOKEN")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url);
    let (st, made) = request(
        &url,
        "POST",
        "/tokens",
        Some(&admin),
        Some(r#"{"role":"operator","targets":["local"]}"#),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(st, 201, "{made}");
}

/// Registers hypervisor `hv1` with VMs `a` and `b`: sockets without a
/// QEMU behind them (the socket file stays once its listener is gone: a VM
/// that is listed, and refuses connections).
fn listed_vms(s: &Server) {
    let vms = s.t.path().join("vms");
    std::fs::create_dir_all(&vms).expect("mkdir");
    for vm in ["a", "b"] {
        drop(std::os::unix::net::UnixListener::bind(vms.join(format!("{vm}.qmp"))).expect("bind"));
    }
    ok(attache(&s.repo)
        .args(["hypervisor", "add", "hv1", "--driver", "qemu", "--vm-dir"])
        .arg(&vms)
        .arg("--datastore")
        .arg(s.t.path().join("ds")));
}

/// Backup policies: admins add and remove them, every role reads them, and
/// an operator runs one only when every VM it selects is in its scope
/// (then all its jobs are queued; else none). The VMs are sockets without
/// a QEMU behind them: their jobs fail, which is not what is tested here.
#[test]
fn policies_are_written_by_admins_and_run_within_an_operators_scope() {
    let s = start();
    listed_vms(&s);
    let (operator, _) = create_token(&s, json!({ "role": "operator", "targets": ["hv1/a"] }));
    let (auditor, _) = create_token(&s, json!({ "role": "auditor" }));
    let policy = |name: &str, vms: &[&str]| {
        json!({ "name": name, "vms": vms, "plugin": "filesystem", "include": ["/data"],
                "schedule": "0 3 * * *", "keep": { "last": 2 } })
    };

    forbidden(
        call(
            &s,
            &operator,
            "POST",
            "/policies",
            Some(policy("all", &["hv1/*"])),
        ),
        "admin",
        "an operator adds a policy",
    );
    let (st, added) = call(
        &s,
        ADMIN,
        "POST",
        "/policies",
        Some(policy("all", &["hv1/*"])),
    );
    assert_eq!(st, 201, "{added}");
    assert!(added["created"].as_i64().unwrap_or(0) > 0, "{added}");
    let (st, again) = call(
        &s,
        ADMIN,
        "POST",
        "/policies",
        Some(policy("all", &["hv1/x"])),
    );
    assert_eq!(st, 409, "{again}");
    let mut bad = policy("bad", &["hv1/*"]);
    bad["schedule"] = json!("now and then");
    let (st, refused) = call(&s, ADMIN, "POST", "/policies", Some(bad));
    assert_eq!(st, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap_or("").contains("schedule"),
        "{refused}"
    );
    let (st, listed) = call(&s, &auditor, "GET", "/policies", None);
    assert_eq!(st, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    forbidden(
        call(&s, &auditor, "POST", "/policies/all/run", Some(json!({}))),
        "operator",
        "an auditor runs a policy",
    );

    // hv1/b is outside the operator's scope: nothing runs.
    forbidden(
        call(&s, &operator, "POST", "/policies/all/run", Some(json!({}))),
        "hv1/b",
        "an operator runs a policy beyond its scope",
    );
    let (_, jobs) = call(&s, ADMIN, "GET", "/jobs?policy=all", None);
    assert_eq!(jobs, json!([]));

    let (st, _) = call(
        &s,
        ADMIN,
        "POST",
        "/policies",
        Some(policy("mine", &["hv1/a"])),
    );
    assert_eq!(st, 201);
    let (st, run) = call(&s, &operator, "POST", "/policies/mine/run", Some(json!({})));
    assert_eq!(st, 202, "{run}");
    let jobs = run["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{run}");
    assert_eq!(
        (&jobs[0]["target"], &jobs[0]["policy"]),
        (&json!("hv1/a"), &json!("mine"))
    );
    let done = wait(&s, &operator, jobs[0]["id"].as_str().expect("id"));
    assert_eq!(done["status"], "failed", "{done}");
    let (_, failed) = call(&s, &auditor, "GET", "/jobs?policy=mine&failed=true", None);
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed}");
    let (_, none) = call(&s, &auditor, "GET", "/jobs?vm=hv1/b", None);
    assert_eq!(none, json!([]));

    forbidden(
        call(&s, &operator, "DELETE", "/policies/all", None),
        "admin",
        "an operator removes a policy",
    );
    let (st, _) = call(&s, ADMIN, "DELETE", "/policies/all", None);
    assert_eq!(st, 200);
    let (st, _) = call(&s, ADMIN, "GET", "/policies/all", None);
    assert_eq!(st, 404);
}

/// VM tags through the API: every role reads them, an admin sets them,
/// bad tags and unknown hypervisors are refused and change nothing, and a
/// policy selecting `tag:NAME` then runs on the tagged VM.
#[test]
fn tags_are_set_by_admins_read_by_all_and_select_for_policies() {
    let s = start();
    listed_vms(&s);
    let (operator, _) = create_token(&s, json!({ "role": "operator", "targets": ["hv1/*"] }));
    let (auditor, _) = create_token(&s, json!({ "role": "auditor" }));

    forbidden(
        call(
            &s,
            &operator,
            "POST",
            "/tags/hv1/a",
            Some(json!({ "add": ["web"] })),
        ),
        "admin",
        "an operator tags a VM",
    );
    let (st, tagged) = call(
        &s,
        ADMIN,
        "POST",
        "/tags/hv1/a",
        Some(json!({ "add": ["web", "prod"] })),
    );
    assert_eq!(st, 200, "{tagged}");
    assert_eq!(tagged["vm"], "hv1/a");
    let mut now: Vec<String> = serde_json::from_value(tagged["tags"].clone()).expect("tags");
    now.sort();
    assert_eq!(now, ["prod", "web"]);
    let (st, after) = call(
        &s,
        ADMIN,
        "POST",
        "/tags/hv1/a",
        Some(json!({ "remove": ["prod"] })),
    );
    assert_eq!((st, &after["tags"]), (200, &json!(["web"])), "{after}");
    for (path, body, want) in [
        ("/tags/hv1/a", json!({ "add": ["no spaces"] }), 400),
        ("/tags/hv1/a", json!({}), 400),
        ("/tags/hv1/a", json!({ "add": ["x"], "extra": 1 }), 422),
        ("/tags/nohv/a", json!({ "add": ["web"] }), 404),
    ] {
        let (st, e) = call(&s, ADMIN, "POST", path, Some(body.clone()));
        assert_eq!(st, want, "{path} {body}: {e}");
        assert!(e["error"].is_string(), "{e}");
    }
    let (st, all) = call(&s, &auditor, "GET", "/tags", None);
    assert_eq!(st, 200);
    assert_eq!(all, json!([{ "vm": "hv1/a", "tags": ["web"] }]));
    // The CLI sees the same.
    let listed = ok(attache(&s.repo).args(["vm", "list"]));
    assert!(
        listed.lines().any(|l| l.contains('a') && l.contains("web")),
        "{listed}"
    );

    let policy = json!({ "name": "web", "vms": ["tag:web"], "plugin": "filesystem",
                         "include": ["/data"], "schedule": "0 3 * * *" });
    let (st, _) = call(&s, ADMIN, "POST", "/policies", Some(policy));
    assert_eq!(st, 201);
    let (st, run) = call(&s, ADMIN, "POST", "/policies/web/run", Some(json!({})));
    assert_eq!(st, 202, "{run}");
    let targets: Vec<&str> = run["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["target"].as_str())
        .collect();
    assert_eq!(targets, ["hv1/a"], "{run}");
    let (_, audit) = call(&s, ADMIN, "GET", "/audit", None);
    assert!(audit.to_string().contains("vm.tag"), "{audit}");
}
