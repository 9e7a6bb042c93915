//! The repository: deduplication, encryption, verification down to a
//! flipped byte, retention and prune, and crashes at any point.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use attache_tests::{attache, backup, fails, ok, snapshots, tree};
use serde_json::Value;

fn packs(repo: &Path) -> Vec<PathBuf> {
    attache_tests::listing(&repo.join("data"))
        .into_iter()
        .map(|p| repo.join("data").join(p))
        .filter(|p| p.is_file())
        .collect()
}

fn du(dir: &Path) -> u64 {
    attache_tests::listing(dir)
        .iter()
        .filter_map(|p| fs::symlink_metadata(dir.join(p)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn unchanged_data_is_stored_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    tree::make(&src, 500, 1 << 30);
    let repo = t.path().join("repo");
    let first = backup(&repo, &src);
    let size_after_first = du(&repo);
    assert!(
        first["added_bytes"].as_u64().expect("added") > 1 << 30,
        "{first}"
    );
    let second = backup(&repo, &src);
    let added = second["added_bytes"].as_u64().expect("added");
    assert!(
        added < 1 << 20,
        "a second backup of the same tree added {added} bytes"
    );
    assert!(du(&repo) - size_after_first < 2 << 20);
    // A copy of the big file elsewhere in the tree dedups against it.
    fs::copy(src.join("big.bin"), src.join("a/copy of big.bin")).expect("copy");
    let third = backup(&repo, &src);
    assert!(
        third["added_bytes"].as_u64().expect("added") < 1 << 20,
        "{third}"
    );
    ok(attache(&repo).args(["verify", "--read-data"]));
}

#[test]
fn a_flipped_byte_is_found_and_named() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    fs::create_dir_all(&src).expect("mkdir");
    tree::random_file(&src.join("victim.bin"), 3 << 20, 1);
    tree::random_file(&src.join("bystander.bin"), 3 << 20, 2);
    let repo = t.path().join("repo");
    let id = backup(&repo, &src)["id"].as_str().expect("id").to_owned();
    ok(attache(&repo).args(["verify", "--read-data"]));

    // Find the pack holding the victim's data: the one whose bytes change
    // the victim's restore. Flip a byte in the middle of each pack in turn.
    let victim = src.join("victim.bin");
    let bystander = src.join("bystander.bin");
    let pack = packs(&repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack");
    let mut bytes = fs::read(&pack).expect("read pack");
    let at = bytes.len() / 4;
    bytes[at] ^= 0x01;
    fs::write(&pack, &bytes).expect("write pack");

    // The structure still looks fine; reading the data does not.
    ok(attache(&repo).args(["verify"]));
    let o = attache_tests::output(attache(&repo).args(["verify", "--read-data", "--json"]));
    assert_eq!(o.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert!(
        !report["bad_blobs"].as_object().expect("map").is_empty(),
        "{report}"
    );
    let affected = report["affected"][&id]
        .as_array()
        .expect("the snapshot is named")
        .clone();
    let affected: Vec<&str> = affected.iter().filter_map(Value::as_str).collect();
    assert_eq!(affected.len(), 1, "one item is affected: {affected:?}");
    let hit = affected[0];
    let (damaged, intact) = if hit == victim.to_str().expect("utf-8") {
        (&victim, &bystander)
    } else {
        (&bystander, &victim)
    };
    assert_eq!(hit, damaged.to_str().expect("utf-8"));

    // The intact item still restores; the damaged one fails clearly and
    // leaves no partial file.
    let out = t.path().join("out");
    let to = format!("local:{}", out.display());
    ok(attache(&repo).args([
        "restore",
        &id,
        "--item",
        intact.to_str().expect("utf-8"),
        "--to",
        &to,
    ]));
    assert_eq!(
        fs::read(attache_tests::restored(&out, intact)).expect("restored"),
        fs::read(intact).expect("orig")
    );
    let err = fails(attache(&repo).args([
        "restore",
        &id,
        "--item",
        damaged.to_str().expect("utf-8"),
        "--to",
        &to,
    ]));
    assert!(err.contains("damaged"), "{err}");
    assert!(!attache_tests::restored(&out, damaged).exists());
}

#[test]
fn forget_and_prune_free_space_and_keep_what_is_referenced() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    fs::create_dir_all(&src).expect("mkdir");
    let repo = t.path().join("repo");
    tree::random_file(&src.join("old.bin"), 8 << 20, 1);
    tree::random_file(&src.join("kept.bin"), 2 << 20, 2);
    backup(&repo, &src);
    fs::remove_file(src.join("old.bin")).expect("rm");
    let last = backup(&repo, &src)["id"].as_str().expect("id").to_owned();
    let before = du(&repo);
    let e = fails(attache(&repo).args(["forget"]));
    assert!(e.contains("--keep"), "{e}");
    ok(attache(&repo).args(["forget", "--keep-last", "1", "--prune"]));
    let snaps = snapshots(&repo);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], last.as_str());
    let after = du(&repo);
    assert!(
        before - after > 7 << 20,
        "prune freed {} bytes",
        before - after
    );
    ok(attache(&repo).args(["verify", "--read-data"]));
    let out = t.path().join("out");
    ok(attache(&repo)
        .args(["restore", &last, "--to"])
        .arg(format!("local:{}", out.display())));
    assert_eq!(
        fs::read(attache_tests::restored(&out, &src).join("kept.bin")).expect("r"),
        fs::read(src.join("kept.bin")).expect("o")
    );
}

