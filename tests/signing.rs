//! Signed containers (issue 13, part 1): publisher keys, `container sign`,
//! and the trust file. A plugin swapped together with its manifest hash is
//! refused by the host before anything runs and by the runner given the
//! container directly; a correctly signed rebuild is accepted; a plugin
//! signed by a key the trust file does not allow for it is refused, naming
//! the key and the plugin; unsigned containers run only when allowed, and
//! `attache policy show` says so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use attache_tests::{
    assemble, assemble_with, attache, build_probe, component, dev_key, fails, fails_with, ok,
    output, root, runner, runner_exit, swap_plugin, BACKUP_LOCAL,
};
use serde_json::Value;

/// The public key line (`ed25519:…`) of a `.pub` file.
fn public_key(pub_file: &Path) -> String {
    fs::read_to_string(pub_file)
        .expect("public key")
        .lines()
        .nth(1)
        .expect("key line")
        .to_owned()
}

/// The key id (`attache key generate` prints it first).
fn key_id(generated: &str) -> String {
    generated
        .split_whitespace()
        .nth(1)
        .expect("key id")
        .to_owned()
}

/// `make build`'s development key's public key.
fn dev_public() -> String {
    public_key(&dev_key().with_extension("pub"))
}

/// A repository, a source tree and a container of the filesystem and
/// probe plugins signed with the development key.
struct Site {
    _t: tempfile::TempDir,
    base: PathBuf,
    repo: PathBuf,
    agent: PathBuf,
    src: PathBuf,
}

impl Site {
    fn new() -> Self {
        let t = tempfile::tempdir().expect("tempdir");
        let base = t.path().to_owned();
        let agent = base.join("agent");
        assemble(
            &agent,
            &[
                ("filesystem", &component("filesystem")),
                ("probe", &component("probe")),
            ],
        );
        let src = base.join("src");
        fs::create_dir_all(&src).expect("src");
        fs::write(src.join("a.txt"), "a").expect("file");
        let s = Site {
            repo: base.join("repo"),
            agent,
            src,
            base,
            _t: t,
        };
        ok(s.attache().args(["init"]));
        s
    }

    /// `attache` on this site's repository and container.
    fn attache(&self) -> Command {
        let mut c = attache(&self.repo);
        c.arg("--agent-dir").arg(&self.agent);
        c
    }

    /// `attache backup local` of the source tree with `plugin`.
    fn backup(&self) -> Command {
        let mut c = self.attache();
        c.args(BACKUP_LOCAL).arg(&self.src);
        c
    }

    fn snapshots(&self) -> usize {
        let v: Value =
            serde_json::from_str(&ok(self.attache().args(["snapshots", "--json"]))).expect("JSON");
        v.as_array().expect("array").len()
    }

    /// The runner's `info --plugin probe`, as JSON.
    fn probe_info(&self, trust_args: &[&str]) -> Command {
        let mut c = runner(&self.agent);
        c.arg("--cache-dir")
            .arg(self.base.join("runner-cache"))
            .args(trust_args)
            .args(["info", "--plugin", "probe"]);
        c
    }
}

/// The probe rebuilt reporting another version (the target directory
/// tests/container.rs also builds it in, so it is usually there already).
fn rebuilt_probe() -> PathBuf {
    build_probe("2.0.0-second", &root().join("target/test-rebuild"))
}

