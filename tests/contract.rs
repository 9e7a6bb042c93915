//! The open plugin contract (issue 9's "Must show"), against the real
//! `attache`, `guest-runner` and plugins:
//!
//! - a plugin made by `attache plugin new` outside the repository builds,
//!   passes `attache plugin test`, and backs up and restores with its own
//!   id scheme;
//! - `--include` of a file grants that file alone, and a hostile plugin
//!   cannot read its siblings;
//! - a plan outside the policy is refused before anything runs, naming the
//!   rule;
//! - thaw runs after quiesce when the plugin panics, runs out of memory or
//!   passes its deadline;
//! - a 0.1.0 and a 0.2.0 plugin back up and restore in one container under
//!   one runner;
//! - an unknown option, a missing required option and an unsupported
//!   contract version are clear errors that write nothing to the
//!   repository.
//!
//! Plugins these tests build share one cargo target directory under
//! `target/`, so that wit-bindgen is compiled once, not per test or run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attache_tests::{attache_isolated, build_probe, component, fails, ok, output, root};
use serde_json::Value;

/// The target directory of every plugin these tests build (the tests' own
/// cargo may still hold `target/release`).
fn build_dir() -> PathBuf {
    root().join("target/contract-plugins")
}

/// A `cargo` command, the one running the tests where known.
fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// A WebAssembly component built by `cargo build --release --target
/// wasm32-wasip2` into [`build_dir`].
fn wasm(file_stem: &str) -> PathBuf {
    build_dir().join(format!("wasm32-wasip2/release/{file_stem}.wasm"))
}

/// Runs a command that must fail, with an error it reported rather than a
/// crash (the runner's exit status says which kind of failure it was);
/// returns stderr.
fn refused(c: &mut Command) -> String {
    let o: Output = output(c);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        matches!(o.status.code(), Some(1..=4)),
        "{c:?} should have failed cleanly, got {}\nstdout: {}\nstderr: {err}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
    );
    err
}

/// A test's own world: an agent container with some plugins, an encrypted
/// repository, and its own cache and state directories.
struct Site {
    t: tempfile::TempDir,
    agent: PathBuf,
    repo: PathBuf,
}

impl Site {
    fn new(plugins: &[(&str, &Path)]) -> Self {
        Self::assembled_with(plugins, &[])
    }

    /// A site whose container is assembled with more `container assemble`
    /// arguments.
    fn assembled_with(plugins: &[(&str, &Path)], args: &[&str]) -> Self {
        let t = tempfile::tempdir().expect("tempdir");
        let agent = t.path().join("agent");
        attache_tests::assemble_with(&agent, plugins, args);
        let s = Site {
            agent,
            repo: t.path().join("repo"),
            t,
        };
        ok(s.attache().arg("init"));
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.t.path().join(rel)
    }

    /// `attache` on this site's repository, agent, cache and state, with
    /// the shipped policy unless the test passes `--policy`.
    fn attache(&self) -> Command {
        let mut c = attache_tests::attache(&self.repo);
        c.arg("--agent-dir")
            .arg(&self.agent)
            .env("ATTACHE_CACHE_DIR", self.path("cache"))
            .env("ATTACHE_STATE_DIR", self.path("state"))
            .env_remove("ATTACHE_POLICY")
            .env_remove("ATTACHE_SERVER");
        c
    }

    /// This site's `guest-runner`, with a cache of its own.
    fn runner(&self) -> Command {
        let mut c = attache_tests::runner(&self.agent);
        c.arg("--cache-dir").arg(self.path("runner-cache"));
        c
    }

    /// `attache backup local --plugin P --include ID --json [extra]`; the
    /// snapshot id.
    fn backup(&self, plugin: &str, include: &str, extra: &[&str]) -> String {
        let out = ok(self
            .attache()
            .args(["backup", "local", "--plugin", plugin, "--json", "--include"])
            .arg(include)
            .args(extra));
        let v: Value = serde_json::from_str(&out).expect("backup --json prints JSON");
        v["id"].as_str().expect("an id field").to_owned()
    }

