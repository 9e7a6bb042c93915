//! The web console in a real browser (headless Chromium over the DevTools
//! protocol) against a real `attache serve` and repository: sign-in,
//! the overview, browsing a snapshot's tree, a restore followed to its
//! end, a backup started, followed live and cancelled, a failed job's
//! cause, API errors shown as sent, a verify from the health view that
//! finds the repository clean and then names a damaged pack and the items
//! it holds, and the layout at 200% zoom. Each view
//! is saved as a screenshot under `target/console-screenshots/`.

use std::fs;
use std::path::{Path, PathBuf};

use attache_tests::browser::Browser;
use attache_tests::server::{request, Served};
use attache_tests::{attache, backup, ok, restored, root, tree};
use serde_json::{json, Value};

const TOKEN: &str = "console-token-0123456789abcdef";

struct Server {
    _served: Served,
    url: String,
}

fn start(repo: &Path) -> Server {
    let served = Served::start(repo, TOKEN, &[]);
    Server {
        url: served.url.clone(),
        _served: served,
    }
}

fn api(s: &Server, path: &str) -> Value {
    let (st, v) = request(&s.url, "GET", path, Some(TOKEN), None);
    assert_eq!(st, 200, "{path}: {v}");
    v
}

fn shot(b: &mut Browser, name: &str) {
    let p: PathBuf = root().join("target/console-screenshots").join(name);
    b.screenshot(&p);
}

/// The text of the element `selector` names ("" when there is none).
fn text(b: &mut Browser, selector: &str) -> String {
    let js = format!(
        "(document.querySelector({}) || {{}}).textContent || ''",
        json!(selector)
    );
    b.eval(&js).as_str().unwrap_or_default().to_owned()
}

/// Signs in with the keyboard: the token field has the focus.
fn sign_in(b: &mut Browser, token: &str) {
    b.wait_for(
        "document.activeElement && document.activeElement.id === 'token'",
        "the token field to have the focus",
    );
    b.eval("document.getElementById('token').select()");
    b.type_text(token);
    b.press("Enter");
}

