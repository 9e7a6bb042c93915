//! `attache serve`: authentication, JSON errors, jobs with progress and
//! cancellation, concurrent backups, and the command line as its client.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attache_tests::server::{client, request, Served};
use attache_tests::{attache, flip_a_byte_in_a_pack, ok, tree};
use serde_json::{json, Value};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Server {
    _served: Served,
    url: String,
    repo: PathBuf,
    _t: tempfile::TempDir,
}

fn start(max_jobs: usize) -> Server {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    let max_jobs = max_jobs.to_string();
    let served = Served::start(
        &repo,
        TOKEN,
        &["--max-jobs", &max_jobs, "--max-jobs-per-target", "2"],
    );
    Server {
        url: served.url.clone(),
        _served: served,
        repo,
        _t: t,
    }
}

/// (status, JSON body) of a request; `token` None sends no Authorization.
fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    request(&s.url, method, path, token, body)
}

fn authed(s: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    call(s, method, path, Some(TOKEN), body)
}

fn wait(s: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, job) = authed(s, "GET", &format!("/jobs/{id}"), None);
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

fn backup_body(include: &Path) -> String {
    json!({ "kind": "backup", "backup": { "target": "local", "plugin": "filesystem", "include": [include] } }).to_string()
}

#[test]
fn a_verify_job_reports_a_clean_repository_then_names_the_damage() {
    let s = start(2);
    let src = s.repo.with_file_name("src");
    tree::make(&src, 8, 1 << 18);
    let (st, job) = authed(&s, "POST", "/jobs", Some(&backup_body(&src)));
    assert_eq!(st, 202, "{job}");
    let backed = wait(&s, job["id"].as_str().expect("id"));
    assert_eq!(backed["status"], "succeeded", "{backed}");
    let snap = backed["result"]["id"]
        .as_str()
        .expect("snapshot")
        .to_owned();

    // Unknown fields are refused, like every job request's.
    let (st, e) = authed(
        &s,
        "POST",
        "/jobs",
        Some(r#"{"kind":"verify","verify":{"read_data":true,"repair":true}}"#),
    );
    assert_eq!(st, 422, "{e}");
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field `repair`")),
        "{e}"
    );

    let verify = |read_data: bool| -> Value {
        let body = json!({ "kind": "verify", "verify": { "read_data": read_data } }).to_string();
        let (st, job) = authed(&s, "POST", "/jobs", Some(&body));
        assert_eq!(st, 202, "{job}");
        assert_eq!(
            (&job["kind"], &job["target"]),
            (&json!("verify"), &json!("repository"))
        );
        let done = wait(&s, job["id"].as_str().expect("id"));
        assert_eq!(done["status"], "succeeded", "the check ran: {done}");
        done["result"].clone()
    };
    let clean = verify(true);
    assert_eq!(clean["clean"], true, "{clean}");
    assert_eq!(clean["snapshots"], 1, "{clean}");
    assert!(clean["packs"].as_u64().unwrap_or(0) >= 1, "{clean}");
    assert!(clean["blobs_checked"].as_u64().unwrap_or(0) >= 8, "{clean}");
    assert_eq!(clean["errors"], json!([]), "{clean}");

    let pack = flip_a_byte_in_a_pack(&s.repo);
    let name = pack
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let damaged = verify(true);
    assert_eq!(damaged["clean"], false, "{damaged}");
    let errors = damaged["errors"].to_string();
    assert!(errors.contains(&name), "the pack is named: {errors}");
    assert!(
        !damaged["bad_blobs"]
            .as_object()
            .expect("bad_blobs")
            .is_empty(),
        "{damaged}"
    );
    let items = damaged["affected"][&snap]
        .as_array()
        .expect("affected items of the snapshot");
    assert!(
        items.iter().any(|i| i
            .as_str()
            .is_some_and(|i| i.starts_with(src.to_str().expect("utf-8")))),
        "a damaged file of the source is named: {items:?}"
    );
    // The audit log has both verifies, started and ended.
    let (st, log) = authed(&s, "GET", "/audit", None);
    assert_eq!(st, 200, "{log}");
    let ends = log
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["event"] == "job.end" && e["data"]["kind"] == "verify")
        .count();
    assert_eq!(ends, 2, "{log}");
}

