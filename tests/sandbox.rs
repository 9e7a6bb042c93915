//! A hostile plugin tries to escape its sandbox: each attempt is refused or
//! stopped with a clear error, nothing leaks into the stream, nothing is
//! written outside the target, and the runner stays healthy.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use attache_tests::{assemble, component, fails, ok, output, runner};
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
    fn attack(&self, attack: &str, extra: &[&str]) -> Command {
        let mut c = runner(&self.agent);
        c.args(extra)
            .args(["backup", "--plugin", "hostile", "--select", "/", "--option"])
            .arg(format!("attack={attack}"))
            .arg("--grant-read")
            .arg(&self.grant)
            .arg("--output")
            .arg(&self.out);
        c
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
        c.args(["backup", "--plugin", "filesystem", "--grant-read"])
            .arg(&self.grant)
            .arg("--select")
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
    let err = fails(&mut f.attack("read-outside", &[]));
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
    let err = fails(&mut f.attack("symlink-out", &[]));
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

#[test]
fn sockets_are_refused_unless_granted() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let opt = format!("addr={addr}");
    let err = fails(f.attack("socket", &[]).args(["--option", &opt]));
    assert!(
        err.contains("access denied") && err.contains(&addr),
        "{err}"
    );
    assert!(
        listener.accept().is_err(),
        "no connection reached the listener"
    );
    assert!(!f.leaked());

    // The same plugin, granted that one address, gets through: the refusal
    // above came from the grant, not from a plugin that cannot connect.
    ok(f.attack("socket", &["--allow-net", &addr])
        .args(["--option", &opt]));
    listener.set_nonblocking(false).expect("blocking");
    let (mut conn, _) = listener.accept().expect("granted connection");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).expect("read");
    assert_eq!(got, b"leaked");
    f.healthy();
}

#[test]
fn memory_past_the_limit_stops_the_plugin() {
    let f = fixture();
    let err = fails(&mut f.attack("memory", &["--memory-limit-mib", "64"]));
    assert!(err.contains("exceeded its memory limit of 64 MiB"), "{err}");
    f.healthy();
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let f = fixture();
    let started = std::time::Instant::now();
    let err = fails(&mut f.attack("loop", &["--deadline-secs", "2"]));
    assert!(err.contains("exceeded its deadline"), "{err}");
    assert!(started.elapsed().as_secs() < 60, "the deadline stopped it");
    f.healthy();
}

#[test]
fn undeclared_capabilities_are_not_granted() {
    let t = tempfile::tempdir().expect("tempdir");
    let agent = t.path().join("agent");
    assemble(&agent, &[("probe", &component("probe"))]);
    let mut c = runner(&agent);
    c.args([
        "backup",
        "--plugin",
        "probe",
        "--select",
        "x",
        "--output",
        "-",
        "--grant-read",
    ])
    .arg(t.path());
    let err = fails(&mut c);
    assert!(err.contains("does not declare it"), "{err}");
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
    let target = parent.join("target");
    fs::create_dir_all(&target).expect("mkdir");
    let stream = f.base.join("restore.stream");
    empty_restore_stream(&stream, "hostile");
    for p in ["/tmp/escaped-absolute", "/tmp/escaped-std"] {
        let _ = fs::remove_file(p);
    }
    let mut c = runner(&f.agent);
    c.args([
        "restore",
        "--plugin",
        "hostile",
        "--option",
        "target-name=target",
        "--target",
    ])
    .arg(&target)
    .arg("--input")
    .arg(&stream);
    let err = fails(&mut c);
    assert!(err.contains("access denied"), "{err}");
    let outside: Vec<_> = attache_tests::listing(&parent)
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the target: {outside:?}"
    );
    for p in ["/tmp/escaped-absolute", "/tmp/escaped-std"] {
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
    let mut c = std::process::Command::new(attache_tests::attache_bin());
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
