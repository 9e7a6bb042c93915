//! What the integration tests share: paths to the built binaries, running
//! them, making test trees and comparing trees.
//!
//! The binaries are the ones `make build` lays out (`target/release/attache`
//! and the agent container in `target/release/agent`); `make test` builds
//! them before running these tests.

pub mod browser;
pub mod hypervisor;
pub mod libvirt;
pub mod mail;
pub mod pg;
pub mod scenarios;
pub mod seaweed;
pub mod server;
pub mod tree;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn built(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `make build` (and `make test-plugins`) first",
        p.display()
    );
    p
}

/// `target/release/attache`.
pub fn attache_bin() -> PathBuf {
    built("target/release/attache")
}

/// The agent container `make build` assembled.
pub fn agent_dir() -> PathBuf {
    built("target/release/agent")
}

/// A built plugin component: `filesystem`, `sql`, or a test plugin
/// (`hostile`, `probe`).
pub fn component(name: &str) -> PathBuf {
    let file = if name == "filesystem" || name == "sql" {
        format!("attache_plugin_{name}.wasm")
    } else {
        format!("attache_test_plugin_{name}.wasm")
    };
    built(&format!("target/wasm32-wasip2/release/{file}"))
}

/// `make build`'s development publisher key, which signs its container.
pub fn dev_key() -> PathBuf {
    built("target/dev-keys/dev.key")
}

/// `make build`'s trust file (beside attache, where attache finds it):
/// the development key may sign the runner and every plugin.
pub fn dev_trust() -> PathBuf {
    built("target/release/trust.toml")
}

/// A fresh agent container in `dir` with the built runner and these plugins
/// (also precompiled for the runner, as `make build` assembles it), signed
/// with the development key.
pub fn assemble(dir: &Path, plugins: &[(&str, &Path)]) {
    assemble_with(dir, plugins, &[]);
}

/// `assemble` with more `container assemble` arguments (signed with the
/// development key unless they hold `--sign`).
pub fn assemble_with(dir: &Path, plugins: &[(&str, &Path)], args: &[&str]) {
    let mut c = attache_isolated(&dir.with_extension("cache"), &dir.with_extension("state"));
    c.args(["container", "assemble", "--runner"])
        .arg(agent_dir().join("guest-runner"))
        .arg("--out")
        .arg(dir);
    for (name, path) in plugins {
        c.arg("--plugin").arg(format!("{name}={}", path.display()));
    }
    c.args(args);
    if !args.contains(&"--sign") {
        c.arg("--sign").arg(dev_key());
    }
    ok(&mut c);
}

/// What someone who can write a container directory does: puts another
/// component in plugin `name`'s place and updates its hash and size in the
/// manifest to match (dropping its precompiled form), leaving the
/// signatures as they were. Only the signatures can tell.
pub fn swap_plugin(agent: &Path, name: &str, component: &Path) {
    use guest_runner::manifest::Manifest;
    std::fs::copy(component, agent.join(format!("plugins/{name}.wasm"))).expect("swap");
    let _ = std::fs::remove_file(agent.join(format!("plugins/{name}.cwasm")));
    let mut m = Manifest::load(agent).expect("manifest");
    let names: Vec<String> = m.plugins.iter().map(|p| p.name.clone()).collect();
    let fresh = Manifest::for_dir(agent, &names, None).expect("hash");
    for p in &mut m.plugins {
        if p.name == name {
            p.entry = fresh.plugin(name).expect("entry").entry.clone();
            p.precompiled = None;
        }
    }
    m.write(agent).expect("write manifest");
    m.read_verified(agent, name).expect("the hash matches");
}

/// Builds the `probe` test plugin reporting `version`, in a target
/// directory of its own (the test's cargo may still be running); its
/// component.
pub fn build_probe(version: &str, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ok(Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "attache-test-plugin-probe",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("PROBE_VERSION", version));
    target_dir.join("wasm32-wasip2/release/attache_test_plugin_probe.wasm")
}

/// The password test repositories are encrypted with.
pub const PASSWORD: &str = "correct horse battery staple";

/// An `attache` command on repository `repo` (encrypted with [`PASSWORD`]),
/// with its own cache and state directories beside it.
pub fn attache(repo: &Path) -> Command {
    let mut c = attache_isolated(&repo.with_extension("cache"), &repo.with_extension("state"));
    c.arg("--repo").arg(repo).env("ATTACHE_PASSWORD", PASSWORD);
    c
}