/// Waits until the job page shows one of the final states; returns it.
fn final_status(b: &mut Browser) -> String {
    b.wait_for(
        "['succeeded','failed','cancelled'].includes((document.getElementById('job-status') || {}).textContent) && document.getElementById('job-status').textContent",
        "the job to finish",
    )
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

/// The page has no horizontal scroll bar.
fn fits(b: &mut Browser, what: &str) {
    let (sw, cw) = (
        b.eval("document.documentElement.scrollWidth"),
        b.eval("document.documentElement.clientWidth"),
    );
    assert!(
        sw.as_u64().unwrap_or(u64::MAX) <= cw.as_u64().unwrap_or(0) + 1,
        "{what} scrolls sideways at 200% zoom: {sw} > {cw}"
    );
}

#[test]
fn sign_in_overview_browse_and_restore_a_file_to_another_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, src, out) = (
        t.path().join("repo"),
        t.path().join("src"),
        t.path().join("out"),
    );
    tree::make(&src.join("misc"), 40, 1 << 16);
    let file = src.join("docs/reports/2026 report.txt");
    fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    fs::write(&file, "the quarterly figures, restored from the console\n").expect("write");
    let snap = backup(&repo, &src);
    let snap_id = snap["id"].as_str().expect("snapshot id").to_owned();
    let s = start(&repo);
    let mut b = Browser::launch();
    b.goto(&format!("{}/", s.url));

    // A wrong token is refused, with the API's own words, and not kept.
    sign_in(&mut b, "not-the-token");
    let refused = b.wait_for("document.getElementById('error').textContent", "a refusal");
    assert_eq!(refused, json!("Sign-in refused: 401: wrong bearer token"));
    assert_eq!(b.eval("sessionStorage.length"), json!(0));
    assert_eq!(
        b.eval("getComputedStyle(document.getElementById('nav')).display"),
        json!("none"),
        "no views before sign-in"
    );
    shot(&mut b, "sign-in-refused.png");

    // The right one shows the overview with the snapshot count.
    sign_in(&mut b, TOKEN);
    b.wait_for("document.getElementById('snapshot-count')", "the overview");
    assert_eq!(text(&mut b, "#snapshot-count"), "1");
    assert_eq!(
        b.eval("getComputedStyle(document.getElementById('sign-in')).display"),
        json!("none"),
        "the sign-in form is gone"
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('attache.token')"),
        json!(TOKEN),
        "kept for the session"
    );
    shot(&mut b, "overview.png");

    // Snapshots: the list, and a search across them.
    b.goto(&format!("{}/#/snapshots", s.url));
    b.wait_for("document.querySelector('#view tbody tr')", "the list");
    assert!(text(&mut b, "#view tbody").contains(&snap_id[..12]));
    b.fill("#find-pattern", "*report.txt");
    b.click("#find-go");
    let hit = b.wait_for(
        "document.querySelector('#find-results td:nth-child(4)')?.textContent",
        "the search's results",
    );
    assert_eq!(hit, json!(file.to_str().expect("utf-8 path")));
    shot(&mut b, "snapshots.png");

    // Browse down the tree, one lazily loaded level at a time, to the file,
    // with the keyboard: each directory's button opens with Enter.
    b.goto(&format!("{}/#/snapshot/{snap_id}", s.url));
    b.wait_for("document.querySelector('#tree li')", "the tree's top level");
    let mut dirs: Vec<&Path> = file.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs.into_iter().skip(1) {
        let sel = format!("button.toggle[data-dir={}]", json!(dir));
        b.wait_for(
            &format!("document.querySelector({})", json!(sel)),
            &format!("{} in the tree", dir.display()),
        );
        b.eval(&format!("document.querySelector({}).focus()", json!(sel)));
        b.press("Enter");
        b.wait_for(
            &format!(
                "document.querySelector({}).getAttribute('aria-expanded') === 'true'",
                json!(sel)
            ),
            &format!("{} to open", dir.display()),
        );
    }
    let name = format!(".name[data-id={}]", json!(file));
    b.wait_for(
        &format!("document.querySelector({})", json!(name)),
        "the file in the tree",
    );
    b.click(&name);
    let details = text(&mut b, "#item-details");
    assert!(
        details.contains("Kind") && details.contains("file"),
        "{details}"
    );
    b.click(&format!(
        "input[id={}]",
        json!(format!("sel-{}", file.display()))
    ));
    assert!(text(&mut b, "#chosen").starts_with("1 selected"));
    shot(&mut b, "snapshot.png");

    // Restore it to another directory: review the summary, confirm, follow.
    b.click("#restore-selected");
    b.wait_for("document.getElementById('r-items')", "the restore form");
    assert_eq!(
        b.eval("document.getElementById('r-items').value"),
        json!(file)
    );
    b.fill("#r-dir", out.to_str().expect("utf-8 path"));
    b.click("#r-review");
    b.wait_for("document.getElementById('r-confirm')", "the summary");
    assert_eq!(text(&mut b, "#r-to"), format!("local:{}", out.display()));
    shot(&mut b, "restore.png");
    b.click("#r-confirm");
    assert_eq!(final_status(&mut b), "succeeded");
    shot(&mut b, "job-restore.png");
    assert_eq!(
        fs::read(restored(&out, &file)).expect("the restored file"),
        fs::read(&file).expect("the original")
    );

    // API errors are shown as the API sent them.
    b.goto(&format!("{}/#/snapshot/ffffffffffff", s.url));
    let shown = b.wait_for("document.getElementById('error').textContent", "the error");
    let (st, body) = request(&s.url, "GET", "/snapshots/ffffffffffff", Some(TOKEN), None);
    assert_eq!(
        shown,
        json!(format!("{st}: {}", body["error"].as_str().expect("error")))
    );
    shot(&mut b, "error-404.png");

    // 200% zoom: the views reflow instead of scrolling sideways.
    b.zoom(2.0);
    b.goto(&format!("{}/#/overview", s.url));
    b.wait_for("document.getElementById('snapshot-count')", "the overview");
    fits(&mut b, "the overview");
    shot(&mut b, "overview-200pct.png");
    b.goto(&format!("{}/#/snapshot/{snap_id}", s.url));
    b.wait_for("document.querySelector('#tree li')", "the tree");
    fits(&mut b, "a snapshot");
    shot(&mut b, "snapshot-200pct.png");
    b.goto(&format!("{}/#/restore", s.url));
    b.wait_for("document.getElementById('r-review')", "the restore form");
    fits(&mut b, "the restore form");
}