#[test]
fn a_swapped_plugin_with_a_matching_hash_is_refused_and_a_signed_rebuild_accepted() {
    let s = Site::new();
    let v: Value = serde_json::from_str(&ok(&mut s.probe_info(&[]))).expect("JSON");
    assert_eq!(v["plugins"][0]["name"], "probe");
    let first_version = v["plugins"][0]["version"].clone();
    ok(&mut s.backup());

    let probe2 = rebuilt_probe();
    swap_plugin(&s.agent, "probe", &probe2);

    // The runner, given the container directly, refuses before it loads
    // any plugin (exit status 2: refused before the plugin ran).
    let err = fails_with(&mut s.probe_info(&[]), runner_exit::REFUSED);
    assert!(err.contains("wrongly signed"), "{err}");
    // The host refuses before it runs the runner: a local job...
    let err = fails(&mut s.backup());
    assert!(
        err.contains("the agent container at") && err.contains("wrongly signed"),
        "{err}"
    );
    assert_eq!(s.snapshots(), 1, "the refused job stored nothing");
    // ... and before it builds (so places or attaches) the container.
    let err = fails(
        s.attache()
            .args(["container", "build", "--out"])
            .arg(s.base.join("out")),
    );
    assert!(err.contains("wrongly signed"), "{err}");
    assert!(!s.base.join("out").exists(), "nothing was built");

    // The same rebuild, signed by its publisher, is accepted by both.
    assemble(
        &s.agent,
        &[("filesystem", &component("filesystem")), ("probe", &probe2)],
    );
    let v: Value = serde_json::from_str(&ok(&mut s.probe_info(&[]))).expect("JSON");
    assert_eq!(v["plugins"][0]["version"], "2.0.0-second");
    assert_ne!(v["plugins"][0]["version"], first_version);
    ok(&mut s.backup());
    assert_eq!(s.snapshots(), 2);
    ok(s.attache()
        .args(["container", "build", "--out"])
        .arg(s.base.join("out")));
}