    /// The ids of a snapshot's items, sorted.
    fn ids(&self, snapshot: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(&ok(self.attache().args(["ls", snapshot, "--json"])))
            .expect("ls --json prints JSON");
        let mut ids: Vec<String> = v
            .as_array()
            .expect("an array")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Every file the repository holds in data/, index/ and snapshots/,
    /// and any lock left behind.
    fn stored(&self) -> Vec<PathBuf> {
        ["data", "index", "snapshots", "locks"]
            .iter()
            .flat_map(|d| {
                let dir = self.repo.join(d);
                attache_tests::listing(&dir)
                    .into_iter()
                    .map(move |p| PathBuf::from(d).join(p))
            })
            .collect()
    }
}

// ---- a plugin made with `attache plugin new` ---------------------------

#[test]
fn a_plugin_made_by_plugin_new_outside_the_repository_builds_and_backs_up_and_restores() {
    let t = tempfile::tempdir().expect("tempdir");
    assert!(
        !t.path().starts_with(root()),
        "the plugin is made outside the repository"
    );
    let made = ok(
        attache_isolated(&t.path().join("cache"), &t.path().join("state"))
            .args(["plugin", "new", "kvtest", "--dir"])
            .arg(t.path()),
    );
    let crate_dir = t.path().join("kvtest");
    assert_eq!(Path::new(made.trim()), crate_dir, "it prints the crate");

    // One command builds it, as its README says.
    ok(cargo()
        .current_dir(&crate_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", build_dir()));
    let plugin = wasm("kvtest");

    // The application: a key-value store, and ids of the plugin's own scheme.
    let store = t.path().join("app/store.kv");
    fs::create_dir_all(store.parent().expect("parent")).expect("mkdir");
    fs::write(&store, "alpha=1\nbeta=two\n").expect("store");
    let id = format!("kv://{}", store.display());

    // The contract check a plugin author runs.
    let report = ok(
        attache_isolated(&t.path().join("cache"), &t.path().join("state"))
            .arg("--agent-dir")
            .arg(attache_tests::agent_dir())
            .args(["plugin", "test", "--name", "kvtest", "--include", &id])
            .arg(&plugin),
    );
    assert!(report.contains(" 0 failed"), "{report}");
    for check in [
        "info",
        "plan",
        "typed errors",
        "backup",
        "stable ids",
        "restore",
        "single-item restore",
        "comparison",
    ] {
        assert!(
            report
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("ok "))
                .any(|rest| rest.trim_start().starts_with(check)),
            "check {check:?} passed: {report}"
        );
    }

    // In a container beside the filesystem plugin, through `attache`.
    let site = Site::new(&[
        ("kvtest", &plugin),
        ("filesystem", &component("filesystem")),
    ]);
    let snap = site.backup("kvtest", &id, &[]);
    assert_eq!(
        site.ids(&snap),
        [id.clone(), format!("{id}#alpha"), format!("{id}#beta")]
    );

    // The store changes; the snapshot brings back what it held.
    fs::write(&store, "alpha=changed\ngamma=3\n").expect("store");
    let dest = site.path("restored");
    ok(site
        .attache()
        .args(["restore", &snap, "--to"])
        .arg(format!("local:{}", dest.display())));
    assert_eq!(
        fs::read_to_string(attache_tests::restored(&dest, &store)).expect("restored store"),
        "alpha=1\nbeta=two\n"
    );
    // One key alone, into another directory.
    let one = site.path("one-key");
    ok(site
        .attache()
        .args(["restore", &snap, "--item", &format!("{id}#beta"), "--to"])
        .arg(format!("local:{}", one.display())));
    assert_eq!(
        fs::read_to_string(attache_tests::restored(&one, &store)).expect("restored key"),
        "beta=two\n"
    );
    // In place: restored keys replace what is there, others stay.
    ok(site
        .attache()
        .args(["restore", &snap, "--to", "local", "--overwrite"]));
    assert_eq!(
        fs::read_to_string(&store).expect("store"),
        "alpha=1\nbeta=two\ngamma=3\n"
    );
}

// ---- a file is granted alone -------------------------------------------

#[test]
fn including_a_file_grants_that_file_alone() {
    let site = Site::new(&[
        ("filesystem", &component("filesystem")),
        ("hostile", &component("hostile")),
    ]);
    let etc = site.path("etc");
    fs::create_dir(&etc).expect("mkdir");
    let hostname = etc.join("hostname");
    fs::write(&hostname, "box\n").expect("write");
    fs::write(etc.join("shadow"), "root:TOPSECRET\n").expect("write");
    fs::write(etc.join("passwd"), "root:x:0:0\n").expect("write");
    let file = hostname.to_str().expect("UTF-8");

    // The filesystem plugin's plan reads the file, and nothing else.
    let plan: Value = serde_json::from_str(&ok(site.runner().args([
        "plan",
        "--plugin",
        "filesystem",
        "--operation",
        "backup",
        "--select",
        file,
    ])))
    .expect("plan prints JSON");
    assert_eq!(plan["contract"], "0.2.0");
    let paths = plan["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 1, "one path: {plan:#}");
    assert_eq!(paths[0]["path"], file, "{plan:#}");
    assert_eq!(paths[0]["access"], "read", "{plan:#}");
    assert_eq!(plan["connect"], serde_json::json!([]));
    assert_eq!(plan["ownership"], false);

    // And the backup holds that file alone.
    let snap = site.backup("filesystem", file, &[]);
    assert_eq!(site.ids(&snap), [file]);

    // A plugin granted the file alone reads it, and none of its siblings,
    // whichever way it tries.
    let stream = site.path("siblings.stream");
    let err = refused(
        site.runner()
            .args([
                "backup",
                "--plugin",
                "hostile",
                "--select",
                "hostile://siblings",
                "--option",
                "attack=read-siblings",
                "--option",
                "siblings=shadow,passwd",
                "--option",
            ])
            .arg(format!("grant={file}"))
            .arg("--output")
            .arg(&stream),
    );
    assert!(
        err.contains(&format!("read the granted file {file} (4 bytes)")),
        "the granted file itself was readable: {err}"
    );
    for sibling in ["shadow", "passwd"] {
        assert!(
            err.contains(&format!("open_at({file}, ../{sibling})")),
            "{sibling} was tried and refused: {err}"
        );
    }
    let s = fs::read(&stream).unwrap_or_default();
    assert!(!s.windows(7).any(|w| w == b"leak://"), "nothing leaked");
    assert!(
        !s.windows(9).any(|w| w == b"TOPSECRET"),
        "no secret in the stream"
    );
}

// ---- grants come from the plugins' plans ---------------------------------

#[test]
fn the_sql_plugin_plans_exact_grants_and_the_host_and_runner_know_no_id_scheme() {
    let sql = root().join("target/wasm32-wasip2/release/attache_plugin_sql.wasm");
    assert!(sql.exists(), "run `make build` first");
    let site = Site::new(&[("sql", &sql)]);
    let plan = |id: &str| {
        let out = ok(site.runner().args([
            "plan",
            "--plugin",
            "sql",
            "--operation",
            "backup",
            "--select",
            id,
        ]));
        serde_json::from_str::<Value>(&out).expect("plan prints JSON")
    };
    // One exact address for a server, no paths.
    let p = plan("postgresql://backup@127.0.0.1:5432/shop");
    let connect: Vec<&str> = p["connect"]
        .as_array()
        .expect("connect")
        .iter()
        .filter_map(|n| n["address"].as_str())
        .collect();
    assert_eq!(connect, ["127.0.0.1:5432"], "{p:#}");
    assert_eq!(p["paths"], serde_json::json!([]), "{p:#}");
    // No port range: port 0 is an invalid request.
    let err = refused(site.runner().args([
        "plan",
        "--plugin",
        "sql",
        "--operation",
        "backup",
        "--select",
        "postgresql://backup@127.0.0.1:0/shop",
    ]));
    assert!(err.contains("port 0"), "{err}");
    // An SQLite database: its directory (journal, WAL), read only, no network.
    let db = site.path("app/app.db");
    let p = plan(&format!("sqlite://{}", db.display()));
    let paths = p["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 1, "{p:#}");
    assert_eq!(paths[0]["path"], site.path("app").to_str().expect("UTF-8"));
    assert_eq!(paths[0]["access"], "read");
    assert_eq!(p["connect"], serde_json::json!([]), "{p:#}");

    // Neither the host nor the runner parses an application's ids: no
    // string literal in their code (comments and test modules aside, and
    // files of tests, which open with `#![cfg(test)]`) starts with a
    // scheme.
    let mut found = Vec::new();
    for dir in ["host/src", "guest-runner/src"] {
        for rel in attache_tests::listing(&root().join(dir)) {
            let file = root().join(dir).join(&rel);
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = fs::read_to_string(&file).expect("source");
            for (n, line) in text.lines().enumerate() {
                // A test module within, or a whole file of tests.
                if matches!(line.trim_start(), "#[cfg(test)]" | "#![cfg(test)]") {
                    break;
                }
                if line.trim_start().starts_with("//") {
                    continue;
                }
                if let Some(scheme) = scheme_literal(line) {
                    found.push(format!("{dir}/{}:{}: {scheme}", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "application id schemes in host or runner code: {found:#?}"
    );
}

/// The first string literal in `line` that starts with `SCHEME://`
/// (other than http and https, and s3, the host's own repository
/// locations, `s3://BUCKET/PREFIX`: no application's), as `SCHEME://`.
fn scheme_literal(line: &str) -> Option<String> {
    line.match_indices("://").find_map(|(i, _)| {
        let before = &line[..i];
        let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))?;
        let scheme = &before[start + 1..];
        (before[start..].starts_with('"')
            && !scheme.is_empty()
            && !["http", "https", "s3"].contains(&scheme))
        .then(|| format!("{scheme}://"))
    })
}

// ---- the policy bounds every plan ----------------------------------------

#[test]
fn a_plan_outside_the_policy_is_refused_before_anything_runs() {
    let site = Site::new(&[
        ("filesystem", &component("filesystem")),
        ("hostile", &component("hostile")),
    ]);
    let allowed = site.path("allowed");
    let outside = site.path("outside");
    fs::create_dir(&allowed).expect("mkdir");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(allowed.join("ok.txt"), "fine").expect("write");
    fs::write(outside.join("secret.txt"), "not for you").expect("write");
    let policy = site.path("policy.toml");
    fs::write(
        &policy,
        format!(
            "[default]\nread = [\"{0}\"]\nwrite = [\"{0}\"]\nconnect = []\n",
            allowed.display()
        ),
    )
    .expect("policy");
    let with_policy = || {
        let mut c = site.attache();
        c.arg("--policy").arg(&policy);
        c
    };

    // Within the policy, a backup works.
    ok(with_policy()
        .args(["backup", "local", "--plugin", "filesystem", "--include"])
        .arg(allowed.join("ok.txt")));
    let before = site.stored();

    // Reading outside it is refused, naming the plugin, the path and the rule.
    let secret = outside.join("secret.txt");
    let err = fails(
        with_policy()
            .args(["backup", "local", "--plugin", "filesystem", "--include"])
            .arg(&secret),
    );
    assert!(err.contains("refused by the policy"), "{err}");
    assert!(err.contains("\"filesystem\""), "names the plugin: {err}");
    assert!(
        err.contains(&secret.display().to_string()),
        "names the path: {err}"
    );
    assert!(err.contains("default.read"), "names the rule: {err}");
    assert_eq!(site.stored(), before, "no new snapshot, index or pack");

    // Writing outside it too; and the plugin never ran: its quiesce would
    // have left a marker in the directory it planned to write.
    let marks = outside.join("marks");
    let err = fails(
        with_policy()
            .args([
                "backup",
                "local",
                "--plugin",
                "hostile",
                "--include",
                "hostile://policy",
                "--option",
                "attack=panic-after-quiesce",
                "--option",
            ])
            .arg(format!("grant={}", marks.display())),
    );
    assert!(
        err.contains("\"hostile\"") && err.contains(&marks.display().to_string()),
        "{err}"
    );
    assert!(err.contains("default.write"), "names the rule: {err}");
    assert!(!marks.exists(), "nothing ran, nothing was granted");
    assert_eq!(site.stored(), before, "no new snapshot, index or pack");

    // `attache policy show` prints the policy in force.
    let shown = ok(with_policy().args(["policy", "show"]));
    assert!(
        shown.contains(&allowed.display().to_string()),
        "the policy in force: {shown}"
    );
}

// ---- quiesce and thaw always pair ----------------------------------------

/// Runs the hostile plugin's `attack` (one that fails after a successful
/// quiesce) through `attache backup local`, with `limits`; its error,
/// once thaw was seen to run after quiesce.
fn thawed_after(attack: &str, limits: &[&str]) -> String {
    let site = Site::new(&[("hostile", &component("hostile"))]);
    let marks = site.path("marks");
    let started = std::time::Instant::now();
    let err = fails(
        site.attache()
            .args([
                "backup",
                "local",
                "--plugin",
                "hostile",
                "--include",
                "hostile://app",
                "--option",
            ])
            .arg(format!("attack={attack}"))
            .arg("--option")
            .arg(format!("grant={}", marks.display()))
            .args(limits),
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "{attack}: the job ended in time"
    );
    assert_eq!(
        fs::read_to_string(marks.join("quiesced")).ok().as_deref(),
        Some("quiesced"),
        "{attack}: quiesce ran: {err}"
    );
    assert_eq!(
        fs::read_to_string(marks.join("thawed")).ok().as_deref(),
        Some("thawed"),
        "{attack}: thaw ran after the plugin stopped: {err}"
    );
    let snapshots: Value =
        serde_json::from_str(&ok(site.attache().args(["snapshots", "--json"]))).expect("JSON");
    assert_eq!(snapshots, serde_json::json!([]), "{attack}: no snapshot");
    err
}

#[test]
fn thaw_runs_after_a_panic_after_quiesce() {
    let err = thawed_after("panic-after-quiesce", &[]);
    assert!(err.contains("\"hostile\" trapped"), "{err}");
    assert!(
        err.contains("panic_after_quiesce"),
        "the trap names the plugin's function: {err}"
    );
    assert!(!err.contains("<wasm function"), "{err}");
}

#[test]
fn thaw_runs_after_the_memory_limit_after_quiesce() {
    let err = thawed_after("oom-after-quiesce", &["--memory-limit-mib", "64"]);
    assert!(
        err.contains("\"hostile\" exceeded its memory limit of 64 MiB"),
        "{err}"
    );
}

#[test]
fn thaw_runs_after_the_deadline_after_quiesce() {
    let err = thawed_after("spin-after-quiesce", &["--deadline-secs", "2"]);
    assert!(
        err.contains("\"hostile\" exceeded its deadline of 2s"),
        "{err}"
    );
}

// ---- versions side by side -----------------------------------------------

#[test]
fn a_0_1_0_plugin_and_a_0_2_0_plugin_run_in_one_container() {
    let probe = build_probe("contract-legacy", &build_dir());
    let site = Site::new(&[("probe", &probe), ("filesystem", &component("filesystem"))]);

    // The runner tells each plugin's contract.
    let info: Value =
        serde_json::from_str(&ok(site.runner().arg("info"))).expect("info prints JSON");
    let served: Vec<&str> = info["contracts_served"]
        .as_array()
        .expect("contracts_served")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        served.contains(&"0.1.0") && served.contains(&"0.2.0"),
        "{info:#}"
    );
    let contract = |name: &str| {
        info["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {info:#}"))["contract"]
            .clone()
    };
    assert_eq!(contract("probe"), "0.1.0");
    assert_eq!(contract("filesystem"), "0.2.0");
    // And the manifest records it.
    let manifest: Value =
        serde_json::from_slice(&fs::read(site.agent.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    for (name, version) in [("probe", "0.1.0"), ("filesystem", "0.2.0")] {
        let entry = manifest["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {manifest:#}"));
        assert_eq!(entry["contract"], version, "{manifest:#}");
    }

    // The 0.1.0 plugin backs up and restores.
    let snap = site.backup("probe", "probe://version", &[]);
    assert_eq!(site.ids(&snap), ["probe://version"]);
    let dest = site.path("probe-restored");
    // A longer file stands there already, and the probe opens it without
    // truncating it: what is restored is the content alone, cut to length.
    fs::create_dir_all(&dest).expect("mkdir");
    fs::write(
        dest.join("probe-version"),
        "a longer probe version that stood here before",
    )
    .expect("write");
    ok(site
        .attache()
        .args(["restore", &snap, "--to"])
        .arg(format!("local:{}", dest.display())));
    assert_eq!(
        fs::read_to_string(dest.join("probe-version")).expect("restored"),
        "contract-legacy"
    );

    // And so does the 0.2.0 plugin, under the same runner.
    let src = site.path("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("sub/file.txt"), "new contract").expect("write");
    let snap = site.backup("filesystem", src.to_str().expect("UTF-8"), &[]);
    let dest = site.path("fs-restored");
    ok(site
        .attache()
        .args(["restore", &snap, "--to"])
        .arg(format!("local:{}", dest.display())));
    assert_eq!(
        fs::read_to_string(attache_tests::restored(&dest, &src.join("sub/file.txt")))
            .expect("restored"),
        "new contract"
    );
}

// ---- refused before the job starts, nothing written ----------------------

#[test]
fn an_unknown_option_is_refused_and_nothing_is_written() {
    let site = Site::new(&[("filesystem", &component("filesystem"))]);
    let src = site.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a"), "a").expect("write");
    let before = site.stored();
    let err = fails(
        site.attache()
            .args(["backup", "local", "--plugin", "filesystem", "--include"])
            .arg(&src)
            .args(["--option", "colour=blue"]),
    );
    assert!(
        err.contains("\"filesystem\"") && err.contains("unknown option \"colour\""),
        "{err}"
    );
    assert_eq!(site.stored(), before, "nothing written to the repository");

    // The same for a restore: nothing reaches the target.
    let snap = site.backup("filesystem", src.to_str().expect("UTF-8"), &[]);
    let dest = site.path("restored");
    fs::create_dir(&dest).expect("mkdir");
    let err = fails(
        site.attache()
            .args(["restore", &snap, "--option", "colour=blue", "--to"])
            .arg(format!("local:{}", dest.display())),
    );
    assert!(err.contains("unknown option \"colour\""), "{err}");
    assert!(attache_tests::listing(&dest).is_empty(), "nothing restored");
}

#[test]
fn a_missing_required_option_is_refused_and_nothing_is_written() {
    // The hostile plugin, built to require an option `mode`.
    ok(cargo()
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "attache-test-plugin-hostile",
            "--features",
            "required-option",
        ])
        .env("CARGO_TARGET_DIR", build_dir()));
    let site = Site::new(&[("hostile", &wasm("attache_test_plugin_hostile"))]);
    let marks = site.path("marks");
    let grant = format!("grant={}", marks.display());
    let before = site.stored();
    let err = fails(site.attache().args([
        "backup",
        "local",
        "--plugin",
        "hostile",
        "--include",
        "hostile://app",
        "--option",
        "attack=panic-after-quiesce",
        "--option",
        &grant,
    ]));
    assert!(
        err.contains("\"hostile\"") && err.contains("option \"mode\" is required"),
        "{err}"
    );
    assert!(!marks.exists(), "the plugin did not run");
    assert_eq!(site.stored(), before, "nothing written to the repository");
    // With it, the same plan is made.
    ok(site.runner().args([
        "plan",
        "--plugin",
        "hostile",
        "--operation",
        "backup",
        "--select",
        "hostile://app",
        "--option",
        "mode=x",
    ]));
}

/// Builds a minimal plugin against a copy of the 0.2.0 WIT whose package is
/// `attache:plugin@9.9.9`, in `dir`; its component.
fn build_future_plugin(dir: &Path) -> PathBuf {
    let wit = dir.join("wit");
    copy_dir(&root().join("wit/deps"), &wit.join("deps"));
    let text = fs::read_to_string(root().join("wit/0.2.0/attache.wit")).expect("WIT");
    assert!(text.contains("package attache:plugin@0.2.0;"));
    fs::write(
        wit.join("attache.wit"),
        text.replace(
            "package attache:plugin@0.2.0;",
            "package attache:plugin@9.9.9;",
        ),
    )
    .expect("WIT");
    fs::create_dir_all(dir.join("src")).expect("mkdir");
    fs::write(
        dir.join("Cargo.toml"),
        r#"[package]
name = "attache-contract-future"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.61"

[profile.release]
strip = true

[workspace]
"#,
    )
    .expect("manifest");
    fs::write(
        dir.join("src/lib.rs"),
        r#"wit_bindgen::generate!({ path: "wit", world: "attache:plugin/plugin-world", generate_all });

use attache::plugin::types::*;
use exports::attache::plugin::plugin::{BackupRequest, Guest, RestoreRequest, Summary};

struct Future;

impl Guest for Future {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "future".into(),
            version: "9.9.9".into(),
            kind: ApplicationKind::Other,
            description: "built against a contract no runner serves".into(),
            options: vec![],
            supports_quiesce: false,
        }
    }
    fn plan(_: PlanRequest) -> Result<AccessPlan, PluginError> {
        Ok(AccessPlan { paths: vec![], connect: vec![], ownership: false, memory_mib: None, deadline_secs: None })
    }
    fn discover(_: Option<String>, _: u32, _: OptionList) -> Result<Vec<CatalogEntry>, PluginError> {
        Ok(vec![])
    }
    fn quiesce(_: Vec<String>, _: OptionList) -> Result<String, PluginError> {
        Ok(String::new())
    }
    fn thaw(_: String, _: OptionList) -> Result<(), PluginError> {
        Ok(())
    }
    fn backup(_: BackupRequest) -> Result<Summary, PluginError> {
        Ok(Summary { items: 0, bytes: 0, warnings: 0 })
    }
    fn restore(_: RestoreRequest) -> Result<Summary, PluginError> {
        Ok(Summary { items: 0, bytes: 0, warnings: 0 })
    }
}

export!(Future);
"#,
    )
    .expect("source");
    ok(cargo()
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", build_dir()));
    wasm("attache_contract_future")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

#[test]
fn an_unsupported_contract_version_is_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().expect("tempdir");
    let future = build_future_plugin(&t.path().join("future"));
    let filesystem = component("filesystem");
    let plugins = [
        ("future", future.as_path()),
        ("filesystem", filesystem.as_path()),
    ];

    // Assembling a container refuses it, naming the versions served.
    let mut c = attache_isolated(&t.path().join("cache"), &t.path().join("state"));
    c.args(["container", "assemble", "--runner"])
        .arg(attache_tests::agent_dir().join("guest-runner"))
        .arg("--out")
        .arg(t.path().join("refused-agent"));
    for (name, path) in &plugins {
        c.arg("--plugin").arg(format!("{name}={}", path.display()));
    }
    let err = fails(&mut c);
    assert!(
        err.contains("\"future\"") && err.contains("9.9.9") && err.contains("0.1.0, 0.2.0"),
        "names the plugin, its version and the versions served: {err}"
    );

    // A container assembled without precompiling gets it in; the job is
    // refused before anything runs, and nothing is written.
    let site = Site::assembled_with(&plugins, &["--no-precompile"]);
    let before = site.stored();
    let err = fails(site.attache().args([
        "backup",
        "local",
        "--plugin",
        "future",
        "--include",
        "future://anything",
    ]));
    assert!(
        err.contains("\"future\"") && err.contains("9.9.9"),
        "names the plugin and its version: {err}"
    );
    assert!(
        err.contains("0.1.0, 0.2.0"),
        "names the versions served: {err}"
    );
    assert_eq!(site.stored(), before, "nothing written to the repository");
    // The runner says the same when asked about the plugin.
    let err = refused(site.runner().args(["info", "--plugin", "future"]));
    assert!(
        err.contains("9.9.9") && err.contains("0.1.0, 0.2.0"),
        "{err}"
    );
}

#[test]
fn the_policy_judges_where_a_restore_to_another_root_writes() {
    let t = tempfile::tempdir().expect("tempdir");
    let w = t.path();
    let agent = attache_tests::agent_dir();
    let data = w.join("allowed/d");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("f"), b"hi").expect("write");
    let stream = w.join("s.stream");
    ok(attache_tests::runner(&agent)
        .args(["backup", "--plugin", "filesystem", "--select"])
        .arg(&data)
        .arg("--output")
        .arg(&stream));
    let policy = w.join("policy.toml");
    fs::write(
        &policy,
        format!(
            "[default]\nread = []\nwrite = [\"{}\"]\n",
            w.join("allowed").display()
        ),
    )
    .expect("policy");
    let id = data.to_str().expect("utf-8").to_owned();
    let restore = |target: &Path| {
        let mut c = attache_tests::runner(&agent);
        c.arg("--policy")
            .arg(&policy)
            .args(["restore", "--plugin", "filesystem", "--input"])
            .arg(&stream)
            .args(["--select", &id, "--select-kind", &format!("{id}=directory")])
            .arg("--target")
            .arg(target);
        c
    };
    // The plan asks to write the item's own path, which the policy allows;
    // below another root it would land outside every write prefix.
    let outside = w.join("not-allowed");
    let err = attache_tests::fails_with(&mut restore(&outside), 2);
    assert!(err.contains("default.write"), "{err}");
    assert!(!outside.join(data.strip_prefix("/").expect("abs")).exists());
    // And the other way: the item's own path is outside the prefix, but it
    // lands below it.
    let inside = w.join("allowed/restored");
    ok(&mut restore(&inside));
    assert_eq!(
        fs::read(inside.join(data.strip_prefix("/").expect("abs")).join("f")).expect("restored"),
        b"hi"
    );
}