/// An `attache` command with cache directory `cache` and state directory
/// `state` (hypervisors, journal, `policy.toml`), and nothing from this
/// machine's environment that would point it elsewhere: no repository,
/// server, agent directory, policy or trust (the trust is `make build`'s,
/// beside attache).
pub fn attache_isolated(cache: &Path, state: &Path) -> Command {
    let mut c = Command::new(attache_bin());
    c.env("ATTACHE_CACHE_DIR", cache)
        .env("ATTACHE_STATE_DIR", state)
        .env_remove("ATTACHE_REPO")
        .env_remove("ATTACHE_SERVER")
        .env_remove("ATTACHE_AGENT_DIR")
        .env_remove("ATTACHE_POLICY")
        .env_remove("ATTACHE_TRUST")
        .env_remove("ATTACHE_ALLOW_UNSIGNED");
    c
}

/// A `guest-runner` command of the container `agent`, trusting what
/// `make build`'s trust file trusts (`--trust-inline` overrides it).
pub fn runner(agent: &Path) -> Command {
    let mut c = Command::new(agent.join("guest-runner"));
    c.arg("--agent-dir")
        .arg(agent)
        .arg("--trust")
        .arg(dev_trust())
        .env_remove("ATTACHE_TRUST");
    c
}

/// The arguments of a filesystem backup of this machine, with JSON output.
pub const BACKUP_LOCAL: [&str; 6] = [
    "backup",
    "local",
    "--plugin",
    "filesystem",
    "--json",
    "--include",
];

/// `attache backup local` of `include` into `repo`; its JSON report.
pub fn backup(repo: &Path, include: &Path) -> serde_json::Value {
    let out = ok(attache(repo).args(BACKUP_LOCAL).arg(include));
    serde_json::from_str(&out).expect("backup --json prints JSON")
}

/// `attache snapshots --json` of `repo`.
pub fn snapshots(repo: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&ok(attache(repo).args(["snapshots", "--json"])))
        .expect("snapshots --json prints JSON")
}

/// Where the item at absolute path `item` lands when restored below `root`
/// (`attache restore --to local:ROOT` keeps the full path, as restic does).
pub fn restored(root: &Path, item: &Path) -> PathBuf {
    root.join(item.strip_prefix("/").expect("item ids are absolute paths"))
}

/// The longest any command of the suite may run: a command that hangs
/// fails its test with what it printed, instead of holding the suite.
const COMMAND_BOUND: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs a command and returns its output whatever the status; kills it and
/// panics with its output so far past `COMMAND_BOUND`.
pub fn output(c: &mut Command) -> Output {
    output_within(c, COMMAND_BOUND)
}

/// [`output`] with a bound of the caller's.
pub fn output_within(c: &mut Command, bound: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = std::time::Instant::now() + bound;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{c:?} still ran after {} s and was killed\nstdout: {}\nstderr: {}",
                bound.as_secs(),
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs a command that must succeed; returns stdout.
pub fn ok(c: &mut Command) -> String {
    let o = output(c);
    assert!(
        o.status.success(),
        "{c:?} failed with {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must fail with exit status 1 (an error it reported,
/// not a crash); returns stderr.
pub fn fails(c: &mut Command) -> String {
    fails_with(c, 1)
}

/// Runs a command that must fail with exit status `code` (an error it
/// reported, of that kind: see [`runner_exit`]); returns stderr.
pub fn fails_with(c: &mut Command, code: i32) -> String {
    let o = output(c);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{c:?} should have failed cleanly with exit status {code}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The runner's exit statuses (guest-runner/src/main.rs).
pub mod runner_exit {
    /// Anything else (a broken stream, a missing file, a bad command).
    pub const ERROR: i32 = 1;
    /// The job was refused before the plugin ran: the policy, the options,
    /// the contract version, the container's signatures and trust.
    pub const REFUSED: i32 = 2;
    /// The plugin returned an error.
    pub const PLUGIN_ERROR: i32 = 3;
    /// The plugin was stopped: a trap, its memory limit, its deadline.
    pub const STOPPED: i32 = 4;
}

/// Every path below `dir`, relative to it, sorted.
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            out.push(p.strip_prefix(dir).expect("below dir").to_owned());
            if p.symlink_metadata().expect("stat").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The path of the biggest pack of `repo`, and one of its bytes flipped
/// in the middle (in chunk data, past the pack's header).
pub fn flip_a_byte_in_a_pack(repo: &Path) -> PathBuf {
    let data = repo.join("data");
    let pack = listing(&data)
        .into_iter()
        .map(|p| data.join(p))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read the pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, bytes).expect("write the pack");
    pack
}

/// What `f` returns once it returns something, asked every 100 ms; the
/// test fails naming `what` when `secs` seconds pass without it.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