#[test]
fn a_plugin_signed_by_a_key_not_allowed_for_it_is_refused_naming_both() {
    let s = Site::new();
    // The site's own key, made by `attache key generate`.
    let keys = s.base.join("keys");
    let made = ok(attache(&s.repo)
        .args(["key", "generate", "--name", "site", "--out"])
        .arg(&keys));
    let site_id = key_id(&made);
    // The vendor (the development key) may sign the runner and filesystem;
    // the site only its own `inventory`. The site signs the container too.
    ok(s.attache()
        .args(["container", "sign", "--key"])
        .arg(keys.join("site.key")));
    let trust = |site_plugins: &str| {
        format!(
            "format = 1\n\
             [[publisher]]\nname = \"vendor\"\nkey = \"{}\"\nrunner = true\nplugins = [\"filesystem\"]\n\
             [[publisher]]\nname = \"site\"\nkey = \"{}\"\nplugins = [{site_plugins}]\n",
            dev_public(),
            public_key(&keys.join("site.pub")),
        )
    };
    let narrow = trust("\"inventory\"");
    let trust_file = s.base.join("trust.toml");
    fs::write(&trust_file, &narrow).expect("trust");

    // The runner refuses the probe, naming it and both signing keys.
    let err = fails_with(
        &mut s.probe_info(&["--trust-inline", &narrow]),
        runner_exit::REFUSED,
    );
    assert!(err.contains("plugin \"probe\""), "{err}");
    assert!(err.contains(&site_id), "names the site's key: {err}");
    // The host refuses the container (its probe) before any job runs.
    let err = fails(s.backup().arg("--trust").arg(&trust_file));
    assert!(
        err.contains("plugin \"probe\"") && err.contains(&site_id),
        "{err}"
    );
    // So does `attache plugin info`, which hands the runner the trust.
    let err = fails(
        s.attache()
            .args(["plugin", "info", "--trust"])
            .arg(&trust_file),
    );
    assert!(err.contains("plugin \"probe\""), "{err}");
    // The filesystem plugin itself is vouched for by the vendor.
    let mut c = runner(&s.agent);
    c.args(["--trust-inline", &narrow, "info", "--plugin", "filesystem"]);
    ok(&mut c);

    // Allowed for the probe, the site's key vouches for it.
    let wide = trust("\"inventory\", \"probe\"");
    fs::write(&trust_file, &wide).expect("trust");
    ok(&mut s.probe_info(&["--trust-inline", &wide]));
    ok(s.backup().arg("--trust").arg(&trust_file));
    let info = ok(s
        .attache()
        .args(["plugin", "info", "--trust"])
        .arg(&trust_file));
    assert!(info.contains("\"probe\""), "{info}");
    // `policy show` lists who may sign what, by key id.
    let shown = ok(s
        .attache()
        .args(["policy", "show", "--trust"])
        .arg(&trust_file));
    assert!(
        shown.contains(&format!(
            "key {site_id} may sign plugin inventory, plugin probe"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("unsigned or wrongly signed containers are refused"),
        "{shown}"
    );
}

#[test]
fn unsigned_containers_run_only_when_allowed_and_policy_show_says_so() {
    let s = Site::new();
    // Re-assembled without --sign: the old signature is gone with it.
    let mut c = attache_tests::attache_isolated(&s.base.join("c"), &s.base.join("st"));
    c.args(["container", "assemble", "--no-precompile", "--runner"])
        .arg(s.agent.join("guest-runner"))
        .arg("--out")
        .arg(&s.agent)
        .arg("--plugin")
        .arg(format!("filesystem={}", component("filesystem").display()))
        .arg("--plugin")
        .arg(format!("probe={}", component("probe").display()));
    ok(&mut c);
    assert!(!s.agent.join("manifest.sig").exists());

    let err = fails(&mut s.backup());
    assert!(err.contains("is not signed"), "{err}");
    let err = fails_with(&mut s.probe_info(&[]), runner_exit::REFUSED);
    assert!(err.contains("is not signed"), "{err}");

    // --allow-unsigned: the job runs, the log warns, policy show says so.
    let o = output(s.backup().arg("--allow-unsigned"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unsigned allowed"),
        "the log says so"
    );
    ok(&mut s.probe_info(&["--allow-unsigned"]));
    let shown = ok(s.attache().args(["policy", "show", "--allow-unsigned"]));
    assert!(shown.contains("UNSIGNED ALLOWED"), "{shown}");
    assert!(shown.contains("--allow-unsigned"), "{shown}");

    // The same, set in the trust file.
    let trust = s.base.join("lax.toml");
    fs::write(&trust, "format = 1\nallow_unsigned = true\n").expect("trust");
    ok(s.backup().arg("--trust").arg(&trust));
    let shown = ok(s.attache().args(["policy", "show", "--trust"]).arg(&trust));
    assert!(shown.contains("UNSIGNED ALLOWED"), "{shown}");
    assert!(shown.contains("allow_unsigned = true"), "{shown}");
    assert_eq!(s.snapshots(), 2);
}

#[test]
fn keys_are_private_and_never_replaced() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("keys");
    let gen = || {
        let mut c = attache(&t.path().join("repo"));
        c.args(["key", "generate", "--out"]).arg(&out);
        c
    };
    let made = ok(&mut gen());
    let private = out.join("publisher.key");
    let mode = fs::metadata(&private).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is its owner's alone");
    let text = fs::read_to_string(&private).expect("key");
    assert!(
        text.starts_with("attache-signing-key 1\n"),
        "magic and version"
    );
    assert!(fs::read_to_string(out.join("publisher.pub"))
        .expect("pub")
        .starts_with("attache-public-key 1\n"));
    assert!(
        made.contains("[[publisher]]"),
        "prints a trust entry: {made}"
    );
    let err = fails(&mut gen());
    assert!(err.contains("never replaced"), "{err}");
    assert_eq!(
        fs::read_to_string(&private).expect("key"),
        text,
        "unchanged"
    );

    // A key that is not one is refused by `container sign`, and the
    // container keeps its signature.
    let agent = t.path().join("agent");
    assemble_with(&agent, &[("probe", &component("probe"))], &[]);
    let before = fs::read(agent.join("manifest.sig")).expect("sig");
    let bad = t.path().join("bad.key");
    fs::write(&bad, "not a key\n").expect("bad");
    let mut c = attache(&t.path().join("repo"));
    c.arg("--agent-dir")
        .arg(&agent)
        .args(["container", "sign", "--key"])
        .arg(&bad);
    let err = fails(&mut c);
    assert!(err.contains("not an Attaché key file"), "{err}");
    assert_eq!(fs::read(agent.join("manifest.sig")).expect("sig"), before);
}
