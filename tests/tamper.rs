//! The tamper suite: findings 1–4 of issue 11 done to a real repository
//! with the real `attache`. Every command must end by itself within a bound,
//! with exit status 0 or 1 (no panic, no abort), and a failure must say what
//! is wrong and name the file; undamaged snapshots must still restore, and
//! nothing may be written in plaintext. Each test has its own repository,
//! cache and state directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use attache_tests::{restored, tree};
use serde_json::Value;

/// The longest any command here may take.
const BOUND: Duration = Duration::from_secs(60);

/// `attache` on `repo`, with its own cache and state beside it.
fn attache(repo: &Path) -> Command {
    let mut c = attache_tests::attache(repo);
    c.env("ATTACHE_STATE_DIR", repo.with_extension("state"))
        .env_remove("ATTACHE_SERVER");
    c
}

/// Runs `c` to its end within [`BOUND`] (killed and failed past it); its
/// exit must be 0 or 1, never a signal (abort) or 101 (panic).
fn run(c: &mut Command) -> Output {
    let out = attache_tests::output_within(c, BOUND);
    let status = out.status;
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{c:?} crashed ({status})\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        o.status.success(),
        "{c:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must fail cleanly; returns stdout and stderr.
fn fails(c: &mut Command) -> String {
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{c:?} should have failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn backup(repo: &Path, src: &Path) -> String {
    let out = ok(attache(repo).args(attache_tests::BACKUP_LOCAL).arg(src));
    let v: Value = serde_json::from_str(&out).expect("json");
    v["id"].as_str().expect("id").to_owned()
}

fn listing(repo: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(attache(repo).args(["snapshots", "--json"]))).expect("json")
}

/// Restores snapshot `id` into `out` and checks `src` came back whole.
fn restores(repo: &Path, id: &str, src: &Path, out: &Path) {
    let _ = fs::remove_dir_all(out);
    ok(attache(repo)
        .args(["restore", id, "--to"])
        .arg(format!("local:{}", out.display())));
    tree::assert_same(src, &restored(out, src));
}

/// Files of the repository holding `needle`.
fn holding(repo: &Path, needle: &[u8]) -> Vec<PathBuf> {
    attache_tests::listing(repo)
        .into_iter()
        .map(|p| repo.join(p))
        .filter(|p| p.is_file())
        .filter(|p| {
            fs::read(p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}

fn edit_config(repo: &Path, f: impl FnOnce(&mut Value)) {
    let p = repo.join("config");
    let mut v: Value = serde_json::from_slice(&fs::read(&p).expect("config")).expect("json");
    f(&mut v);
    fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}

/// A source tree whose one file holds a marker that must never reach the
/// repository in plaintext.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7c1f";

fn source(dir: &Path, seed: u64) -> PathBuf {
    fs::create_dir_all(dir).expect("mkdir");
    tree::random_file(&dir.join("data.bin"), 2 << 20, seed);
    fs::write(dir.join("note.txt"), MARKER.repeat(100)).expect("write");
    dir.to_owned()
}

#[test]
fn encryption_cannot_be_switched_off_by_editing_the_config() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = source(&t.path().join("src"), 1);
    let repo = t.path().join("repo");
    let id = backup(&repo, &src);
    let original = fs::read(repo.join("config")).expect("config");

    // "none", with the MAC kept or dropped, and with the data moved aside.
    for drop_mac in [false, true] {
        edit_config(&repo, |v| {
            v["encryption"] = "none".into();
            if drop_mac {
                v.as_object_mut().expect("object").remove("mac");
            }
        });
        for args in [&["snapshots"][..], &["verify"][..]] {
            let e = fails(attache(&repo).args(args));
            assert!(e.contains("config"), "{e}");
        }
        for pw in [true, false] {
            let mut c = attache(&repo);
            if !pw {
                c.env_remove("ATTACHE_PASSWORD");
            }
            let e = fails(c.args(attache_tests::BACKUP_LOCAL).arg(&src));
            assert!(e.contains("config") || e.contains("password"), "{e}");
        }
    }
    // Any other edit fails authentication.
    fs::write(repo.join("config"), &original).expect("restore config");
    edit_config(&repo, |v| v["chunking"] = "fastcdc-2020".into());
    let e = fails(attache(&repo).args(["snapshots"]));
    assert!(e.contains("config: authentication failed"), "{e}");
    fs::write(repo.join("config"), &original).expect("restore config");
    restores(&repo, &id, &src, &t.path().join("out"));
    assert!(
        holding(&repo, MARKER).is_empty(),
        "plaintext in the repository"
    );
}

#[test]
fn an_old_repository_opens_upgrades_and_refuses_tampering() {
    let fixtures = attache_tests::root().join("tests/fixtures");
    let t = tempfile::tempdir().expect("tempdir");
    let copy = |name: &str| {
        let to = t.path().join(name);
        ok(Command::new("cp")
            .arg("-r")
            .arg(fixtures.join("format2-repo"))
            .arg(&to));
        to
    };
    // An edited format-2 config is refused before any upgrade.
    let edited = copy("edited");
    edit_config(&edited, |v| {
        v["chunker"] = serde_json::json!({"min": 65536, "avg": 131072, "max": 262144})
    });
    let e = fails(attache(&edited).args(["snapshots"]));
    assert!(e.contains("config"), "{e}");
    let none = copy("none");
    edit_config(&none, |v| v["encryption"] = "none".into());
    fails(attache(&none).args(["snapshots"]));
    fails(
        attache(&none)
            .env_remove("ATTACHE_PASSWORD")
            .args(["snapshots"]),
    );

    // The real one opens, restores, and is upgraded to an authenticated config.
    let repo = copy("repo");
    let old_config = fs::read(repo.join("config")).expect("config");
    let snaps = listing(&repo);
    assert_eq!(snaps.len(), 1);
    let id = snaps[0]["id"].as_str().expect("id").to_owned();
    let out = t.path().join("out");
    ok(attache(&repo)
        .args(["restore", &id, "--to"])
        .arg(format!("local:{}", out.display())));
    // Contents only: a checkout does not keep the fixture's times.
    for f in ["a.txt", "sub/b.bin"] {
        assert_eq!(
            fs::read(out.join("tmp/attache-fixture-src").join(f)).expect("restored"),
            fs::read(fixtures.join("format2-src").join(f)).expect("fixture"),
            "{f}"
        );
    }
    let config: Value =
        serde_json::from_slice(&fs::read(repo.join("config")).expect("config")).expect("json");
    assert_eq!(config["format"], 3);
    assert_eq!(config["chunking"], "fastcdc-2020", "keeps unkeyed chunking");
    assert!(config["mac"].is_string());
    ok(attache(&repo).args(["verify", "--read-data"]));
    // Putting the old unauthenticated config back is now refused.
    fs::write(repo.join("config"), &old_config).expect("write");
    let e = fails(attache(&repo).args(["snapshots"]));
    assert!(e.contains("config"), "{e}");
}

#[test]
fn hostile_key_derivation_parameters_fail_fast_and_clearly() {
    let t = tempfile::tempdir().expect("tempdir");
    let repo = t.path().join("repo");
    ok(attache(&repo).arg("init"));
    let key = repo.join("keys/default");
    let original = fs::read(&key).expect("key");
    for (m, t_, p) in [
        (4_000_000_000u64, 4u64, 1u64),
        (32768, 4294967295, 1),
        (2097152, 4, 1),
        (0, 0, 0),
        (32768, 4, 4294967295),
    ] {
        let mut v: Value = serde_json::from_slice(&original).expect("json");
        v["m_cost"] = m.into();
        v["t_cost"] = t_.into();
        v["p_cost"] = p.into();
        fs::write(&key, serde_json::to_vec(&v).expect("json")).expect("write");
        let started = Instant::now();
        let e = fails(attache(&repo).args(["snapshots"]));
        assert!(started.elapsed() < Duration::from_secs(10), "{m} {t_} {p}");
        assert!(e.contains("keys/default"), "{e}");
    }
    fs::write(&key, &original).expect("write");
    ok(attache(&repo).args(["snapshots"]));
}

#[test]
fn absurd_chunker_parameters_are_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = source(&t.path().join("src"), 2);
    let repo = t.path().join("repo");
    let plain = || {
        let mut c = attache(&repo);
        c.env_remove("ATTACHE_PASSWORD");
        c
    };
    ok(plain().args(["init", "--no-encryption"]));
    for (min, avg, max) in [(0, 1, 1), (64, 256, 1024), (1 << 20, 1 << 19, 1 << 21)] {
        edit_config(&repo, |v| {
            v["chunker"] = serde_json::json!({"min": min, "avg": avg, "max": max})
        });
        let e = fails(plain().args(attache_tests::BACKUP_LOCAL).arg(&src));
        assert!(e.contains("config: chunker"), "{e}");
    }
}

/// A repository of two snapshots of two sources, each in its own packs.
struct Two {
    _t: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    src: [PathBuf; 2],
    id: [String; 2],
}

fn two() -> Two {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_owned();
    let repo = root.join("repo");
    let src = [source(&root.join("a"), 3), source(&root.join("b"), 4)];
    let id = [backup(&repo, &src[0]), backup(&repo, &src[1])];
    Two {
        _t: t,
        root,
        repo,
        src,
        id,
    }
}

/// The packs written by the second backup (newest first by mtime).
fn packs_of_second(repo: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> = attache_tests::listing(&repo.join("data"))
        .into_iter()
        .map(|p| repo.join("data").join(p))
        .filter(|p| p.is_file())
        .collect();
    packs.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    let n = packs.len() / 2;
    packs.split_off(n)
}

#[test]
fn junk_in_snapshots_is_listed_as_damaged_and_the_rest_restores() {
    let r = two();
    let junk = r.repo.join("snapshots").join("ab".repeat(32));
    fs::write(&junk, b"not a snapshot").expect("write");
    let l = listing(&r.repo);
    assert_eq!(l.len(), 3);
    let bad: Vec<&Value> = l.iter().filter(|s| s["damaged"].is_string()).collect();
    assert_eq!(bad.len(), 1, "{l:?}");
    assert!(bad[0]["damaged"]
        .as_str()
        .expect("why")
        .contains(&junk.display().to_string()));
    let table = ok(attache(&r.repo).arg("snapshots"));
    assert!(table.contains("DAMAGED"), "{table}");
    let e = fails(attache(&r.repo).args(["verify"]));
    assert!(e.contains(&junk.display().to_string()), "{e}");
    for i in 0..2 {
        restores(
            &r.repo,
            &r.id[i],
            &r.src[i],
            &r.root.join(format!("out{i}")),
        );
    }
    // A damaged snapshot file (a flipped byte) likewise.
    let f = r.repo.join("snapshots").join(&r.id[1]);
    let mut b = fs::read(&f).expect("read");
    b[10] ^= 1;
    fs::write(&f, &b).expect("write");
    let l = listing(&r.repo);
    assert!(l
        .iter()
        .any(|s| s["id"] == r.id[1].as_str() && s["damaged"].is_string()));
    restores(&r.repo, &r.id[0], &r.src[0], &r.root.join("out0"));
    let e = fails(attache(&r.repo).args(["restore", &r.id[1], "--to", "local:/nonexistent"]));
    assert!(e.contains("damaged"), "{e}");
    // repair snapshots removes both; what remains verifies.
    ok(attache(&r.repo).args(["repair", "snapshots"]));
    let l = listing(&r.repo);
    assert_eq!(l.len(), 1, "{l:?}");
    ok(attache(&r.repo).args(["verify", "--read-data"]));
}

#[test]
fn a_flipped_bit_in_the_index_is_named_and_repaired() {
    let r = two();
    let index = attache_tests::listing(&r.repo.join("index"))
        .into_iter()
        .map(|p| r.repo.join("index").join(p))
        .find(|p| p.is_file())
        .expect("an index file");
    let mut b = fs::read(&index).expect("read");
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    fs::write(&index, &b).expect("write");
    // Listing still works; verify names the file.
    assert_eq!(listing(&r.repo).len(), 2);
    let e = fails(attache(&r.repo).args(["verify"]));
    assert!(e.contains(&index.display().to_string()), "{e}");
    let e = fails(attache(&r.repo).arg("prune"));
    assert!(e.contains("repair index"), "{e}");
    ok(attache(&r.repo).args(["repair", "index"]));
    ok(attache(&r.repo).args(["verify", "--read-data"]));
    for i in 0..2 {
        restores(
            &r.repo,
            &r.id[i],
            &r.src[i],
            &r.root.join(format!("out{i}")),
        );
    }
}

#[test]
fn a_truncated_pack_is_named_and_its_data_stored_again() {
    let r = two();
    let victims = packs_of_second(&r.repo);
    for p in &victims {
        let len = fs::metadata(p).expect("stat").len();
        let f = fs::OpenOptions::new().write(true).open(p).expect("open");
        f.set_len(len / 3).expect("truncate");
    }
    assert_eq!(listing(&r.repo).len(), 2);
    // The undamaged snapshot restores; the damaged one names the pack.
    restores(&r.repo, &r.id[0], &r.src[0], &r.root.join("out0"));
    let out = r.root.join("out1");
    let e = fails(
        attache(&r.repo)
            .args(["restore", &r.id[1], "--to"])
            .arg(format!("local:{}", out.display())),
    );
    assert!(e.contains("truncated"), "{e}");
    assert!(!e.contains("failed to fill whole buffer"), "{e}");
    assert!(
        victims.iter().any(|v| e.contains(&v.display().to_string())),
        "{e}"
    );
    let e = fails(attache(&r.repo).args(["verify", "--read-data"]));
    assert!(
        victims.iter().any(|v| e.contains(&v.display().to_string())),
        "{e}"
    );
    // Backups after the damage was found never point at the lost chunks:
    // the content is read and stored again (at most one backup leaves the
    // item out, with a warning, when its parent's copy is lost).
    let mut last = String::new();
    for _ in 0..2 {
        last = backup(&r.repo, &r.src[1]);
    }
    restores(&r.repo, &last, &r.src[1], &r.root.join("out2"));
    // repair: the index without the lost chunks, snapshots without the lost
    // items; then the repository verifies clean.
    ok(attache(&r.repo).args(["repair", "index"]));
    ok(attache(&r.repo).args(["repair", "snapshots"]));
    ok(attache(&r.repo).args(["verify", "--read-data"]));
    restores(&r.repo, &r.id[0], &r.src[0], &r.root.join("out0"));
    restores(&r.repo, &last, &r.src[1], &r.root.join("out2"));
}

#[test]
fn a_swapped_pack_is_found_by_verify_and_does_not_spread() {
    let r = two();
    let second = packs_of_second(&r.repo);
    let first: Vec<PathBuf> = attache_tests::listing(&r.repo.join("data"))
        .into_iter()
        .map(|p| r.repo.join("data").join(p))
        .filter(|p| p.is_file() && !second.contains(p))
        .collect();
    // The second backup's pack now holds the first's bytes.
    let (a, b) = (&first[0], &second[0]);
    fs::copy(a, b).expect("copy");
    assert_eq!(listing(&r.repo).len(), 2);
    restores(&r.repo, &r.id[0], &r.src[0], &r.root.join("out0"));
    let e = fails(attache(&r.repo).args(["verify", "--read-data"]));
    assert!(e.contains(&b.display().to_string()), "{e}");
    // After verify recorded the damage, a backup stores the data again.
    let mut last = String::new();
    for _ in 0..2 {
        last = backup(&r.repo, &r.src[1]);
    }
    restores(&r.repo, &last, &r.src[1], &r.root.join("out1"));
    assert!(
        holding(&r.repo, MARKER).is_empty(),
        "plaintext in the repository"
    );
}
