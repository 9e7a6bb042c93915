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
//! Never regenerate it to make this test pass: that is the drift it is
//! here to catch. A new format adds a second golden repository beside it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use attache_tests::{attache_isolated, listing, ok, restored, root};
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