#[test]
fn a_backup_from_the_console_shows_live_progress_and_cancels_and_a_failure_its_cause() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, big) = (t.path().join("repo"), t.path().join("big"));
    // Many items (a backup spends its time per item, more than per byte):
    // it runs for seconds, so the cancel lands while it runs.
    tree::make_many(&big, 30_000);
    let s = start(&repo);
    let mut b = Browser::launch();
    b.goto(&format!("{}/", s.url));
    sign_in(&mut b, TOKEN);
    b.wait_for("document.getElementById('snapshot-count')", "the overview");
    assert_eq!(text(&mut b, "#snapshot-count"), "0");

    b.goto(&format!("{}/#/jobs", s.url));
    b.wait_for("document.getElementById('b-include')", "the backup form");
    b.fill("#b-include", big.to_str().expect("utf-8 path"));
    b.click("#b-start");
    let id = b
        .wait_for(
            "location.hash.startsWith('#/job/') && document.getElementById('job-status') && location.hash.slice(6)",
            "the job's page",
        )
        .as_str()
        .expect("job id")
        .to_owned();
    // The progress changes on the page while the job runs: the events.
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 3 {
        let status = text(&mut b, "#job-status");
        assert!(
            matches!(status.as_str(), "queued" | "running"),
            "the backup ended ({status}) before its progress was seen to change: {seen:?}"
        );
        let p = text(&mut b, "#job-progress");
        if !p.is_empty() && seen.last() != Some(&p) {
            seen.push(p);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(text(&mut b, "#job-status"), "running");
    shot(&mut b, "job-running.png");
    b.click("#job-cancel");
    assert_eq!(final_status(&mut b), "cancelled", "progress seen: {seen:?}");
    shot(&mut b, "job-cancelled.png");
    assert_eq!(api(&s, "/snapshots"), json!([]), "no snapshot");
    assert_eq!(api(&s, &format!("/jobs/{id}"))["status"], "cancelled");

    // A job that fails shows its cause in full: the API's error.
    b.goto(&format!("{}/#/jobs", s.url));
    b.wait_for("document.getElementById('b-include')", "the backup form");
    b.fill("#b-include", t.path().to_str().expect("utf-8 path"));
    b.fill("#b-plugin", "no-such-plugin");
    b.click("#b-start");
    assert_eq!(final_status(&mut b), "failed");
    let failed = b
        .eval("location.hash.slice(6)")
        .as_str()
        .expect("job id")
        .to_owned();
    let cause = api(&s, &format!("/jobs/{failed}"))["error"]
        .as_str()
        .expect("the job's error")
        .to_owned();
    assert!(cause.contains("no-such-plugin"), "{cause}");
    assert_eq!(text(&mut b, "#job-error"), cause);
    shot(&mut b, "job-failed.png");

    // The history and the overview's failures list both jobs.
    b.goto(&format!("{}/#/jobs", s.url));
    b.wait_for("document.querySelector('#view tbody tr')", "the history");
    let history = text(&mut b, "#view tbody");
    assert!(
        history.contains(&id) && history.contains(&failed),
        "{history}"
    );
    shot(&mut b, "jobs.png");
    b.goto(&format!("{}/#/overview", s.url));
    b.wait_for("document.getElementById('snapshot-count')", "the overview");
    let overview = text(&mut b, "#view");
    assert!(
        overview.contains(&failed),
        "the failure is listed: {overview}"
    );
    assert_eq!(text(&mut b, "#snapshot-count"), "0");
    shot(&mut b, "overview-failures.png");
}

/// Starts a verify from the health view and waits until the view shows
/// its outcome; the outcome's text.
fn verify_from_the_console(b: &mut Browser) -> String {
    b.wait_for("document.getElementById('v-start')", "the health view");
    let before = b.eval("(document.querySelector('#health-last a') || {}).textContent || ''");
    b.click("#v-start");
    b.wait_for(
        &format!(
            "(document.querySelector('#health-last a') || {{}}).textContent !== {before} && ['succeeded','failed','cancelled'].includes((document.getElementById('health-status') || {{}}).textContent)"
        ),
        "the verify to finish",
    );
    assert_eq!(text(b, "#health-status"), "succeeded");
    text(b, "#health-outcome")
}

#[test]
fn the_health_view_verifies_the_repository_and_names_the_damage() {
    let t = tempfile::tempdir().expect("tempdir");
    let (repo, src) = (t.path().join("repo"), t.path().join("src"));
    tree::make(&src, 8, 1 << 18);
    let snap = backup(&repo, &src);
    let snap_id = snap["id"].as_str().expect("snapshot id").to_owned();
    let s = start(&repo);
    let mut b = Browser::launch();
    b.goto(&format!("{}/", s.url));
    sign_in(&mut b, TOKEN);
    b.wait_for("document.getElementById('snapshot-count')", "the overview");

    // No verify yet; one started from the page is followed to its end, clean.
    b.goto(&format!("{}/#/health", s.url));
    b.wait_for(
        "document.getElementById('health-outcome')",
        "the health view",
    );
    assert_eq!(
        text(&mut b, "#health-outcome"),
        "No verify has run since the server started."
    );
    let outcome = verify_from_the_console(&mut b);
    assert_eq!(outcome, "Clean: no errors found.");
    let shown = text(&mut b, "#health-last");
    assert!(shown.contains("Checked 1 snapshot(s)"), "{shown}");
    shot(&mut b, "health-clean.png");
    let jobs = api(&s, "/jobs");
    let verifies: Vec<&Value> = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["kind"] == "verify")
        .collect();
    assert_eq!(verifies.len(), 1, "{jobs}");
    assert_eq!(verifies[0]["result"]["clean"], true, "{jobs}");

    // A flipped byte in a pack: the next verify names the pack, and the
    // snapshot's items that need it.
    let pack = attache_tests::flip_a_byte_in_a_pack(&repo);
    let outcome = verify_from_the_console(&mut b);
    assert!(outcome.starts_with("Damaged: "), "{outcome}");
    let name = pack
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let errors = text(&mut b, "#health-errors");
    assert!(errors.contains(&name), "the pack is named: {errors}");
    let affected = text(&mut b, "#health-affected");
    assert!(
        affected.contains(&snap_id[..12]) && affected.contains(src.to_str().expect("utf-8 path")),
        "the snapshot and a damaged file of it are named: {affected}"
    );
    shot(&mut b, "health-damaged.png");
    // Loaded again (at 200% zoom), the view shows the last verify, and
    // the earlier, clean one below it.
    b.zoom(2.0);
    b.goto(&format!("{}/#/overview", s.url));
    b.wait_for("document.getElementById('snapshot-count')", "the overview");
    b.goto(&format!("{}/#/health", s.url));
    b.wait_for(
        "document.getElementById('health-affected')",
        "the health view",
    );
    assert!(text(&mut b, "#health-outcome").starts_with("Damaged: "));
    assert!(text(&mut b, "#view").contains("Earlier verifies"));
    fits(&mut b, "the health view");
    shot(&mut b, "health-200pct.png");
}

