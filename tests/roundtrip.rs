//! Backing up a real tree with `attache backup local` and restoring it, whole
//! and item by item, through the same runner and plugin that go into VMs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use attache_tests::{attache, fails, ok, tree};
use serde_json::Value;

fn backup(repo: &Path, include: &Path) -> String {
    let v = attache_tests::backup(repo, include);
    v["id"].as_str().expect("an id field").to_owned()
}

fn ls(repo: &Path, id: &str, prefix: Option<&str>) -> Vec<Value> {
    let mut c = attache(repo);
    c.args(["ls", id, "--json"]);
    if let Some(p) = prefix {
        c.arg(p);
    }
    serde_json::from_str(&ok(&mut c)).expect("ls --json prints JSON")
}

#[test]
fn a_real_tree_restores_identical() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("source tree");
    tree::make(&src, 3000, 100 << 20);
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);

    // The catalog lists every item with its metadata.
    let items = ls(&repo, &id, None);
    let expected = tree::describe(&src).len();
    assert_eq!(items.len(), expected, "one item per path");
    let big = items
        .iter()
        .find(|i| i["id"].as_str().is_some_and(|s| s.ends_with("/big.bin")))
        .expect("big.bin listed");
    assert_eq!(big["kind"], "file");
    assert_eq!(big["size"], 100u64 << 20);
    let link = items
        .iter()
        .find(|i| i["id"].as_str().is_some_and(|s| s.ends_with("/abs-link")))
        .expect("link listed");
    assert_eq!(link["kind"], "symlink");
    assert_eq!(link["symlink_target"], "/etc/hostname");
    let hard = items.iter().filter(|i| i["kind"] == "hardlink").count();
    assert_eq!(hard, 1, "the second name of the hard-linked file");

    // The snapshot is listed once complete.
    let snaps: Vec<Value> =
        serde_json::from_str(&ok(attache(&repo).args(["snapshots", "--json"]))).expect("json");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["warnings"].as_array().map(Vec::len), Some(0));

    // Restored like restic: each item at its full path below the target.
    let dest = t.path().join("restored");
    ok(attache(&repo)
        .args(["restore", &id, "--to"])
        .arg(format!("local:{}", dest.display())));
    let inside = attache_tests::restored(&dest, &src);
    tree::assert_same(&src, &inside);
}

/// Issue 12: a tree in the shape of a real one (many small directories),
/// 20,000 items, restored whole and compared item by item: kind, mode,
/// owner, mtime, content, link targets and hard links.
#[test]
fn a_tree_of_20000_items_restores_identical_item_by_item() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("many");
    tree::make_many(&src, 20_000);
    let expected = tree::describe(&src);
    assert!(expected.len() > 20_000, "{} items", expected.len());
    assert!(expected.values().any(|e| e.link_group.is_some()));
    assert!(expected.values().any(|e| e.kind == "symlink"));
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);
    assert_eq!(
        ls(&repo, &id, None).len(),
        expected.len(),
        "one item per path"
    );
    let dest = t.path().join("restored");
    ok(attache(&repo)
        .args(["restore", &id, "--to"])
        .arg(format!("local:{}", dest.display())));
    let inside = attache_tests::restored(&dest, &src);
    tree::assert_same(&src, &inside);
}

