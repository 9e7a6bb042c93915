//! Backup streams made to hurt the host (issue 11, findings 5 and 10a),
//! and stalled runners in local backups and restores.
//! The guest is untrusted: here a stand-in runner (a shell script in a
//! container of its own, signed with a test key its trust file trusts) sends whatever stream the test crafted, and the
//! host must refuse bad ids with an error naming the rule, record sizes as
//! received, bound warnings in count and bytes with flat memory, and stop a
//! runner that stalls at `--timeout-secs`.
//!
//! Only `target/release/attache` is needed (`cargo build --release -p
//! attache`); no plugin runs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attache_tests::{attache, fails, ok};
use guest_runner::manifest::Manifest;
use guest_runner::stream::{Header, ItemKind, ItemRecord, StreamWriter};
use guest_runner::trust::key::PrivateKey;

/// A repository, its own cache and state, and a stand-in container whose
/// runner runs `script` (`$1`… are the runner's arguments).
struct Setup {
    _t: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    agent: PathBuf,
}

fn setup(script: &str) -> Setup {
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path().to_owned();
    let agent = base.join("agent");
    fs::create_dir_all(&agent).expect("agent dir");
    install_runner(&agent, script);
    // A key of this test's own, which its trust file trusts for the runner.
    fs::write(
        base.join("trust.toml"),
        format!(
            "format = 1\n[[publisher]]\nname = \"test\"\nkey = \"{}\"\nrunner = true\n",
            key().public()
        ),
    )
    .expect("trust");
    fs::create_dir_all(base.join("src")).expect("src");
    Setup {
        repo: base.join("repo"),
        agent,
        base,
        _t: t,
    }
}

/// The stand-in containers' publisher key.
fn key() -> PrivateKey {
    PrivateKey::from_seed(&[42; 32])
}

/// Makes `agent`'s runner the script `script`, with a manifest for it that
/// [`key`] signs (the host checks both before it runs the runner).
fn install_runner(agent: &Path, script: &str) {
    let runner = agent.join("guest-runner");
    fs::write(&runner, format!("#!/bin/sh\n{script}\n")).expect("runner");
    let mut perm = fs::metadata(&runner).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&runner, perm).expect("chmod");
    Manifest::for_dir(agent, &[], None)
        .expect("manifest")
        .write(agent)
        .expect("write manifest");
    let _ = fs::remove_file(agent.join("manifest.sig"));
    guest_runner::trust::sign_container(agent, &key(), 1).expect("sign");
}

impl Setup {
    /// `attache` on this setup's repository, cache, state, container and
    /// trust.
    fn cmd(&self) -> Command {
        let mut c = attache(&self.repo);
        c.env("ATTACHE_AGENT_DIR", &self.agent)
            .env("ATTACHE_TRUST", self.base.join("trust.toml"))
            .env("ATTACHE_STATE_DIR", self.base.join("state"))
            .env("ATTACHE_CACHE_DIR", self.base.join("cache"))
            .env_remove("ATTACHE_SERVER");
        c
    }

    /// `attache snapshots --json`.
    fn snapshots(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&ok(self.cmd().args(["snapshots", "--json"])))
            .expect("snapshots --json prints JSON")
    }

    /// `attache backup local` of the (empty) source directory.
    fn backup(&self) -> Command {
        let mut c = self.cmd();
        c.args(["backup", "local", "--plugin", "filesystem", "--json"])
            .arg("--include")
            .arg(self.base.join("src"));
        c
    }

    /// A backup of a stream sent by the stand-in runner, which `cat`s
    /// `$ATTACHE_TEST_STREAM`.
    fn backup_of(&self, stream: &Path) -> Command {
        let mut c = self.backup();
        c.env("ATTACHE_TEST_STREAM", stream);
        c
    }
}

const CAT: &str = "exec cat \"$ATTACHE_TEST_STREAM\"";

fn header() -> Header {
    Header {
        format: 1,
        plugin: "filesystem".into(),
        plugin_version: "0".into(),
        created: 0,
    }
}

fn file(id: &str) -> ItemRecord {
    ItemRecord {
        mode: Some(0o100644),
        ..ItemRecord::new(id, ItemKind::File, 1)
    }
}

/// A stream of these items, each with its data.
fn stream(items: &[(ItemRecord, &[u8])]) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new(), &header()).expect("header");
    for (r, data) in items {
        w.begin_item(r).expect("item");
        w.data(data).expect("data");
        w.end_item().expect("end");
    }
    w.finish().expect("trailer").0
}

