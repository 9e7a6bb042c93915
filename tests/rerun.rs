//! Issue 12: a re-run reads its parent's catalog through bounded windows
//! (the runner's lookups, the host's check of "unchanged" claims) instead
//! of a map of the whole catalog. A re-run of a tree whose items were
//! deleted, renamed and inserted in runs longer than a window still makes
//! a correct snapshot, and still reads again only what changed.

use std::fs;
use std::path::Path;

use attache_tests::{attache, ok, tree};
use serde_json::Value;

/// Directories of the tree, and files in each.
const DIRS: usize = 30;
const FILES: usize = 700;

fn file(dir: &Path, i: usize, seed: u64) -> u64 {
    let len = 1 + (seed * 7919 % 1500) as usize;
    let mut buf = seed.to_le_bytes().to_vec();
    buf.resize(len.max(8), (seed % 251) as u8);
    fs::write(dir.join(format!("f{i:04}")), &buf).expect("write");
    buf.len() as u64
}

fn read_bytes(report: &Value) -> u64 {
    report["read_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("read_bytes in {report}"))
}

#[test]
fn a_rerun_across_deletions_renames_and_insertions_larger_than_the_window() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    for d in 0..DIRS {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).expect("dir");
        for i in 0..FILES {
            file(&dir, i, (d * FILES + i) as u64);
        }
    }
    let repo = t.path().join("repo");
    let first = attache_tests::backup(&repo, &src);
    assert!(read_bytes(&first) > 0);

    // 16,800 files deleted in a row: more than a window reads ahead of
    // what it found last (guest_runner::window::AHEAD, 16,384 records).
    for d in 3..27 {
        fs::remove_dir_all(src.join(format!("d{d:02}"))).expect("rm");
    }
    // A directory renamed to an earlier place: its files are new ids.
    fs::rename(src.join("d27"), src.join("d01x")).expect("rename");
    // New files among old ones, a changed file, and a new directory.
    let mut again = 0;
    for i in 0..50 {
        again += file(&src.join("d28"), 10_000 + i, 900_000 + i as u64);
    }
    for i in [3, 300, 699] {
        // Another size: changed whatever the clock's resolution.
        let p = src.join("d29").join(format!("f{i:04}"));
        fs::write(&p, vec![b'x'; 2000 + i]).expect("write");
        again += 2000 + i as u64;
    }
    fs::create_dir_all(src.join("d99")).expect("dir");
    for i in 0..100 {
        again += file(&src.join("d99"), i, 800_000 + i as u64);
    }
    for e in fs::read_dir(src.join("d01x")).expect("renamed") {
        again += e.expect("entry").metadata().expect("md").len();
    }

    // Exactly what changed is read again: every unchanged file, before and
    // after the deleted run, was found in the parent.
    let second = attache_tests::backup(&repo, &src);
    assert_eq!(read_bytes(&second), again, "{second}");
    let id = second["id"].as_str().expect("id");
    let dest = t.path().join("restored");
    ok(attache(&repo)
        .args(["restore", id, "--to"])
        .arg(format!("local:{}", dest.display())));
    tree::assert_same(&src, &attache_tests::restored(&dest, &src));

    // And a re-run of that: nothing read again.
    let third = attache_tests::backup(&repo, &src);
    assert_eq!(read_bytes(&third), 0, "{third}");
    assert_eq!(third["items"], second["items"]);
}