#[test]
fn a_single_file_restores_into_an_alternate_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    tree::make(&src, 40, 1 << 20);
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);

    let file = src.join("a/b/c d/file 00002 ✓.txt");
    let file_id = file.to_str().expect("utf-8");
    // `ls PREFIX` narrows the listing to the item and what lies below it.
    let only = ls(&repo, &id[..8], Some(file_id));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], file_id);

    let alt = t.path().join("alternate");
    ok(attache(&repo)
        .args(["restore", &id[..8], "--item", file_id, "--to"])
        .arg(format!("local:{}", alt.display())));
    let restored = attache_tests::restored(&alt, &file);
    assert_eq!(
        fs::read(&restored).expect("restored"),
        fs::read(&file).expect("original")
    );
    let (a, b) = (
        fs::metadata(&file).expect("stat"),
        fs::metadata(&restored).expect("stat"),
    );
    assert_eq!(a.permissions().mode(), b.permissions().mode());
    assert_eq!(a.modified().expect("mtime"), b.modified().expect("mtime"));
    // Nothing but the file and the directories leading to it.
    let files: Vec<_> = attache_tests::listing(&alt)
        .into_iter()
        .filter(|p| alt.join(p).is_file())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // A hard link restored alone carries its content.
    let second = src.join("ünïcødé/second name");
    ok(attache(&repo)
        .args([
            "restore",
            &id,
            "--item",
            second.to_str().expect("utf-8"),
            "--to",
        ])
        .arg(format!("local:{}", alt.display())));
    assert_eq!(
        fs::read(attache_tests::restored(&alt, &second)).expect("read"),
        b"shared by two names\n"
    );

    // Restoring again without --overwrite leaves what exists and says so.
    fs::write(&restored, b"changed since").expect("write");
    let err = fails(
        attache(&repo)
            .args(["restore", &id, "--item", file_id, "--to"])
            .arg(format!("local:{}", alt.display())),
    );
    assert!(err.contains("not overwritten"), "{err}");
    assert_eq!(fs::read(&restored).expect("kept"), b"changed since");
    ok(attache(&repo)
        .args(["restore", &id, "--overwrite", "--item", file_id, "--to"])
        .arg(format!("local:{}", alt.display())));
    assert_eq!(
        fs::read(&restored).expect("restored"),
        fs::read(&file).expect("original")
    );
}

/// A local restore starts its runner from the catalog while the key is
/// derived. With a wrong password that runner has been started, and it must
/// be stopped having restored nothing; with the right one it is the runner
/// that restores.
#[test]
fn a_runner_started_before_the_key_is_checked_restores_nothing_when_it_is_wrong() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    tree::make(&src, 30, 1 << 20);
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);
    let file = src.join("a/b/c d/file 00002 ✓.txt");
    let file_id = file.to_str().expect("utf-8");
    let alt = t.path().join("alternate");
    fs::create_dir(&alt).expect("mkdir");
    let to = format!("local:{}", alt.display());

    let out = attache(&repo)
        .env("ATTACHE_PASSWORD", "not the password")
        .env("ATTACHE_LOG", "debug")
        .args(["restore", &id[..8], "--item", file_id, "--to", &to])
        .output()
        .expect("run attache");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("wrong password"), "{err}");
    assert!(err.contains("runner started early"), "{err}");
    assert!(err.contains("stopped the runner started early"), "{err}");
    assert!(attache_tests::listing(&alt).is_empty(), "restored nothing");
    // No runner is left waiting for a stream.
    let alive: Vec<String> = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("guest-runner") && c.contains(alt.to_str().expect("utf-8")))
        .collect();
    assert!(alive.is_empty(), "{alive:?}");

    // With the right password, the runner started early does the restore.
    let out = attache(&repo)
        .env("ATTACHE_LOG", "debug")
        .args(["restore", &id[..8], "--item", file_id, "--to", &to])
        .output()
        .expect("run attache");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("runner started early"), "{err}");
    assert!(!err.contains("stopped the runner started early"), "{err}");
    assert_eq!(
        fs::read(attache_tests::restored(&alt, &file)).expect("restored"),
        fs::read(&file).expect("original")
    );
}

#[test]
fn unknown_snapshots_and_items_are_clear_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("f"), b"x").expect("write");
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);
    let to = format!("local:{}", t.path().join("out").display());
    let e = fails(attache(&repo).args(["restore", "ffffffffffff", "--to", &to]));
    assert!(e.contains("no snapshot matches"), "{e}");
    let e = fails(attache(&repo).args(["restore", &id, "--item", "/no/such/item", "--to", &to]));
    assert!(e.contains("has no item"), "{e}");
    let e = fails(
        attache(&repo)
            .args(["backup", "local", "--plugin", "filesystem", "--include"])
            .arg(t.path().join("missing")),
    );
    assert!(e.contains("missing"), "{e}");
    let e = fails(
        attache(&repo)
            .args(["backup", "local", "--plugin", "nosuch", "--include"])
            .arg(&src),
    );
    assert!(e.contains("no plugin named \"nosuch\""), "{e}");
    // A failed backup leaves no snapshot behind.
    let snaps: Vec<Value> =
        serde_json::from_str(&ok(attache(&repo).args(["snapshots", "--json"]))).expect("json");
    assert_eq!(snaps.len(), 1);
}