/// Runs `c` to its end, sampling its peak resident memory (VmHWM) as it
/// goes; its output and that peak in bytes.
fn run_measured(c: &mut Command) -> (std::process::Output, u64) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn attache");
    let status_file = format!("/proc/{}/status", child.id());
    let out = std::thread::scope(|s| {
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let o = s.spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut b).ok();
            b
        });
        let e = s.spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut b).ok();
            b
        });
        let mut peak = 0u64;
        let status = loop {
            if let Ok(text) = fs::read_to_string(&status_file) {
                for l in text.lines() {
                    if let Some(v) = l.strip_prefix("VmHWM:") {
                        let kb: u64 = v.trim().trim_end_matches(" kB").parse().unwrap_or(0);
                        peak = peak.max(kb * 1024);
                    }
                }
            }
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::process::Output {
            status,
            stdout: o.join().expect("stdout reader"),
            stderr: e.join().expect("stderr reader"),
        };
        (output, peak)
    });
    out
}

#[test]
fn bad_ids_are_refused_naming_the_rule_and_nothing_is_stored() {
    let s = setup(CAT);
    let long = format!("/{}", "a".repeat(100_000));
    // Each case: the items of a crafted stream, and what the refusal says.
    type Case<'a> = (Vec<(ItemRecord, &'a [u8])>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![(file("/../../etc/passwd"), b"x")],
            "has a bad id: path id has an empty, '.' or '..' component",
        ),
        (
            vec![(file("x\0y"), b"x")],
            "has a bad id: id contains a NUL byte",
        ),
        (vec![(file(""), b"x")], "has a bad id: empty id"),
        (
            vec![(file("/a"), b"x"), (file("/a"), b"y")],
            "\"/a\" appears twice",
        ),
        (
            vec![(file(&long), b"x")],
            "is 100001 bytes long, more than the limit of 4096",
        ),
        (
            vec![(
                ItemRecord {
                    hardlink_target: Some("/../../etc/shadow".into()),
                    ..ItemRecord::new("/h", ItemKind::Hardlink, 0)
                },
                b"",
            )],
            "bad hard link target",
        ),
    ];
    for (i, (items, rule)) in cases.into_iter().enumerate() {
        let path = s.base.join(format!("bad{i}.stream"));
        fs::write(&path, stream(&items)).expect("write stream");
        let err = fails(&mut s.backup_of(&path));
        assert!(err.contains("the stream is refused"), "case {i}: {err}");
        assert!(err.contains(rule), "case {i}: {err}");
        assert!(err.len() < 2000, "case {i}: the error stays short: {err}");
    }
    assert!(s.snapshots().is_empty(), "no snapshot of a refused stream");
}

#[test]
fn sizes_are_those_received_not_those_claimed() {
    let s = setup(CAT);
    const TB: u64 = 1 << 40;
    let path = s.base.join("sizes.stream");
    fs::write(
        &path,
        stream(&[
            (
                ItemRecord {
                    mode: Some(0o040755),
                    ..ItemRecord::new("/d", ItemKind::Directory, TB)
                },
                b"",
            ),
            (ItemRecord::new("/d/f", ItemKind::File, TB), b"abc"),
            (ItemRecord::new("/d/db", ItemKind::Database, TB), b""),
            (
                ItemRecord {
                    symlink_target: Some("f".into()),
                    ..ItemRecord::new("/d/l", ItemKind::Symlink, TB)
                },
                b"",
            ),
        ]),
    )
    .expect("write");
    let out: serde_json::Value =
        serde_json::from_str(&ok(&mut s.backup_of(&path))).expect("JSON report");
    let snaps = s.snapshots();
    assert_eq!(snaps.len(), 1, "{out}");
    assert_eq!(snaps[0]["bytes"], 3, "{}", snaps[0]);
    let id = snaps[0]["id"].as_str().expect("id");
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&ok(s.cmd().args(["ls", id, "--json"]))).expect("ls --json");
    let size = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {items:?}"))["size"]
            .as_u64()
    };
    assert_eq!(size("/d"), Some(0));
    assert_eq!(size("/d/f"), Some(3));
    assert_eq!(size("/d/db"), Some(0));
    assert_eq!(size("/d/l"), Some(1));
}

