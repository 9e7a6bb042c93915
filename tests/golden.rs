//! The golden repository: a tiny repository made once by the attache of
//! issue 16 (file headers on packs, index files and snapshots; repository
//! format 3, encrypted) and committed, which every later attache must still
//! open, list, verify and restore byte for byte. A change to an on-disk
//! format that forgets the old one fails here loudly, instead of in a
//! user's repository.
//!
//! `tests/fixtures/golden-src` is what was backed up, as
//! `/tmp/attache-golden-src`: two files, a file in a subdirectory, an empty
//! file and a symlink; every mtime 2023-11-14 22:13:20 UTC (1700000000),
//! modes 0644 (`run.sh` 0755). It was made with:
//!
//! ```sh
//! cp -a tests/fixtures/golden-src /tmp/attache-golden-src
//! chmod 755 /tmp/attache-golden-src/run.sh
//! find /tmp/attache-golden-src -exec touch -h -d @1700000000 {} +
//! ATTACHE_PASSWORD='golden repository' attache --repo tests/fixtures/golden-repo init
//! ATTACHE_PASSWORD='golden repository' attache --repo tests/fixtures/golden-repo \
//!     backup local --plugin filesystem --include /tmp/attache-golden-src
//! ```
//!
//! It is read twice: by the `attache` binary, and in-process through the
//! library's face ([`attache::repository`]), item by item against
//! `golden-src`.
//!
//! Never regenerate it to make this test pass: that is the drift it is
//! here to catch. A new format adds a second golden repository beside it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use attache::repository::{ErrorKind, Repository};
use attache_tests::{attache_isolated, listing, ok, restored, root};
use guest_runner::stream::ItemKind;
use serde_json::Value;

const PASSWORD: &str = "golden repository";
/// The one snapshot's id: the BLAKE3 of its file, which reading never
/// changes.
const SNAPSHOT: &str = include_str!("fixtures/golden-snapshot-id");
const SOURCE: &str = "/tmp/attache-golden-src";
const MTIME: i64 = 1_700_000_000;

fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// A copy of the golden repository in `dir` (opening a repository writes
/// its lock, and a repair would write more: the committed one stays as
/// made), and an `attache` on it with its own cache and state.
fn golden(dir: &Path) -> impl Fn() -> std::process::Command {
    let repo = dir.join("golden-repo");
    ok(std::process::Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("golden-repo"))
        .arg(&repo));
    let cache = dir.join("cache");
    let state = dir.join("state");
    move || {
        let mut c = attache_isolated(&cache, &state);
        c.arg("--repo").arg(&repo).env("ATTACHE_PASSWORD", PASSWORD);
        c
    }
}

#[test]
fn the_golden_repository_opens_lists_verifies_and_restores_byte_identically() {
    let t = tempfile::tempdir().expect("tempdir");
    let attache = golden(t.path());
    let id = SNAPSHOT.trim();

    // Its one snapshot, under the id it was written with.
    let snaps: Value =
        serde_json::from_str(&ok(attache().args(["snapshots", "--json"]))).expect("json");
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["id"], id);
    assert_eq!(snaps[0]["plugin"], "filesystem");
    assert_eq!(snaps[0]["includes"], serde_json::json!([SOURCE]));

    // Every item is listed, the symlink with its target.
    let ls = ok(attache().args(["ls", id]));
    for item in ["a.txt", "sub/b.bin", "empty", "run.sh", "link"] {
        assert!(
            ls.contains(&format!("{SOURCE}/{item}")),
            "{item} not listed:\n{ls}"
        );
    }

    // Every pack, index file and snapshot reads and every blob checks.
    ok(attache().args(["verify", "--read-data"]));

    // Restored, byte for byte, with the recorded modes and times.
    let out = t.path().join("out");
    ok(attache()
        .args(["restore", id, "--to"])
        .arg(format!("local:{}", out.display())));
    let got = restored(&out, Path::new(SOURCE));
    let src = fixtures().join("golden-src");
    assert_eq!(listing(&got), listing(&src), "the same paths");
    for rel in listing(&src) {
        let (want, have) = (src.join(&rel), got.join(&rel));
        let (wm, hm) = (
            fs::symlink_metadata(&want).expect("stat"),
            fs::symlink_metadata(&have).expect("stat"),
        );
        assert_eq!(wm.file_type(), hm.file_type(), "{}", rel.display());
        if wm.is_symlink() {
            assert_eq!(
                fs::read_link(&want).expect("link"),
                fs::read_link(&have).expect("link"),
                "{}",
                rel.display()
            );
            continue;
        }
        if wm.is_file() {
            assert_eq!(
                fs::read(&want).expect("read"),
                fs::read(&have).expect("read"),
                "{} differs",
                rel.display()
            );
            let mode = if rel == Path::new("run.sh") {
                0o755
            } else {
                0o644
            };
            assert_eq!(hm.permissions().mode() & 0o7777, mode, "{}", rel.display());
        }
        assert_eq!(
            hm.mtime(),
            MTIME,
            "{} keeps its recorded mtime",
            rel.display()
        );
    }
}