#[test]
fn unreadable_files_are_reported_and_the_backup_goes_on() {
    // Run as an unprivileged user, for whom mode 000 means unreadable.
    let t = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("readable"), b"fine").expect("write");
    fs::write(src.join("secret"), b"hidden").expect("write");
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::create_dir(src.join("locked")).expect("mkdir");
    fs::write(src.join("locked/inside"), b"x").expect("write");
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).expect("chmod");
    let repo = t.path().join("repo");
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(attache_tests::attache_bin())
        .arg("--repo")
        .arg(&repo)
        .env("ATTACHE_CACHE_DIR", t.path().join("cache"))
        .env("ATTACHE_STATE_DIR", t.path().join("state"))
        .env_remove("ATTACHE_POLICY")
        .env_remove("ATTACHE_AGENT_DIR")
        .env("ATTACHE_PASSWORD", attache_tests::PASSWORD)
        .args(attache_tests::BACKUP_LOCAL)
        .arg(&src);
    let out: Value = serde_json::from_str(&ok(&mut c)).expect("json");
    assert_eq!(out["warnings"], 2, "{out}");
    let id = out["id"].as_str().expect("id");
    let snaps: Vec<Value> =
        serde_json::from_str(&ok(attache(&repo).args(["snapshots", "--json"]))).expect("json");
    let warned: Vec<&str> = snaps[0]["warnings"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert!(warned.iter().any(|w| w.ends_with("/secret")), "{warned:?}");
    assert!(warned.iter().any(|w| w.ends_with("/locked")), "{warned:?}");
    let ids: Vec<String> = ls(&repo, id, None)
        .iter()
        .filter_map(|i| i["id"].as_str().map(String::from))
        .collect();
    assert!(ids.iter().any(|i| i.ends_with("/readable")), "{ids:?}");
    assert!(!ids.iter().any(|i| i.ends_with("/secret")), "{ids:?}");
}

/// A restore onto a full disk fails for nearly every item. It fails as a
/// whole, and its error names the first failures and counts them all,
/// instead of a line for each (a million of them once made a 41 MB error):
/// 12,000 files onto a tmpfs with room for 100 inodes. Needs root, for the
/// mount; the suite runs as root.
#[test]
fn a_restore_onto_a_full_disk_fails_with_a_bounded_error_that_counts_every_item() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    const FILES: usize = 12_000;
    for d in 0..12 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..FILES / 12 {
            fs::write(dir.join(format!("f{f:04}")), b"x").expect("write");
        }
    }
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);
    let full = t.path().join("full");
    fs::create_dir(&full).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,nr_inodes=100", "attache-full"])
        .arg(&full)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount tmpfs on {}", full.display());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&full);

    let err = fails(
        attache(&repo)
            .args(["restore", &id, "--to"])
            .arg(format!("local:{}", full.display())),
    );
    assert!(err.len() < 64 << 10, "{} bytes of error", err.len());
    let last = err
        .lines()
        .find(|l| l.starts_with("... and "))
        .unwrap_or_else(|| panic!("no count of the problems not listed:\n{err}"));
    // "... and N more (M in all)": nearly every file failed, and all of
    // them are counted, past the runner's 10,000 kept notes too.
    let all: u64 = last
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    assert!(
        all > (FILES as u64) - 200 && all <= FILES as u64 + 12,
        "{all} problems counted: {last}"
    );
    assert!(err.contains("No space left on device"), "{err}");
}