#[test]
fn a_flood_of_huge_warnings_is_bounded_and_memory_stays_flat() {
    let s = setup(CAT);
    // Generated as it is read (through a FIFO): 100 warnings of 4 MiB
    // each, then 20,000 small ones, never all on disk or in memory.
    let fifo = s.base.join("flood.fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    let writer_path = fifo.clone();
    std::thread::spawn(move || -> Option<()> {
        let f = fs::OpenOptions::new().write(true).open(&writer_path).ok()?;
        let mut w =
            StreamWriter::new(std::io::BufWriter::with_capacity(1 << 20, f), &header()).ok()?;
        let big = "w".repeat((4 << 20) - 200);
        for i in 0..100 {
            w.warning(&format!("/big/{i}"), &big).ok()?;
        }
        for i in 0..20_000 {
            w.warning(&format!("/small/{i}"), "unreadable").ok()?;
        }
        w.begin_item(&file("/kept")).ok()?;
        w.data(b"k").ok()?;
        w.end_item().ok()?;
        let (mut inner, _) = w.finish().ok()?;
        inner.flush().ok()
    });
    let (out, peak) = run_measured(&mut s.backup_of(&fifo));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        peak < 300 << 20,
        "attache peaked at {} MiB for a 400 MiB stream of warnings",
        peak >> 20
    );

    let t0 = Instant::now();
    let (listed, peak) = run_measured(s.cmd().args(["snapshots", "--json"]));
    let took = t0.elapsed();
    assert!(listed.status.success());
    assert!(
        took < Duration::from_secs(3),
        "attache snapshots took {took:?}"
    );
    assert!(
        peak < 200 << 20,
        "attache snapshots peaked at {} MiB",
        peak >> 20
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(snaps.len(), 1);
    let size: u64 = fs::read_dir(s.repo.join("snapshots"))
        .expect("snapshots/")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    assert!(size > 0 && size < 4 << 20, "snapshots/ holds {size} bytes");
    // At most 10,000 warnings recorded, and one that says how many more
    // there were.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["warnings"], 10_001, "{report}");
    assert_eq!(report["items"], 1, "{report}");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("10100 more warnings") && text.contains("were not recorded"),
        "{:.2000}",
        text
    );
}

#[test]
fn a_stalled_runner_is_stopped_at_the_timeout_and_the_lock_released() {
    // The runner neither writes nor exits: the host's read of its stream
    // would block for ever.
    let s = setup("exec sleep 600");
    let t0 = Instant::now();
    let err = fails(s.backup().args(["--timeout-secs", "2"]));
    let took = t0.elapsed();
    assert!(
        err.contains("had not finished after 2 s (--timeout-secs) and was stopped"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The repository lock is free: prune takes it exclusively.
    let t0 = Instant::now();
    ok(s.cmd().args(["prune"]));
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_runner_that_stalls_after_its_stream_is_stopped_too() {
    let s = setup("cat \"$ATTACHE_TEST_STREAM\"; exec sleep 600");
    let path = s.base.join("ok.stream");
    fs::write(&path, stream(&[(file("/f"), b"f")])).expect("write");
    let t0 = Instant::now();
    let err = fails(s.backup_of(&path).args(["--timeout-secs", "2"]));
    assert!(err.contains("and was stopped"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(s.snapshots().is_empty(), "a stopped job stores no snapshot");
}

#[test]
fn a_stalled_runner_is_stopped_in_a_local_restore_too() {
    let s = setup(CAT);
    let path = s.base.join("one.stream");
    fs::write(&path, stream(&[(file("/f"), b"f")])).expect("write");
    ok(&mut s.backup_of(&path));
    let id = s.snapshots()[0]["id"].as_str().expect("id").to_owned();
    // The same container's runner now stalls.
    install_runner(&s.agent, "exec sleep 600");
    let to = format!("local:{}", s.base.join("out").display());
    let t0 = Instant::now();
    let err = fails(
        s.cmd()
            .args(["restore", &id, "--to", &to, "--timeout-secs", "2"]),
    );
    assert!(err.contains("and was stopped"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_dangling_hard_link_is_left_out_with_a_warning_and_the_rest_restored() {
    let s = setup(CAT);
    let path = s.base.join("dangling.stream");
    fs::write(
        &path,
        stream(&[
            (
                ItemRecord {
                    mode: Some(0o040755),
                    ..ItemRecord::new("/d", ItemKind::Directory, 0)
                },
                b"",
            ),
            (file("/d/kept"), b"k"),
            (
                ItemRecord {
                    mode: Some(0o100644),
                    hardlink_target: Some("/d/missing".into()),
                    ..ItemRecord::new("/d/link", ItemKind::Hardlink, 0)
                },
                b"",
            ),
        ]),
    )
    .expect("write");
    ok(&mut s.backup_of(&path));
    let snaps = s.snapshots();
    let id = snaps[0]["id"].as_str().expect("id").to_owned();
    let out = s.base.join("out");
    // Restored by the real runner and plugin (with the trust that vouches
    // for them).
    let o = attache_tests::output(
        s.cmd()
            .env("ATTACHE_AGENT_DIR", attache_tests::agent_dir())
            .env("ATTACHE_TRUST", attache_tests::dev_trust())
            .args(["restore", &id, "--to"])
            .arg(format!("local:{}", out.display())),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("/d/link") && err.contains("/d/missing"),
        "the warning names the link and its missing target: {err}"
    );
    assert_eq!(fs::read(out.join("d/kept")).expect("restored"), b"k");
    assert!(!out.join("d/link").exists());
}