#[test]
fn the_library_reads_the_golden_repository_in_process() {
    let t = tempfile::tempdir().expect("tempdir");
    // A copy, as above: opening may write to the repository.
    let root = t.path().join("golden-repo");
    ok(std::process::Command::new("cp")
        .arg("-r")
        .arg(fixtures().join("golden-repo"))
        .arg(&root));
    let cache = t.path().join("cache");
    let id = SNAPSHOT.trim();

    // The wrong password, and none, are refused as such.
    let wrong = Repository::open(&root, Some("not the password"), &cache).expect_err("wrong");
    assert_eq!(wrong.kind(), ErrorKind::Crypto, "{wrong}");
    let none = Repository::open(&root, None, &cache).expect_err("none");
    assert_eq!(none.kind(), ErrorKind::Crypto, "{none}");

    let repo = Repository::open(&root, Some(PASSWORD), &cache).expect("open");
    let snaps = repo.snapshots().expect("snapshots");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(s.id, id);
    assert_eq!(s.plugin, "filesystem");
    assert_eq!(s.source, "local");
    assert_eq!(s.includes, [SOURCE]);
    assert_eq!(s.damaged, None);

    // Its items are exactly golden-src (and the included directory
    // itself), each with its kind, size, mode, time and link target.
    let items = repo.items(&id[..8]).expect("items");
    assert_eq!(s.items, items.len() as u64);
    let src = fixtures().join("golden-src");
    let mut want: Vec<String> = listing(&src)
        .iter()
        .map(|rel| format!("{SOURCE}/{}", rel.display()))
        .collect();
    want.push(SOURCE.to_owned());
    want.sort();
    let mut have: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    have.sort();
    assert_eq!(have, want, "the same items");
    let mut bytes = 0;
    for item in &items {
        let rel = item.id.strip_prefix(SOURCE).expect("below the include");
        let path = src.join(rel.trim_start_matches('/'));
        let meta = fs::symlink_metadata(&path).expect("stat");
        let at = &item.id;
        assert_eq!(item.mtime.map(|m| m.seconds), Some(MTIME), "{at}");
        let (kind, mode) = if meta.is_dir() {
            (ItemKind::Directory, 0o755)
        } else if meta.is_symlink() {
            let target = fs::read_link(&path).expect("link");
            assert_eq!(
                item.symlink_target.as_deref(),
                target.to_str(),
                "{at} points where it did"
            );
            (ItemKind::Symlink, 0o777)
        } else {
            assert_eq!(item.size, meta.len(), "{at}");
            bytes += item.size;
            let mode = if rel == "/run.sh" { 0o755 } else { 0o644 };
            (ItemKind::File, mode)
        };
        assert_eq!(item.kind, kind, "{at}");
        assert_eq!(item.mode.map(|m| m & 0o7777), Some(mode), "{at}");
    }
    assert_eq!(bytes, 55 + 88_000 + 22, "a.txt, sub/b.bin and run.sh");

    // A prefix that names nothing is not found, by kind.
    let missing = repo.items("ffffffffffff").expect_err("no such snapshot");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    // Every blob of every pack reads and checks.
    let v = repo.verify(true).expect("verify");
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(v.snapshots, 1);
    assert!(v.blobs_checked > 0, "{v:?}");
}
