//! A hostile plugin tries to escape its sandbox: each attempt is refused or
//! stopped with a clear error, nothing leaks into the stream, nothing is
//! written outside the target, and the runner stays healthy.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attache_tests::runner_exit::{PLUGIN_ERROR, REFUSED, STOPPED};
use attache_tests::{assemble, component, fails_with, ok, output, runner};
use guest_runner::stream::{Header, StreamWriter};

struct Fixture {
    _t: tempfile::TempDir,
    agent: PathBuf,
    grant: PathBuf,
    out: PathBuf,
    base: PathBuf,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(
        &agent,
        &[
            ("filesystem", &component("filesystem")),
            ("hostile", &component("hostile")),
            ("sql", &component("sql")),
        ],
    );
    let grant = t.path().join("granted");
    fs::create_dir(&grant).expect("mkdir");
    fs::write(t.path().join("secret.txt"), b"outside the grant").expect("write");
    Fixture {
        out: t.path().join("stream"),
        base: t.path().to_owned(),
        agent,
        grant,
        _t: t,
    }
}

impl Fixture {
    /// The hostile plugin's backup with `attack`; its plan asks to read the
    /// granted directory (option `grant`) and nothing else.
    fn attack(&self, attack: &str, extra: &[&str]) -> Command {
        let mut c = runner(&self.agent);
        c.args(extra)
            .args(["backup", "--plugin", "hostile", "--select", "/", "--option"])
            .arg(format!("attack={attack}"))
            .arg("--option")
            .arg(format!("grant={}", self.grant.display()))
            .arg("--output")
            .arg(&self.out);
        c
    }

    /// A policy file `NAME.toml`: every path readable and writable (as in
    /// the shipped policy), then `text` (more `[default]` keys first, then
    /// plugin tables).
    fn policy(&self, name: &str, text: &str) -> String {
        let p = self.base.join(format!("{name}.toml"));
        fs::write(
            &p,
            format!("[default]\nread = [\"/\"]\nwrite = [\"/\"]\n{text}"),
        )
        .expect("write policy");
        p.display().to_string()
    }

    fn leaked(&self) -> bool {
        let s = fs::read(&self.out).unwrap_or_default();
        s.windows(7).any(|w| w == b"leak://")
    }

    /// The runner still does real work after the attack.
    fn healthy(&self) {
        fs::write(self.grant.join("after"), b"still fine").ok();
        let out = self.base.join("healthy.stream");
        let mut c = runner(&self.agent);
        c.args(["backup", "--plugin", "filesystem", "--select"])
            .arg(&self.grant)
            .arg("--output")
            .arg(&out);
        ok(&mut c);
        let s = fs::read(&out).expect("stream");
        assert!(s.windows(10).any(|w| w == b"still fine"));
    }
}

#[test]
fn reading_outside_the_grant_is_refused() {
    let f = fixture();
    // What the plugin is granted: its plan, the one directory.
    let mut c = runner(&f.agent);
    c.args([
        "plan",
        "--plugin",
        "hostile",
        "--operation",
        "backup",
        "--check",
    ])
    .arg("--option")
    .arg(format!("grant={}", f.grant.display()));
    let plan: serde_json::Value = serde_json::from_str(&ok(&mut c)).expect("plan JSON");
    assert_eq!(
        plan["paths"],
        serde_json::json!([{
            "path": f.grant.display().to_string(),
            "access": "read",
            "reason": "the grant option"
        }]),
        "{plan}"
    );
    assert_eq!(plan["connect"], serde_json::json!([]), "{plan}");
    let err = fails_with(&mut f.attack("read-outside", &[]), PLUGIN_ERROR);
    assert!(err.contains("access denied"), "{err}");
    assert!(
        err.contains("/etc/passwd"),
        "the error names what was refused: {err}"
    );
    assert!(!f.leaked());
    f.healthy();
}

#[test]
fn following_a_symlink_out_is_refused() {
    let f = fixture();
    symlink("/etc/passwd", f.grant.join("absolute")).expect("symlink");
    symlink("../secret.txt", f.grant.join("relative")).expect("symlink");
    let err = fails_with(&mut f.attack("symlink-out", &[]), PLUGIN_ERROR);
    assert!(
        err.contains("absolute") && err.contains("relative"),
        "both links refused: {err}"
    );
    assert!(!f.leaked());
    // The filesystem plugin backs such links up as links, never their targets.
    f.healthy();
    let s = fs::read(f.base.join("healthy.stream")).expect("stream");
    assert!(!s.windows(17).any(|w| w == b"outside the grant"));
}