#[test]
fn hypervisors_list_their_vms_states_and_attached_containers() {
    let s = start(1);
    let (st, none) = authed(&s, "GET", "/hypervisors", None);
    assert_eq!((st, &none), (200, &json!([])), "none registered yet");
    let container = attache_tests::hypervisor::register_stale(&s.repo);
    let t0 = Instant::now();
    let (st, hvs) = authed(&s, "GET", "/hypervisors", None);
    assert_eq!(st, 200, "{hvs}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        t0.elapsed()
    );
    let hv = &hvs[0];
    assert_eq!(
        (&hv["name"], &hv["driver"]),
        (&json!("hv1"), &json!("qemu")),
        "{hvs}"
    );
    assert_eq!(hv["error"], Value::Null, "{hvs}");
    let vms = hv["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 1, "{hvs}");
    assert_eq!(vms[0]["name"], "web01");
    let state = vms[0]["state"].as_str().expect("state");
    assert!(state.starts_with("unreachable ("), "QEMU is gone: {state}");
    let agent = vms[0]["guest_agent"].as_str().expect("guest_agent");
    assert!(agent.starts_with("silent ("), "no guest agent: {agent}");
    assert_eq!(vms[0]["attached"], json!([container]), "from the journal");
    // Nothing without a token.
    assert_eq!(call(&s, "GET", "/hypervisors", None, None).0, 401);
}

#[test]
fn every_route_but_health_needs_the_token_and_errors_are_json() {
    let s = start(2);
    assert_eq!(call(&s, "GET", "/health", None, None).0, 200);
    for path in [
        "/snapshots",
        "/jobs",
        "/openapi.json",
        "/metrics",
        "/find?pattern=x",
        "/no/such/route",
    ] {
        let (st, body) = call(&s, "GET", path, None, None);
        assert_eq!(st, 401, "{path} without a token");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("missing")),
            "{path}: {body}"
        );
        let (st, body) = call(&s, "GET", path, Some("not-the-token"), None);
        assert_eq!(st, 401, "{path} with a wrong token");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("wrong")),
            "{path}: {body}"
        );
    }
    // Malformed JSON, wrong shapes and unknown fields: 4xx with a JSON error.
    for bad in [
        "{not json",
        "[]",
        r#"{"kind":"explode"}"#,
        r#"{"kind":"backup","backup":{"target":"local","plugin":"filesystem","include":["/x"],"extra":1}}"#,
    ] {
        let (st, body) = authed(&s, "POST", "/jobs", Some(bad));
        assert!((400..500).contains(&st), "{bad}: {st}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let (st, body) = authed(
        &s,
        "POST",
        "/jobs",
        Some(
            r#"{"kind":"backup","backup":{"target":"mars","plugin":"filesystem","include":["/x"]}}"#,
        ),
    );
    assert_eq!(st, 400, "{body}");
    // Unknown ids.
    for (m, path) in [
        ("GET", "/jobs/0000"),
        ("DELETE", "/jobs/0000"),
        ("GET", "/jobs/0000/events"),
        ("GET", "/snapshots/ffffffff"),
        ("GET", "/snapshots/ffffffff/items"),
        ("GET", "/snapshots/ffffffff/children"),
    ] {
        let (st, body) = authed(&s, m, path, None);
        assert_eq!(st, 404, "{m} {path}: {body}");
        assert!(body["error"].is_string(), "{m} {path}: {body}");
    }
    let (st, body) = authed(&s, "GET", "/find", None);
    assert_eq!(st, 400, "{body}");
    // The API describes itself, route by route.
    let (st, doc) = authed(&s, "GET", "/openapi.json", None);
    assert_eq!(st, 200);
    for p in [
        "/health",
        "/snapshots",
        "/snapshots/{id}",
        "/snapshots/{id}/items",
        "/snapshots/{id}/children",
        "/find",
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/events",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is not documented");
    }
}