#[test]
fn passwords_and_find() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    fs::create_dir_all(src.join("www")).expect("mkdir");
    fs::write(src.join("www/index.html"), b"<h1>hi</h1>").expect("write");
    let repo = t.path().join("repo");
    backup(&repo, &src);
    backup(&repo, &src);

    let e = fails(
        attache(&repo)
            .env("ATTACHE_PASSWORD", "wrong")
            .args(["snapshots"]),
    );
    assert!(e.contains("wrong password"), "{e}");
    let e = fails(
        attache(&repo)
            .env_remove("ATTACHE_PASSWORD")
            .args(["snapshots"]),
    );
    assert!(e.contains("ATTACHE_PASSWORD"), "{e}");
    let pw = t.path().join("pw");
    fs::write(&pw, format!("{}\n", attache_tests::PASSWORD)).expect("write");
    ok(attache(&repo)
        .env_remove("ATTACHE_PASSWORD")
        .arg("--password-file")
        .arg(&pw)
        .args(["snapshots"]));
    // Nothing in the repository is readable without the key.
    for p in attache_tests::listing(&repo) {
        let b = fs::read(repo.join(&p)).unwrap_or_default();
        assert!(
            !b.windows(11).any(|w| w == b"<h1>hi</h1>"),
            "{} holds plaintext",
            p.display()
        );
        assert!(
            !b.windows(10).any(|w| w == b"index.html"),
            "{} holds a file name",
            p.display()
        );
    }

    let hits: Vec<Value> =
        serde_json::from_str(&ok(attache(&repo).args(["find", "index.*", "--json"])))
            .expect("json");
    assert_eq!(hits.len(), 2, "found in both snapshots");
    assert!(hits[0]["id"]
        .as_str()
        .expect("id")
        .ends_with("/www/index.html"));
    let none: Vec<Value> =
        serde_json::from_str(&ok(attache(&repo).args(["find", "*.php", "--json"]))).expect("json");
    assert!(none.is_empty());

    // An unencrypted repository only on request.
    let plain = t.path().join("plain");
    let e = fails(
        attache(&plain)
            .env_remove("ATTACHE_PASSWORD")
            .args(["init"]),
    );
    assert!(e.contains("--no-encryption"), "{e}");
    ok(attache(&plain)
        .env_remove("ATTACHE_PASSWORD")
        .args(["init", "--no-encryption"]));
    ok(attache(&plain)
        .env_remove("ATTACHE_PASSWORD")
        .args(["backup", "local", "--plugin", "filesystem", "--include"])
        .arg(&src));
}

/// Starts a backup, kills it with SIGKILL after `delay`, and waits for it.
fn killed_backup(repo: &Path, includes: &[&Path], delay: Duration) {
    let mut c: Command = attache(repo);
    c.args(["backup", "local", "--plugin", "filesystem"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for i in includes {
        c.arg("--include").arg(i);
    }
    let mut child = c.spawn().expect("spawn");
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    // Let the orphaned runner notice its reader is gone.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn kill_9_never_leaves_a_partial_snapshot_or_loses_data() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    tree::make(&src, 2000, 200 << 20);
    let repo = t.path().join("repo");
    let good = backup(&repo, &src)["id"].as_str().expect("id").to_owned();
    let more = t.path().join("more");
    fs::create_dir(&more).expect("mkdir");
    tree::random_file(&more.join("new.bin"), 100 << 20, 9);
    // Seeded variety of kill points, from start-up to the end of the data.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        killed_backup(
            &repo,
            &[&src, &more],
            Duration::from_millis(50 + seed % 1500),
        );
        let snaps = snapshots(&repo);
        for s in &snaps {
            assert!(
                s["items"].as_u64().unwrap_or(0) > 2000,
                "a listed snapshot is complete: {s}"
            );
        }
        ok(attache(&repo).args(["verify", "--read-data"]));
    }
    // Prune killed part-way loses nothing referenced either.
    for delay in [30, 120, 400] {
        let mut c = attache(&repo);
        c.arg("prune").stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        ok(attache(&repo).args(["verify", "--read-data"]));
    }
    ok(attache(&repo).arg("prune"));
    ok(attache(&repo).args(["verify", "--read-data"]));
    let out = t.path().join("out");
    ok(attache(&repo)
        .args(["restore", &good, "--to"])
        .arg(format!("local:{}", out.display())));
    tree::assert_same(&src, &attache_tests::restored(&out, &src));
}