/// Waits up to `secs` for a connection to `listener` (non-blocking).
fn accept_within(listener: &TcpListener, secs: u64) -> Option<std::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match listener.accept() {
            Ok((conn, _)) => return Some(conn),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn sockets_are_refused_unless_the_plan_names_them() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let opt = format!("addr={addr}");
    // The hostile plugin's plan names no address: its connection is denied,
    // under the shipped policy and under one that would let it connect
    // anywhere (the runner grants the plan, not the policy).
    let anywhere = f.policy(
        "anywhere",
        "[plugins.hostile]\nconnect = [\"0.0.0.0/0:1-65535\", \"::/0:1-65535\"]\n",
    );
    for extra in [&[][..], &["--policy", anywhere.as_str()][..]] {
        let err = fails_with(
            f.attack("socket", extra).args(["--option", &opt]),
            PLUGIN_ERROR,
        );
        assert!(
            err.contains("access denied") && err.contains(&addr),
            "{extra:?}: {err}"
        );
        assert!(
            listener.accept().is_err(),
            "{extra:?}: no connection reached the listener"
        );
        assert!(!f.leaked());
    }

    // A plan that names the address (the SQL plugin's, from its id) under a
    // policy that does not allow it: refused before the plugin runs, the
    // message naming the plugin, the address and the rule.
    let id = format!("postgresql://postgres@{addr}/db");
    let elsewhere = f.policy(
        "elsewhere",
        "[plugins.sql]\nconnect = [\"10.0.0.0/8:5432\"]\n",
    );
    let sql = |extra: &[&str]| {
        let mut c = runner(&f.agent);
        c.args(extra)
            .args(["backup", "--plugin", "sql", "--select", &id, "--output"])
            .arg(f.base.join("sql.stream"));
        c
    };
    let err = fails_with(&mut sql(&["--policy", &elsewhere]), REFUSED);
    assert!(
        err.contains("refused by the policy")
            && err.contains("\"sql\"")
            && err.contains(&addr)
            && err.contains("plugins.sql.connect"),
        "{err}"
    );
    let mut check = runner(&f.agent);
    check
        .args(["--policy", &elsewhere, "plan", "--plugin", "sql"])
        .args(["--operation", "backup", "--check", "--select", &id]);
    let err = fails_with(&mut check, REFUSED);
    assert!(err.contains("plugins.sql.connect"), "{err}");
    assert!(
        accept_within(&listener, 1).is_none(),
        "no connection reached the listener"
    );

    // The same plan under the shipped policy (which lets the SQL plugin
    // connect): the connection is made, to exactly that address. The
    // refusals above came from the plan and the policy, not from a plugin
    // that cannot connect.
    let child = sql(&[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runner");
    let mut conn = accept_within(&listener, 60).expect("the planned connection");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut startup = [0u8; 256];
    let n = conn.read(&mut startup).expect("read the startup message");
    assert!(
        startup[..n].windows(9).any(|w| w == b"postgres\0"),
        "a PostgreSQL startup message for user postgres: {:?}",
        String::from_utf8_lossy(&startup[..n])
    );
    drop(conn);
    let o = child.wait_with_output().expect("runner");
    assert_eq!(
        o.status.code(),
        Some(PLUGIN_ERROR),
        "the server hung up: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    f.healthy();
}

#[test]
fn memory_past_the_limit_stops_the_plugin() {
    let f = fixture();
    let err = fails_with(
        &mut f.attack("memory", &["--memory-limit-mib", "64"]),
        STOPPED,
    );
    assert!(err.contains("exceeded its memory limit of 64 MiB"), "{err}");
    // A limit above the policy's ceiling is refused before the plugin runs.
    let small = f.policy("small", "memory-limit-mib = 32\n");
    let err = fails_with(
        &mut f.attack("memory", &["--policy", &small, "--memory-limit-mib", "64"]),
        REFUSED,
    );
    assert!(
        err.contains("refused by the policy") && err.contains("default.memory-limit-mib"),
        "{err}"
    );
    f.healthy();
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let f = fixture();
    let started = Instant::now();
    let err = fails_with(&mut f.attack("loop", &["--deadline-secs", "2"]), STOPPED);
    assert!(err.contains("exceeded its deadline"), "{err}");
    assert!(started.elapsed().as_secs() < 60, "the deadline stopped it");
    f.healthy();
}

#[test]
fn undeclared_capabilities_are_not_granted() {
    // The probe plugin is on contract 0.1.0 and declares only
    // filesystem-write: the runner does not plan a read of a path it
    // selects.
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(&agent, &[("probe", &component("probe"))]);
    let selected = t.path().display().to_string();
    let mut c = runner(&agent);
    c.args(["backup", "--plugin", "probe", "--select", &selected])
        .args(["--output", "-"]);
    let o = output(&mut c);
    let err = String::from_utf8_lossy(&o.stderr);
    // Refused before the plugin's backup runs: reported as a refusal or as
    // the plugin's (its 0.1.0 plan is made for it) error, never a crash.
    assert!(
        matches!(o.status.code(), Some(REFUSED | PLUGIN_ERROR)),
        "{}: {err}",
        o.status
    );
    assert!(
        err.contains("filesystem-read") && err.contains("does not declare"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "no stream was written");
}

fn empty_restore_stream(path: &Path, plugin: &str) {
    let h = Header {
        format: 1,
        plugin: plugin.into(),
        plugin_version: "0".into(),
        created: 0,
    };
    let w = StreamWriter::new(fs::File::create(path).expect("create"), &h).expect("header");
    w.finish().expect("trailer");
}

#[test]
fn restore_writes_nothing_outside_the_target() {
    let f = fixture();
    let parent = f.base.join("restore-parent");
    let root = parent.join("target");
    fs::create_dir_all(&root).expect("mkdir");
    let stream = f.base.join("restore.stream");
    empty_restore_stream(&stream, "hostile");
    for p in ["/tmp/escaped-absolute", "/tmp/escaped-std"] {
        let _ = fs::remove_file(p);
    }
    // The plan asks to write one directory (the hostile plugin asks to read
    // and write `grant` for its after-quiesce attacks; a restore ignores
    // the attack). Restored to another root, it is granted ROOT/PATH under
    // the name PATH, and nothing else.
    let grant = "/hostile-restore-grant";
    let granted = root.join(grant.trim_start_matches('/'));
    let mut c = runner(&f.agent);
    c.args(["restore", "--plugin", "hostile"])
        .args(["--option", "attack=panic-after-quiesce"])
        .args(["--option", &format!("grant={grant}")])
        .args(["--option", "target-name=escaped-by-ladder"])
        .arg("--target")
        .arg(&root)
        .arg("--input")
        .arg(&stream);
    let err = fails_with(&mut c, PLUGIN_ERROR);
    assert!(err.contains("access denied"), "{err}");
    // It could write inside its grant: the link it planted is there.
    assert!(
        granted
            .join("ladder")
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink()),
        "the plugin had a writable grant at {}: {err}",
        granted.display()
    );
    let outside: Vec<_> = attache_tests::listing(&parent)
        .into_iter()
        .filter(|p| {
            let p = p.to_string_lossy();
            p != "target"
                && p != "target/hostile-restore-grant"
                && !p.starts_with("target/hostile-restore-grant/")
        })
        .collect();
    assert!(outside.is_empty(), "written outside the grant: {outside:?}");
    for p in ["/tmp/escaped-absolute", "/tmp/escaped-std", grant] {
        assert!(!Path::new(p).exists(), "{p} was written");
    }
    assert!(!f.base.join("escaped-by-dotdot").exists());
    f.healthy();
}

#[test]
fn a_broken_component_is_a_clear_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let junk = t.path().join("junk.wasm");
    fs::write(&junk, b"\0asm\x0d\0\x01\0 definitely not a component").expect("write");
    let agent = t.path().join("agent");
    // Assembling compiles every plugin for the container: a broken one
    // never gets in.
    let mut c = attache_tests::attache_isolated(&t.path().join("cache"), &t.path().join("state"));
    c.args(["container", "assemble", "--runner"])
        .arg(attache_tests::agent_dir().join("guest-runner"))
        .arg("--out")
        .arg(&agent)
        .arg("--plugin")
        .arg(format!("junk={}", junk.display()));
    let err = attache_tests::fails(&mut c);
    assert!(err.contains("could not be compiled or loaded"), "{err}");
    // A container without precompiled forms: the runner refuses it as
    // clearly when it loads it.
    attache_tests::assemble_with(&agent, &[("junk", &junk)], &["--no-precompile"]);
    let o = output(runner(&agent).args(["info", "--plugin", "junk"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("could not be compiled or loaded"), "{err}");
}