#[test]
fn concurrent_backups_succeed_and_jobs_report_and_cancel() {
    let s = start(2);
    let t = tempfile::tempdir().expect("tempdir");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    tree::make(&a, 300, 20 << 20);
    tree::make(&b, 300, 20 << 20);
    // Two backups into one repository at once.
    let (sa, ja) = authed(&s, "POST", "/jobs", Some(&backup_body(&a)));
    let (sb, jb) = authed(&s, "POST", "/jobs", Some(&backup_body(&b)));
    assert_eq!((sa, sb), (202, 202), "{ja} {jb}");
    let ja = wait(&s, ja["id"].as_str().expect("id"));
    let jb = wait(&s, jb["id"].as_str().expect("id"));
    assert_eq!(ja["status"], "succeeded", "{ja}");
    assert_eq!(jb["status"], "succeeded", "{jb}");
    assert!(
        ja["progress"]["items"].as_u64().unwrap_or(0) > 300,
        "progress was reported: {ja}"
    );
    let (_, snaps) = authed(&s, "GET", "/snapshots", None);
    assert_eq!(snaps.as_array().map(Vec::len), Some(2));
    ok(attache(&s.repo).args(["verify", "--read-data"]));

    // Events: the state now, then until the end (here: already finished).
    let mut resp = client()
        .get(format!(
            "{}/jobs/{}/events",
            s.url,
            ja["id"].as_str().expect("id")
        ))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("events");
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    let text = resp.body_mut().read_to_string().expect("body");
    assert!(
        text.contains("event: status") && text.contains("\"succeeded\""),
        "{text}"
    );

    // A cancelled backup leaves no snapshot.
    let big = t.path().join("big");
    tree::make(&big, 2000, 300 << 20);
    let (_, job) = authed(&s, "POST", "/jobs", Some(&backup_body(&big)));
    let id = job["id"].as_str().expect("id").to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let (st, _) = authed(&s, "DELETE", &format!("/jobs/{id}"), None);
    assert_eq!(st, 202);
    let done = wait(&s, &id);
    assert_eq!(done["status"], "cancelled", "{done}");
    let (st, _) = authed(&s, "DELETE", &format!("/jobs/{id}"), None);
    assert_eq!(st, 409, "a finished job cannot be cancelled again");
    let (_, snaps) = authed(&s, "GET", "/snapshots", None);
    assert_eq!(
        snaps.as_array().map(Vec::len),
        Some(2),
        "no snapshot from the cancelled job"
    );
    ok(attache(&s.repo).args(["verify", "--read-data"]));

    let (_, metrics) = authed(&s, "GET", "/metrics", None);
    let m = metrics.as_str().expect("text");
    assert!(
        m.contains("attache_jobs_finished_total{status=\"succeeded\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("attache_jobs_finished_total{status=\"cancelled\"} 1"),
        "{m}"
    );
}

#[test]
fn the_command_line_works_through_the_server() {
    let s = start(2);
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    fs::create_dir_all(src.join("www")).expect("mkdir");
    fs::write(src.join("www/index.html"), b"<h1>served</h1>").expect("write");
    let via = |args: &[&str]| -> Command {
        // No password and a different repository path: only the server is used.
        let mut c = attache(Path::new("/nonexistent/repo"));
        c.env_remove("ATTACHE_PASSWORD")
            .env("ATTACHE_TOKEN", TOKEN)
            .arg("--server")
            .arg(&s.url)
            .args(args);
        c
    };
    let mut backup = via(&attache_tests::BACKUP_LOCAL);
    backup.arg(&src);
    let out: Value = serde_json::from_str(&ok(&mut backup)).expect("json");
    let id = out["id"].as_str().expect("id").to_owned();
    assert!(ok(&mut via(&["snapshots"])).contains(&id[..8]));
    let items: Vec<Value> =
        serde_json::from_str(&ok(&mut via(&["ls", &id[..8], "--json"]))).expect("json");
    assert_eq!(items.len(), 3);
    let hits: Vec<Value> =
        serde_json::from_str(&ok(&mut via(&["find", "index.html", "--json"]))).expect("json");
    assert_eq!(hits.len(), 1);
    let dest = t.path().join("restored");
    ok(&mut via(&[
        "restore",
        &id,
        "--to",
        &format!("local:{}", dest.display()),
    ]));
    assert_eq!(
        fs::read(attache_tests::restored(&dest, &src).join("www/index.html")).expect("r"),
        b"<h1>served</h1>"
    );
    let e = attache_tests::fails(&mut via(&["verify"]));
    assert!(e.contains("drop --server"), "{e}");
    let mut no_token = via(&["snapshots"]);
    no_token.env_remove("ATTACHE_TOKEN");
    let e = attache_tests::fails(&mut no_token);
    assert!(e.contains("ATTACHE_TOKEN"), "{e}");
}

/// The tree a console browses: one level of a snapshot at a time, sorted,
/// each child with its record (when it is an item) and the count below it,
/// a page at a time; the console's page and files need no token.
#[test]
fn a_snapshot_is_listed_one_level_at_a_time() {
    let s = start(1);
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    for (rel, body) in [
        ("b/2.txt", "two"),
        ("b/1.txt", "one"),
        ("a.txt", "a"),
        ("c/d/e.txt", "e"),
    ] {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, body).expect("write");
    }
    let (st, job) = authed(&s, "POST", "/jobs", Some(&backup_body(&src)));
    assert_eq!(st, 202, "{job}");
    let job = wait(&s, job["id"].as_str().expect("id"));
    let snap = job["result"]["id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    let dir = src.to_str().expect("utf-8");
    let q = |d: &str, extra: &str| {
        format!(
            "/snapshots/{snap}/children?dir={}{extra}",
            d.replace('/', "%2F")
        )
    };
    let (st, l) = authed(&s, "GET", &q(dir, ""), None);
    assert_eq!(st, 200, "{l}");
    assert_eq!(l["total"], 3);
    let kids: Vec<(String, u64, String)> = l["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["below"].as_u64().unwrap_or(99),
                c["record"]["kind"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kids,
        [
            ("a.txt".to_owned(), 0, "file".to_owned()),
            ("b".to_owned(), 2, "directory".to_owned()),
            ("c".to_owned(), 2, "directory".to_owned()),
        ]
    );
    assert_eq!(l["children"][0]["record"]["size"], 1);
    assert_eq!(l["children"][0]["id"], format!("{dir}/a.txt"));
    // A page: the second child only.
    let (_, p) = authed(&s, "GET", &q(dir, "&offset=1&limit=1"), None);
    assert_eq!(
        (p["total"].clone(), p["children"].as_array().map(Vec::len)),
        (json!(3), Some(1))
    );
    assert_eq!(p["children"][0]["name"], "b");
    let (_, b) = authed(&s, "GET", &q(&format!("{dir}/b"), ""), None);
    assert_eq!(b["children"][0]["name"], "1.txt");
    assert_eq!(b["children"][1]["record"]["size"], 3);
    // The top: the first path component, above what was backed up.
    let (_, top) = authed(&s, "GET", &format!("/snapshots/{snap}/children"), None);
    let first = format!(
        "/{}",
        dir.trim_start_matches('/')
            .split('/')
            .next()
            .expect("a component")
    );
    assert_eq!(top["children"][0]["id"], first);
    assert!(
        top["children"][0]["below"].as_u64().unwrap_or(0) >= 7,
        "{top}"
    );
    // A file has no children; what the snapshot lacks is a 404.
    let (st, f) = authed(&s, "GET", &q(&format!("{dir}/a.txt"), ""), None);
    assert_eq!((st, f["total"].clone()), (200, json!(0)), "{f}");
    let (st, e) = authed(&s, "GET", &q(&format!("{dir}/nothing"), ""), None);
    assert_eq!(st, 404, "{e}");
    assert!(e["error"].is_string(), "{e}");
    // The console needs no token for its page and files, and holds no data.
    let (st, page) = call(&s, "GET", "/", None, None);
    assert_eq!(st, 200);
    assert!(
        page.as_str().is_some_and(|p| p.contains("/ui/console.js")),
        "{page}"
    );
    assert_eq!(call(&s, "GET", "/ui/console.js", None, None).0, 200);
    assert_eq!(call(&s, "GET", "/ui/console.css", None, None).0, 200);
    assert_eq!(call(&s, "GET", "/ui/other.js", None, None).0, 404);
}