#[test]
fn the_overview_lists_hypervisors_vms_and_attached_containers() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    ok(attache(&repo).args(["init"]));
    let s = start(&repo);
    // Registered after the server started (it recovers the journal at
    // start): VM web01 whose QEMU is gone, with a container attached.
    let container = attache_tests::hypervisor::register_stale(&repo);
    let mut b = Browser::launch();
    b.goto(&format!("{}/", s.url));
    sign_in(&mut b, TOKEN);
    b.wait_for(
        "document.querySelector('#hypervisors tr[data-vm]')",
        "the overview's VMs",
    );
    let row = b.eval(
        "[...document.querySelectorAll('#hypervisors tr[data-vm=\"hv1/web01\"] td')].map((td) => td.textContent)",
    );
    let cells: Vec<&str> = row
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c.as_str().unwrap_or_default())
        .collect();
    assert_eq!(cells.len(), 4, "{row}");
    assert_eq!(cells[0], "hv1/web01");
    assert!(cells[1].starts_with("unreachable ("), "{row}");
    assert!(cells[2].starts_with("silent ("), "{row}");
    assert_eq!(cells[3], container.to_str().expect("utf-8 path"));
    let summary = text(&mut b, "#hypervisors > p");
    assert_eq!(
        summary,
        "1 hypervisor(s), 1 VM(s); 1 VM(s) have a container attached now."
    );
    assert!(text(&mut b, "#hypervisors h3").contains("hv1 (qemu)"));
    shot(&mut b, "overview-hypervisors.png");
}
